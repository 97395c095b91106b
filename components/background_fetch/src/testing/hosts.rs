//! Recording UI and worker hosts, and settable permission and quota hosts.

use crate::engine::Engine;
use crate::events::{EventObjects, FunctionalEvent};
use crate::hosts::{
    DispatchOutcome, FunctionalEventData, PermissionHost, QuotaHost, StorageFailure, UiHost,
    UiSnapshot, WorkerHost,
};
use crate::model::FunctionalEventKind;
use crate::model::{ClientSnapshot, FetchUid, PermissionState, ServiceWorkerRegistrationId};
use crate::service::{Connection, Service, WorkerBridge, client};
use crate::testing::clock::VirtualClock;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A UI call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UiCall {
    /// `show`
    Show(UiSnapshot),
    /// `update`
    Update(UiSnapshot),
    /// `remove`
    Remove(FetchUid),
    /// `storage_failed`
    StorageFailed(StorageFailure),
}

/// A [`UiHost`] that records every call.
#[derive(Clone, Default)]
pub struct RecordingUi {
    calls: Arc<Mutex<Vec<UiCall>>>,
}

impl RecordingUi {
    /// Every call so far.
    pub fn calls(&self) -> Vec<UiCall> {
        self.calls.lock().unwrap().clone()
    }

    /// The latest snapshot shown for `uid`.
    pub fn last(&self, uid: FetchUid) -> Option<UiSnapshot> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|c| match c {
                UiCall::Show(s) | UiCall::Update(s) if s.uid == uid => Some(s.clone()),
                _ => None,
            })
    }

    /// Whether `remove(uid)` was called.
    pub fn removed(&self, uid: FetchUid) -> bool {
        self.calls.lock().unwrap().contains(&UiCall::Remove(uid))
    }
}

impl UiHost for RecordingUi {
    fn show(&self, ui: &UiSnapshot) {
        self.calls.lock().unwrap().push(UiCall::Show(ui.clone()));
    }
    fn update(&self, ui: &UiSnapshot) {
        self.calls.lock().unwrap().push(UiCall::Update(ui.clone()));
    }
    fn remove(&self, uid: FetchUid) {
        self.calls.lock().unwrap().push(UiCall::Remove(uid));
    }
    fn storage_failed(&self, failure: &StorageFailure) {
        self.calls
            .lock()
            .unwrap()
            .push(UiCall::StorageFailed(failure.clone()));
    }
}

/// A service worker's functional event handler: what its script does with the event it
/// received through its connection, as a future that completes when the event stops being
/// active (its `waitUntil` promises settled).
pub type EventHandler = client::FunctionalEventHandler;

#[derive(Default)]
struct WorkerInner {
    inactive: HashSet<ServiceWorkerRegistrationId>,
    events: Vec<FunctionalEvent>,
    finished: Vec<(FunctionalEventKind, FetchUid)>,
    handler: Option<EventHandler>,
    /// The service (and its bridge) events go through to the service worker's connection.
    service: Option<(Service, WorkerBridge)>,
}

/// A [`WorkerHost`] playing the service worker: every registration has an active worker unless
/// told otherwise; every event the engine dispatches is recorded (as the engine's object, made
/// in this process from the engine it is attached to: [`RecordingWorker::attach`]).
///
/// Once connected to a [`Service`] ([`RecordingWorker::connect`]), events are then fired as
/// data, through the service's [`WorkerBridge`], at the service worker global's connection,
/// whose listener runs the handler set with [`RecordingWorker::set_handler`]. Without a
/// handler an event completes at once.
#[derive(Clone, Default)]
pub struct RecordingWorker {
    inner: Arc<Mutex<WorkerInner>>,
    objects: EventObjects,
}

impl RecordingWorker {
    /// The engine whose events these are (after it started, and after every restart).
    pub fn attach(&self, engine: &Engine) {
        self.objects.attach(engine);
    }

    /// Fires events through `service` (whose bridge is `bridge`) at `connection`, the service
    /// worker global's connection: its listener becomes the handler of
    /// [`RecordingWorker::set_handler`] (the one set now or later).
    pub fn connect(&self, service: &Service, bridge: &WorkerBridge, connection: &Connection) {
        self.inner.lock().unwrap().service = Some((service.clone(), bridge.clone()));
        let inner = self.inner.clone();
        connection.on_functional_event(move |event| {
            let handler = inner.lock().unwrap().handler.clone();
            match handler {
                Some(h) => h(event),
                None => futures::future::ready(DispatchOutcome::Completed).boxed(),
            }
        });
    }

    /// Forgets the engine and its service (before another starts on the same hosts, or when
    /// the test bed goes): events wait for the next [`RecordingWorker::attach`].
    pub fn detach(&self) {
        self.objects.detach();
        self.inner.lock().unwrap().service = None;
    }

