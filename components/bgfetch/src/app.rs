//! The embedding: the engine on the redb store and the hyper network host, with the program
//! itself in the roles of the UI (see [`crate::output`]) and of the service worker (an
//! [`EventHandler`]: `--out` delivery in [`crate::delivery`], the explained one in the demo).
//!
//! Script reaches the engine through its service protocol (`background_fetch::service`, the
//! [`Service`] of [`App::service`]), as a browser's content and service worker processes would:
//!
//! * the page's calls (`fetch()`) over a window connection per scope ([`App::manager`]);
//! * the functional events over a service worker connection per registration: the engine's
//!   worker host is a [`ServiceWorkerHost`] over a [`WorkerBridge`]; the connection of a
//!   registration comes from [`ServiceWorkers::connect`] (the program's own, [`ProgramWorker`],
//!   unless [`App::set_worker`] gave another, such as a JavaScript service worker), and it is
//!   the registration's active worker;
//! * the queries of other bgfetch processes (`get`, `abort`, `match`) over a connection each,
//!   whose transport is the control socket ([`crate::control`]); the same queries answered
//!   from the store when no process runs, over an in-process connection. A record's state and
//!   body come through `BackgroundFetchRecord::state` and `responseReady`, the `--out`
//!   delivery through `BackgroundFetchRecord::export_response_body` (the store's export, run
//!   in this process, the service's).
//!
//! What the program reads without the protocol is its own embedder's record of a fetch
//! (`Engine::fetches`: its `--out` directory and rate limit, the UI state `ls` shows) and the
//! user's operations on it (`Engine::pause`, `resume`, `resume_restored`).

use crate::data::FetchData;
use crate::network::{NetSetup, ObservedNetwork, RateLimits};
use crate::output::Reporter;
use crate::paths;
use crate::quota::DiskQuota;
use crate::records::{ObservedStore, RecordLog};
use background_fetch::service::client::{
    BackgroundFetchManager, BackgroundFetchRegistration, FunctionalEvent,
};
use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{Connection, Service, ServiceWorkerHost, WorkerBridge, in_process};
use background_fetch::{
    BoxFuture, CacheQueryOptions, Clock, DispatchOutcome, Engine, EngineConfig, FetchInfo,
    FetchUid, FunctionalEventData, FunctionalEventKind, Granted, Hosts, NoPolicy, PolicyContainer,
    RecordResult, ServiceWorkerRegistrationId, Spawn, Store, WeakEngine, WorkerHost,
};
use background_fetch_hyper::HyperNetwork;
use background_fetch_redb::{OpenError, RedbStore, RedbStoreConfig};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use url::Url;

/// Tasks go to the tokio runtime.
pub struct TokioSpawn(pub tokio::runtime::Handle);
impl Spawn for TokioSpawn {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        self.0.spawn(future);
    }
}

/// Time from tokio.
pub struct TokioClock(pub Instant);
impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move { tokio::time::sleep(duration).await })
    }
}

/// A fetch reached its settle event (or a click).
#[derive(Clone, Debug)]
pub struct Settled {
    /// The fetch.
    pub uid: FetchUid,
    /// Which event.
    pub kind: FunctionalEventKind,
    /// Its failure reason ("" on success).
    pub failure_reason: String,
    /// What the program could not do with the event (writing to `--out`): the event is kept
    /// active, so the fetch stays in the store and fires again at the next `run`.
    pub handler_error: Option<String>,
    /// For a failure: each record that did not succeed (URL, status, result).
    pub failed_records: Vec<String>,
}

/// What became of the program's handling of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done: the event ends, and the engine drops the fetch's stored records.
    Done,
    /// Not done (the message says why): the event stays active until the process exits, so the
    /// fetch and its records stay in the store and the event fires again at the next start.
    Keep(String),
}

/// What the program does with a functional event in the service worker's role.
pub trait EventHandler: Send + Sync + 'static {
    /// Handles `event` (a client of the engine's protocol, as a service worker global sees it)
    /// for a fetch created with `embedder_data`. The event has already been reported when the
    /// handler runs, unless [`EventHandler::reports_events`] says it reports them itself.
    fn handle(
        self: Arc<Self>,
        event: FunctionalEvent,
        embedder_data: Option<String>,
    ) -> BoxFuture<'static, Handled>;

    /// Whether the handler prints the event itself (default: the worker prints it first).
    fn reports_events(&self) -> bool {
        false
    }
}

