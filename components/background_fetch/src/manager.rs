//! `BackgroundFetchManager.fetch()`.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::core::{EngineInner, InstanceSink};
use crate::error::DomError;
use crate::fetch::{
    RequestBody, RequestInfo, RequestInit, RequestMode, RequestObject, construct_request,
};
use crate::model::{
    BackgroundFetchOptions, ClientSnapshot, FetchUid, PermissionState, PolicyContainer,
    ServiceWorkerRegistrationId,
};
use crate::registration::{BackgroundFetchRegistration, InstanceInner};
use crate::state::{BgFetch, BgFetchMut, Flags, Progress, Record, ResponseData, ResponseDataState};
use crate::store::{FetchMeta, StoreErrorKind};
use crate::sync::{Watch, lock};
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tracing::Instrument;
use url::Url;

/// The kind of environment a script runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvironmentKind {
    /// A document.
    Window,
    /// A dedicated or shared worker.
    Worker,
    /// A service worker global.
    ServiceWorker,
}

/// How an environment (a realm whose script can use the API) is described to the engine.
#[derive(Clone, Debug)]
pub struct EnvironmentSettings {
    /// Its kind.
    pub kind: EnvironmentKind,
    /// Its API base URL (relative request URLs resolve against it). Its origin is the
    /// environment's origin.
    pub base_url: Url,
    /// Whether it is a secure context.
    pub secure_context: bool,
    /// Its policy container (CSP), captured by `fetch()`.
    pub policy: PolicyContainer,
    /// Opaque embedder data about this environment, kept in every fetch it makes
    /// ([`ClientSnapshot::embedder`]).
    pub embedder: Option<Vec<u8>>,
}

impl EnvironmentSettings {
    /// A secure window at `base_url` with no CSP.
    pub fn window(base_url: Url) -> Self {
        EnvironmentSettings {
            kind: EnvironmentKind::Window,
            base_url,
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        }
    }
}

pub(crate) struct EnvInner {
    pub engine: Weak<EngineInner>,
    pub settings: EnvironmentSettings,
    pub origin: String,
    pub managers: Mutex<HashMap<ServiceWorkerRegistrationId, Arc<ManagerInner>>>,
}

impl EnvInner {
    pub(crate) fn client_snapshot(&self) -> ClientSnapshot {
        ClientSnapshot {
            origin: self.origin.clone(),
            base_url: self.settings.base_url.clone(),
            secure_context: self.settings.secure_context,
            policy: self.settings.policy.clone(),
            embedder: self.settings.embedder.clone(),
        }
    }
}

/// An environment settings object: a realm that can use `registration.backgroundFetch`
/// (a document, a worker, a service worker global). Dropping it removes the environment; its
/// `BackgroundFetchRegistration` objects stop receiving updates.
#[derive(Clone)]
pub struct Environment {
    pub(crate) inner: Arc<EnvInner>,
}

impl Environment {
    /// `registration.backgroundFetch` for the service worker registration `registration`: the
    /// environment's only `BackgroundFetchManager` for it.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-serviceworkerregistration-backgroundfetch>
    pub fn background_fetch(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BackgroundFetchManager {
        let mut managers = lock(&self.inner.managers);
        let m = managers
            .entry(registration.clone())
            .or_insert_with(|| {
                Arc::new(ManagerInner {
                    engine: self.inner.engine.clone(),
                    env: Arc::downgrade(&self.inner),
                    registration: registration.clone(),
                    instances: Mutex::new(HashMap::new()),
                })
            })
            .clone();
        BackgroundFetchManager { inner: m }
    }

    /// The environment's origin, serialised.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The environment's settings.
    pub fn settings(&self) -> &EnvironmentSettings {
        &self.inner.settings
    }
}

impl InstanceSink for EnvInner {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn deliver(&self, bg: &Arc<BgFetch>, progress: &Progress) -> Option<Box<dyn FnOnce() + Send>> {
        let manager = lock(&self.managers).get(&bg.registration).cloned()?;
        // 6.1. Let bgFetchRegistration be the instance of BackgroundFetchRegistration within
        //      the relevant realm whose background fetch is equal to bgFetch, or null if none
        //      exists.
        // 6.2. If bgFetchRegistration is null, then abort these steps.
        let instance = manager.instance_for(bg.uid)?;
        // 6.3 to 6.10, on the instance.
        let update = instance.apply_update(progress)?;
        Some(Box::new(move || update.dispatch()))
    }
}

pub(crate) struct ManagerInner {
    pub engine: Weak<EngineInner>,
    pub env: Weak<EnvInner>,
    /// <https://wicg.github.io/background-fetch/#backgroundfetchmanager-service-worker-registration>
    pub registration: ServiceWorkerRegistrationId,
    /// <https://wicg.github.io/background-fetch/#backgroundfetchmanager-backgroundfetchregistration-instances>
    pub instances: Mutex<HashMap<FetchUid, BackgroundFetchRegistration>>,
}

impl ManagerInner {
    pub(crate) fn instance_for(&self, uid: FetchUid) -> Option<BackgroundFetchRegistration> {
        lock(&self.instances).get(&uid).cloned()
    }

