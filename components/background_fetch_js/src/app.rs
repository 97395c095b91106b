//! Web apps run headless against an embedder's hosts (what `bgfetch js` and `bgfetch run` call,
//! and the `bgfetch-js` program): the app's origin is a directory served on loopback as
//! `https://web-platform.test`, or a live origin reached through the embedder's network; the
//! page script runs in the page realm, its service workers are loaded from the origin, and the
//! loop runs until nothing is pending (or the timeout). On a redb store the fetches, the
//! caches ([`crate::cache_store`]) and the service worker registrations
//! ([`crate::registrations`]) are kept in the same database, so a fetch the page started
//! survives the process: [`resume_stored`] starts the registration's worker again, the fetch
//! resumes and its event fires at the worker.

use crate::cache_store::CacheStore;
use crate::engine_host::BrowserSide;
use crate::event_loop::EventLoop;
use crate::network::{AppNetwork, LoopbackNetwork, PageNetwork};
use crate::registrations::{AppOrigin, RegistrationRows, StoredRegistration};
use crate::server::{LoopbackServer, Site};
use background_fetch::{NetworkHost, PermissionState, ServiceWorkerRegistrationId};
use background_fetch_redb::RedbStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use url::Url;

/// What a web app's run left behind.
#[derive(Clone, Debug, Default)]
pub struct AppRun {
    /// Its console output (`level: text`).
    pub console: Vec<String>,
    /// Exceptions its scripts threw while loading, and what could not be done for it.
    pub errors: Vec<String>,
    /// The titles the UI showed, in order.
    pub ui_titles: Vec<String>,
    /// Its caches: name and the URLs of the requests stored.
    pub caches: Vec<(String, Vec<String>)>,
    /// The background-fetch events dispatched to its service workers (`type id`), and the
    /// `fetch()` calls that rejected (`rejected id: message`), in order.
    pub events: Vec<String>,
    /// Stopped from outside ([`AppOptions::stop`]): the ids of the fetches it left paused in
    /// the store, and those it could not pause.
    pub stopped: Option<Stopped>,
}

/// What an app stopped from outside left.
#[derive(Clone, Debug, Default)]
pub struct Stopped {
    /// The fetches paused (the user's pause, kept in the store).
    pub paused: Vec<String>,
    /// The fetches that could not be paused (`id: reason`: the store refused the pause, or the
    /// fetch cannot be paused, as one with an upload).
    pub failed: Vec<String>,
}

impl AppRun {
    /// The exit code, as `bgfetch fetch` gives it: 3 a script threw (or the app could not
    /// run), 2 a `fetch()` rejected, 1 a fetch failed or was aborted, else 0.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            3
        } else if self.events.iter().any(|e| e.starts_with("rejected ")) {
            2
        } else if self.events.iter().any(|e| {
            e.starts_with("backgroundfetchfail ") || e.starts_with("backgroundfetchabort ")
        }) {
            1
        } else {
            0
        }
    }

    /// What a program prints of the run on stdout, a line each: `console.LEVEL: TEXT`,
    /// `event: TYPE ID` (and `event: rejected ID: MESSAGE`), `ui: TITLE`, `cache NAME: URL...`.
    /// The errors are [`AppRun::errors`], for stderr.
    pub fn plain_lines(&self) -> Vec<String> {
        let console = self.console.iter().map(|l| format!("console.{l}"));
        let events = self.events.iter().map(|e| format!("event: {e}"));
        let ui = self.ui_titles.iter().map(|t| format!("ui: {t}"));
        let caches = self
            .caches
            .iter()
            .map(|(name, urls)| format!("cache {name}: {}", urls.join(" ")));
        console.chain(events).chain(ui).chain(caches).collect()
    }

    fn failed(message: String) -> AppRun {
        AppRun {
            errors: vec![message],
            ..AppRun::default()
        }
    }
}

/// How an app runs.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Where its origin comes from.
    pub origin: AppOrigin,
    /// How long the loop may run.
    pub timeout: Duration,
    /// Print console output as it comes (on stderr).
    pub verbose: bool,
    /// Set from outside (a program's SIGINT), the app stops at its loop's next turn and its
    /// running fetches are paused in the store (the user's pause: a later run resumes them).
    pub stop: Option<Arc<AtomicBool>>,
}

