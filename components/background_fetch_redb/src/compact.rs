//! Maintenance of the database file: sizes ([`crate::reports::StoreStats`]) and compaction.
//!
//! redb is copy-on-write, so its file grows past the rows it holds; pages freed by deleted
//! fetches are reused, and compaction gives them back. With large bodies in their own files,
//! the database stays small (rows, heads and small inline bodies).

use crate::actor::Actor;
use crate::error::store_error;
use crate::reports::{CompactReport, StoreStats};
use background_fetch::store::StoreError;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Actor {
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
            body_files: self.body_file_count().0,
            body_file_bytes: self.body_file_count().1,
        })
    }

    pub(crate) fn compact_if_worth_it(&mut self) -> Result<Option<CompactReport>, StoreError> {
        let stats = self.stats()?;
        if stats.free_bytes < self.config.compact_min_free_bytes {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    pub(crate) fn compact(&mut self) -> Result<CompactReport, StoreError> {
        self.flush()?;
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

    /// Bodies in files, and their bytes.
    fn body_file_count(&self) -> (usize, u64) {
        let mut n = (0, 0);
        for r in self.fetches.values().flat_map(|f| &f.records) {
            for b in [&r.body, &r.request] {
                if b.in_file() {
                    n.0 += 1;
                    n.1 += b.written;
                }
            }
        }
        n
    }
}
