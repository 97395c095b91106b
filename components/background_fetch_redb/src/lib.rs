//! # background-fetch-redb
//!
//! A persistent, crash-safe [`Store`] for the `background-fetch` engine, on
//! [redb](https://docs.rs/redb) 4: nothing completed is ever lost, and downloads resume after a
//! restart or a crash from their last durable byte (the engine then sends a Range request).
//!
//! ```
//! use background_fetch::Store;
//! use background_fetch_redb::{RedbStore, RedbStoreConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("background-fetch.redb");
//! let store = std::sync::Arc::new(RedbStore::open(&path, RedbStoreConfig::default())?);
//! // The host purges what belongs to service worker registrations that no longer exist
//! // (the store never deletes anything on its own)...
//! futures::executor::block_on(store.retain_registrations(Vec::new()))?;
//! // ...then gives the store to the engine: `Hosts { store: store.clone(), .. }` and
//! // `Engine::start(hosts, config)`, which calls `load()` and resumes every fetch.
//! let fetches = futures::executor::block_on(store.load())?;
//! assert!(fetches.is_empty());
//! # Ok(()) }
//! ```
//!
//! ## Threading
//!
//! redb's API blocks (file I/O, fsync). The store runs it on **one dedicated storage thread**
//! that owns the [`redb::Database`] and the body files; every [`Store`] method sends a message to
//! it and returns a future that a `futures::channel::oneshot` completes. The futures need no
//! particular runtime (tokio, `futures::executor`, the engine's deterministic test executor), and
//! nothing blocks an async worker thread. Only [`RedbStore::open`] (recovery) and dropping the
//! last handle (a final commit, then the thread is joined) block the caller; use
//! [`RedbStore::open_async`] and [`RedbStore::close`] to avoid that. An export
//! ([`Store::export_response_body`]) copies on a thread of its own.
//!
//! The storage thread takes operations in **batches** (everything waiting in the channel):
//! operations that must be durable when they reply change the in-memory model and wait, and one
//! commit at the end of the batch makes all of them durable, so records that complete together
//! (the engine downloads several records of a fetch in parallel) share one fsync: operations
//! that arrive while a commit runs are the next batch. [`RedbStoreConfig::group_commit_wait`]
//! can make a batch wait for more (off by default: it cost more time than it saved).
//!
//! One exception makes the engine and the disk work in parallel: a response body append that the
//! storage thread has validated in advance (the record's generation and next offset, published
//! after every operation) is queued under a mutex on the caller's thread and resolves at once,
//! while the queue holds less than [`RedbStoreConfig::group_commit_bytes`]; the storage thread
//! takes the queue before every operation, so every operation sees every append that resolved
//! before it. Other appends (and every append when a quota is configured) take the channel and
//! get the exact error, or wait: that is the backpressure.
//!
//! ## Where bytes live (schema version 2)
//!
//! * **Large bodies** (request and response bodies longer than
//!   [`RedbStoreConfig::inline_body_max`], 64 KiB by default) live in **append-only body files**
//!   in a directory beside the database, [`body_dir`]`(path)` = `<path>.bodies`: one file per
//!   response body generation (`<uid>-<record>-<generation>.response`, hexadecimal) and per
//!   request body (`<uid>-<record>.request`). Their bytes are written once, as a plain file's
//!   are, and the database keeps only their durable length.
//! * **Small bodies** stay **inline** in redb, as chunks of [`CHUNK_SIZE`] bytes, and share the
//!   transactions of the rows: a thousand small records cost a few commits. A body that grows
//!   past the limit moves to its file at its next commit.
//! * Everything else is in redb:
//!
//! | table | key | value |
//! |---|---|---|
//! | `bgfetch_schema` | `"version"`, `"commit_seq"`, `"uid_floor"` | `u64` |
//! | `fetches` | uid | `FetchMeta` (JSON): registration, id, downloadTotal, ... (its requests are rows of `requests`) |
//! | `requests` | (uid, record) | the record's `Request` (JSON) |
//! | `fetch_state` | uid | committed flag, paused / awaiting-permission / aborted flags, settled result (JSON) |
//! | `fetch_ui` | uid | title and icons set by `updateUI()` (JSON) |
//! | `fetch_index` | (storage key, registration scope, id, uid) | `()` |
//! | `records` | (uid, record) | state (pending / active / completed + result), generation, durable body length, request body length, where each body is (24 bytes) |
//! | `response_heads` | (uid, record) | `ResponseHead` (JSON) |
//! | `request_chunks` | (uid, record, chunk) | inline request body bytes |
//! | `body_chunks` | (uid, record, chunk) | inline response body bytes |
//!
//! Inline chunks are just under 1 MiB: redb stores a large value in a buddy-allocated run of
//! pages, so a chunk of exactly 2^k bytes plus its header would take 2^(k+1) bytes (research
//! §A.1.7). A store written by a newer schema, or a file that is not a store, is refused with an
//! [`OpenError`] naming the file, and left untouched.
//!
//! **Migration.** A store of schema version 1 (every body inline) is migrated in place when it
//! opens: its chunk layout is exactly a version 2 inline body and its metadata rows (which hold
//! their requests) are read as such, so the migration writes the new version number (which
//! version 1 code refuses to open) and creates the `requests` table; its large bodies move to
//! files as they grow, or when they are exported.
//!
//! **Memory.** The storage thread keeps a small model of every record (state, lengths, buffered
//! bytes), not the requests or response heads, which it reads from the database for `load()`.
//!
//! ## Durability contract
//!
//! * Appended body bytes are buffered in memory (readable at once by `read_response_body`).
//!   When [`RedbStoreConfig::group_commit_bytes`] are buffered, the bytes of bodies in files are
//!   written to their files (not synced: a *spill*, which bounds memory); at most
//!   [`RedbStoreConfig::group_commit_interval`] after they arrived, everything is committed.
//! * A **commit** writes and syncs (`fdatasync`) every changed body file first, syncs the body
//!   directory if files were created, and only then commits one redb transaction
//!   (`Durability::Immediate`) with the rows that count those bytes: **a row never counts a byte
//!   that is not durable** (deno's cache does the same for its bodies).
//! * `commit_fetch`, `complete_record`, `settle`, `set_flags`, `mark_request_sent`, `set_ui` and
//!   `delete_fetch` resolve only after a commit of everything written before them. **A record
//!   counts as completed only once its bytes and its completed state are durable**; the engine
//!   calls `complete_record` before it publishes a record's success, and `settle` before it fires
//!   the success event, so the event never fires for bytes that a crash could take back.
//!
//! ## Recovery rules (on open)
//!
//! * Every committed fetch comes back from `load()`, with its title and icons, flags, settled
//!   result and records.
//! * Fetches whose creation never committed (`create_fetch` without `commit_fetch`) are
//!   discarded: they were being created when the process died.
//! * An active record reports its durable body length; inline chunks past it are trimmed and its
//!   body file is cut to it. The engine resumes it with a Range request from there (validated as
//!   a partial response).
//! * Body files no row names (an older generation's, a deleted fetch's, one whose first commit
//!   did not land) are removed; files with names the store never makes are left alone.
//! * Nothing else is deleted on its own: fetches of service worker registrations that no longer
//!   exist are purged when the host says so ([`RedbStore::purge_registration`],
//!   [`RedbStore::retain_registrations`]). Deleting a fetch removes its files once the delete is
//!   durable.
//!
//! ## Export
//!
//! [`Store::export_response_body`] hands a completed record's body to a path: with
//! [`ExportMode::Move`] (the caller reads the body from the store no more, for example it deletes
//! the fetch next) a **hard link** to the body file on the same file system, so nothing is
//! copied; else a reflink (`FICLONE`) or `copy_file_range`; small inline bodies are written out.
//! The destination appears whole under its name (a temporary name beside it, synced, renamed,
//! directory synced), durable when the future resolves.
//!
//! ## Errors
//!
//! A write that the disk refuses (disk full: `QuotaExceeded`; other I/O errors: `Io`) fails the
//! fetch being written; other fetches commit. A body file write or sync that fails is retried
//! once; if it fails again, or the redb transaction fails, the fetch returns to its last
//! committed state (redb refuses further writes on a handle that saw an I/O error, so the store
//! reopens the database first). Its records that lost bytes are *poisoned*: their next append
//! (and a `complete_record` with `success`, and the `commit_fetch` of a fetch being created)
//! fails with the error, so the engine fails the fetch with `quota-exceeded` or `fetch-error`,
//! and nothing is ever reported complete (or created) that is not durable. Nothing committed
//! before is lost. A write that would take a storage key past [`RedbStoreConfig::quota`] (or the
//! store past [`RedbStoreConfig::max_total_bytes`]) fails with `QuotaExceeded` before anything is
//! written. `usage()` counts the body bytes held.
//!
//! ## File size
//!
//! A large body takes its own length on disk (plus the file system's block rounding). redb is
//! copy-on-write, so the database grows past the rows it holds; pages freed by deleted fetches
//! are reused, and once the store has been idle for [`RedbStoreConfig::compact_when_idle`] after
//! deletions, with at least [`RedbStoreConfig::compact_min_free_bytes`] free, it compacts the
//! database ([`RedbStore::compact`] does it on demand).
//!
//! ## Configuration
//!
//! [`RedbStoreConfig`]: redb's cache size (16 MiB at most, allocated as pages are used: with
//! bodies in files it holds rows), the inline limit (64 KiB), the group commit threshold (2 MiB)
//! and interval (500 ms), quick-repair, idle compaction, and optional quotas.
//!
//! ## The crate, module by module
//!
//! Opening a store reads top to bottom: `open` (the database file, the schema and its
//! migration), then `recovery`. The storage thread's state is `actor`; `op_loop` takes the
//! operations, `ops` applies them to the in-memory `model`, `quota` checks the store's limits,
//! `commit` writes (body files, then `rows` in one transaction), `revert` handles a write that
//! failed, and `export`, `compact` and `integrity` do the rest (`reports`: what they return).
//! `files` is the body file seam ([`BodyFs`]), `backend` the database's ([`BackendFactory`]),
//! `schema` the on-disk formats. Modules use only modules listed before them in `lib.rs`: no
//! import circle.

