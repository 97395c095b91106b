//! The engine: owns every background fetch of a profile, the per-registration active maps and
//! edit queues, the scheduler, and the hosts.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::hosts::{
    Clock, NetworkHost, PermissionHost, PolicyHost, QuotaHost, Spawn, UiHost, UiSnapshot,
    WorkerHost,
};
use crate::model::FunctionalEventKind;
use crate::model::{
    ClientSnapshot, FetchUid, PolicyContainer, RecordResult, ServiceWorkerRegistrationId,
};
use crate::registration::{BackgroundFetchManager, InstanceUpdate, ManagerInner};
use crate::state::{BgFetch, BgFetchMut, Flags, Progress, Record, ResponseData, ResponseDataState};
use crate::store::{RecordState, Store, StoreError, StoredFetch};
use crate::sync::{Semaphore, Watch, lock};
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use url::Url;

/// Retry policy for `GET` records whose resource is temporarily unavailable. The spec retries
/// forever with no delay (outline §11.B.8, spec issue 26 leaves it open); we wait with
/// exponential backoff and optional jitter, and may give up.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry after an attempt that made no progress.
    pub initial_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Each further failed attempt multiplies the delay by this.
    pub multiplier: f64,
    /// Fraction of the delay randomised away (0 = none, 0.5 = up to half).
    pub jitter: f64,
    /// Give up (`fetch-error`) after this many consecutive attempts that made no progress.
    /// `None` retries forever, as the spec does.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: Some(20),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `failures` (1 = first retry), with `random` in [0, 1).
    pub fn delay(&self, failures: u32, random: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let base = self.initial_delay.as_secs_f64()
            * self
                .multiplier
                .max(1.0)
                .powi(failures.saturating_sub(1).min(64) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * random);
        Duration::from_secs_f64(jittered.max(0.0))
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Records of one background fetch fetched at once (the spec fetches all in parallel;
    /// Chromium does one).
    pub max_parallel_per_fetch: usize,
    /// Records fetched at once over every background fetch.
    pub max_parallel_global: usize,
    /// Minimum time between two progress updates of a background fetch (the spec's issue:
    /// "I need to debounce this"). A change of `result` or `recordsAvailable` is delivered at
    /// once.
    pub progress_interval: Duration,
    /// Retries of temporarily unavailable `GET` records.
    pub retry: RetryPolicy,
    /// Size of the slices read from the store when streaming a body to script or to the network.
    pub read_chunk_size: usize,
    /// Whether [`Engine::start`] resumes the fetches it restores (and fires the events a previous
    /// process did not finish). When false, they are restored (visible to `get()`, `getIds()`,
    /// `match()`, `abort()`) but stay idle until [`Engine::resume_restored`].
    pub resume_on_start: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_parallel_per_fetch: 4,
            max_parallel_global: 16,
            progress_interval: Duration::from_millis(100),
            retry: RetryPolicy::default(),
            read_chunk_size: 64 * 1024,
            resume_on_start: true,
        }
    }
}

/// The hosts an engine runs on.
#[derive(Clone)]
pub struct Hosts {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Network.
    pub network: Arc<dyn NetworkHost>,
    /// Browser UI.
    pub ui: Arc<dyn UiHost>,
    /// Service worker registrations and functional event dispatch.
    pub worker: Arc<dyn WorkerHost>,
    /// The `"background-fetch"` permission.
    pub permission: Arc<dyn PermissionHost>,
    /// Quota per storage key.
    pub quota: Arc<dyn QuotaHost>,
    /// CSP decisions.
    pub policy: Arc<dyn PolicyHost>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Background tasks.
    pub spawner: Arc<dyn Spawn>,
}

impl Hosts {
    /// Hosts with what every embedding must provide (storage, network, the service worker
    /// side, time and tasks) and sensible defaults for the rest: no UI ([`crate::NoUi`]), the
    /// permission granted ([`crate::Granted`]), no quota ([`crate::Unlimited`]) and
    /// [`crate::SimpleCsp`]. Change any with the `with_*` methods.
    pub fn new(
        store: Arc<dyn Store>,
        network: Arc<dyn NetworkHost>,
        worker: Arc<dyn WorkerHost>,
        clock: Arc<dyn Clock>,
        spawner: Arc<dyn Spawn>,
    ) -> Hosts {
        Hosts {
            store,
            network,
            ui: Arc::new(crate::hosts::NoUi),
            worker,
            permission: Arc::new(crate::hosts::Granted),
            quota: Arc::new(crate::hosts::Unlimited),
            policy: Arc::new(crate::hosts::SimpleCsp),
            clock,
            spawner,
        }
    }

    /// With `ui`.
    pub fn with_ui(mut self, ui: Arc<dyn UiHost>) -> Hosts {
        self.ui = ui;
        self
    }

    /// With `permission`.
    pub fn with_permission(mut self, permission: Arc<dyn PermissionHost>) -> Hosts {
        self.permission = permission;
        self
    }