/// Where the service worker of each registration comes from: given a registration, connect
/// its service worker global to the service.
pub trait ServiceWorkers: Send + Sync + 'static {
    /// A service worker connection to `service` for `registration` (environment kind
    /// `ServiceWorker(registration)`, its functional event listener set), or `None` when the
    /// registration has no active worker. Asked once per registration, the first time the
    /// engine needs its worker (unless [`App::set_worker`] gave one first).
    fn connect(
        &self,
        service: &Service,
        registration: &ServiceWorkerRegistrationId,
    ) -> Option<Connection>;
}

/// The program as the service worker of every registration: a service worker connection per
/// scope (in this process), whose functional event listener reports the event, runs the
/// [`EventHandler`] and tells [`App::wait_settled`] how it ended.
pub struct ProgramWorker {
    reporter: Arc<Reporter>,
    settled: mpsc::UnboundedSender<Settled>,
    handler: Arc<dyn EventHandler>,
    records: Arc<RecordLog>,
    spawner: Arc<dyn Spawn>,
}

/// The embedder data stored with fetch `uid` (its `--out` directory): the embedder's own
/// record of the fetch, not the script's.
fn embedder_data(engine: &Engine, uid: FetchUid) -> Option<String> {
    engine
        .fetches()
        .into_iter()
        .find(|f| f.uid == uid)
        .and_then(|f| f.embedder_data)
}

/// One line per record that did not succeed: its URL, its status and its result, and what went
/// wrong on the network (from `log`).
async fn failed_records(reg: &BackgroundFetchRegistration, log: &RecordLog) -> Vec<String> {
    let Ok(records) = reg.match_all(None, CacheQueryOptions::default()).await else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for (index, r) in records.iter().enumerate() {
        let Ok(state) = r.state().await else {
            continue;
        };
        if state.result == RecordResult::Success {
            continue;
        }
        let status = match &state.response_head {
            Some(h) => format!("HTTP {} {}", h.status, h.status_text),
            None => "no response".to_owned(),
        };
        let result = match state.result {
            RecordResult::Empty => "not finished",
            other => other.as_str(),
        };
        let why = match (state.result, log.note(reg.uid(), index).error) {
            (RecordResult::FetchError | RecordResult::Empty, Some((message, _))) => {
                format!(": {message}")
            }
            _ => String::new(),
        };
        lines.push(format!(
            "{} {}: {status}, {result}{why}",
            r.request().method,
            r.request().url
        ));
    }
    lines
}

impl ProgramWorker {
    /// What the program does with `event`, once the engine fired it at the connection.
    async fn on_event(self: Arc<Self>, engine: WeakEngine, event: FunctionalEvent) -> Handled {
        let reg = event.registration().clone();
        let kind = event.kind();
        let data = engine.upgrade().and_then(|e| embedder_data(&e, reg.uid()));
        // The event fires now (every record is stored durably); what the program does
        // with it follows, before the event's work finishes.
        if !self.handler.reports_events() {
            self.reporter.functional(kind, &reg);
        }
        let failed = if kind == FunctionalEventKind::Fail {
            failed_records(&reg, &self.records).await
        } else {
            Vec::new()
        };
        let handled = self.handler.clone().handle(event, data).await;
        if kind != FunctionalEventKind::Click {
            let _ = self.settled.send(Settled {
                uid: reg.uid(),
                kind,
                failure_reason: reg.failure_reason().as_str().to_owned(),
                handler_error: match &handled {
                    Handled::Done => None,
                    Handled::Keep(e) => Some(e.clone()),
                },
                failed_records: failed,
            });
        }
        handled
    }
}

