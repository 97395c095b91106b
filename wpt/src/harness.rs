//! The page a subtest runs in, and the helpers of `resources/utils.js`,
//! `test-helpers.sub.js` and `get-host-info.sub.js`.
//!
//! Every subtest gets a fresh [`Test`]: a new engine on deterministic hosts (in-memory store,
//! the loopback [`WptServer`] behind [`CorsNetwork`], permission, quota and CSP hosts, a virtual
//! clock) run as a [`Service`], and script reaching it only through the service protocol, as a
//! browser's content processes would: the upstream test page is a window connection (for
//! example
//! `https://web-platform.test/background-fetch/fetch.https.window.html`), and each registered
//! service worker script is a service worker connection whose functional events arrive as
//! protocol messages (through the service's [`WorkerBridge`]). Upstream, every
//! `backgroundFetchTest` registers a fresh service worker registration at the same scope; a
//! fresh engine per subtest gives the same isolation (ids like `'my-id'` can repeat, and no
//! message from an earlier subtest can leak into [`Test::get_message_from_service_worker`]).

use crate::cors::CorsNetwork;
use crate::server::{HTTPS_REMOTE_ORIGIN, ORIGIN, REMOTE_HOST, Timing, WptServer};
use crate::service_workers::{Message, Script, ServiceWorkerGlobal};
use background_fetch::service::client::BackgroundFetchManager;
use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{Connection, Service, ServiceWorkerHost, WorkerBridge, in_process};
use background_fetch::testing::{
    Executor, RecordingUi, Resource, ScriptedNetwork, TestPermission, TestQuota, VirtualClock,
};
use background_fetch::{
    Clock, Engine, EngineConfig, Hosts, MemoryStore, PermissionState, PolicyContainer, RequestInfo,
    RequestInit, RequestObject, ServiceWorkerRegistrationId, SimpleCsp, Spawn, construct_request,
};
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// The quota of the test origin's storage key (generous, like a desktop browser's).
pub const QUOTA: u64 = 10 << 30;

/// How the page of an upstream file is set up before its subtests run.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageSetup {
    /// Content Security Policies the page has (a `<meta http-equiv>` added when the file
    /// loads, as `content-security-policy.https.window.js` does).
    pub csp: &'static [&'static str],
}

impl PageSetup {
    /// A page with no CSP.
    pub const DEFAULT: PageSetup = PageSetup { csp: &[] };
}

/// `get_host_info()` of `/common/get-host-info.sub.js` (the fields the tests use).
#[derive(Clone, Copy, Debug)]
pub struct HostInfo {
    /// `REMOTE_HOST`
    pub remote_host: &'static str,
    /// `HTTPS_REMOTE_ORIGIN`
    pub https_remote_origin: &'static str,
}

/// `get_host_info()`.
pub fn get_host_info() -> HostInfo {
    HostInfo {
        remote_host: REMOTE_HOST,
        https_remote_origin: HTTPS_REMOTE_ORIGIN,
    }
}

/// `registration.active`: the active service worker, to `postMessage` to.
#[derive(Clone)]
pub struct ServiceWorker {
    global: Arc<ServiceWorkerGlobal>,
}

impl ServiceWorker {
    /// The script it runs.
    pub fn script(&self) -> Script {
        self.global.script()
    }
}

/// A `ServiceWorkerRegistration` as the page sees it.
#[derive(Clone)]
pub struct ServiceWorkerRegistration {
    /// Which registration (its scope).
    pub id: ServiceWorkerRegistrationId,
    /// `registration.active` (`None` is `null`: installing, not yet activated).
    pub active: Option<ServiceWorker>,
    /// `registration.backgroundFetch`, a client of the page's connection.
    pub background_fetch: BackgroundFetchManager,
}

struct TestInner {
    file: &'static str,
    executor: Executor,
    clock: VirtualClock,
    service: Service,
    /// Tells the service which registrations have an active worker (the service worker
    /// system's push).
    bridge: WorkerBridge,
    /// The page's connection to the service.
    page: Connection,
    /// The connections of the service worker globals started so far (a global lives as long
    /// as its connection).
    workers: Mutex<Vec<Connection>>,
    page_url: Url,
    server: WptServer,
    permission: TestPermission,
    quota: TestQuota,
    /// The page's `navigator.serviceWorker` message queue.
    document_port: mpsc::UnboundedSender<Message>,
    messages: futures::lock::Mutex<mpsc::UnboundedReceiver<Message>>,
    next_id: AtomicUsize,
    cleanups: Mutex<Vec<BoxFuture<'static, ()>>>,
    /// Registered workers that have not activated yet.
    installing: Mutex<Vec<(ServiceWorkerRegistrationId, Arc<ServiceWorkerGlobal>)>>,
}

/// The page of one subtest (`t` upstream), with its engine and hosts. Cloning gives another
/// handle to the same page.
#[derive(Clone)]
pub struct Test {
    inner: Arc<TestInner>,
}