#![warn(missing_docs)]

// Leaves: settings, errors, the on-disk formats and where bytes go.
pub mod backend;
mod config;
mod error;
pub mod files;
mod ingress;
mod reports;
mod schema;
// The in-memory model and its rows in the database.
mod model;
mod rows;
// The storage thread: its state, then what it does, in the order a store's life runs.
mod actor;
mod commit;
mod compact;
mod embedder_rows;
mod export;
mod integrity;
mod op_loop;
mod open;
mod ops;
mod quota;
mod recovery;
mod revert;

pub use backend::{BackendFactory, file_backend_factory};
pub use config::{QuotaLimit, RedbStoreConfig};
pub use embedder_rows::{Row, RowWrite};
pub use error::OpenError;
pub use files::{BodyFile, BodyFs, DirFs, body_dir};
pub use reports::{CompactReport, IntegrityReport, StoreStats};
pub use schema::{CHUNK_SIZE, OLDEST_MIGRATED_VERSION, SCHEMA_VERSION};

use actor::{Actor, Op, PurgeFilter, Reply};
use background_fetch::store::{
    ExportMode, Exported, FetchMeta, Store, StoreError, StoreErrorKind, StoredFetch, StoredFlags,
};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchResult, FetchUid, ImageResource, RecordResult,
    ResponseHead, ServiceWorkerRegistrationId,
};
use bytes::Bytes;
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// The storage thread, its channel and the append fast path.
type Spawned = (JoinHandle<()>, mpsc::Sender<Op>, Arc<ingress::Ingress>);