/// How a page's loop runs.
pub(crate) struct LoopOptions {
    /// How long it may run.
    pub timeout: Duration,
    /// Timers wait in real time (a program).
    pub real_time: bool,
    /// Console output as it comes.
    pub verbose: bool,
    /// See [`AppOptions::stop`].
    pub stop: Option<Arc<AtomicBool>>,
}

/// The embedder's hosts an app runs on.
#[derive(Clone)]
pub struct AppHosts {
    /// The store (fetches, caches and registrations).
    pub store: RedbStore,
    /// The network for every URL outside a loopback-served origin (`bgfetch`: hyper).
    pub network: Arc<dyn NetworkHost>,
}

/// What runs in the page: a prelude (such as registering the worker) and the page script (a
/// path under the origin), if any.
struct PageScripts<'a> {
    prelude: &'a str,
    page: Option<&'a str>,
}

/// Runs `page` (a path under the origin, such as `index.js`) in a page of the app's origin,
/// after `prelude` (for example `navigator.serviceWorker.register('/sw.js')`), on `hosts`.
/// `background-fetch` is granted.
pub fn run_page(options: &AppOptions, hosts: &AppHosts, prelude: &str, page: &str) -> AppRun {
    let page_url = match options.origin.url().join(&page.replace(".js", ".html")) {
        Ok(u) => u,
        Err(e) => return AppRun::failed(format!("{page}: {e}")),
    };
    run(
        options,
        hosts,
        page_url,
        PageScripts {
            prelude,
            page: Some(page),
        },
        RegistrationRows::new(hosts.store.clone(), options.origin.clone()),
        None,
    )
}

/// The stored registrations whose scope has fetches in `store` (the ones [`resume_stored`]
/// runs).
pub fn registrations_with_fetches(store: &RedbStore) -> Result<Vec<StoredRegistration>, String> {
    let with_fetches = futures::executor::block_on(store.registrations())
        .map_err(|e| format!("reading the store: {e}"))?;
    Ok(crate::registrations::stored(store)?
        .into_iter()
        .filter(|r| with_fetches.contains(&ServiceWorkerRegistrationId::for_scope(&r.scope)))
        .collect())
}

/// Starts `registration`'s worker again (from a page at its scope that registers it, as the
/// app's page did) and runs until nothing is pending: its fetches in the store resume, and
/// their events fire at the worker.
///
/// AD-HOC: a browser starts the worker alone for a functional event; this host's workers are
/// registered by a page, so a blank page of the origin registers it again.
pub fn resume_stored(
    registration: &StoredRegistration,
    hosts: &AppHosts,
    timeout: Duration,
    verbose: bool,
    stop: Option<Arc<AtomicBool>>,
) -> AppRun {
    let options = AppOptions {
        origin: registration.origin.clone(),
        timeout,
        verbose,
        stop,
    };
    let prelude = format!(
        "navigator.serviceWorker.register({}, {{scope: {}}});",
        serde_json::to_string(registration.script_url.as_str()).unwrap_or_default(),
        serde_json::to_string(registration.scope.as_str()).unwrap_or_default(),
    );
    // The worker runs from its stored scripts (those kept when it ran), not the origin's.
    let rows = RegistrationRows::resuming(hosts.store.clone(), registration);
    run(
        &options,
        hosts,
        registration.scope.clone(),
        PageScripts {
            prelude: &prelude,
            page: None,
        },
        rows,
        Some(registration.scope.clone()),
    )
}

fn run(
    options: &AppOptions,
    hosts: &AppHosts,
    page_url: Url,
    scripts: PageScripts,
    rows: RegistrationRows,
    resume_paused: Option<Url>,
) -> AppRun {
    // The loopback server lives as long as the run.
    let (_server, loopback) = match &options.origin {
        AppOrigin::Root(dir) => match LoopbackServer::start(Site::new(dir)) {
            Ok(server) => {
                let network = LoopbackNetwork::new(
                    server.runtime(),
                    server.main_addr(),
                    server.remote_addr(),
                );
                (Some(server), Some(network))
            }
            Err(e) => return AppRun::failed(format!("{}: {e}", dir.display())),
        },
        AppOrigin::Live(_) => (None, None),
    };
    let origin = page_url.origin().ascii_serialization();
    let caches = match CacheStore::on_store(hosts.store.clone(), &origin) {
        Ok(c) => c,
        Err(e) => return AppRun::failed(e),
    };
    let network = AppNetwork::new(loopback, hosts.network.clone());
    let browser = BrowserSide::start_app(network, Arc::new(hosts.store.clone()));
    browser.permission.set(PermissionState::Granted);
    if let Some(scope) = resume_paused {
        // A fetch an interrupted run left paused continues (as `bgfetch run` does for the
        // program's own).
        let registration = ServiceWorkerRegistrationId::for_scope(&scope);
        for f in browser.engine.fetches() {
            if f.registration == registration && f.active && f.ui.paused {
                let engine = browser.engine.clone();
                let resumed = crate::engine_host::run_to_completion(
                    &browser.executor,
                    &browser.clock,
                    async move { engine.resume(f.uid).await },
                );
                if let Err(e) = resumed {
                    return AppRun::failed(format!(
                        "{}: the resume could not be stored: {e}",
                        f.id
                    ));
                }
            }
        }
    }
    run_in_page(
        browser,
        page_url,
        scripts.prelude,
        scripts.page,
        caches,
        Some(rows),
        LoopOptions {
            timeout: options.timeout,
            real_time: true,
            verbose: options.verbose,
            stop: options.stop.clone(),
        },
    )
}

