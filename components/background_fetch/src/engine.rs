//! The engine: the handle an embedder holds. It starts the engine on its hosts (recovering
//! what the store holds), makes the environments script runs in, and takes what the user, the
//! network and the service worker system report. The state and the algorithms are in
//! `core`, `perform`, `functional`, `quota` and `recovery`.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::config::EngineConfig;
use crate::core::QuotaLedger;
use crate::core::{EngineInner, EngineState, InstanceSink};
use crate::hosts::{Hosts, UiSnapshot};
use crate::manager::{EnvInner, Environment, EnvironmentKind, EnvironmentSettings};
use crate::model::{FetchUid, FunctionalEventKind, PolicyContainer, ServiceWorkerRegistrationId};
use crate::operation::OperationError;
use crate::state::{BgFetch, Flags};
use crate::store::StoreError;
use crate::sync::{Semaphore, Watch, lock};
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use url::Url;

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
        let sink: Arc<dyn InstanceSink> = env.inner.clone();
        st.environments.push(Arc::downgrade(&sink));
        env
    }

    /// The service worker global of `registration` now runs with `settings` (its script's URL
    /// as base URL, its policy container, the embedder's data): its environment replaces the
    /// one kept for the registration, so functional events are created in it and its calls use
    /// it. Objects of the previous environment stay valid. `settings.kind` is taken as
    /// [`EnvironmentKind::ServiceWorker`].
    pub fn set_service_worker_environment(
        &self,
        registration: &ServiceWorkerRegistrationId,
        settings: EnvironmentSettings,
    ) -> Environment {
        let env = self.create_environment(EnvironmentSettings {
            kind: EnvironmentKind::ServiceWorker,
            ..settings
        });
        lock(&self.inner.state)
            .sw_environments
            .insert(registration.clone(), env.inner.clone());
        env
    }

    /// The service worker global's environment of `registration`: the realm in which
    /// functional events are created. The engine keeps it alive. Until the embedder says what
    /// it is ([`Engine::set_service_worker_environment`]), one at the scope's URL with no
    /// policy.
    pub fn service_worker_environment(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> Environment {
        let cached = lock(&self.inner.state)
            .sw_environments
            .get(registration)
            .cloned()
            .and_then(|env| env.downcast::<EnvInner>().ok());
        if let Some(inner) = cached {
            return Environment { inner };
        }
        let base = Url::parse(&registration.scope)
            .unwrap_or_else(|_| Url::parse("https://invalid.invalid/").expect("static URL"));
        let env = self.create_environment(EnvironmentSettings {
            kind: EnvironmentKind::ServiceWorker,
            base_url: base,
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        });
        let kept = lock(&self.inner.state)
            .sw_environments
            .entry(registration.clone())
            .or_insert(env.inner)
            .clone();
        Environment {
            inner: kept.downcast::<EnvInner>().expect("an environment"),
        }
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
    /// display algorithm): [`OperationError::NotOffered`] (and nothing done) otherwise.
    pub async fn pause(&self, uid: FetchUid) -> Result<(), OperationError> {
        self.inner.set_paused(uid, true).await
    }

    /// The user resumed the fetch from the UI ([`OperationError::NotPaused`] if it was not).
    pub async fn resume(&self, uid: FetchUid) -> Result<(), OperationError> {
        self.inner.set_paused(uid, false).await
    }

    /// The user aborted the fetch from the UI: sets its abort all flag.
    /// [`OperationError::Settled`] once it has settled (or was aborted already).
    pub async fn user_abort(&self, uid: FetchUid) -> Result<(), OperationError> {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return Err(OperationError::UnknownFetch);
        };
        if bg.is_settled() || bg.flags().abort_all {
            return Err(OperationError::Settled);
        }
        // AD-HOC: the abort is durable before it is acknowledged, so that a crash cannot bring
        //         the fetch back to download (and succeed) after the user aborted it.
        let flags = Flags {
            abort_all: true,
            ..bg.flags()
        };
        let stored = self.inner.store_flags(&bg, flags).await;
        bg.flags.update(|f| f.abort_all = true);
        stored.map_err(OperationError::NotDurable)
    }

    /// The user activated the fetch's UI: fires `backgroundfetchclick`. Completes when the
    /// event is no longer active.
    ///
    /// <https://wicg.github.io/background-fetch/#fire-a-background-fetch-click-event>
    pub async fn click(&self, uid: FetchUid) -> Result<(), OperationError> {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return Err(OperationError::UnknownFetch);
        };
        // Fire a functional event named "backgroundfetchclick" using BackgroundFetchEvent on
        // bgFetch's service worker registration with the following properties:
        //   registration: The result of getting a BackgroundFetchRegistration instance for
        //   bgFetch in the event object's relevant Realm.
        crate::functional::fire(&self.inner, &bg, FunctionalEventKind::Click).await;
        Ok(())
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
                // The fetch was found above; forgotten since, it has nothing to click.
                let _ = engine.click(bg.uid).await;
            }
            .boxed(),
        );
        // 8. Return WebDriver success.
        Ok(())
    }

    /// The user answered the permission prompt of a fetch that started paused because the
    /// permission was `"prompt"`: accepting unsets the paused flag; refusing sets the abort
    /// all flag. [`OperationError::NotAwaitingPermission`] if the fetch was not waiting for
    /// an answer.
    pub async fn permission_decision(
        &self,
        uid: FetchUid,
        accept: bool,
    ) -> Result<(), OperationError> {
        let Some(bg) = self.inner.fetch_by_uid(uid) else {
            return Err(OperationError::UnknownFetch);
        };
        if bg.is_settled() {
            return Err(OperationError::Settled);
        }
        if !bg.flags().awaiting_permission {
            return Err(OperationError::NotAwaitingPermission);
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
        let stored = self.inner.store_flags(&bg, flags).await;
        bg.flags.update(answer);
        self.inner.update_ui(&bg);
        stored.map_err(OperationError::NotDurable)
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
