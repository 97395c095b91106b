//! The on-disk schema (version 2): table definitions, value encodings and body file names.
//!
//! Every table is keyed by the fetch's [`FetchUid`](background_fetch::FetchUid) (a `u64`) first,
//! so everything about one fetch is a contiguous key range in each table.
//!
//! # Versions
//!
//! * **1**: every body in redb, as chunks of [`CHUNK_SIZE`] bytes in [`BODY_CHUNKS`] and
//!   [`REQUEST_CHUNKS`]; record rows of format 1.
//! * **2** (this build): each request is a row of [`REQUESTS`] (a fetch's metadata row holds no
//!   requests); a body is either *inline* (chunks in the same tables, exactly as in
//!   version 1) or in a *body file* beside the database ([`body_file_name`]); record rows of
//!   format 2 say which, in bits 1 and 2 of byte 3. A format 1 row reads as a format 2 row with
//!   both bodies inline, which is what it means: a version 1 store is migrated in place by
//!   writing the new version number (`crate::open`), and its bodies stay inline until they
//!   grow (an active record's body moves to a file at its next commit past the inline limit).

use background_fetch::store::{RecordState, StoredFlags};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchResult, ImageResource, RecordResult,
};
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u64 = 2;

/// The oldest schema version this build migrates (in place, when it opens the store).
pub const OLDEST_MIGRATED_VERSION: u64 = 1;

/// Size of one body chunk: just under 1 MiB, so a chunk plus its key and page header fits a
/// 1 MiB buddy allocation (an exact power of two doubles the file: research §A.1.7).
pub const CHUNK_SIZE: usize = 1024 * 1024 - 4096;

/// `"version"` → schema version; `"commit_seq"` → number of the last commit (used to learn
/// whether a commit that reported an I/O error reached the disk anyway).
pub const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("bgfetch_schema");
/// Key of the schema version in [`SCHEMA`].
pub const VERSION_KEY: &str = "version";
/// Key of the commit sequence number in [`SCHEMA`].
pub const COMMIT_SEQ_KEY: &str = "commit_seq";
/// Key of the schema table holding one more than the highest fetch uid ever created.
pub const UID_FLOOR_KEY: &str = "uid_floor";

/// uid → [`FetchMeta`](background_fetch::store::FetchMeta) as JSON (as created). In version 2
/// its `requests` are empty and each request is a row of [`REQUESTS`] (so that a fetch of many
/// records is never one huge value, and the model need not keep the requests); a version 1 row
/// holds them.
pub const FETCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("fetches");
/// (uid, record) → the record's [`Request`](background_fetch::Request) as JSON (version 2).
pub const REQUESTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("requests");
/// uid → [`FetchStateRow`] as JSON (committed, paused, settled).
pub const FETCH_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("fetch_state");
/// uid → [`UiRow`] as JSON: the title and icons set by `updateUI()` (absent until then).
pub const FETCH_UI: TableDefinition<u64, &[u8]> = TableDefinition::new("fetch_ui");
/// (storage key, registration scope, id, uid) → (): fetches by service worker registration.
pub const FETCH_INDEX: TableDefinition<(&str, &str, &str, u64), ()> =
    TableDefinition::new("fetch_index");
/// (uid, record) → [`RecordRow`] encoded by [`RecordRow::encode`].
pub const RECORDS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("records");
/// (uid, record) → the stored response head as JSON.
pub const RESPONSE_HEADS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("response_heads");
/// (uid, record, chunk index) → request body bytes.
pub const REQUEST_CHUNKS: TableDefinition<(u64, u32, u32), &[u8]> =
    TableDefinition::new("request_chunks");
/// (uid, record, chunk index) → response body bytes.
pub const BODY_CHUNKS: TableDefinition<(u64, u32, u32), &[u8]> =
    TableDefinition::new("body_chunks");

/// (namespace, key) → bytes: rows an embedder keeps in the same database as the background
/// fetches (the JavaScript host's Cache API and service worker registrations), through
/// [`crate::RedbStore::write_rows`] and [`crate::RedbStore::rows`]. The engine never reads
/// them. Created by the first write, so a store that never had one reads as empty, and adding
/// the table changed no schema version (older builds ignore a table they do not know).
pub const EMBEDDER_ROWS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("embedder_rows");

/// The mutable per-fetch flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStateRow {
    /// `commit_fetch` ran: the fetch exists for recovery.
    pub committed: bool,
    /// The paused flag.
    pub paused: bool,
    /// Waiting on the permission prompt (absent in rows written before it was kept).
    #[serde(default)]
    pub awaiting_permission: bool,
    /// The abort all flag (absent in rows written before it was kept).
    #[serde(default)]
    pub aborted: bool,
    /// The result and failure reason once settled.
    pub settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
}

