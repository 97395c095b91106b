//! The storage thread: owns the redb [`Database`], an in-memory mirror of every fetch's metadata,
//! and the write buffers. Every operation of the [`Store`](background_fetch::Store) seam is a
//! message to it; it replies through a oneshot channel.
//!
//! # Commits
//!
//! Metadata changes and appended body bytes are kept in the mirror (marked dirty) and written by
//! a *flush*: one write transaction holding every dirty change of every fetch, plus the commit
//! sequence number. Flushes happen
//! * durably (`Durability::Immediate`) before `commit_fetch`, `complete_record`, `settle`,
//!   `set_paused`, `set_ui`, `delete_fetch` and the purges reply, and when the group commit
//!   interval expires;
//! * non-durably (`Durability::None`, whole chunks only) when the buffered bytes reach the group
//!   commit threshold, right after the append that crossed it replied: the next operation waits
//!   meanwhile (backpressure) while the writer prepares its next bytes.
//!
//! # Failures
//!
//! If a flush fails, the database is reopened (redb requires it after an I/O error) and the
//! commit sequence number tells whether the transaction reached the disk anyway. If it did not,
//! every dirty fetch is flushed on its own; a fetch whose flush fails again is reverted to what
//! the disk holds, and its records with lost bytes are *poisoned*: their next append fails with
//! the error, so the engine fails that fetch. Non-durable commits do not survive the reopen:
//! the fetches they touched are reverted and poisoned the same way.

use crate::backend::{BackendFactory, DynBackend};
use crate::config::RedbStoreConfig;
use crate::error::{OpenError, corrupt, store_error};
use crate::ingress::Ingress;
use crate::integrity::IntegrityReport;
use crate::schema::*;
use crate::{CompactReport, StoreStats};
use background_fetch::store::{
    FetchMeta, RecordState, StoreError, StoreErrorKind, StoredFetch, StoredFlags, StoredRecord,
};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchResult, FetchUid, ImageResource, RecordResult,
    ResponseHead, ServiceWorkerRegistrationId,
};
use bytes::Bytes;
use futures::channel::oneshot;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, StorageBackend, Table, TableHandle,
    WriteTransaction,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A message to the storage thread.
pub(crate) enum Op {
    Load(Reply<Vec<StoredFetch>>),
    Usage(String, Reply<u64>),
    Create(Box<FetchMeta>, Reply<()>),
    AppendRequest(FetchUid, usize, Bytes, Reply<()>),
    Commit(FetchUid, StoredFlags, Reply<()>),
    ReadRequest(FetchUid, usize, u64, usize, Reply<Bytes>),
    Begin(FetchUid, usize, u32, Box<ResponseHead>, Reply<()>),
    Append(FetchUid, usize, u32, u64, Bytes, Reply<()>),
    Complete(FetchUid, usize, u32, RecordResult, Reply<()>),
    Read(FetchUid, usize, u32, u64, usize, Reply<Bytes>),
    SetFlags(FetchUid, StoredFlags, Reply<()>),
    MarkRequestSent(FetchUid, usize, Reply<()>),
    SetUi(FetchUid, String, Vec<ImageResource>, Reply<()>),
    Settle(
        FetchUid,
        BackgroundFetchResult,
        BackgroundFetchFailureReason,
        Reply<()>,
    ),
    Delete(FetchUid, Reply<()>),
    Registrations(Reply<Vec<ServiceWorkerRegistrationId>>),
    Purge(PurgeFilter, Reply<Vec<FetchUid>>),
    Flush(Reply<()>),
    CheckIntegrity(Reply<IntegrityReport>),
    Compact(Reply<CompactReport>),
    Stats(Reply<StoreStats>),
    Close(Reply<()>),
    UidFloor(Reply<u64>),
    /// The append fast path queued bytes.
    Wake,
}

/// Which registrations a purge removes.
pub(crate) enum PurgeFilter {
    /// Exactly this one.
    Only(ServiceWorkerRegistrationId),
    /// Every one not in the set.
    AllBut(HashSet<ServiceWorkerRegistrationId>),
}

/// A request or response body: `flushed` bytes in the database, then `buf` in memory.
#[derive(Debug, Default)]
struct Body {
    flushed: u64,
    buf: VecDeque<Bytes>,
    buf_len: u64,
    /// The chunks in the database belong to an older generation: delete them at the next flush.
    truncate: bool,
}

impl Body {
    fn len(&self) -> u64 {
        self.flushed + self.buf_len
    }

    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.buf_len += bytes.len() as u64;
            self.buf.push_back(bytes);
        }
    }

    /// Bytes to flush: all of them, or only up to the last chunk boundary.
    fn to_flush(&self, full: bool) -> u64 {
        if full {
            return self.buf_len;
        }
        let end = self.len();
        let boundary = end - end % CHUNK_SIZE as u64;
        boundary.saturating_sub(self.flushed)
    }

    /// Drops `n` flushed bytes from the front of the buffer.
    fn consume(&mut self, mut n: u64) {
        self.flushed += n;
        self.buf_len -= n;
        while n > 0 {
            let front = self.buf.front_mut().expect("consumed bytes are buffered");
            if (front.len() as u64) <= n {
                n -= front.len() as u64;
                self.buf.pop_front();
            } else {
                let _ = front.split_to(n as usize);
                n = 0;
            }
        }
    }

    /// Up to `max` buffered bytes from buffer offset `at` (a zero-copy slice). `max` may be
    /// anything up to `usize::MAX`.
    fn read_buffered(&self, mut at: u64, max: usize) -> Bytes {
        for seg in &self.buf {
            let len = seg.len() as u64;
            if at < len {
                let end = (at as usize).saturating_add(max).min(seg.len());
                return seg.slice(at as usize..end);
            }
            at -= len;
        }
        Bytes::new()
    }

    fn is_dirty(&self) -> bool {
        self.buf_len > 0 || self.truncate
    }
}

#[derive(Debug)]
struct Rec {
    state: RecordState,
    generation: u32,
    response: Option<ResponseHead>,
    body: Body,
    request: Body,
    /// The (non-GET) request may have been sent: never send it again.
    request_sent: bool,
    /// The row (state, generation) changed.
    row_dirty: bool,
    /// The response head changed.
    head_dirty: bool,
    /// Bytes appended to this record were lost by a failed write: appends fail with this.
    poison: Option<StoreError>,
}

impl Rec {
    fn pending() -> Rec {
        Rec {
            state: RecordState::Pending,
            generation: 0,
            response: None,
            body: Body::default(),
            request: Body::default(),
            request_sent: false,
            row_dirty: true,
            head_dirty: false,
            poison: None,
        }
    }

    fn is_dirty(&self) -> bool {
        self.row_dirty || self.head_dirty || self.body.is_dirty() || self.request.is_dirty()
    }

    fn bytes(&self) -> u64 {
        self.body.len() + self.request.len()
    }
}

#[derive(Debug)]
struct Fetch {
    /// The metadata, with the current title and icons.
    meta: FetchMeta,
    committed: bool,
    flags: StoredFlags,
    settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
    /// `updateUI()` set the title and icons.
    ui_set: bool,
    records: Vec<Rec>,
    meta_dirty: bool,
    state_dirty: bool,
    ui_dirty: bool,
    /// Changes of this fetch were committed non-durably since the last durable commit: they
    /// are lost if an I/O error makes the store reopen the file.
    nondurable: bool,
}

impl Fetch {
    fn is_dirty(&self) -> bool {
        self.meta_dirty
            || self.state_dirty
            || self.ui_dirty
            || self.records.iter().any(Rec::is_dirty)
    }

    fn bytes(&self) -> u64 {
        self.records.iter().map(Rec::bytes).sum()
    }

    fn stored(&self) -> StoredFetch {
        StoredFetch {
            meta: self.meta.clone(),
            upload_total: self.records.iter().map(|r| r.request.len()).sum(),
            flags: self.flags,
            settled: self.settled,
            records: self
                .records
                .iter()
                .map(|r| StoredRecord {
                    state: r.state,
                    response: r.response.clone(),
                    generation: r.generation,
                    body_length: r.body.len(),
                    request_sent: r.request_sent,
                })
                .collect(),
        }
    }
}

/// Index key of a fetch in [`FETCH_INDEX`].
#[derive(Clone, Debug)]
struct IndexKey {
    storage_key: String,
    scope: String,
    id: String,
}

impl IndexKey {
    fn of(meta: &FetchMeta) -> IndexKey {
        IndexKey {
            storage_key: meta.registration.storage_key.clone(),
            scope: meta.registration.scope.clone(),
            id: meta.id.clone(),
        }
    }
}

