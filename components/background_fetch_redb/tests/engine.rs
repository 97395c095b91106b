//! The engine on the redb store, in process, with real threads: a download from a local HTTP
//! server end to end, `match()` streaming a body while it downloads, a full disk failing the
//! fetch with `quota-exceeded`, and a known engine issue with 416 answers. Script (a page and
//! the service worker global) reaches the engine through its service and protocol.

mod common;

use background_fetch::service::client::{BackgroundFetchRegistration, FunctionalEvent};
use background_fetch::store::{FetchMeta, RecordState, Store};
use background_fetch::testing::RecordingUi;
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, CacheQueryOptions, ClientSnapshot,
    DispatchOutcome, EngineConfig, FetchUid, FunctionalEventKind, Granted, HeaderList, Hosts,
    NoPolicy, RecordResult, Request, ResponseHead, ResponseType, RetryPolicy,
    ServiceWorkerRegistrationId, Unlimited,
};
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use bytes::Bytes;
use common::faulty::{Fault, FaultControl, open_faulty_store};
use common::hosts::{BlockingHttp, Pool, RealClock};
use common::http::{Files, Gate, Options, Server, etag_of};
use common::script::{Script, Workers};
use common::{assert_consistent, block_on, pattern};
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// What the service worker saw: (event, failure reason, bodies by path).
type Outcome = (
    FunctionalEventKind,
    BackgroundFetchFailureReason,
    HashMap<String, Vec<u8>>,
);

struct Bed {
    script: Script,
    events: mpsc::Receiver<Outcome>,
}

fn files(map: HashMap<&'static str, Vec<u8>>) -> Files {
    let map: HashMap<String, Arc<Vec<u8>>> = map
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Arc::new(v)))
        .collect();
    Arc::new(move |p: &str| map.get(p).cloned())
}

