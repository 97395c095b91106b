//! Commits: writing the model's changes to disk.
//!
//! A **commit** ([`Actor::flush`]) runs in the order deno's cache uses for its bodies:
//!
//! 1. every changed body file is written and synced (`fdatasync`); a body that outgrew
//!    [`RedbStoreConfig::inline_body_max`](crate::RedbStoreConfig::inline_body_max) moves from
//!    inline chunks to its file first;
//! 2. the body directory is synced if files were created in it;
//! 3. one redb transaction (`Durability::Immediate`) writes every changed row: metadata,
//!    states, record rows with the new durable lengths, inline chunks, deletions, and the
//!    commit sequence number;
//! 4. files no row references any more (an older generation's, a deleted fetch's) are removed.
//!
//! So a row never counts a byte that is not durable in its file, and a crash leaves files that
//! are at least as long as their rows say (recovery cuts them back).
//!
//! A **spill** ([`Actor::group_commit_if_due`]), when the bytes buffered reach
//! [`RedbStoreConfig::group_commit_bytes`](crate::RedbStoreConfig::group_commit_bytes), writes
//! buffered bytes of file bodies to their files without syncing and without a transaction: it
//! bounds memory, and the next commit syncs them. Inline bytes are small by definition; if they
//! alone fill the buffer, a commit writes them.
//!
//! A fetch whose file writes fail (disk full, I/O error) is returned to its committed state
//! ([`crate::revert`]); other fetches commit. A failed transaction is isolated the same way:
//! each fetch is committed on its own.

use crate::actor::Actor;
use crate::error::store_error;
use crate::model::{Place, Scope};
use crate::rows::{delete_chunks_from, delete_fetch_rows, json, write_chunks};
use crate::schema::*;
use background_fetch::store::{FetchMeta, StoreError, StoreErrorKind, io_error};
use redb::{ReadableDatabase, WriteTransaction};
use std::collections::HashMap;
use std::time::Instant;

/// Request rows per transaction when a fetch of many records is created.
pub(crate) const PIECE_ROWS: usize = 8192;

/// What a transaction wrote, applied to the model once the commit is known to have landed.
#[derive(Default)]
pub(crate) struct Plan {
    fetches: Vec<u64>,
    /// (uid, record, inline response bytes, inline request bytes) written.
    bodies: Vec<(u64, usize, u64, u64)>,
    deleted: Vec<u64>,
}

/// Per-fetch results of a commit: the fetches whose changes could not be written.
#[derive(Default)]
pub(crate) struct FlushOutcome {
    pub failed: HashMap<u64, StoreError>,
}

/// The metadata row of a fetch: its metadata without the requests (which are rows of their
/// own). Clones field by field: cloning the whole value would copy every request first.
fn bare_meta(m: &FetchMeta) -> FetchMeta {
    FetchMeta {
        uid: m.uid,
        registration: m.registration.clone(),
        id: m.id.clone(),
        download_total: m.download_total,
        title: m.title.clone(),
        icons: m.icons.clone(),
        client: m.client.clone(),
        requests: Vec::new(),
        embedder_data: m.embedder_data.clone(),
    }
}

fn file_error(name: &str, e: &std::io::Error) -> StoreError {
    let err = io_error("body file", std::path::Path::new(name), e);
    if err.kind == StoreErrorKind::QuotaExceeded {
        StoreError::new(
            err.kind,
            format!("body file {name}: the disk is full ({e})"),
        )
    } else {
        err
    }
}

