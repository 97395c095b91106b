//! The embedding: the engine on the redb store and the hyper network host, with the program
//! itself in the roles of the UI (see [`crate::output`]) and of the service worker (an
//! [`EventHandler`]: `--out` delivery in [`crate::delivery`], the explained one in the demo).
//!
//! The page's calls (`fetch()`) reach the engine through its service protocol
//! (`background_fetch::service`, an in-process connection per origin), as a browser's content
//! process would; the program's own views (the worker role, the control server) use the
//! engine's same-process objects (see [`App::registration`]).

use crate::data::FetchData;
use crate::network::{NetSetup, ObservedNetwork, RateLimits};
use crate::output::Reporter;
use crate::paths;
use crate::quota::DiskQuota;
use crate::records::{ObservedStore, RecordLog};
use background_fetch::service::client::BackgroundFetchManager;
use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{Connection, Service, WorkerBridge, in_process};
use background_fetch::{
    BackgroundFetchRegistration, BoxFuture, CacheQueryOptions, Clock, DispatchOutcome, Engine,
    EngineConfig, Environment, EnvironmentKind, EnvironmentSettings, EventObjects, FetchInfo,
    FetchUid, FunctionalEvent, FunctionalEventData, FunctionalEventKind, Granted, Hosts, NoPolicy,
    PolicyContainer, RecordResult, ServiceWorkerRegistrationId, Spawn, Store, WorkerHost,
};
use background_fetch_hyper::HyperNetwork;
use background_fetch_redb::{OpenError, RedbStore, RedbStoreConfig};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
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
    /// Handles `event` for a fetch created with `embedder_data`. The event has already been
    /// reported when the handler runs, unless [`EventHandler::reports_events`] says it reports them itself.
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

/// The program as the service worker: it receives the functional events.
pub struct ProgramWorker {
    reporter: Arc<Reporter>,
    settled: mpsc::UnboundedSender<Settled>,
    engine: Arc<OnceLock<Engine>>,
    /// Makes the events' objects (the service worker's script runs in this process).
    objects: EventObjects,
    handler: Arc<dyn EventHandler>,
    records: Arc<RecordLog>,
}

/// The embedder data stored with fetch `uid` (its `--out` directory).
fn embedder_data(engine: &OnceLock<Engine>, uid: FetchUid) -> Option<String> {
    engine
        .get()
        .and_then(|e| e.fetches().into_iter().find(|f| f.uid == uid))
        .and_then(|f| f.embedder_data)
}

/// One line per record that did not succeed: its URL, its status and its result, and what went
/// wrong on the network (from `log`).
async fn failed_records(reg: &BackgroundFetchRegistration, log: &RecordLog) -> Vec<String> {
    let Ok(records) = reg.match_all(None, CacheQueryOptions::default()).await else {
        return Vec::new();
    };
    records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.result() != RecordResult::Success)
        .map(|(index, r)| {
            let status = match r.response_head() {
                Some(h) => format!("HTTP {} {}", h.status, h.status_text),
                None => "no response".to_owned(),
            };
            let result = match r.result() {
                RecordResult::Empty => "not finished",
                other => other.as_str(),
            };
            let why = match (r.result(), log.note(reg.uid(), index).error) {
                (RecordResult::FetchError | RecordResult::Empty, Some((message, _))) => {
                    format!(": {message}")
                }
                _ => String::new(),
            };
            format!(
                "{} {}: {status}, {result}{why}",
                r.request().method,
                r.request().url
            )
        })
        .collect()
}

