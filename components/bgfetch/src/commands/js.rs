//! `bgfetch js`: runs a web app headless on the program's hosts (the redb store, the hyper
//! network), and what `bgfetch run` does for the fetches such apps left in the store. The app
//! itself (page and service-worker realms on Boa, the Background Fetch bindings, the Cache
//! API) is `background-fetch-js`'s [`background_fetch_js::app`]; this is its command line.

use crate::app::{StoreOpen, open_store};
use crate::exit;
use crate::network::NetArgs;
use crate::output::{Mode, Reporter};
use crate::signals::{Signals, Stop};
use background_fetch_hyper::HyperNetwork;
use background_fetch_js::app::{AppHosts, AppOptions, AppRun, registrations_with_fetches};
use background_fetch_js::registrations::AppOrigin;
use background_fetch_redb::RedbStore;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use url::Url;

/// The arguments of `bgfetch js`.
#[derive(Clone, Debug)]
pub struct JsArgs {
    /// The app's directory, served on loopback as its origin.
    pub root: Option<PathBuf>,
    /// A live origin instead.
    pub origin: Option<String>,
    /// A worker script the page registers first (for pages that leave it to another page).
    pub register: Option<String>,
    /// The page script, a path under the origin.
    pub page: String,
    /// How long the app may run.
    pub timeout: Duration,
    /// The network options.
    pub net: NetArgs,
}

/// Parses `--timeout`: seconds, or a number with `ms`, `s`, `m` or `h`.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (such as 30, 90s, 500ms, 5m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: the unit is ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// The program's network and the store, for an app.
fn hosts(store: RedbStore, net: &NetArgs) -> Result<AppHosts, String> {
    let setup = net.setup(|k| std::env::var(k).ok())?;
    let network = HyperNetwork::with_handle(tokio::runtime::Handle::current(), setup.config)
        .map_err(|e| format!("cannot set up the network: {e}"))?;
    Ok(AppHosts {
        store,
        network: Arc::new(network),
    })
}

fn open(path: &Path) -> Result<RedbStore, String> {
    open_store(path).map_err(|e| match e {
        StoreOpen::Locked => format!(
            "the store {} is in use by another bgfetch process",
            path.display()
        ),
        StoreOpen::Failed(m) => m,
    })
}

/// The stack of an app's thread: Boa's interpreter recurses deeply (a runtime worker's 2 MiB
/// overflow on MDN's example in a debug build).
const APP_STACK: usize = 256 << 20;

/// Runs `f` (an app's event loop, which blocks: Boa is not async) on a thread of its own.
async fn on_app_thread(f: impl FnOnce() -> AppRun + Send + 'static) -> AppRun {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("bgfetch-js app".into())
        .stack_size(APP_STACK)
        .spawn(move || {
            let _ = tx.send(f());
        });
    let failed = |e: String| AppRun {
        errors: vec![format!("the app's thread: {e}")],
        ..AppRun::default()
    };
    match spawned {
        Ok(_) => rx.await.unwrap_or_else(|e| failed(e.to_string())),
        Err(e) => failed(e.to_string()),
    }
}

/// Prints what the app did: its console, the events its workers received, the UI, its caches;
/// with `--json`, one JSON object per line on stdout (`{"event": "console", "level", "text"}`,
/// `{"event": "dispatched", "type", "id"}`, `{"event": "rejected", "id", "message"}`,
/// `{"event": "ui", "title"}`, `{"event": "cache", "name", "urls"}`, `{"event": "error",
/// "message"}`, `{"event": "paused", "id"}`), the errors also on stderr.
fn print(run: &AppRun, mode: Mode) {
    if mode == Mode::Json {
        for line in json_lines(run) {
            println!("{line}");
        }
        for e in &run.errors {
            eprintln!("error: {e}");
        }
        return;
    }
    for line in run.plain_lines() {
        println!("{line}");
    }
    for e in &run.errors {
        eprintln!("error: {e}");
    }
}

fn json_lines(run: &AppRun) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for line in &run.console {
        let (level, text) = line.split_once(": ").unwrap_or(("log", line));
        out.push(json!({"event": "console", "level": level, "text": text}));
    }
    for event in &run.events {
        out.push(match event.strip_prefix("rejected ") {
            Some(rest) => {
                let (id, message) = rest.split_once(": ").unwrap_or((rest, ""));
                json!({"event": "rejected", "id": id, "message": message})
            }
            None => {
                let (kind, id) = event.split_once(' ').unwrap_or((event, ""));
                json!({"event": "dispatched", "type": kind, "id": id})
            }
        });
    }
    for title in &run.ui_titles {
        out.push(json!({"event": "ui", "title": title}));
    }
    for (name, urls) in &run.caches {
        out.push(json!({"event": "cache", "name": name, "urls": urls}));
    }
    for e in &run.errors {
        out.push(json!({"event": "error", "message": e}));
    }
    if let Some(stopped) = &run.stopped {
        for id in &stopped.paused {
            out.push(json!({"event": "paused", "id": id}));
        }
        for e in &stopped.failed {
            out.push(json!({"event": "error", "message": format!("not paused: {e}")}));
        }
    }
    out
}

