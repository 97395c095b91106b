//! Per-record detail: what became of each record when it settles (its URL, status, bytes, and
//! for a failure the transport-level cause: `dns`, `connect`, `tls`, `reset`, `timeout`,
//! `proxy`, `protocol`, or `http-status`), which web developers have asked the spec for (WICG
//! issues 26 and 70) and no browser gives.
//!
//! No engine API is needed: the store ([`ObservedStore`], wrapping the real one) sees each
//! record's response head, its body growing and the moment it is completed (durably), and the
//! network ([`crate::network`]) reports each failed attempt with the host's
//! [`NetworkErrorCause`] into the same [`RecordLog`].

use crate::output::Reporter;
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchResult, BoxFuture, ExportMode, Exported,
    FetchMeta, FetchUid, ImageResource, NetworkError, NetworkErrorCause, RecordResult, RecordState,
    ResponseHead, Store, StoreError, StoredFetch, StoredFlags,
};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What is known about one record.
#[derive(Clone, Debug, Default)]
pub struct RecordNote {
    /// The status of its stored response.
    pub status: Option<u16>,
    /// Its stored body bytes.
    pub bytes: u64,
    /// The last failed attempt: message and cause.
    pub error: Option<(String, Option<NetworkErrorCause>)>,
    /// It has settled (its result is durable).
    pub done: bool,
}

#[derive(Default)]
struct FetchNotes {
    id: String,
    urls: Vec<String>,
    records: Vec<RecordNote>,
}

/// Per-record notes of every fetch, and the `record` event when one settles.
pub struct RecordLog {
    reporter: Arc<Reporter>,
    fetches: Mutex<HashMap<FetchUid, FetchNotes>>,
}

impl RecordLog {
    /// A log printing through `reporter`.
    pub fn new(reporter: Arc<Reporter>) -> Arc<RecordLog> {
        Arc::new(RecordLog {
            reporter,
            fetches: Mutex::default(),
        })
    }

    fn know(&self, meta: &FetchMeta) {
        let mut f = self.fetches.lock().unwrap();
        let notes = f.entry(meta.uid).or_default();
        notes.id = meta.id.clone();
        notes.urls = meta.requests.iter().map(|r| r.url.to_string()).collect();
        notes
            .records
            .resize(meta.requests.len(), RecordNote::default());
    }

    fn with(&self, uid: FetchUid, record: usize, edit: impl FnOnce(&mut RecordNote)) {
        let mut f = self.fetches.lock().unwrap();
        let notes = f.entry(uid).or_default();
        if notes.records.len() <= record {
            notes.records.resize(record + 1, RecordNote::default());
        }
        edit(&mut notes.records[record]);
    }

    /// An attempt of record `record` of `uid` failed with `error` (the engine may try again).
    pub fn attempt_failed(&self, uid: FetchUid, record: usize, error: &NetworkError) {
        self.with(uid, record, |n| {
            n.error = Some((error.message.clone(), error.cause));
        });
    }

    /// What is known of record `record` of `uid`.
    pub fn note(&self, uid: FetchUid, record: usize) -> RecordNote {
        let f = self.fetches.lock().unwrap();
        f.get(&uid)
            .and_then(|n| n.records.get(record).cloned())
            .unwrap_or_default()
    }

    /// The `record` event of a record that settled with `result`.
    pub fn event(&self, uid: FetchUid, record: usize, result: RecordResult) -> Value {
        let f = self.fetches.lock().unwrap();
        let notes = f.get(&uid);
        let note = notes
            .and_then(|n| n.records.get(record).cloned())
            .unwrap_or_default();
        let (cause, error) = match result {
            RecordResult::BadStatus => (
                Some("http-status".to_owned()),
                note.status.map(|s| format!("HTTP status {s}")),
            ),
            // The network's last word on a record that failed on the network (or its policy
            // checks, SRI, CORS: then no transport cause).
            RecordResult::FetchError => match &note.error {
                Some((m, c)) => (c.map(|c| c.as_str().to_owned()), Some(m.clone())),
                None => (None, None),
            },
            // Success, or not the network's doing (aborted, quota, downloadTotal).
            _ => (None, None),
        };
        json!({
            "event": "record",
            "id": notes.map(|n| n.id.as_str()).unwrap_or_default(),
            "index": record,
            "url": notes.and_then(|n| n.urls.get(record)).map(String::as_str).unwrap_or_default(),
            "result": result.as_str(),
            "status": note.status,
            "bytes": note.bytes,
            "cause": cause,
            "error": error,
        })
    }

    /// How many records of `uid` have settled, of how many (`None`: not known here).
    pub fn done(&self, uid: FetchUid) -> Option<(usize, usize)> {
        let f = self.fetches.lock().unwrap();
        let n = f.get(&uid)?;
        Some((n.records.iter().filter(|r| r.done).count(), n.urls.len()))
    }

    fn settled(&self, uid: FetchUid, record: usize, result: RecordResult) {
        self.with(uid, record, |n| n.done = true);
        let event = self.event(uid, record, result);
        self.reporter.record(&event);
    }