impl FetchStateRow {
    /// The row of a fetch with these values.
    pub fn new(
        committed: bool,
        flags: StoredFlags,
        settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
    ) -> Self {
        FetchStateRow {
            committed,
            paused: flags.paused,
            awaiting_permission: flags.awaiting_permission,
            aborted: flags.aborted,
            settled,
        }
    }

    /// The fetch's flags.
    pub fn flags(&self) -> StoredFlags {
        StoredFlags {
            paused: self.paused,
            awaiting_permission: self.awaiting_permission,
            aborted: self.aborted,
        }
    }
}

/// The title and icons from `updateUI()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiRow {
    /// The title.
    pub title: String,
    /// The icons.
    pub icons: Vec<ImageResource>,
}

/// One record's state: 24 bytes, fixed layout, little-endian.
///
/// | bytes | field |
/// |---|---|
/// | 0 | format (2; 1 in stores of schema version 1) |
/// | 1 | state: 0 pending, 1 active, 2 completed |
/// | 2 | result code ([`result_code`]) when completed |
/// | 3 | flags: bit 0 set once the request may have been sent (`mark_request_sent`); bit 1: the response body is in its body file (else inline chunks); bit 2: the request body is in its body file; other bits 0 (format 1: only bit 0) |
/// | 4..8 | response data generation (`u32`) |
/// | 8..16 | durable response body length (`u64`) |
/// | 16..24 | durable request body length (`u64`) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRow {
    /// The record's state.
    pub state: RecordState,
    /// Its response data generation.
    pub generation: u32,
    /// Bytes of its response body in [`BODY_CHUNKS`].
    pub body_len: u64,
    /// Bytes of its request body in [`REQUEST_CHUNKS`].
    pub request_len: u64,
    /// `mark_request_sent` ran: the request may have reached the network.
    pub request_sent: bool,
    /// The response body is in its body file (else inline chunks).
    pub body_in_file: bool,
    /// The request body is in its body file (else inline chunks).
    pub request_in_file: bool,
}

/// Encoded length of a [`RecordRow`].
pub const RECORD_ROW_LEN: usize = 24;

impl RecordRow {
    /// The fixed encoding.
    pub fn encode(&self) -> [u8; RECORD_ROW_LEN] {
        let mut out = [0u8; RECORD_ROW_LEN];
        out[0] = 2;
        let (state, result) = match self.state {
            RecordState::Pending => (0, 0),
            RecordState::Active => (1, 0),
            RecordState::Completed(r) => (2, result_code(r)),
        };
        out[1] = state;
        out[2] = result;
        out[3] = u8::from(self.request_sent)
            | u8::from(self.body_in_file) << 1
            | u8::from(self.request_in_file) << 2;
        out[4..8].copy_from_slice(&self.generation.to_le_bytes());
        out[8..16].copy_from_slice(&self.body_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.request_len.to_le_bytes());
        out
    }

    /// Decodes; `None` if the bytes are not a valid row.
    pub fn decode(b: &[u8]) -> Option<RecordRow> {
        let flags_allowed = match b.first() {
            Some(1) => 0b1,
            Some(2) => 0b111,
            _ => return None,
        };
        if b.len() != RECORD_ROW_LEN || b[3] & !flags_allowed != 0 {
            return None;
        }
        let state = match b[1] {
            0 if b[2] == 0 => RecordState::Pending,
            1 if b[2] == 0 => RecordState::Active,
            2 => RecordState::Completed(result_from_code(b[2])?),
            _ => return None,
        };
        Some(RecordRow {
            state,
            request_sent: b[3] & 1 != 0,
            body_in_file: b[3] & 2 != 0,
            request_in_file: b[3] & 4 != 0,
            generation: u32::from_le_bytes(b[4..8].try_into().ok()?),
            body_len: u64::from_le_bytes(b[8..16].try_into().ok()?),
            request_len: u64::from_le_bytes(b[16..24].try_into().ok()?),
        })
    }
}

/// The stable on-disk code of a record result.
pub fn result_code(r: RecordResult) -> u8 {
    match r {
        RecordResult::Empty => 0,
        RecordResult::Success => 1,
        RecordResult::Redundant => 2,
        RecordResult::Aborted => 3,
        RecordResult::BadStatus => 4,
        RecordResult::FetchError => 5,
        RecordResult::QuotaExceeded => 6,
        RecordResult::DownloadTotalExceeded => 7,
    }
}

/// The record result of an on-disk code.
pub fn result_from_code(c: u8) -> Option<RecordResult> {
    Some(match c {
        0 => RecordResult::Empty,
        1 => RecordResult::Success,
        2 => RecordResult::Redundant,
        3 => RecordResult::Aborted,
        4 => RecordResult::BadStatus,
        5 => RecordResult::FetchError,
        6 => RecordResult::QuotaExceeded,
        7 => RecordResult::DownloadTotalExceeded,
        _ => return None,
    })
}

