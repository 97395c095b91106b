//! `BackgroundFetchRegistration`, `BackgroundFetchRecord` and the responses they expose.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::core::EngineInner;
use crate::error::DomError;
use crate::fetch::{
    HeaderList, Request, RequestInfo, RequestInit, ResponseHead, ResponseType, construct_request,
};
use crate::matching::{CacheQueryOptions, request_matches_cached_item};
use crate::model::{BackgroundFetchFailureReason, BackgroundFetchResult, FetchUid, RecordResult};
use crate::state::{BgFetch, Flags, Progress, ResponseData};
use crate::sync::lock;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use futures::stream::{BoxStream, StreamExt};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use url::Url;

/// What a `progress` listener receives: the instance it fired at (`event.target`).
pub type ProgressListener = Arc<dyn Fn(&BackgroundFetchRegistration) + Send + Sync>;

pub(crate) struct InstanceInner {
    /// <https://wicg.github.io/background-fetch/#backgroundfetchregistration-background-fetch>
    pub fetch: Arc<BgFetch>,
    pub engine: Weak<EngineInner>,
    /// The API base URL of the instance's environment (`match()` resolves against it).
    pub base_url: Url,
    /// downloaded, uploaded, result, failure reason, records available flag.
    pub slots: Mutex<Progress>,
    /// The fetch's change count (`BgFetch::revisions`) at the slots' last change, set under
    /// their lock: a copy of them elsewhere (the service's connections) keeps the newest by it.
    pub revision: AtomicU64,
    pub listeners: Mutex<Vec<ProgressListener>>,
    /// Told of every change of the slots, with whether a `progress` event follows (the
    /// service's connections: they mirror the slots in another process).
    pub observers: Mutex<Vec<SlotObserver>>,
}

/// Told of a change of an instance's slots, and whether a `progress` event fires for it.
pub(crate) type SlotObserver = Arc<dyn Fn(&BackgroundFetchRegistration, bool) + Send + Sync>;

/// A change of an instance's slots to announce once locks are released: to its observers, and
/// with a `progress` event when `progress` is set.
pub(crate) struct InstanceUpdate {
    instance: BackgroundFetchRegistration,
    progress: bool,
    observers: Vec<SlotObserver>,
    listeners: Vec<ProgressListener>,
}

impl InstanceUpdate {
    pub(crate) fn dispatch(self) {
        for o in &self.observers {
            o(&self.instance, self.progress);
        }
        if self.progress {
            for l in &self.listeners {
                l(&self.instance);
            }
        }
    }
}

/// `BackgroundFetchRegistration`: one environment's view of a background fetch. Its attributes
/// are synchronous reads of slots that *update background fetch instances* refreshes; a
/// `progress` event (see [`BackgroundFetchRegistration::on_progress`]) follows every refresh
/// that changed them.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-registration>
#[derive(Clone)]
pub struct BackgroundFetchRegistration {
    pub(crate) inner: Arc<InstanceInner>,
}

impl fmt::Debug for BackgroundFetchRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.inner.slots).clone();
        f.debug_struct("BackgroundFetchRegistration")
            .field("id", &self.inner.fetch.id)
            .field("downloaded", &s.downloaded)
            .field("uploaded", &s.uploaded)
            .field("result", &s.result)
            .field("failure_reason", &s.failure_reason)
            .field("records_available", &s.records_available)
            .finish()
    }
}

impl PartialEq for BackgroundFetchRegistration {
    /// Identity, like `===` on the JS objects.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl BackgroundFetchRegistration {
    fn slots(&self) -> Progress {
        lock(&self.inner.slots).clone()
    }

    /// `id`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-id>
    pub fn id(&self) -> &str {
        &self.inner.fetch.id
    }

    /// `uploadTotal`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-uploadtotal>
    pub fn upload_total(&self) -> u64 {
        self.inner.fetch.upload_total
    }

    /// `uploaded`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-uploaded>
    pub fn uploaded(&self) -> u64 {
        self.slots().uploaded
    }