struct Shared {
    ingress: Arc<ingress::Ingress>,
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Disconnecting makes the storage thread flush, close the file and exit.
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the storage thread panicked");
        }
    }
}

/// A [`Store`] in a redb file. Cloning gives another handle to the same store; the storage
/// thread flushes, closes the file and exits when the last handle is dropped (or at
/// [`RedbStore::close`]).
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.shared.path)
            .finish()
    }
}

fn panicked(path: &Path) -> OpenError {
    OpenError::Io {
        path: path.to_owned(),
        source: std::io::Error::other("the storage thread panicked while opening"),
    }
}

fn closed() -> StoreError {
    StoreError::new(StoreErrorKind::Closed, "the store is closed")
}

impl RedbStore {
    /// Opens the store at `path` (creating it if it does not exist) and runs recovery. Blocks
    /// until that is done; see [`RedbStore::open_async`].
    pub fn open(path: impl AsRef<Path>, config: RedbStoreConfig) -> Result<RedbStore, OpenError> {
        let path = path.as_ref().to_owned();
        let factory = file_backend_factory(&path);
        Self::open_with_backend(path, factory, config)
    }

    /// Opens a store whose database bytes live where `factory` says and whose body files live
    /// in `files` (for example a fault-injecting disk in tests). `path` names the store in
    /// errors and logs. Blocks until recovery is done.
    pub fn open_with_backends(
        path: impl Into<PathBuf>,
        factory: BackendFactory,
        files: Arc<dyn BodyFs>,
        config: RedbStoreConfig,
    ) -> Result<RedbStore, OpenError> {
        let path = path.into();
        let (opened_tx, opened_rx) = mpsc::channel();
        let spawned = Self::spawn(path.clone(), factory, files, config, move |r| {
            let _ = opened_tx.send(r);
        });
        let opened = opened_rx.recv().unwrap_or_else(|_| Err(panicked(&path)));
        Self::finish_open(path, spawned, opened)
    }

