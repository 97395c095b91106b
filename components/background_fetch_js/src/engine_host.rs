//! The browser side of the runner: one engine on deterministic hosts (memory store, the
//! loopback network behind the CORS protocol, a virtual clock, the protocol's
//! [`Service`] with its worker bridge), and the script side's connections, one per environment
//! (the page, each service worker global).
//!
//! Everything here is `Send`: engine futures run on the engine's [`Executor`]; what they
//! produce for script is queued as an [`Inbound`] message for the event loop (which owns the
//! JavaScript side and is not `Send`).

use crate::network::{AppNetwork, Latency, LoopbackNetwork, PageNetwork};
use background_fetch::service::client::{
    BackgroundFetchRecord, BackgroundFetchRegistration, FunctionalEvent, Response,
};
use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{Connection, Service, ServiceWorkerHost, WorkerBridge};
use background_fetch::testing::{Executor, RecordingUi, TestPermission, TestQuota, VirtualClock};
use background_fetch::{
    DispatchOutcome, DomError, Engine, EngineConfig, Hosts, MemoryStore, PermissionState,
    PolicyContainer, ServiceWorkerRegistrationId, SimpleCsp,
};
use background_fetch_wpt::cors::CorsNetwork;
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use url::Url;

/// The quota of the test origin's storage key (generous, like a desktop browser's).
pub const QUOTA: u64 = 10 << 30;

/// The round trip of the runner's network (see [`Latency`]).
pub const NETWORK_LATENCY: std::time::Duration = std::time::Duration::from_millis(10);

/// Names an environment of the event loop: 0 is the page, then one per service worker global.
pub type EnvId = u32;

/// What the browser side hands to the event loop.
pub enum Inbound {
    /// An operation finished: settle its promise.
    Settle {
        /// The operation.
        op: u64,
        /// Its value (JSON), bytes that go with it, or the exception.
        result: Result<(serde_json::Value, Option<Vec<u8>>), DomError>,
    },
    /// Deliver a message to an environment's host callback.
    Notify {
        /// The environment.
        env: EnvId,
        /// The message.
        message: serde_json::Value,
    },
}

/// A response body being read chunk by chunk (one read at a time).
pub type SharedBody = Arc<futures::lock::Mutex<BoxStream<'static, Result<bytes::Bytes, DomError>>>>;

/// The Rust objects script holds by number: registration, record and response clients, and
/// functional events in dispatch.
#[derive(Default)]
pub struct Handles {
    next: u64,
    /// Registrations by (environment, fetch uid).
    pub registrations: HashMap<(EnvId, String), BackgroundFetchRegistration>,
    /// Record objects.
    pub records: HashMap<u64, BackgroundFetchRecord>,
    /// Responses (a body not read yet).
    pub responses: HashMap<u64, Response>,
    /// Response bodies being read chunk by chunk.
    pub streams: HashMap<u64, SharedBody>,
    /// Functional events being dispatched, with the sender that ends their dispatch.
    pub events: HashMap<u64, (FunctionalEvent, Option<oneshot::Sender<DispatchOutcome>>)>,
}

impl Handles {
    /// A fresh number.
    pub fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// The browser side. Cloning gives another handle to the same one.
#[derive(Clone)]
pub struct BrowserSide {
    /// The engine's executor.
    pub executor: Executor,
    /// The engine's clock (virtual; the event loop keeps it in step with real time while a
    /// socket transfer is in flight).
    pub clock: VirtualClock,
    /// The engine.
    pub engine: Engine,
    /// The protocol service.
    pub service: Service,
    /// Whether registrations have an active worker.
    pub bridge: WorkerBridge,
    /// The permission host (`test_driver.set_permission`).
    pub permission: TestPermission,
    /// The UI host (what the user would see).
    pub ui: RecordingUi,
    /// The network (scripts, the page's `fetch()`; the engine's too).
    pub network: Arc<dyn PageNetwork>,
    /// The background-fetch events dispatched to service workers, in order (`type id`).
    pub events: Arc<Mutex<Vec<String>>>,
    /// Messages for the event loop.
    pub inbound: Arc<Mutex<VecDeque<Inbound>>>,
    /// Objects held by number.
    pub handles: Arc<Mutex<Handles>>,
    /// The connection of each environment.
    pub connections: Arc<Mutex<HashMap<EnvId, Connection>>>,
}

impl BrowserSide {
    /// Starts an engine on `network` and an in-memory store.
    pub fn start(network: LoopbackNetwork) -> BrowserSide {
        Self::start_with_store(network, Arc::new(MemoryStore::new()))
    }