    /// `downloadTotal`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-downloadtotal>
    pub fn download_total(&self) -> u64 {
        self.inner.fetch.download_total
    }

    /// `downloaded`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-downloaded>
    pub fn downloaded(&self) -> u64 {
        self.slots().downloaded
    }

    /// `result`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-result>
    pub fn result(&self) -> BackgroundFetchResult {
        self.slots().result
    }

    /// `failureReason`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-failurereason>
    pub fn failure_reason(&self) -> BackgroundFetchFailureReason {
        self.slots().failure_reason
    }

    /// `recordsAvailable`
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-recordsavailable>
    pub fn records_available(&self) -> bool {
        self.slots().records_available
    }

    /// The fetch's uid (not web-exposed; for embedders).
    pub fn uid(&self) -> FetchUid {
        self.inner.fetch.uid
    }

    /// Adds a `progress` event listener (`onprogress` / `addEventListener('progress', ..)`).
    /// It runs after the slots were updated, with the instance as `event.target`.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-onprogress>
    pub fn on_progress(
        &self,
        listener: impl Fn(&BackgroundFetchRegistration) + Send + Sync + 'static,
    ) {
        lock(&self.inner.listeners).push(Arc::new(listener));
    }

    /// Steps 6.3 to 6.10 of update background fetch instances, applied to this instance.
    /// Returns the `progress` event to fire, if any.
    pub(crate) fn apply_update(&self, p: &Progress) -> Option<InstanceUpdate> {
        let mut slots = lock(&self.inner.slots);
        // The slots changed, but no progress event follows: only observers are told.
        let quiet = |instance: &Self| {
            let observers = lock(&instance.inner.observers).clone();
            (!observers.is_empty()).then(|| InstanceUpdate {
                instance: instance.clone(),
                progress: false,
                observers,
                listeners: Vec::new(),
            })
        };
        // 3. If recordsAvailable is false, and bgFetchRegistration's records available flag is
        //    set, unset bgFetchRegistration's records available flag.
        let mut unset = false;
        if !p.records_available && slots.records_available {
            slots.records_available = false;
            self.inner
                .revision
                .store(self.inner.fetch.next_revision(), Ordering::SeqCst);
            unset = true;
        }
        // 4. If bgFetchRegistration's result is not the empty string, then abort these steps.
        if slots.result != BackgroundFetchResult::Empty {
            drop(slots);
            return if unset { quiet(self) } else { None };
        }
        // 5. If all of the following are true: bgFetchRegistration's downloaded is equal to
        //    downloaded; bgFetchRegistration's uploaded is equal to uploaded;
        //    bgFetchRegistration's result is equal to result; bgFetchRegistration's failure
        //    reason is equal to failureReason; then abort these steps.
        if slots.downloaded == p.downloaded
            && slots.uploaded == p.uploaded
            && slots.result == p.result
            && slots.failure_reason == p.failure_reason
        {
            drop(slots);
            return if unset { quiet(self) } else { None };
        }
        // 6. Set bgFetchRegistration's downloaded to downloaded.
        slots.downloaded = p.downloaded;
        // 7. Set bgFetchRegistration's uploaded to uploaded.
        slots.uploaded = p.uploaded;
        // 8. Set bgFetchRegistration's result to result.
        slots.result = p.result;
        // 9. Set bgFetchRegistration's failure reason to failureReason.
        slots.failure_reason = p.failure_reason;
        self.inner
            .revision
            .store(self.inner.fetch.next_revision(), Ordering::SeqCst);
        drop(slots);
        // 10. Fire an event named "progress" at bgFetchRegistration.
        Some(InstanceUpdate {
            instance: self.clone(),
            progress: true,
            observers: lock(&self.inner.observers).clone(),
            listeners: lock(&self.inner.listeners).clone(),
        })
    }

    fn engine(&self) -> Result<Arc<EngineInner>, DomError> {
        self.inner
            .engine
            .upgrade()
            .ok_or_else(|| DomError::invalid_state("the background fetch engine has shut down"))
    }

