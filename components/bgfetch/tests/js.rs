//! `bgfetch js`: web apps' JavaScript on the program's hosts (redb store, hyper network).
//!
//! * MDN's Background Fetch example, verbatim and as intended, from a directory served on
//!   loopback (`--root`);
//! * an app on a live origin (`--origin`, a loopback server this test starts) whose download
//!   is cut off by `kill -9`: `bgfetch run` starts the app's service worker again, the fetch
//!   finishes, and the worker's `backgroundfetchsuccess` handler copies the record into its
//!   cache, which the next `bgfetch js` run finds;
//! * the same when the origin no longer serves the worker's scripts by then: the worker runs
//!   from the scripts kept with its registration (its script and what it imported);
//! * SIGINT pauses the app's fetch in the store and exits 130; `bgfetch run` continues it;
//! * `--json` prints one JSON object per line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

fn bgfetch(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bgfetch"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("bgfetch runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mdn_app(dir: &Path, worker: &str) {
    let mdn = Path::new(env!("CARGO_MANIFEST_DIR")).join("../background_fetch_js/tests/apps/mdn");
    std::fs::copy(mdn.join("index.js"), dir.join("index.js")).unwrap();
    std::fs::copy(mdn.join(worker), dir.join("sw.js")).unwrap();
    std::fs::write(dir.join("ep-5.mp3"), vec![0x49u8; 200 * 1024]).unwrap();
    std::fs::write(dir.join("ep-5-artwork.jpg"), vec![0xffu8; 30 * 1024]).unwrap();
}

/// Runs MDN's app with `worker` as its service worker under `bgfetch [global...] js`, on a new
/// store.
fn run_mdn_app(worker: &str, global: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    mdn_app(&app, worker);
    let store = dir.path().join("store.redb");
    let root = app.to_str().unwrap();
    let mut args = global.to_vec();
    args.extend(["js", "--root", root, "--register", "/sw.js", "index.js"]);
    bgfetch(&store, &args)
}

#[test]
fn mdn_s_example_as_intended_runs_under_bgfetch_js() {
    let out = run_mdn_app("sw-intended.js", &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("event: backgroundfetchsuccess"), "{t}");
    assert!(t.contains("ui: Movie download complete!"), "{t}");
    assert!(t.contains("cache movies: "), "{t}");
    assert!(t.contains("https://web-platform.test/ep-5.mp3"), "{t}");
    assert!(
        t.contains("https://web-platform.test/ep-5-artwork.jpg"),
        "{t}"
    );
}

#[test]
fn mdn_s_example_verbatim_runs_under_bgfetch_js_and_copies_nothing() {
    let out = run_mdn_app("sw.js", &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // The event fires; waitUntil is given a function, so nothing runs in it.
    assert!(t.contains("event: backgroundfetchsuccess"), "{t}");
    assert!(!t.contains("Movie download complete!"), "{t}");
    assert!(!t.contains("cache movies: https"), "{t}");
}

#[test]
fn a_page_that_throws_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.js"),
        "throw new Error('broken page');\n",
    )
    .unwrap();
    let store = dir.path().join("store.redb");
    let out = bgfetch(
        &store,
        &["js", "--root", dir.path().to_str().unwrap(), "index.js"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("broken page"), "{t}");
}

const PAGE: &str = "\
navigator.serviceWorker.register('/sw.js');
navigator.serviceWorker.ready
  .then(reg => reg.backgroundFetch.fetch('big', ['/big'], {title: 'Big'}))
  .then(r => console.log('started', r.id));
";

const WORKER: &str = "\
addEventListener('backgroundfetchsuccess', event => {
  event.waitUntil((async () => {
    const records = await event.registration.matchAll();
    const cache = await caches.open('big');
    for (const r of records) await cache.put(r.request, await r.responseReady);
    console.log('worker: success', event.registration.id, records.length);
  })());
});
";

/// A page and worker whose handler lives in an imported script.
const PAGE_IMPORTS: &str = "\
navigator.serviceWorker.register('/sw-imports.js');
navigator.serviceWorker.ready
  .then(reg => reg.backgroundFetch.fetch('big', ['/big'], {title: 'Big'}))
  .then(r => console.log('started', r.id));
";

const WORKER_IMPORTS: &str = "\
importScripts('/helper.js');
addEventListener('backgroundfetchsuccess', event => event.waitUntil(keep(event)));
";

const HELPER: &str = "\
async function keep(event) {
  const records = await event.registration.matchAll();
  const cache = await caches.open('big');
  for (const r of records) await cache.put(r.request, await r.responseReady);
  console.log('helper: kept', event.registration.id, records.length);
}
";

const CHECK: &str = "\
caches.open('big').then(c => c.match('/big')).then(r => r.arrayBuffer())
  .then(b => console.log('cached bytes', b.byteLength));
