//! The storage thread's state: the redb [`Database`], the body files, the in-memory model of
//! every fetch, and the bookkeeping of commits and failures. What it does lives in the modules
//! that add to `impl Actor`, in the order a store's life runs through them:
//!
//! * [`crate::open`]: open the database, check (or migrate) its schema, then
//! * [`crate::recovery`]: bring it back to a consistent state after a crash;
//! * [`crate::op_loop`]: take operations from the channel, in batches;
//! * [`crate::ops`]: what each operation does to the model, and [`crate::quota`] the store's
//!   own limits;
//! * [`crate::commit`]: write the model's changes (body files first, then one redb
//!   transaction), and [`crate::revert`] what happens when that fails;
//! * [`crate::export`], [`crate::compact`] and [`crate::integrity`]: the rest.

use crate::backend::BackendFactory;
use crate::config::RedbStoreConfig;
use crate::files::{BodyFile, BodyFs};
use crate::ingress::Ingress;
use crate::model::{Deleting, Fetch, Rec};
use background_fetch::store::{ExportMode, Exported, FetchMeta, StoredFetch};
use background_fetch::store::{StoreError, StoredFlags};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchResult, FetchUid, ImageResource, RecordResult,
    ResponseHead, ServiceWorkerRegistrationId,
};
use bytes::Bytes;
use futures::channel::oneshot;
use redb::Database;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

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
    Export(FetchUid, usize, u32, PathBuf, ExportMode, Reply<Exported>),
    Registrations(Reply<Vec<ServiceWorkerRegistrationId>>),
    Purge(PurgeFilter, Reply<Vec<FetchUid>>),
    Flush(Reply<()>),
    CheckIntegrity(Reply<crate::reports::IntegrityReport>),
    Compact(Reply<crate::reports::CompactReport>),
    Stats(Reply<crate::reports::StoreStats>),
    Close(Reply<()>),
    UidFloor(Reply<u64>),
    WriteRows(String, Vec<crate::embedder_rows::RowWrite>, Reply<()>),
    Rows(String, String, Reply<Vec<crate::embedder_rows::Row>>),
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

/// Open body files kept at most (the files of the records being downloaded).
pub(crate) const OPEN_FILES_MAX: usize = 128;

/// The storage thread's state.
pub(crate) struct Actor {
    /// Appends taken on the callers' threads (see [`crate::ingress`]).
    pub ingress: Arc<Ingress>,
    pub path: PathBuf,
    pub factory: BackendFactory,
    pub files: Arc<dyn BodyFs>,
    pub config: RedbStoreConfig,
    pub db: Option<Database>,
    /// Why the database is closed, if it could not be reopened.
    pub broken: Option<StoreError>,
    pub file_len: Arc<AtomicU64>,
    pub fetches: BTreeMap<u64, Fetch>,
    /// Records that may be appended to (active and not poisoned), for the append fast path.
    pub active: BTreeSet<(u64, usize)>,
    /// Fetches deleted whose rows are still in the database.
    pub deleting: BTreeMap<u64, Deleting>,
    /// Fetches reverted to their durable state during the current batch, with why.
    pub reverted: HashMap<u64, StoreError>,
    /// Fetches that vanished because their creation could not be written.
    pub lost: HashMap<u64, StoreError>,
    /// Body files to remove once a commit of their fetch is durable (older generations'
    /// files), by fetch.
    pub unlink_after_commit: Vec<(u64, String)>,
    /// Fetches that created body files since the directory was last synced.
    pub new_files: BTreeSet<u64>,
    /// Open body files, by name.
    pub open_files: HashMap<String, Arc<dyn BodyFile>>,
    /// Number of the last commit (also in the database, to learn whether a commit that
    /// reported an error landed).
    pub seq: u64,
    /// One more than the highest uid ever created (persisted with every commit; only grows).
    pub uid_floor: u64,
    /// When the oldest uncommitted change was made.
    pub dirty_since: Option<Instant>,
    pub last_activity: Instant,
    /// Fetches were deleted since the last compaction check.
    pub compact_candidate: bool,
}

impl Actor {
    pub(crate) fn db(&self) -> &Database {
        self.db.as_ref().expect("the database is open")
    }

    pub(crate) fn fetch_mut(&mut self, uid: u64) -> Result<&mut Fetch, StoreError> {
        if let Some(e) = self.lost.get(&uid) {
            return Err(e.clone());
        }
        self.fetches
            .get_mut(&uid)
            .ok_or_else(|| StoreError::gone(format!("no fetch {}", FetchUid(uid))))
    }

    pub(crate) fn record_mut(&mut self, uid: u64, rec: usize) -> Result<&mut Rec, StoreError> {
        let f = self.fetch_mut(uid)?;
        if rec < f.records.len() {
            // Whoever asks for a record to change it makes it dirty.
            f.dirty_records.insert(rec);
        }
        f.records
            .get_mut(rec)
            .ok_or_else(|| StoreError::gone(format!("no record {rec} in fetch {}", FetchUid(uid))))
    }

    pub(crate) fn record(&self, uid: u64, rec: usize) -> Result<&Rec, StoreError> {
        if let Some(e) = self.lost.get(&uid) {
            return Err(e.clone());
        }
        self.fetches
            .get(&uid)
            .ok_or_else(|| StoreError::gone(format!("no fetch {}", FetchUid(uid))))?
            .records
            .get(rec)
            .ok_or_else(|| StoreError::gone(format!("no record {rec} in fetch {}", FetchUid(uid))))
    }

    pub(crate) fn is_dirty(&self) -> bool {
        !self.deleting.is_empty() || self.fetches.values().any(Fetch::is_dirty)
    }

    pub(crate) fn mark_dirty(&mut self) {
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Bytes appended and not stored yet (over the fetches with changes).
    pub(crate) fn buffered_bytes(&self) -> u64 {
        self.fetches
            .values()
            .filter(|f| !f.dirty_records.is_empty())
            .flat_map(|f| f.dirty_records.iter().map(|i| &f.records[*i]))
            .map(|r| r.body.buf_len + r.request.buf_len)
            .sum()
    }

    /// An open handle on body file `name` (creating the file if `create`).
    pub(crate) fn body_file(
        &mut self,
        name: &str,
        create: bool,
    ) -> std::io::Result<Option<Arc<dyn BodyFile>>> {
        if let Some(f) = self.open_files.get(name) {
            return Ok(Some(f.clone()));
        }
        let f = if create {
            Some(self.files.open(name)?)
        } else {
            self.files.open_existing(name)?
        };
        if let Some(f) = &f {
            if self.open_files.len() >= OPEN_FILES_MAX {
                self.open_files.clear();
            }
            self.open_files.insert(name.to_owned(), f.clone());
        }
        Ok(f)
    }

    /// Closes and removes body file `name` (errors are logged: recovery removes what is left).
    pub(crate) fn remove_body_file(&mut self, name: &str) {
        self.open_files.remove(name);
        if let Err(e) = self.files.remove(name) {
            tracing::warn!(file = name, error = %e, "could not remove a body file; the next open removes it");
        }
    }
}