impl ServiceWorkers for ProgramWorker {
    fn connect(
        &self,
        service: &Service,
        registration: &ServiceWorkerRegistrationId,
    ) -> Option<Connection> {
        let base_url = Url::parse(&registration.scope).ok()?;
        let conn = in_process::connect(
            service,
            EnvironmentData {
                kind: EnvironmentKindData::ServiceWorker(registration.clone()),
                secure_context: true,
                base_url,
                policy: PolicyContainer::default(),
                embedder: None,
            },
            self.spawner.clone(),
        );
        let this = Arc::new(ProgramWorker {
            reporter: self.reporter.clone(),
            settled: self.settled.clone(),
            handler: self.handler.clone(),
            records: self.records.clone(),
            spawner: self.spawner.clone(),
        });
        let engine = service.engine().downgrade();
        conn.on_functional_event(move |event| {
            let this = this.clone();
            let engine = engine.clone();
            Box::pin(async move {
                if this.on_event(engine, event).await != Handled::Done {
                    // The event stays active: the store keeps the fetch for the next start.
                    std::future::pending::<()>().await;
                }
                DispatchOutcome::Completed
            })
        });
        Some(conn)
    }
}

/// The engine's worker host: functional events go as data through the service's
/// [`WorkerBridge`] ([`ServiceWorkerHost`]) to the service worker connection of their
/// registration, connected (by [`ServiceWorkers::connect`]) the first time the engine asks
/// about the registration. Until the service exists (while the engine starts), the questions
/// wait: an event must not be skipped for want of a connection (its records would be dropped).
struct Workers {
    host: ServiceWorkerHost,
    bridge: WorkerBridge,
    service: tokio::sync::watch::Sender<Option<Service>>,
    source: Arc<dyn ServiceWorkers>,
    /// The connection of each registration asked about (`None`: it has no active worker).
    connections: Mutex<HashMap<ServiceWorkerRegistrationId, Option<Connection>>>,
}

impl Workers {
    fn new(source: Arc<dyn ServiceWorkers>) -> Arc<Workers> {
        let bridge = WorkerBridge::new();
        Arc::new(Workers {
            host: ServiceWorkerHost::new(bridge.clone()),
            bridge,
            service: tokio::sync::watch::Sender::new(None),
            source,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// The engine's service, from now on.
    fn serve(&self, service: &Service) {
        self.host.serve(service);
        self.service.send_replace(Some(service.clone()));
    }

    async fn service(&self) -> Service {
        let mut rx = self.service.subscribe();
        let service = rx.wait_for(Option::is_some).await;
        match service.as_deref() {
            Ok(Some(s)) => s.clone(),
            // The sender lives as long as `self`.
            _ => unreachable!("the service is set before it is dropped"),
        }
    }

    /// Connects `registration`'s worker if it has none yet; whether it has an active one.
    fn ensure(&self, service: &Service, registration: &ServiceWorkerRegistrationId) -> bool {
        let mut connections = self.connections.lock().unwrap();
        if let Some(conn) = connections.get(registration) {
            return conn.is_some();
        }
        let conn = self.source.connect(service, registration);
        let active = conn.is_some();
        self.bridge.set_active_worker(registration, active);
        connections.insert(registration.clone(), conn);
        active
    }

    /// Makes `conn` the worker of `registration` (replacing any).
    fn set(&self, registration: &ServiceWorkerRegistrationId, conn: Connection) {
        self.bridge.set_active_worker(registration, true);
        self.connections
            .lock()
            .unwrap()
            .insert(registration.clone(), Some(conn));
    }
}

/// [`Workers`] as the engine's worker host.
struct WorkersHost(Arc<Workers>);

impl WorkerHost for WorkersHost {
    fn has_active_worker(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BoxFuture<'static, bool> {
        let workers = self.0.clone();
        let registration = registration.clone();
        Box::pin(async move {
            let service = workers.service().await;
            workers.ensure(&service, &registration);
            workers.host.has_active_worker(&registration).await
        })
    }

    fn dispatch(&self, event: FunctionalEventData) -> BoxFuture<'static, DispatchOutcome> {
        let workers = self.0.clone();
        Box::pin(async move {
            let service = workers.service().await;
            workers.ensure(&service, &event.registration);
            workers.host.dispatch(event).await
        })
    }
}

/// Why the store could not be opened.
pub enum StoreOpen {
    /// Another process has it.
    Locked,
    /// Anything else (a message naming the file).
    Failed(String),
}

/// Opens (or creates) the store. What bgfetch creates is its owner's only: missing directories
/// 0700, the store file 0600, whatever the umask (bodies and URLs may carry tokens).
pub fn open_store(path: &Path) -> Result<RedbStore, StoreOpen> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        paths::create_private_dir_all(parent)
            .map_err(|e| StoreOpen::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    let created = !path.exists();
    let store = RedbStore::open(path, RedbStoreConfig::default()).map_err(|e| match e {
        OpenError::AlreadyOpen { .. } => StoreOpen::Locked,
        other => StoreOpen::Failed(other.to_string()),
    })?;
    if created {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            StoreOpen::Failed(format!("cannot make {} private: {e}", path.display()))
        })?;
    }
    Ok(store)
}