";

/// The size of `/big`.
const BIG: usize = 4 << 20;

/// The live origin: serves the app's scripts, and `/big`, which stops after its first half
/// until it is released (the test kills the client meanwhile), then is served whole.
struct Origin {
    port: u16,
    /// Set once the first half of `/big` was sent (and the server waits).
    half_sent: Arc<(Mutex<bool>, Condvar)>,
    released: Arc<AtomicBool>,
    /// Set, the origin answers 404 for the app's scripts (`/big` stays).
    scripts_gone: Arc<AtomicBool>,
}

fn respond(
    mut s: TcpStream,
    half_sent: &(Mutex<bool>, Condvar),
    released: &AtomicBool,
    scripts_gone: &AtomicBool,
) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
    }
    let gone = scripts_gone.load(Ordering::SeqCst) && path.ends_with(".js");
    let (kind, body): (&str, Vec<u8>) = match path.as_str() {
        _ if gone => ("", Vec::new()),
        "/index.js" => ("text/javascript", PAGE.into()),
        "/imports.js" => ("text/javascript", PAGE_IMPORTS.into()),
        "/check.js" => ("text/javascript", CHECK.into()),
        "/sw.js" => ("text/javascript", WORKER.into()),
        "/sw-imports.js" => ("text/javascript", WORKER_IMPORTS.into()),
        "/helper.js" => ("text/javascript", HELPER.into()),
        "/big" => ("application/octet-stream", vec![0x42; BIG]),
        _ => ("", Vec::new()),
    };
    if kind.is_empty() {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    if path == "/big" && !released.load(Ordering::SeqCst) {
        let _ = s.write_all(&body[..BIG / 2]);
        let _ = s.flush();
        let (lock, cv) = half_sent;
        *lock.lock().unwrap() = true;
        cv.notify_all();
        // Holds the connection until the test released it (the client is gone by then).
        let mut sink = [0u8; 1];
        let _ = s.read(&mut sink);
        return;
    }
    let _ = s.write_all(&body);
}

fn start_origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let half_sent = Arc::new((Mutex::new(false), Condvar::new()));
    let released = Arc::new(AtomicBool::new(false));
    let scripts_gone = Arc::new(AtomicBool::new(false));
    let (h, r, g) = (half_sent.clone(), released.clone(), scripts_gone.clone());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (h, r, g) = (h.clone(), r.clone(), g.clone());
            std::thread::spawn(move || respond(s, &h, &r, &g));
        }
    });
    Origin {
        port,
        half_sent,
        released,
        scripts_gone,
    }
}

/// Runs `bgfetch js --origin ORIGIN page` on `store` and kills it (SIGKILL) once the first half
/// of `/big` is out.
fn kill_mid_download(origin: &Origin, store: &Path, page: &str) {
    let url = format!("http://127.0.0.1:{}", origin.port);
    let killed = signal_mid_download(origin, store, &["js", "--origin", &url, page], None);
    assert!(!killed.status.success(), "{}", text(&killed));
}

