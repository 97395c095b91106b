//! The embedding: the engine on the redb store and the hyper network host, with the program
//! itself in the roles of the UI (see [`crate::output`]) and of the service worker.

use crate::output::{Mode, Reporter};
use background_fetch::{
    BackgroundFetchManager, BackgroundFetchRegistration, BoxFuture, CacheQueryOptions, Clock,
    DispatchOutcome, Engine, EngineConfig, Environment, EnvironmentKind, EnvironmentSettings,
    FetchInfo, FetchUid, FunctionalEvent, FunctionalEventKind, Granted, Hosts, NoPolicy,
    PolicyContainer, ServiceWorkerRegistrationId, Spawn, Unlimited, WorkerHost,
};
use background_fetch_hyper::HyperNetwork;
use background_fetch_redb::{OpenError, RedbStore, RedbStoreConfig};
use futures::StreamExt;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
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
    /// Writing the records to `--out` failed.
    pub delivery_error: Option<String>,
}

/// What the program does in the service worker's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Deliver to `--out` on success.
    Cli,
    /// The demo's explained service worker.
    Demo,
}

/// The embedder data stored with each fetch.
#[derive(serde::Serialize, serde::Deserialize, Default, Debug)]
pub struct FetchData {
    /// `--out DIR`, absolute.
    pub out: Option<PathBuf>,
}

/// The program as the service worker: it receives the functional events.
pub struct ProgramWorker {
    reporter: Arc<Reporter>,
    settled: mpsc::UnboundedSender<Settled>,
    engine: OnceLock<Engine>,
    role: Role,
    prefetches: Arc<Prefetches>,
}

/// A record being written to its `--out` name while it downloads.
struct Prefetch {
    name: String,
    /// Completes with true once the temporary file holds the record's whole body.
    task: tokio::task::JoinHandle<bool>,
}

/// `--out` files written while their records download, per fetch (the success event then only
/// syncs and renames them; see [`App::start_delivery`]).
#[derive(Default)]
pub struct Prefetches(Mutex<std::collections::HashMap<FetchUid, Vec<Prefetch>>>);

impl Prefetches {
    fn take(&self, uid: FetchUid) -> Option<Vec<Prefetch>> {
        self.0.lock().unwrap().remove(&uid)
    }

    /// Stops the writes of `uid` and removes their temporary files.
    async fn discard(&self, uid: FetchUid, dir: &Path) {
        for p in self.take(uid).unwrap_or_default() {
            p.task.abort();
            let _ = p.task.await;
            let _ = tokio::fs::remove_file(part_path(dir, &p.name)).await;
        }
    }
}

fn part_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.part"))
}

/// Streams `record`'s body into `part` as it arrives; true if it holds the whole body.
async fn prefetch_record(
    record: background_fetch::BackgroundFetchRecord,
    part: PathBuf,
    slots: Arc<tokio::sync::Semaphore>,
) -> bool {
    let Ok(_slot) = slots.acquire_owned().await else {
        return false;
    };
    let Ok(response) = record.response_ready().await else {
        return false;
    };
    let Ok(mut file) = tokio::fs::File::create(&part).await else {
        return false;
    };
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if file.write_all(&c).await.is_err() {
                    return false;
                }
            }
            // The record failed or restarted from scratch: the success event writes it again.
            Err(_) => return false,
        }
    }
    file.flush().await.is_ok()
}

impl ProgramWorker {
    fn fetch_data(&self, uid: FetchUid) -> FetchData {
        self.engine
            .get()
            .and_then(|e| e.fetches().into_iter().find(|f| f.uid == uid))
            .and_then(|f| f.embedder_data)
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default()
    }
}

impl WorkerHost for ProgramWorker {
    fn has_active_worker(&self, _registration: &ServiceWorkerRegistrationId) -> bool {
        true
    }

    fn dispatch(&self, event: FunctionalEvent) -> BoxFuture<'static, DispatchOutcome> {
        let reporter = self.reporter.clone();
        let settled = self.settled.clone();
        let role = self.role;
        let reg = event.registration().clone();
        let kind = event.kind();
        let data = self.fetch_data(reg.uid());
        let prefetches = self.prefetches.clone();
        Box::pin(async move {
            if kind == FunctionalEventKind::Click {
                reporter.functional(kind, &reg);
                return DispatchOutcome::Completed;
            }
            // The event fires now (every record is stored durably); what the program does
            // with it follows, before the event's work finishes.
            if role != Role::Demo {
                reporter.functional(kind, &reg);
            }
            let mut delivery_error = None;
            if role == Role::Demo {
                crate::demo::service_worker(&reporter, &event).await;
            } else if kind == FunctionalEventKind::Success
                && let Some(dir) = &data.out
            {
                // Like a service worker copying the responses into a cache, before the event's
                // work finishes (while the records are still available).
                let prefetched = prefetches.take(reg.uid());
                if let Err(e) = deliver(&reg, dir, &reporter, prefetched).await {
                    reporter.note(&format!(
                        "error: could not write the records to {}: {e}",
                        dir.display()
                    ));
                    delivery_error = Some(e);
                }
            }
            if kind != FunctionalEventKind::Success
                && let Some(dir) = &data.out
            {
                prefetches.discard(reg.uid(), dir).await;
            }
            if role == Role::Demo {
                reporter.functional(kind, &reg);
            }
            let _ = settled.send(Settled {
                uid: reg.uid(),
                kind,
                failure_reason: reg.failure_reason().as_str().to_owned(),
                delivery_error,
            });
            DispatchOutcome::Completed
        })
    }
}