impl Test {
    /// A fresh page for `file` (an upstream file name such as `fetch.https.window.js`).
    pub fn new(file: &'static str, setup: PageSetup) -> Test {
        let executor = Executor::new();
        let clock = VirtualClock::new();
        let server = WptServer::new(ScriptedNetwork::new(clock.clone()));
        server.set_timing(Timing::from_env());
        let stem = file.strip_suffix(".js").unwrap_or(file);
        let page_path = format!("/background-fetch/{stem}.html");
        server.add_file(
            &page_path,
            Resource::ok(format!("<!doctype html><title>{file}</title>").into_bytes())
                .header("Content-Type", "text/html"),
        );
        let page_url = Url::parse(&format!("{ORIGIN}{page_path}")).expect("static URL");
        let bridge = WorkerBridge::new();
        let worker = ServiceWorkerHost::new(bridge.clone());
        let permission = TestPermission::default();
        // The browser's default answer; backgroundFetchTest grants it through test_driver.
        permission.set(PermissionState::Prompt);
        let quota = TestQuota::new(Some(QUOTA));
        let hosts = Hosts {
            store: Arc::new(MemoryStore::new()),
            network: Arc::new(CorsNetwork::new(Arc::new(server.clone()))),
            ui: Arc::new(RecordingUi::default()),
            worker: Arc::new(worker.clone()),
            permission: Arc::new(permission.clone()),
            quota: Arc::new(quota.clone()),
            policy: Arc::new(SimpleCsp),
            clock: Arc::new(clock.clone()),
            spawner: Arc::new(executor.clone()),
        };
        let engine = executor
            .block_on(&clock, Engine::start(hosts, EngineConfig::default()))
            .expect("the engine starts on a memory store");
        let service = Service::new(engine, bridge.clone());
        worker.serve(&service);
        let page = in_process::connect(
            &service,
            EnvironmentData {
                kind: EnvironmentKindData::Window,
                base_url: page_url.clone(),
                secure_context: true,
                policy: PolicyContainer {
                    csp: setup.csp.iter().map(|s| (*s).to_owned()).collect(),
                    referrer_policy: String::new(),
                    csp_report_only: Vec::new(),
                },
                embedder: None,
            },
            Arc::new(executor.clone()),
        );
        let (document_port, messages) = mpsc::unbounded();
        Test {
            inner: Arc::new(TestInner {
                file,
                executor,
                clock,
                service,
                bridge,
                page,
                workers: Mutex::new(Vec::new()),
                page_url,
                server,
                permission,
                quota,
                document_port,
                messages: futures::lock::Mutex::new(messages),
                next_id: AtomicUsize::new(0),
                cleanups: Mutex::new(Vec::new()),
                installing: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `body` (a subtest) to completion on virtual time, then its cleanups. Panics, like a
    /// failed assertion, if it cannot finish (every task waits and no timer is pending: the
    /// equivalent of an upstream timeout).
    pub fn run(&self, body: impl Future<Output = ()> + Send + 'static) {
        let this = self.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.inner.executor.block_on(&self.inner.clock, async move {
                body.await;
                let cleanups: Vec<_> = this.inner.cleanups.lock().unwrap().drain(..).collect();
                for c in cleanups {
                    c.await;
                }
            })
        }));
        // Background tasks hold handles to the page; dropping them breaks the cycles.
        self.inner.executor.drop_all_tasks();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// The upstream file this page belongs to.
    pub fn file(&self) -> &'static str {
        self.inner.file
    }

    /// `location.href`
    pub fn location(&self) -> &Url {
        &self.inner.page_url
    }

    /// `location.origin`
    pub fn location_origin(&self) -> String {
        self.inner.page_url.origin().ascii_serialization()
    }

    /// The engine (behind the service).
    pub fn engine(&self) -> &Engine {
        self.inner.service.engine()
    }

    /// The page's connection to the service.
    pub fn page(&self) -> &Connection {
        &self.inner.page
    }

    /// The loopback WPT server.
    pub fn server(&self) -> &WptServer {
        &self.inner.server
    }

    /// The quota host (to change the storage key's quota).
    pub fn quota(&self) -> &TestQuota {
        &self.inner.quota
    }

    /// Runs `future` in a task of its own (an event listener's async work).
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.inner.executor.spawn_boxed(future.boxed());
    }

    /// `test.add_cleanup(f)`: runs after the subtest's body.
    pub fn add_cleanup(&self, cleanup: impl Future<Output = ()> + Send + 'static) {
        self.inner.cleanups.lock().unwrap().push(cleanup.boxed());
    }

