//! The storage thread's loop: operations arrive on a channel and are taken in **batches**
//! (everything waiting, up to [`BATCH_MAX`]). Operations that must be durable when they reply
//! (`commit_fetch`, `complete_record`, `set_flags`, `mark_request_sent`, `set_ui`, `settle`,
//! `delete_fetch`) change the model and wait; one commit at the end of the batch makes all of
//! them durable, so records completing together share one fsync (group commit). Operations that
//! need everything before them committed (`load`, `flush`, exports, maintenance) commit the
//! waiting ones first. Timers: the group commit interval and idle compaction.

use crate::actor::{Actor, Op, PurgeFilter, Reply};
use crate::ingress::Expect;
use background_fetch::FetchUid;
use background_fetch::store::{RecordState, StoreError};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Instant;

/// Operations taken in one batch at most.
pub(crate) const BATCH_MAX: usize = 256;

/// What handling an operation left to do.
pub(crate) enum Handled {
    /// Send this reply now.
    Reply(Box<dyn FnOnce() + Send>),
    /// Reply once fetch `uid`'s changes are committed, with that commit's result for it.
    AfterCommit(u64, Reply<()>),
}

/// The sending of a reply, for later.
pub(crate) fn deferred<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> Handled {
    Handled::Reply(Box::new(move || {
        let _ = reply.send(result);
    }))
}

/// A durable operation's reply: at once if it failed, else after the batch's commit.
pub(crate) fn after_commit(reply: Reply<()>, result: Result<u64, StoreError>) -> Handled {
    match result {
        Ok(uid) => Handled::AfterCommit(uid, reply),
        Err(e) => deferred(reply, Err(e)),
    }
}

/// Whether `op` replies only once durable.
fn is_durable(op: &Op) -> bool {
    matches!(
        op,
        Op::Commit(..)
            | Op::Complete(..)
            | Op::SetFlags(..)
            | Op::MarkRequestSent(..)
            | Op::SetUi(..)
            | Op::Settle(..)
            | Op::Delete(..)
    )
}

/// Whether `op` needs every change before it committed first.
fn is_barrier(op: &Op) -> bool {
    matches!(
        op,
        Op::Load(_)
            | Op::Flush(_)
            | Op::CheckIntegrity(_)
            | Op::Compact(_)
            | Op::Stats(_)
            | Op::Purge(..)
            | Op::Export(..)
            | Op::WriteRows(..)
            | Op::Rows(..)
            | Op::Close(_)
    )
}