impl Actor {
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self
            .db()
            .begin_write()
            .map_err(|e| store_error("begin a write", e))?;
        if self.config.quick_repair {
            txn.set_quick_repair(true);
        }
        Ok(txn)
    }

    /// The limit above which a body lives in its file.
    fn inline_max(&self) -> u64 {
        self.config.inline_body_max as u64
    }

    /// Writes fetch `uid`'s buffered file-body bytes to their files (moving bodies that
    /// outgrew the inline limit there first), and syncs them if `sync`.
    pub(crate) fn write_files(&mut self, uid: u64, sync: bool) -> Result<(), StoreError> {
        let Some(f) = self.fetches.get(&uid) else {
            return Ok(());
        };
        let dirty: Vec<usize> = f.dirty_records.iter().copied().collect();
        for i in dirty {
            for request in [false, true] {
                self.write_body_file(uid, i, request, sync)?;
            }
        }
        Ok(())
    }

    fn write_body_file(
        &mut self,
        uid: u64,
        i: usize,
        request: bool,
        sync: bool,
    ) -> Result<(), StoreError> {
        let inline_max = self.inline_max();
        let (generation, place, len, durable, has_buf, unsynced) = {
            let r = &self.fetches[&uid].records[i];
            let b = if request { &r.request } else { &r.body };
            (
                r.generation,
                b.place,
                b.len(),
                b.durable,
                b.buf_len > 0,
                b.synced < b.written,
            )
        };
        let name = body_file_name(uid, i as u32, (!request).then_some(generation));
        if place == Place::Inline {
            if len <= inline_max {
                return Ok(());
            }
            // The body outgrew the inline limit: its file starts with the inline bytes.
            let file = self
                .body_file(&name, true)
                .map_err(|e| file_error(&name, &e))?
                .expect("created");
            file.set_len(0).map_err(|e| file_error(&name, &e))?;
            if durable > 0 {
                let txn = self
                    .db()
                    .begin_read()
                    .map_err(|e| store_error("begin a read", e))?;
                let table = if request { REQUEST_CHUNKS } else { BODY_CHUNKS };
                let t = txn
                    .open_table(table)
                    .map_err(|e| store_error("open a chunk table", e))?;
                let mut at = 0u64;
                for entry in t
                    .range((uid, i as u32, 0)..=(uid, i as u32, u32::MAX))
                    .map_err(|e| store_error("read chunks", e))?
                {
                    let (_, v) = entry.map_err(|e| store_error("read chunks", e))?;
                    let data = v.value();
                    let take = (durable - at).min(data.len() as u64) as usize;
                    file.write_all_at(at, &data[..take])
                        .map_err(|e| file_error(&name, &e))?;
                    at += take as u64;
                    if at == durable {
                        break;
                    }
                }
                if at != durable {
                    return Err(crate::error::corrupt(format!(
                        "fetch {uid} record {i}: inline chunks hold {at} of {durable} bytes"
                    )));
                }
            }
            let r = &mut self.fetches.get_mut(&uid).expect("dirty").records[i];
            let b = if request { &mut r.request } else { &mut r.body };
            b.place = Place::File;
            b.synced = 0;
            // The inline chunks go with the commit that makes the file count.
            b.drop_chunks = true;
            self.new_files.insert(uid);
            tracing::debug!(uid, record = i, file = %name, "a body moved to its file");
        } else if !(has_buf || sync && unsynced) {
            return Ok(());
        }
        let file = self
            .body_file(&name, true)
            .map_err(|e| file_error(&name, &e))?
            .expect("created");
        let r = &mut self.fetches.get_mut(&uid).expect("dirty").records[i];
        let b = if request { &mut r.request } else { &mut r.body };
        if b.buf_len > 0 {
            let mut at = b.written;
            for seg in &b.buf {
                file.write_all_at(at, seg)
                    .map_err(|e| file_error(&name, &e))?;
                at += seg.len() as u64;
            }
            let n = b.buf_len;
            b.consume(n);
        }
        if sync && b.synced < b.written {
            file.sync_data().map_err(|e| file_error(&name, &e))?;
            b.synced = b.written;
        }
        Ok(())
    }

    /// Writes every change (see the module documentation). `Err` only if the store cannot
    /// write at all; per-fetch failures are in the outcome (those fetches were returned to
    /// their committed state).
    pub(crate) fn flush(&mut self) -> Result<FlushOutcome, StoreError> {
        self.ensure_db()?;
        if self.is_dirty() {
            // 1. Body files.
            let dirty: Vec<u64> = self
                .fetches
                .iter()
                .filter(|(_, f)| f.is_dirty())
                .map(|(u, _)| *u)
                .collect();
            for uid in dirty {
                // A transient error with nothing lost is retried once: a failed write consumed
                // nothing of the buffer, and a failed sync is tried again. (A sync that fails
                // and then succeeds is counted as landed, as a database does after reopening
                // its file; Linux may have dropped the pages it could not write, which no
                // store that keeps going after a failed fsync can tell.)
                let r = self
                    .write_files(uid, true)
                    .or_else(|_| self.write_files(uid, true));
                if let Err(e) = r {
                    tracing::warn!(uid, error = %e, "a fetch's body files could not be written; it keeps its committed state");
                    self.revert(uid, &e)?;
                }
            }
            // 2. The directory entries of new files.
            if !self.new_files.is_empty() {
                match self.files.sync_dir() {
                    Ok(()) => self.new_files.clear(),
                    Err(e) => {
                        let e = StoreError::new(
                            StoreErrorKind::Io,
                            format!("sync the body directory: {e}"),
                        );
                        for uid in std::mem::take(&mut self.new_files) {
                            self.revert(uid, &e)?;
                        }
                    }
                }
            }
            // 3. The requests of fetches being created with many records, in pieces (so that no
            //    transaction holds them all), then one transaction; if it fails, each fetch on
            //    its own.
            let big: Vec<u64> = self
                .fetches
                .iter()
                .filter(|(_, f)| f.meta_dirty && f.meta.requests.len() > PIECE_ROWS)
                .map(|(u, _)| *u)
                .collect();
            for uid in big {
                if let Err(e) = self.write_request_pieces(uid) {
                    tracing::warn!(uid, error = %e, "the requests of a fetch being created could not be written");
                    if self.broken.is_some() {
                        return Err(e);
                    }
                    self.revert(uid, &e)?;
                }
            }
            if self.is_dirty() && self.try_commit(Scope::All).is_err() {
                if let Some(e) = &self.broken {
                    return Err(e.clone());
                }
                let mut dirty: Vec<u64> = self.deleting.keys().copied().collect();
                dirty.extend(
                    self.fetches
                        .iter()
                        .filter(|(_, f)| f.is_dirty())
                        .map(|(u, _)| *u),
                );
                for uid in dirty {
                    if let Err(e) = self.try_commit(Scope::One(uid)) {
                        if let Some(b) = &self.broken {
                            return Err(b.clone());
                        }
                        tracing::warn!(uid, error = %e, "a fetch's changes could not be written; it keeps its committed state");
                        self.revert(uid, &e)?;
                    }
                }
            }
        }
        let mut outcome = FlushOutcome::default();
        for (uid, e) in &self.reverted {
            outcome.failed.entry(*uid).or_insert_with(|| e.clone());
        }
        self.dirty_since = if self.is_dirty() {
            Some(self.dirty_since.unwrap_or_else(Instant::now))
        } else {
            None
        };
        Ok(outcome)
    }

    /// Writes the request rows of fetch `uid` (being created, with more than [`PIECE_ROWS`]
    /// requests) in transactions of [`PIECE_ROWS`] rows, all but the last piece: the first also
    /// writes the fetch's metadata, state (not committed) and index rows, so that a crash in
    /// between leaves an uncommitted fetch, which recovery discards. The last piece and the
    /// record rows go with the fetch's regular commit. A failure reopens the database.
    fn write_request_pieces(&mut self, uid: u64) -> Result<(), StoreError> {
        let n = self.fetches[&uid].meta.requests.len();
        let mut start = self.fetches[&uid].requests_written;
        while n - start > PIECE_ROWS {
            let end = start + PIECE_ROWS;
            let r = (|| -> Result<(), StoreError> {
                let txn = self.begin_write()?;
                let w = |e: redb::Error| store_error("write", e);
                {
                    let f = &self.fetches[&uid];
                    if start == 0 {
                        let bare = bare_meta(&f.meta);
                        txn.open_table(FETCHES)
                            .map_err(|e| w(e.into()))?
                            .insert(uid, json(&bare).as_slice())
                            .map_err(|e| w(e.into()))?;
                        let row = FetchStateRow::new(false, f.flags, f.settled);
                        txn.open_table(FETCH_STATE)
                            .map_err(|e| w(e.into()))?
                            .insert(uid, json(&row).as_slice())
                            .map_err(|e| w(e.into()))?;
                        let k = crate::model::IndexKey::of(&f.meta);
                        txn.open_table(FETCH_INDEX)
                            .map_err(|e| w(e.into()))?
                            .insert(
                                (k.storage_key.as_str(), k.scope.as_str(), k.id.as_str(), uid),
                                (),
                            )
                            .map_err(|e| w(e.into()))?;
                    }
                    let mut t = txn.open_table(REQUESTS).map_err(|e| w(e.into()))?;
                    for (i, req) in f.meta.requests[start..end].iter().enumerate() {
                        t.insert((uid, (start + i) as u32), json(req).as_slice())
                            .map_err(|e| w(e.into()))?;
                    }
                    let mut schema = txn.open_table(SCHEMA).map_err(|e| w(e.into()))?;
                    schema
                        .insert(COMMIT_SEQ_KEY, self.seq + 1)
                        .map_err(|e| w(e.into()))?;
                    schema
                        .insert(UID_FLOOR_KEY, self.uid_floor)
                        .map_err(|e| w(e.into()))?;
                }
                txn.commit().map_err(|e| store_error("commit", e))
            })();
            match r {
                Ok(()) => {
                    self.seq += 1;
                    start = end;
                    self.fetches
                        .get_mut(&uid)
                        .expect("being created")
                        .requests_written = end;
                }
                Err(e) => {
                    // Whether it landed or not, the fetch is not whole: the caller reverts it.
                    self.db = None;
                    self.reopen_raw()?;
                    self.seq = self.read_seq()?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The group commit threshold.
    fn group_commit_bytes(&self) -> u64 {
        self.config.group_commit_bytes.max(64 * 1024) as u64
    }

    /// A spill (see the module documentation), run after a batch: the next operation waits
    /// meanwhile, which slows a writer down to the disk.
    pub(crate) fn group_commit_if_due(&mut self) {
        if self.buffered_bytes() < self.group_commit_bytes() {
            return;
        }
        let dirty: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| !f.dirty_records.is_empty())
            .map(|(u, _)| *u)
            .collect();
        for uid in dirty {
            if let Err(e) = self.write_files(uid, false) {
                tracing::warn!(uid, error = %e, "a fetch's body bytes could not be written");
                if let Err(e) = self.revert(uid, &e) {
                    tracing::error!(error = %e, "reverting a fetch failed");
                }
            }
        }
        if self.buffered_bytes() >= self.group_commit_bytes()
            && let Err(e) = self.flush()
        {
            tracing::error!(error = %e, "a group commit failed");
        }
    }

    /// Writes every change in `scope` in one transaction. Returns what to apply to the model
    /// once the commit landed.
    fn write_txn(&self, scope: Scope, seq: u64) -> Result<Plan, StoreError> {
        let txn = self.begin_write()?;
        let w = |e: redb::Error| store_error("write", e);
        let mut plan = Plan::default();
        for (uid, d) in &self.deleting {
            if scope.covers(*uid) {
                delete_fetch_rows(&txn, *uid, &d.key).map_err(w)?;
                plan.deleted.push(*uid);
            }
        }
        {
            let mut fetches_t = txn.open_table(FETCHES).map_err(|e| w(e.into()))?;
            let mut requests_t = txn.open_table(REQUESTS).map_err(|e| w(e.into()))?;
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
                    // The metadata without its requests, then one row per request.
                    let requests = &f.meta.requests;
                    let bare = bare_meta(&f.meta);
                    fetches_t
                        .insert(uid, json(&bare).as_slice())
                        .map_err(|e| w(e.into()))?;
                    for (i, r) in requests.iter().enumerate().skip(f.requests_written) {
                        requests_t
                            .insert((uid, i as u32), json(r).as_slice())
                            .map_err(|e| w(e.into()))?;
                    }
                    let k = crate::model::IndexKey::of(&f.meta);
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
                for i in &f.dirty_records {
                    let r = &f.records[*i];
                    if !r.is_dirty() {
                        continue;
                    }
                    let i32_ = *i as u32;
                    let mut row = r.row();
                    let mut inline = [0u64; 2];
                    for (k, (b, t)) in [(&r.body, &mut body_t), (&r.request, &mut req_t)]
                        .into_iter()
                        .enumerate()
                    {
                        if b.drop_chunks {
                            delete_chunks_from(t, uid, i32_, 0).map_err(w)?;
                        }
                        if b.place == Place::Inline && b.buf_len > 0 {
                            write_chunks(t, uid, i32_, b.written, &b.buf, b.buf_len).map_err(w)?;
                            inline[k] = b.buf_len;
                        }
                    }
                    row.body_len += inline[0];
                    row.request_len += inline[1];
                    records_t
                        .insert((uid, i32_), row.encode().as_slice())
                        .map_err(|e| w(e.into()))?;
                    if let Some(h) = &r.new_head {
                        heads_t
                            .insert((uid, i32_), json(h).as_slice())
                            .map_err(|e| w(e.into()))?;
                    }
                    plan.bodies.push((uid, *i, inline[0], inline[1]));
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

    /// The plan `write_txn` would make, without writing.
    fn plan_only(&self, scope: Scope) -> Plan {
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
            for i in &f.dirty_records {
                let r = &f.records[*i];
                if r.is_dirty() {
                    let inline = |b: &crate::model::Body| {
                        if b.place == Place::Inline {
                            b.buf_len
                        } else {
                            0
                        }
                    };
                    plan.bodies
                        .push((*uid, *i, inline(&r.body), inline(&r.request)));
                }
            }
        }
        plan
    }

    /// Applies a landed plan to the model, and removes the files it made unreferenced.
    fn apply(&mut self, plan: Plan, seq: u64) {
        self.seq = seq;
        for uid in plan.deleted {
            if let Some(d) = self.deleting.remove(&uid) {
                for name in d.files {
                    self.remove_body_file(&name);
                }
            }
        }
        for (uid, i, nb, nr) in plan.bodies {
            let r = &mut self.fetches.get_mut(&uid).expect("planned").records[i];
            for (b, n) in [(&mut r.body, nb), (&mut r.request, nr)] {
                if n > 0 {
                    b.consume(n);
                    b.synced = b.written;
                }
                b.durable = b.written;
                b.drop_chunks = false;
            }
            r.row_dirty = false;
            r.new_head = None;
        }
        for uid in plan.fetches {
            let f = self.fetches.get_mut(&uid).expect("planned");
            if f.meta_dirty {
                // The requests are in the database now: the model does not keep them.
                f.meta.requests = Vec::new();
            }
            f.meta_dirty = false;
            f.state_dirty = false;
            f.ui_dirty = false;
            f.dirty_records.clear();
            let mut kept = Vec::new();
            for (u, name) in std::mem::take(&mut self.unlink_after_commit) {
                if u == uid {
                    self.remove_body_file(&name);
                } else {
                    kept.push((u, name));
                }
            }
            self.unlink_after_commit = kept;
        }
    }

    /// One commit attempt for `scope`. `Ok` if it landed (even if the commit reported an error:
    /// redb says such changes may be durable, and the commit sequence number tells). `Err` if
    /// it did not; the database is then reopened (or `self.broken` is set).
    pub(crate) fn try_commit(&mut self, scope: Scope) -> Result<(), StoreError> {
        let seq = self.seq + 1;
        let err = match self.write_txn(scope, seq) {
            Ok(plan) => {
                self.apply(plan, seq);
                return Ok(());
            }
            Err(e) => e,
        };
        tracing::warn!(error = %err, ?scope, "a commit failed; reopening the store");
        self.db = None;
        self.reopen_raw()?;
        match self.read_seq() {
            Ok(s) if s == seq => {
                // The commit reached the disk after all: redo the plan's bookkeeping (the model
                // has not changed since).
                tracing::info!(seq, "the failed commit landed");
                let plan = self.plan_only(scope);
                self.apply(plan, seq);
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
}
