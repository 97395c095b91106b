//! What the store reports: its sizes, a compaction, an integrity check.

/// Sizes of the store's file, for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Length of the file.
    pub file_bytes: u64,
    /// Bytes of the file in allocated pages.
    pub allocated_bytes: u64,
    /// Bytes of keys and values stored.
    pub stored_bytes: u64,
    /// Bytes of the file that are free or fragmented (what compaction can give back).
    pub free_bytes: u64,
    /// Fetches held (committed or not).
    pub fetches: usize,
    /// Appended bytes not written to the file yet.
    pub buffered_bytes: u64,
    /// Bodies kept in body files.
    pub body_files: usize,
    /// Bytes of the bodies kept in body files.
    pub body_file_bytes: u64,
}

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// File length before.
    pub bytes_before: u64,
    /// File length after.
    pub bytes_after: u64,
}

/// What [`crate::RedbStore::check_integrity`] found. The store is consistent when `problems` is
/// empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Fetches in the file.
    pub fetches: usize,
    /// Fetches in the file that are not committed yet.
    pub uncommitted: usize,
    /// Records in the file.
    pub records: usize,
    /// Response body bytes.
    pub body_bytes: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Inline chunks (request and response).
    pub chunks: u64,
    /// Body files.
    pub body_files: u64,
    /// Every inconsistency found, in words.
    pub problems: Vec<String>,
}

impl IntegrityReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}
