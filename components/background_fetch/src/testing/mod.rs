//! Deterministic hosts for tests, conformance suites and fuzzers (feature `testing`).
//!
//! * [`Executor`] + [`VirtualClock`]: a single-threaded executor that advances virtual time
//!   only when every task is waiting. No test sleeps.
//! * [`ScriptedNetwork`]: resources in memory, Range-aware or not, chunked, delayed, with
//!   faults per attempt (resets, errors, holds, changed validators, unsolicited 206s, ...).
//! * [`RecordingUi`], [`RecordingWorker`]: record what the engine shows and dispatches; the
//!   worker fires the events through the [`service`](crate::service) at a service worker
//!   global's connection, whose handler plays the service worker script.
//! * [`TestBed`]: all of the above wired to an [`Engine`] on a [`MemoryStore`], behind a
//!   [`Service`], with one service worker registration: script reaches the engine only through
//!   the protocol (the in-process transport), from one page and the service worker global.
//! * [`store_contract`]: the [`crate::Store`] contract as tests any store can run.
//! * [`layering`]: a crate's module graph, for tests that keep its layers and find import
//!   circles.

mod clock;
mod executor;
mod hosts;
pub mod layering;
mod network;
pub mod store_contract;

pub use clock::VirtualClock;
pub use executor::Executor;
pub use hosts::{EventHandler, RecordingUi, RecordingWorker, TestPermission, TestQuota, UiCall};
pub use network::{Fault, LoggedRequest, Resource, ScriptedNetwork};

use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::hosts::Hosts;
use crate::hosts::{PolicyHost, SimpleCsp};
use crate::memory_store::MemoryStore;
use crate::model::{PolicyContainer, ServiceWorkerRegistrationId};
use crate::service::protocol::{EnvironmentData, EnvironmentKindData};
use crate::service::{Connection, Service, WorkerBridge, client, in_process};
use crate::store::Store;
use std::future::Future;
use std::sync::{Arc, Mutex};
use url::Url;

/// The origin every [`TestBed`] uses.
pub const ORIGIN: &str = "https://example.com";

/// An engine on deterministic hosts behind a [`Service`], with one service worker registration
/// (scope `https://example.com/`) whose service worker global is connected (its functional
/// event handler is [`RecordingWorker::set_handler`]'s), and one page
/// (`https://example.com/page.html`), connected too: what script does goes through the
/// protocol (the in-process transport), as in a browser whose script runs in other processes.
pub struct TestBed {
    /// The executor every task runs on.
    pub executor: Executor,
    /// Virtual time.
    pub clock: VirtualClock,
    /// The store (kept across [`TestBed::restart`]).
    pub store: MemoryStore,
    /// The network.
    pub network: ScriptedNetwork,
    /// The UI.
    pub ui: RecordingUi,
    /// The service worker side: records what the engine dispatched; its handler runs in the
    /// service worker global's connection.
    pub worker: RecordingWorker,
    /// The permission answer.
    pub permission: TestPermission,
    /// The quota (1 GiB unless changed).
    pub quota: TestQuota,
    /// The registration.
    pub registration: ServiceWorkerRegistrationId,
    /// The engine settings (used again by [`TestBed::restart`]).
    pub config: EngineConfig,
    /// The running engine, its service and connections (`None` only while
    /// [`TestBed::restart`] replaces them).
    running: Mutex<Option<Running>>,
}

/// An engine and what reaches it: the service, the page's connection and the service worker
/// global's.
#[derive(Clone)]
struct Running {
    engine: Engine,
    service: Service,
    page: Connection,
    service_worker: Connection,
}

/// Dropping a test bed drops every task still on its executor (a fetch in flight holds the
/// engine, and the engine holds the executor), so that the engine and its hosts are freed: a
/// fuzzer makes one test bed per input.
impl Drop for TestBed {
    fn drop(&mut self) {
        self.executor.drop_all_tasks();
        // The worker host (held by the engine) holds the service (which holds the engine).
        self.worker.detach();
    }
}

