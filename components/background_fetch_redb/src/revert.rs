//! Failures: returning a fetch to its committed state, and reopening the database.
//!
//! redb refuses further writes on a handle that saw an I/O error, so after a failed commit the
//! store reopens the file; the commit sequence number tells whether the commit landed anyway.
//! A fetch whose changes could not be written is **reverted**: the model takes what the
//! database holds, and its records that lost bytes (or state) are *poisoned*: their next append
//! (and a `complete_record` with `success`, and the `commit_fetch` of a fetch being created)
//! fails with the error, so the engine fails the fetch and nothing is ever reported complete
//! that is not durable.

use crate::actor::Actor;
use crate::error::store_error;
use crate::model::{Deleting, IndexKey, fetch_files};
use crate::open::open_database;
use crate::rows::read_fetch;
use crate::schema::body_file_name;
use background_fetch::store::{StoreError, StoreErrorKind};
use redb::ReadableDatabase;

impl Actor {
    /// Reverts fetch `uid` to what the database holds, poisoning records that lost bytes.
    pub(crate) fn revert(&mut self, uid: u64, e: &StoreError) -> Result<(), StoreError> {
        if self.deleting.contains_key(&uid) {
            // A delete that cannot be written stays pending; it is retried by the next commit.
            // It failed all the same: `delete_fetch` must not report it done.
            self.reverted.insert(uid, e.clone());
            return Ok(());
        }
        let read = self
            .db()
            .begin_read()
            .map_err(|x| store_error("begin a read", x))?;
        let on_disk = read_fetch(&read, uid)?;
        drop(read);
        let Some(old) = self.fetches.remove(&uid) else {
            return Ok(());
        };
        self.reverted.insert(uid, e.clone());
        self.new_files.remove(&uid);
        // The files of older generations stay: the database still names them.
        self.unlink_after_commit.retain(|(u, _)| *u != uid);
        // A fetch being created whose rows were written in pieces (a fetch of many records) and
        // whose last piece did not land: what the disk holds is not a fetch. It is gone, and its
        // rows go with the next commit.
        let partial =
            matches!(&on_disk, Some(f) if !f.committed && f.records.len() < old.records.len());
        if partial {
            self.lost.insert(uid, e.clone());
            self.deleting.insert(
                uid,
                Deleting {
                    key: IndexKey::of(&old.meta),
                    files: fetch_files(uid, &old),
                },
            );
            self.rebuild_active_of(uid);
            return Ok(());
        }
        match on_disk {
            None => {
                self.lost.insert(uid, e.clone());
                for (i, r) in old.records.iter().enumerate() {
                    if r.body.in_file() {
                        self.remove_body_file(&body_file_name(uid, i as u32, Some(r.generation)));
                    }
                    if r.request.in_file() {
                        self.remove_body_file(&body_file_name(uid, i as u32, None));
                    }
                }
            }
            Some(mut f) => {
                for (i, (r, o)) in f.records.iter_mut().zip(&old.records).enumerate() {
                    let lost = o.is_dirty()
                        || o.body.len() != r.body.len()
                        || o.request.len() != r.request.len()
                        || o.state != r.state
                        || o.generation != r.generation;
                    r.poison = if lost {
                        Some(Box::new(e.clone()))
                    } else {
                        o.poison.clone()
                    };
                    // Bytes the model had written past the committed length (or a file the
                    // database does not name) are cut or removed, so that nothing past a row's
                    // length is ever exported or read.
                    for (request, ob, nb, og, ng) in [
                        (false, &o.body, &r.body, o.generation, r.generation),
                        (true, &o.request, &r.request, 0, 0),
                    ] {
                        if !ob.in_file() {
                            continue;
                        }
                        let name = body_file_name(uid, i as u32, (!request).then_some(og));
                        if nb.in_file() && og == ng {
                            if ob.written > nb.durable
                                && let Ok(Some(file)) = self.body_file(&name, false)
                                && let Err(x) = file.set_len(nb.durable)
                            {
                                tracing::warn!(file = %name, error = %x, "could not cut a body file back; the next open does");
                            }
                        } else {
                            self.remove_body_file(&name);
                        }
                    }
                }
                self.fetches.insert(uid, f);
            }
        }
        self.rebuild_active_of(uid);
        Ok(())
    }

    /// After a reopen: if the database's commit sequence is not the model's, commits the model
    /// counted are gone; every fetch returns to what the disk holds.
    pub(crate) fn forget_lost_commits(&mut self, e: &StoreError) -> Result<(), StoreError> {
        let disk = self.read_seq()?;
        if disk == self.seq {
            return Ok(());
        }
        tracing::warn!(
            disk,
            model = self.seq,
            "the database does not hold the commits the store counted"
        );
        self.seq = disk;
        let all: Vec<u64> = self.fetches.keys().copied().collect();
        for uid in all {
            self.revert(uid, e)?;
        }
        Ok(())
    }

    /// Reopens the database after an I/O error, without reconciling the model.
    pub(crate) fn reopen_raw(&mut self) -> Result<(), StoreError> {
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

    /// Reopens a store that was left closed by an I/O error, and reconciles the model with
    /// what the disk holds (changes not committed were lost with the failed commit).
    pub(crate) fn reopen(&mut self) -> Result<(), StoreError> {
        let e = self.broken.clone().unwrap_or_else(|| {
            StoreError::new(StoreErrorKind::Io, "changes were lost by an I/O error")
        });
        self.reopen_raw()?;
        self.forget_lost_commits(&e)?;
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
}
