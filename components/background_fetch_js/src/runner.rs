//! The upstream WPT runner: serves a WPT root on loopback, runs each test file of
//! `background-fetch/` in its own page (a fresh engine and event loop), in testharness.js's
//! own harness, and collects every subtest's status.
//!
//! Loading follows wptserve's generated wrappers: testharness.js, then the host's report hooks
//! (in place of testharnessreport.js), then every `// META: script=` file, then the test file,
//! all in one task with no microtask checkpoint between them (testharness.js's shell
//! environment considers the page loaded one microtask after it ran). The `document` stub is
//! defined after testharness.js, so that it keeps its shell environment.

use crate::cache_store::CacheStore;
use crate::engine_host::BrowserSide;
use crate::event_loop::EventLoop;
use crate::network::LoopbackNetwork;
use crate::server::{LoopbackServer, ORIGIN, Site};
use crate::state::Report;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// One subtest's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtestResult {
    /// The test file (`fetch.https.window.js`).
    pub file: String,
    /// The subtest's name.
    pub name: String,
    /// `PASS`, `FAIL`, `TIMEOUT`, `NOTRUN`.
    pub status: String,
    /// The message.
    pub message: String,
}

/// A file's run.
#[derive(Clone, Debug)]
pub struct FileResult {
    /// The test file.
    pub file: String,
    /// Its subtests.
    pub subtests: Vec<SubtestResult>,
    /// The harness status (`OK`, `ERROR`, `TIMEOUT`) and message.
    pub harness: (String, String),
}

pub use crate::app::AppRun;

/// The runner of one WPT root.
pub struct Runner {
    server: LoopbackServer,
    network: LoopbackNetwork,
    /// Print console output.
    pub verbose: bool,
    /// Virtual time a file may take.
    pub timeout: Duration,
    /// Apps' timers wait in real time.
    pub real_time: bool,
    /// Apps keep their background fetches in this redb store (in memory without).
    pub store: Option<PathBuf>,
}

/// The WPT root beside the workspace (`../shared/wpt-upstream` from the workspace root).
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/wpt-upstream")
}

/// The test files of `background-fetch/` under `root`, sorted.
pub fn test_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(root.join("background-fetch"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".window.js") || n.ends_with(".any.js"))
        .collect();
    files.sort();
    Ok(files)
}

impl Runner {
    /// Starts the loopback server on `root`.
    pub fn new(root: &Path) -> std::io::Result<Runner> {
        let server = LoopbackServer::start(Site::new(root))?;
        let network =
            LoopbackNetwork::new(server.runtime(), server.main_addr(), server.remote_addr());
        Ok(Runner {
            server,
            network,
            verbose: false,
            timeout: Duration::from_secs(60),
            real_time: false,
            store: None,
        })
    }

    /// The server.
    pub fn server(&self) -> &LoopbackServer {
        &self.server
    }

    /// Runs a web app's page script `page` (a path under the root, such as `index.js`) in a
    /// page at `https://web-platform.test/`, after `prelude` (for example the registration of
    /// the app's service worker), until nothing is pending any more (or the timeout).
    pub fn run_app(&self, prelude: &str, page: &str) -> AppRun {
        let page_url =
            Url::parse(&format!("{ORIGIN}/{}", page.replace(".js", ".html"))).expect("a URL");
        let mut caches = None;
        let browser = match &self.store {
            None => BrowserSide::start(self.network.clone()),
            Some(path) => match background_fetch_redb::RedbStore::open(path, Default::default()) {
                Ok(store) => {
                    // The app's caches live in the same database as its fetches.
                    match CacheStore::on_store(store.clone(), ORIGIN) {
                        Ok(c) => caches = Some(c),
                        Err(e) => {
                            return AppRun {
                                errors: vec![e],
                                ..AppRun::default()
                            };
                        }
                    }
                    BrowserSide::start_with_store(self.network.clone(), Arc::new(store))
                }
                Err(e) => {
                    return AppRun {
                        errors: vec![format!("{}: {e}", path.display())],
                        ..AppRun::default()
                    };
                }
            },
        };
        crate::app::run_in_page(
            browser,
            page_url,
            prelude,
            Some(page),
            caches.unwrap_or_default(),
            None,
            crate::app::LoopOptions {
                timeout: self.timeout,
                real_time: self.real_time,
                verbose: self.verbose,
                stop: None,
            },
        )
    }

