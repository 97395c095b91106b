//! What each [`Store`](background_fetch::Store) operation does to the model. Durable operations
//! return the fetch whose commit they wait for (the loop commits once per batch, see
//! [`crate::op_loop`]); reads read the model, the database and the body files.

use crate::actor::Actor;
use crate::error::corrupt;
use crate::model::{Body, Deleting, Fetch, IndexKey, Place, Rec, fetch_files};
use crate::rows::{read_head, read_inline, read_requests};
use crate::schema::body_file_name;
use background_fetch::store::{
    FetchMeta, RecordState, StoreError, StoreErrorKind, StoredFetch, StoredFlags,
};
use background_fetch::{RecordResult, ResponseHead};
use bytes::Bytes;
use redb::ReadableDatabase;
use std::collections::BTreeSet;

/// A read from a body file returns at most this much (a read may ask for `usize::MAX`).
const FILE_READ_MAX: usize = 1 << 20;

impl Actor {
    /// Makes sure the database is open (reopening it after an I/O error).
    pub(crate) fn ensure_db(&mut self) -> Result<(), StoreError> {
        if self.db.is_some() {
            return Ok(());
        }
        self.reopen()
    }

    pub(crate) fn load(&mut self) -> Result<Vec<StoredFetch>, StoreError> {
        self.ensure_db()?;
        // Uncommitted fetches of this session are discarded, as at open.
        let uncommitted: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| !f.committed)
            .map(|(u, _)| *u)
            .collect();
        self.delete(&uncommitted)?;
        if self.is_dirty() {
            let outcome = self.flush()?;
            if let Some(e) = uncommitted.iter().find_map(|u| outcome.failed.get(u)) {
                return Err(e.clone());
            }
        }
        let read = self
            .db()
            .begin_read()
            .map_err(|e| crate::error::store_error("begin a read", e))?;
        let mut out = Vec::with_capacity(self.fetches.len());
        for (uid, f) in &self.fetches {
            let mut err = None;
            let mut stored = f.stored(|i| match read_head(&read, *uid, i) {
                Ok(h) => h,
                Err(e) => {
                    err = Some(e);
                    None
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            stored.meta.requests = read_requests(&read, *uid)?;
            out.push(stored);
        }
        Ok(out)
    }

    pub(crate) fn create(&mut self, meta: FetchMeta) -> Result<(), StoreError> {
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
        let records: Vec<Rec> = meta.requests.iter().map(|_| Rec::pending()).collect();
        let dirty_records: BTreeSet<usize> = (0..records.len()).collect();
        self.fetches.insert(
            uid,
            Fetch {
                meta,
                committed: false,
                flags: StoredFlags::default(),
                settled: None,
                ui_set: false,
                records,
                dirty_records,
                requests_written: 0,
                meta_dirty: true,
                state_dirty: true,
                ui_dirty: false,
            },
        );
        self.mark_dirty();
        Ok(())
    }

    /// Appends to a request body (`generation` None) or a response body.
    pub(crate) fn append(
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
            let r = self.record(uid, rec)?;
            if let Some(g) = generation {
                if r.generation != g {
                    return Err(StoreError::gone("response data was replaced"));
                }
                if let Some(p) = &r.poison {
                    return Err((**p).clone());
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
                return Err((**p).clone());
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
        if generation.is_some() {
            self.active.insert((uid, rec));
        }
        self.mark_dirty();
        Ok(())
    }

    /// Marks fetch `uid` committed; durable after the batch's commit.
    pub(crate) fn commit(&mut self, uid: u64, flags: StoredFlags) -> Result<u64, StoreError> {
        self.ensure_db()?;
        let f = self.fetch_mut(uid)?;
        if let Some(p) = f.records.iter().find_map(|r| r.poison.as_deref().cloned()) {
            // A failed write took bytes of its request bodies back: it must not come to exist
            // without them.
            return Err(p);
        }
        f.committed = true;
        f.flags = flags;
        f.state_dirty = true;
        self.mark_dirty();
        Ok(uid)
    }

    pub(crate) fn change_fetch(
        &mut self,
        uid: u64,
        change: impl FnOnce(&mut Fetch),
    ) -> Result<u64, StoreError> {
        self.ensure_db()?;
        change(self.fetch_mut(uid)?);
        self.mark_dirty();
        Ok(uid)
    }

    pub(crate) fn mark_request_sent(&mut self, uid: u64, rec: usize) -> Result<u64, StoreError> {
        self.ensure_db()?;
        let r = self.record_mut(uid, rec)?;
        r.request_sent = true;
        r.row_dirty = true;
        self.mark_dirty();
        Ok(uid)
    }

    pub(crate) fn begin(
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
        let mut old_file = None;
        if generation > r.generation {
            if r.body.in_file() {
                old_file = Some(body_file_name(uid, rec as u32, Some(r.generation)));
            }
            // The older generation's inline chunks (if any) go with the next commit, its file
            // once that commit is durable.
            r.body = Body::stored(Place::Inline, 0);
            r.body.drop_chunks = true;
            r.generation = generation;
            r.poison = None;
        }
        r.new_head = Some(Box::new(head));
        r.state = RecordState::Active;
        r.row_dirty = true;
        if let Some(name) = old_file {
            self.unlink_after_commit.push((uid, name));
        }
        self.active.insert((uid, rec));
        self.mark_dirty();
        Ok(())
    }

    /// Marks a record completed; durable (with every byte of it) after the batch's commit.
    pub(crate) fn complete(
        &mut self,
        uid: u64,
        rec: usize,
        generation: u32,
        result: RecordResult,
    ) -> Result<u64, StoreError> {
        self.ensure_db()?;
        let r = self.record_mut(uid, rec)?;
        if r.generation != generation {
            return Err(StoreError::gone("response data was replaced"));
        }
        if let Some(p) = &r.poison {
            if result == RecordResult::Success {
                // Bytes of this response were lost: never report it complete.
                return Err((**p).clone());
            }
            r.poison = None;
        }
        r.state = RecordState::Completed(result);
        r.row_dirty = true;
        self.active.remove(&(uid, rec));
        self.mark_dirty();
        // A record counts as completed only once its bytes and its state are committed.
        Ok(uid)
    }

    pub(crate) fn read(
        &mut self,
        uid: u64,
        rec: usize,
        generation: Option<u32>,
        offset: u64,
        max: usize,
    ) -> Result<Bytes, StoreError> {
        self.ensure_db()?;
        let r = self.record(uid, rec)?;
        if let Some(g) = generation
            && r.generation != g
        {
            return Err(StoreError::gone("response data was replaced"));
        }
        let request = generation.is_none();
        let body = if request { &r.request } else { &r.body };
        if offset >= body.len() || max == 0 {
            return Ok(Bytes::new());
        }
        if offset >= body.written {
            return Ok(body.read_buffered(offset - body.written, max));
        }
        let written = body.written;
        match body.place {
            Place::Inline => read_inline(self.db(), request, uid, rec, offset, written, max),
            Place::File => {
                let name = body_file_name(uid, rec as u32, generation);
                let n = (written - offset).min(max.min(FILE_READ_MAX) as u64) as usize;
                let io = |e: std::io::Error| {
                    StoreError::new(StoreErrorKind::Io, format!("read body file {name}: {e}"))
                };
                let file = self
                    .body_file(&name, false)
                    .map_err(io)?
                    .ok_or_else(|| corrupt(format!("body file {name} is missing")))?;
                let mut buf = vec![0u8; n];
                let got = file.read_at(offset, &mut buf).map_err(io)?;
                if got < n {
                    return Err(corrupt(format!(
                        "body file {name} ends at {} below its stored length {written}",
                        offset + got as u64
                    )));
                }
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Deletes fetches from the model (their rows and files go with the next commit).
    pub(crate) fn delete(&mut self, uids: &[u64]) -> Result<(), StoreError> {
        self.ensure_db()?;
        let mut any = false;
        for uid in uids {
            self.lost.remove(uid);
            if let Some(f) = self.fetches.remove(uid) {
                let mut files = fetch_files(*uid, &f);
                // Older generations' files waiting for a commit go with the fetch.
                self.unlink_after_commit.retain(|(u, name)| {
                    if u == uid {
                        files.push(name.clone());
                        false
                    } else {
                        true
                    }
                });
                self.deleting.insert(
                    *uid,
                    Deleting {
                        key: IndexKey::of(&f.meta),
                        files,
                    },
                );
                self.new_files.remove(uid);
                self.rebuild_active_of(*uid);
                any = true;
            }
        }
        if any || !self.deleting.is_empty() {
            self.compact_candidate = true;
            self.mark_dirty();
        }
        Ok(())
    }
}
