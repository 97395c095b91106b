//! The in-memory model the storage thread keeps of every fetch: what the last commit wrote
//! (lengths, states), plus the changes not committed yet (buffered body bytes, dirty flags).

use crate::schema::{RecordRow, body_file_name};
use background_fetch::ResponseHead;
use background_fetch::store::{
    FetchMeta, RecordState, StoreError, StoredFetch, StoredFlags, StoredRecord,
};
use background_fetch::{BackgroundFetchFailureReason, BackgroundFetchResult};
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};

/// Where a body's stored bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Chunks in redb (small bodies, and every body of a version 1 store).
    Inline,
    /// The body's file beside the database.
    File,
}

/// A request or response body: `written` bytes stored (in redb chunks, or in its file), then
/// `buf` in memory.
#[derive(Debug)]
pub(crate) struct Body {
    pub place: Place,
    /// The length the record row in the database says (what a crash keeps).
    pub durable: u64,
    /// Bytes stored and readable: inline, the same as `durable`; in a file, the bytes written to
    /// it (synced or not), at least `durable`.
    pub written: u64,
    /// Bytes of the file known to be synced (`place == File`).
    pub synced: u64,
    pub buf: VecDeque<Bytes>,
    pub buf_len: u64,
    /// The database holds inline chunks this body no longer uses (an older generation's, or its
    /// own before it moved to its file): delete them at the next commit.
    pub drop_chunks: bool,
}

impl Body {
    /// A body as the database describes it.
    pub fn stored(place: Place, len: u64) -> Body {
        Body {
            place,
            durable: len,
            written: len,
            synced: len,
            buf: VecDeque::new(),
            buf_len: 0,
            drop_chunks: false,
        }
    }

    pub fn len(&self) -> u64 {
        self.written + self.buf_len
    }

    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.buf_len += bytes.len() as u64;
            self.buf.push_back(bytes);
        }
    }

    /// Drops `n` bytes from the front of the buffer: they are stored.
    pub fn consume(&mut self, mut n: u64) {
        self.written += n;
        self.buf_len -= n;
        while n > 0 {
            let front = self.buf.front_mut().expect("consumed bytes are buffered");
            if (front.len() as u64) <= n {
                n -= front.len() as u64;
                self.buf.pop_front();
            } else {
                let _ = front.split_to(n as usize);
                n = 0;
            }
        }
    }

    /// Up to `max` buffered bytes from buffer offset `at` (a zero-copy slice). `max` may be
    /// anything up to `usize::MAX`.
    pub fn read_buffered(&self, mut at: u64, max: usize) -> Bytes {
        for seg in &self.buf {
            let len = seg.len() as u64;
            if at < len {
                let end = (at as usize).saturating_add(max).min(seg.len());
                return seg.slice(at as usize..end);
            }
            at -= len;
        }
        Bytes::new()
    }

    /// Something of it is not committed.
    pub fn is_dirty(&self) -> bool {
        self.buf_len > 0 || self.drop_chunks || self.written != self.durable
    }

    pub fn in_file(&self) -> bool {
        self.place == Place::File
    }
}

#[derive(Debug)]
pub(crate) struct Rec {
    pub state: RecordState,
    pub generation: u32,
    /// A response head not committed yet (heads are read from the database once committed, so
    /// that memory does not grow with the number of records).
    pub new_head: Option<Box<ResponseHead>>,
    pub body: Body,
    pub request: Body,
    /// The (non-GET) request may have been sent: never send it again.
    pub request_sent: bool,
    /// The row (state, generation, flags) changed.
    pub row_dirty: bool,
    /// Bytes appended to this record were lost by a failed write: appends fail with this.
    pub poison: Option<Box<StoreError>>,
}

impl Rec {
    pub fn pending() -> Rec {
        Rec {
            state: RecordState::Pending,
            generation: 0,
            new_head: None,
            body: Body::stored(Place::Inline, 0),
            request: Body::stored(Place::Inline, 0),
            request_sent: false,
            row_dirty: true,
            poison: None,
        }
    }