    /// Sets whether `registration` has an active worker.
    pub fn set_active(&self, registration: &ServiceWorkerRegistrationId, active: bool) {
        let mut inner = self.inner.lock().unwrap();
        if active {
            inner.inactive.remove(registration);
        } else {
            inner.inactive.insert(registration.clone());
        }
    }

    /// Installs the service worker script's event handler: it receives the events its
    /// connection received ([`RecordingWorker::connect`]).
    pub fn set_handler(
        &self,
        handler: impl Fn(client::FunctionalEvent) -> BoxFuture<'static, DispatchOutcome>
        + Send
        + Sync
        + 'static,
    ) {
        self.inner.lock().unwrap().handler = Some(Arc::new(handler));
    }

    /// Every event the engine dispatched so far, in order (the engine's objects).
    pub fn events(&self) -> Vec<FunctionalEvent> {
        self.inner.lock().unwrap().events.clone()
    }

    /// Events of one kind.
    pub fn events_of(&self, kind: FunctionalEventKind) -> Vec<FunctionalEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.kind() == kind)
            .collect()
    }

    /// Events whose dispatch completed (no longer active), in order.
    pub fn finished(&self) -> Vec<(FunctionalEventKind, FetchUid)> {
        self.inner.lock().unwrap().finished.clone()
    }
}

impl WorkerHost for RecordingWorker {
    fn has_active_worker(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BoxFuture<'static, bool> {
        let active = !self.inner.lock().unwrap().inactive.contains(registration);
        futures::future::ready(active).boxed()
    }

    fn dispatch(&self, event: FunctionalEventData) -> BoxFuture<'static, DispatchOutcome> {
        let object = self.objects.object(&event);
        let inner = self.inner.clone();
        let data = event;
        async move {
            let Some(event) = object.await else {
                return DispatchOutcome::Skipped;
            };
            let service = {
                let mut i = inner.lock().unwrap();
                i.events.push(event.clone());
                i.service.clone()
            };
            let kind = event.kind();
            let uid = event.registration().uid();
            let outcome = match service {
                // As data, through the service, to the service worker global's connection.
                Some((service, bridge)) => bridge.dispatch(&service, data).await,
                None => DispatchOutcome::Completed,
            };
            inner.lock().unwrap().finished.push((kind, uid));
            outcome
        }
        .boxed()
    }
}

/// A [`PermissionHost`] whose answer the test sets; it records the environments it was asked
/// for, and can answer late (as another process would).
#[derive(Clone)]
pub struct TestPermission(Arc<Mutex<PermissionInner>>);

struct PermissionInner {
    state: PermissionState,
    delay: Option<(VirtualClock, Duration)>,
    asked: Vec<ClientSnapshot>,
}

impl Default for TestPermission {
    fn default() -> Self {
        TestPermission(Arc::new(Mutex::new(PermissionInner {
            state: PermissionState::Granted,
            delay: None,
            asked: Vec::new(),
        })))
    }
}

impl TestPermission {
    /// Sets the answer.
    pub fn set(&self, state: PermissionState) {
        self.0.lock().unwrap().state = state;
    }

    /// Answers `delay` of `clock`'s time after being asked.
    pub fn answer_after(&self, clock: &VirtualClock, delay: Duration) {
        self.0.lock().unwrap().delay = Some((clock.clone(), delay));
    }

    /// The environments the engine asked about, in order.
    pub fn asked(&self) -> Vec<ClientSnapshot> {
        self.0.lock().unwrap().asked.clone()
    }
}

impl PermissionHost for TestPermission {
    fn permission_state(
        &self,
        environment: &ClientSnapshot,
    ) -> BoxFuture<'static, PermissionState> {
        let (state, delay) = {
            let mut inner = self.0.lock().unwrap();
            inner.asked.push(environment.clone());
            (inner.state, inner.delay.clone())
        };
        async move {
            if let Some((clock, delay)) = delay {
                crate::hosts::Clock::sleep(&clock, delay).await;
            }
            state
        }
        .boxed()
    }
}

/// A [`QuotaHost`] whose quota the test sets (the same for every storage key); it counts how
/// often it is asked.
#[derive(Clone)]
pub struct TestQuota(Arc<Mutex<(Option<u64>, usize)>>);

impl TestQuota {
    /// A quota of `bytes` (`None` = unlimited).
    pub fn new(bytes: Option<u64>) -> Self {
        TestQuota(Arc::new(Mutex::new((bytes, 0))))
    }

    /// Sets the quota.
    pub fn set(&self, bytes: Option<u64>) {
        self.0.lock().unwrap().0 = bytes;
    }

    /// How many times the engine asked.
    pub fn asked(&self) -> usize {
        self.0.lock().unwrap().1
    }
}

impl QuotaHost for TestQuota {
    fn quota(&self, _storage_key: &str) -> BoxFuture<'static, Option<u64>> {
        let mut inner = self.0.lock().unwrap();
        inner.1 += 1;
        futures::future::ready(inner.0).boxed()
    }
}