    /// `abort()`: resolves true if this call removed the fetch from its registration's active
    /// background fetches (it then ends with `backgroundfetchabort`), false otherwise.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-abort>
    pub fn abort(&self) -> BoxFuture<'static, Result<bool, DomError>> {
        let this = self.clone();
        async move {
            let engine = this.engine()?;
            // 1. Let bgFetch be this's associated background fetch.
            let bg = this.inner.fetch.clone();
            // 2. Let swRegistration be bgFetch's service worker registration.
            let sw_registration = engine.registration(&bg.registration);
            // 3. Enqueue the following steps to swRegistration's active background fetches
            //    edit queue:
            let _queue = sw_registration.edit_queue.lock().await;
            // 3.1. Let activeBgFetches be swRegistration's active background fetches.
            // 3.2. Let id be bgFetch's id.
            // 3.3. If activeBgFetches does not contain background fetch bgFetch, then resolve
            //      promise with false and abort these steps.
            if !sw_registration.contains(&bg) {
                return Ok(false);
            }
            // 3.4. Remove activeBgFetches[id].
            sw_registration.remove(&bg.id);
            // AD-HOC: the abort is durable before the promise resolves: a crash must not bring
            //         back, download and succeed a fetch whose abort() resolved true. A store
            //         that refuses it is reported to the UI host (store_flags does); the fetch is
            //         aborted in this process all the same, so the promise still resolves true.
            let _ = engine
                .store_flags(
                    &bg,
                    Flags {
                        abort_all: true,
                        ..bg.flags()
                    },
                )
                .await;
            // 3.6. Set bgFetch's abort all flag.
            bg.flags.update(|f| f.abort_all = true);
            tracing::info!(uid = %bg.uid, id = %bg.id, "abort() removed the fetch");
            // 3.5. Resolve promise with true.
            Ok(true)
        }
        .boxed()
    }

    /// `match(request, options)`: the first matching record, or `None` (script sees
    /// `undefined`).
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-match>
    pub fn r#match(
        &self,
        request: impl Into<RequestInfo>,
        options: CacheQueryOptions,
    ) -> BoxFuture<'static, Result<Option<BackgroundFetchRecord>, DomError>> {
        // 1. Let promise be the result of calling this.matchAll(), passing request and options.
        let all = self.match_all(Some(request.into()), options);
        // 2. Return the result of reacting to promise with a fulfilment handler that, when
        //    called with argument matches, returns matches[0].
        // AD-HOC: matches[0] is undefined when nothing matches, though the IDL return type is
        //         not nullable; WPT and browsers resolve undefined (outline §11.C.15).
        async move { Ok(all.await?.into_iter().next()) }.boxed()
    }

    /// `matchAll(request, options)`: matching records in request order; every record when
    /// `request` is `None`.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-matchall>
    pub fn match_all(
        &self,
        request: Option<RequestInfo>,
        options: CacheQueryOptions,
    ) -> BoxFuture<'static, Result<Vec<BackgroundFetchRecord>, DomError>> {
        // 1. If this's records available flag is unset, return a promise rejected with an
        //    InvalidStateError DOMException.
        if !self.records_available() {
            return futures::future::ready(Err(DomError::invalid_state(
                "the records of this background fetch are no longer available",
            )))
            .boxed();
        }
        // AD-HOC: the spec passes the RequestInfo straight to "request matches cached item";
        //         like Cache.matchAll we construct a Request from it first (outline §11.C.16).
        let query = match request {
            None => None,
            Some(info) => {
                match construct_request(info, RequestInit::default(), &self.inner.base_url) {
                    Ok(r) => Some(r.request),
                    Err(e) => return futures::future::ready(Err(e)).boxed(),
                }
            }
        };
        let bg = self.inner.fetch.clone();
        let engine = self.inner.engine.clone();
        // 2. Let promise be a new promise.
        // 3. Run these steps in parallel:
        async move {
            // 3.1. Let matchingRecords be an empty list.
            // 3.2. For each record of this's background fetch's records:
            //      1. If request matches cached item for request, record's request, record's
            //         response data's response, and options returns true, then append record to
            //         matchingRecords.
            // AD-HOC: an omitted request matches every record (issue 89, as Cache.matchAll). A
            //         non-GET query matches nothing unless ignoreMethod is set (Cache.matchAll).
            let matching: Vec<usize> = match &query {
                Some(q) if !options.ignore_method && q.method != "GET" => Vec::new(),
                _ => bg
                    .records
                    .iter()
                    .filter(|r| match &query {
                        None => true,
                        Some(q) => request_matches_cached_item(
                            q,
                            &r.request,
                            r.response_data().response().as_ref(),
                            options,
                        ),
                    })
                    .map(|r| r.index)
                    .collect(),
            };
            // 3.3. Queue a bgfetch task to resolve promise with the result of creating record
            //      objects from matchingRecords in this's relevant Realm.
            Ok(create_record_objects(&engine, &bg, &matching))
        }
        .boxed()
    }
}