/// The file name for a record: the URL's last path segment, made safe and unique in `taken`.
pub fn file_name_for(url: &Url, taken: &mut HashSet<String>, dir: &Path) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "index".to_owned());
    let decoded = percent_decode(&last);
    let mut base: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if base == "." || base == ".." || base.is_empty() {
        base = "index".into();
    }
    let (stem, ext) = match base.rfind('.') {
        Some(i) if i > 0 => (base[..i].to_owned(), base[i..].to_owned()),
        _ => (base.clone(), String::new()),
    };
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) || dir.join(&name).exists() {
        name = format!("{stem}-{n}{ext}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2)))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: Option<&u8>) -> Option<u8> {
    let c = *c?;
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Writes every record's body into `dir`, each through a temporary name, synced, then renamed.
/// Names are given in request order. A record already written while it downloaded (`prefetched`)
/// is only synced and renamed; the others are read from the store, 16 at a time.
async fn deliver(
    reg: &BackgroundFetchRegistration,
    dir: &Path,
    reporter: &Reporter,
    prefetched: Option<Vec<Prefetch>>,
) -> Result<(), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| e.to_string())?;
    let records = reg
        .match_all(None, CacheQueryOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut prefetched: Vec<Option<Prefetch>> = prefetched
        .unwrap_or_default()
        .into_iter()
        .map(Some)
        .collect();
    prefetched.resize_with(records.len(), || None);
    let mut taken = HashSet::new();
    let named: Vec<_> = records
        .into_iter()
        .zip(prefetched)
        .map(|(record, pre)| {
            let name = match &pre {
                Some(p) => p.name.clone(),
                None => file_name_for(&record.request().url, &mut taken, dir),
            };
            (record, name, pre)
        })
        .collect();
    let mut writes = futures::stream::iter(named)
        .map(|(record, name, pre)| async move {
            let url = record.request().url.clone();
            let part = part_path(dir, &name);
            let complete = match pre {
                Some(p) => p.task.await.unwrap_or(false),
                None => false,
            };
            let file = if complete {
                tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&part)
                    .await
                    .map_err(|e| format!("{}: {e}", part.display()))?
            } else {
                let response = record
                    .response_ready()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                let mut file = tokio::fs::File::create(&part)
                    .await
                    .map_err(|e| format!("{}: {e}", part.display()))?;
                let mut body = response.into_body();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| format!("{url}: {e}"))?;
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| format!("{}: {e}", part.display()))?;
                }
                file
            };
            file.sync_all()
                .await
                .map_err(|e| format!("{}: {e}", part.display()))?;
            drop(file);
            let target = dir.join(&name);
            tokio::fs::rename(&part, &target)
                .await
                .map_err(|e| format!("{}: {e}", target.display()))?;
            Ok::<_, String>((url, target))
        })
        .buffer_unordered(16);
    while let Some(done) = writes.next().await {
        let (url, target) = done?;
        if reporter.mode() != Mode::Json {
            reporter.note(&format!("saved {url} to {}", target.display()));
        }
    }
    Ok(())
}

/// The store path: `--store`, else `$BGFETCH_STORE`, else the platform's data directory.
pub fn store_path(arg: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = arg {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("BGFETCH_STORE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let data = if cfg!(target_os = "macos") {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Library/Application Support"))
    } else {
        std::env::var_os("XDG_DATA_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
    };
    data.map(|d| d.join("bgfetch").join("store.redb"))
        .ok_or_else(|| {
            "no --store, no $BGFETCH_STORE and no home directory: say where the store is".to_owned()
        })
}

/// The control socket beside the store.
pub fn socket_path(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".sock");
    PathBuf::from(s)
}

/// Why the store could not be opened.
pub enum StoreOpen {
    /// Another process has it.
    Locked,
    /// Anything else (a message naming the file).
    Failed(String),
}

/// Opens (or creates) the store.
pub fn open_store(path: &Path) -> Result<RedbStore, StoreOpen> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreOpen::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    RedbStore::open(path, RedbStoreConfig::default()).map_err(|e| match e {
        OpenError::AlreadyOpen { .. } => StoreOpen::Locked,
        other => StoreOpen::Failed(other.to_string()),
    })
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
    _network: HyperNetwork,
    _link: background_fetch_hyper::EngineLink,
    environments: Mutex<Vec<Environment>>,
    prefetches: Arc<Prefetches>,
}