/// A running engine with its hosts.
pub struct App {
    /// The engine.
    pub engine: Engine,
    /// The store.
    pub store: RedbStore,
    /// The output and UI host.
    pub reporter: Arc<Reporter>,
    /// Settle events, as the program's service worker role receives them.
    pub settled: tokio::sync::Mutex<mpsc::UnboundedReceiver<Settled>>,
    /// What became of each record (the `record` events).
    pub records: Arc<RecordLog>,
    _network: HyperNetwork,
    _link: background_fetch_hyper::EngineLink,
    /// The engine as a service: the page role (`fetch()`) and the service worker role reach
    /// it through the protocol, as a browser's content and service worker processes would.
    service: Service,
    /// The service worker connection of each registration.
    workers: Arc<Workers>,
    /// The window connection of each scope (the page's, and the program's own views).
    pages: Mutex<HashMap<String, Connection>>,
    spawner: Arc<dyn Spawn>,
}

impl App {
    /// Starts the engine on `store`, with `reporter` as its UI, `handler` receiving the
    /// functional events, and the network set up as `net` says.
    pub async fn start(
        store: RedbStore,
        reporter: Arc<Reporter>,
        handler: Arc<dyn EventHandler>,
        resume_on_start: bool,
        net: NetSetup,
    ) -> Result<App, String> {
        let handle = tokio::runtime::Handle::current();
        let network = match HyperNetwork::with_handle(handle.clone(), net.config.clone()) {
            Ok(n) => n,
            Err(e) if net.may_fall_back => {
                // No platform store at all (a minimal system): the compiled-in roots.
                reporter.error(&format!(
                    "warning: {e}; trusting the compiled-in Mozilla roots instead (set \
                     SSL_CERT_FILE or give --cacert to choose)"
                ));
                let mut config = net.config.clone();
                config.tls.native_roots = false;
                config.tls.webpki_roots = true;
                HyperNetwork::with_handle(handle.clone(), config)
                    .map_err(|e| format!("cannot set up the network: {e}"))?
            }
            Err(e) => return Err(format!("cannot set up the network: {e}")),
        };
        let records = RecordLog::new(reporter.clone());
        let limits = Arc::new(RateLimits::default());
        let quota = Arc::new(DiskQuota::measure(store.path()).map_err(|e| {
            format!(
                "cannot measure the free space for {}: {e}",
                store.path().display()
            )
        })?);
        let (tx, rx) = mpsc::unbounded_channel();
        let spawner: Arc<dyn Spawn> = Arc::new(TokioSpawn(handle.clone()));
        let workers = Workers::new(Arc::new(ProgramWorker {
            reporter: reporter.clone(),
            settled: tx,
            handler,
            records: records.clone(),
            spawner: spawner.clone(),
        }));
        let hosts = Hosts {
            store: Arc::new(ObservedStore::new(Arc::new(store.clone()), records.clone())),
            network: Arc::new(ObservedNetwork::new(
                Arc::new(network.clone()),
                records.clone(),
                limits.clone(),
            )),
            ui: reporter.clone(),
            worker: Arc::new(WorkersHost(workers.clone())),
            permission: Arc::new(Granted),
            quota: quota.clone(),
            policy: Arc::new(NoPolicy),
            clock: Arc::new(TokioClock(Instant::now())),
            spawner: Arc::new(TokioSpawn(handle.clone())),
        };
        let config = EngineConfig {
            resume_on_start,
            max_parallel_per_fetch: net.parallel,
            max_parallel_global: (2 * net.parallel).max(32),
            // A person is waiting: give up on an unreachable resource after about a minute
            // (by default 8 attempts that store nothing, 0.5 s doubling to at most 16 s
            // apart; --retry), not the engine's default of 20 attempts up to a minute apart.
            retry: background_fetch::RetryPolicy {
                max_attempts: Some(net.attempts),
                max_delay: Duration::from_secs(16),
                ..Default::default()
            },
            // Delivering `--out` reads whole bodies: large slices mean few trips to the storage
            // thread (at most 16 records are delivered at once, so at most 16 MiB in flight).
            read_chunk_size: 1024 * 1024,
            progress_interval: Duration::from_millis(250),
        };
        let engine = Engine::start(hosts, config)
            .await
            .map_err(|e| format!("cannot read the store {}: {e}", store.path().display()))?;
        // What the store already holds counts as room in the quota (the disk counted it).
        let mut keys: Vec<String> = engine
            .fetches()
            .into_iter()
            .map(|f| f.registration.storage_key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let used = Store::usage(&store, &key)
                .await
                .map_err(|e| format!("cannot read the store {}: {e}", store.path().display()))?;
            quota.set_stored_at_start(&key, used);
        }
        // A fetch's rate limit (`--limit-rate`) is in its embedder data.
        let weak = engine.downgrade();
        limits.set_lookup(move |uid| {
            let engine = weak.upgrade()?;
            let data = engine
                .fetches()
                .into_iter()
                .find(|f| f.uid == uid)
                .and_then(|f| f.embedder_data);
            FetchData::parse(data.as_deref()).limit_rate
        });
        let link = network.drive_engine(&engine);
        let service = Service::new(engine.clone(), workers.bridge.clone());
        workers.serve(&service);
        Ok(App {
            engine,
            store,
            reporter,
            settled: tokio::sync::Mutex::new(rx),
            records,
            _network: network,
            _link: link,
            service,
            workers,
            pages: Mutex::new(HashMap::new()),
            spawner,
        })
    }