fn start(store: Arc<dyn Store>, server: &Server) -> Bed {
    let (tx, events) = mpsc::channel::<Outcome>();
    let tx = Arc::new(Mutex::new(tx));
    let on_event = move |event: FunctionalEvent| {
        let tx = tx.clone();
        async move {
            let registration = event.registration().clone();
            let mut bodies = HashMap::new();
            if event.kind() == FunctionalEventKind::Success {
                for record in registration
                    .match_all(None, CacheQueryOptions::default())
                    .await
                    .expect("matchAll()")
                {
                    let response = record.response_ready().await.expect("responseReady");
                    let path = Url::parse(&response.url()).unwrap().path().to_owned();
                    bodies.insert(path, response.bytes().await.expect("body"));
                }
            }
            let _ = tx
                .lock()
                .unwrap()
                .send((event.kind(), registration.failure_reason(), bodies));
            DispatchOutcome::Completed
        }
        .boxed()
    };
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    let base = Url::parse(&format!("http://{}/", server.addr)).unwrap();
    let workers = Workers::new(&ServiceWorkerRegistrationId::for_scope(&base));
    let hosts = Hosts {
        store,
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
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts: Some(5),
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    let page = base.join("page").unwrap();
    let script = common::script::start(hosts, config, workers, &base, page, on_event)
        .expect("the engine starts");
    Bed { script, events }
}

impl Bed {
    fn fetch(&self, id: &str, paths: &[&str]) -> BackgroundFetchRegistration {
        let manager = self.script.manager();
        block_on(manager.fetch(id, paths.to_vec(), BackgroundFetchOptions::default()))
            .expect("fetch() resolves")
    }

    fn event(&self) -> Outcome {
        self.events
            .recv_timeout(Duration::from_secs(60))
            .expect("an event within a minute")
    }
}

fn store_config() -> RedbStoreConfig {
    RedbStoreConfig {
        group_commit_bytes: 512 * 1024,
        group_commit_interval: Duration::from_millis(20),
        ..common::config()
    }
}

#[test]
fn downloads_end_to_end_and_match_streams_a_body_while_it_downloads() {
    let a = pattern(1, 2_500_000);
    let b = pattern(2, 300_000);
    let gate = Gate::closed(256 * 1024);
    let server = Server::start(
        files(HashMap::from([
            ("/a.bin", a.clone()),
            ("/b.bin", b.clone()),
        ])),
        Options {
            piece: 64 * 1024,
            gate: Some(gate.clone()),
            ..Options::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("s.redb"), store_config()).unwrap());
    let bed = start(store.clone(), &server);
    let registration = bed.fetch("episode", &["/a.bin", "/b.bin"]);
    // match() while the download is held at the gate: the body streams what is stored so far.
    let record = block_on(registration.r#match("/a.bin", CacheQueryOptions::default()))
        .expect("match()")
        .expect("a record");
    let response = block_on(record.response_ready()).expect("responseReady");
    let mut body = response.into_body();
    let mut got = Vec::new();
    while got.len() < 200 * 1024 {
        let chunk = block_on(body.next())
            .expect("more bytes")
            .expect("no error");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(
        block_on(record.state()).expect("the record's state").result,
        RecordResult::Empty,
        "still downloading"
    );
    assert!(registration.downloaded() < (a.len() + b.len()) as u64);
    gate.open();
    while let Some(chunk) = block_on(body.next()) {
        got.extend_from_slice(&chunk.expect("no error"));
    }
    assert!(got == a, "match() streamed the whole body");
    let (kind, reason, bodies) = bed.event();
    assert_eq!(kind, FunctionalEventKind::Success, "{reason:?}");
    assert!(bodies["/a.bin"] == a);
    assert!(bodies["/b.bin"] == b);
    // After the event the records are dropped from the store.
    for _ in 0..1000 {
        if block_on(store.stats()).unwrap().fetches == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(block_on(store.stats()).unwrap().fetches, 0);
    block_on(assert_consistent(&store));
    block_on(store.close()).unwrap();
}

#[test]
fn a_full_disk_fails_the_fetch_with_quota_exceeded_and_the_store_reopens_consistent() {
    let a = pattern(3, 3_000_000);
    let gate = Gate::closed(0);
    let server = Server::start(
        files(HashMap::from([("/a.bin", a.clone())])),
        Options {
            piece: 64 * 1024,
            gate: Some(gate.clone()),
            ..Options::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = Arc::new(open_faulty_store(&path, &ctl, store_config()));
    let bed = start(store.clone(), &server);
    let _registration = bed.fetch("big", &["/a.bin"]);
    let file = block_on(store.stats()).unwrap().file_bytes;
    ctl.set(Fault::DiskFullAt(file));
    gate.open();
    let (kind, reason, _) = bed.event();
    assert_eq!(kind, FunctionalEventKind::Fail);
    assert_eq!(reason, BackgroundFetchFailureReason::QuotaExceeded);
    assert!(ctl.failures() > 0);
    ctl.set(Fault::None);
    block_on(store.close()).unwrap();
    drop(bed);
    let store = RedbStore::open(&path, store_config()).unwrap();
    block_on(assert_consistent(&store));
}

/// A crash after every byte of a record was durable but before `complete_record` leaves an
/// active record at full length. The engine then sends `Range: bytes=<length>-`, which the
/// server answers 416 (`Content-Range: bytes */<length>`): the record completes with every
/// byte (spec-map deviation 11).
#[test]
fn a_416_at_full_length_after_a_crash_completes_the_record() {
    let a = pattern(4, 100_000);
    let server = Server::start(
        files(HashMap::from([("/a.bin", a.clone())])),
        Options {
            piece: 64 * 1024,
            ..Options::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let base = Url::parse(&format!("http://{}/", server.addr)).unwrap();
    // The state a crash leaves: all bytes durable, the record still active.
    {
        let store = RedbStore::open(&path, store_config()).unwrap();
        let meta = FetchMeta {
            uid: FetchUid(1),
            registration: ServiceWorkerRegistrationId::for_scope(&base),
            id: "crashed".into(),
            download_total: 0,
            title: String::new(),
            icons: vec![],
            client: ClientSnapshot::for_url(base.clone()),
            requests: vec![Request::get(base.join("a.bin").unwrap())],
            embedder_data: None,
        };
        let mut headers = HeaderList::new();
        headers.append("content-length", a.len().to_string());
        headers.append("etag", etag_of("/a.bin"));
        let head = ResponseHead {
            status: 200,
            status_text: "OK".into(),
            headers,
            url_list: vec![base.join("a.bin").unwrap()],
            response_type: ResponseType::Basic,
            resume_headers: Default::default(),
        };
        block_on(async {
            store.create_fetch(meta).await.unwrap();
            store
                .commit_fetch(FetchUid(1), Default::default())
                .await
                .unwrap();
            store.begin_response(FetchUid(1), 0, 0, head).await.unwrap();
            store
                .append_response_body(FetchUid(1), 0, 0, 0, Bytes::from(a.clone()))
                .await
                .unwrap();
            store.flush().await.unwrap();
            let all = store.load().await.unwrap();
            assert_eq!(all[0].records[0].state, RecordState::Active);
        });
    }
    let store = Arc::new(RedbStore::open(&path, store_config()).unwrap());
    let bed = start(store, &server);
    let (kind, reason, bodies) = bed.event();
    assert_eq!(
        (kind, reason),
        (
            FunctionalEventKind::Success,
            BackgroundFetchFailureReason::Empty
        )
    );
    assert!(bodies["/a.bin"] == a);
}