/// Runs `bgfetch ARGS` on `store` and, once the first half of `/big` is out (again), sends it
/// `signal` (`-INT`, ...; SIGKILL when `None`); what it printed and its status.
fn signal_mid_download(
    origin: &Origin,
    store: &Path,
    args: &[&str],
    signal: Option<&str>,
) -> Output {
    *origin.half_sent.0.lock().unwrap() = false;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bgfetch"))
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        // Until the first half of `/big` is out (or the program ended without asking for it).
        let (lock, cv) = &*origin.half_sent;
        let mut sent = lock.lock().unwrap();
        while !*sent {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "bgfetch {args:?} ended first ({status}): {}",
                    text(&child.wait_with_output().unwrap())
                );
            }
            sent = cv
                .wait_timeout(sent, std::time::Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }
    match signal {
        None => child.kill().unwrap(), // SIGKILL
        Some(signal) => assert!(
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        ),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fetch_started_by_a_page_survives_kill_9_and_bgfetch_run_runs_the_worker_s_handler() {
    let origin = start_origin();
    let url = format!("http://127.0.0.1:{}", origin.port);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    kill_mid_download(&origin, &store, "index.js");
    origin.released.store(true, Ordering::SeqCst);

    let out = bgfetch(&store, &["run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("app: starting the service worker {url}/sw.js")),
        "{t}"
    );
    assert!(t.contains("event: backgroundfetchsuccess big"), "{t}");
    assert!(t.contains("console.log: worker: success big 1"), "{t}");
    assert!(t.contains(&format!("cache big: {url}/big")), "{t}");

    // The worker's cache is in the store: the next run of the app finds the whole body.
    let out = bgfetch(&store, &["js", "--origin", &url, "check.js"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("console.log: cached bytes {BIG}")),
        "{t}"
    );
    // Nothing is left to run.
    let out = bgfetch(&store, &["run"]);
    assert!(!text(&out).contains("app: starting"), "{}", text(&out));
}

/// The worker that handles a resumed fetch is the one that was installed: its script and what
/// it imported are kept with its registration, and `bgfetch run` starts it from them when the
/// origin no longer serves them (a 404 for every script by then). Before, the run fetched the
/// worker's script again from the origin and the handler never ran.
#[test]
fn a_resumed_worker_runs_from_its_kept_scripts_when_the_origin_no_longer_serves_them() {
    let origin = start_origin();
    let url = format!("http://127.0.0.1:{}", origin.port);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    kill_mid_download(&origin, &store, "imports.js");
    origin.scripts_gone.store(true, Ordering::SeqCst);
    origin.released.store(true, Ordering::SeqCst);

    let out = bgfetch(&store, &["run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!(
            "app: starting the service worker {url}/sw-imports.js"
        )),
        "{t}"
    );
    assert!(t.contains("event: backgroundfetchsuccess big"), "{t}");
    assert!(t.contains("console.log: helper: kept big 1"), "{t}");
    assert!(t.contains(&format!("cache big: {url}/big")), "{t}");
    // Kept again by the run that used them: a second crash would find them too.
    let out = bgfetch(&store, &["run"]);
    assert!(!text(&out).contains("app: starting"), "{}", text(&out));
}

/// SIGINT stops `bgfetch js` as it stops `bgfetch fetch`: the app's running fetch is paused in
/// the store (the user's pause), what the app did is printed, the exit code is 130, and
/// `bgfetch run` continues the fetch and runs the worker's handler. Before, SIGINT killed the
/// program outright (no exit code, nothing printed, nothing paused).
#[test]
fn sigint_pauses_the_app_s_fetch_and_bgfetch_run_continues_it() {
    let origin = start_origin();
    let url = format!("http://127.0.0.1:{}", origin.port);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let interrupted = signal_mid_download(
        &origin,
        &store,
        &["js", "--origin", &url, "index.js"],
        Some("-INT"),
    );
    let t = text(&interrupted);
    assert_eq!(interrupted.status.code(), Some(130), "{t}");
    assert!(t.contains("console.log: started big"), "{t}");
    assert!(
        t.contains("interrupted: big paused in the store; `bgfetch run` continues them"),
        "{t}"
    );
    // Paused in the store: another process sees it so.
    let ls = bgfetch(&store, &["ls"]);
    let l = text(&ls);
    assert!(l.contains("big") && l.contains("paused"), "{l}");
    origin.released.store(true, Ordering::SeqCst);

    let out = bgfetch(&store, &["run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("event: backgroundfetchsuccess big"), "{t}");
    assert!(t.contains("console.log: worker: success big 1"), "{t}");
    assert!(t.contains(&format!("cache big: {url}/big")), "{t}");
}

/// `bgfetch --json js` prints one JSON object per line on stdout: the console, the events the
/// worker received, the UI's titles and the caches.
#[test]
fn json_prints_one_object_per_line() {
    let out = run_mdn_app("sw-intended.js", &["--json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{t}")))
        .collect();
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| lines.iter().any(f);
    assert!(
        has(&|v| v["event"] == "dispatched" && v["type"] == "backgroundfetchsuccess"),
        "{t}"
    );
    assert!(has(&|v| v["event"] == "ui"), "{t}");
    assert!(
        has(&|v| v["event"] == "cache" && v["urls"].as_array().is_some_and(|u| !u.is_empty())),
        "{t}"
    );
    assert!(lines.iter().all(|v| v["event"].is_string()), "{t}");
}

/// SIGINT while `bgfetch run` resumes an app's fetch does what it does in `bgfetch js`: the
/// fetch is paused in the store and the exit code is 130; the next `bgfetch run` finishes it.
/// Before, the signal killed the program outright while an app ran.
#[test]
fn sigint_while_bgfetch_run_resumes_an_app_pauses_its_fetch() {
    let origin = start_origin();
    let url = format!("http://127.0.0.1:{}", origin.port);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    kill_mid_download(&origin, &store, "index.js");
    // The resumed download stops at half again, and the run is interrupted there.
    let interrupted = signal_mid_download(&origin, &store, &["run"], Some("-INT"));
    let t = text(&interrupted);
    assert_eq!(interrupted.status.code(), Some(130), "{t}");
    assert!(
        t.contains("interrupted: big paused in the store; `bgfetch run` continues them"),
        "{t}"
    );
    origin.released.store(true, Ordering::SeqCst);

    let out = bgfetch(&store, &["run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("console.log: worker: success big 1"), "{t}");
    assert!(t.contains(&format!("cache big: {url}/big")), "{t}");
}