impl Default for TestBed {
    fn default() -> Self {
        Self::new()
    }
}

impl TestBed {
    /// A test bed with the default engine settings.
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    /// A test bed with `config`.
    pub fn with_config(config: EngineConfig) -> Self {
        Self::with_store(config, MemoryStore::new())
    }

    /// A test bed on an existing store.
    pub fn with_store(config: EngineConfig, store: MemoryStore) -> Self {
        let executor = Executor::new();
        let clock = VirtualClock::new();
        let network = ScriptedNetwork::new(clock.clone());
        let ui = RecordingUi::default();
        let worker = RecordingWorker::default();
        let permission = TestPermission::default();
        let quota = TestQuota::new(Some(1 << 30));
        let registration = ServiceWorkerRegistrationId::for_scope(
            &Url::parse(&format!("{ORIGIN}/")).expect("static URL"),
        );
        let hosts = Self::hosts(
            &executor,
            &clock,
            &store,
            &network,
            &ui,
            &worker,
            &permission,
            &quota,
        );
        let engine = executor.block_on(&clock, Engine::start(hosts, config.clone()));
        let engine = engine.expect("the engine starts on a memory store");
        let running = Self::serve(engine, &executor, &worker, &registration);
        TestBed {
            executor,
            clock,
            store,
            network,
            ui,
            worker,
            permission,
            quota,
            registration,
            config,
            running: Mutex::new(Some(running)),
        }
    }

