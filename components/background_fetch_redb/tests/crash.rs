//! Crash test: a real child process runs the engine on the redb store and downloads several
//! files from an HTTP/1.1 server this test starts on 127.0.0.1; the test SIGKILLs it at random
//! points, checks the store after every kill (integrity; every completed record byte for byte;
//! every active record a correct prefix), restarts it, and at the end checks that every file
//! arrived whole through the service worker's `backgroundfetchsuccess` handler and that every
//! interrupted record was resumed with a Range request from its durable length. The child's
//! script (a page and the service worker global) reaches the engine through its service and
//! protocol.
//!
//! The child is this test binary again, running [`crash_child_process`] (which does nothing
//! unless `BGFETCH_CRASH_CHILD` is set).
//!
//! * `BGFETCH_CRASH_KILLS=n`: kill points (default 50, the CI figure).
//! * `BGFETCH_SOAK_KILLS=n`: soak mode, overrides the above; prints figures at the end.
//! * `BGFETCH_CRASH_SEED=n`: replay a run.

mod common;

use background_fetch::service::client::FunctionalEvent;
use background_fetch::store::{RecordState, Store};
use background_fetch::testing::RecordingUi;
use background_fetch::{
    BackgroundFetchOptions, CacheQueryOptions, DispatchOutcome, EngineConfig, FunctionalEventKind,
    Granted, Hosts, NoPolicy, RecordResult, RetryPolicy, ServiceWorkerRegistrationId, Unlimited,
};
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use common::hosts::{BlockingHttp, Pool, RealClock};
use common::http::{Files, Options, Server};
use common::script::Workers;
use common::{block_on, pattern, read_body};
use futures::FutureExt;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

const FILES: [usize; 4] = [150_000, 600_000, 1_100_000, 350_001];

fn content(round: u64, file: usize) -> Vec<u8> {
    pattern(round * 16 + file as u64 + 1, FILES[file])
}

/// FNV-1a, 64 bits.
fn checksum(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// "/r{round}/f{file}.bin" → (round, file)
fn parse_path(path: &str) -> Option<(u64, usize)> {
    let rest = path.strip_prefix("/r")?;
    let (round, file) = rest.split_once("/f")?;
    let file = file.strip_suffix(".bin")?;
    let file: usize = file.parse().ok()?;
    (file < FILES.len()).then_some(())?;
    Some((round.parse().ok()?, file))
}

fn store_config() -> RedbStoreConfig {
    RedbStoreConfig {
        cache_size: 4 << 20,
        group_commit_bytes: 512 * 1024,
        group_commit_interval: Duration::from_millis(15),
        compact_when_idle: None,
        ..RedbStoreConfig::default()
    }
}

fn results_dir(dir: &Path, round: u64) -> PathBuf {
    dir.join("results").join(format!("round-{round}"))
}

fn round_complete(dir: &Path, round: u64) -> bool {
    (0..FILES.len()).all(|f| results_dir(dir, round).join(format!("f{f}")).exists())
}

/// Writes `content` to `path` atomically and durably.
fn write_durably(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).expect("create result");
    f.write_all(content.as_bytes()).expect("write result");
    f.sync_all().expect("sync result");
    std::fs::rename(&tmp, path).expect("rename result");
}

// ----- the child -----

/// The service worker: on `backgroundfetchsuccess`, reads every record through `matchAll()` and
/// `responseReady` and writes each body's length and checksum.
async fn on_event(event: FunctionalEvent, dir: PathBuf) -> DispatchOutcome {
    let registration = event.registration().clone();
    let round: u64 = registration
        .id()
        .strip_prefix("round-")
        .and_then(|r| r.parse().ok())
        .expect("round id");
    let out = results_dir(&dir, round);
    std::fs::create_dir_all(&out).expect("results dir");
    match event.kind() {
        FunctionalEventKind::Success => {
            let records = registration
                .match_all(None, CacheQueryOptions::default())
                .await
                .expect("matchAll()");
            for record in records {
                let response = record.response_ready().await.expect("responseReady");
                let url = Url::parse(&response.url()).expect("response URL");
                let (_, file) = parse_path(url.path()).expect("a served path");
                let body = response.bytes().await.expect("the body reads back");
                write_durably(
                    &out.join(format!("f{file}")),
                    &format!("{} {:016x}\n", body.len(), checksum(&body)),
                );
            }
        }
        FunctionalEventKind::Fail | FunctionalEventKind::Abort => {
            write_durably(
                &out.join("FAILED"),
                &format!("{:?} {}\n", event.kind(), registration.failure_reason()),
            );
        }
        FunctionalEventKind::Click => {}
    }
    DispatchOutcome::Completed
}