/// Which fetches a flush covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    All,
    One(u64),
}

impl Scope {
    fn covers(self, uid: u64) -> bool {
        match self {
            Scope::All => true,
            Scope::One(u) => u == uid,
        }
    }
}

/// What a flush wrote, applied to the mirror once the commit is known to have landed.
#[derive(Default)]
struct Plan {
    fetches: Vec<u64>,
    /// (uid, record, response bytes, request bytes)
    bodies: Vec<(u64, usize, u64, u64)>,
    deleted: Vec<u64>,
}

/// Per-fetch results of a flush: the fetches whose changes could not be written.
#[derive(Default)]
pub(crate) struct FlushOutcome {
    failed: HashMap<u64, StoreError>,
}

/// Tracks the length of the storage, for compaction decisions.
#[derive(Debug)]
struct LenTracking {
    inner: DynBackend,
    len: Arc<AtomicU64>,
}

impl StorageBackend for LenTracking {
    fn len(&self) -> Result<u64, std::io::Error> {
        let l = self.inner.len()?;
        self.len.store(l, Ordering::Relaxed);
        Ok(l)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)?;
        self.len.store(len, Ordering::Relaxed);
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Opens the database: checks the file, the schema version, and runs recovery.
fn open_database(
    path: &Path,
    factory: &BackendFactory,
    config: &RedbStoreConfig,
    file_len: &Arc<AtomicU64>,
) -> Result<Database, OpenError> {
    let backend = factory().map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let len = backend.len().map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    if len > 0 {
        let mut head = vec![0u8; (len as usize).min(REDB_MAGIC.len())];
        backend.read(0, &mut head).map_err(|source| OpenError::Io {
            path: path.to_owned(),
            source,
        })?;
        if head != REDB_MAGIC {
            return Err(OpenError::NotAStore {
                path: path.to_owned(),
                reason: format!("the file ({len} bytes) is not a redb database"),
            });
        }
    }
    if len > 0 && path.is_file() {
        // Check the schema read-only first, so that a file we refuse is never written to
        // (opening a redb file for writing marks it as open in its header).
        precheck_read_only(path, config)?;
    }
    file_len.store(len, Ordering::Relaxed);
    let backend = LenTracking {
        inner: DynBackend(backend),
        len: file_len.clone(),
    };
    let db = redb::Builder::new()
        .set_cache_size(config.cache_size)
        .create_with_backend(backend)
        .map_err(|e| OpenError::db(path, e))?;
    Ok(db)
}

/// Checks the schema of an existing file without writing to it.
fn precheck_read_only(path: &Path, config: &RedbStoreConfig) -> Result<(), OpenError> {
    let db = match redb::Builder::new()
        .set_cache_size(config.cache_size.min(1 << 20))
        .open_read_only(path)
    {
        Ok(db) => db,
        // A file that needs a repair (after a crash) cannot be opened read-only: the writable
        // open repairs it, and the schema is checked after that.
        Err(redb::DatabaseError::RepairAborted) => return Ok(()),
        Err(e) => return Err(OpenError::db(path, e)),
    };
    let read = db
        .begin_read()
        .map_err(|e| OpenError::db(path, redb::Error::from(e)))?;
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| OpenError::db(path, redb::Error::from(e)))?
        .map(|t| t.name().to_owned())
        .collect();
    if tables.is_empty() {
        // An empty database: the writable open creates the schema.
        return Ok(());
    }
    schema_version_ok(&read, &tables, path)
}

/// Whether the schema table says a version this build reads. Errors name `path`.
fn schema_version_ok(
    read: &redb::ReadTransaction,
    tables: &[String],
    path: &Path,
) -> Result<(), OpenError> {
    let err = |e: redb::Error| OpenError::db(path, e);
    if !tables.iter().any(|t| t == "bgfetch_schema") {
        return Err(OpenError::NotAStore {
            path: path.to_owned(),
            reason: format!(
                "a redb database without a bgfetch_schema table (it has {})",
                tables.join(", ")
            ),
        });
    }
    let t = read.open_table(SCHEMA).map_err(|e| err(e.into()))?;
    let version = t
        .get(VERSION_KEY)
        .map_err(|e| err(e.into()))?
        .map(|v| v.value());
    match version {
        None => Err(OpenError::Corrupt {
            path: path.to_owned(),
            reason: "the schema table has no version".into(),
        }),
        Some(v) if v > SCHEMA_VERSION => Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Some(0) => Err(OpenError::Corrupt {
            path: path.to_owned(),
            reason: "invalid schema version 0".into(),
        }),
        Some(_) => Ok(()),
    }
}

/// Checks the schema table, creating it in a new file. Errors name `path`.
fn check_schema(db: &Database, path: &Path) -> Result<(), OpenError> {
    let err = |e: redb::Error| OpenError::db(path, e);
    let read = db.begin_read().map_err(|e| err(e.into()))?;
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| err(e.into()))?
        .map(|t| t.name().to_owned())
        .collect();
    if !tables.is_empty() {
        return schema_version_ok(&read, &tables, path);
    }
    drop(read);
    // A new (or never initialised) file: create the schema.
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut schema = txn.open_table(SCHEMA).map_err(|e| err(e.into()))?;
        schema
            .insert(VERSION_KEY, SCHEMA_VERSION)
            .map_err(|e| err(e.into()))?;
        schema
            .insert(COMMIT_SEQ_KEY, 0)
            .map_err(|e| err(e.into()))?;
        txn.open_table(FETCHES).map_err(|e| err(e.into()))?;
        txn.open_table(FETCH_STATE).map_err(|e| err(e.into()))?;
        txn.open_table(FETCH_UI).map_err(|e| err(e.into()))?;
        txn.open_table(FETCH_INDEX).map_err(|e| err(e.into()))?;
        txn.open_table(RECORDS).map_err(|e| err(e.into()))?;
        txn.open_table(RESPONSE_HEADS).map_err(|e| err(e.into()))?;
        txn.open_table(REQUEST_CHUNKS).map_err(|e| err(e.into()))?;
        txn.open_table(BODY_CHUNKS).map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))?;
    tracing::info!(path = %path.display(), version = SCHEMA_VERSION, "created a new store");
    Ok(())
}

/// Reads every fetch from the database.
fn read_all_fetches(db: &Database) -> Result<BTreeMap<u64, Fetch>, StoreError> {
    let read = db
        .begin_read()
        .map_err(|e| store_error("begin a read", e))?;
    let fetches = read
        .open_table(FETCHES)
        .map_err(|e| store_error("open fetches", e))?;
    let mut uids = Vec::new();
    for entry in fetches.iter().map_err(|e| store_error("read fetches", e))? {
        let (k, _) = entry.map_err(|e| store_error("read fetches", e))?;
        uids.push(k.value());
    }
    drop(fetches);
    let mut out = BTreeMap::new();
    for uid in uids {
        if let Some(f) = read_fetch(&read, uid)? {
            out.insert(uid, f);
        }
    }
    Ok(out)
}