    fn forget(&self, uid: FetchUid) {
        self.fetches.lock().unwrap().remove(&uid);
    }
}

/// The store, watched: every call goes to `inner`; the log learns each record's head, bytes
/// and completion (printed once the completion is durable).
pub struct ObservedStore {
    inner: Arc<dyn Store>,
    log: Arc<RecordLog>,
}

impl ObservedStore {
    /// `inner`, watched by `log`.
    pub fn new(inner: Arc<dyn Store>, log: Arc<RecordLog>) -> ObservedStore {
        ObservedStore { inner, log }
    }
}

impl Store for ObservedStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<StoredFetch>, StoreError>> {
        Box::pin(async move {
            let fetches = self.inner.load().await?;
            for f in &fetches {
                self.log.know(&f.meta);
                for (i, r) in f.records.iter().enumerate() {
                    self.log.with(f.meta.uid, i, |n| {
                        n.status = r.response.as_ref().map(|h| h.status);
                        n.bytes = r.body_length;
                        n.done = matches!(r.state, RecordState::Completed(_));
                    });
                }
            }
            Ok(fetches)
        })
    }

    fn uid_floor(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.uid_floor()
    }

    fn usage(&self, storage_key: &str) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.usage(storage_key)
    }

    fn create_fetch(&self, meta: FetchMeta) -> BoxFuture<'_, Result<(), StoreError>> {
        self.log.know(&meta);
        self.inner.create_fetch(meta)
    }

    fn append_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.append_request_body(uid, record, bytes)
    }

    fn commit_fetch(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.commit_fetch(uid, flags)
    }

    fn read_request_body(
        &self,
        uid: FetchUid,
        record: usize,
        offset: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        self.inner.read_request_body(uid, record, offset, max)
    }

    fn begin_response(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        head: ResponseHead,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.log.with(uid, record, |n| {
            n.status = Some(head.status);
        });
        self.inner.begin_response(uid, record, generation, head)
    }

    fn append_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        offset: u64,
        bytes: Bytes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let end = offset + bytes.len() as u64;
        self.log.with(uid, record, |n| n.bytes = end);
        self.inner
            .append_response_body(uid, record, generation, offset, bytes)
    }

    fn complete_record(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        result: RecordResult,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner
                .complete_record(uid, record, generation, result)
                .await?;
            // Durable now: the record has settled.
            self.log.settled(uid, record, result);
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
        self.inner
            .read_response_body(uid, record, generation, offset, max)
    }

    fn set_flags(
        &self,
        uid: FetchUid,
        flags: StoredFlags,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.set_flags(uid, flags)
    }

    fn mark_request_sent(
        &self,
        uid: FetchUid,
        record: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.mark_request_sent(uid, record)
    }

    fn set_ui(
        &self,
        uid: FetchUid,
        title: String,
        icons: Vec<ImageResource>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.set_ui(uid, title, icons)
    }

    fn settle(
        &self,
        uid: FetchUid,
        result: BackgroundFetchResult,
        failure_reason: BackgroundFetchFailureReason,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.settle(uid, result, failure_reason)
    }

    fn delete_fetch(&self, uid: FetchUid) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.delete_fetch(uid).await?;
            self.log.forget(uid);
            Ok(())
        })
    }

    // Methods with a default are delegated too: the default of a wrapper is not the inner
    // store's own (redb hands a body over by hard link; the default copies it).
    fn export_response_body(
        &self,
        uid: FetchUid,
        record: usize,
        generation: u32,
        destination: PathBuf,
        mode: ExportMode,
    ) -> BoxFuture<'_, Result<Exported, StoreError>> {
        self.inner
            .export_response_body(uid, record, generation, destination, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Mode;

    #[test]
    fn the_cause_is_the_last_network_error_of_a_record_that_failed_on_the_network() {
        let log = RecordLog::new(Arc::new(Reporter::new(Mode::Quiet)));
        let uid = FetchUid(7);
        let err = NetworkError::temporary("connecting to a.test:443: refused")
            .with_cause(NetworkErrorCause::Connect);
        for r in 0..4 {
            log.attempt_failed(uid, r, &err);
        }
        log.with(uid, 1, |n| n.status = Some(200));
        log.with(uid, 2, |n| n.status = Some(404));
        let e = log.event(uid, 0, RecordResult::FetchError);
        assert_eq!(e["cause"], "connect");
        assert_eq!(e["error"], "connecting to a.test:443: refused");
        // Recovered after the error: no cause.
        let e = log.event(uid, 1, RecordResult::Success);
        assert!(e["cause"].is_null() && e["error"].is_null(), "{e}");
        assert_eq!(e["status"], 200);
        let e = log.event(uid, 2, RecordResult::BadStatus);
        assert_eq!(e["cause"], "http-status");
        assert_eq!(e["error"], "HTTP status 404");
        // Aborted (or over downloadTotal, or quota): not the network's doing.
        let e = log.event(uid, 3, RecordResult::Aborted);
        assert!(e["cause"].is_null() && e["error"].is_null(), "{e}");
    }
}