/// Runs a page on `browser`: `prelude`, then `page` (loaded from the origin), the `load`
/// event, and the loop until nothing is pending (or the timeout, or a stop); collects what it
/// left.
pub(crate) fn run_in_page(
    browser: BrowserSide,
    page_url: Url,
    prelude: &str,
    page: Option<&str>,
    caches: CacheStore,
    registrations: Option<RegistrationRows>,
    options: LoopOptions,
) -> AppRun {
    let ui = browser.ui.clone();
    let events = browser.events.clone();
    let network: Arc<dyn PageNetwork> = browser.network.clone();
    let engine_side = browser.clone();
    let mut event_loop = EventLoop::new(browser, page_url.clone(), options.verbose);
    event_loop.real_time = options.real_time;
    event_loop.stop = options.stop.clone();
    event_loop.inspect(|s| {
        s.caches = caches;
        s.registrations = registrations;
    });
    let mut errors = Vec::new();
    if let Err(e) = event_loop.eval_page("prelude", prelude) {
        errors.push(e);
    }
    if let Some(page) = page {
        let url = page_url.join(page).expect("a URL");
        match network.get_blocking(&url) {
            Ok(r) if r.status == 200 => {
                let source = encoding_rs::UTF_8
                    .decode_with_bom_removal(&r.body)
                    .0
                    .into_owned();
                if let Err(e) = event_loop.eval_page(page, &source) {
                    errors.push(e);
                }
            }
            Ok(r) => errors.push(format!("{url} answered {}", r.status)),
            Err(e) => errors.push(e),
        }
    }
    let _ = event_loop.eval_page(
        "load",
        "globalThis[Symbol.for('background-fetch-js.load')]()",
    );
    event_loop.run(options.timeout);
    let stopped = options
        .stop
        .as_ref()
        .filter(|s| s.load(Ordering::SeqCst))
        .map(|_| pause_running(&engine_side));
    let ui_titles = ui
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            background_fetch::testing::UiCall::Show(s)
            | background_fetch::testing::UiCall::Update(s) => Some(s.title),
            _ => None,
        })
        .collect();
    let (console, caches) = event_loop.inspect(|s| {
        let caches = s
            .caches
            .names()
            .into_iter()
            .map(|n| {
                let urls = s
                    .caches
                    .entries(&n)
                    .unwrap_or_default()
                    .iter()
                    .map(|e| e["request"]["url"].as_str().unwrap_or_default().to_owned())
                    .collect();
                (n, urls)
            })
            .collect();
        (s.console.clone(), caches)
    });
    drop(event_loop);
    let events = events.lock().unwrap().clone();
    AppRun {
        console,
        errors,
        ui_titles,
        caches,
        events,
        stopped,
    }
}

/// The user's pause of every running fetch (kept in the store), for an app stopped from
/// outside.
fn pause_running(browser: &BrowserSide) -> Stopped {
    let mut stopped = Stopped::default();
    for f in browser.engine.fetches() {
        if !f.active || f.ui.paused || f.ui.result != background_fetch::BackgroundFetchResult::Empty
        {
            continue;
        }
        let engine = browser.engine.clone();
        let paused =
            crate::engine_host::run_to_completion(&browser.executor, &browser.clock, async move {
                engine.pause(f.uid).await
            });
        match paused {
            Ok(()) => stopped.paused.push(f.id),
            Err(e) => stopped.failed.push(format!("{}: {e}", f.id)),
        }
    }
    stopped
}