    /// The window connection of `scope` (one per scope, kept for the process).
    fn page(&self, scope: &Url) -> Connection {
        self.pages
            .lock()
            .unwrap()
            .entry(scope.as_str().to_owned())
            .or_insert_with(|| {
                in_process::connect(
                    &self.service,
                    EnvironmentData {
                        kind: EnvironmentKindData::Window,
                        secure_context: background_fetch::fetch::policy::is_potentially_trustworthy(
                            scope,
                        ),
                        base_url: scope.clone(),
                        policy: PolicyContainer::default(),
                        embedder: None,
                    },
                    self.spawner.clone(),
                )
            })
            .clone()
    }

    /// `registration.backgroundFetch` for the registration whose scope is `origin` + `/`, in a
    /// window of that origin: a client of the engine's service protocol, over that window's
    /// connection (one per scope).
    pub fn manager(&self, origin: &Url) -> (BackgroundFetchManager, ServiceWorkerRegistrationId) {
        let scope = origin.join("/").unwrap_or_else(|_| origin.clone());
        let registration = ServiceWorkerRegistrationId::for_scope(&scope);
        let page = self.page(&scope);
        // registration.active, as the page sees it (the program's worker, unless another
        // was set).
        let active = self.workers.ensure(&self.service, &registration);
        (
            page.background_fetch_with(&registration, active),
            registration,
        )
    }

    /// The engine as a service (for connections of other script: another process's queries,
    /// a JavaScript service worker).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Makes `worker` (a service worker connection to [`App::service`] for `registration`,
    /// with its functional event listener set) the active worker of `registration`, in place
    /// of the program's own. Set it before the registration's fetches are created or resumed
    /// (`Engine::resume_restored`): an event already dispatched stays with the earlier worker.
    pub fn set_worker(&self, registration: &ServiceWorkerRegistrationId, worker: Connection) {
        self.workers.set(registration, worker);
    }

    /// The active fetch with `id` (the first, if several origins use it).
    pub fn find(&self, id: &str) -> Option<FetchInfo> {
        self.engine
            .fetches()
            .into_iter()
            .find(|f| f.active && f.id == id)
    }

    /// Waits for the settle event of `uid`.
    pub async fn wait_settled(&self, uid: FetchUid) -> Settled {
        let mut rx = self.settled.lock().await;
        loop {
            match rx.recv().await {
                Some(s) if s.uid == uid => return s,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Flushes and closes the store.
    pub async fn close(&self) {
        if let Err(e) = self.store.flush().await {
            tracing::warn!(error = %e, "flushing the store");
        }
        let _ = self.store.close().await;
    }
}