/// Create record objects.
///
/// <https://wicg.github.io/background-fetch/#create-record-objects>
fn create_record_objects(
    engine: &Weak<EngineInner>,
    bg: &Arc<BgFetch>,
    records: &[usize],
) -> Vec<BackgroundFetchRecord> {
    // 1. Let recordObjects be a new list.
    // 2. For each record of records:
    //    (steps 2.1 to 2.10 are spread over BackgroundFetchRecord: the response data is
    //    captured now; the Request copy, the body stream and responseReady are made on demand.)
    records
        .iter()
        .map(|&i| {
            let record = &bg.records[i];
            // 2.1. Let responseData be record's response data.
            let response_data = record.response_data();
            // 2.3. Let recordObject be a new BackgroundFetchRecord. Set recordObject's
            //      responseReady to a new promise.
            let response_ready =
                response_ready(engine.clone(), bg.clone(), response_data.clone(), i);
            BackgroundFetchRecord {
                fetch: bg.clone(),
                engine: engine.clone(),
                index: i,
                response_data,
                response_ready: response_ready.shared(),
            }
        })
        .collect()
    // 3. Return recordObjects.
}

/// `BackgroundFetchRecord`: a request of a background fetch and its (possibly still arriving)
/// response.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-record-interface>
///
/// Clones are the same record object: they share its one `responseReady` promise and its one
/// response body.
#[derive(Clone)]
pub struct BackgroundFetchRecord {
    engine: Weak<EngineInner>,
    fetch: Arc<BgFetch>,
    index: usize,
    /// The response data it was created with (step 2.1).
    response_data: Arc<ResponseData>,
    /// The record object's `responseReady` promise (steps 2.3 and 2.9), settled once.
    response_ready: Shared<BoxFuture<'static, Result<Response, DomError>>>,
}

impl fmt::Debug for BackgroundFetchRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundFetchRecord")
            .field("url", &self.request().url.as_str())
            .field("result", &self.response_data.result())
            .finish()
    }
}

impl BackgroundFetchRecord {
    /// `request`: a copy of the record's request. Its body is [`Self::request_body`].
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchrecord-request>
    pub fn request(&self) -> &Request {
        &self.fetch.records[self.index].request
    }

