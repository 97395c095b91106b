//! The engine as a service: script reaches the engine only through the protocol (here the
//! in-process transport), a page's connection and the service worker global's.

use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData, PROTOCOL_VERSION};
use background_fetch::service::{Connection, Service, WorkerBridge, client, in_process};
use background_fetch::store::{ExportMode, Exported};
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchResult as Outcome,
    BackgroundFetchUiOptions, DispatchOutcome, FunctionalEventKind as Kind, PolicyContainer,
    RecordResult, RequestBody, RequestInfo, RequestInit, Spawn,
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

const A: &str = "https://example.com/a.bin";
const B: &str = "https://example.com/b.bin";

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// A test bed whose engine is reached through a service: a page's connection and the service
/// worker global's, which records what its events saw.
struct Bed {
    bed: TestBed,
    service: Service,
    page: Connection,
    worker: Connection,
    seen: Arc<Mutex<Vec<String>>>,
}

fn page_environment() -> EnvironmentData {
    EnvironmentData {
        kind: EnvironmentKindData::Window,
        base_url: Url::parse("https://example.com/page.html").unwrap(),
        secure_context: true,
        policy: PolicyContainer::default(),
        embedder: None,
    }
}

fn bed() -> Bed {
    let bed = TestBed::new();
    let service = bed.service();
    let page = bed.page();
    let worker = bed.service_worker();
    assert_eq!(page.welcome(), Some(Ok(PROTOCOL_VERSION)));
    assert_eq!(worker.welcome(), Some(Ok(PROTOCOL_VERSION)));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    bed.worker.set_handler(move |e: client::FunctionalEvent| {
        let s = s.clone();
        async move {
            let reg = e.registration().clone();
            let mut line = format!(
                "{} {:?}/{:?} {}",
                e.event_type(),
                reg.result(),
                reg.failure_reason(),
                reg.downloaded()
            );
            if e.kind() != Kind::Click {
                match reg.match_all(None, Default::default()).await {
                    Ok(records) => {
                        for rec in records {
                            match rec.response_ready().await {
                                Ok(r) => {
                                    let n = r.bytes().await.map(|b| b.len());
                                    line.push_str(&format!(" [{}: {n:?}]", rec.index()));
                                }
                                Err(err) => {
                                    line.push_str(&format!(" [{}: {}]", rec.index(), err.name()))
                                }
                            }
                        }
                    }
                    Err(err) => line.push_str(&format!(" matchAll: {}", err.name())),
                }
            }
            if e.kind() == Kind::Success {
                let r = e
                    .update_ui(BackgroundFetchUiOptions {
                        title: Some("Done".into()),
                        icons: None,
                    })
                    .await;
                let again = e.update_ui(Default::default()).await;
                line.push_str(&format!(
                    " updateUI {:?} then {:?}",
                    r.map_err(|e| e.name()),
                    again.map_err(|e| e.name())
                ));
            }
            s.lock().unwrap().push(line);
            DispatchOutcome::Completed
        }
        .boxed()
    });
    Bed {
        bed,
        service,
        page,
        worker,
        seen,
    }
}

#[test]
fn a_whole_fetch_through_the_protocol() {
    let b = bed();
    b.bed
        .network
        .serve(A, Resource::ok(body(100_000, 1)).chunk_size(10_000));
    b.bed.network.serve(B, Resource::ok(body(5, 2)));
    b.bed.network.fault_next(A, vec![Fault::Hold]);
    let m = b.page.background_fetch(&b.bed.registration);
    let progress = Arc::new(Mutex::new(Vec::new()));
    let reg = b
        .bed
        .run(async move { m.fetch("whole", [A, B], Default::default()).await })
        .unwrap();
    let p = progress.clone();
    reg.on_progress(move |r| p.lock().unwrap().push(r.downloaded()));
    assert_eq!(reg.id(), "whole");
    assert_eq!(reg.upload_total(), 0);
    b.bed.network.release(A);
    b.bed.run_until_idle();
    assert_eq!(reg.result(), Outcome::Success);
    assert_eq!(reg.downloaded(), 100_005);
    assert!(!reg.records_available());
    assert_eq!(
        *b.seen.lock().unwrap(),
        vec![
            "backgroundfetchsuccess Success/Empty 100005 [0: Ok(100000)] [1: Ok(5)] updateUI Ok(()) then Err(\"InvalidStateError\")"
        ]
    );
    assert!(progress.lock().unwrap().contains(&100_005));
    let uid = reg.uid();
    assert_eq!(b.bed.ui.last(uid).unwrap().title, "Done");
    // get() and getIds() after it settled.
    let m = b.page.background_fetch(&b.bed.registration);
    let (got, ids) = b
        .bed
        .run(async move { (m.get("whole").await.unwrap(), m.get_ids().await.unwrap()) });
    assert!(got.is_none());
    assert!(ids.is_empty());
    drop(b.service);
}