    /// `new Promise(resolve => step_timeout(resolve, ms))` (virtual time).
    pub fn wait(&self, ms: u64) -> impl Future<Output = ()> + Send + 'static {
        self.inner.clock.sleep(Duration::from_millis(ms))
    }

    /// The virtual time since the page was created.
    pub fn now(&self) -> Duration {
        self.inner.clock.now_duration()
    }

    /// `uniqueId()`: `'id0'`, `'id1'`, ...
    pub fn unique_id(&self) -> String {
        format!("id{}", self.inner.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// `new Request(input, init)` in the page (relative URLs resolve against the page). Panics
    /// if the constructor throws, as the upstream call would.
    #[track_caller]
    pub fn new_request(&self, input: impl Into<RequestInfo>, init: RequestInit) -> RequestObject {
        construct_request(input.into(), init, &self.inner.page_url)
            .unwrap_or_else(|e| panic!("new Request() threw {e}"))
    }

    /// `getMessageFromServiceWorker()`: the next message any service worker posts to the page.
    pub async fn get_message_from_service_worker(&self) -> Message {
        self.inner
            .messages
            .lock()
            .await
            .next()
            .await
            .expect("the page's message queue stays open")
    }

    /// `service_worker_unregister_and_register(test, url, scope)`: unregisters any
    /// registration at `scope`, then registers the script `url` (relative to the page). The
    /// new worker is installing: `active` is null.
    pub async fn service_worker_unregister_and_register(
        &self,
        url: &str,
        scope: &str,
    ) -> ServiceWorkerRegistration {
        let script_url = self.inner.page_url.join(url).expect("a valid script URL");
        let file_name = script_url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_owned();
        let script = Script::from_file_name(&file_name)
            .unwrap_or_else(|| panic!("no Rust port of service worker script {file_name}"));
        let scope = self.inner.page_url.join(scope).expect("a valid scope");
        let id = ServiceWorkerRegistrationId::for_scope(&scope);
        self.engine().unregister(&id).await;
        let global = ServiceWorkerGlobal::new(
            script,
            self.inner.executor.clone(),
            Arc::new(self.inner.clock.clone()),
        );
        // The worker's global connects to the service; its events come to it as messages.
        let spawner: Arc<dyn Spawn> = Arc::new(self.inner.executor.clone());
        let connection = in_process::connect(
            &self.inner.service,
            EnvironmentData {
                kind: EnvironmentKindData::ServiceWorker(id.clone()),
                base_url: script_url.clone(),
                secure_context: true,
                policy: PolicyContainer::default(),
                embedder: None,
            },
            spawner,
        );
        global.install(&connection);
        self.inner.workers.lock().unwrap().push(connection);
        self.inner.bridge.set_active_worker(&id, false);
        self.inner
            .installing
            .lock()
            .unwrap()
            .push((id.clone(), global));
        ServiceWorkerRegistration {
            background_fetch: self.inner.page.background_fetch_with(&id, false),
            id,
            active: None,
        }
    }

    /// `wait_for_state(test, registration.installing, 'activated')`: the worker activates.
    pub fn activate(&self, registration: &mut ServiceWorkerRegistration) {
        let global = {
            let mut installing = self.inner.installing.lock().unwrap();
            let i = installing
                .iter()
                .position(|(id, _)| *id == registration.id)
                .expect("a registered worker");
            installing.remove(i).1
        };
        self.inner.bridge.set_active_worker(&registration.id, true);
        // `registration.active` is no longer null, as the page's `backgroundFetch` sees it.
        registration.background_fetch = self
            .inner
            .page
            .background_fetch_with(&registration.id, true);
        registration.active = Some(ServiceWorker { global });
    }

    /// `registerAndActivateServiceWorker(test, name)` of `utils.js`: registers
    /// `service_workers/<name>` at scope `service_workers/scope` + `location.pathname` and
    /// waits until it is activated.
    pub async fn register_and_activate_service_worker(
        &self,
        name: &str,
    ) -> ServiceWorkerRegistration {
        let script = format!("service_workers/{name}");
        let scope = format!("service_workers/scope{}", self.inner.page_url.path());
        let mut registration = self
            .service_worker_unregister_and_register(&script, &scope)
            .await;
        self.activate(&mut registration);
        registration
    }

    /// `worker.postMessage(null)` from the page: the worker's `message` event, whose `source`
    /// is this page.
    pub fn post_message(&self, worker: &ServiceWorker) {
        worker.global.on_message(self.inner.document_port.clone());
    }

    /// The set-up of `backgroundFetchTest(func, description, workerName)`: grants the
    /// `background-fetch` permission (`test_driver.set_permission`), registers and activates
    /// `service_workers/<workerName>`, posts `null` to it and checks that it answers
    /// `'ready'`; returns `registration.backgroundFetch` for the subtest's body.
    pub async fn background_fetch_test(&self, worker_name: &str) -> BackgroundFetchManager {
        self.inner.permission.set(PermissionState::Granted);
        let registration = self.register_and_activate_service_worker(worker_name).await;
        let active = registration.active.clone().expect("an activated worker");
        self.post_message(&active);
        let message = self.get_message_from_service_worker().await;
        crate::assert_equals!(message, Message::Ready);
        registration.background_fetch
    }
}
