//! A complete embedding of the engine with no async runtime: a `futures` thread pool runs the
//! tasks, std threads keep time, and a small in-process "origin server" plays the network. It
//! downloads a podcast episode and its artwork in the background, prints progress from the UI
//! host, and reads the records in the service worker's `backgroundfetchsuccess` handler. The page
//! and the service worker reach the engine through the service's protocol (here its in-process
//! transport; in a browser, from their own processes).
//!
//! Run it with `cargo run -p background-fetch --example plain_executor`.

use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{Service, ServiceWorkerHost, WorkerBridge, client, in_process};
use background_fetch::{
    BackgroundFetchOptions, BoxFuture, BoxStream, Clock, DispatchOutcome, Engine, EngineConfig,
    Granted, HeaderList, Hosts, MemoryStore, NetworkError, NetworkEvent, NetworkHost,
    NetworkRequest, NoPolicy, RequestInfo, ResponseHead, ResponseType, ServiceWorkerRegistrationId,
    Spawn, UiHost, UiSnapshot, Unlimited,
};
use bytes::Bytes;
use futures::executor::{ThreadPool, block_on};
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// Tasks run on a `futures` thread pool.
struct Pool(ThreadPool);
impl Spawn for Pool {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        self.0.spawn_ok(future);
    }
}

/// Real time; a sleep is a short-lived thread that completes a oneshot.
struct StdClock(Instant);
impl Clock for StdClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            let _ = tx.send(());
        });
        async move {
            let _ = rx.await;
        }
        .boxed()
    }
}

/// An origin server in the same process: serves bodies from memory, in 64 KiB chunks,
/// honouring Range requests.
struct Origin(HashMap<String, Bytes>);
impl NetworkHost for Origin {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let Some(body) = self.0.get(request.request.url.as_str()).cloned() else {
            return futures::stream::iter([NetworkEvent::Error(NetworkError::fatal(
                "no such resource",
            ))])
            .boxed();
        };
        let start = request.range_start.unwrap_or(0).min(body.len() as u64) as usize;
        let mut headers = HeaderList::new();
        headers.append("content-type", "application/octet-stream");
        let status = if start > 0 {
            headers.append(
                "content-range",
                format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
            );
            206
        } else {
            200
        };
        let head = ResponseHead {
            status,
            status_text: "OK".into(),
            headers,
            url_list: vec![request.request.url.clone()],
            response_type: ResponseType::Basic,
            resume_headers: Default::default(),
        };
        let rest = body.slice(start..);
        let chunks: Vec<NetworkEvent> = rest
            .chunks(64 * 1024)
            .map(|c| NetworkEvent::Data(rest.slice_ref(c)))
            .collect();
        futures::stream::iter(std::iter::once(NetworkEvent::Response(head)).chain(chunks)).boxed()
    }
}

/// The browser UI: one line per update.
struct PrintUi;
impl UiHost for PrintUi {
    fn show(&self, ui: &UiSnapshot) {
        println!(
            "[ui] {} is downloading \"{}\" ({} bytes expected)",
            ui.origin, ui.title, ui.download_total
        );
    }
    fn update(&self, ui: &UiSnapshot) {
        println!(
            "[ui] {}: {} bytes, result {:?}",
            ui.id,
            ui.downloaded,
            ui.result.as_str()
        );
    }
    fn remove(&self, _uid: background_fetch::FetchUid) {}
}

/// The service worker script's listener: on success, reads every record (as it would copy them
/// to a cache).
fn on_functional_event(
    event: client::FunctionalEvent,
    done: futures::channel::mpsc::UnboundedSender<String>,
) -> BoxFuture<'static, DispatchOutcome> {
    async move {
        let reg = event.registration().clone();
        println!("[sw] {} for {:?}", event.event_type(), reg.id());
        for record in reg
            .match_all(None, Default::default())
            .await
            .unwrap_or_default()
        {
            if let Ok(response) = record.response_ready().await {
                let url = response.url();
                let bytes = response.bytes().await.unwrap_or_default();
                println!("[sw]   {url}: {} bytes", bytes.len());
            }
        }
        let _ = done.unbounded_send(event.event_type().to_owned());
        DispatchOutcome::Completed
    }
    .boxed()
}

/// The environment of script at `url`.
fn environment(kind: EnvironmentKindData, url: Url) -> EnvironmentData {
    EnvironmentData::secure(kind, url)
}

fn main() {
    let episode: Bytes = (0..3_000_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let artwork: Bytes = vec![0x89; 40_000].into();
    let origin = Origin(HashMap::from([
        (
            "https://podcast.example/episode-1.mp3".to_owned(),
            episode.clone(),
        ),
        (
            "https://podcast.example/artwork.png".to_owned(),
            artwork.clone(),
        ),
    ]));
    let (done_tx, mut done_rx) = futures::channel::mpsc::unbounded();
    let scope = Url::parse("https://podcast.example/").unwrap();
    let sw_registration = ServiceWorkerRegistrationId::for_scope(&scope);
    // Functional events go to the service worker's connection; the service worker system says
    // the registration has an active worker.
    let bridge = WorkerBridge::new();
    bridge.set_active_worker(&sw_registration, true);
    let worker = ServiceWorkerHost::new(bridge.clone());
    let spawner: Arc<dyn Spawn> = Arc::new(Pool(ThreadPool::new().expect("a thread pool")));
    let hosts = Hosts {
        store: Arc::new(MemoryStore::new()),
        network: Arc::new(origin),
        ui: Arc::new(PrintUi),
        worker: Arc::new(worker.clone()),
        permission: Arc::new(Granted),
        quota: Arc::new(Unlimited),
        policy: Arc::new(NoPolicy),
        clock: Arc::new(StdClock(Instant::now())),
        spawner: spawner.clone(),
    };
    let config = EngineConfig {
        progress_interval: Duration::from_millis(5),
        ..EngineConfig::default()
    };
    let engine = block_on(Engine::start(hosts, config)).expect("the engine starts");
    let service = Service::new(engine, bridge);
    worker.serve(&service);

    // The service worker global.
    let sw = in_process::connect(
        &service,
        environment(
            EnvironmentKindData::ServiceWorker(sw_registration.clone()),
            scope.join("sw.js").unwrap(),
        ),
        spawner.clone(),
    );
    sw.on_functional_event(move |event| on_functional_event(event, done_tx.clone()));

    // The page: `navigator.serviceWorker.ready.then(reg => reg.backgroundFetch.fetch(...))`.
    let page = in_process::connect(
        &service,
        environment(
            EnvironmentKindData::Window,
            scope.join("index.html").unwrap(),
        ),
        spawner,
    );
    let manager = page.background_fetch(&sw_registration);
    let registration = block_on(manager.fetch(
        "episode-1",
        vec![RequestInfo::from("/episode-1.mp3"), "/artwork.png".into()],
        BackgroundFetchOptions {
            title: Some("Episode 1: Background Fetch".into()),
            download_total: (episode.len() + artwork.len()) as u64,
            ..Default::default()
        },
    ))
    .expect("fetch() resolves");
    registration.on_progress(|r| {
        println!(
            "[page] progress: {} / {}",
            r.downloaded(),
            r.download_total()
        )
    });

    let event = block_on(done_rx.next()).expect("a functional event");
    assert_eq!(event, "backgroundfetchsuccess");
    // The page's object reflects the final state.
    while registration.records_available() {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "[page] result {:?}, downloaded {}",
        registration.result().as_str(),
        registration.downloaded()
    );
}

#[test]
fn the_embedding_runs_to_success_without_a_runtime() {
    main();
}