/// Reads one fetch (as the last commit left it).
fn read_fetch(read: &redb::ReadTransaction, uid: u64) -> Result<Option<Fetch>, StoreError> {
    let e = |what: &'static str| move |e: redb::Error| store_error(what, e);
    let fetches = read
        .open_table(FETCHES)
        .map_err(|x| e("open fetches")(x.into()))?;
    let Some(meta) = fetches.get(uid).map_err(|x| e("read a fetch")(x.into()))? else {
        return Ok(None);
    };
    let mut meta: FetchMeta = serde_json::from_slice(meta.value())
        .map_err(|x| corrupt(format!("fetch {uid}: unreadable metadata: {x}")))?;
    let state_t = read
        .open_table(FETCH_STATE)
        .map_err(|x| e("open fetch_state")(x.into()))?;
    let state: FetchStateRow = match state_t
        .get(uid)
        .map_err(|x| e("read a fetch state")(x.into()))?
    {
        Some(v) => serde_json::from_slice(v.value())
            .map_err(|x| corrupt(format!("fetch {uid}: unreadable state: {x}")))?,
        None => return Err(corrupt(format!("fetch {uid} has no state row"))),
    };
    let ui_t = read
        .open_table(FETCH_UI)
        .map_err(|x| e("open fetch_ui")(x.into()))?;
    let mut ui_set = false;
    if let Some(v) = ui_t.get(uid).map_err(|x| e("read a fetch ui")(x.into()))? {
        let ui: UiRow = serde_json::from_slice(v.value())
            .map_err(|x| corrupt(format!("fetch {uid}: unreadable title and icons: {x}")))?;
        meta.title = ui.title;
        meta.icons = ui.icons;
        ui_set = true;
    }
    let records_t = read
        .open_table(RECORDS)
        .map_err(|x| e("open records")(x.into()))?;
    let heads_t = read
        .open_table(RESPONSE_HEADS)
        .map_err(|x| e("open response_heads")(x.into()))?;
    let mut records = Vec::with_capacity(meta.requests.len());
    for i in 0..meta.requests.len() {
        let key = (uid, i as u32);
        let row = match records_t
            .get(key)
            .map_err(|x| e("read a record")(x.into()))?
        {
            Some(v) => RecordRow::decode(v.value())
                .ok_or_else(|| corrupt(format!("fetch {uid} record {i}: unreadable row")))?,
            None => return Err(corrupt(format!("fetch {uid} record {i} has no row"))),
        };
        let response = match heads_t
            .get(key)
            .map_err(|x| e("read a response head")(x.into()))?
        {
            Some(v) => Some(serde_json::from_slice(v.value()).map_err(|x| {
                corrupt(format!(
                    "fetch {uid} record {i}: unreadable response head: {x}"
                ))
            })?),
            None => None,
        };
        records.push(Rec {
            state: row.state,
            generation: row.generation,
            response,
            body: Body {
                flushed: row.body_len,
                ..Body::default()
            },
            request: Body {
                flushed: row.request_len,
                ..Body::default()
            },
            request_sent: row.request_sent,
            row_dirty: false,
            head_dirty: false,
            poison: None,
        });
    }
    Ok(Some(Fetch {
        meta,
        committed: state.committed,
        flags: state.flags(),
        settled: state.settled,
        ui_set,
        records,
        meta_dirty: false,
        state_dirty: false,
        ui_dirty: false,
        nondurable: false,
    }))
}

type ChunkTable<'t> = Table<'t, (u64, u32, u32), &'static [u8]>;

/// Deletes chunks of (uid, record) from chunk index `from` on.
fn delete_chunks_from(
    t: &mut ChunkTable<'_>,
    uid: u64,
    rec: u32,
    from: u32,
) -> Result<u64, redb::Error> {
    let mut n = 0;
    t.retain_in((uid, rec, from)..=(uid, rec, u32::MAX), |_, _| {
        n += 1;
        false
    })?;
    Ok(n)
}

/// Writes bytes [start, start + n) of a body, taking them from the front of `buf`. A chunk that
/// is partly stored already is rewritten with its stored prefix.
fn write_chunks(
    t: &mut ChunkTable<'_>,
    uid: u64,
    rec: u32,
    start: u64,
    buf: &VecDeque<Bytes>,
    n: u64,
) -> Result<(), redb::Error> {
    let chunk = CHUNK_SIZE as u64;
    let end = start + n;
    let mut pos = start;
    let mut seg = 0usize;
    let mut seg_off = 0usize;
    while pos < end {
        let idx = (pos / chunk) as u32;
        let within = (pos % chunk) as usize;
        let chunk_end = ((idx as u64 + 1) * chunk).min(end);
        let take = (chunk_end - pos) as usize;
        let prefix = if within > 0 {
            let old = t.get((uid, rec, idx))?.ok_or_else(|| {
                redb::Error::Corrupted(format!(
                    "fetch {uid} record {rec}: chunk {idx} is missing below the stored length"
                ))
            })?;
            let old = old.value();
            if old.len() < within {
                return Err(redb::Error::Corrupted(format!(
                    "fetch {uid} record {rec}: chunk {idx} is shorter than the stored length"
                )));
            }
            Some(old[..within].to_vec())
        } else {
            None
        };
        let mut guard = t.insert_reserve((uid, rec, idx), within + take)?;
        let out: &mut [u8] = guard.as_mut();
        if let Some(p) = prefix {
            out[..within].copy_from_slice(&p);
        }
        let mut filled = within;
        while filled < within + take {
            let s = &buf[seg];
            let avail = s.len() - seg_off;
            let want = within + take - filled;
            let k = avail.min(want);
            out[filled..filled + k].copy_from_slice(&s[seg_off..seg_off + k]);
            filled += k;
            seg_off += k;
            if seg_off == s.len() {
                seg += 1;
                seg_off = 0;
            }
        }
        pos = chunk_end;
    }
    Ok(())
}

/// The storage thread's state.
pub(crate) struct Actor {
    /// Appends taken on the callers' threads (see [`crate::ingress`]).
    ingress: Arc<Ingress>,
    path: PathBuf,
    factory: BackendFactory,
    config: RedbStoreConfig,
    db: Option<Database>,
    /// Why the database is closed, if it could not be reopened.
    broken: Option<StoreError>,
    file_len: Arc<AtomicU64>,
    fetches: BTreeMap<u64, Fetch>,
    /// Fetches deleted whose rows are still in the database (with their number of records).
    deleting: BTreeMap<u64, (IndexKey, usize)>,
    /// Fetches reverted to their durable state during the current operation, with why.
    reverted: HashMap<u64, StoreError>,
    /// Deletes committed non-durably (lost if the file must be reopened).
    nondurable_deletes: BTreeMap<u64, (IndexKey, usize)>,
    /// Fetches that vanished because their creation could not be written.
    lost: HashMap<u64, StoreError>,
    seq: u64,
    /// One more than the highest uid ever created (persisted under `UID_FLOOR_KEY` with every
    /// commit; only grows).
    uid_floor: u64,
    /// A non-durable commit happened since the last durable one.
    need_durable: bool,
    /// When the oldest unflushed change was made.
    dirty_since: Option<Instant>,
    last_activity: Instant,
    /// Fetches were deleted since the last compaction check.
    compact_candidate: bool,
}

impl Actor {
    /// Opens the store (on the storage thread).
    pub(crate) fn open(
        path: PathBuf,
        factory: BackendFactory,
        config: RedbStoreConfig,
        ingress: Arc<Ingress>,
    ) -> Result<Actor, OpenError> {
        let file_len = Arc::new(AtomicU64::new(0));
        let db = open_database(&path, &factory, &config, &file_len)?;
        check_schema(&db, &path)?;
        let mut actor = Actor {
            ingress,
            path,
            factory,
            config,
            db: Some(db),
            broken: None,
            file_len,
            fetches: BTreeMap::new(),
            deleting: BTreeMap::new(),
            nondurable_deletes: BTreeMap::new(),
            reverted: HashMap::new(),
            lost: HashMap::new(),
            seq: 0,
            uid_floor: 0,
            need_durable: false,
            dirty_since: None,
            last_activity: Instant::now(),
            compact_candidate: true,
        };
        actor.recover().map_err(|e| match e.kind {
            StoreErrorKind::Corrupt => OpenError::Corrupt {
                path: actor.path.clone(),
                reason: e.message,
            },
            _ => OpenError::Io {
                path: actor.path.clone(),
                source: std::io::Error::other(e.message),
            },
        })?;
        Ok(actor)
    }

    fn db(&self) -> &Database {
        self.db.as_ref().expect("the database is open")
    }

