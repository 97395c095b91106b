//! The storage seam: where background fetches, request bodies and response bodies live.
//!
//! # Contract
//!
//! A store keeps, per background fetch ([`FetchUid`]): its metadata ([`FetchMeta`]), the request
//! bodies, its flags ([`StoredFlags`]: paused, awaiting permission, aborted), the title and icons, the settled result, and per record a small state
//! machine — *pending* → *active* (a response head and a body that grows) → *completed* (a final
//! [`RecordResult`]) — with the response body stored as bytes.
//!
//! * **Creation is atomic.** [`Store::create_fetch`] and [`Store::append_request_body`] write
//!   a fetch that does not exist yet for recovery; [`Store::commit_fetch`] makes it exist,
//!   durably. [`Store::load`] never returns an uncommitted fetch (it discards them).
//! * **Response data generations.** Each record's response data has a generation number. The
//!   engine calls [`Store::begin_response`] with a generation at least the current one; a
//!   greater generation discards the older bytes (a 200 answered a Range request, so the
//!   record restarts). Reads and appends name the generation they expect and fail with
//!   [`StoreErrorKind::Gone`] when it is not the current one.
//! * **Durability.** Appends may be buffered. [`Store::complete_record`], [`Store::commit_fetch`],
//!   [`Store::set_flags`], [`Store::mark_request_sent`] and [`Store::settle`] return only once everything written before them for that fetch is
//!   durable. After a crash, [`Store::load`] reports each active record's durable body length;
//!   bytes past it are gone and the engine resumes from there with a Range request.
//! * **Appends are contiguous.** [`Store::append_response_body`] carries the offset it writes
//!   at, which must be the record's current length; anything else is
//!   [`StoreErrorKind::Corrupt`].
//! * **Uids are never reused.** The store remembers the highest uid it was ever given
//!   ([`Store::uid_floor`]), even after that fetch is deleted.
//! * **Export.** [`Store::export_response_body`] hands a completed record's body to a path of
//!   the host's file system: the destination appears only whole (never a partial file under its
//!   name) and is durable (data and directory entry synced) when it returns. A store that keeps
//!   bodies in files may link or reflink them instead of copying ([`ExportMode`], [`Exported`]);
//!   the default implementation streams the body through [`Store::read_response_body`].
//! * **Errors lose nothing.** A failed write leaves everything written before it intact and the
//!   store consistent; [`StoreErrorKind::QuotaExceeded`] and [`StoreErrorKind::Io`] fail only the
//!   fetch being written.
//!
//! The engine serialises writes per record, and never writes to a record concurrently with a
//! [`Store::begin_response`] for it. Different records and fetches are written concurrently.
//!
//! `crate::testing::store_contract` (feature `testing`) holds the contract as tests that any
//! implementation can run.

use crate::fetch::{Request, ResponseHead};
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchResult, ClientSnapshot, FetchUid, ImageResource,
    RecordResult, ServiceWorkerRegistrationId,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What kind of store failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreErrorKind {
    /// Writing would exceed a quota (the store's own limit, or the disk's).
    QuotaExceeded,
    /// An I/O error (disk full, read or write error).
    Io,
    /// The data is not what the contract says (wrong offset, unreadable entry).
    Corrupt,
    /// The fetch, record or response generation does not exist (any more).
    Gone,
    /// The store was closed.
    Closed,
}

/// A store failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreError {
    /// The kind.
    pub kind: StoreErrorKind,
    /// What happened, for logs and the user.
    pub message: String,
}

impl StoreError {
    /// A new error.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }
    /// [`StoreErrorKind::Gone`]
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Gone, message)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error ({:?}): {}", self.kind, self.message)
    }
}

impl std::error::Error for StoreError {}

/// Everything about a background fetch that is fixed when it is created (plus title and icons,
/// which `updateUI()` may change through [`Store::set_ui`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchMeta {
    /// The fetch.
    pub uid: FetchUid,
    /// Its service worker registration.
    pub registration: ServiceWorkerRegistrationId,
    /// The id script gave it.
    pub id: String,
    /// `downloadTotal` (0 = no limit).
    pub download_total: u64,
    /// The title.
    pub title: String,
    /// The icons.
    pub icons: Vec<ImageResource>,
    /// The caller of `fetch()`, captured then.
    pub client: ClientSnapshot,
    /// The records' requests, in order. Bodies are stored separately.
    pub requests: Vec<Request>,
    /// Opaque embedder data (see [`crate::BackgroundFetchOptions::embedder_data`]).
    pub embedder_data: Option<String>,
}

/// A record's state in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    /// No response yet.
    Pending,
    /// A response head is stored and its body is growing.
    Active,
    /// The record has a final result.
    Completed(RecordResult),
}