    /// Starts an engine on `network` and `store` (the fetches it holds are restored and
    /// resumed).
    pub fn start_with_store(
        network: LoopbackNetwork,
        store: Arc<dyn background_fetch::Store>,
    ) -> BrowserSide {
        let clock = VirtualClock::new();
        let engine_network = Arc::new(Latency::new(
            Arc::new(CorsNetwork::new(Arc::new(network.clone()))),
            Arc::new(clock.clone()),
            NETWORK_LATENCY,
        ));
        Self::start_on(Arc::new(network), engine_network, store, clock)
    }

    /// Starts an engine for an app: on `network` (which runs the CORS protocol itself) and
    /// `store`.
    pub fn start_app(network: AppNetwork, store: Arc<dyn background_fetch::Store>) -> BrowserSide {
        let network = Arc::new(network);
        Self::start_on(network.clone(), network, store, VirtualClock::new())
    }

    fn start_on(
        network: Arc<dyn PageNetwork>,
        engine_network: Arc<dyn background_fetch::NetworkHost>,
        store: Arc<dyn background_fetch::Store>,
        clock: VirtualClock,
    ) -> BrowserSide {
        let executor = Executor::new();
        let bridge = WorkerBridge::new();
        let worker_host = ServiceWorkerHost::new(bridge.clone());
        let permission = TestPermission::default();
        // The browser's default answer; backgroundFetchTest grants it through test_driver.
        permission.set(PermissionState::Prompt);
        let ui = RecordingUi::default();
        let hosts = Hosts {
            store,
            network: engine_network,
            ui: Arc::new(ui.clone()),
            worker: Arc::new(worker_host.clone()),
            permission: Arc::new(permission.clone()),
            quota: Arc::new(TestQuota::new(Some(QUOTA))),
            policy: Arc::new(SimpleCsp),
            clock: Arc::new(clock.clone()),
            spawner: Arc::new(executor.clone()),
        };
        // The restored fetches wait for a service worker to fire their events at (see
        // `native.settings('active')`).
        let config = EngineConfig {
            resume_on_start: false,
            ..EngineConfig::default()
        };
        let engine = run_to_completion(&executor, &clock, Engine::start(hosts, config))
            .expect("the engine starts on its store");
        let service = Service::new(engine.clone(), bridge.clone());
        worker_host.serve(&service);
        BrowserSide {
            executor,
            clock,
            engine,
            service,
            bridge,
            permission,
            ui,
            network,
            events: Arc::default(),
            inbound: Arc::default(),
            handles: Arc::default(),
            connections: Arc::default(),
        }
    }

    /// Queues a message for the event loop.
    pub fn push(&self, message: Inbound) {
        self.inbound.lock().unwrap().push_back(message);
    }

    /// Runs `future` on the engine's executor and settles operation `op` with its result.
    pub fn settle_with(
        &self,
        op: u64,
        future: impl Future<Output = Result<(serde_json::Value, Option<Vec<u8>>), DomError>>
        + Send
        + 'static,
    ) {
        let inbound = self.inbound.clone();
        self.executor.spawn_boxed(
            async move {
                let result = future.await;
                inbound
                    .lock()
                    .unwrap()
                    .push_back(Inbound::Settle { op, result });
            }
            .boxed(),
        );
    }

    /// The connection of environment `env`, opened for the page with `policy` if it has none.
    pub fn page_connection(&self, env: EnvId, base_url: &Url, csp: Vec<String>) -> Connection {
        if let Some(c) = self.connections.lock().unwrap().get(&env) {
            return c.clone();
        }
        let conn = background_fetch::service::in_process::connect(
            &self.service,
            EnvironmentData {
                kind: EnvironmentKindData::Window,
                base_url: base_url.clone(),
                secure_context: true,
                policy: PolicyContainer {
                    csp,
                    referrer_policy: String::new(),
                    csp_report_only: Vec::new(),
                },
                embedder: None,
            },
            Arc::new(self.executor.clone()),
        );
        self.connections.lock().unwrap().insert(env, conn.clone());
        conn
    }