    /// The record as its committed row describes it.
    pub fn from_row(row: &RecordRow) -> Rec {
        let place = |file| if file { Place::File } else { Place::Inline };
        Rec {
            state: row.state,
            generation: row.generation,
            new_head: None,
            body: Body::stored(place(row.body_in_file), row.body_len),
            request: Body::stored(place(row.request_in_file), row.request_len),
            request_sent: row.request_sent,
            row_dirty: false,
            poison: None,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.row_dirty || self.new_head.is_some() || self.body.is_dirty() || self.request.is_dirty()
    }

    pub fn bytes(&self) -> u64 {
        self.body.len() + self.request.len()
    }

    /// The row a commit writes once the bodies are stored up to `written`.
    pub fn row(&self) -> RecordRow {
        RecordRow {
            state: self.state,
            generation: self.generation,
            body_len: self.body.written,
            request_len: self.request.written,
            request_sent: self.request_sent,
            body_in_file: self.body.in_file(),
            request_in_file: self.request.in_file(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Fetch {
    /// The metadata, with the current title and icons.
    pub meta: FetchMeta,
    pub committed: bool,
    pub flags: StoredFlags,
    pub settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
    /// `updateUI()` set the title and icons.
    pub ui_set: bool,
    pub records: Vec<Rec>,
    /// Records with changes not committed: commits look at these only, so that their cost does
    /// not grow with the number of records.
    pub dirty_records: BTreeSet<usize>,
    pub meta_dirty: bool,
    pub state_dirty: bool,
    pub ui_dirty: bool,
    /// Request rows already written by the pieces of a creation (see `commit`).
    pub requests_written: usize,
}

impl Fetch {
    pub fn is_dirty(&self) -> bool {
        self.meta_dirty
            || self.state_dirty
            || self.ui_dirty
            || self
                .dirty_records
                .iter()
                .any(|i| self.records.get(*i).is_some_and(Rec::is_dirty))
    }

    pub fn bytes(&self) -> u64 {
        self.records.iter().map(Rec::bytes).sum()
    }

    /// The fetch as `load()` returns it; `heads` gives each record's committed response head.
    pub fn stored(&self, mut heads: impl FnMut(usize) -> Option<ResponseHead>) -> StoredFetch {
        StoredFetch {
            meta: self.meta.clone(),
            upload_total: self.records.iter().map(|r| r.request.len()).sum(),
            flags: self.flags,
            settled: self.settled,
            records: self
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| StoredRecord {
                    state: r.state,
                    response: r.new_head.as_deref().cloned().or_else(|| heads(i)),
                    generation: r.generation,
                    body_length: r.body.len(),
                    request_sent: r.request_sent,
                })
                .collect(),
        }
    }
}

/// Index key of a fetch in [`crate::schema::FETCH_INDEX`].
#[derive(Clone, Debug)]
pub(crate) struct IndexKey {
    pub storage_key: String,
    pub scope: String,
    pub id: String,
}

impl IndexKey {
    pub fn of(meta: &FetchMeta) -> IndexKey {
        IndexKey {
            storage_key: meta.registration.storage_key.clone(),
            scope: meta.registration.scope.clone(),
            id: meta.id.clone(),
        }
    }
}

/// A fetch deleted in memory whose rows (and files) are still on disk.
#[derive(Clone, Debug)]
pub(crate) struct Deleting {
    pub key: IndexKey,
    /// Its body files, removed once the delete is durable.
    pub files: Vec<String>,
}

/// The body files a fetch's records use (as far as the model knows).
pub(crate) fn fetch_files(uid: u64, f: &Fetch) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in f.records.iter().enumerate() {
        if r.body.in_file() {
            out.push(body_file_name(uid, i as u32, Some(r.generation)));
        }
        if r.request.in_file() {
            out.push(body_file_name(uid, i as u32, None));
        }
    }
    out
}

/// Which fetches a commit covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    All,
    One(u64),
}

impl Scope {
    pub fn covers(self, uid: u64) -> bool {
        match self {
            Scope::All => true,
            Scope::One(u) => u == uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_consume_across_segments_and_read_what_is_buffered() {
        let mut b = Body::stored(Place::File, 10);
        b.push(Bytes::from_static(b"abc"));
        b.push(Bytes::new());
        b.push(Bytes::from_static(b"defg"));
        assert_eq!(b.len(), 17);
        assert_eq!(&b.read_buffered(2, usize::MAX)[..], b"c");
        assert_eq!(&b.read_buffered(3, 2)[..], b"de");
        b.consume(4);
        assert_eq!((b.written, b.buf_len, b.len()), (14, 3, 17));
        assert_eq!(&b.read_buffered(0, 10)[..], b"efg");
        assert!(b.is_dirty());
        b.consume(3);
        b.durable = 17;
        assert!(!b.is_dirty());
    }
}