/// The flags of a background fetch that the store keeps, so that a restarted engine holds the
/// fetch exactly as the user and script left it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredFlags {
    /// The paused flag (the user's pause, or the permission prompt's).
    pub paused: bool,
    /// The permission was `"prompt"` and the user has not answered yet: the fetch is paused
    /// and nothing of it has been sent.
    pub awaiting_permission: bool,
    /// The abort all flag (`abort()`, the UI's abort, a refused prompt): the fetch ends with
    /// `backgroundfetchabort` and is no longer one of its registration's active fetches.
    pub aborted: bool,
}

/// A record as [`Store::load`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Its state.
    pub state: RecordState,
    /// The stored response head, if any.
    pub response: Option<ResponseHead>,
    /// The current response data generation.
    pub generation: u32,
    /// The durable length of the response body.
    pub body_length: u64,
    /// [`Store::mark_request_sent`] ran for the record: its (non-`GET`) request may have
    /// reached the network, so it must not be sent again.
    pub request_sent: bool,
}

/// A background fetch as [`Store::load`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFetch {
    /// Its metadata, with the latest title and icons.
    pub meta: FetchMeta,
    /// The total length of its request bodies.
    pub upload_total: u64,
    /// The paused, awaiting-permission and aborted flags.
    pub flags: StoredFlags,
    /// The result and failure reason, once settled.
    pub settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
    /// Its records, in order.
    pub records: Vec<StoredRecord>,
}

/// What [`Store::export_response_body`] may do with the store's own copy of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExportMode {
    /// The store keeps reading the body (`match()` may still be called): the destination gets
    /// bytes of its own (a reflink or a copy), so changing it later never changes the store.
    Copy,
    /// The caller will not read this record's body from the store again (it is about to delete
    /// the fetch, for example): the store may give the destination its own file (a hard link on
    /// the same file system), so nothing is copied. Writing to the destination in place later
    /// may then change what the store holds until the fetch is deleted.
    Move,
}

/// How [`Store::export_response_body`] delivered a body (for logs and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Exported {
    /// The destination is a hard link to the store's file: no byte was copied.
    Linked,
    /// The destination shares the store's extents (a reflink, `FICLONE`): no byte was copied.
    Reflinked,
    /// The kernel copied the bytes file to file (`copy_file_range`), without passing them
    /// through the process.
    Copied,
    /// The bytes were read from the store and written to the destination.
    Streamed,
}

/// Maps an I/O error at `path` to a [`StoreError`]: a full disk (or disk quota) is
/// [`StoreErrorKind::QuotaExceeded`], anything else [`StoreErrorKind::Io`].
pub fn io_error(what: &str, path: &Path, e: &std::io::Error) -> StoreError {
    let full = matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122));
    let kind = if full {
        StoreErrorKind::QuotaExceeded
    } else {
        StoreErrorKind::Io
    };
    StoreError::new(kind, format!("{what} {}: {e}", path.display()))
}

/// A temporary name beside `destination` (same directory, so a rename moves it into place).
pub fn export_temp_path(destination: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    destination.with_file_name(format!(".{name}.{}-{n}.part", std::process::id()))
}