impl App {
    /// Starts the engine on `store`.
    pub async fn start(
        store: RedbStore,
        mode: Mode,
        role: Role,
        resume_on_start: bool,
    ) -> Result<App, String> {
        let reporter = Arc::new(Reporter::new(mode));
        let handle = tokio::runtime::Handle::current();
        let network =
            HyperNetwork::with_handle(handle.clone(), background_fetch_hyper::Config::default())
                .map_err(|e| format!("cannot set up the network: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let prefetches = Arc::new(Prefetches::default());
        let worker = Arc::new(ProgramWorker {
            reporter: reporter.clone(),
            settled: tx,
            engine: OnceLock::new(),
            role,
            prefetches: prefetches.clone(),
        });
        let hosts = Hosts {
            store: Arc::new(store.clone()),
            network: Arc::new(network.clone()),
            ui: reporter.clone(),
            worker: worker.clone(),
            permission: Arc::new(Granted),
            quota: Arc::new(Unlimited),
            policy: Arc::new(NoPolicy),
            clock: Arc::new(TokioClock(Instant::now())),
            spawner: Arc::new(TokioSpawn(handle)),
        };
        let config = EngineConfig {
            resume_on_start,
            max_parallel_per_fetch: 16,
            max_parallel_global: 32,
            // A person is waiting: give up on an unreachable resource after about a minute
            // (8 attempts that store nothing, 0.5 s doubling to at most 16 s apart), not the
            // engine's default of 20 attempts up to a minute apart.
            retry: background_fetch::RetryPolicy {
                max_attempts: Some(8),
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
        let _ = worker.engine.set(engine.clone());
        let link = network.drive_engine(&engine);
        Ok(App {
            engine,
            store,
            reporter,
            settled: tokio::sync::Mutex::new(rx),
            _network: network,
            _link: link,
            environments: Mutex::new(Vec::new()),
            prefetches,
        })
    }

    /// For a fetch with `--out`: starts writing each record to its (temporary) file in `--out`
    /// while it downloads, so that `backgroundfetchsuccess` only has to sync and rename them.
    /// Nothing appears under its final name before the success event.
    pub fn start_delivery(&self, reg: &BackgroundFetchRegistration) {
        let data: FetchData = self
            .engine
            .fetches()
            .into_iter()
            .find(|f| f.uid == reg.uid())
            .and_then(|f| f.embedder_data)
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default();
        let Some(dir) = data.out else { return };
        if std::fs::create_dir_all(&dir).is_err() {
            return; // the success event reports it
        }
        let reg = reg.clone();
        let prefetches = self.prefetches.clone();
        // Holding the map's lock while the records are listed keeps the entry in place before
        // any event can take it.
        let mut map = prefetches.0.lock().unwrap();
        let Some(records) =
            futures::FutureExt::now_or_never(reg.match_all(None, CacheQueryOptions::default()))
                .and_then(Result::ok)
        else {
            return;
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(16));
        let mut taken = HashSet::new();
        let list = records
            .into_iter()
            .map(|record| {
                let name = file_name_for(&record.request().url, &mut taken, &dir);
                let task = tokio::spawn(prefetch_record(
                    record,
                    part_path(&dir, &name),
                    slots.clone(),
                ));
                Prefetch { name, task }
            })
            .collect();
        map.insert(reg.uid(), list);
    }

    /// `registration.backgroundFetch` for the registration whose scope is `origin` + `/`, in a
    /// window of that origin.
    pub fn manager(&self, origin: &Url) -> (BackgroundFetchManager, ServiceWorkerRegistrationId) {
        let scope = origin.join("/").unwrap_or_else(|_| origin.clone());
        let registration = ServiceWorkerRegistrationId::for_scope(&scope);
        let env = self.engine.create_environment(EnvironmentSettings {
            kind: EnvironmentKind::Window,
            secure_context: background_fetch::policy::is_potentially_trustworthy(&scope),
            base_url: scope,
            policy: PolicyContainer::default(),
        });
        let manager = env.background_fetch(&registration);
        self.environments.lock().unwrap().push(env);
        (manager, registration)
    }

    /// The active fetch with `id` (the first, if several origins use it).
    pub fn find(&self, id: &str) -> Option<FetchInfo> {
        self.engine
            .fetches()
            .into_iter()
            .find(|f| f.active && f.id == id)
    }

    /// The page-side registration object of an active fetch.
    pub async fn registration(&self, id: &str) -> Option<BackgroundFetchRegistration> {
        let info = self.find(id)?;
        let origin = Url::parse(&info.registration.scope).ok()?;
        let (manager, _) = self.manager(&origin);
        manager.get(id).await.ok().flatten()
    }

    /// Waits for the settle event of `uid`.
    pub async fn wait_settled(&self, uid: FetchUid) -> Settled {
        let mut rx = self.settled.lock().await;
        loop {
            match rx.recv().await {
                Some(s) if s.uid == uid && s.kind != FunctionalEventKind::Click => return s,
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