#[test]
fn match_streams_a_body_while_it_downloads() {
    let b = bed();
    let data = body(50_000, 3);
    b.bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    let m = b.page.background_fetch(&b.bed.registration);
    let (reg, rec) = b.bed.run(async move {
        let reg = m.fetch("stream", A, Default::default()).await.unwrap();
        let rec = reg.r#match(A, Default::default()).await.unwrap().unwrap();
        (reg, rec)
    });
    assert_eq!(rec.request().url.as_str(), A);
    let read = b.bed.run(async move {
        let response = rec.response_ready().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains("content-length"));
        let again = rec.response_ready().await.unwrap();
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        // The same promise, so the same Response: its body was read.
        let used = again.bytes().await.map_err(|e| e.name());
        (out, used)
    });
    assert_eq!(read.0, data, "every byte, streamed while the download ran");
    assert_eq!(read.1, Err("TypeError"));
    b.bed.run_until_idle();
    assert_eq!(reg.result(), Outcome::Success);
}

#[test]
fn abort_and_errors_cross_the_protocol() {
    let b = bed();
    b.bed.network.serve(A, Resource::ok(body(10, 4)));
    b.bed.network.fault_next(A, vec![Fault::Hold]);
    let m = b.page.background_fetch(&b.bed.registration);
    let (reg, first, second, duplicate) = b.bed.run(async move {
        let reg = m.fetch("gone", A, Default::default()).await.unwrap();
        let duplicate = m
            .fetch("gone", A, Default::default())
            .await
            .map(|_| ())
            .map_err(|e| e.name());
        let first = reg.abort().await.unwrap();
        let second = reg.abort().await.unwrap();
        (reg, first, second, duplicate)
    });
    assert_eq!(duplicate, Err("TypeError"));
    assert!(first);
    assert!(!second);
    b.bed.run_until_idle();
    assert_eq!(reg.result(), Outcome::Failure);
    assert_eq!(reg.failure_reason(), Reason::Aborted);
    assert_eq!(
        *b.seen.lock().unwrap(),
        vec!["backgroundfetchabort Failure/Aborted 0 [0: AbortError]"]
    );
    // A Request constructor error is thrown in the caller's realm.
    let m = b.page.background_fetch(&b.bed.registration);
    let err = b
        .bed
        .run(async move { m.fetch("x", "http://[::1", Default::default()).await })
        .unwrap_err();
    assert_eq!(err.name(), "TypeError");
    // No active worker: fetch() step 8.4, as script sees the registration.
    let m = b.page.background_fetch_with(&b.bed.registration, false);
    let err = b
        .bed
        .run(async move { m.fetch("y", A, Default::default()).await })
        .unwrap_err();
    assert_eq!(err.name(), "TypeError");
}

#[test]
fn a_streamed_upload_and_its_request_body_cross_the_protocol() {
    let b = bed();
    let upload = "https://example.com/upload";
    b.bed.network.serve(upload, Resource::echo());
    let stream = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"Background ")),
        Ok(Bytes::from_static(b"Fetch")),
    ])
    .boxed();
    let m = b.page.background_fetch(&b.bed.registration);
    let reg = b
        .bed
        .run(async move {
            let r = RequestInfo::Url(upload.into());
            let request = background_fetch::construct_request(
                r,
                RequestInit {
                    method: Some("PUT".into()),
                    body: Some(RequestBody::Stream(stream)),
                    ..Default::default()
                },
                &Url::parse("https://example.com/").unwrap(),
            )
            .unwrap();
            m.fetch("up", request, Default::default()).await
        })
        .unwrap();
    assert_eq!(reg.upload_total(), 16);
    b.bed.run_until_idle();
    assert_eq!(reg.result(), Outcome::Success);
    assert_eq!(
        b.bed.network.requests_for(upload)[0].body,
        b"Background Fetch"
    );
}