/// Makes something new at a temporary name beside `destination` ([`export_temp_path`]) with
/// `make`, which must create it exclusively: fail with `AlreadyExists` when the name is taken
/// (`O_EXCL`, `link(2)`). A taken name (a leftover file, or a symlink someone planted in a shared
/// directory) is skipped, never followed, and the next name tried. Returns what `make` made and
/// its path.
pub fn new_export_temp<T>(
    destination: &Path,
    mut make: impl FnMut(&Path) -> std::io::Result<T>,
) -> std::io::Result<(T, PathBuf)> {
    let mut taken = 0;
    loop {
        let temp = export_temp_path(destination);
        match make(&temp) {
            Ok(made) => return Ok((made, temp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && taken < 1000 => taken += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a new, empty temporary file beside `destination` for an export to fill (through
/// [`new_export_temp`]: never through an existing name), readable and writable by its owner
/// only (0600 on Unix, whatever the umask: a body holds whatever a site sent, and a mode
/// changed after the bytes are in leaves a moment where others can read them).
pub fn create_export_temp(destination: &Path) -> Result<(std::fs::File, PathBuf), StoreError> {
    new_export_temp(destination, |temp| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(temp)
    })
    .map_err(|e| io_error("create a temporary file beside", destination, &e))
}

/// Renames the synced file `temp` to `destination` and syncs the directory, so that the
/// destination appears whole and stays after a crash. Removes `temp` if the rename fails.
pub fn publish_export(temp: &Path, destination: &Path) -> Result<(), StoreError> {
    if let Err(e) = std::fs::rename(temp, destination) {
        let _ = std::fs::remove_file(temp);
        return Err(io_error("rename to", destination, &e));
    }
    let dir = match destination.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync the directory", &dir, &e))
}

/// Streams record `record`'s body of `generation` into `destination` through
/// [`Store::read_response_body`]: written to a temporary file beside it, synced, renamed into
/// place, and the directory synced. The default [`Store::export_response_body`].
///
/// AD-HOC: the engine does no I/O of its own, except here: a store without files of its own
/// (the in-memory store) still has to write the destination somewhere. It uses `std::fs` from
/// the future, blocking the thread that polls it, which suits ephemeral profiles and tests.
pub async fn stream_response_body_to<S: Store + ?Sized>(
    store: &S,
    uid: FetchUid,
    record: usize,
    generation: u32,
    destination: &Path,
) -> Result<Exported, StoreError> {
    let (mut file, temp) = create_export_temp(destination)?;
    let written = async {
        let mut offset = 0u64;
        loop {
            let bytes = store
                .read_response_body(uid, record, generation, offset, 1 << 20)
                .await?;
            if bytes.is_empty() {
                break;
            }
            file.write_all(&bytes)
                .map_err(|e| io_error("write", &temp, &e))?;
            offset += bytes.len() as u64;
        }
        file.sync_all().map_err(|e| io_error("sync", &temp, &e))
    }
    .await;
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    publish_export(&temp, destination)?;
    Ok(Exported::Streamed)
}

/// The storage seam. See the module documentation for the contract.
pub trait Store: Send + Sync {
    /// Every committed background fetch, for recovery at start-up. Uncommitted ones are
    /// discarded; active records report their durable body length.
    fn load(&self) -> BoxFuture<'_, Result<Vec<StoredFetch>, StoreError>>;

    /// One more than the highest uid ever given to [`Store::create_fetch`], deleted fetches
    /// included (0 for a new store). The engine allocates uids from there, so a uid is never
    /// reused in the life of a profile, even across restarts.
    fn uid_floor(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Bytes stored for `storage_key` (request and response bodies).
    fn usage(&self, storage_key: &str) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Writes a new, uncommitted fetch with empty request bodies and pending records.
    fn create_fetch(&self, meta: FetchMeta) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Appends to record `record`'s request body of uncommitted fetch `uid`.
    fn append_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Makes fetch `uid` exist, durably, with its request bodies and the given flags.
    fn commit_fetch(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Reads up to `max` bytes of record `record`'s request body from `offset` (empty at the end).
    fn read_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>>;

    /// Stores `head` as record `record`'s response for `generation` and marks it active. A
    /// generation greater than the current one discards the stored body.
    fn begin_response(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        head: ResponseHead,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Appends `bytes` at `offset` (which must equal the current body length) to record
    /// `record`'s body of `generation`. May be buffered.
    fn append_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Marks record `record` completed with `result`; durable when it returns, together with
    /// every body byte appended before.
    fn complete_record(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        result: RecordResult,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Reads up to `max` bytes of record `record`'s body of `generation` from `offset`. Bytes
    /// appended but not yet durable are readable too.
    fn read_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>>;

    /// Sets the fetch's flags; durable when it returns.
    fn set_flags(&self, uid: FetchUid, flags: StoredFlags)
    -> BoxFuture<'_, Result<(), StoreError>>;

    /// Marks record `record`'s request as possibly sent, before its first attempt (the engine
    /// calls it for requests that must not be sent twice); durable when it returns.
    fn mark_request_sent(
        &self,
        uid: FetchUid,
        record: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Sets the title and icons (`updateUI()`).
    fn set_ui(
        &self,
        uid: FetchUid,
        title: String,
        icons: Vec<ImageResource>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records the result and failure reason; durable when it returns.
    fn settle(
        &self,
        uid: FetchUid,
        result: BackgroundFetchResult,
        failure_reason: BackgroundFetchFailureReason,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Deletes the fetch and all its bytes (committed or not). Deleting a fetch that does not
    /// exist succeeds.
    fn delete_fetch(&self, uid: FetchUid) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Hands record `record`'s body of `generation` (a completed record) to `destination`, a
    /// path of the host's file system, replacing any file there. The destination is its
    /// owner's only (0600 on Unix) from the moment it exists, appears only
    /// whole, and is durable (data and directory entry) when this returns; on failure nothing
    /// is left under its name. `mode` says whether the store may give away its own file. The
    /// record must be completed ([`StoreErrorKind::Corrupt`] otherwise); a generation that is
    /// not the current one is [`StoreErrorKind::Gone`].
    ///
    /// The default streams the body through [`Store::read_response_body`]
    /// ([`stream_response_body_to`]) and cannot tell whether the record is completed.
    fn export_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        destination: PathBuf,
        mode: ExportMode,
    ) -> BoxFuture<'_, Result<Exported, StoreError>> {
        let _ = mode;
        Box::pin(async move {
            stream_response_body_to(self, uid, record, generation, &destination).await
        })
    }
}
