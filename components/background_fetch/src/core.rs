//! The engine's state and the operations the algorithms share: the background fetches, the
//! per-registration active maps and edit queues, the scheduler's slots, the quota ledger, the
//! UI and update background fetch instances. It knows nothing of the script-side objects: it
//! reaches them through [`InstanceSink`].
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::config::EngineConfig;
use crate::hosts::{Hosts, StorageFailure, StoredChange, UiSnapshot};
use crate::model::{EventToken, FetchUid, ServiceWorkerRegistrationId};
use crate::operation::OperationError;
use crate::state::{ActiveEvent, BgFetch, Flags, Progress};
use crate::store::StoreError;
use crate::sync::{Semaphore, Watch, lock};
use futures::FutureExt;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

/// An environment (a realm with script) as update background fetch instances sees it.
pub(crate) trait InstanceSink: Send + Sync {
    /// The environment's origin, serialised.
    fn origin(&self) -> &str;
    /// Steps 6.1 to 6.10 of update background fetch instances in this environment: applies
    /// `progress` to its instance of `bg`, if it has one, and returns what to announce (the
    /// `progress` event) once every lock is released.
    fn deliver(&self, bg: &Arc<BgFetch>, progress: &Progress) -> Option<Box<dyn FnOnce() + Send>>;
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

pub(crate) struct EngineState {
    pub registrations: HashMap<ServiceWorkerRegistrationId, Arc<SwRegistration>>,
    /// Every background fetch the engine knows, settled ones included (their UI can still be
    /// clicked).
    pub fetches: HashMap<FetchUid, Arc<BgFetch>>,
    /// The environments whose instances update background fetch instances reaches.
    pub environments: Vec<Weak<dyn InstanceSink>>,
    /// The service worker globals' environments (script-side objects, kept opaque here: the
    /// algorithms do not depend on the script side).
    pub sw_environments: HashMap<ServiceWorkerRegistrationId, Arc<dyn Any + Send + Sync>>,
    pub next_uid: u64,
    /// Restored work not started yet (`resume_on_start` false).
    pub deferred: HashMap<FetchUid, futures::future::BoxFuture<'static, ()>>,
    pub quota: HashMap<String, QuotaLedger>,
    pub rng: u64,
}

pub(crate) struct EngineInner {
    pub hosts: Hosts,
    pub config: EngineConfig,
    pub state: Mutex<EngineState>,
    /// Whether the network is online (the host reports it through
    /// [`crate::Engine::set_online`]).
    pub online: Watch<bool>,
    pub global_slots: Arc<Semaphore>,
    pub per_fetch_slots: Mutex<HashMap<FetchUid, Arc<Semaphore>>>,
    /// The functional events fired and still active, by token.
    pub events: Mutex<ActiveEvents>,
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

    pub(crate) async fn set_paused(
        &self,
        uid: FetchUid,
        paused: bool,
    ) -> Result<(), OperationError> {
        let Some(bg) = self.fetch_by_uid(uid) else {
            return Err(OperationError::UnknownFetch);
        };
        if bg.is_settled() || bg.flags().abort_all {
            return Err(OperationError::Settled);
        }
        // The display algorithm: "If all records' requests' methods are `GET`, the user
        // agent may provide a way to toggle bgFetch's paused flag."
        if paused && !bg.all_get {
            return Err(OperationError::NotOffered);
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
            return Err(if paused {
                OperationError::AlreadyPaused
            } else {
                OperationError::NotPaused
            });
        }
        let stored = self.store_flags(&bg, flags).await;
        self.update_ui(&bg);
        stored.map_err(OperationError::NotDurable)
    }

    /// Makes `flags` (the paused flag, awaiting permission, the abort all flag) durable, so a
    /// restart restores the fetch as they say. A refusal is reported to the UI host (the
    /// change holds in this process only) and returned.
    pub(crate) async fn store_flags(&self, bg: &BgFetch, flags: Flags) -> Result<(), StoreError> {
        if flags.silent {
            return Ok(());
        }
        let stored = self.hosts.store.set_flags(bg.uid, flags.stored()).await;
        if let Err(e) = &stored {
            tracing::warn!(uid = %bg.uid, error = %e, "could not store the fetch's flags");
            self.storage_failed(bg.uid, StoredChange::Flags, e);
        }
        stored
    }

    /// The store refused `change` of fetch `uid`: the UI hears of it.
    pub(crate) fn storage_failed(&self, uid: FetchUid, change: StoredChange, error: &StoreError) {
        self.hosts.ui.storage_failed(&StorageFailure {
            uid,
            change,
            error: error.clone(),
        });
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
        let envs: Vec<Arc<dyn InstanceSink>> = {
            let mut st = lock(&self.state);
            st.environments.retain(|w| w.strong_count() > 0);
            st.environments.iter().filter_map(Weak::upgrade).collect()
        };
        let mut notify = Vec::new();
        for env in envs.iter().filter(|e| e.origin() == origin) {
            // 6.1 to 6.10, in the environment (see `InstanceSink::deliver`).
            if let Some(update) = env.deliver(bg, &progress) {
                notify.push(update);
            }
        }
        self.update_ui(bg);
        // Listeners run after every lock is released (they may call back into the engine).
        for update in notify {
            update();
        }
    }
}

/// Per storage key: bytes stored and bytes reserved by running fetches' `downloadTotal`.
#[derive(Default)]
pub(crate) struct QuotaLedger {
    /// The quota host's latest answer (`None`: unlimited), asked when a fetch is made and when
    /// one starts downloading ([`EngineInner::refresh_quota`]), not for every chunk.
    pub limit: Option<u64>,
    pub usage: u64,
    /// Remaining reservation per fetch: its downloadTotal minus what it has stored since.
    pub reservations: HashMap<FetchUid, u64>,
    /// Bytes stored per fetch (released when the fetch's data is dropped).
    pub stored: HashMap<FetchUid, u64>,
}

impl QuotaLedger {
    pub(crate) fn reserved(&self) -> u64 {
        self.reservations.values().sum()
    }
}

/// The functional events the engine fired and that are still active.
#[derive(Default)]
pub(crate) struct ActiveEvents {
    pub active: HashMap<EventToken, ActiveEvent>,
    pub next: u64,
}