#[test]
fn a_refused_version_and_a_closed_connection() {
    let b = bed();
    // A client of another version is refused with a reason.
    struct Sink(Service, background_fetch::service::ConnectionId);
    impl background_fetch::service::client::ServiceSink for Sink {
        fn send(&self, m: background_fetch::service::protocol::ToService) {
            self.0.receive(self.1, m);
        }
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    struct Out(Arc<Mutex<Vec<background_fetch::service::protocol::ToScript>>>);
    impl background_fetch::service::server::ScriptSink for Out {
        fn send(&self, m: background_fetch::service::protocol::ToScript) {
            self.0.lock().unwrap().push(m);
        }
    }
    let id = b.service.connect(Arc::new(Out(got.clone())));
    use background_fetch::service::client::ServiceSink;
    Sink(b.service.clone(), id).send(background_fetch::service::protocol::ToService::Hello {
        version: 99,
        environment: page_environment(),
    });
    match &got.lock().unwrap()[..] {
        [background_fetch::service::protocol::ToScript::Welcome(Err(e))] => {
            assert_eq!(e.name(), "InvalidStateError");
            assert!(e.message.contains("99"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A page whose connection closes: its calls and objects go with it, the engine goes on.
    b.bed.network.serve(A, Resource::ok(body(10, 5)));
    let m = b.page.background_fetch(&b.bed.registration);
    let reg = b
        .bed
        .run(async move { m.fetch("orphan", A, Default::default()).await })
        .unwrap();
    drop(b.page);
    b.bed.run_until_idle();
    assert_eq!(
        b.bed.worker.events_of(Kind::Success).len(),
        1,
        "the fetch finished without its page"
    );
    drop(reg);
    drop(b.worker);
}

/// A fetch that settles before the page's task resumes from `fetch()`'s reply: the service
/// announces the result (an update, with a `progress` event) after the reply but before the
/// page's future has taken its registration object. fetch() resolves with the reply's values
/// (upstream `fetch.https.window.js` checks `result` is `''` then), and the update follows as
/// the next task: its `progress` event reaches a listener added when fetch() resolved. It was
/// lost: the object did not exist yet when the update came.
#[test]
fn an_update_that_follows_a_reply_is_applied_after_the_caller_took_the_object() {
    let b = bed();
    // Port 587 is a bad port: the record is blocked at once, with no network task in between.
    const BLOCKED: &str = "https://example.com:587/a.bin";
    let m = b.page.background_fetch(&b.bed.registration);
    let seen: Arc<Mutex<Vec<(Outcome, Reason)>>> = Arc::default();
    let s = seen.clone();
    let (reg, at_resolve) = b.bed.run(async move {
        let reg = m.fetch("quick", BLOCKED, Default::default()).await.unwrap();
        let at_resolve = (reg.result(), reg.failure_reason());
        reg.on_progress(move |r| s.lock().unwrap().push((r.result(), r.failure_reason())));
        (reg, at_resolve)
    });
    b.bed.run_until_idle();
    assert_eq!(at_resolve, (Outcome::Empty, Reason::Empty));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Outcome::Failure, Reason::FetchError)]
    );
    assert_eq!(reg.result(), Outcome::Failure);
    assert_eq!(
        *b.seen.lock().unwrap(),
        vec!["backgroundfetchfail Failure/FetchError 0 [0: TypeError]"]
    );
}

/// An embedder's own view of a record (its state right now) and its delivery as a file (the
/// store's export, run in the service's process) cross the protocol: the state follows the
/// download, an export waits for the record's final result, and a record that failed exports
/// nothing.
#[test]
fn a_records_state_and_its_export_cross_the_protocol() {
    let b = bed();
    let data = body(50_000, 5);
    b.bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    b.bed.network.serve(
        B,
        Resource::status(404, "not here").head_delay(Duration::from_secs(9)),
    );
    let dir = std::env::temp_dir().join(format!("bf-service-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (a_path, b_path) = (dir.join("a.bin"), dir.join("b.bin"));
    let m = b.page.background_fetch(&b.bed.registration);
    let paths = (a_path.clone(), b_path.clone());
    let (early, late, exported, refused, failed_state) = b.bed.run(async move {
        let reg = m.fetch("export", [A, B], Default::default()).await.unwrap();
        let records = reg.match_all(None, Default::default()).await.unwrap();
        let early = records[0].state().await.unwrap();
        let export_a = records[0].export_response_body(paths.0, ExportMode::Copy);
        let export_b = records[1].export_response_body(paths.1, ExportMode::Copy);
        let (exported, refused) = futures::join!(export_a, export_b);
        // Both records' results are final once both exports answered.
        let late = records[0].state().await.unwrap();
        let failed_state = records[1].state().await.unwrap();
        (early, late, exported, refused, failed_state)
    });
    assert_eq!(early.result, RecordResult::Empty, "{early:?}");
    assert!(early.stored_bytes < 50_000, "{early:?}");
    assert_eq!(late.result, RecordResult::Success);
    assert_eq!(late.stored_bytes, 50_000);
    assert_eq!(late.response_head.as_ref().map(|h| h.status), Some(200));
    assert_eq!(
        exported.unwrap(),
        Exported::Streamed,
        "the memory store streams"
    );
    assert_eq!(std::fs::read(&a_path).unwrap(), data);
    assert_eq!(refused.unwrap_err().name(), "TypeError");
    assert!(!b_path.exists(), "a record that failed exports nothing");
    assert_eq!(failed_state.result, RecordResult::BadStatus);
    assert_eq!(failed_state.response_head.map(|h| h.status), Some(404));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An engine on `store` and `network` whose worker host is a [`ServiceWorkerHost`] over
/// `bridge`, behind a service (not yet given to the worker host), and a page's connection to it.
fn engine_behind_a_worker_host(
    executor: &background_fetch::testing::Executor,
    clock: &background_fetch::testing::VirtualClock,
    store: Arc<background_fetch::MemoryStore>,
    network: background_fetch::testing::ScriptedNetwork,
    bridge: &WorkerBridge,
) -> (
    background_fetch::service::ServiceWorkerHost,
    Service,
    Connection,
) {
    use background_fetch::{Engine, EngineConfig, Hosts};
    let worker_host = background_fetch::service::ServiceWorkerHost::new(bridge.clone());
    let hosts = Hosts::new(
        store,
        Arc::new(network),
        Arc::new(worker_host.clone()),
        Arc::new(clock.clone()),
        Arc::new(executor.clone()),
    );
    let engine = executor
        .block_on(clock, Engine::start(hosts, EngineConfig::default()))
        .unwrap();
    let service = Service::new(engine, bridge.clone());
    let spawner: Arc<dyn Spawn> = Arc::new(executor.clone());
    let page = in_process::connect(&service, page_environment(), spawner);
    (worker_host, service, page)
}

/// A service worker that is active but not running (no connection yet, as after a restart
/// before the embedder started it), and a worker host not yet given its service: the functional
/// event waits for the worker's connection instead of being skipped (skipping drops the
/// records the worker would have read). With no active worker the event is skipped.
#[test]
fn an_event_waits_for_an_active_worker_that_is_not_connected_yet() {
    use background_fetch::testing::{Executor, ScriptedNetwork, VirtualClock};
    use background_fetch::{MemoryStore, ServiceWorkerRegistrationId};

    let (executor, clock) = (Executor::new(), VirtualClock::new());
    let network = ScriptedNetwork::new(clock.clone());
    network.serve(A, Resource::ok(body(1000, 9)));
    network.serve(B, Resource::ok(body(10, 9)));
    let bridge = WorkerBridge::new();
    let scope = Url::parse("https://example.com/").unwrap();
    let registration = ServiceWorkerRegistrationId::for_scope(&scope);
    let idle_scope = Url::parse("https://example.com/idle/").unwrap();
    let idle = ServiceWorkerRegistrationId::for_scope(&idle_scope);
    bridge.set_active_worker(&registration, true);
    bridge.set_active_worker(&idle, true);
    let started: Arc<Mutex<Vec<String>>> = Arc::default();
    let st = started.clone();
    bridge.on_start_worker(move |r| st.lock().unwrap().push(r.scope.to_string()));
    let (worker_host, service, page) = engine_behind_a_worker_host(
        &executor,
        &clock,
        Arc::new(MemoryStore::new()),
        network,
        &bridge,
    );
    let spawner: Arc<dyn Spawn> = Arc::new(executor.clone());
    let (m, idle_m) = (
        page.background_fetch(&registration),
        page.background_fetch(&idle),
    );
    let (reg, idle_reg) = executor.block_on(&clock, async move {
        let reg = m.fetch("early", A, Default::default()).await.unwrap();
        let idle_reg = idle_m.fetch("idle", B, Default::default()).await.unwrap();
        (reg, idle_reg)
    });
    // Both downloads settle before the worker host has its service.
    executor.run_until_idle(&clock);
    assert_eq!(reg.result(), Outcome::Success);
    worker_host.serve(&service);
    executor.run_until_idle(&clock);
    // The idle scope's worker stops being active without ever running: its event is skipped.
    bridge.set_active_worker(&idle, false);
    executor.run_until_idle(&clock);
    assert!(
        !idle_reg.records_available(),
        "an event with no active worker is skipped, and the records go"
    );
    assert!(
        reg.records_available(),
        "the records wait for the event, which waits for the worker"
    );
    let mut asked = started.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        vec![scope.to_string(), idle_scope.to_string()],
        "the embedder was asked to run each worker"
    );
    // Now the embedder starts the service worker: the event reaches it, with its records.
    let worker = in_process::connect(
        &service,
        EnvironmentData {
            kind: EnvironmentKindData::ServiceWorker(registration.clone()),
            base_url: Url::parse("https://example.com/sw.js").unwrap(),
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        },
        spawner,
    );
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    worker.on_functional_event(move |e: client::FunctionalEvent| {
        let s = s.clone();
        async move {
            let records = e.registration().match_all(None, Default::default()).await;
            let n = match records {
                Ok(records) => match records[0].response_ready().await {
                    Ok(r) => r.bytes().await.ok().map(|b| b.len()),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            s.lock().unwrap().push(format!("{} {n:?}", e.event_type()));
            DispatchOutcome::Completed
        }
        .boxed()
    });
    executor.run_until_idle(&clock);
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["backgroundfetchsuccess Some(1000)"]
    );
    assert!(!reg.records_available(), "the event ended; the records go");
}

/// fetch() step 8.2 (permission denied: `NotAllowedError`) comes before 8.4 (no active worker:
/// `TypeError`) when the registration script sees has no active worker: the service used to
/// reject on script's `registration.active` before the engine ran step 8.
#[test]
fn a_denied_permission_comes_before_a_missing_active_worker() {
    let b = bed();
    b.bed
        .permission
        .set(background_fetch::PermissionState::Denied);
    let m = b.page.background_fetch_with(&b.bed.registration, false);
    let err = b
        .bed
        .run(async move { m.fetch("denied", A, Default::default()).await })
        .unwrap_err();
    assert_eq!(err.name(), "NotAllowedError", "{err}");
    // Granted, script's view of the registration (no active worker) is the one fetch() uses.
    b.bed
        .permission
        .set(background_fetch::PermissionState::Granted);
    let m = b.page.background_fetch_with(&b.bed.registration, false);
    let err = b
        .bed
        .run(async move { m.fetch("no-worker", A, Default::default()).await })
        .unwrap_err();
    assert_eq!(err.name(), "TypeError", "{err}");
}

/// The engine holds its worker host, and a [`ServiceWorkerHost`] reaches the service that holds
/// the engine: when the embedder drops the service, the engine and its hosts go with it, also
/// while an event waits for a service worker that never connects (the worker host, and the
/// waiting event, held the service strongly: a cycle that kept both alive for the process's
/// life).
#[test]
fn a_dropped_service_frees_the_engine_behind_its_worker_host() {
    use background_fetch::testing::{Executor, ScriptedNetwork, VirtualClock};
    use background_fetch::{MemoryStore, ServiceWorkerRegistrationId};

    let (executor, clock) = (Executor::new(), VirtualClock::new());
    let network = ScriptedNetwork::new(clock.clone());
    network.serve(A, Resource::ok(body(100, 3)));
    let store = Arc::new(MemoryStore::new());
    let bridge = WorkerBridge::new();
    let scope = Url::parse("https://example.com/").unwrap();
    let registration = ServiceWorkerRegistrationId::for_scope(&scope);
    bridge.set_active_worker(&registration, true);
    let (worker_host, service, page) =
        engine_behind_a_worker_host(&executor, &clock, store.clone(), network, &bridge);
    worker_host.serve(&service);
    let m = page.background_fetch(&registration);
    let reg = executor
        .block_on(
            &clock,
            async move { m.fetch("f", A, Default::default()).await },
        )
        .unwrap();
    executor.run_until_idle(&clock);
    assert_eq!(reg.result(), Outcome::Success);
    assert!(Arc::strong_count(&store) > 1, "the engine holds the store");
    // The success event waits for the worker's global, which never connects.
    assert_eq!(executor.pending_tasks(), 1, "the event waits");
    drop((reg, page, service, worker_host, bridge));
    executor.run_until_idle(&clock);
    assert_eq!(
        Arc::strong_count(&store),
        1,
        "the engine (and its store) outlived the service that owned it"
    );
    assert_eq!(
        executor.pending_tasks(),
        0,
        "the waiting event ended with the service"
    );
}

/// A service worker global's connection says what its environment is (its script's URL, its
/// policy container, the embedder's data), and `fetch()` from it uses that: a relative URL
/// resolves against the worker's script URL, and the client snapshot carries its CSP and the
/// embedder's blob. The service ignored it and used a made-up environment (the scope as base
/// URL, no policy, no embedder data).
#[test]
fn a_service_worker_connection_s_environment_is_the_one_its_calls_use() {
    let b = bed();
    b.bed
        .network
        .serve("https://example.com/sw/a.bin", Resource::ok(body(10, 1)));
    let worker = in_process::connect(
        &b.service,
        EnvironmentData {
            kind: EnvironmentKindData::ServiceWorker(b.bed.registration.clone()),
            base_url: Url::parse("https://example.com/sw/worker.js").unwrap(),
            secure_context: true,
            policy: PolicyContainer {
                csp: vec!["connect-src 'self'".into()],
                referrer_policy: String::new(),
                csp_report_only: Vec::new(),
            },
            embedder: Some(b"servo".to_vec()),
        },
        Arc::new(b.bed.executor.clone()),
    );
    let m = worker.background_fetch(&b.bed.registration);
    let reg = b
        .bed
        .run(async move { m.fetch("relative", "a.bin", Default::default()).await })
        .unwrap();
    b.bed.run_until_idle();
    assert_eq!(reg.result(), Outcome::Success);
    let log = b.bed.network.log();
    let first = log.first().expect("a request was made");
    assert_eq!(first.url, "https://example.com/sw/a.bin");
    assert_eq!(
        first.client.base_url.as_str(),
        "https://example.com/sw/worker.js"
    );
    assert_eq!(first.client.policy.csp, vec!["connect-src 'self'"]);
    assert_eq!(first.client.embedder.as_deref(), Some(&b"servo"[..]));
    // Its CSP applies: a URL of another origin is refused.
    b.bed
        .network
        .serve("https://other.example/x", Resource::ok(body(10, 2)));
    let m = worker.background_fetch(&b.bed.registration);
    let outside = b
        .bed
        .run(async move {
            m.fetch("outside", "https://other.example/x", Default::default())
                .await
        })
        .unwrap();
    b.bed.run_until_idle();
    // A blocked request fails its record with fetch-error, and never reaches the network.
    assert_eq!(outside.result(), Outcome::Failure);
    assert_eq!(outside.failure_reason(), Reason::FetchError);
    assert!(
        b.bed
            .network
            .log()
            .iter()
            .all(|r| !r.url.starts_with("https://other.example/")),
        "the CSP's block reached the network"
    );
}

/// A call is made when script calls the method, not when its future is first polled: in
/// JavaScript `registration.abort();` aborts though nobody awaits the promise, and calls reach
/// the engine in the order script made them. The client's methods sent nothing until polled,
/// so a dropped future was a call never made.
#[test]
fn a_call_is_made_when_script_calls_it_not_when_its_future_is_polled() {
    let b = bed();
    b.bed.network.serve(A, Resource::ok(body(100_000, 1)));
    b.bed.network.fault_next(A, vec![Fault::Hold]);
    let m = b.page.background_fetch(&b.bed.registration);
    let reg = b
        .bed
        .run(async move { m.fetch("held", A, Default::default()).await })
        .unwrap();
    b.bed.run_until_idle();
    // Called and dropped at once, never polled.
    drop(reg.abort());
    b.bed.run_until_idle();
    assert_eq!(reg.result(), Outcome::Failure, "abort() took effect");
    assert_eq!(reg.failure_reason(), Reason::Aborted);
    // fetch() likewise: its future dropped, the fetch is made.
    let m = b.page.background_fetch(&b.bed.registration);
    b.bed.network.serve(B, Resource::ok(body(10, 2)));
    drop(m.fetch("dropped", B, Default::default()));
    b.bed.run_until_idle();
    assert!(
        b.bed.network.log().iter().any(|r| r.url == B),
        "fetch() reached the network"
    );
}