    /// The record's index in its background fetch (request order).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The request's body, streamed from the store ("a copy of record's request, including its
    /// body"). `None` when the request has no body.
    pub fn request_body(&self) -> Option<BoxStream<'static, Result<Bytes, DomError>>> {
        let length = self.request().body_length?;
        let guard = ReadGuard::new(&self.fetch, &self.engine);
        let body = crate::perform::stored_request_body(
            self.engine.clone(),
            self.fetch.uid,
            self.index,
            length,
        );
        Some(
            body.map(move |chunk| {
                let _reading = &guard;
                chunk.map_err(|e| {
                    DomError::type_error(format!("reading the request body failed: {e}"))
                })
            })
            .boxed(),
        )
    }

    /// The record's response data's result right now (not web-exposed; for embedders and
    /// tests).
    pub fn result(&self) -> RecordResult {
        self.response_data.result()
    }

    /// The stored response head right now, if one arrived (not web-exposed; for embedders that
    /// show a record's state without waiting on [`Self::response_ready`]).
    pub fn response_head(&self) -> Option<ResponseHead> {
        self.response_data.response()
    }

    /// How many body bytes are stored for the record right now (not web-exposed).
    pub fn stored_bytes(&self) -> u64 {
        self.response_data.len()
    }

    /// Hands the record's response body to `destination`, a path of the host's file system,
    /// through [`Store::export_response_body`](crate::Store::export_response_body): waits until
    /// the record's result is final, then, if it is a success, the store links, reflinks, copies
    /// or streams the body there (see [`ExportMode`](crate::store::ExportMode)); the destination
    /// appears whole and is durable when this resolves. A record that did not succeed is a
    /// `TypeError`, and nothing is written. Not web-exposed: for embedders that deliver bodies as
    /// files (`bgfetch --out`), in place of reading [`Self::response_ready`]'s body and writing
    /// it again.
    pub fn export_response_body(
        &self,
        destination: std::path::PathBuf,
        mode: crate::store::ExportMode,
    ) -> BoxFuture<'static, Result<crate::store::Exported, DomError>> {
        let engine = self.engine.clone();
        let fetch = self.fetch.clone();
        let data = self.response_data.clone();
        let index = self.index;
        async move {
            // The stored body is not dropped while it is exported.
            let _reading = ReadGuard::new(&fetch, &engine);
            data.state
                .wait_until(|s| s.result != RecordResult::Empty)
                .await;
            let result = data.result();
            if result != RecordResult::Success {
                return Err(DomError::type_error(format!(
                    "the record has no body to export: its result is {result:?}"
                )));
            }
            let engine = engine
                .upgrade()
                .ok_or_else(|| DomError::type_error("the engine has shut down"))?;
            let store = engine.hosts.store.clone();
            drop(engine);
            store
                .export_response_body(fetch.uid, index, data.generation, destination, mode)
                .await
                .map_err(|e| DomError::type_error(format!("exporting the body failed: {e}")))
        }
        .boxed()
    }

    /// `responseReady`: resolves with the response once its head is stored (while its body may
    /// still be arriving), or rejects: `AbortError` if the record was aborted, `TypeError` if it
    /// failed otherwise. Every call on the same record object (or a clone of it) gives the same
    /// promise and so the same [`Response`], whose body can be read once.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchrecord-responseready>
    pub fn response_ready(&self) -> BoxFuture<'static, Result<Response, DomError>> {
        self.response_ready.clone().boxed()
    }
}

/// Steps 2.6 to 2.9 of create record objects: the record object's `responseReady` promise,
/// settled from `data`.
fn response_ready(
    engine: Weak<EngineInner>,
    fetch: Arc<BgFetch>,
    data: Arc<ResponseData>,
    index: usize,
) -> BoxFuture<'static, Result<Response, DomError>> {
    async move {
        // 2.9. In parallel:
        // 2.9.1. Wait for responseData's response to not be not-null.
        // AD-HOC: also stop waiting once responseData's result is not the empty string, or
        //         a record that fails before its head never settles (outline §11.C.6).
        data.state
            .wait_until(|s| s.response.is_some() || s.result != RecordResult::Empty)
            .await;
        let (response, result) = data.state.with(|s| (s.response.clone(), s.result));
        match response {
            // 2.9.2. If responseData can be exposed, then:
            Some(head) if result.exposed() => {
                // 2.9.2.1. Let response be a copy of responseData's response.
                let mut head = head;
                // 2.9.2.2. Delete `Content-Range` from response's header list.
                head.headers.delete("content-range");
                // 2.9.2.3. Delete `Content-Length` from response's header list.
                head.headers.delete("content-length");
                // 2.9.2.4. Let body be a new body whose stream is stream.
                // 2.9.2.5. Set response's body to body.
                // AD-HOC: the stream (steps 2.7 and 2.8) is set up here, when the response is
                //         ready, rather than when the record object is created: until then
                //         nothing can read it, and a record object that is never awaited then
                //         holds no reader that keeps the stored records from being dropped.
                // 2.9.2.6. Queue a task ... resolve recordObject's responseReady with a new
                //          Response object whose response is response.
                Ok(Response {
                    head,
                    body: Arc::new(Mutex::new(Some(body_stream(
                        engine,
                        &fetch,
                        data.clone(),
                        index,
                    )))),
                })
            }
            // 2.9.3. Otherwise, if responseData's result is "aborted", then reject
            //        recordObject's responseReady with an "AbortError" DOMException.
            _ if result == RecordResult::Aborted => Err(DomError::abort(
                "the background fetch was aborted before this record completed",
            )),
            // 2.9.4. Otherwise, reject recordObject's responseReady with a TypeError.
            _ => Err(DomError::type_error(format!(
                "the record's response cannot be exposed (result \"{result}\")"
            ))),
        }
    }
    .boxed()
}