    /// Runs every variant of `file` (a name in `background-fetch/`): a `.window.js` file in a
    /// page; an `.any.js` file in a page (`X.any.html`) and, for each worker its `global`
    /// names (`worker` is all three), in a dedicated worker (`X.any.worker.html`), a shared
    /// worker (`X.any.sharedworker.html`) and a service worker (`X.any.serviceworker.html`).
    pub fn run_file(&self, file: &str) -> Vec<FileResult> {
        if !file.ends_with(".any.js") {
            return vec![self.run_page(file, file)];
        }
        let text = self.test_file_text(file);
        let globals = text
            .lines()
            .filter_map(|l| l.strip_prefix("// META:"))
            .filter_map(|l| l.trim().strip_prefix("global="))
            .next()
            .unwrap_or("window,dedicatedworker")
            .to_owned();
        let mut out = Vec::new();
        let stem = file.trim_end_matches(".js");
        if globals.split(',').any(|g| g.trim() == "window") {
            out.push(self.run_page(&format!("{stem}.html"), file));
        }
        let has = |kind: &str| {
            globals
                .split(',')
                .any(|g| g.trim() == kind || g.trim() == "worker")
        };
        if has("dedicatedworker") {
            out.push(self.run_worker(&format!("{stem}.worker.html"), "Worker"));
        }
        if has("sharedworker") {
            out.push(self.run_worker(&format!("{stem}.sharedworker.html"), "SharedWorker"));
        }
        if has("serviceworker") {
            out.push(self.run_service_worker(&format!("{stem}.serviceworker.html"), file));
        }
        out
    }

    /// Runs an `.any.js` file in a dedicated or shared worker as wptserve's generated
    /// `X.any.worker.html` and `X.any.sharedworker.html` do: a page with testharness.js that
    /// calls `fetch_tests_from_worker(new Worker("X.any.worker.js"))` (or `SharedWorker` and
    /// `X.any.sharedworker.js`); the generated worker script runs testharness.js, the META
    /// scripts and the test by `importScripts`, and the page's testharness.js reports the
    /// worker's results as its own.
    fn run_worker(&self, key: &str, constructor: &str) -> FileResult {
        let page_url = Url::parse(&format!("{ORIGIN}/background-fetch/{key}")).expect("a URL");
        let script = key.replace(".html", ".js");
        let tail = format!("fetch_tests_from_worker(new {constructor}({script:?}));");
        let scripts = vec![Url::parse(&format!("{ORIGIN}/resources/testharness.js")).expect("URL")];
        self.run_in_page(key, page_url, scripts, false, Some(tail))
    }