impl WorkerHost for ProgramWorker {
    fn has_active_worker(
        &self,
        _registration: &ServiceWorkerRegistrationId,
    ) -> BoxFuture<'static, bool> {
        Box::pin(futures::future::ready(true))
    }

    fn dispatch(&self, event: FunctionalEventData) -> BoxFuture<'static, DispatchOutcome> {
        let reporter = self.reporter.clone();
        let settled = self.settled.clone();
        let handler = self.handler.clone();
        let engine = self.engine.clone();
        let records = self.records.clone();
        let object = self.objects.object(&event);
        Box::pin(async move {
            // The event's objects, once the engine is known (a restored fetch's event may be
            // fired while the engine starts).
            let Some(event) = object.await else {
                return DispatchOutcome::Skipped;
            };
            let reg = event.registration().clone();
            let kind = event.kind();
            let data = embedder_data(&engine, reg.uid());
            // The event fires now (every record is stored durably); what the program does
            // with it follows, before the event's work finishes.
            if !handler.reports_events() {
                reporter.functional(kind, &reg);
            }
            let failed = if kind == FunctionalEventKind::Fail {
                failed_records(&reg, &records).await
            } else {
                Vec::new()
            };
            let handled = handler.handle(event, data).await;
            let handler_error = match &handled {
                Handled::Done => None,
                Handled::Keep(e) => Some(e.clone()),
            };
            if kind != FunctionalEventKind::Click {
                let _ = settled.send(Settled {
                    uid: reg.uid(),
                    kind,
                    failure_reason: reg.failure_reason().as_str().to_owned(),
                    handler_error,
                    failed_records: failed,
                });
            }
            if handled != Handled::Done {
                // The event stays active: the store keeps the fetch for the next start.
                std::future::pending::<()>().await;
            }
            DispatchOutcome::Completed
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
    /// The engine as a service: the page role (`fetch()`) reaches it through the protocol, as
    /// a browser's content process would.
    service: Service,
    /// The page connection of each origin.
    pages: Mutex<HashMap<String, Connection>>,
    spawner: Arc<dyn Spawn>,
    /// The program's own same-process views (see [`App::registration`]).
    environments: Mutex<HashMap<String, Environment>>,
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
        let worker = Arc::new(ProgramWorker {
            reporter: reporter.clone(),
            settled: tx,
            engine: Arc::new(OnceLock::new()),
            objects: EventObjects::new(),
            handler,
            records: records.clone(),
        });
        let hosts = Hosts {
            store: Arc::new(ObservedStore::new(Arc::new(store.clone()), records.clone())),
            network: Arc::new(ObservedNetwork::new(
                Arc::new(network.clone()),
                records.clone(),
                limits.clone(),
            )),
            ui: reporter.clone(),
            worker: worker.clone(),
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
        let _ = worker.engine.set(engine.clone());
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
        worker.objects.attach(&engine);
        let link = network.drive_engine(&engine);
        // The program's worker role is the engine's own worker host (it delivers files from
        // this process), so the service's bridge dispatches nothing.
        let service = Service::new(engine.clone(), WorkerBridge::new());
        Ok(App {
            engine,
            store,
            reporter,
            settled: tokio::sync::Mutex::new(rx),
            records,
            _network: network,
            _link: link,
            service,
            pages: Mutex::new(HashMap::new()),
            spawner: Arc::new(TokioSpawn(handle)),
            environments: Mutex::new(HashMap::new()),
        })
    }

    /// `registration.backgroundFetch` for the registration whose scope is `origin` + `/`, in a
    /// window of that origin: a client of the engine's service protocol, over that window's
    /// connection (one per origin).
    pub fn manager(&self, origin: &Url) -> (BackgroundFetchManager, ServiceWorkerRegistrationId) {
        let scope = origin.join("/").unwrap_or_else(|_| origin.clone());
        let registration = ServiceWorkerRegistrationId::for_scope(&scope);
        let page =
            self.pages
                .lock()
                .unwrap()
                .entry(scope.as_str().to_owned())
                .or_insert_with(|| {
                    in_process::connect(
                        &self.service,
                        EnvironmentData {
                            kind: EnvironmentKindData::Window,
                            secure_context:
                                background_fetch::fetch::policy::is_potentially_trustworthy(&scope),
                            base_url: scope.clone(),
                            policy: PolicyContainer::default(),
                            embedder: None,
                        },
                        self.spawner.clone(),
                    )
                })
                .clone();
        // The program is the service worker: the registration always has an active worker.
        (page.background_fetch(&registration), registration)
    }

    /// The active fetch with `id` (the first, if several origins use it).
    pub fn find(&self, id: &str) -> Option<FetchInfo> {
        self.engine
            .fetches()
            .into_iter()
            .find(|f| f.active && f.id == id)
    }

    /// The page-side registration object of an active fetch.
    ///
    /// This is the program's own view, in the engine's process (what its service-worker role
    /// and the control server read: each record's result and head, the export of its body),
    /// not the page's, so it uses the engine's same-process objects.
    /// FIXME (issue 13): the protocol carries neither a record's result and head nor the
    /// export, so this view cannot go through it yet.
    pub async fn registration(&self, id: &str) -> Option<BackgroundFetchRegistration> {
        let info = self.find(id)?;
        let scope = Url::parse(&info.registration.scope).ok()?;
        // One environment per scope, kept for the process (a query made a new one each time).
        let manager = self
            .environments
            .lock()
            .unwrap()
            .entry(scope.as_str().to_owned())
            .or_insert_with(|| {
                self.engine.create_environment(EnvironmentSettings {
                    kind: EnvironmentKind::Window,
                    secure_context: background_fetch::fetch::policy::is_potentially_trustworthy(
                        &scope,
                    ),
                    base_url: scope.clone(),
                    policy: PolicyContainer::default(),
                    embedder: None,
                })
            })
            .background_fetch(&info.registration);
        manager.get(id).await.ok().flatten()
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