    /// With `quota`.
    pub fn with_quota(mut self, quota: Arc<dyn QuotaHost>) -> Hosts {
        self.quota = quota;
        self
    }

    /// With `policy`.
    pub fn with_policy(mut self, policy: Arc<dyn PolicyHost>) -> Hosts {
        self.policy = policy;
        self
    }
}

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

/// A service worker registration's background fetch state.
///
/// <https://wicg.github.io/background-fetch/#service-worker-registration-active-background-fetches>
pub(crate) struct SwRegistration {
    /// <https://wicg.github.io/background-fetch/#service-worker-registration-active-background-fetches-edit-queue>
    pub edit_queue: futures::lock::Mutex<()>,
    /// <https://wicg.github.io/background-fetch/#service-worker-registration-active-background-fetches>
    /// (an ordered map: insertion order).
    pub active: Mutex<Vec<(String, Arc<BgFetch>)>>,
}

impl SwRegistration {
    /// <https://wicg.github.io/background-fetch/#contains-background-fetch>
    pub(crate) fn contains(&self, bg: &Arc<BgFetch>) -> bool {
        // 1. Let id be bgFetch's id.
        // 2. If map[id] does not exist, then return false.
        // 3. If map[id] does not equal bgFetch, then return false.
        // 4. Return true.
        lock(&self.active)
            .iter()
            .any(|(id, f)| *id == bg.id && Arc::ptr_eq(f, bg))
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<BgFetch>> {
        lock(&self.active)
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, f)| f.clone())
    }

    pub(crate) fn remove(&self, id: &str) {
        lock(&self.active).retain(|(i, _)| i != id);
    }
}

/// Per storage key: bytes stored and bytes reserved by running fetches' `downloadTotal`.
#[derive(Default)]
struct QuotaLedger {
    usage: u64,
    /// Remaining reservation per fetch: its downloadTotal minus what it has stored since.
    reservations: HashMap<FetchUid, u64>,
    /// Bytes stored per fetch (released when the fetch's data is dropped).
    stored: HashMap<FetchUid, u64>,
}

impl QuotaLedger {
    fn reserved(&self) -> u64 {
        self.reservations.values().sum()
    }
}

pub(crate) struct EngineState {
    registrations: HashMap<ServiceWorkerRegistrationId, Arc<SwRegistration>>,
    /// Every background fetch the engine knows, settled ones included (their UI can still be
    /// clicked).
    pub fetches: HashMap<FetchUid, Arc<BgFetch>>,
    environments: Vec<Weak<EnvInner>>,
    sw_environments: HashMap<ServiceWorkerRegistrationId, Environment>,
    next_uid: u64,
    /// Restored work not started yet (`resume_on_start` false).
    deferred: HashMap<FetchUid, futures::future::BoxFuture<'static, ()>>,
    quota: HashMap<String, QuotaLedger>,
    rng: u64,
}

pub(crate) struct EngineInner {
    pub hosts: Hosts,
    pub config: EngineConfig,
    pub state: Mutex<EngineState>,
    /// Whether the network is online (the host reports it through [`Engine::set_online`]).
    pub online: Watch<bool>,
    pub global_slots: Arc<Semaphore>,
    pub per_fetch_slots: Mutex<HashMap<FetchUid, Arc<Semaphore>>>,
    /// The functional events fired and still active, by token.
    pub events: Mutex<crate::functional::ActiveEvents>,
}

/// A Background Fetch engine for one browser profile.
///
/// Create it with [`Engine::start`], which also restores every background fetch the store holds
/// (resuming interrupted downloads). Script-facing API objects come from
/// [`Engine::create_environment`] → [`Environment::background_fetch`]. What the user does in the
/// UI comes in through [`Engine::pause`], [`Engine::resume`], [`Engine::user_abort`],
/// [`Engine::click`] and [`Engine::permission_decision`]; the network's connectivity through
/// [`Engine::set_online`]; service worker lifecycle through [`Engine::unregister`].
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

/// A weak handle to an [`Engine`] (for hosts the engine holds, which must not keep it alive).
#[derive(Clone)]
pub struct WeakEngine(Weak<EngineInner>);

impl WeakEngine {
    /// Whether the engine still runs.
    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// The engine, if it still runs.
    pub fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

/// What [`Engine::diagnostics`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineDiagnostics {
    /// Background fetches the engine knows (active, settling, and settled ones whose UI may
    /// still be clicked).
    pub fetches: usize,
    /// Futures waiting for a change of connectivity: at most one per record in flight or
    /// waiting to start, whatever the number of records that ever ran.
    pub connectivity_waiters: usize,
}

/// What a fetch looks like to the embedder (for UIs, command lines and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchInfo {
    /// Its uid.
    pub uid: FetchUid,
    /// Its registration.
    pub registration: ServiceWorkerRegistrationId,
    /// Its id.
    pub id: String,
    /// Whether it is still in its registration's active background fetches.
    pub active: bool,
    /// Its UI state.
    pub ui: UiSnapshot,
    /// Embedder data given at creation.
    pub embedder_data: Option<String>,
}