    /// Opens the connection of service worker global `env` of `registration`, whose
    /// functional events become [`Inbound::Notify`] messages `{type: 'functionalevent'}`.
    pub fn worker_connection(
        &self,
        env: EnvId,
        script_url: &Url,
        registration: &ServiceWorkerRegistrationId,
    ) -> Connection {
        let conn = background_fetch::service::in_process::connect(
            &self.service,
            EnvironmentData {
                kind: EnvironmentKindData::ServiceWorker(registration.clone()),
                base_url: script_url.clone(),
                secure_context: true,
                policy: PolicyContainer::default(),
                embedder: None,
            },
            Arc::new(self.executor.clone()),
        );
        let inbound = self.inbound.clone();
        let handles = self.handles.clone();
        let events = self.events.clone();
        conn.on_functional_event(
            move |event: FunctionalEvent| -> BoxFuture<'static, DispatchOutcome> {
                let (tx, rx) = oneshot::channel();
                let registration = event.registration().clone();
                let data = registration.data();
                let uid = format!("{:?}", data.uid);
                events
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", event.event_type(), data.id));
                let handle = {
                    let mut h = handles.lock().unwrap();
                    let n = h.fresh();
                    h.registrations.insert((env, uid.clone()), registration);
                    h.events.insert(n, (event.clone(), Some(tx)));
                    n
                };
                inbound.lock().unwrap().push_back(Inbound::Notify {
                    env,
                    message: serde_json::json!({
                        "type": "functionalevent",
                        "event": handle,
                        "eventType": event.event_type(),
                        "registration": registration_json(&uid, &data),
                    }),
                });
                async move {
                    rx.await
                        .unwrap_or_else(|_| DispatchOutcome::Failed("the event was dropped".into()))
                }
                .boxed()
            },
        );
        self.connections.lock().unwrap().insert(env, conn.clone());
        conn
    }

    /// Keeps `registration` as environment `env`'s object for its fetch, forwarding its
    /// `progress` events; returns its JSON.
    pub fn keep_registration(
        &self,
        env: EnvId,
        registration: BackgroundFetchRegistration,
    ) -> serde_json::Value {
        let data = registration.data();
        let uid = format!("{:?}", data.uid);
        let mut handles = self.handles.lock().unwrap();
        if let std::collections::hash_map::Entry::Vacant(slot) =
            handles.registrations.entry((env, uid.clone()))
        {
            let inbound = self.inbound.clone();
            let uid2 = uid.clone();
            registration.on_progress(move |r: &BackgroundFetchRegistration| {
                inbound.lock().unwrap().push_back(Inbound::Notify {
                    env,
                    message: serde_json::json!({
                        "type": "progress",
                        "registration": registration_json(&uid2, &r.data()),
                    }),
                });
            });
            slot.insert(registration);
        }
        registration_json(&uid, &data)
    }
}

/// Runs `future` on `executor` until it finishes: the clock jumps to the next timer when every
/// task waits, and when none is pending the thread waits a little for work outside the
/// executor (a store's threads) to wake a task.
pub(crate) fn run_to_completion<T: Send + 'static>(
    executor: &Executor,
    clock: &VirtualClock,
    future: impl Future<Output = T> + Send + 'static,
) -> T {
    let slot: Arc<Mutex<Option<T>>> = Arc::default();
    let out = slot.clone();
    executor.spawn_boxed(
        async move {
            let v = future.await;
            *out.lock().unwrap() = Some(v);
        }
        .boxed(),
    );
    let started = std::time::Instant::now();
    loop {
        executor.run_until_stalled();
        if let Some(v) = slot.lock().unwrap().take() {
            return v;
        }
        if !clock.advance_to_next_timer() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the engine did not start within a minute"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// A registration's values as script sees them.
pub fn registration_json(
    uid: &str,
    data: &background_fetch::service::protocol::RegistrationData,
) -> serde_json::Value {
    serde_json::json!({
        "uid": uid,
        "id": data.id,
        "uploadTotal": data.upload_total as f64,
        "uploaded": data.uploaded as f64,
        "downloadTotal": data.download_total as f64,
        "downloaded": data.downloaded as f64,
        "result": data.result.as_str(),
        "failureReason": data.failure_reason.as_str(),
        "recordsAvailable": data.records_available,
    })
}