/// Keeps a fetch's stored records from being dropped while a body stream reads them.
pub(crate) struct ReadGuard {
    fetch: Arc<BgFetch>,
    engine: Weak<EngineInner>,
}

impl ReadGuard {
    pub(crate) fn new(fetch: &Arc<BgFetch>, engine: &Weak<EngineInner>) -> Self {
        fetch.readers.fetch_add(1, Ordering::SeqCst);
        ReadGuard {
            fetch: fetch.clone(),
            engine: engine.clone(),
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if self.fetch.readers.fetch_sub(1, Ordering::SeqCst) == 1
            && self.fetch.drop_pending.swap(false, Ordering::SeqCst)
            && let Some(engine) = self.engine.upgrade()
        {
            engine.spawn_record_drop(&self.fetch);
        }
    }
}

/// The body stream of create record objects, step 2.7 and 2.8: bytes are pulled from the store
/// as they arrive.
fn body_stream(
    engine: Weak<EngineInner>,
    fetch: &Arc<BgFetch>,
    data: Arc<ResponseData>,
    index: usize,
) -> BoxStream<'static, Result<Bytes, DomError>> {
    enum St {
        Open(u64, ReadGuard),
        Done,
    }
    let uid = fetch.uid;
    let guard = ReadGuard::new(fetch, &engine);
    futures::stream::unfold(St::Open(0, guard), move |st| {
        let engine = engine.clone();
        let data = data.clone();
        async move {
            // 2.6. Let transmittedBytes be 0.
            let St::Open(transmitted, guard) = st else {
                return None;
            };
            // 2.8. Set up stream with pullAlgorithm set to the following steps:
            // 2.8.1. Wait until the length of responseData's bytes is greater than
            //        transmittedBytes, or responseData's result is not the empty string.
            data.state
                .wait_until(|s| s.len > transmitted || s.result != RecordResult::Empty)
                .await;
            let (len, result) = data.state.with(|s| (s.len, s.result));
            // 2.8.3. If the length of responseData's bytes is greater than transmittedBytes,
            //        and responseData can be exposed, then:
            if len > transmitted && result.exposed() {
                let Some(engine) = engine.upgrade() else {
                    return Some((
                        Err(DomError::type_error("the engine has shut down")),
                        St::Done,
                    ));
                };
                // 2.8.3.1. Set bytes to a user agent determined slice of responseData's bytes,
                //          starting at an offset of transmittedBytes.
                let max = engine
                    .config
                    .read_chunk_size
                    .min((len - transmitted) as usize);
                return match engine
                    .hosts
                    .store
                    .read_response_body(uid, index, data.generation, transmitted, max)
                    .await
                {
                    Ok(bytes) if !bytes.is_empty() => {
                        // 2.8.3.2. Increment transmittedBytes by the length of bytes.
                        let next = transmitted + bytes.len() as u64;
                        // 2.8.4.1. If bytes is not null, ... enqueue array into stream.
                        Some((Ok(bytes), St::Open(next, guard)))
                    }
                    Ok(_) => Some((
                        Err(DomError::type_error(
                            "the stored body is shorter than expected",
                        )),
                        St::Done,
                    )),
                    Err(e) => Some((
                        Err(DomError::type_error(format!(
                            "the stored body cannot be read: {e}"
                        ))),
                        St::Done,
                    )),
                };
            }
            // 2.8.4.2. If responseData can be exposed, responseData's result is not the empty
            //          string, and transmittedBytes is the length of responseData's bytes, then
            //          close stream.
            if result.exposed() && result != RecordResult::Empty && transmitted == len {
                return None;
            }
            // 2.8.4.3. Otherwise, if responseData's result is "aborted", then error stream with
            //          an "AbortError" DOMException.
            if result == RecordResult::Aborted {
                return Some((
                    Err(DomError::abort("the background fetch was aborted")),
                    St::Done,
                ));
            }
            // 2.8.4.4. Otherwise, if responseData cannot be exposed, then error stream with a
            //          TypeError.
            Some((
                Err(DomError::type_error(format!(
                    "the response cannot be exposed (result \"{result}\")"
                ))),
                St::Done,
            ))
        }
    })
    .boxed()
}

