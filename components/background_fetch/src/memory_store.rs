//! An in-memory [`Store`]: for ephemeral (private browsing) profiles and for tests.
//!
//! Everything is "durable" as soon as it is written, and lost when the store is dropped. An
//! optional capacity makes writes past it fail with [`StoreErrorKind::QuotaExceeded`], and
//! failures can be injected, so the engine's error paths can be tested without a disk.

use crate::fetch::ResponseHead;
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchResult, FetchUid, ImageResource, RecordResult,
};
use crate::store::{
    ExportMode, Exported, FetchMeta, RecordState, Store, StoreError, StoreErrorKind, StoredFetch,
    StoredFlags, StoredRecord, stream_response_body_to,
};
use crate::sync::Watch;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, ready};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Bytes kept as the chunks they arrived in, so appends never copy.
#[derive(Clone, Debug, Default)]
struct Chunks {
    chunks: Vec<Bytes>,
    /// `starts[i]` is the offset of `chunks[i]`.
    starts: Vec<u64>,
    len: u64,
}

impl Chunks {
    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.starts.push(self.len);
        self.len += bytes.len() as u64;
        self.chunks.push(bytes);
    }

    fn read(&self, offset: u64, max: usize) -> Bytes {
        if offset >= self.len || max == 0 {
            return Bytes::new();
        }
        let i = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let within = (offset - self.starts[i]) as usize;
        let chunk = &self.chunks[i];
        let end = within.saturating_add(max).min(chunk.len());
        chunk.slice(within..end)
    }
}

#[derive(Clone, Debug)]
struct MemRecord {
    state: RecordState,
    response: Option<ResponseHead>,
    generation: u32,
    body: Chunks,
    request_body: Chunks,
    request_sent: bool,
}

#[derive(Clone, Debug)]
struct MemFetch {
    meta: FetchMeta,
    committed: bool,
    flags: StoredFlags,
    settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
    records: Vec<MemRecord>,
}

impl MemFetch {
    fn bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| r.body.len + r.request_body.len)
            .sum()
    }
}

#[derive(Debug, Default)]
struct Inner {
    fetches: BTreeMap<FetchUid, MemFetch>,
    capacity: Option<u64>,
    /// Fail this many upcoming write operations with this kind.
    inject: Option<(StoreErrorKind, u32)>,
    /// Let this many write operations succeed before the injected failures start.
    inject_after: u32,
    writes: u64,
    uid_floor: u64,
}

impl Inner {
    fn total(&self) -> u64 {
        self.fetches.values().map(MemFetch::bytes).sum()
    }

    /// Counts a write; returns an injected failure if one is due.
    fn write_check(&mut self, adding: u64) -> Result<(), StoreError> {
        self.writes += 1;
        if let Some((kind, n)) = self.inject {
            if self.inject_after > 0 {
                self.inject_after -= 1;
            } else {
                self.inject = if n > 1 { Some((kind, n - 1)) } else { None };
                return Err(StoreError::new(kind, "injected failure"));
            }
        }
        if let Some(cap) = self.capacity
            && self.total() + adding > cap
        {
            return Err(StoreError::new(
                StoreErrorKind::QuotaExceeded,
                format!("the in-memory store is limited to {cap} bytes"),
            ));
        }
        Ok(())
    }

    fn fetch(&mut self, uid: FetchUid) -> Result<&mut MemFetch, StoreError> {
        self.fetches
            .get_mut(&uid)
            .ok_or_else(|| StoreError::gone(format!("no fetch {uid}")))
    }

    fn record(&mut self, uid: FetchUid, record: usize) -> Result<&mut MemRecord, StoreError> {
        self.fetch(uid)?
            .records
            .get_mut(record)
            .ok_or_else(|| StoreError::gone(format!("no record {record} in fetch {uid}")))
    }
}

