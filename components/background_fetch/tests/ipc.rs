//! The protocol across a real process boundary: the engine runs in this test's process, the
//! script side (a page and the service worker global) in a child process (this test binary run
//! again), talking through `ipc-channel`, the crate Servo uses between its processes.
//!
//! The child makes a whole fetch, streams a body with `match()` while it downloads, aborts a
//! second fetch, and handles the functional events in its service worker global (reading the
//! records, calling `updateUI()`); it exits non-zero if anything differs. The parent drives the
//! engine's (virtual-time) executor until the child exits, then checks the engine's side.

use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{client, ipc};
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchResult as Outcome,
    BackgroundFetchUiOptions, DispatchOutcome, FunctionalEventKind as Kind, PolicyContainer,
    ServiceWorkerRegistrationId, Spawn,
};
use futures::{FutureExt, StreamExt};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

const A: &str = "https://example.com/episode.mp3";
const B: &str = "https://example.com/cover.jpg";
const HELD: &str = "https://example.com/held.bin";
/// The environment variable that makes the test binary the child (the one-shot server's name).
const CHILD: &str = "BGFETCH_IPC_TEST_SERVER";

fn episode() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

fn registration() -> ServiceWorkerRegistrationId {
    ServiceWorkerRegistrationId::for_scope(&Url::parse("https://example.com/").unwrap())
}

#[test]
fn the_script_side_in_a_child_process_runs_a_whole_fetch() {
    if let Ok(name) = std::env::var(CHILD) {
        child(name);
        return;
    }
    let bed = TestBed::new();
    bed.network.serve(
        A,
        Resource::ok(episode())
            .chunk_size(20_000)
            .chunk_delay(Duration::from_millis(100)),
    );
    bed.network.serve(B, Resource::ok(&b"jpeg"[..]));
    // The episode waits until the child made its second fetch (so its page listens to the
    // first's progress before any is made).
    bed.network.fault_next(A, vec![Fault::Hold]);
    bed.network.serve(HELD, Resource::ok(&b"never"[..]));
    bed.network.fault_next(HELD, vec![Fault::Hold]);
    // The child's service worker global takes over the registration's events from the test
    // bed's own.
    let service = bed.service();

    let (server, name) = ipc::listen().expect("a one-shot server");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_script_side_in_a_child_process_runs_a_whole_fetch",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name)
        .spawn()
        .expect("the test binary starts again as the child");
    let connections = ipc::accept(&service, server).expect("the child connects");
    assert_eq!(connections.len(), 2, "a page and a service worker global");
    // Drive the engine until the child is done (its messages arrive on other threads).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut released = false;
    let status = loop {
        bed.run_until_idle();
        if !released && bed.engine().fetches().iter().any(|f| f.id == "held") {
            bed.network.release(A);
            released = true;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the child did not finish");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(status.success(), "the child process failed: {status}");
    bed.run_until_idle();
    // The engine's side of it.
    let events: Vec<Kind> = bed.worker.finished().into_iter().map(|(k, _)| k).collect();
    assert!(events.contains(&Kind::Success), "{events:?}");
    assert!(events.contains(&Kind::Abort), "{events:?}");
    let fetches = bed.engine().fetches();
    let whole = fetches
        .iter()
        .find(|f| f.id == "podcast")
        .expect("the fetch");
    assert_eq!(
        whole.ui.title, "Episode 5 saved",
        "updateUI() from the child"
    );
    assert_eq!(bed.network.requests_for(HELD).len(), 1);
}

/// The child: a page and the service worker global, in another process.
fn child(name: String) {
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    struct Pool(futures::executor::ThreadPool);
    impl Spawn for Pool {
        fn spawn(&self, future: futures::future::BoxFuture<'static, ()>) {
            self.0.spawn_ok(future);
        }
    }
    let spawner: Arc<dyn Spawn> = Arc::new(Pool(pool));
    let page_env = EnvironmentData {
        kind: EnvironmentKindData::Window,
        base_url: Url::parse("https://example.com/podcasts/index.html").unwrap(),
        secure_context: true,
        policy: PolicyContainer::default(),
        embedder: None,
    };
    let sw_env = EnvironmentData {
        kind: EnvironmentKindData::ServiceWorker(registration()),
        base_url: Url::parse("https://example.com/sw.js").unwrap(),
        secure_context: true,
        policy: PolicyContainer::default(),
        embedder: None,
    };
    let mut conns = ipc::connect(name, vec![page_env, sw_env], spawner).expect("connected");
    let worker = conns.pop().unwrap();
    let page = conns.pop().unwrap();

    // The service worker global: what each event saw. Its success event waits (as with
    // waitUntil) until the page is done with the records, which stay available meanwhile.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let page_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = seen.clone();
    let p = page_done.clone();
    worker.on_functional_event(move |e: client::FunctionalEvent| {
        let s = s.clone();
        let p = p.clone();
        async move {
            if e.kind() == Kind::Success {
                while !p.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let reg = e.registration().clone();
            let mut line = format!("{} {} {:?}", e.event_type(), reg.id(), reg.failure_reason());
            if matches!(e.kind(), Kind::Success | Kind::Fail | Kind::Abort) {
                for rec in reg.match_all(None, Default::default()).await.unwrap() {
                    let got = match rec.response_ready().await {
                        Ok(r) => format!("{}", r.bytes().await.unwrap().len()),
                        Err(err) => err.name().to_owned(),
                    };
                    line.push_str(&format!(" {}={got}", rec.index()));
                }
            }
            if e.kind() == Kind::Success {
                e.update_ui(BackgroundFetchUiOptions {
                    title: Some("Episode 5 saved".into()),
                    icons: None,
                })
                .await
                .unwrap();
            }
            s.lock().unwrap().push(line);
            DispatchOutcome::Completed
        }
        .boxed()
    });

    futures::executor::block_on(async {
        let m = page.background_fetch(&registration());
        // A whole fetch, relative URLs resolved in the child's realm.
        let reg = m
            .fetch(
                "podcast",
                vec!["/episode.mp3", "../cover.jpg"],
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(reg.id(), "podcast");
        let progress = Arc::new(Mutex::new(0u32));
        let p = progress.clone();
        reg.on_progress(move |_| *p.lock().unwrap() += 1);
        // A second fetch (the parent then lets the episode go), its ids, and its abort.
        let second = m.fetch("held", HELD, Default::default()).await.unwrap();
        // (The episode may have finished already: the parent drives the engine meanwhile.)
        let ids = m.get_ids().await.unwrap();
        assert!(ids.contains(&"held".to_owned()), "{ids:?}");
        assert!(second.abort().await.unwrap());
        assert!(!second.abort().await.unwrap());
        // match() streams the episode while it downloads.
        let rec = reg.r#match(A, Default::default()).await.unwrap().unwrap();
        let response = rec.response_ready().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert!(bytes == episode(), "the streamed body is the episode");
        page_done.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wait for the events and the result (the parent drives the engine).
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().unwrap().len() < 2 || reg.result() == Outcome::Empty {
            assert!(
                Instant::now() < deadline,
                "events: {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            (reg.result(), reg.downloaded()),
            (Outcome::Success, 200_004),
            "the page saw the result"
        );
        assert!(
            *progress.lock().unwrap() > 0,
            "progress events reached the page"
        );
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                format!(
                    "backgroundfetchabort held {:?} 0=AbortError",
                    Reason::Aborted
                ),
                format!(
                    "backgroundfetchsuccess podcast {:?} 0=200000 1=4",
                    Reason::Empty
                ),
            ]
        );
    });
}