    /// Get a BackgroundFetchRegistration instance.
    ///
    /// <https://wicg.github.io/background-fetch/#get-a-backgroundfetchregistration-instance>
    pub(crate) fn get_instance(&self, bg: &Arc<BgFetch>) -> BackgroundFetchRegistration {
        // 1. Let instancesMap be the BackgroundFetchRegistration instances of the only instance
        //    of BackgroundFetchManager within this realm.
        // AD-HOC: a realm has one manager per service worker registration it can see (outline
        //         §11.C.14); this is the one for bgFetch's registration.
        let mut instances = lock(&self.instances);
        // 2. If instancesMap[bgFetch] exists, then return instancesMap[bgFetch].
        if let Some(existing) = instances.get(&bg.uid) {
            return existing.clone();
        }
        // 3. Let instance be a new BackgroundFetchRegistration in realm, with its background
        //    fetch set to bgFetch.
        // AD-HOC: its copied slots take the values instances last received, not the live ones,
        //         so that it agrees with the instances that already exist (the update handling
        //         queue's ordering; WPT get.https.window.js expects equal `downloaded`).
        let delivered = bg.lock().delivered.clone();
        let base_url = self
            .env
            .upgrade()
            .map(|e| e.settings.base_url.clone())
            .unwrap_or_else(|| bg.client.base_url.clone());
        let instance = BackgroundFetchRegistration {
            inner: Arc::new(InstanceInner {
                fetch: bg.clone(),
                base_url,
                engine: self.engine.clone(),
                slots: Mutex::new(delivered),
                // As new as the fetch's latest change: the slots are its current values.
                revision: AtomicU64::new(bg.revisions.load(Ordering::SeqCst)),
                listeners: Mutex::new(Vec::new()),
                observers: Mutex::new(Vec::new()),
            }),
        };
        // 4. Set instancesMap[bgFetch] to instance.
        instances.insert(bg.uid, instance.clone());
        // 5. Return instance.
        instance
    }
}

/// `BackgroundFetchManager`: `registration.backgroundFetch` in one environment.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-manager>
#[derive(Clone)]
pub struct BackgroundFetchManager {
    pub(crate) inner: Arc<ManagerInner>,
}

impl fmt::Debug for BackgroundFetchManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundFetchManager")
            .field("registration", &self.inner.registration)
            .finish()
    }
}

impl BackgroundFetchManager {
    /// The service worker registration this manager belongs to.
    pub fn registration(&self) -> &ServiceWorkerRegistrationId {
        &self.inner.registration
    }

    pub(crate) fn engine(&self) -> Result<Arc<EngineInner>, DomError> {
        self.inner
            .engine
            .upgrade()
            .ok_or_else(|| DomError::invalid_state("the background fetch engine has shut down"))
    }

    pub(crate) fn env(&self) -> Result<Arc<EnvInner>, DomError> {
        self.inner
            .env
            .upgrade()
            .ok_or_else(|| DomError::invalid_state("the environment has been discarded"))
    }

    /// `get(id)`.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchmanager-get>
    pub async fn get(&self, id: &str) -> Result<Option<BackgroundFetchRegistration>, DomError> {
        // AD-HOC: WPT get.https.window.js expects get('') to reject with a TypeError (as
        //         Chromium does); the spec would resolve undefined.
        if id.is_empty() {
            return Err(DomError::type_error("get(): the id must not be empty"));
        }
        let engine = self.engine()?;
        // 1. Let registration be this's associated service worker registration.
        let registration = engine.registration(&self.inner.registration);
        // 2. Let bgFetch be registration's active background fetches[id].
        // 3. If bgFetch is undefined, resolve promise with undefined and abort these steps.
        let Some(bg) = registration.get(id) else {
            return Ok(None);
        };
        // 4. Enqueue the following steps to bgFetch's update handling queue:
        //    1. Queue a bgfetch task task to run the following steps:
        //       1. Let bgFetchRegistration be the result of getting a
        //          BackgroundFetchRegistration instance for bgFetch in this's relevant Realm.
        //       2. Resolve promise with bgFetchRegistration.
        //    2. Wait for task to complete.
        Ok(Some(self.inner.get_instance(&bg)))
    }