/// An in-memory [`Store`]. Cloning gives another handle to the same store (so a test can
/// "restart" an engine on the same data).
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// While true, `set_flags` waits (a slow disk, for tests that interleave with it).
    flag_writes_held: Arc<Watch<bool>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store without a capacity limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the bytes the store holds; writes past it fail with `QuotaExceeded`.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.lock().capacity = capacity;
    }

    /// Fails `count` write operations with `kind`, after letting `after` more succeed.
    pub fn inject_failures(&self, kind: StoreErrorKind, after: u32, count: u32) {
        let mut inner = self.lock();
        inner.inject_after = after;
        inner.inject = (count > 0).then_some((kind, count));
    }

    /// Holds every `set_flags` (a pause, an abort, a permission answer being stored) until
    /// [`MemoryStore::release_flag_writes`]: a slow disk, for tests that need other work to
    /// happen while such a write is in flight.
    pub fn hold_flag_writes(&self) {
        self.flag_writes_held.update(|h| *h = true);
    }

    /// Lets held and later `set_flags` calls complete.
    pub fn release_flag_writes(&self) {
        self.flag_writes_held.update(|h| *h = false);
    }

    /// Number of write operations so far.
    pub fn write_count(&self) -> u64 {
        self.lock().writes
    }

    /// Bytes held, over all storage keys.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total()
    }

    /// Number of fetches held (committed or not).
    pub fn fetch_count(&self) -> usize {
        self.lock().fetches.len()
    }

    /// The whole stored response body of a record (for tests).
    pub fn response_body(&self, uid: FetchUid, record: usize) -> Option<Vec<u8>> {
        let inner = self.lock();
        let r = inner.fetches.get(&uid)?.records.get(record)?;
        let mut out = Vec::with_capacity(r.body.len as usize);
        for c in &r.body.chunks {
            out.extend_from_slice(c);
        }
        Some(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let r = f(&mut self.lock());
        ready(r).boxed()
    }
}