fn child_main(dir: PathBuf, addr: String, round: u64) {
    let store =
        Arc::new(RedbStore::open(dir.join("store.redb"), store_config()).expect("the store opens"));
    let d = dir.clone();
    let on_event = move |event| on_event(event, d.clone()).boxed();
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(3)
        .create()
        .expect("thread pool");
    let base = Url::parse(&format!("http://{addr}/")).expect("base URL");
    let workers = Workers::new(&ServiceWorkerRegistrationId::for_scope(&base));
    let hosts = Hosts {
        store: store.clone(),
        network: Arc::new(BlockingHttp),
        ui: Arc::new(RecordingUi::default()),
        worker: workers.host(),
        permission: Arc::new(Granted),
        quota: Arc::new(Unlimited),
        policy: Arc::new(NoPolicy),
        clock: Arc::new(RealClock::new()),
        spawner: Arc::new(Pool(pool)),
    };
    let config = EngineConfig {
        retry: RetryPolicy {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_attempts: Some(100),
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    let page = base.join("page.html").expect("page URL");
    let script = common::script::start(hosts, config, workers, &base, page, on_event)
        .expect("the engine starts");
    let id = format!("round-{round}");
    // Whether this round's fetch is in the store already (restored, running or settled with its
    // event not finished) is the embedder's own view of its fetches, not script's: getIds()
    // does not list a settled fetch whose event a previous process did not finish.
    let known = script.service.engine().fetches().iter().any(|f| f.id == id);
    if !round_complete(&dir, round) && !known {
        let manager = script.manager();
        let urls: Vec<String> = (0..FILES.len())
            .map(|f| format!("/r{round}/f{f}.bin"))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        block_on(manager.fetch(&id, urls, BackgroundFetchOptions::default()))
            .expect("fetch() resolves");
    }
    // Done when this round's files are all checked and every fetch's data is dropped.
    loop {
        if round_complete(&dir, round) && block_on(store.stats()).expect("stats").fetches == 0 {
            break;
        }
        let failed = results_dir(&dir, round).join("FAILED");
        assert!(
            !failed.exists(),
            "round {round} failed: {:?}",
            std::fs::read_to_string(&failed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The child process's entry point (a no-op in a normal test run).
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var("BGFETCH_CRASH_DIR") else {
        return;
    };
    let addr = std::env::var("BGFETCH_CRASH_ADDR").expect("BGFETCH_CRASH_ADDR");
    let round = std::env::var("BGFETCH_CRASH_ROUND")
        .expect("BGFETCH_CRASH_ROUND")
        .parse()
        .expect("round number");
    child_main(PathBuf::from(dir), addr, round);
}

// ----- the parent -----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default, Debug)]
struct Figures {
    kills: u64,
    children: u64,
    rounds_done: u64,
    /// Kill points at which the store held an active record with durable bytes.
    mid_download: u64,
    completed_checked: u64,
    /// (path, durable offset) to be resumed with Range.
    resumes: BTreeSet<(String, u64)>,
    max_reopen: Duration,
    inspecting: Duration,
}

/// Opens the store as a restart would and checks everything in it.
fn inspect(dir: &Path, figures: &mut Figures) {
    let started = Instant::now();
    let store = RedbStore::open(dir.join("store.redb"), store_config()).expect("reopens");
    figures.max_reopen = figures.max_reopen.max(started.elapsed());
    block_on(async {
        let report = store.check_integrity().await.expect("integrity check runs");
        assert!(report.is_ok(), "integrity problems: {:#?}", report.problems);
        let all = store.load().await.expect("load");
        let mut active_with_bytes = false;
        for f in &all {
            let round: u64 = f.meta.id.strip_prefix("round-").unwrap().parse().unwrap();
            for (i, r) in f.records.iter().enumerate() {
                let path = f.meta.requests[i].url.path().to_owned();
                let (_, file) = parse_path(&path).unwrap();
                let expected = content(round, file);
                match r.state {
                    RecordState::Completed(RecordResult::Success) => {
                        let got = read_body(&store, f.meta.uid.0, i, r.generation, 1 << 20).await;
                        assert_eq!(got.len(), expected.len(), "{path}: completed length");
                        assert!(got == expected, "{path}: completed bytes differ");
                        figures.completed_checked += 1;
                    }
                    RecordState::Active => {
                        let got = read_body(&store, f.meta.uid.0, i, r.generation, 1 << 20).await;
                        assert_eq!(got.len() as u64, r.body_length);
                        assert!(
                            got == expected[..got.len()],
                            "{path}: durable prefix differs"
                        );
                        if r.body_length > 0 {
                            active_with_bytes = true;
                            figures.resumes.insert((path.clone(), r.body_length));
                        }
                    }
                    RecordState::Pending => assert_eq!(r.body_length, 0),
                    RecordState::Completed(other) => {
                        panic!("{path}: record completed with {other:?}")
                    }
                }
            }
        }
        if active_with_bytes {
            figures.mid_download += 1;
        }
    });
    drop(store);
    figures.inspecting += started.elapsed();
}

/// Checks the results the child's service worker wrote for `round`.
fn verify_round(dir: &Path, round: u64) {
    assert!(
        !results_dir(dir, round).join("FAILED").exists(),
        "round {round} failed: {:?}",
        std::fs::read_to_string(results_dir(dir, round).join("FAILED"))
    );
    for f in 0..FILES.len() {
        let got =
            std::fs::read_to_string(results_dir(dir, round).join(format!("f{f}"))).expect("result");
        let expected = content(round, f);
        assert_eq!(
            got,
            format!("{} {:016x}\n", expected.len(), checksum(&expected)),
            "round {round} file {f}"
        );
    }
}

fn spawn_child(dir: &Path, addr: &str, round: u64, n: u64) -> std::process::Child {
    let log = std::fs::File::create(dir.join(format!("child-{n}.log"))).expect("log file");
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BGFETCH_CRASH_DIR", dir)
        .env("BGFETCH_CRASH_ADDR", addr)
        .env("BGFETCH_CRASH_ROUND", round.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn the child")
}

fn check_log(dir: &Path, n: u64) {
    let log = std::fs::read_to_string(dir.join(format!("child-{n}.log"))).unwrap_or_default();
    assert!(!log.contains("panicked"), "child {n} panicked:\n{log}");
}

#[test]
fn sigkill_at_random_points_loses_nothing_and_resumes_with_range() {
    let kills: u64 = std::env::var("BGFETCH_SOAK_KILLS")
        .or_else(|_| std::env::var("BGFETCH_CRASH_KILLS"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("BGFETCH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("crash test: {kills} kill points, BGFETCH_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let files: Files = Arc::new(|path: &str| {
        let (round, file) = parse_path(path)?;
        Some(Arc::new(content(round, file)))
    });
    let server = Server::start(
        files,
        Options {
            piece: 32 * 1024,
            pause: Duration::from_millis(1),
            ..Options::default()
        },
    );
    let addr = server.addr.to_string();
    let started = Instant::now();
    let mut figures = Figures::default();
    let mut round = 0u64;
    while figures.kills < kills {
        let n = figures.children;
        figures.children += 1;
        let mut child = spawn_child(dir.path(), &addr, round, n);
        let delay = Duration::from_millis(rng.next() % 450);
        let deadline = Instant::now() + delay;
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        match exited {
            Some(status) => {
                check_log(dir.path(), n);
                assert!(status.success(), "child {n} failed: {status}");
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                figures.kills += 1;
                check_log(dir.path(), n);
            }
        }
        inspect(dir.path(), &mut figures);
        while round_complete(dir.path(), round) {
            verify_round(dir.path(), round);
            round += 1;
            figures.rounds_done += 1;
        }
    }
    // Let the last child finish its round without interruption.
    let n = figures.children;
    figures.children += 1;
    let mut child = spawn_child(dir.path(), &addr, round, n);
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            check_log(dir.path(), n);
            panic!("the final child did not finish its round in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    check_log(dir.path(), n);
    assert!(status.success(), "final child failed: {status}");
    verify_round(dir.path(), round);
    figures.rounds_done += 1;
    inspect(dir.path(), &mut figures);
    let store = RedbStore::open(dir.path().join("store.redb"), store_config()).unwrap();
    assert!(
        block_on(store.load()).unwrap().is_empty(),
        "everything was delivered and dropped"
    );
    drop(store);

    // Every record interrupted with durable bytes was resumed from exactly there with Range.
    let log = server.log();
    for (path, offset) in &figures.resumes {
        assert!(
            log.iter()
                .any(|l| &l.path == path && l.range_start == Some(*offset)),
            "{path} was never resumed from {offset}"
        );
    }
    let ranged = log.iter().filter(|l| l.range_start.is_some()).count();
    eprintln!(
        "crash test figures: {} kill points, {} child processes, {} rounds of {} files \
         ({} bytes each), {} kill points mid-download, {} completed records checked byte for \
         byte, {} distinct resume offsets all resumed with Range ({} Range requests of {} \
         requests), slowest reopen {:?}, {:?} inspecting, {:?} in all (seed {seed})",
        figures.kills,
        figures.children,
        figures.rounds_done,
        FILES.len(),
        FILES.iter().sum::<usize>(),
        figures.mid_download,
        figures.completed_checked,
        figures.resumes.len(),
        ranged,
        log.len(),
        figures.max_reopen,
        figures.inspecting,
        started.elapsed(),
    );
    assert!(figures.kills >= kills);
    assert!(
        figures.resumes.is_empty() || ranged > 0,
        "interrupted records were resumed"
    );
}