    /// Runs an `.any.js` file in a service worker: the page registers the generated
    /// `X.any.serviceworker.js` (testharness.js, the META scripts and the test, run by
    /// `importScripts` in the worker's realm) and connects to testharness.js's service worker
    /// environment, which posts every result to the page (as `fetch_tests_from_worker` does).
    fn run_service_worker(&self, key: &str, file: &str) -> FileResult {
        let page_url = Url::parse(&format!("{ORIGIN}/background-fetch/{key}")).expect("a URL");
        let script = file.replace(".any.js", ".any.serviceworker.js");
        let browser = BrowserSide::start(self.network.clone());
        let mut event_loop = EventLoop::new(browser, page_url, self.verbose);
        let page = format!(
            r#"(async () => {{
  const report = globalThis[Symbol.for('background-fetch-js.report')];
  const statuses = ['PASS', 'FAIL', 'TIMEOUT', 'NOTRUN', 'PRECONDITION_FAILED'];
  const harness = ['OK', 'ERROR', 'TIMEOUT', 'PRECONDITION_FAILED'];
  navigator.serviceWorker.addEventListener('message', e => {{
    const m = e.data;
    if (m.type === 'result') report({{name: m.test.name, status: statuses[m.test.status], message: m.test.message || ''}});
    if (m.type === 'complete') report({{done: true, status: harness[m.status.status], message: m.status.message || ''}});
  }});
  const registration = await navigator.serviceWorker.register('/background-fetch/{script}', {{scope: '/background-fetch/does/not/exist'}});
  registration.installing.postMessage({{type: 'connect'}});
}})().catch(e => globalThis[Symbol.for('background-fetch-js.report')]({{done: true, status: 'ERROR', message: String(e)}}));"#
        );
        let mut harness = ("OK".to_owned(), String::new());
        if let Err(e) = event_loop.eval_page("page", &page) {
            harness = ("ERROR".into(), e);
        }
        let finished = harness.0 == "OK" && event_loop.run(self.timeout);
        self.collect(key, &mut event_loop, harness, finished, false)
    }

    /// The text of `background-fetch/<file>` under the root (empty if it cannot be read).
    fn test_file_text(&self, file: &str) -> String {
        std::fs::read_to_string(
            self.server
                .site()
                .root()
                .join("background-fetch")
                .join(file),
        )
        .unwrap_or_default()
    }

    /// Runs `file` in a page whose results are reported as `key`.
    fn run_page(&self, key: &str, file: &str) -> FileResult {
        let text = self.test_file_text(file);
        let metas: Vec<(String, String)> = text
            .lines()
            .take_while(|l| l.starts_with("//") || l.trim().is_empty())
            .filter_map(|l| l.strip_prefix("// META:"))
            .filter_map(|l| l.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let is_any = file.ends_with(".any.js");
        let page = if is_any {
            file.replace(".any.js", ".any.html")
        } else {
            file.replace(".js", ".html")
        };
        let page_url = Url::parse(&format!("{ORIGIN}/background-fetch/{page}")).expect("a URL");
        let mut scripts =
            vec![Url::parse(&format!("{ORIGIN}/resources/testharness.js")).expect("URL")];
        for (k, v) in &metas {
            if k == "script" {
                match page_url.join(v) {
                    Ok(u) => scripts.push(u),
                    Err(e) => {
                        return FileResult {
                            file: key.to_owned(),
                            subtests: Vec::new(),
                            harness: ("ERROR".into(), e.to_string()),
                        };
                    }
                }
            }
        }
        scripts.push(page_url.join(file).expect("a URL"));
        self.run_in_page(key, page_url, scripts, is_any, None)
    }

    /// Runs a page at `page_url` whose results are reported as `key`: `scripts` (testharness.js
    /// first) in one task, then `tail` (an inline script), then the load event.
    fn run_in_page(
        &self,
        key: &str,
        page_url: Url,
        scripts: Vec<Url>,
        is_any: bool,
        tail: Option<String>,
    ) -> FileResult {
        let browser = BrowserSide::start(self.network.clone());
        let mut event_loop = EventLoop::new(browser, page_url.clone(), self.verbose);
        let mut harness = ("OK".to_owned(), String::new());
        for (i, url) in scripts.iter().enumerate() {
            let source = match self.network.get_blocking(url) {
                Ok(r) if r.status == 200 => encoding_rs::UTF_8
                    .decode_with_bom_removal(&r.body)
                    .0
                    .into_owned(),
                Ok(r) => {
                    harness = ("ERROR".into(), format!("{url} answered {}", r.status));
                    break;
                }
                Err(e) => {
                    harness = ("ERROR".into(), e);
                    break;
                }
            };
            if let Err(e) = event_loop.eval_page(url.as_str(), &source) {
                if i == 0 {
                    harness = ("ERROR".into(), format!("testharness.js: {e}"));
                    break;
                }
                let _ = event_loop.eval_page(
                    "report",
                    &format!(
                        "reportError(new Error({}))",
                        serde_json::to_string(&e).unwrap_or_default()
                    ),
                );
            }
            if i == 0 {
                let hooks = format!(
                    r#"(() => {{
  const statuses = ['PASS', 'FAIL', 'TIMEOUT', 'NOTRUN', 'PRECONDITION_FAILED'];
  const harness = ['OK', 'ERROR', 'TIMEOUT', 'PRECONDITION_FAILED'];
  const report = globalThis[Symbol.for('background-fetch-js.report')];
  add_result_callback(t => report({{name: t.name, status: statuses[t.status], message: t.message || ''}}));
  add_completion_callback((tests, status) => report({{done: true, status: harness[status.status], message: status.message || ''}}));
  globalThis[Symbol.for('background-fetch-js.afterHarness')]();
  {any}
}})()"#,
                    any = if is_any {
                        "globalThis.GLOBAL = { isWindow: () => true, isWorker: () => false, isShadowRealm: () => false };"
                    } else {
                        ""
                    }
                );
                if let Err(e) = event_loop.eval_page("hooks", &hooks) {
                    harness = ("ERROR".into(), format!("report hooks: {e}"));
                    break;
                }
            }
        }
        if let Some(tail) = tail
            && harness.0 == "OK"
            && let Err(e) = event_loop.eval_page("inline script", &tail)
        {
            harness = ("ERROR".into(), e);
        }
        let _ = event_loop.eval_page(
            "load",
            "globalThis[Symbol.for('background-fetch-js.load')]()",
        );
        let finished = harness.0 == "OK" && event_loop.run(self.timeout);
        self.collect(key, &mut event_loop, harness, finished, true)
    }

    fn collect(
        &self,
        key: &str,
        event_loop: &mut EventLoop,
        mut harness: (String, String),
        finished: bool,
        in_page: bool,
    ) -> FileResult {
        let file = key;
        let mut subtests: Vec<SubtestResult> = event_loop
            .reports()
            .into_iter()
            .map(|r: Report| SubtestResult {
                file: file.to_owned(),
                name: r.name,
                status: r.status,
                message: r.message,
            })
            .collect();
        if harness.0 == "OK" {
            if let Some(h) = event_loop.harness() {
                harness = (h.status, h.message);
            } else if !finished {
                harness = ("TIMEOUT".into(), "the file did not finish in time".into());
                // The subtests that never reported.
                let pending = if !in_page {
                    None
                } else {
                    event_loop
                        .eval_page(
                            "pending",
                            "JSON.stringify(tests.tests.filter(t => t.phase < 3).map(t => t.name))",
                        )
                        .ok()
                        .and_then(|v| v.as_string().map(|s| s.to_std_string_escaped()))
                        .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok())
                }
                .unwrap_or_default();
                for name in pending {
                    if !subtests.iter().any(|s| s.name == name) {
                        subtests.push(SubtestResult {
                            file: file.to_owned(),
                            name,
                            status: "TIMEOUT".into(),
                            message: "the subtest did not finish".into(),
                        });
                    }
                }
            }
        }
        FileResult {
            file: file.to_owned(),
            subtests,
            harness,
        }
    }
}