    fn read_schema_value(&self, key: &str) -> Result<u64, StoreError> {
        let read = self
            .db()
            .begin_read()
            .map_err(|e| store_error("begin a read", e))?;
        let t = read
            .open_table(SCHEMA)
            .map_err(|e| store_error("open the schema table", e))?;
        Ok(t.get(key)
            .map_err(|e| store_error("read the schema table", e))?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn read_seq(&self) -> Result<u64, StoreError> {
        let read = self
            .db()
            .begin_read()
            .map_err(|e| store_error("begin a read", e))?;
        let t = read
            .open_table(SCHEMA)
            .map_err(|e| store_error("open the schema table", e))?;
        Ok(t.get(COMMIT_SEQ_KEY)
            .map_err(|e| store_error("read the commit sequence", e))?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Recovery at open: loads every fetch, discards uncommitted ones, trims chunks past each
    /// record's durable length.
    fn recover(&mut self) -> Result<(), StoreError> {
        self.seq = self.read_seq()?;
        self.uid_floor = self.uid_floor.max(self.read_schema_value(UID_FLOOR_KEY)?);
        let mut fetches = read_all_fetches(self.db())?;
        let uncommitted: Vec<u64> = fetches
            .iter()
            .filter(|(_, f)| !f.committed)
            .map(|(u, _)| *u)
            .collect();
        let txn = self.begin_write(true)?;
        let mut changed = false;
        {
            let w = |e: redb::Error| store_error("recovery", e);
            let mut body_t = txn.open_table(BODY_CHUNKS).map_err(|e| w(e.into()))?;
            let mut records_t = txn.open_table(RECORDS).map_err(|e| w(e.into()))?;
            for uid in &uncommitted {
                let f = fetches.remove(uid).expect("listed");
                tracing::info!(uid, id = %f.meta.id, "discarding a fetch whose creation never committed");
                let key = IndexKey::of(&f.meta);
                drop(body_t);
                drop(records_t);
                delete_fetch_rows(&txn, *uid, &key).map_err(w)?;
                body_t = txn.open_table(BODY_CHUNKS).map_err(|e| w(e.into()))?;
                records_t = txn.open_table(RECORDS).map_err(|e| w(e.into()))?;
                changed = true;
            }
            for (uid, f) in fetches.iter_mut() {
                for (i, r) in f.records.iter_mut().enumerate() {
                    // Only active records can have been written since their last durable
                    // commit (completed ones committed their bytes with their state, request
                    // bodies were committed with the fetch), and checking reads the last chunk:
                    // the cost stays bounded by the number of downloads in flight.
                    if r.state != RecordState::Active {
                        continue;
                    }
                    let i = i as u32;
                    let mut row_changed = false;
                    let trim = trim_chunks(&mut body_t, *uid, i, r.body.flushed).map_err(w)?;
                    if trim.changed {
                        changed = true;
                    }
                    if trim.len != r.body.flushed {
                        tracing::error!(
                            uid,
                            record = i,
                            durable = r.body.flushed,
                            found = trim.len,
                            "bytes below the durable length are missing; keeping what is there"
                        );
                        r.body.flushed = trim.len;
                        row_changed = true;
                    }
                    if row_changed {
                        let row = RecordRow {
                            state: r.state,
                            generation: r.generation,
                            body_len: r.body.flushed,
                            request_len: r.request.flushed,
                            request_sent: r.request_sent,
                        };
                        records_t
                            .insert((*uid, i), row.encode().as_slice())
                            .map_err(|e| w(e.into()))?;
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.seq += 1;
            {
                let mut schema = txn
                    .open_table(SCHEMA)
                    .map_err(|e| store_error("recovery", e))?;
                schema
                    .insert(COMMIT_SEQ_KEY, self.seq)
                    .map_err(|e| store_error("recovery", e))?;
            }
            txn.commit().map_err(|e| store_error("recovery", e))?;
        } else {
            txn.abort().map_err(|e| store_error("recovery", e))?;
        }
        let active = fetches
            .values()
            .flat_map(|f| &f.records)
            .filter(|r| r.state == RecordState::Active)
            .count();
        tracing::info!(
            path = %self.path.display(),
            fetches = fetches.len(),
            active_records = active,
            discarded = uncommitted.len(),
            "store opened"
        );
        self.fetches = fetches;
        self.sync_ingress();
        Ok(())
    }

    fn begin_write(&self, durable: bool) -> Result<WriteTransaction, StoreError> {
        let mut txn = self
            .db()
            .begin_write()
            .map_err(|e| store_error("begin a write", e))?;
        if durable {
            if self.config.quick_repair {
                txn.set_quick_repair(true);
            }
        } else {
            txn.set_durability(Durability::None)
                .map_err(|e| store_error("set durability", e))?;
        }
        Ok(txn)
    }

    // ----- the loop -----

    /// Runs until every handle is dropped or `Close` arrives.
    pub(crate) fn run(mut self, rx: Receiver<Op>) {
        loop {
            let deadline = self.next_deadline();
            let msg = match deadline {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            match msg {
                Ok(Op::Close(reply)) => {
                    let r = self.close();
                    let _ = reply.send(r);
                    return;
                }
                Ok(op) => {
                    self.last_activity = Instant::now();
                    self.handle(op);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_ingress();
                    self.tick();
                    self.sync_ingress();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(e) = self.close() {
                        tracing::error!(error = %e, "closing the store failed");
                    }
                    return;
                }
            }
        }
    }

    fn close(&mut self) -> Result<(), StoreError> {
        // No fast append may be taken once the final flush has drained the queue.
        self.ingress.lock().enabled = false;
        self.sync_ingress();
        let r = if self.is_dirty() || self.need_durable {
            self.flush(true, true).map(|_| ())
        } else {
            Ok(())
        };
        self.db = None;
        tracing::info!(path = %self.path.display(), "store closed");
        r
    }

    fn next_deadline(&self) -> Option<Instant> {
        let commit = self
            .dirty_since
            .map(|t| t + self.config.group_commit_interval);
        let compact = match self.config.compact_when_idle {
            Some(idle) if self.compact_candidate && self.db.is_some() => {
                Some(self.last_activity + idle)
            }
            _ => None,
        };
        match (commit, compact) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if let Some(since) = self.dirty_since
            && now >= since + self.config.group_commit_interval
        {
            if let Err(e) = self.flush(true, true) {
                tracing::error!(error = %e, "group commit failed");
                // Try again one interval later.
                self.dirty_since = Some(now);
            }
            return;
        }
        if let Some(idle) = self.config.compact_when_idle
            && self.compact_candidate
            && self.dirty_since.is_none()
            && now >= self.last_activity + idle
        {
            self.compact_candidate = false;
            match self.compact_if_worth_it() {
                Ok(Some(r)) => tracing::info!(?r, "compacted the store while idle"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "idle compaction failed"),
            }
        }
    }

    fn is_dirty(&self) -> bool {
        !self.deleting.is_empty() || self.fetches.values().any(Fetch::is_dirty)
    }

    fn mark_dirty(&mut self) {
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    pub(crate) fn buffered_bytes(&self) -> u64 {
        self.fetches
            .values()
            .flat_map(|f| &f.records)
            .map(|r| r.body.buf_len + r.request.buf_len)
            .sum()
    }

    // ----- operations -----

    fn handle(&mut self, op: Op) {
        self.reverted.clear();
        self.sync_ingress();
        let reply = self.handle_op(op);
        self.sync_ingress();
        reply();
        self.group_commit_if_due();
    }

    /// Moves the appends the fast path queued into the buffers, then publishes what the next
    /// append to each record must say. Both under the queue's lock, so that no append slips
    /// between the two.
    fn sync_ingress(&mut self) {
        let ingress = self.ingress.clone();
        let mut st = ingress.lock();
        let pending = std::mem::take(&mut st.pending);
        st.bytes = 0;
        for p in pending {
            if let Err(e) =
                self.append(p.uid, p.record, Some(p.generation), Some(p.offset), p.bytes)
            {
                // Cannot happen (the fast path checked the same conditions); if it does, the
                // record must not go on as if the bytes were stored.
                tracing::warn!(uid = p.uid, record = p.record, error = %e, "a queued append was refused");
                if let Ok(r) = self.record_mut(p.uid, p.record) {
                    r.poison = Some(e);
                }
            }
        }
        st.expect.clear();
        if !st.enabled || self.broken.is_some() {
            return;
        }
        for (uid, f) in &self.fetches {
            for (i, r) in f.records.iter().enumerate() {
                // Only records being downloaded: the map stays as small as the downloads in
                // flight, whatever the number of records.
                if r.poison.is_none() && r.state == RecordState::Active {
                    st.expect.insert(
                        (*uid, i),
                        crate::ingress::Expect {
                            generation: r.generation,
                            next: r.body.len(),
                        },
                    );
                }
            }
        }
    }

    /// Runs `op`; returns the sending of its reply, which `handle` runs once the fast path's
    /// expectations reflect the operation (so that no append can be taken on stale ones by a
    /// caller that saw the reply).
    fn handle_op(&mut self, op: Op) -> Box<dyn FnOnce() + Send> {
        match op {
            Op::Load(reply) => deferred(reply, self.load()),
            Op::Usage(key, reply) => deferred(reply, Ok(self.usage(&key))),
            Op::UidFloor(reply) => deferred(reply, Ok(self.uid_floor)),
            Op::Create(meta, reply) => deferred(reply, self.create(*meta)),
            Op::AppendRequest(uid, rec, bytes, reply) => {
                deferred(reply, self.append(uid.0, rec, None, None, bytes))
            }
            Op::Commit(uid, flags, reply) => deferred(reply, self.commit(uid.0, flags)),
            Op::ReadRequest(uid, rec, offset, max, reply) => {
                deferred(reply, self.read(uid.0, rec, None, offset, max))
            }
            Op::Begin(uid, rec, generation, head, reply) => {
                deferred(reply, self.begin(uid.0, rec, generation, *head))
            }
            Op::Append(uid, rec, generation, offset, bytes, reply) => deferred(
                reply,
                self.append(uid.0, rec, Some(generation), Some(offset), bytes),
            ),
            Op::Complete(uid, rec, generation, result, reply) => {
                deferred(reply, self.complete(uid.0, rec, generation, result))
            }
            Op::Read(uid, rec, generation, offset, max, reply) => {
                deferred(reply, self.read(uid.0, rec, Some(generation), offset, max))
            }
            Op::SetFlags(uid, flags, reply) => {
                let r = self.change_fetch(uid.0, |f| {
                    f.flags = flags;
                    f.state_dirty = true;
                });
                deferred(reply, r)
            }
            Op::MarkRequestSent(uid, rec, reply) => {
                let r = self.mark_request_sent(uid.0, rec);
                deferred(reply, r)
            }
            Op::SetUi(uid, title, icons, reply) => {
                let r = self.change_fetch(uid.0, |f| {
                    f.meta.title = title;
                    f.meta.icons = icons;
                    f.ui_set = true;
                    f.ui_dirty = true;
                });
                deferred(reply, r)
            }
            Op::Settle(uid, result, reason, reply) => {
                let r = self.change_fetch(uid.0, |f| {
                    f.settled = Some((result, reason));
                    f.state_dirty = true;
                });
                deferred(reply, r)
            }
            Op::Delete(uid, reply) => deferred(reply, self.delete(&[uid.0])),
            Op::Registrations(reply) => {
                let mut regs: Vec<_> = self
                    .fetches
                    .values()
                    .map(|f| f.meta.registration.clone())
                    .collect();
                regs.sort();
                regs.dedup();
                deferred(reply, Ok(regs))
            }
            Op::Purge(filter, reply) => {
                let victims: Vec<u64> = self
                    .fetches
                    .iter()
                    .filter(|(_, f)| match &filter {
                        PurgeFilter::Only(r) => &f.meta.registration == r,
                        PurgeFilter::AllBut(keep) => !keep.contains(&f.meta.registration),
                    })
                    .map(|(u, _)| *u)
                    .collect();
                for uid in &victims {
                    let f = &self.fetches[uid];
                    tracing::info!(
                        uid,
                        id = %f.meta.id,
                        scope = %f.meta.registration.scope,
                        "purging a fetch of a service worker registration that no longer exists"
                    );
                }
                let r = self
                    .delete(&victims)
                    .map(|()| victims.into_iter().map(FetchUid).collect());
                deferred(reply, r)
            }
            Op::Flush(reply) => deferred(reply, self.flush(true, true).map(|_| ())),
            Op::CheckIntegrity(reply) => deferred(reply, self.check_integrity()),
            Op::Compact(reply) => deferred(reply, self.compact()),
            Op::Stats(reply) => deferred(reply, self.stats()),
            Op::Wake => Box::new(|| {}),
            Op::Close(_) => unreachable!("handled by run"),
        }
    }

    fn fetch_mut(&mut self, uid: u64) -> Result<&mut Fetch, StoreError> {
        if let Some(e) = self.lost.get(&uid) {
            return Err(e.clone());
        }
        self.fetches
            .get_mut(&uid)
            .ok_or_else(|| StoreError::gone(format!("no fetch {}", FetchUid(uid))))
    }

    fn record_mut(&mut self, uid: u64, rec: usize) -> Result<&mut Rec, StoreError> {
        self.fetch_mut(uid)?
            .records
            .get_mut(rec)
            .ok_or_else(|| StoreError::gone(format!("no record {rec} in fetch {}", FetchUid(uid))))
    }

    /// Makes sure the database is open (reopening it after an I/O error).
    fn ensure_db(&mut self) -> Result<(), StoreError> {
        if self.db.is_some() {
            return Ok(());
        }
        self.reopen()
    }

    fn load(&mut self) -> Result<Vec<StoredFetch>, StoreError> {
        self.ensure_db()?;
        // Uncommitted fetches of this session are discarded, as at open.
        let uncommitted: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| !f.committed)
            .map(|(u, _)| *u)
            .collect();
        if !uncommitted.is_empty() {
            self.delete(&uncommitted)?;
        } else if self.is_dirty() || self.need_durable {
            self.flush(true, true)?;
        }
        Ok(self.fetches.values().map(Fetch::stored).collect())
    }

    fn usage(&self, key: &str) -> u64 {
        self.fetches
            .values()
            .filter(|f| f.meta.registration.storage_key == key)
            .map(Fetch::bytes)
            .sum()
    }

    fn create(&mut self, meta: FetchMeta) -> Result<(), StoreError> {
        self.ensure_db()?;
        let uid = meta.uid.0;
        if self.fetches.contains_key(&uid) || self.deleting.contains_key(&uid) {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("fetch {} already exists", meta.uid),
            ));
        }
        self.lost.remove(&uid);
        self.uid_floor = self.uid_floor.max(uid + 1);
        let records = meta.requests.iter().map(|_| Rec::pending()).collect();
        self.fetches.insert(
            uid,
            Fetch {
                meta,
                committed: false,
                flags: StoredFlags::default(),
                settled: None,
                ui_set: false,
                records,
                meta_dirty: true,
                state_dirty: true,
                ui_dirty: false,
                nondurable: false,
            },
        );
        self.mark_dirty();
        Ok(())
    }

    /// The store's own quota checks for `n` more bytes of fetch `uid`.
    fn check_quota(&self, uid: u64, n: u64) -> Result<(), StoreError> {
        if let Some(max) = self.config.max_total_bytes {
            let total: u64 = self.fetches.values().map(Fetch::bytes).sum();
            if total + n > max {
                return Err(StoreError::new(
                    StoreErrorKind::QuotaExceeded,
                    format!("the store is limited to {max} bytes and holds {total}"),
                ));
            }
        }
        if let Some(quota) = &self.config.quota {
            let key = &self.fetches[&uid].meta.registration.storage_key;
            if let Some(q) = quota.quota(key) {
                let used = self.usage(key);
                if used + n > q {
                    return Err(StoreError::new(
                        StoreErrorKind::QuotaExceeded,
                        format!(
                            "storage key {key} uses {used} bytes; {n} more would exceed its \
                             quota of {q} bytes"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Appends to a request body (`generation` None) or a response body.
    fn append(
        &mut self,
        uid: u64,
        rec: usize,
        generation: Option<u32>,
        offset: Option<u64>,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        self.ensure_db()?;
        let n = bytes.len() as u64;
        {
            let r = self.record_mut(uid, rec)?;
            if let Some(g) = generation {
                if r.generation != g {
                    return Err(StoreError::gone("response data was replaced"));
                }
                if let Some(p) = &r.poison {
                    return Err(p.clone());
                }
                let len = r.body.len();
                if offset != Some(len) {
                    return Err(StoreError::new(
                        StoreErrorKind::Corrupt,
                        format!(
                            "append at {} but the body has {len} bytes",
                            offset.unwrap_or(0)
                        ),
                    ));
                }
                if matches!(r.state, RecordState::Completed(_)) {
                    return Err(StoreError::new(
                        StoreErrorKind::Corrupt,
                        "record already completed",
                    ));
                }
            } else if let Some(p) = &r.poison {
                return Err(p.clone());
            }
        }
        if n == 0 {
            return Ok(());
        }
        self.check_quota(uid, n)?;
        {
            let r = self.record_mut(uid, rec)?;
            if generation.is_some() {
                if r.state == RecordState::Pending {
                    r.state = RecordState::Active;
                    r.row_dirty = true;
                }
                r.body.push(bytes);
            } else {
                r.request.push(bytes);
            }
        }
        self.mark_dirty();
        Ok(())
    }

    /// The group commit threshold: at most a quarter of redb's cache, because a transaction
    /// whose dirty pages overflow redb's write buffer is written twice (measured: 8 MiB
    /// transactions with a 16 MiB cache wrote 1.74 times the payload and read 0.7 times back).
    fn group_commit_bytes(&self) -> u64 {
        (self.config.group_commit_bytes as u64)
            .min(self.config.cache_size as u64 / 4)
            .max(CHUNK_SIZE as u64)
    }

    /// A group commit by size, run after an append replied: the next append waits in the
    /// channel meanwhile, which slows the writer down to the disk, while the writer prepares
    /// its next bytes. A failure poisons the fetches it hits (their next append fails).
    fn group_commit_if_due(&mut self) {
        if self.buffered_bytes() < self.group_commit_bytes() {
            return;
        }
        let mut r = self.flush(false, false);
        if r.is_ok() && self.buffered_bytes() >= self.group_commit_bytes() {
            // Many records with partial chunks: write those too.
            r = self.flush(true, false);
        }
        match r {
            Ok(outcome) => {
                for (uid, e) in outcome.failed {
                    tracing::warn!(uid, error = %e, "a group commit failed for this fetch");
                }
            }
            Err(e) => tracing::error!(error = %e, "a group commit failed"),
        }
    }

    /// Flushes durably; the result for fetch `uid`.
    fn durable_flush_for(&mut self, uid: u64) -> Result<(), StoreError> {
        let outcome = self.flush(true, true)?;
        match outcome.failed.get(&uid) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn commit(&mut self, uid: u64, flags: StoredFlags) -> Result<(), StoreError> {
        self.ensure_db()?;
        let f = self.fetch_mut(uid)?;
        if let Some(p) = f.records.iter().find_map(|r| r.poison.clone()) {
            // A failed write took bytes of its request bodies back: it must not come to exist
            // without them.
            return Err(p);
        }
        f.committed = true;
        f.flags = flags;
        f.state_dirty = true;
        self.mark_dirty();
        self.durable_flush_for(uid)
    }

    fn change_fetch(
        &mut self,
        uid: u64,
        change: impl FnOnce(&mut Fetch),
    ) -> Result<(), StoreError> {
        self.ensure_db()?;
        change(self.fetch_mut(uid)?);
        self.mark_dirty();
        self.durable_flush_for(uid)
    }

    fn mark_request_sent(&mut self, uid: u64, rec: usize) -> Result<(), StoreError> {
        self.ensure_db()?;
        let r = self.record_mut(uid, rec)?;
        r.request_sent = true;
        r.row_dirty = true;
        self.mark_dirty();
        self.durable_flush_for(uid)
    }

    fn begin(
        &mut self,
        uid: u64,
        rec: usize,
        generation: u32,
        head: ResponseHead,
    ) -> Result<(), StoreError> {
        self.ensure_db()?;
        let r = self.record_mut(uid, rec)?;
        if generation < r.generation {
            return Err(StoreError::gone(format!(
                "generation {generation} is older than {}",
                r.generation
            )));
        }
        if generation > r.generation {
            r.body = Body {
                truncate: true,
                ..Body::default()
            };
            r.generation = generation;
            r.poison = None;
        }
        r.response = Some(head);
        r.state = RecordState::Active;
        r.row_dirty = true;
        r.head_dirty = true;
        self.mark_dirty();
        Ok(())
    }

    fn complete(
        &mut self,
        uid: u64,
        rec: usize,
        generation: u32,
        result: RecordResult,
    ) -> Result<(), StoreError> {
        self.ensure_db()?;
        let r = self.record_mut(uid, rec)?;
        if r.generation != generation {
            return Err(StoreError::gone("response data was replaced"));
        }
        if let Some(p) = &r.poison {
            if result == RecordResult::Success {
                // Bytes of this response were lost: never report it complete.
                return Err(p.clone());
            }
            r.poison = None;
        }
        r.state = RecordState::Completed(result);
        r.row_dirty = true;
        self.mark_dirty();
        // A record counts as completed only once its bytes and its state are committed.
        self.durable_flush_for(uid)
    }

    fn read(
        &mut self,
        uid: u64,
        rec: usize,
        generation: Option<u32>,
        offset: u64,
        max: usize,
    ) -> Result<Bytes, StoreError> {
        self.ensure_db()?;
        let r = self.record_mut(uid, rec)?;
        if let Some(g) = generation
            && r.generation != g
        {
            return Err(StoreError::gone("response data was replaced"));
        }
        let body = if generation.is_some() {
            &r.body
        } else {
            &r.request
        };
        if offset >= body.len() || max == 0 {
            return Ok(Bytes::new());
        }
        if offset >= body.flushed {
            return Ok(body.read_buffered(offset - body.flushed, max));
        }
        let flushed = body.flushed;
        let table = if generation.is_some() {
            BODY_CHUNKS
        } else {
            REQUEST_CHUNKS
        };
        let read = self
            .db()
            .begin_read()
            .map_err(|e| store_error("begin a read", e))?;
        let t = read
            .open_table(table)
            .map_err(|e| store_error("open a chunk table", e))?;
        let chunk = CHUNK_SIZE as u64;
        let idx = (offset / chunk) as u32;
        let within = (offset % chunk) as usize;
        let v = t
            .get((uid, rec as u32, idx))
            .map_err(|e| store_error("read a chunk", e))?
            .ok_or_else(|| {
                corrupt(format!(
                    "fetch {} record {rec}: chunk {idx} is missing",
                    FetchUid(uid)
                ))
            })?;
        let data = v.value();
        let limit = (flushed - offset).min(max as u64) as usize;
        if data.len() <= within {
            return Err(corrupt(format!(
                "fetch {} record {rec}: chunk {idx} is shorter than the stored length",
                FetchUid(uid)
            )));
        }
        let end = data.len().min(within + limit);
        Ok(Bytes::copy_from_slice(&data[within..end]))
    }

    fn delete(&mut self, uids: &[u64]) -> Result<(), StoreError> {
        self.ensure_db()?;
        for uid in uids {
            self.lost.remove(uid);
            if let Some(f) = self.fetches.remove(uid) {
                self.deleting
                    .insert(*uid, (IndexKey::of(&f.meta), f.records.len()));
            }
        }
        if self.deleting.is_empty() {
            return Ok(());
        }
        self.compact_candidate = true;
        self.mark_dirty();
        let outcome = self.flush(true, true)?;
        for uid in uids {
            if let Some(e) = outcome.failed.get(uid) {
                return Err(e.clone());
            }
        }
        Ok(())
    }
}

/// The sending of a reply, for later.
fn deferred<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> Box<dyn FnOnce() + Send> {
    Box::new(move || {
        let _ = reply.send(result);
    })
}

/// What recovery found for one body.
struct Trim {
    /// Chunks were deleted or rewritten.
    changed: bool,
    /// The length actually stored (normally the durable length).
    len: u64,
}

/// Makes the chunks of one body match its durable length `len`: chunks past it are deleted and
/// a last chunk longer than it is cut. Only the chunks at the end are read, so this is cheap
/// whatever the size of the body.
fn trim_chunks(t: &mut ChunkTable<'_>, uid: u64, rec: u32, len: u64) -> Result<Trim, redb::Error> {
    let count = chunk_count(len);
    let deleted = delete_chunks_from(t, uid, rec, count)?;
    let mut changed = deleted > 0;
    if deleted > 0 {
        tracing::info!(
            uid,
            record = rec,
            chunks = deleted,
            "trimmed chunks past the durable length"
        );
    }
    if count == 0 {
        return Ok(Trim { changed, len });
    }
    let last = count - 1;
    let expected = (len - last as u64 * CHUNK_SIZE as u64) as usize;
    let found = t.get((uid, rec, last))?.map(|v| v.value().len());
    match found {
        Some(n) if n == expected => Ok(Trim { changed, len }),
        Some(n) if n > expected => {
            let cut = t.get((uid, rec, last))?.expect("just read").value()[..expected].to_vec();
            t.insert((uid, rec, last), cut.as_slice())?;
            changed = true;
            Ok(Trim { changed, len })
        }
        _ => {
            // Bytes below the durable length are missing (this never happens with redb's atomic
            // commits; it would mean the file was damaged). Keep the contiguous prefix.
            let mut kept = 0u64;
            for idx in 0..count {
                let found = t.get((uid, rec, idx))?.map(|v| v.value().len());
                match found {
                    Some(n) if n == CHUNK_SIZE => kept += n as u64,
                    Some(n) => {
                        kept += n as u64;
                        delete_chunks_from(t, uid, rec, idx + 1)?;
                        break;
                    }
                    None => {
                        delete_chunks_from(t, uid, rec, idx)?;
                        break;
                    }
                }
            }
            Ok(Trim {
                changed: true,
                len: kept.min(len),
            })
        }
    }
}

/// Deletes every row of fetch `uid`.
fn delete_fetch_rows(txn: &WriteTransaction, uid: u64, key: &IndexKey) -> Result<(), redb::Error> {
    txn.open_table(FETCHES)?.remove(uid)?;
    txn.open_table(FETCH_STATE)?.remove(uid)?;
    txn.open_table(FETCH_UI)?.remove(uid)?;
    txn.open_table(FETCH_INDEX)?.remove((
        key.storage_key.as_str(),
        key.scope.as_str(),
        key.id.as_str(),
        uid,
    ))?;
    let mut records_t = txn.open_table(RECORDS)?;
    let mut heads_t = txn.open_table(RESPONSE_HEADS)?;
    let mut body_t = txn.open_table(BODY_CHUNKS)?;
    let mut req_t = txn.open_table(REQUEST_CHUNKS)?;
    // Rows of every record index, also any past the count (defensive).
    records_t.retain_in((uid, 0)..=(uid, u32::MAX), |_, _| false)?;
    heads_t.retain_in((uid, 0)..=(uid, u32::MAX), |_, _| false)?;
    body_t.retain_in((uid, 0, 0)..=(uid, u32::MAX, u32::MAX), |_, _| false)?;
    req_t.retain_in((uid, 0, 0)..=(uid, u32::MAX, u32::MAX), |_, _| false)?;
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store rows serialise")
}

impl Actor {
    /// Writes every dirty change in `scope` in one transaction. `full`: all buffered bytes (else
    /// whole chunks only). Returns what to apply to the mirror once the commit landed.
    fn write_txn(
        &self,
        scope: Scope,
        full: bool,
        durable: bool,
        seq: u64,
    ) -> Result<Plan, StoreError> {
        let txn = self.begin_write(durable)?;
        let w = |e: redb::Error| store_error("write", e);
        let mut plan = Plan::default();
        for (uid, (key, _)) in &self.deleting {
            if scope.covers(*uid) {
                delete_fetch_rows(&txn, *uid, key).map_err(w)?;
                plan.deleted.push(*uid);
            }
        }
        {
            let mut fetches_t = txn.open_table(FETCHES).map_err(|e| w(e.into()))?;
            let mut state_t = txn.open_table(FETCH_STATE).map_err(|e| w(e.into()))?;
            let mut ui_t = txn.open_table(FETCH_UI).map_err(|e| w(e.into()))?;
            let mut index_t = txn.open_table(FETCH_INDEX).map_err(|e| w(e.into()))?;
            let mut records_t = txn.open_table(RECORDS).map_err(|e| w(e.into()))?;
            let mut heads_t = txn.open_table(RESPONSE_HEADS).map_err(|e| w(e.into()))?;
            let mut body_t = txn.open_table(BODY_CHUNKS).map_err(|e| w(e.into()))?;
            let mut req_t = txn.open_table(REQUEST_CHUNKS).map_err(|e| w(e.into()))?;
            for (uid, f) in &self.fetches {
                let uid = *uid;
                if !scope.covers(uid) || !f.is_dirty() {
                    continue;
                }
                plan.fetches.push(uid);
                if f.meta_dirty {
                    fetches_t
                        .insert(uid, json(&f.meta).as_slice())
                        .map_err(|e| w(e.into()))?;
                    let k = IndexKey::of(&f.meta);
                    index_t
                        .insert(
                            (k.storage_key.as_str(), k.scope.as_str(), k.id.as_str(), uid),
                            (),
                        )
                        .map_err(|e| w(e.into()))?;
                }
                if f.state_dirty {
                    let row = FetchStateRow::new(f.committed, f.flags, f.settled);
                    state_t
                        .insert(uid, json(&row).as_slice())
                        .map_err(|e| w(e.into()))?;
                }
                if f.ui_dirty && f.ui_set {
                    let row = UiRow {
                        title: f.meta.title.clone(),
                        icons: f.meta.icons.clone(),
                    };
                    ui_t.insert(uid, json(&row).as_slice())
                        .map_err(|e| w(e.into()))?;
                }
                for (i, r) in f.records.iter().enumerate() {
                    if !r.is_dirty() {
                        continue;
                    }
                    let i32_ = i as u32;
                    if r.body.truncate {
                        delete_chunks_from(&mut body_t, uid, i32_, 0).map_err(w)?;
                    }
                    if r.request.truncate {
                        delete_chunks_from(&mut req_t, uid, i32_, 0).map_err(w)?;
                    }
                    let nb = r.body.to_flush(full);
                    let nr = r.request.to_flush(full);
                    write_chunks(&mut body_t, uid, i32_, r.body.flushed, &r.body.buf, nb)
                        .map_err(w)?;
                    write_chunks(&mut req_t, uid, i32_, r.request.flushed, &r.request.buf, nr)
                        .map_err(w)?;
                    let row = RecordRow {
                        state: r.state,
                        generation: r.generation,
                        body_len: r.body.flushed + nb,
                        request_len: r.request.flushed + nr,
                        request_sent: r.request_sent,
                    };
                    records_t
                        .insert((uid, i32_), row.encode().as_slice())
                        .map_err(|e| w(e.into()))?;
                    if r.head_dirty {
                        match &r.response {
                            Some(h) => {
                                heads_t
                                    .insert((uid, i32_), json(h).as_slice())
                                    .map_err(|e| w(e.into()))?;
                            }
                            None => {
                                heads_t.remove((uid, i32_)).map_err(|e| w(e.into()))?;
                            }
                        }
                    }
                    plan.bodies.push((uid, i, nb, nr));
                }
            }
            let mut schema = txn.open_table(SCHEMA).map_err(|e| w(e.into()))?;
            schema
                .insert(COMMIT_SEQ_KEY, seq)
                .map_err(|e| w(e.into()))?;
            schema
                .insert(UID_FLOOR_KEY, self.uid_floor)
                .map_err(|e| w(e.into()))?;
        }
        txn.commit().map_err(|e| store_error("commit", e))?;
        Ok(plan)
    }

    /// Applies a landed plan to the mirror. `full`: the flush wrote every buffered byte and
    /// every flag of the fetches it covered.
    fn apply(&mut self, plan: Plan, seq: u64, durable: bool) {
        self.seq = seq;
        for uid in plan.deleted {
            if let Some(d) = self.deleting.remove(&uid)
                && !durable
            {
                self.nondurable_deletes.insert(uid, d);
            }
        }
        if durable {
            // A durable commit makes every earlier commit durable too.
            self.nondurable_deletes.clear();
            for f in self.fetches.values_mut() {
                f.nondurable = false;
            }
        }
        for (uid, i, nb, nr) in plan.bodies {
            let r = &mut self.fetches.get_mut(&uid).expect("planned").records[i];
            if r.body.truncate {
                r.body.truncate = false;
            }
            if r.request.truncate {
                r.request.truncate = false;
            }
            r.body.consume(nb);
            r.request.consume(nr);
            r.row_dirty = false;
            r.head_dirty = false;
        }
        for uid in plan.fetches {
            let f = self.fetches.get_mut(&uid).expect("planned");
            f.meta_dirty = false;
            f.state_dirty = false;
            f.ui_dirty = false;
            f.nondurable |= !durable;
        }
    }

    /// After a reopen: commits made non-durably since the last durable one went with the old
    /// handle. Fetches they touched return to what the disk holds, and their records that lost
    /// bytes or state are poisoned (their next append fails with `e`); deletes are redone.
    fn forget_lost_commits(&mut self, e: &StoreError) -> Result<(), StoreError> {
        let disk = self.read_seq()?;
        if disk == self.seq {
            return Ok(());
        }
        tracing::warn!(
            disk,
            mirror = self.seq,
            "commits made since the last durable one were lost with the failed handle"
        );
        self.seq = disk;
        let lost_deletes = std::mem::take(&mut self.nondurable_deletes);
        self.deleting.extend(lost_deletes);
        let affected: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.nondurable || f.is_dirty())
            .map(|(u, _)| *u)
            .collect();
        for uid in affected {
            self.revert(uid, e)?;
        }
        Ok(())
    }

    /// One commit attempt for `scope`. `Ok` if it landed (even if the commit reported an error:
    /// redb says such changes may be durable, and the commit sequence number tells). `Err` if
    /// it did not; the database is then reopened (or `self.broken` is set).
    fn try_commit(&mut self, scope: Scope, full: bool, durable: bool) -> Result<(), StoreError> {
        let seq = self.seq + 1;
        let err = match self.write_txn(scope, full, durable, seq) {
            Ok(plan) => {
                self.apply(plan, seq, durable);
                return Ok(());
            }
            Err(e) => e,
        };
        tracing::warn!(error = %err, ?scope, "a commit failed; reopening the store");
        self.db = None;
        self.reopen_raw()?;
        match self.read_seq() {
            Ok(s) if s == seq => {
                // The commit reached the disk after all: redo the plan's bookkeeping.
                tracing::info!(seq, "the failed commit landed");
                // Recompute what it wrote: the mirror has not changed since.
                let plan = self.plan_only(scope, full);
                self.apply(plan, seq, durable);
                Ok(())
            }
            Ok(_) => {
                self.forget_lost_commits(&err)?;
                Err(err)
            }
            Err(e) => {
                self.db = None;
                self.broken = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The plan `write_txn` would make, without writing.
    fn plan_only(&self, scope: Scope, full: bool) -> Plan {
        let mut plan = Plan::default();
        for uid in self.deleting.keys() {
            if scope.covers(*uid) {
                plan.deleted.push(*uid);
            }
        }
        for (uid, f) in &self.fetches {
            if !scope.covers(*uid) || !f.is_dirty() {
                continue;
            }
            plan.fetches.push(*uid);
            for (i, r) in f.records.iter().enumerate() {
                if r.is_dirty() {
                    plan.bodies
                        .push((*uid, i, r.body.to_flush(full), r.request.to_flush(full)));
                }
            }
        }
        plan
    }

    /// Writes the dirty state. `full`: every buffered byte (else whole chunks only); `durable`:
    /// `Durability::Immediate`. `Err` only if the store cannot write at all; per-fetch failures
    /// are in the outcome (those fetches were reverted to their durable state).
    pub(crate) fn flush(&mut self, full: bool, durable: bool) -> Result<FlushOutcome, StoreError> {
        self.ensure_db()?;
        let mut outcome = FlushOutcome::default();
        if !(self.is_dirty() || durable && self.need_durable) {
            outcome.failed.extend(self.reverted.clone());
            return Ok(outcome);
        }
        if self.try_commit(Scope::All, full, durable).is_err() {
            if let Some(e) = &self.broken {
                return Err(e.clone());
            }
            // Isolate the fetch that cannot be written: commit each on its own.
            let mut dirty: Vec<u64> = self.deleting.keys().copied().collect();
            dirty.extend(
                self.fetches
                    .iter()
                    .filter(|(_, f)| f.is_dirty())
                    .map(|(u, _)| *u),
            );
            for uid in dirty {
                if let Err(e) = self.try_commit(Scope::One(uid), full, durable) {
                    if let Some(b) = &self.broken {
                        return Err(b.clone());
                    }
                    tracing::warn!(uid, error = %e, "a fetch's changes could not be written; it keeps its durable state");
                    self.revert(uid, &e)?;
                }
            }
        }
        for (uid, e) in &self.reverted {
            outcome.failed.entry(*uid).or_insert_with(|| e.clone());
        }
        self.need_durable = !durable;
        if self.is_dirty() {
            // Partial chunks stay buffered: the interval commits them.
            if self.dirty_since.is_none() {
                self.dirty_since = Some(Instant::now());
            }
        } else if self.need_durable {
            self.dirty_since.get_or_insert_with(Instant::now);
        } else {
            self.dirty_since = None;
        }
        Ok(outcome)
    }

    /// Reverts fetch `uid` to what the database holds, poisoning records that lost bytes.
    fn revert(&mut self, uid: u64, e: &StoreError) -> Result<(), StoreError> {
        if self.deleting.contains_key(&uid) {
            // A delete that cannot be written stays pending; it is retried by the next flush.
            // It failed all the same: `delete_fetch` must not report it done.
            self.reverted.insert(uid, e.clone());
            return Ok(());
        }
        let read = self
            .db()
            .begin_read()
            .map_err(|x| store_error("begin a read", x))?;
        let on_disk = read_fetch(&read, uid)?;
        let Some(old) = self.fetches.remove(&uid) else {
            return Ok(());
        };
        self.reverted.insert(uid, e.clone());
        match on_disk {
            None => {
                self.lost.insert(uid, e.clone());
            }
            Some(mut f) => {
                for (r, o) in f.records.iter_mut().zip(&old.records) {
                    let lost = o.body.is_dirty()
                        || o.row_dirty
                        || o.head_dirty
                        || o.request.is_dirty()
                        || o.body.flushed != r.body.flushed
                        || o.request.flushed != r.request.flushed
                        || o.state != r.state
                        || o.generation != r.generation;
                    if lost {
                        r.poison = Some(e.clone());
                    } else {
                        r.poison = o.poison.clone();
                    }
                }
                self.fetches.insert(uid, f);
            }
        }
        Ok(())
    }

    /// Reopens the database after an I/O error, without reconciling the mirror.
    fn reopen_raw(&mut self) -> Result<(), StoreError> {
        self.db = None;
        match open_database(&self.path, &self.factory, &self.config, &self.file_len) {
            Ok(db) => {
                self.db = Some(db);
                self.broken = None;
                tracing::info!(path = %self.path.display(), "reopened the store");
                Ok(())
            }
            Err(e) => {
                let err = StoreError::new(
                    StoreErrorKind::Io,
                    format!("the store could not be reopened after an I/O error: {e}"),
                );
                self.broken = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Reopens a store that was left closed by an I/O error, and reconciles the mirror with
    /// what the disk holds (uncommitted changes were lost with the failed commit).
    fn reopen(&mut self) -> Result<(), StoreError> {
        let e = self.broken.clone().unwrap_or_else(|| {
            StoreError::new(StoreErrorKind::Io, "changes were lost by an I/O error")
        });
        self.reopen_raw()?;
        self.forget_lost_commits(&e)?;
        // Changes never committed are gone too.
        let dirty: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.is_dirty())
            .map(|(u, _)| *u)
            .collect();
        for uid in dirty {
            self.revert(uid, &e)?;
        }
        Ok(())
    }

    // ----- maintenance -----

    pub(crate) fn stats(&mut self) -> Result<StoreStats, StoreError> {
        self.ensure_db()?;
        let txn = self
            .db()
            .begin_write()
            .map_err(|e| store_error("begin a write", e))?;
        let s = txn.stats().map_err(|e| store_error("stats", e))?;
        txn.abort().map_err(|e| store_error("abort", e))?;
        let file_len = self.file_len.load(Ordering::Relaxed);
        Ok(StoreStats {
            file_bytes: file_len,
            allocated_bytes: s.allocated_pages() * s.page_size() as u64,
            stored_bytes: s.stored_bytes(),
            free_bytes: s.fragmented_bytes(),
            fetches: self.fetches.len(),
            buffered_bytes: self.buffered_bytes(),
        })
    }

    fn compact_if_worth_it(&mut self) -> Result<Option<CompactReport>, StoreError> {
        let stats = self.stats()?;
        if stats.free_bytes < self.config.compact_min_free_bytes {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    pub(crate) fn compact(&mut self) -> Result<CompactReport, StoreError> {
        self.flush(true, true)?;
        let before = self.file_len.load(Ordering::Relaxed);
        let started = Instant::now();
        let db = self.db.as_mut().expect("open");
        let mut rounds = 0;
        loop {
            match db.compact() {
                Ok(true) => rounds += 1,
                Ok(false) => break,
                Err(e) => {
                    // redb refuses further writes on a handle that saw an I/O error: the next
                    // operation reopens the file (else nothing would until some write failed).
                    self.db = None;
                    return Err(store_error("compact", e));
                }
            }
        }
        let after = self.file_len.load(Ordering::Relaxed);
        tracing::info!(before, after, rounds, elapsed = ?started.elapsed(), "compacted the store");
        Ok(CompactReport {
            bytes_before: before,
            bytes_after: after,
        })
    }

    pub(crate) fn check_integrity(&mut self) -> Result<IntegrityReport, StoreError> {
        self.flush(true, true)?;
        let db = self.db.as_mut().expect("open");
        let redb_ok = match db.check_integrity() {
            Ok(ok) => ok,
            Err(e) => {
                // As in `compact`: the next operation reopens the file.
                self.db = None;
                return Err(store_error("redb integrity check", e));
            }
        };
        let mut report = crate::integrity::check_tables(self.db())?;
        if !redb_ok {
            report
                .problems
                .push("redb's integrity check had to repair the file".into());
        }
        // The mirror must match the disk.
        let disk = read_all_fetches(self.db())?;
        for (uid, f) in &self.fetches {
            match disk.get(uid) {
                None => report
                    .problems
                    .push(format!("fetch {uid} is in memory but not in the file")),
                Some(d) => {
                    for (i, (a, b)) in f.records.iter().zip(&d.records).enumerate() {
                        if a.body.len() != b.body.flushed
                            || a.state != b.state
                            || a.generation != b.generation
                        {
                            report.problems.push(format!(
                                "fetch {uid} record {i}: memory has {:?}/{}/{} bytes, the file {:?}/{}/{}",
                                a.state,
                                a.generation,
                                a.body.len(),
                                b.state,
                                b.generation,
                                b.body.flushed
                            ));
                        }
                    }
                }
            }
        }
        for uid in disk.keys() {
            // A delete that could not be written yet is pending, not lost.
            if !self.fetches.contains_key(uid) && !self.deleting.contains_key(uid) {
                report
                    .problems
                    .push(format!("fetch {uid} is in the file but not in memory"));
            }
        }
        Ok(report)
    }
}