    /// Opens the store at `path` on its storage thread; the future completes once recovery is
    /// done.
    pub fn open_async(
        path: impl AsRef<Path>,
        config: RedbStoreConfig,
    ) -> impl Future<Output = Result<RedbStore, OpenError>> + Send + 'static {
        let path = path.as_ref().to_owned();
        let factory = file_backend_factory(&path);
        let files: Arc<dyn BodyFs> = Arc::new(DirFs::new(body_dir(&path)));
        let (opened_tx, opened_rx) = oneshot::channel();
        let spawned = Self::spawn(path.clone(), factory, files, config, move |r| {
            let _ = opened_tx.send(r);
        });
        async move {
            let opened = opened_rx.await.unwrap_or_else(|_| Err(panicked(&path)));
            Self::finish_open(path, spawned, opened)
        }
    }

    /// Opens a store whose database bytes live where `factory` says (for example a
    /// fault-injecting backend in tests, or an encrypting one), with its body files in
    /// [`body_dir`]`(path)`. `path` names the store in errors and logs. Blocks until recovery is
    /// done.
    pub fn open_with_backend(
        path: impl Into<PathBuf>,
        factory: BackendFactory,
        config: RedbStoreConfig,
    ) -> Result<RedbStore, OpenError> {
        let path = path.into();
        let files: Arc<dyn BodyFs> = Arc::new(DirFs::new(body_dir(&path)));
        Self::open_with_backends(path, factory, files, config)
    }

    /// Starts the storage thread, which opens the store and reports through `opened`.
    fn spawn(
        path: PathBuf,
        factory: BackendFactory,
        files: Arc<dyn BodyFs>,
        config: RedbStoreConfig,
        opened: impl FnOnce(Result<(), OpenError>) + Send + 'static,
    ) -> std::io::Result<Spawned> {
        let (tx, rx) = mpsc::channel::<Op>();
        // The fast path cannot check quotas: with quotas, every append goes to the thread.
        let fast = config.quota.is_none() && config.max_total_bytes.is_none();
        let ingress = Arc::new(ingress::Ingress::new(
            fast,
            config.group_commit_bytes.max(64 * 1024) as u64,
        ));
        let actor_ingress = ingress.clone();
        let thread = std::thread::Builder::new()
            .name("bgfetch-redb".into())
            .spawn(
                move || match Actor::open(path, factory, files, config, actor_ingress) {
                    Ok(actor) => {
                        opened(Ok(()));
                        actor.run(rx);
                    }
                    Err(e) => opened(Err(e)),
                },
            )?;
        Ok((thread, tx, ingress))
    }

    fn finish_open(
        path: PathBuf,
        spawned: std::io::Result<Spawned>,
        opened: Result<(), OpenError>,
    ) -> Result<RedbStore, OpenError> {
        let (thread, tx, ingress) = spawned.map_err(|source| OpenError::Io {
            path: path.clone(),
            source,
        })?;
        if let Err(e) = opened {
            let _ = thread.join();
            return Err(e);
        }
        Ok(RedbStore {
            shared: Arc::new(Shared {
                ingress,
                tx: Some(tx),
                thread: Some(thread),
                path,
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Op,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let (reply, rx) = oneshot::channel();
        if let Some(tx) = &self.shared.tx {
            // If the thread is gone the message (and its reply sender) is dropped: `closed`.
            let _ = tx.send(make(reply));
        }
        async move { rx.await.unwrap_or_else(|_| Err(closed())) }.boxed()
    }

    /// Deletes every fetch of service worker registration `registration` (which no longer
    /// exists, on the host's word). Returns the purged fetches. Call it before
    /// `Engine::start`, or use `Engine::unregister` while the engine runs.
    pub fn purge_registration(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BoxFuture<'static, Result<Vec<FetchUid>, StoreError>> {
        let r = registration.clone();
        self.call(move |reply| Op::Purge(PurgeFilter::Only(r), reply))
    }

    /// Deletes every fetch whose service worker registration is not in `live` (the host's list
    /// of registrations that still exist). Returns the purged fetches.
    pub fn retain_registrations(
        &self,
        live: impl IntoIterator<Item = ServiceWorkerRegistrationId>,
    ) -> BoxFuture<'static, Result<Vec<FetchUid>, StoreError>> {
        let keep = live.into_iter().collect();
        self.call(move |reply| Op::Purge(PurgeFilter::AllBut(keep), reply))
    }

    /// The service worker registrations that have fetches in the store.
    pub fn registrations(
        &self,
    ) -> BoxFuture<'static, Result<Vec<ServiceWorkerRegistrationId>, StoreError>> {
        self.call(Op::Registrations)
    }

    /// Writes the embedder's own rows of namespace `ns` (a value of `None` removes its row), in
    /// one durable transaction after every change buffered before it: data the embedder keeps
    /// beside the background fetches (the JavaScript host keeps its Cache API and its service
    /// worker registrations here). The engine never reads them, and no fetch refers to them.
    pub fn write_rows(
        &self,
        ns: &str,
        writes: Vec<RowWrite>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let ns = ns.to_owned();
        self.call(move |reply| Op::WriteRows(ns, writes, reply))
    }

    /// The embedder's rows of namespace `ns` whose key starts with `prefix`, in key order.
    pub fn rows(&self, ns: &str, prefix: &str) -> BoxFuture<'static, Result<Vec<Row>, StoreError>> {
        let (ns, prefix) = (ns.to_owned(), prefix.to_owned());
        self.call(move |reply| Op::Rows(ns, prefix, reply))
    }

    /// Commits everything buffered, durably.
    pub fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.call(Op::Flush)
    }

    /// Flushes, then checks the file: redb's checksums, and that every table agrees with every
    /// other (chunk sequences contiguous and matching the recorded lengths, valid states, no
    /// orphan rows). Reads the whole file.
    pub fn check_integrity(&self) -> BoxFuture<'static, Result<IntegrityReport, StoreError>> {
        self.call(Op::CheckIntegrity)
    }

    /// Flushes and compacts the file now (the store is unavailable meanwhile).
    pub fn compact(&self) -> BoxFuture<'static, Result<CompactReport, StoreError>> {
        self.call(Op::Compact)
    }

    /// Sizes of the file.
    pub fn stats(&self) -> BoxFuture<'static, Result<StoreStats, StoreError>> {
        self.call(Op::Stats)
    }

    /// Flushes and closes the file; every handle then fails with `Closed`. Dropping the last
    /// handle does the same, blocking.
    pub fn close(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.call(Op::Close)
    }
}

