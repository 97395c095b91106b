//! Quota from the disk: what the store's file system can still hold.

use background_fetch::{BoxFuture, QuotaHost};
use futures::FutureExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Kept free on the store's file system whatever the quota says.
pub const SAFETY_MARGIN: u64 = 256 * 1024 * 1024;

/// A [`QuotaHost`] whose quota is the free space of the store's file system when the process
/// started, less [`SAFETY_MARGIN`], plus what each storage key already stored then (the engine
/// counts those bytes as used, and the file system already did). So a `downloadTotal` that cannot
/// fit on the disk is a `QuotaExceededError` at `fetch()`, and a download without one fails with
/// `quota-exceeded` before it fills the disk.
///
/// One figure per process: bgfetch runs one process per store, and measuring once keeps the
/// host off the path of every body chunk.
#[derive(Debug)]
pub struct DiskQuota {
    available: u64,
    stored_at_start: Mutex<HashMap<String, u64>>,
}

impl DiskQuota {
    /// Measures the file system that holds `path` (a file or directory that exists).
    pub fn measure(path: &Path) -> std::io::Result<DiskQuota> {
        let stat = rustix::fs::statvfs(path)?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        Ok(DiskQuota::with_free_space(free))
    }

    /// A quota for a file system with `free` bytes available.
    pub fn with_free_space(free: u64) -> DiskQuota {
        DiskQuota {
            available: free.saturating_sub(SAFETY_MARGIN),
            stored_at_start: Mutex::default(),
        }
    }

    /// Records what `storage_key` had stored when the process started.
    pub fn set_stored_at_start(&self, storage_key: &str, bytes: u64) {
        self.stored_at_start
            .lock()
            .unwrap()
            .insert(storage_key.to_owned(), bytes);
    }
}

impl DiskQuota {
    /// The room for `storage_key`: the free space less the margin, plus what it stored before.
    pub fn limit(&self, storage_key: &str) -> Option<u64> {
        let stored = self
            .stored_at_start
            .lock()
            .unwrap()
            .get(storage_key)
            .copied()
            .unwrap_or(0);
        Some(self.available.saturating_add(stored))
    }
}

impl QuotaHost for DiskQuota {
    fn quota(&self, storage_key: &str) -> BoxFuture<'static, Option<u64>> {
        futures::future::ready(self.limit(storage_key)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_kept_and_stored_bytes_count_as_room() {
        let q = DiskQuota::with_free_space(SAFETY_MARGIN + 1000);
        assert_eq!(q.limit("k"), Some(1000));
        q.set_stored_at_start("k", 500);
        assert_eq!(q.limit("k"), Some(1500));
        assert_eq!(DiskQuota::with_free_space(10).limit("k"), Some(0));
        let measured = DiskQuota::measure(Path::new(".")).unwrap();
        assert!(measured.limit("k").is_some());
    }
}