/// A response body: chunks read from the store, or the error that ended it.
type BodyStream = BoxStream<'static, Result<Bytes, DomError>>;

/// A `Response` from `responseReady`: the stored response's head (its status and headers are
/// the first stored response's, `Content-Range` and `Content-Length` removed) and a body
/// streamed from the store.
///
/// Clones are the same Response object (`responseReady` resolves every waiter with it): the
/// body can be read once, by any of them.
#[derive(Clone)]
pub struct Response {
    head: ResponseHead,
    /// The body stream until it is read.
    body: Arc<Mutex<Option<BodyStream>>>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.head.status)
            .field("url", &self.url())
            .finish()
    }
}

impl Response {
    /// `status`
    pub fn status(&self) -> u16 {
        self.head.status
    }
    /// `statusText`
    pub fn status_text(&self) -> &str {
        &self.head.status_text
    }
    /// `ok`
    pub fn ok(&self) -> bool {
        self.head.is_ok()
    }
    /// `url` (empty when the URL list is empty)
    pub fn url(&self) -> String {
        self.head.url_string()
    }
    /// `redirected`
    pub fn redirected(&self) -> bool {
        self.head.redirected()
    }
    /// `type`
    pub fn response_type(&self) -> ResponseType {
        self.head.response_type
    }
    /// `headers` (immutable guard)
    pub fn headers(&self) -> &HeaderList {
        &self.head.headers
    }
    /// The whole head.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }
    /// Whether the body was taken for reading (`bodyUsed`).
    pub fn body_used(&self) -> bool {
        lock(&self.body).is_none()
    }
    /// The body stream (`body`). A body that was already taken gives a stream that errors with
    /// a `TypeError` (reading a disturbed body rejects).
    pub fn into_body(self) -> BoxStream<'static, Result<Bytes, DomError>> {
        lock(&self.body)
            .take()
            .unwrap_or_else(crate::fetch::used_body)
    }
    /// Reads the whole body (`arrayBuffer()`). Only for bodies that fit in memory; stream
    /// large ones with [`Response::into_body`].
    pub async fn bytes(self) -> Result<Vec<u8>, DomError> {
        crate::fetch::read_all(self.into_body()).await
    }
    /// Reads the whole body as text (`text()`): Encoding's "UTF-8 decode", which removes a
    /// leading byte order mark and replaces invalid sequences with U+FFFD.
    ///
    /// <https://encoding.spec.whatwg.org/#utf-8-decode>
    pub async fn text(self) -> Result<String, DomError> {
        Ok(crate::fetch::utf8_decode(&self.bytes().await?))
    }
}
