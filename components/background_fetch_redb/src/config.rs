//! Store settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`crate::RedbStore`]. `RedbStoreConfig::default()` suits a browser profile.
#[derive(Clone)]
pub struct RedbStoreConfig {
    /// redb's page cache, in bytes. redb's own default is 1 GiB; ours is 16 MiB, which a
    /// browser component can afford. Larger caches speed up reading bodies back.
    pub cache_size: usize,
    /// Group commit by size: once this many appended body bytes are buffered (over every
    /// record), the buffered bytes of bodies in files are written to their files (not synced)
    /// before the store takes the next operation, and inline bytes are committed if they alone
    /// reach it. This bounds the buffered bytes (to this plus what the append fast path queues,
    /// as much again) and slows a writer down to the disk (backpressure). At least 64 KiB.
    pub group_commit_bytes: usize,
    /// Bodies up to this many bytes stay inline in redb (their bytes share the transactions of
    /// the rows, so a thousand small records cost a few syncs); a body that grows past it moves
    /// to its own file beside the database (written once, at the speed of a plain file).
    pub inline_body_max: usize,
    /// Group commit of durable operations: when one arrives while other records are being
    /// downloaded, the store waits up to this long for more (their completions) before it
    /// commits, so that they share the commit (its fsyncs and its writes of redb's pages).
    /// Zero (the default) commits at once: operations that arrive during a commit share the
    /// next one anyway. Measured with 10,000 records of 4 KiB, 16 at a time: 2 ms took 4.1 s
    /// instead of 1.6–1.8 s (it wrote 15 % less); 0.3 ms 1.9 s.
    pub group_commit_wait: Duration,
    /// Group commit by time: buffered bytes are committed durably at most this long after they
    /// were appended. This bounds what a crash can lose of an active record's body (which is then
    /// fetched again with a Range request).
    pub group_commit_interval: Duration,
    /// Commit with redb's quick-repair (the allocator state is saved with every durable commit),
    /// so that opening after a crash does not have to walk the whole file. On by default:
    /// start-up time after a crash matters more than the cost per commit.
    pub quick_repair: bool,
    /// Compact the file once the store has been idle (no operation and nothing buffered) this
    /// long after fetches were deleted, if enough of the file is free. `None` never compacts on
    /// its own ([`crate::RedbStore::compact`] still does).
    pub compact_when_idle: Option<Duration>,
    /// Compaction only runs when at least this many bytes of the file are free.
    pub compact_min_free_bytes: u64,
    /// A quota per storage key: a write that would take a storage key's usage past it fails
    /// with `QuotaExceeded` (the engine checks its own ledger first; this is the store's own
    /// guard). Read on the storage thread for every write, so it answers at once: a limit the
    /// embedder keeps, not a call to another process (the engine's asynchronous
    /// `background_fetch::QuotaHost` is that).
    pub quota: Option<QuotaLimit>,
    /// A limit on all bytes stored (request and response bodies, over every storage key).
    pub max_total_bytes: Option<u64>,
}

/// The quota of a storage key in bytes (`None`: unlimited), answered at once
/// ([`RedbStoreConfig::quota`]).
pub type QuotaLimit = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

impl Default for RedbStoreConfig {
    fn default() -> Self {
        RedbStoreConfig {
            cache_size: 16 * 1024 * 1024,
            group_commit_bytes: 2 * 1024 * 1024,
            inline_body_max: 64 * 1024,
            group_commit_wait: Duration::ZERO,
            group_commit_interval: Duration::from_millis(500),
            quick_repair: true,
            compact_when_idle: Some(Duration::from_secs(30)),
            compact_min_free_bytes: 64 * 1024 * 1024,
            quota: None,
            max_total_bytes: None,
        }
    }
}

impl fmt::Debug for RedbStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStoreConfig")
            .field("cache_size", &self.cache_size)
            .field("group_commit_bytes", &self.group_commit_bytes)
            .field("inline_body_max", &self.inline_body_max)
            .field("group_commit_wait", &self.group_commit_wait)
            .field("group_commit_interval", &self.group_commit_interval)
            .field("quick_repair", &self.quick_repair)
            .field("compact_when_idle", &self.compact_when_idle)
            .field("compact_min_free_bytes", &self.compact_min_free_bytes)
            .field("quota", &self.quota.is_some())
            .field("max_total_bytes", &self.max_total_bytes)
            .finish()
    }
}