impl Actor {
    /// Runs until every handle is dropped or `Close` arrives.
    pub(crate) fn run(mut self, rx: Receiver<Op>) {
        loop {
            let deadline = self.next_deadline();
            let first = match deadline {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            let mut batch = match first {
                Ok(op) => vec![op],
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_ingress();
                    self.tick();
                    self.sync_ingress();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(e) = self.close() {
                        tracing::error!(error = %e, "closing the store failed");
                    }
                    return;
                }
            };
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            // Group commit: a durable operation while other records are downloading waits a
            // little for their completions, to share one commit.
            let wait = self.config.group_commit_wait;
            if !wait.is_zero() && self.active.len() > 1 && batch.iter().any(is_durable) {
                let until = Instant::now() + wait;
                while batch.len() < BATCH_MAX {
                    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
            }
            self.last_activity = Instant::now();
            if self.handle_batch(batch) {
                return;
            }
        }
    }

    /// Handles a batch; `true` once the store closed.
    fn handle_batch(&mut self, batch: Vec<Op>) -> bool {
        self.reverted.clear();
        let mut waiting: Vec<(u64, Reply<()>)> = Vec::new();
        for op in batch {
            if is_barrier(&op) {
                self.commit_waiting(&mut waiting);
            }
            if let Op::Close(reply) = op {
                let r = self.close();
                let _ = reply.send(r);
                return true;
            }
            self.sync_ingress();
            match self.handle_op(op) {
                Handled::Reply(send) => {
                    // Sent once the fast path's expectations reflect the operation, so that no
                    // append can be taken on stale ones by a caller that saw the reply.
                    self.sync_ingress();
                    send();
                }
                Handled::AfterCommit(uid, reply) => waiting.push((uid, reply)),
            }
        }
        self.commit_waiting(&mut waiting);
        self.sync_ingress();
        self.group_commit_if_due();
        false
    }

    /// Commits the changes the waiting operations made, durably, and replies to them.
    fn commit_waiting(&mut self, waiting: &mut Vec<(u64, Reply<()>)>) {
        if waiting.is_empty() {
            return;
        }
        let outcome = self.flush();
        self.sync_ingress();
        for (uid, reply) in waiting.drain(..) {
            let r = match &outcome {
                Err(e) => Err(e.clone()),
                Ok(o) => match o.failed.get(&uid) {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                },
            };
            let _ = reply.send(r);
        }
    }

    /// Runs `op` on the model.
    fn handle_op(&mut self, op: Op) -> Handled {
        match op {
            Op::Load(reply) => deferred(reply, self.load()),
            Op::Usage(key, reply) => deferred(reply, Ok(self.usage(&key))),
            Op::UidFloor(reply) => deferred(reply, Ok(self.uid_floor)),
            Op::Create(meta, reply) => deferred(reply, self.create(*meta)),
            Op::AppendRequest(uid, rec, bytes, reply) => {
                deferred(reply, self.append(uid.0, rec, None, None, bytes))
            }
            Op::Commit(uid, flags, reply) => after_commit(reply, self.commit(uid.0, flags)),
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
                after_commit(reply, self.complete(uid.0, rec, generation, result))
            }
            Op::Read(uid, rec, generation, offset, max, reply) => {
                deferred(reply, self.read(uid.0, rec, Some(generation), offset, max))
            }
            Op::SetFlags(uid, flags, reply) => {
                let r = self.change_fetch(uid.0, |f| {
                    f.flags = flags;
                    f.state_dirty = true;
                });
                after_commit(reply, r)
            }
            Op::MarkRequestSent(uid, rec, reply) => {
                after_commit(reply, self.mark_request_sent(uid.0, rec))
            }
            Op::SetUi(uid, title, icons, reply) => {
                let r = self.change_fetch(uid.0, |f| {
                    f.meta.title = title;
                    f.meta.icons = icons;
                    f.ui_set = true;
                    f.ui_dirty = true;
                });
                after_commit(reply, r)
            }
            Op::Settle(uid, result, reason, reply) => {
                let r = self.change_fetch(uid.0, |f| {
                    f.settled = Some((result, reason));
                    f.state_dirty = true;
                });
                after_commit(reply, r)
            }
            Op::Delete(uid, reply) => after_commit(reply, self.delete(&[uid.0]).map(|()| uid.0)),
            Op::Export(uid, rec, generation, dest, mode, reply) => {
                match self.export(uid.0, rec, generation, dest, mode) {
                    // The copy runs on its own thread and replies from there.
                    Ok(job) => {
                        job.spawn(reply);
                        Handled::Reply(Box::new(|| {}))
                    }
                    Err(e) => deferred(reply, Err(e)),
                }
            }
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
                let r = self.delete(&victims).and_then(|()| {
                    let outcome = self.flush()?;
                    for uid in &victims {
                        if let Some(e) = outcome.failed.get(uid) {
                            return Err(e.clone());
                        }
                    }
                    Ok(victims.into_iter().map(FetchUid).collect())
                });
                deferred(reply, r)
            }
            Op::Flush(reply) => deferred(reply, self.flush().map(|_| ())),
            Op::WriteRows(ns, writes, reply) => deferred(reply, self.write_rows(&ns, writes)),
            Op::Rows(ns, prefix, reply) => deferred(reply, self.rows(&ns, &prefix)),
            Op::CheckIntegrity(reply) => deferred(reply, self.check_integrity()),
            Op::Compact(reply) => deferred(reply, self.compact()),
            Op::Stats(reply) => deferred(reply, self.stats()),
            Op::Wake => Handled::Reply(Box::new(|| {})),
            Op::Close(_) => unreachable!("handled by handle_batch"),
        }
    }

    pub(crate) fn close(&mut self) -> Result<(), StoreError> {
        // No fast append may be taken once the final commit has drained the queue.
        self.ingress.lock().enabled = false;
        self.sync_ingress();
        let r = if self.is_dirty() {
            self.flush().map(|_| ())
        } else {
            Ok(())
        };
        self.db = None;
        self.open_files.clear();
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
            if let Err(e) = self.flush() {
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

    /// Recomputes the records the fast path may append to, for fetch `uid` (all if `None`).
    pub(crate) fn rebuild_active_of(&mut self, uid: u64) {
        let lo = (uid, 0usize);
        let hi = (uid, usize::MAX);
        let stale: Vec<_> = self.active.range(lo..=hi).copied().collect();
        for k in stale {
            self.active.remove(&k);
        }
        if let Some(f) = self.fetches.get(&uid) {
            for (i, r) in f.records.iter().enumerate() {
                if r.poison.is_none() && r.state == RecordState::Active {
                    self.active.insert((uid, i));
                }
            }
        }
    }

    pub(crate) fn rebuild_active(&mut self) {
        self.active.clear();
        let uids: Vec<u64> = self.fetches.keys().copied().collect();
        for uid in uids {
            self.rebuild_active_of(uid);
        }
    }

    /// Moves the appends the fast path queued into the buffers, then publishes what the next
    /// append to each record being downloaded must say. Both under the queue's lock, so that no
    /// append slips between the two.
    pub(crate) fn sync_ingress(&mut self) {
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
                    r.poison = Some(Box::new(e));
                }
                self.active.remove(&(p.uid, p.record));
            }
        }
        st.expect.clear();
        if !st.enabled || self.broken.is_some() {
            return;
        }
        // Only records being downloaded: the map stays as small as the downloads in flight,
        // whatever the number of records.
        let mut stale = Vec::new();
        for (uid, i) in &self.active {
            match self.fetches.get(uid).and_then(|f| f.records.get(*i)) {
                Some(r) if r.poison.is_none() && r.state == RecordState::Active => {
                    st.expect.insert(
                        (*uid, *i),
                        Expect {
                            generation: r.generation,
                            next: r.body.len(),
                        },
                    );
                }
                _ => stale.push((*uid, *i)),
            }
        }
        for k in stale {
            self.active.remove(&k);
        }
    }
}