    /// `getIds()`: the ids of the registration's active background fetches, in insertion
    /// order.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchmanager-getids>
    pub async fn get_ids(&self) -> Result<Vec<String>, DomError> {
        let engine = self.engine()?;
        // 1. Let registration be this's associated service worker registration.
        let registration = engine.registration(&self.inner.registration);
        // 2. Resolve promise with the result of getting the keys of registration's active
        //    background fetches.
        Ok(lock(&registration.active)
            .iter()
            .map(|(id, _)| id.clone())
            .collect())
    }
}

/// The `requests` argument of `fetch()`: `(RequestInfo or sequence<RequestInfo>)`.
#[derive(Debug)]
pub enum Requests {
    /// A single `RequestInfo`.
    One(RequestInfo),
    /// A sequence.
    Many(Vec<RequestInfo>),
}

impl From<RequestInfo> for Requests {
    fn from(r: RequestInfo) -> Self {
        Requests::One(r)
    }
}
impl From<&str> for Requests {
    fn from(s: &str) -> Self {
        Requests::One(s.into())
    }
}
impl From<String> for Requests {
    fn from(s: String) -> Self {
        Requests::One(s.into())
    }
}
impl From<RequestObject> for Requests {
    fn from(r: RequestObject) -> Self {
        Requests::One(r.into())
    }
}
impl From<Vec<RequestInfo>> for Requests {
    fn from(v: Vec<RequestInfo>) -> Self {
        Requests::Many(v)
    }
}
impl From<Vec<&str>> for Requests {
    fn from(v: Vec<&str>) -> Self {
        Requests::Many(v.into_iter().map(RequestInfo::from).collect())
    }
}
impl From<Vec<String>> for Requests {
    fn from(v: Vec<String>) -> Self {
        Requests::Many(v.into_iter().map(RequestInfo::from).collect())
    }
}
impl<const N: usize> From<[&str; N]> for Requests {
    fn from(v: [&str; N]) -> Self {
        Requests::Many(v.into_iter().map(RequestInfo::from).collect())
    }
}

/// Deletes a fetch that was being created and gives back the quota its bodies took.
async fn discard(engine: &EngineInner, storage_key: &str, uid: FetchUid) {
    if let Err(e) = engine.hosts.store.delete_fetch(uid).await {
        tracing::warn!(%uid, error = %e, "could not delete a fetch that failed to register");
    }
    engine.release_quota_uid(storage_key, uid);
}

impl BackgroundFetchManager {
    /// `fetch(id, requests, options)`.
    ///
    /// Resolves with the registration once the fetch and its request bodies are stored; the
    /// records are then fetched in the background.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchmanager-fetch>
    pub async fn fetch(
        &self,
        id: &str,
        requests: impl Into<Requests>,
        options: BackgroundFetchOptions,
    ) -> Result<BackgroundFetchRegistration, DomError> {
        self.fetch_with_active_worker(id, requests.into(), options, true)
            .await
    }

    /// `fetch(id, requests, options)` from script in another realm, which says whether the
    /// service worker registration it sees has an active worker (`registration.active`): step
    /// 8.4 rejects when it has none, or when the worker host says so.
    pub(crate) async fn fetch_with_active_worker(
        &self,
        id: &str,
        requests: Requests,
        options: BackgroundFetchOptions,
        active_worker: bool,
    ) -> Result<BackgroundFetchRegistration, DomError> {
        let span = tracing::info_span!("fetch()", id, scope = %self.inner.registration.scope);
        self.fetch_steps(id, requests, options, active_worker)
            .instrument(span)
            .await
    }