impl Store for MemoryStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<StoredFetch>, StoreError>> {
        self.now(|inner| {
            inner.fetches.retain(|_, f| f.committed);
            Ok(inner
                .fetches
                .values()
                .map(|f| StoredFetch {
                    meta: f.meta.clone(),
                    upload_total: f.records.iter().map(|r| r.request_body.len).sum(),
                    flags: f.flags,
                    settled: f.settled,
                    records: f
                        .records
                        .iter()
                        .map(|r| StoredRecord {
                            state: r.state,
                            response: r.response.clone(),
                            generation: r.generation,
                            body_length: r.body.len,
                            request_sent: r.request_sent,
                        })
                        .collect(),
                })
                .collect())
        })
    }

    fn uid_floor(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.now(|inner| Ok(inner.uid_floor))
    }

    fn usage(&self, storage_key: &str) -> BoxFuture<'_, Result<u64, StoreError>> {
        let key = storage_key.to_owned();
        self.now(move |inner| {
            Ok(inner
                .fetches
                .values()
                .filter(|f| f.meta.registration.storage_key == key)
                .map(MemFetch::bytes)
                .sum())
        })
    }

    fn create_fetch(&self, meta: FetchMeta) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            if inner.fetches.contains_key(&meta.uid) {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("fetch {} already exists", meta.uid),
                ));
            }
            inner.uid_floor = inner.uid_floor.max(meta.uid.0 + 1);
            let records = meta
                .requests
                .iter()
                .map(|_| MemRecord {
                    state: RecordState::Pending,
                    response: None,
                    generation: 0,
                    body: Chunks::default(),
                    request_body: Chunks::default(),
                    request_sent: false,
                })
                .collect();
            inner.fetches.insert(
                meta.uid,
                MemFetch {
                    meta,
                    committed: false,
                    flags: StoredFlags::default(),
                    settled: None,
                    records,
                },
            );
            Ok(())
        })
    }

    fn append_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(bytes.len() as u64)?;
            inner.record(uid, record)?.request_body.push(bytes);
            Ok(())
        })
    }

    fn commit_fetch(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            let f = inner.fetch(uid)?;
            f.committed = true;
            f.flags = flags;
            Ok(())
        })
    }

    fn read_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        self.now(move |inner| Ok(inner.record(uid, record)?.request_body.read(offset, max)))
    }

    fn begin_response(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        head: ResponseHead,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            let r = inner.record(uid, record)?;
            if generation < r.generation {
                return Err(StoreError::gone(format!(
                    "generation {generation} is older than {}",
                    r.generation
                )));
            }
            if generation > r.generation {
                r.body = Chunks::default();
                r.generation = generation;
            }
            r.response = Some(head);
            r.state = RecordState::Active;
            Ok(())
        })
    }

    fn append_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(bytes.len() as u64)?;
            let r = inner.record(uid, record)?;
            if r.generation != generation {
                return Err(StoreError::gone("response data was replaced"));
            }
            if r.body.len != offset {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("append at {offset} but the body has {} bytes", r.body.len),
                ));
            }
            if matches!(r.state, RecordState::Completed(_)) {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    "record already completed",
                ));
            }
            r.state = RecordState::Active;
            r.body.push(bytes);
            Ok(())
        })
    }

    fn complete_record(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        result: RecordResult,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            let r = inner.record(uid, record)?;
            if r.generation != generation {
                return Err(StoreError::gone("response data was replaced"));
            }
            r.state = RecordState::Completed(result);
            Ok(())
        })
    }

    fn read_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        self.now(move |inner| {
            let r = inner.record(uid, record)?;
            if r.generation != generation {
                return Err(StoreError::gone("response data was replaced"));
            }
            Ok(r.body.read(offset, max))
        })
    }

    fn set_flags(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            self.flag_writes_held.wait_until(|held| !*held).await;
            let mut inner = self.lock();
            inner.write_check(0)?;
            inner.fetch(uid)?.flags = flags;
            Ok(())
        }
        .boxed()
    }

    fn mark_request_sent(
        &self,
        uid: FetchUid,
        record: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            inner.record(uid, record)?.request_sent = true;
            Ok(())
        })
    }

    fn set_ui(
        &self,
        uid: FetchUid,
        title: String,
        icons: Vec<ImageResource>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            let f = inner.fetch(uid)?;
            f.meta.title = title;
            f.meta.icons = icons;
            Ok(())
        })
    }

    fn settle(
        &self,
        uid: FetchUid,
        result: BackgroundFetchResult,
        failure_reason: BackgroundFetchFailureReason,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.write_check(0)?;
            inner.fetch(uid)?.settled = Some((result, failure_reason));
            Ok(())
        })
    }

    fn delete_fetch(&self, uid: FetchUid) -> BoxFuture<'_, Result<(), StoreError>> {
        self.now(move |inner| {
            inner.fetches.remove(&uid);
            Ok(())
        })
    }

    /// Streams the body (the in-memory store has no file to link).
    fn export_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        destination: PathBuf,
        _mode: ExportMode,
    ) -> BoxFuture<'_, Result<Exported, StoreError>> {
        async move {
            {
                let mut inner = self.lock();
                let r = inner.record(uid, record)?;
                if r.generation != generation {
                    return Err(StoreError::gone("response data was replaced"));
                }
                if !matches!(r.state, RecordState::Completed(_)) {
                    return Err(StoreError::new(
                        StoreErrorKind::Corrupt,
                        format!("record {record} of fetch {uid} is not completed"),
                    ));
                }
            }
            stream_response_body_to(self, uid, record, generation, &destination).await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_across_boundaries() {
        let mut c = Chunks::default();
        c.push(Bytes::from_static(b"abc"));
        c.push(Bytes::new());
        c.push(Bytes::from_static(b"defg"));
        assert_eq!(&c.read(0, 10)[..], b"abc");
        assert_eq!(&c.read(2, 10)[..], b"c");
        assert_eq!(&c.read(3, 2)[..], b"de");
        assert_eq!(&c.read(5, 10)[..], b"fg");
        assert!(c.read(7, 10).is_empty());
    }
}