impl Engine {
    /// A weak handle.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// Starts an engine on `hosts`: loads the store, restores every background fetch in it and
    /// resumes the unsettled ones (spawned on `hosts.spawner`). Fetches that settled but whose
    /// event had not finished when the previous process stopped get their event again.
    pub async fn start(hosts: Hosts, config: EngineConfig) -> Result<Engine, StoreError> {
        let stored = hosts.store.load().await?;
        let mut usage = HashMap::new();
        for f in &stored {
            let key = f.meta.registration.storage_key.clone();
            if let std::collections::hash_map::Entry::Vacant(e) = usage.entry(key) {
                let u = hosts.store.usage(e.key()).await?;
                e.insert(u);
            }
        }
        let floor = hosts.store.uid_floor().await?;
        let next_uid = stored
            .iter()
            .map(|f| f.meta.uid.0 + 1)
            .chain([floor, 1])
            .max()
            .unwrap_or(1);
        let seed = hosts.clock.now().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        let inner = Arc::new(EngineInner {
            global_slots: Semaphore::new(config.max_parallel_global.max(1)),
            hosts,
            config,
            state: Mutex::new(EngineState {
                registrations: HashMap::new(),
                fetches: HashMap::new(),
                environments: Vec::new(),
                sw_environments: HashMap::new(),
                next_uid,
                deferred: HashMap::new(),
                quota: usage
                    .into_iter()
                    .map(|(k, u)| {
                        (
                            k,
                            QuotaLedger {
                                usage: u,
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
                rng: seed | 1,
            }),
            online: Watch::new(true),
            per_fetch_slots: Mutex::new(HashMap::new()),
            events: Mutex::new(Default::default()),
        });
        let engine = Engine { inner };
        for f in stored {
            engine.inner.restore(f);
        }
        Ok(engine)
    }

    /// Starts the restored work held back by `resume_on_start: false`: of fetch `uid`, or of
    /// every restored fetch when `uid` is `None`. Returns how many fetches were started.
    pub fn resume_restored(&self, uid: Option<FetchUid>) -> usize {
        let work: Vec<_> = {
            let mut st = lock(&self.inner.state);
            match uid {
                Some(uid) => st.deferred.remove(&uid).into_iter().collect(),
                None => {
                    let mut all: Vec<_> = st.deferred.drain().collect();
                    all.sort_by_key(|(uid, _)| *uid);
                    all.into_iter().map(|(_, f)| f).collect()
                }
            }
        };
        let n = work.len();
        for f in work {
            self.inner.hosts.spawner.spawn(f);
        }
        n
    }

    /// Creates an environment (a document or worker realm) that can use the API.
    pub fn create_environment(&self, settings: EnvironmentSettings) -> Environment {
        let env = Environment {
            inner: Arc::new(EnvInner {
                engine: Arc::downgrade(&self.inner),
                origin: settings.base_url.origin().ascii_serialization(),
                settings,
                managers: Mutex::new(HashMap::new()),
            }),
        };
        let mut st = lock(&self.inner.state);
        st.environments.retain(|w| w.strong_count() > 0);
        st.environments.push(Arc::downgrade(&env.inner));
        env
    }

    /// The service worker global's environment of `registration`: the realm in which
    /// functional events are created. The engine keeps it alive.
    pub fn service_worker_environment(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> Environment {
        self.inner.service_worker_environment(registration)
    }

    /// Reports the network going online or offline. While offline nothing is in flight:
    /// running `GET` records are interrupted and resume with Range once online.
    pub fn set_online(&self, online: bool) {
        if self.inner.online.get() == online {
            return;
        }
        tracing::info!(online, "connectivity changed");
        self.inner.online.update(|o| *o = online);
        let fetches: Vec<_> = lock(&self.inner.state).fetches.values().cloned().collect();
        for bg in fetches {
            if !bg.is_settled() {
                self.inner.update_ui(&bg);
            }
        }
    }

    /// Whether the engine considers the network online.
    pub fn is_online(&self) -> bool {
        self.inner.online.get()
    }

    /// Counters for an embedder's diagnostics page and for tests: what the engine holds now.
    pub fn diagnostics(&self) -> EngineDiagnostics {
        EngineDiagnostics {
            fetches: lock(&self.inner.state).fetches.len(),
            connectivity_waiters: self.inner.online.waiters(),
        }
    }

    /// The user paused the fetch from the UI. Only offered when every record is `GET` (the
    /// display algorithm); returns false (and does nothing) otherwise or once settled.
    pub async fn pause(&self, uid: FetchUid) -> bool {
        self.inner.set_paused(uid, true).await
    }

    /// The user resumed the fetch from the UI. Returns false if it was not paused.
    pub async fn resume(&self, uid: FetchUid) -> bool {
        self.inner.set_paused(uid, false).await
    }

    /// The user aborted the fetch from the UI: sets its abort all flag. Returns false if the
    /// fetch is unknown or already settled.
    pub async fn user_abort(&self, uid: FetchUid) -> bool {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return false;
        };
        if bg.is_settled() {
            return false;
        }
        // AD-HOC: the abort is durable before it is acknowledged, so that a crash cannot bring
        //         the fetch back to download (and succeed) after the user aborted it.
        let flags = Flags {
            abort_all: true,
            ..bg.flags()
        };
        self.inner.store_flags(&bg, flags).await;
        bg.flags.update(|f| f.abort_all = true);
        true
    }

    /// The user activated the fetch's UI: fires `backgroundfetchclick`. Completes when the
    /// event is no longer active. Returns false if the fetch is unknown.
    ///
    /// <https://wicg.github.io/background-fetch/#fire-a-background-fetch-click-event>
    pub async fn click(&self, uid: FetchUid) -> bool {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return false;
        };
        // Fire a functional event named "backgroundfetchclick" using BackgroundFetchEvent on
        // bgFetch's service worker registration with the following properties:
        //   registration: The result of getting a BackgroundFetchRegistration instance for
        //   bgFetch in the event object's relevant Realm.
        crate::functional::fire(&self.inner, &bg, FunctionalEventKind::Click).await;
        true
    }

    /// The remote end steps of the "background fetch click" WebDriver extension command
    /// ([`crate::automation`]): `page` is the current top-level browsing context's active
    /// document's URL, or `None` when that context is no longer open; `registrations` are the
    /// service worker registrations the embedder knows. On success the click event has been
    /// queued; it fires on the engine's tasks.
    ///
    /// <https://wicg.github.io/background-fetch/#automation-click>
    pub fn webdriver_click(
        &self,
        page: Option<&Url>,
        registrations: &[ServiceWorkerRegistrationId],
        id: &str,
    ) -> Result<(), crate::automation::WebDriverError> {
        use crate::automation::{WebDriverError, match_service_worker_registration};
        // 1. If the current top-level browsing context is no longer open, then return a
        //    WebDriver error with WebDriver error code no such window.
        let Some(page_url) = page else {
            return Err(WebDriverError::NoSuchWindow);
        };
        // 2. Let pageURL be the current top-level browsing context's active document's URL.
        // 3. Let swRegistration be the matching service worker registration for pageURL.
        // NOTE: the page's storage key is its origin (an unpartitioned profile).
        let storage_key = page_url.origin().ascii_serialization();
        let sw_registration =
            match_service_worker_registration(registrations, &storage_key, page_url);
        // 4. If swRegistration is null, then return a WebDriver error with status 400 and JSON
        //    error code "invalid service worker state".
        let Some(sw_registration) = sw_registration else {
            return Err(WebDriverError::InvalidServiceWorkerState);
        };
        // 5. Let bgFetch be the newest background fetch with an id of url variable id and a
        //    service worker registration of swRegistration, or null if none exists.
        // NOTE: settled fetches count until the embedder forgets them (Engine::forget); uids
        //       grow with time, so the newest has the greatest.
        let bg = lock(&self.inner.state)
            .fetches
            .values()
            .filter(|f| f.id == id && &f.registration == sw_registration)
            .max_by_key(|f| f.uid)
            .cloned();
        // 6. If bgFetch is null, then return a WebDriver error with status 404 and JSON error
        //    code "background fetch not found".
        let Some(bg) = bg else {
            return Err(WebDriverError::BackgroundFetchNotFound);
        };
        // 7. Fire a background fetch click event for bgFetch.
        let engine = self.clone();
        self.inner.hosts.spawner.spawn(
            async move {
                engine.click(bg.uid).await;
            }
            .boxed(),
        );
        // 8. Return WebDriver success.
        Ok(())
    }

    /// The user answered the permission prompt of a fetch that started paused because the
    /// permission was `"prompt"`: accepting unsets the paused flag; refusing sets the abort
    /// all flag. Returns false if the fetch was not waiting for an answer.
    pub async fn permission_decision(&self, uid: FetchUid, accept: bool) -> bool {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return false;
        };
        if !bg.flags().awaiting_permission || bg.is_settled() {
            return false;
        }
        let answer = |f: &mut Flags| {
            f.awaiting_permission = false;
            if accept {
                f.paused = false;
            } else {
                f.abort_all = true;
            }
        };
        // The answer is durable before it takes effect: a crash cannot forget a refusal, nor
        // start a fetch the user did not accept.
        let mut flags = bg.flags();
        answer(&mut flags);
        self.inner.store_flags(&bg, flags).await;
        bg.flags.update(answer);
        self.inner.update_ui(&bg);
        true
    }

    /// The service worker registration was unregistered, or its storage cleared: every
    /// background fetch of it is aborted without events, its UI removed and its storage purged
    /// (README "Lifecycle"; outline §8.2).
    pub async fn unregister(&self, registration: &ServiceWorkerRegistrationId) {
        let reg = self.inner.registration(registration);
        let _queue = reg.edit_queue.lock().await;
        let victims: Vec<Arc<BgFetch>> = {
            let mut st = lock(&self.inner.state);
            let v: Vec<_> = st
                .fetches
                .values()
                .filter(|f| &f.registration == registration)
                .cloned()
                .collect();
            for f in &v {
                st.fetches.remove(&f.uid);
            }
            st.sw_environments.remove(registration);
            v
        };
        lock(&reg.active).clear();
        for bg in victims {
            bg.flags.update(|f| {
                f.silent = true;
                f.abort_all = true;
            });
            bg.lock().records_available = false;
            if let Err(e) = self.inner.hosts.store.delete_fetch(bg.uid).await {
                tracing::warn!(uid = %bg.uid, error = %e, "could not purge a fetch");
            }
            self.inner.release_quota(&bg);
            self.inner.hosts.ui.remove(bg.uid);
            bg.finished.update(|f| *f = true);
        }
    }

    /// The storage of `storage_key` was cleared (the user cleared site data,
    /// `Clear-Site-Data: "storage"`, or the bucket was evicted): every registration of it is
    /// treated as unregistered ([`Engine::unregister`]).
    pub async fn clear_storage_key(&self, storage_key: &str) {
        let mut registrations: Vec<ServiceWorkerRegistrationId> = lock(&self.inner.state)
            .fetches
            .values()
            .filter(|f| f.registration.storage_key == storage_key)
            .map(|f| f.registration.clone())
            .collect();
        registrations.sort();
        registrations.dedup();
        for r in registrations {
            self.unregister(&r).await;
        }
    }

    /// Every background fetch the engine knows (active ones first, then settled ones whose UI
    /// may remain), ordered by uid.
    pub fn fetches(&self) -> Vec<FetchInfo> {
        let list: Vec<Arc<BgFetch>> = lock(&self.inner.state).fetches.values().cloned().collect();
        let mut out: Vec<FetchInfo> = list
            .into_iter()
            .map(|bg| FetchInfo {
                uid: bg.uid,
                registration: bg.registration.clone(),
                id: bg.id.clone(),
                active: self.inner.registration(&bg.registration).contains(&bg),
                ui: self.inner.ui_snapshot(&bg),
                embedder_data: bg.embedder_data.clone(),
            })
            .collect();
        out.sort_by_key(|f| f.uid);
        out
    }

    /// Completes once fetch `uid` is over: its settle event finished and its stored records are
    /// dropped from the store (or its registration was unregistered). Returns false at once if
    /// the fetch is unknown. An embedder that shuts down after a fetch settles waits for this
    /// before closing its store.
    pub async fn finished(&self, uid: FetchUid) -> bool {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return false;
        };
        bg.finished.wait_until(|f| *f).await;
        true
    }

    /// Forgets a settled fetch (its UI was dismissed): it can no longer be clicked.
    pub fn forget(&self, uid: FetchUid) {
        let mut st = lock(&self.inner.state);
        if st.fetches.get(&uid).is_some_and(|f| f.is_settled()) {
            st.fetches.remove(&uid);
        }
    }
}

impl EngineInner {
    pub(crate) fn registration(&self, id: &ServiceWorkerRegistrationId) -> Arc<SwRegistration> {
        lock(&self.state)
            .registrations
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(SwRegistration {
                    edit_queue: futures::lock::Mutex::new(()),
                    active: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    pub(crate) fn fetch_by_uid(&self, uid: FetchUid) -> Option<Arc<BgFetch>> {
        lock(&self.state).fetches.get(&uid).cloned()
    }

    pub(crate) fn service_worker_environment(
        self: &Arc<Self>,
        registration: &ServiceWorkerRegistrationId,
    ) -> Environment {
        if let Some(env) = lock(&self.state).sw_environments.get(registration) {
            return env.clone();
        }
        let base = Url::parse(&registration.scope)
            .unwrap_or_else(|_| Url::parse("https://invalid.invalid/").expect("static URL"));
        let engine = Engine {
            inner: self.clone(),
        };
        let env = engine.create_environment(EnvironmentSettings {
            kind: EnvironmentKind::ServiceWorker,
            base_url: base,
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        });
        lock(&self.state)
            .sw_environments
            .entry(registration.clone())
            .or_insert(env)
            .clone()
    }

    pub(crate) fn allocate_uid(&self) -> FetchUid {
        let mut st = lock(&self.state);
        let uid = FetchUid(st.next_uid);
        st.next_uid += 1;
        uid
    }

    pub(crate) fn random(&self) -> f64 {
        let mut st = lock(&self.state);
        // xorshift64*
        let mut x = st.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        st.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn per_fetch_slots(&self, uid: FetchUid) -> Arc<Semaphore> {
        lock(&self.per_fetch_slots)
            .entry(uid)
            .or_insert_with(|| Semaphore::new(self.config.max_parallel_per_fetch.max(1)))
            .clone()
    }

    // ----- quota -----

    /// Makes sure the ledger of `storage_key` knows the store's usage.
    pub(crate) async fn ensure_quota_ledger(&self, storage_key: &str) -> Result<(), StoreError> {
        if lock(&self.state).quota.contains_key(storage_key) {
            return Ok(());
        }
        let usage = self.hosts.store.usage(storage_key).await?;
        lock(&self.state)
            .quota
            .entry(storage_key.to_owned())
            .or_insert_with(|| QuotaLedger {
                usage,
                ..Default::default()
            });
        Ok(())
    }

    /// Charges `n` bytes stored for `uid` to `storage_key`, using the fetch's own reservation
    /// first. Returns false (charging nothing) if that would exceed the quota.
    pub(crate) fn charge_quota(&self, storage_key: &str, uid: FetchUid, n: u64) -> bool {
        let limit = self.hosts.quota.quota(storage_key);
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        let own = ledger.reservations.get(&uid).copied().unwrap_or(0);
        let beyond = n.saturating_sub(own);
        if let Some(limit) = limit
            && ledger
                .usage
                .saturating_add(ledger.reserved())
                .saturating_add(beyond)
                > limit
        {
            return false;
        }
        if own > 0 {
            ledger.reservations.insert(uid, own - n.min(own));
        }
        ledger.usage += n;
        *ledger.stored.entry(uid).or_default() += n;
        true
    }

    /// Gives back `n` bytes of `uid` that are no longer stored (a record restarted).
    pub(crate) fn uncharge_quota(&self, storage_key: &str, uid: FetchUid, n: u64) {
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        ledger.usage = ledger.usage.saturating_sub(n);
        if let Some(s) = ledger.stored.get_mut(&uid) {
            *s = s.saturating_sub(n);
        }
    }

    /// Sets what is left of `uid`'s reservation to `remaining` (a restarted record gave its
    /// bytes back: they are the fetch's again, not the storage key's).
    pub(crate) fn refill_reservation(&self, storage_key: &str, uid: FetchUid, remaining: u64) {
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        if remaining > 0 {
            ledger.reservations.insert(uid, remaining);
        }
    }

    /// Reserves `amount` for `uid`. Returns false if it does not fit.
    ///
    /// AD-HOC: spec issue 110 ("Reject fetch() if downloadTotal cannot be reserved from
    /// quota"), as the README and WPT expect.
    pub(crate) fn reserve_quota(&self, storage_key: &str, uid: FetchUid, amount: u64) -> bool {
        let limit = self.hosts.quota.quota(storage_key);
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        if let Some(limit) = limit
            && ledger
                .usage
                .saturating_add(ledger.reserved())
                .saturating_add(amount)
                > limit
        {
            return false;
        }
        if amount > 0 {
            ledger.reservations.insert(uid, amount);
        }
        true
    }

    /// Releases everything `bg` holds: its reservation and its stored bytes (called when its
    /// data is dropped from the store).
    pub(crate) fn release_quota(&self, bg: &BgFetch) {
        self.release_quota_uid(&bg.registration.storage_key, bg.uid);
    }

    pub(crate) fn release_quota_uid(&self, storage_key: &str, uid: FetchUid) {
        let mut st = lock(&self.state);
        if let Some(ledger) = st.quota.get_mut(storage_key) {
            ledger.reservations.remove(&uid);
            let stored = ledger.stored.remove(&uid).unwrap_or(0);
            ledger.usage = ledger.usage.saturating_sub(stored);
        }
    }

    /// Drops `bg`'s stored records once no body stream reads them any more (at once if none
    /// does), and gives back its quota.
    pub(crate) fn drop_stored_records(self: &Arc<Self>, bg: &Arc<BgFetch>) {
        bg.drop_pending.store(true, Ordering::SeqCst);
        if bg.readers.load(Ordering::SeqCst) == 0 && bg.drop_pending.swap(false, Ordering::SeqCst) {
            self.spawn_record_drop(bg);
        }
    }

    pub(crate) fn spawn_record_drop(self: &Arc<Self>, bg: &Arc<BgFetch>) {
        let engine = self.clone();
        let bg = bg.clone();
        self.hosts.spawner.spawn(
            async move {
                if !bg.flags().silent
                    && let Err(e) = engine.hosts.store.delete_fetch(bg.uid).await
                {
                    tracing::warn!(uid = %bg.uid, error = %e, "could not drop the stored records");
                }
                engine.release_quota(&bg);
                lock(&engine.per_fetch_slots).remove(&bg.uid);
                bg.finished.update(|f| *f = true);
            }
            .boxed(),
        );
    }

    // ----- UI -----

    pub(crate) fn ui_snapshot(&self, bg: &BgFetch) -> UiSnapshot {
        let flags = bg.flags();
        let s = bg.lock();
        UiSnapshot {
            uid: bg.uid,
            origin: bg.registration.origin(),
            id: bg.id.clone(),
            title: s.title.clone(),
            icons: s.icons.clone(),
            download_total: bg.download_total,
            upload_total: bg.upload_total,
            downloaded: s.stored_total,
            uploaded: s.uploaded,
            paused: flags.paused,
            online: self.online.get(),
            awaiting_permission: flags.awaiting_permission,
            can_pause: bg.all_get,
            result: s.result,
            failure_reason: s.failure_reason,
        }
    }

    pub(crate) fn update_ui(&self, bg: &BgFetch) {
        if bg.flags().silent {
            return;
        }
        self.hosts.ui.update(&self.ui_snapshot(bg));
    }

    async fn set_paused(&self, uid: FetchUid, paused: bool) -> bool {
        let Some(bg) = self.fetch_by_uid(uid) else {
            return false;
        };
        if bg.is_settled() || bg.flags().abort_all {
            return false;
        }
        // The display algorithm: "If all records' requests' methods are `GET`, the user
        // agent may provide a way to toggle bgFetch's paused flag."
        if paused && !bg.all_get {
            return false;
        }
        let (changed, flags) = bg.flags.update(|f| {
            let changed = f.paused != paused;
            f.paused = paused;
            if !paused {
                f.awaiting_permission = false;
            }
            (changed, *f)
        });
        if !changed {
            return false;
        }
        self.store_flags(&bg, flags).await;
        self.update_ui(&bg);
        true
    }

    /// Makes `flags` (the paused flag, awaiting permission, the abort all flag) durable, so a
    /// restart restores the fetch as they say.
    pub(crate) async fn store_flags(&self, bg: &BgFetch, flags: Flags) {
        if flags.silent {
            return;
        }
        if let Err(e) = self.hosts.store.set_flags(bg.uid, flags.stored()).await {
            // FIXME: the change holds in this process but a crash would forget it; it should
            //        reach the caller (issue 13: store failures that change what script sees).
            tracing::warn!(uid = %bg.uid, error = %e, "could not store the fetch's flags");
        }
    }

    // ----- update background fetch instances -----

    /// Update background fetch instances, throttled: a change of result or records available
    /// (`force`) is delivered at once, other progress at most once per
    /// [`EngineConfig::progress_interval`].
    ///
    /// <https://wicg.github.io/background-fetch/#update-background-fetch-instances>
    pub(crate) fn update_instances(self: &Arc<Self>, bg: &Arc<BgFetch>, force: bool) {
        let now = self.hosts.clock.now();
        let interval = self.config.progress_interval;
        {
            let mut s = bg.lock();
            if !force
                && let Some(last) = s.last_update
                && now < last + interval
            {
                // AD-HOC: the spec's issue "I need to debounce this similar to how mouse move
                // events debounce": coalesce into one update at the end of the interval.
                if !s.update_scheduled {
                    s.update_scheduled = true;
                    let delay = last + interval - now;
                    let engine = Arc::downgrade(self);
                    let bg = bg.clone();
                    let sleep = self.hosts.clock.sleep(delay);
                    self.hosts.spawner.spawn(
                        async move {
                            sleep.await;
                            if let Some(engine) = engine.upgrade() {
                                bg.lock().update_scheduled = false;
                                engine.update_instances(&bg, true);
                            }
                        }
                        .boxed(),
                    );
                }
                return;
            }
            s.last_update = Some(now);
        }
        self.deliver_update(bg);
    }

    fn deliver_update(&self, bg: &Arc<BgFetch>) {
        // 1. to 5.
        let progress = bg.take_progress();
        // 6. For each environment settings object env whose origin is equal to bgFetch's
        //    service worker registration's scope URL's origin, queue a bgfetch task on env's
        //    responsible event loop to run the following steps:
        let origin = bg.registration.origin();
        let envs: Vec<Arc<EnvInner>> = {
            let mut st = lock(&self.state);
            st.environments.retain(|w| w.strong_count() > 0);
            st.environments.iter().filter_map(Weak::upgrade).collect()
        };
        let mut notify: Vec<InstanceUpdate> = Vec::new();
        for env in envs.iter().filter(|e| e.origin == origin) {
            let manager = lock(&env.managers).get(&bg.registration).cloned();
            let Some(manager) = manager else { continue };
            // 6.1. Let bgFetchRegistration be the instance of BackgroundFetchRegistration
            //      within the relevant realm whose background fetch is equal to bgFetch, or
            //      null if none exists.
            // 6.2. If bgFetchRegistration is null, then abort these steps.
            let Some(instance) = manager.instance_for(bg.uid) else {
                continue;
            };
            // 6.3 to 6.10, on the instance.
            if let Some(update) = instance.apply_update(&progress) {
                notify.push(update);
            }
        }
        self.update_ui(bg);
        // Listeners run after every lock is released (they may call back into the engine).
        for update in notify {
            update.dispatch();
        }
    }

    // ----- recovery -----

    /// Rebuilds a background fetch from the store and resumes it.
    fn restore(self: &Arc<Self>, f: StoredFetch) {
        let StoredFetch {
            meta,
            upload_total,
            flags,
            settled,
            records,
        } = f;
        let mut stored_total = 0;
        let recs: Vec<Record> = meta
            .requests
            .iter()
            .zip(
                records
                    .iter()
                    .cloned()
                    .chain(std::iter::repeat(crate::store::StoredRecord {
                        state: RecordState::Pending,
                        response: None,
                        generation: 0,
                        body_length: 0,
                        request_sent: false,
                    })),
            )
            .enumerate()
            .map(|(index, (request, sr))| {
                let result = match sr.state {
                    RecordState::Completed(r) => r,
                    // AD-HOC: a non-GET record the previous process had sent (or may have) but
                    // not finished fails: sending it again would be the retry complete a record
                    // forbids for non-GET requests ("not reissued"). One that was never sent
                    // (queued, or waiting on the permission prompt) is sent now.
                    _ if !request.is_get() && sr.request_sent => RecordResult::FetchError,
                    _ => RecordResult::Empty,
                };
                stored_total += sr.body_length;
                Record {
                    index,
                    request: request.clone(),
                    response_data: Mutex::new(ResponseData::new(
                        sr.generation,
                        ResponseDataState {
                            response: sr.response,
                            len: sr.body_length,
                            result,
                        },
                    )),
                }
            })
            .collect();
        let uploaded = meta
            .requests
            .iter()
            .zip(&recs)
            .filter(|(_, r)| r.response_data().result() != RecordResult::Empty)
            .map(|(req, _)| req.body_length.unwrap_or(0))
            .sum();
        let (result, failure_reason) = settled.unwrap_or_default();
        let all_get = meta.requests.iter().all(|r| r.is_get());
        let bg = Arc::new(BgFetch {
            uid: meta.uid,
            id: meta.id.clone(),
            registration: meta.registration.clone(),
            download_total: meta.download_total,
            upload_total,
            records: recs,
            client: meta.client.clone(),
            embedder_data: meta.embedder_data.clone(),
            all_get,
            state: Mutex::new(BgFetchMut {
                title: meta.title.clone(),
                icons: meta.icons.clone(),
                uploaded,
                result,
                failure_reason,
                records_available: true,
                stored_total,
                in_flight: 0,
                delivered: Progress {
                    downloaded: stored_total,
                    uploaded,
                    result,
                    failure_reason,
                    records_available: true,
                },
                last_update: None,
                update_scheduled: false,
                immediate_failure: false,
            }),
            flags: Watch::new(Flags::restored(flags)),
            settled: AtomicBool::new(settled.is_some()),
            readers: AtomicUsize::new(0),
            drop_pending: AtomicBool::new(false),
            finished: Watch::new(false),
        });
        {
            let mut st = lock(&self.state);
            st.fetches.insert(bg.uid, bg.clone());
            let ledger = st
                .quota
                .entry(meta.registration.storage_key.clone())
                .or_default();
            let own: u64 = stored_total
                + meta
                    .requests
                    .iter()
                    .map(|r| r.body_length.unwrap_or(0))
                    .sum::<u64>();
            ledger.stored.insert(bg.uid, own);
            if settled.is_none() && bg.download_total > 0 {
                ledger
                    .reservations
                    .insert(bg.uid, bg.download_total.saturating_sub(stored_total));
            }
        }
        tracing::info!(uid = %bg.uid, id = %bg.id, settled = settled.is_some(), "restored a background fetch");
        self.hosts.ui.show(&self.ui_snapshot(&bg));
        let engine = self.clone();
        let uid = bg.uid;
        let work = if settled.is_some() {
            // The previous process settled it but did not finish its event: fire it again
            // (functional events are delivered at least once across crashes).
            async move {
                crate::perform::fire_settle_event(&engine, &bg).await;
            }
            .boxed()
        } else {
            // AD-HOC: a fetch whose abort all flag was set is not active again: abort() took it
            //         out of the map (and the UI's abort ends it the same way); it runs only to
            //         settle as "aborted" and fire backgroundfetchabort.
            if !flags.aborted {
                lock(&self.registration(&meta.registration).active).push((meta.id, bg.clone()));
            }
            crate::perform::perform_background_fetch(engine, bg).boxed()
        };
        if self.config.resume_on_start {
            self.hosts.spawner.spawn(work);
        } else {
            lock(&self.state).deferred.insert(uid, work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        let p = RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.0,
            max_attempts: None,
        };
        let d: Vec<_> = (0..7).map(|n| p.delay(n, 0.5).as_secs()).collect();
        assert_eq!(d, vec![0, 1, 2, 4, 8, 10, 10]);
        let j = RetryPolicy { jitter: 0.5, ..p };
        assert_eq!(j.delay(1, 0.999_999).as_millis(), 500);
        assert_eq!(j.delay(1, 0.0).as_millis(), 1000);
    }
}
