//! Recovery at open: the database holds exactly the commits that landed; recovery makes
//! everything else agree with it.
//!
//! 1. Fetches whose creation never committed are discarded (rows and files).
//! 2. An active record's inline chunks past its durable length are trimmed.
//! 3. Every body file is cut to its row's durable length (bytes past it were written after the
//!    last commit that counted them; the engine fetches them again with a Range request).
//! 4. Files that no row references are removed (an older generation's, a deleted fetch's, a body
//!    that moved to its file in a commit that did not land).

use crate::actor::Actor;
use crate::error::store_error;
use crate::model::{IndexKey, Place, fetch_files};
use crate::rows::{delete_fetch_rows, read_all_fetches, trim_chunks};
use crate::schema::*;
use background_fetch::store::{RecordState, StoreError};
use redb::ReadableDatabase;
use std::collections::BTreeSet;

impl Actor {
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

    /// The number of the last commit that landed.
    pub(crate) fn read_seq(&self) -> Result<u64, StoreError> {
        self.read_schema_value(COMMIT_SEQ_KEY)
    }

    /// Recovery at open (see the module documentation).
    pub(crate) fn recover(&mut self) -> Result<(), StoreError> {
        self.seq = self.read_seq()?;
        self.uid_floor = self.uid_floor.max(self.read_schema_value(UID_FLOOR_KEY)?);
        let mut fetches = read_all_fetches(self.db())?;

        // 1. and 2., in one transaction.
        let uncommitted: Vec<u64> = fetches
            .iter()
            .filter(|(_, f)| !f.committed)
            .map(|(u, _)| *u)
            .collect();
        let txn = self
            .db()
            .begin_write()
            .map_err(|e| store_error("begin a write", e))?;
        let mut changed = false;
        {
            let w = |e: redb::Error| store_error("recovery", e);
            for uid in &uncommitted {
                let f = fetches.remove(uid).expect("listed");
                tracing::info!(uid, id = %f.meta.id, "discarding a fetch whose creation never committed");
                delete_fetch_rows(&txn, *uid, &IndexKey::of(&f.meta)).map_err(w)?;
                changed = true;
            }
            let mut body_t = txn.open_table(BODY_CHUNKS).map_err(|e| w(e.into()))?;
            let mut records_t = txn.open_table(RECORDS).map_err(|e| w(e.into()))?;
            for (uid, f) in fetches.iter_mut() {
                for (i, r) in f.records.iter_mut().enumerate() {
                    // Only active records can have been written since their last commit
                    // (completed ones committed their bytes with their state, request bodies
                    // were committed with the fetch), and checking reads the last chunk: the
                    // cost stays bounded by the number of downloads in flight.
                    if r.state != RecordState::Active || r.body.place != Place::Inline {
                        continue;
                    }
                    let trim =
                        trim_chunks(&mut body_t, *uid, i as u32, r.body.durable).map_err(w)?;
                    changed |= trim.changed;
                    if trim.len != r.body.durable {
                        tracing::error!(
                            uid,
                            record = i,
                            durable = r.body.durable,
                            found = trim.len,
                            "bytes below the durable length are missing; keeping what is there"
                        );
                        r.body = crate::model::Body::stored(Place::Inline, trim.len);
                        records_t
                            .insert((*uid, i as u32), r.row().encode().as_slice())
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

        // 3. Body files, cut to their durable length.
        let io = |what: &str, name: &str, e: std::io::Error| {
            StoreError::new(
                background_fetch::store::StoreErrorKind::Io,
                format!("recovery: {what} body file {name}: {e}"),
            )
        };
        let mut referenced = BTreeSet::new();
        let mut short = Vec::new();
        for (uid, f) in &fetches {
            for (i, r) in f.records.iter().enumerate() {
                for (request, body) in [(false, &r.body), (true, &r.request)] {
                    if body.place != Place::File {
                        continue;
                    }
                    let name = body_file_name(*uid, i as u32, (!request).then_some(r.generation));
                    referenced.insert(name.clone());
                    let file = self
                        .files
                        .open_existing(&name)
                        .map_err(|e| io("open", &name, e))?;
                    let len = match &file {
                        Some(file) => file.len().map_err(|e| io("read the length of", &name, e))?,
                        None => 0,
                    };
                    if len > body.durable {
                        let file = file.expect("a file with a length");
                        file.set_len(body.durable)
                            .and_then(|()| file.sync_data())
                            .map_err(|e| io("cut", &name, e))?;
                        tracing::info!(
                            uid,
                            record = i,
                            file = %name,
                            from = len,
                            to = body.durable,
                            "cut a body file to its durable length"
                        );
                    } else if len < body.durable {
                        short.push((*uid, i, request, name.clone(), len));
                    }
                }
            }
        }
        for (uid, i, request, name, len) in short {
            // Never happens when the disk keeps synced bytes (a body is synced before the row
            // that counts it commits): the file was damaged. Keep what is there; the integrity
            // check reports the difference until the record is written again.
            tracing::error!(
                uid,
                record = i,
                file = %name,
                found = len,
                "a body file is shorter than its durable length; keeping what is there"
            );
            let f = fetches.get_mut(&uid).expect("listed");
            let r = &mut f.records[i];
            let body = if request { &mut r.request } else { &mut r.body };
            body.written = len;
            body.synced = len;
            f.dirty_records.insert(i);
        }

        // 4. Files no row references.
        let names = self.files.list().map_err(|e| io("list", "directory", e))?;
        let mut removed = 0usize;
        for name in names {
            if parse_body_file_name(&name).is_none() || referenced.contains(&name) {
                continue;
            }
            self.files
                .remove(&name)
                .map_err(|e| io("remove", &name, e))?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "removed body files no record references");
            self.files
                .sync_dir()
                .map_err(|e| io("sync", "directory", e))?;
        }
        debug_assert!(
            fetches
                .iter()
                .all(|(u, f)| fetch_files(*u, f).iter().all(|n| referenced.contains(n)))
        );

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
        self.rebuild_active();
        self.sync_ingress();
        Ok(())
    }
}