/// Runs `bgfetch js`. SIGINT, SIGTERM or SIGHUP stop the app at its loop's next turn: its
/// running fetches are paused in the store (the user's pause; `bgfetch run` continues them),
/// what it did is printed, and the exit code is the signal's (130, 143, 129).
pub async fn js(path: &Path, reporter: Arc<Reporter>, args: JsArgs) -> i32 {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            return exit::ERROR;
        }
    };
    let origin = match (&args.root, &args.origin) {
        (Some(root), None) => match std::path::absolute(root) {
            Ok(r) if r.is_dir() => AppOrigin::Root(r),
            _ => {
                eprintln!("error: --root {}: not a directory", root.display());
                return exit::ERROR;
            }
        },
        (None, Some(o)) => match Url::parse(o) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => AppOrigin::Live(u),
            _ => {
                eprintln!("error: --origin {o}: not an http(s) URL");
                return exit::ERROR;
            }
        },
        _ => {
            eprintln!("error: give exactly one of --root DIR and --origin URL");
            return exit::ERROR;
        }
    };
    let store = match open(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let hosts = match hosts(store.clone(), &args.net) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let options = AppOptions {
        origin,
        timeout: args.timeout,
        verbose: false,
        stop: Some(stop.clone()),
    };

    let mut prelude = String::new();
    if let Some(sw) = &args.register {
        prelude = format!(
            "navigator.serviceWorker.register({});",
            serde_json::to_string(sw).unwrap_or_default()
        );
    }
    let page = args.page.clone();
    // The app's event loop blocks its thread (Boa is not async).
    let app = on_app_thread(move || {
        background_fetch_js::app::run_page(&options, &hosts, &prelude, &page)
    });
    let (run, signal) = until_signal(app, &signals, &stop).await;
    print(&run, reporter.mode());
    let _ = store.close().await;
    if let Some(how) = signal {
        report_stopped(&run, how);
        return how.exit_code();
    }
    run.exit_code()
}

/// Runs `app` until it ends; a stop signal meanwhile sets `stop` (the app's loop ends at its
/// next turn and pauses its fetches) and the app is awaited all the same. The run and the
/// signal, if one came.
async fn until_signal(
    app: impl std::future::Future<Output = AppRun>,
    signals: &Signals,
    stop: &AtomicBool,
) -> (AppRun, Option<Stop>) {
    tokio::pin!(app);
    tokio::select! {
        run = &mut app => (run, None),
        how = signals.stopped() => {
            stop.store(true, Ordering::SeqCst);
            (app.await, Some(how))
        }
    }
}

/// Says what a stopped app left paused (on stderr).
fn report_stopped(run: &AppRun, how: Stop) {
    let Some(stopped) = &run.stopped else { return };
    for e in &stopped.failed {
        eprintln!("error: not paused: {e}; `bgfetch run` continues it from what the store holds");
    }
    if !stopped.paused.is_empty() {
        eprintln!(
            "{}: {} paused in the store; `bgfetch run` continues them",
            how.describe(),
            stopped.paused.join(", ")
        );
    }
}

/// For `bgfetch run`: starts the service worker of every stored app registration that has
/// fetches in the store (from the scripts kept with the registration), so that they resume and
/// their events fire at the app's worker. A stop signal pauses the running app's fetches in the
/// store, as in `bgfetch js`, and the signal's exit code is returned (no further app runs).
/// Returns
/// the worst exit code (0 when there was none). The store is closed again when it returns.
pub async fn resume_apps(path: &Path, net: &NetArgs, timeout: Duration) -> i32 {
    if !path.exists() {
        return exit::SUCCESS;
    }
    let store = match open_store(path) {
        Ok(s) => s,
        // Another process runs the store's fetches: the program's own `run` says so.
        Err(StoreOpen::Locked) => return exit::SUCCESS,
        Err(StoreOpen::Failed(e)) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let registrations = match registrations_with_fetches(&store) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            let _ = store.close().await;
            return exit::ERROR;
        }
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            let _ = store.close().await;
            return exit::ERROR;
        }
    };
    let mut code = exit::SUCCESS;
    for registration in registrations {
        let hosts = match hosts(store.clone(), net) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::ERROR;
                break;
            }
        };
        println!(
            "app: starting the service worker {} of {}",
            registration.script_url, registration.scope
        );
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let app = on_app_thread(move || {
            background_fetch_js::app::resume_stored(&registration, &hosts, timeout, false, Some(s))
        });
        let (run, signal) = until_signal(app, &signals, &stop).await;
        print(&run, Mode::Plain);
        if let Some(how) = signal {
            report_stopped(&run, how);
            code = how.exit_code();
            break;
        }
        code = code.max(run.exit_code());
    }
    let _ = store.close().await;
    drop(store);
    code
}