/// The name of a body file in the body directory: a response body is per generation (a new
/// generation starts a new file, and the old one is removed once the new row is durable), a
/// request body per record.
pub fn body_file_name(uid: u64, record: u32, generation: Option<u32>) -> String {
    match generation {
        Some(g) => format!("{uid:016x}-{record:08x}-{g:08x}.response"),
        None => format!("{uid:016x}-{record:08x}.request"),
    }
}

/// The (uid, record, generation) a body file name stands for; `None` for a name the store
/// never makes (such files are left alone).
pub fn parse_body_file_name(name: &str) -> Option<(u64, u32, Option<u32>)> {
    let hex64 = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?;
    let hex32 = |s: &str| (s.len() == 8).then(|| u32::from_str_radix(s, 16).ok())?;
    if let Some(stem) = name.strip_suffix(".response") {
        let mut parts = stem.split('-');
        let (u, r, g) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        return Some((hex64(u)?, hex32(r)?, Some(hex32(g)?)));
    }
    let stem = name.strip_suffix(".request")?;
    let (u, r) = stem.split_once('-')?;
    Some((hex64(u)?, hex32(r)?, None))
}

/// Number of chunks holding `len` bytes.
pub fn chunk_count(len: u64) -> u32 {
    len.div_ceil(CHUNK_SIZE as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_rows_round_trip() {
        for state in [
            RecordState::Pending,
            RecordState::Active,
            RecordState::Completed(RecordResult::Success),
            RecordState::Completed(RecordResult::DownloadTotalExceeded),
            RecordState::Completed(RecordResult::Empty),
        ] {
            for request_sent in [false, true] {
                for (body_in_file, request_in_file) in [(false, false), (true, false), (true, true)]
                {
                    let row = RecordRow {
                        state,
                        generation: 7,
                        body_len: (1 << 40) + 3,
                        request_len: 11,
                        request_sent,
                        body_in_file,
                        request_in_file,
                    };
                    assert_eq!(RecordRow::decode(&row.encode()), Some(row));
                }
            }
        }
        assert_eq!(RecordRow::decode(&[0u8; RECORD_ROW_LEN]), None);
        assert_eq!(RecordRow::decode(&[1u8; 3]), None);
    }

    #[test]
    fn state_rows_written_before_the_flags_were_kept_still_read() {
        let old: FetchStateRow =
            serde_json::from_str(r#"{"committed":true,"paused":true,"settled":null}"#).unwrap();
        assert_eq!(
            old.flags(),
            StoredFlags {
                paused: true,
                ..StoredFlags::default()
            }
        );
        let flags = StoredFlags {
            paused: true,
            awaiting_permission: true,
            aborted: true,
        };
        let row = FetchStateRow::new(true, flags, None);
        let back: FetchStateRow =
            serde_json::from_slice(&serde_json::to_vec(&row).unwrap()).unwrap();
        assert_eq!(back.flags(), flags);
        // A row written before the sent flag existed has 0 in byte 3.
        let mut bytes = RecordRow {
            state: RecordState::Pending,
            generation: 0,
            body_len: 0,
            request_len: 0,
            request_sent: false,
            body_in_file: false,
            request_in_file: false,
        }
        .encode();
        assert_eq!(bytes[3], 0);
        bytes[3] = 8;
        assert_eq!(
            RecordRow::decode(&bytes),
            None,
            "unknown flag bits are refused"
        );
        // A format 1 row (schema version 1): its bodies are inline, and the file bits did not
        // exist.
        bytes[0] = 1;
        bytes[3] = 1;
        let v1 = RecordRow::decode(&bytes).expect("a format 1 row");
        assert!(v1.request_sent && !v1.body_in_file && !v1.request_in_file);
        bytes[3] = 2;
        assert_eq!(RecordRow::decode(&bytes), None, "format 1 had no file bits");
    }

    #[test]
    fn result_codes_are_a_bijection() {
        for c in 0..=7 {
            assert_eq!(result_code(result_from_code(c).unwrap()), c);
        }
        assert_eq!(result_from_code(8), None);
    }

    #[test]
    fn body_file_names_round_trip() {
        for (u, r, g) in [
            (0, 0, None),
            (u64::MAX, u32::MAX, Some(u32::MAX)),
            (7, 3, Some(2)),
        ] {
            assert_eq!(
                parse_body_file_name(&body_file_name(u, r, g)),
                Some((u, r, g))
            );
        }
        for bad in [
            "",
            "x.response",
            "1-2-3.response",
            "0000000000000001-00000002.txt",
        ] {
            assert_eq!(parse_body_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn chunk_counts() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64 + 1), 2);
    }
}