    /// Puts `engine` behind a service, connects the page and the service worker global, and
    /// routes `worker`'s events to the latter.
    fn serve(
        engine: Engine,
        executor: &Executor,
        worker: &RecordingWorker,
        registration: &ServiceWorkerRegistrationId,
    ) -> Running {
        let bridge = WorkerBridge::new();
        let service = Service::new(engine.clone(), bridge.clone());
        let spawner: Arc<dyn crate::hosts::Spawn> = Arc::new(executor.clone());
        let environment =
            |kind, url: &str| EnvironmentData::secure(kind, Url::parse(url).expect("static URL"));
        let service_worker = in_process::connect_unowned(
            &service,
            environment(
                EnvironmentKindData::ServiceWorker(registration.clone()),
                &format!("{ORIGIN}/sw.js"),
            ),
            spawner.clone(),
        );
        let page = in_process::connect_unowned(
            &service,
            environment(EnvironmentKindData::Window, &format!("{ORIGIN}/page.html")),
            spawner,
        );
        worker.connect(&service, &bridge, &service_worker);
        worker.attach(&engine);
        Running {
            engine,
            service,
            page,
            service_worker,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hosts(
        executor: &Executor,
        clock: &VirtualClock,
        store: &MemoryStore,
        network: &ScriptedNetwork,
        ui: &RecordingUi,
        worker: &RecordingWorker,
        permission: &TestPermission,
        quota: &TestQuota,
    ) -> Hosts {
        Hosts {
            store: Arc::new(store.clone()) as Arc<dyn Store>,
            network: Arc::new(network.clone()),
            ui: Arc::new(ui.clone()),
            worker: Arc::new(worker.clone()),
            permission: Arc::new(permission.clone()),
            quota: Arc::new(quota.clone()),
            policy: Arc::new(SimpleCsp) as Arc<dyn PolicyHost>,
            clock: Arc::new(clock.clone()),
            spawner: Arc::new(executor.clone()),
        }
    }

    fn running(&self) -> Running {
        self.running
            .lock()
            .unwrap()
            .clone()
            .expect("the engine is running (not in the middle of a restart)")
    }

    /// The engine (for what the embedder does: the network going offline, what the user
    /// does in the UI, diagnostics).
    pub fn engine(&self) -> Engine {
        self.running().engine
    }

    /// The service in front of the engine.
    pub fn service(&self) -> Service {
        self.running().service
    }

    /// The page's connection (a window environment at `https://example.com/page.html`).
    pub fn page(&self) -> Connection {
        self.running().page
    }

    /// The service worker global's connection (its functional events run the handler of
    /// [`RecordingWorker::set_handler`]).
    pub fn service_worker(&self) -> Connection {
        self.running().service_worker
    }

    /// Connects another window, a document at `url`, to the service (in this process).
    pub fn connect_window(&self, url: &str) -> Connection {
        in_process::connect_unowned(
            &self.service(),
            EnvironmentData {
                kind: EnvironmentKindData::Window,
                base_url: Url::parse(url).expect("an absolute URL"),
                secure_context: true,
                policy: PolicyContainer::default(),
                embedder: None,
            },
            Arc::new(self.executor.clone()),
        )
    }

    /// `registration.backgroundFetch` in the page.
    pub fn manager(&self) -> client::BackgroundFetchManager {
        self.page().background_fetch(&self.registration)
    }

    /// `new Request(url, init)` in the page (relative URLs resolve against the page's URL).
    /// Panics if the Request constructor throws.
    pub fn request(&self, url: &str, init: crate::RequestInit) -> crate::RequestObject {
        crate::construct_request(url.into(), init, &self.page().environment().base_url)
            .expect("the Request constructor accepts it")
    }

    /// `new Request(url, {method, body})` in the page.
    pub fn request_with_body(&self, url: &str, method: &str, body: &str) -> crate::RequestObject {
        self.request(
            url,
            crate::RequestInit {
                method: Some(method.to_owned()),
                body: Some(body.to_owned().into()),
                ..Default::default()
            },
        )
    }

    /// Runs `future` on the executor until it completes, advancing virtual time as needed.
    pub fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        self.executor.block_on(&self.clock, future)
    }

    /// Runs every task until all are waiting with no timer pending.
    pub fn run_until_idle(&self) {
        self.executor.run_until_idle(&self.clock);
    }

    /// Lets `d` of virtual time pass with every task running as it would: timers fire in
    /// order, and tasks run after each.
    pub fn advance(&self, d: std::time::Duration) {
        let target = self.clock.now_duration() + d;
        loop {
            self.executor.run_until_stalled();
            match self.clock.next_deadline() {
                Some(next) if next <= target => {
                    self.clock.advance_to_next_timer();
                }
                _ => break,
            }
        }
        let now = self.clock.now_duration();
        self.clock.advance(target - now);
        self.executor.run_until_stalled();
    }

    /// Inside [`TestBed::run`]: completes once every other task is waiting and no timer is
    /// pending.
    pub fn settle(&self) -> impl Future<Output = ()> + Send + 'static {
        self.executor.idle()
    }

    /// Tells both the engine and the scripted network that the network went on- or offline.
    pub fn set_online(&self, online: bool) {
        self.network.set_offline(!online);
        self.engine().set_online(online);
    }

    /// Simulates a crash and restart: every in-flight task is dropped, the engine, its service
    /// and the connections are dropped, and a new engine starts on the same store (restoring
    /// and resuming what it holds), behind a new service. A new page and a new service worker
    /// global connect; the latter runs the same handler. Connections do not keep their service
    /// alive ([`in_process::connect_unowned`]): objects of the crashed pages reach nothing, and
    /// their calls never settle.
    pub fn restart(&self) {
        self.executor.drop_all_tasks();
        // The crashed process is gone before the new one starts: objects of its pages (and a
        // test's callbacks holding them) can no longer reach the engine or the store.
        drop(self.running.lock().unwrap().take());
        self.worker.detach();
        let hosts = Self::hosts(
            &self.executor,
            &self.clock,
            &self.store,
            &self.network,
            &self.ui,
            &self.worker,
            &self.permission,
            &self.quota,
        );
        let engine = self
            .executor
            .block_on(&self.clock, Engine::start(hosts, self.config.clone()))
            .expect("the engine restarts on a memory store");
        let running = Self::serve(engine, &self.executor, &self.worker, &self.registration);
        *self.running.lock().unwrap() = Some(running);
    }
}