impl Store for RedbStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<StoredFetch>, StoreError>> {
        self.call(Op::Load)
    }

    fn uid_floor(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.call(Op::UidFloor)
    }

    fn usage(&self, storage_key: &str) -> BoxFuture<'_, Result<u64, StoreError>> {
        let key = storage_key.to_owned();
        self.call(move |reply| Op::Usage(key, reply))
    }

    fn create_fetch(&self, meta: FetchMeta) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::Create(Box::new(meta), reply))
    }

    fn append_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::AppendRequest(uid, record, bytes, reply))
    }

    fn commit_fetch(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::Commit(uid, flags, reply))
    }

    fn read_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        self.call(move |reply| Op::ReadRequest(uid, record, offset, max, reply))
    }

    fn begin_response(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        head: ResponseHead,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::Begin(uid, record, generation, Box::new(head), reply))
    }

    fn append_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        // The fast path: validated in advance by the storage thread, taken without waiting for
        // it (see the `ingress` module).
        if let Some(was_empty) = self
            .shared
            .ingress
            .try_append(uid.0, record, generation, offset, &bytes)
        {
            if was_empty && let Some(tx) = &self.shared.tx {
                let _ = tx.send(Op::Wake);
            }
            return futures::future::ready(Ok(())).boxed();
        }
        self.call(move |reply| Op::Append(uid, record, generation, offset, bytes, reply))
    }

    fn complete_record(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        result: RecordResult,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::Complete(uid, record, generation, result, reply))
    }

    fn read_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        self.call(move |reply| Op::Read(uid, record, generation, offset, max, reply))
    }

    fn set_flags(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::SetFlags(uid, flags, reply))
    }

    fn mark_request_sent(
        &self,
        uid: FetchUid,
        record: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::MarkRequestSent(uid, record, reply))
    }

    fn set_ui(
        &self,
        uid: FetchUid,
        title: String,
        icons: Vec<ImageResource>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::SetUi(uid, title, icons, reply))
    }

    fn settle(
        &self,
        uid: FetchUid,
        result: BackgroundFetchResult,
        failure_reason: BackgroundFetchFailureReason,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::Settle(uid, result, failure_reason, reply))
    }

    fn delete_fetch(&self, uid: FetchUid) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |reply| Op::Delete(uid, reply))
    }

    /// Links, reflinks or copies the body file (see the crate documentation, "Export").
    fn export_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        destination: PathBuf,
        mode: ExportMode,
    ) -> BoxFuture<'_, Result<Exported, StoreError>> {
        self.call(move |reply| Op::Export(uid, record, generation, destination, mode, reply))
    }
}