    /// The steps of [`BackgroundFetchManager::fetch`], run inside its span.
    async fn fetch_steps(
        &self,
        id: &str,
        requests: Requests,
        options: BackgroundFetchOptions,
        active_worker: bool,
    ) -> Result<BackgroundFetchRegistration, DomError> {
        let engine = self.engine()?;
        let env = self.env()?;
        // 1. Let registration be this's service worker registration.
        let registration_id = self.inner.registration.clone();
        // 2. Let records be a new list.
        let mut records: Vec<RequestObject> = Vec::new();
        // 3. Let uploadTotal be 0.
        let mut upload_total: u64 = 0;
        // 4. If requests is a RequestInfo, set requests to « requests ».
        let requests = match requests {
            Requests::One(r) => vec![r],
            Requests::Many(v) => v,
        };
        // 5. If requests is empty, then return a promise rejected with a TypeError.
        if requests.is_empty() {
            return Err(DomError::type_error("fetch(): requests must not be empty"));
        }
        // 6. For each request of requests:
        for request in requests {
            // 6.1. Let internalRequest be the request of the result of invoking the Request
            //      constructor with request. If this throws an exception, return a promise
            //      rejected with the exception.
            let internal =
                construct_request(request, RequestInit::default(), &env.settings.base_url)?;
            // 6.2. If internalRequest's mode is "no-cors", then return a promise rejected with a
            //      TypeError.
            if internal.request.mode == RequestMode::NoCors {
                return Err(DomError::type_error(format!(
                    "fetch(): requests must not be in no-cors mode ({})",
                    internal.request.url
                )));
            }
            // 6.3. Set internalRequest's client to null.
            // NOTE: the caller's origin, base URL and policy container are captured as a
            //       ClientSnapshot below instead (outline §9.6).
            // 6.4. Let record be a new background fetch record.
            // 6.5. Set record's request to internalRequest.
            // 6.6. Append record to records.
            records.push(internal);
        }
        let client = env.client_snapshot();
        // AD-HOC: the icons are processed ("process an ImageResource from an API", src resolved
        //         against the caller's API base URL) here, where the caller's base URL is known;
        //         the spec keeps the dictionaries and leaves processing to the display. A src
        //         that does not parse rejects, as processing throws.
        let icons = options
            .icons
            .iter()
            .flatten()
            .map(|icon| icon.process(&env.settings.base_url))
            .collect::<Result<Vec<_>, _>>()?;
        // 7. Let promise be a new promise.

        // AD-HOC: fail fast on what step 8 would reject anyway, before reading any body.
        self.check_registrable(&engine, &client, id, active_worker)
            .await?;

        // AD-HOC: steps 8.6 to 8.11 (reading and storing the request bodies) run before the
        //         edit queue, not inside it: a never-ending body stream would otherwise stall
        //         every other fetch(), abort() and settle of the registration (spec issue 92).
        //         The checks of step 8 all run again in the queue below.
        let storage_key = registration_id.storage_key.clone();
        engine
            .ensure_quota_ledger(&storage_key)
            .await
            .map_err(|e| DomError::type_error(format!("fetch(): storage is unavailable: {e}")))?;
        // The quota the bodies and the reservation are checked against (asked once here).
        engine.refresh_quota(&storage_key).await;
        let uid = engine.allocate_uid();
        let mut requests_meta = Vec::with_capacity(records.len());
        let mut bodies = Vec::with_capacity(records.len());
        for r in records {
            requests_meta.push(r.request);
            bodies.push(r.body);
        }

        let title = options.title.clone().unwrap_or_default();
        let meta = FetchMeta {
            uid,
            registration: registration_id.clone(),
            id: id.to_owned(),
            download_total: options.download_total,
            title: title.clone(),
            icons: icons.clone(),
            client: client.clone(),
            requests: requests_meta.clone(),
            embedder_data: options.embedder_data.clone(),
        };
        if let Err(e) = engine.hosts.store.create_fetch(meta).await {
            return Err(DomError::type_error(format!(
                "fetch(): the fetch could not be stored: {e}"
            )));
        }
        // 8.6. Let requestBodiesRemaining be the size of requests.
        // AD-HOC: counting only the requests that have a body (outline §11.C.2: as written, a
        //         request without a body is never counted down and step 8.10 never finishes).
        // 8.7. Let requestReadFailed be false.
        // 8.8. For each request of requests:
        // AD-HOC: iterates the internal requests, not the RequestInfo values (outline §11.C.3).
        //         Bodies are read one after the other; when one fails, the remaining ones are
        //         dropped (cancelled) unread.
        for (index, body) in bodies.into_iter().enumerate() {
            // 8.8.1. If request's body is null, then continue.
            let Some(body) = body else { continue };
            // 8.8.2. Let stream be request's body's stream.
            // 8.8.3.1.1. Wait for request's body.
            // NOTE: "This ensures we have a copy of the request bytes before resolving."
            let mut stream = match body {
                RequestBody::Bytes(b) => futures::stream::once(async move { Ok(b) }).boxed(),
                RequestBody::Stream(s) => s,
            };
            let mut length: u64 = 0;
            let failure: Option<DomError> = loop {
                let chunk = match stream.next().await {
                    None => break None,
                    // 8.8.3.1.2. If stream has errored, then set requestReadFailed to true.
                    // 8.11. If requestReadFailed is true, then reject promise with a TypeError
                    //       and abort these steps.
                    Some(Err(e)) => {
                        break Some(DomError::type_error(format!(
                            "fetch(): reading the body of request {index} failed: {}",
                            e.message
                        )));
                    }
                    Some(Ok(c)) => c,
                };
                if chunk.is_empty() {
                    continue;
                }
                let n = chunk.len() as u64;
                // 8.9. If at any point storing requests fails due to exceeding a quota limit,
                //      reject promise with a QuotaExceededError DOMException and abort these
                //      steps.
                if !engine.charge_quota(&storage_key, uid, n) {
                    break Some(DomError::quota_exceeded(
                        "fetch(): storing the request bodies would exceed the storage quota",
                    ));
                }
                if let Err(e) = engine
                    .hosts
                    .store
                    .append_request_body(uid, index, chunk)
                    .await
                {
                    engine.uncharge_quota(&storage_key, uid, n);
                    break Some(match e.kind {
                        StoreErrorKind::QuotaExceeded => DomError::quota_exceeded(format!(
                            "fetch(): storing the request bodies exceeded a quota: {}",
                            e.message
                        )),
                        _ => DomError::type_error(format!(
                            "fetch(): the request body could not be stored: {e}"
                        )),
                    });
                }
                length += n;
            };
            if let Some(err) = failure {
                drop(stream);
                discard(&engine, &storage_key, uid).await;
                return Err(err);
            }
            // 8.8.3.3. Increment uploadTotal by request's body's length.
            // AD-HOC: by the number of bytes stored (a stream body's length is null; outline
            //         §11.D.9).
            requests_meta[index].body_length = Some(length);
            upload_total += length;
            // 8.8.3.4. Decrement requestBodiesRemaining by 1.
        }
        // 8.10. Wait for requestBodiesRemaining to be 0, or requestReadFailed to be true.

        // 8. Enqueue the following steps to registration's active background fetches edit
        //    queue:
        let registration = engine.registration(&registration_id);
        let queue = registration.edit_queue.lock().await;
        // 8.1. Let permission be the permission state for a PermissionDescriptor with name
        //      "background-fetch", and this's relevant settings object.
        // NOTE: the environment reaches the host as the client snapshot (origin, URL,
        //       the embedder's own data about it).
        let permission = engine.hosts.permission.permission_state(&client).await;
        let has_active_worker = active_worker
            && engine
                .hosts
                .worker
                .has_active_worker(&registration_id)
                .await;
        // 8.2. If permission is "denied", then reject promise with a NotAllowedError
        //      DOMException and abort these steps.
        // 8.3. Let bgFetchMap be registration's active background fetches.
        // 8.4. If registration's active worker is null, then reject promise with a TypeError
        //      and abort these steps.
        // 8.5. If bgFetchMap[id] exists, reject promise with a TypeError and abort these steps.
        let rejection = if permission == PermissionState::Denied {
            Some(DomError::not_allowed(
                "fetch(): the \"background-fetch\" permission is denied",
            ))
        } else if !has_active_worker {
            Some(DomError::type_error(
                "fetch(): the service worker registration has no active worker",
            ))
        } else if registration.get(id).is_some() {
            Some(DomError::type_error(format!(
                "fetch(): there is already an active background fetch with id {id:?}"
            )))
        } else if !engine.reserve_quota(&storage_key, uid, options.download_total) {
            // AD-HOC: spec issue 110: downloadTotal must fit in the storage key's quota, and is
            //         reserved atomically with this check (README; WPT fetch.https.window.js).
            Some(DomError::quota_exceeded(format!(
                "fetch(): downloadTotal ({}) cannot be reserved from the storage quota",
                options.download_total
            )))
        } else {
            None
        };
        if let Some(err) = rejection {
            drop(queue);
            discard(&engine, &storage_key, uid).await;
            return Err(err);
        }
        // Display, permission paragraph: "If permission is "prompt", then the user agent may
        // set bgFetch's paused flag at the beginning of this algorithm."
        let prompt = permission == PermissionState::Prompt;
        let flags = Flags {
            paused: prompt,
            awaiting_permission: prompt,
            ..Flags::default()
        };
        if let Err(e) = engine.hosts.store.commit_fetch(uid, flags.stored()).await {
            drop(queue);
            discard(&engine, &storage_key, uid).await;
            return Err(match e.kind {
                StoreErrorKind::QuotaExceeded => {
                    DomError::quota_exceeded(format!("fetch(): {}", e.message))
                }
                _ => DomError::type_error(format!("fetch(): the fetch could not be stored: {e}")),
            });
        }
        // 8.12. Let bgFetch be a new background fetch with: id, records, download total, upload
        //       total, icons (options' icons if present, otherwise an empty list), title
        //       (options' title if present, otherwise the empty string), service worker
        //       registration.
        let all_get = requests_meta.iter().all(|r| r.is_get());
        let bg = Arc::new(BgFetch {
            uid,
            id: id.to_owned(),
            registration: registration_id.clone(),
            download_total: options.download_total,
            upload_total,
            records: requests_meta
                .into_iter()
                .enumerate()
                .map(|(index, request)| Record {
                    index,
                    request,
                    response_data: Mutex::new(ResponseData::new(0, ResponseDataState::default())),
                })
                .collect(),
            client,
            embedder_data: options.embedder_data,
            all_get,
            state: Mutex::new(BgFetchMut {
                title,
                icons,
                uploaded: 0,
                result: Default::default(),
                failure_reason: Default::default(),
                records_available: true,
                stored_total: 0,
                in_flight: 0,
                delivered: Progress {
                    records_available: true,
                    ..Default::default()
                },
                last_update: None,
                update_scheduled: false,
                immediate_failure: false,
            }),
            flags: Watch::new(flags),
            settled: AtomicBool::new(false),
            readers: AtomicUsize::new(0),
            drop_pending: AtomicBool::new(false),
            finished: Watch::new(false),
            revisions: Default::default(),
        });
        lock(&engine.state).fetches.insert(uid, bg.clone());
        // 8.13. Set bgFetchMap[id] to bgFetch.
        lock(&registration.active).push((id.to_owned(), bg.clone()));
        drop(queue);
        tracing::info!(%uid, records = bg.records.len(), upload_total, download_total = bg.download_total, "registered");
        // 8.14. Queue a bgfetch task to resolve promise with the result of getting a
        //       BackgroundFetchRegistration instance for bgFetch in this's relevant Realm.
        let instance = self.inner.get_instance(&bg);
        // 8.15. In parallel, display bgFetch from this's relevant settings object.
        // FIXME: the display's environment is not passed to the UI host: it is the client of
        //        the display's icon fetch (credentials, referrer, CSP), so a UI host can only
        //        fetch icons as a request without a client. The snapshot carries the origin.
        engine.hosts.ui.show(&engine.ui_snapshot(&bg));
        // 8.16. In parallel, perform a background fetch with bgFetch.
        engine
            .hosts
            .spawner
            .spawn(crate::perform::perform_background_fetch(engine.clone(), bg).boxed());
        // 9. Return promise.
        Ok(instance)
    }

    /// The checks of `fetch()` step 8 that can fail before any body is read.
    async fn check_registrable(
        &self,
        engine: &Arc<EngineInner>,
        client: &ClientSnapshot,
        id: &str,
        active_worker: bool,
    ) -> Result<(), DomError> {
        if engine.hosts.permission.permission_state(client).await == PermissionState::Denied {
            return Err(DomError::not_allowed(
                "fetch(): the \"background-fetch\" permission is denied",
            ));
        }
        if !(active_worker
            && engine
                .hosts
                .worker
                .has_active_worker(&self.inner.registration)
                .await)
        {
            return Err(DomError::type_error(
                "fetch(): the service worker registration has no active worker",
            ));
        }
        if engine
            .registration(&self.inner.registration)
            .get(id)
            .is_some()
        {
            return Err(DomError::type_error(format!(
                "fetch(): there is already an active background fetch with id {id:?}"
            )));
        }
        Ok(())
    }
}

/// Resolves `url` against `base` the way the `Request` constructor does (for embedders that
/// build requests themselves).
pub fn parse_request_url(url: &str, base: &Url) -> Result<Url, DomError> {
    Ok(construct_request(url.into(), RequestInit::default(), base)?
        .request
        .url)
}
