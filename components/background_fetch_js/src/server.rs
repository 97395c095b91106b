//! The loopback WPT server: what `wptserve` does for the background-fetch files, on real
//! sockets bound to `127.0.0.1`, serving a WPT root read from disk (never copied).
//!
//! Two listeners share the root, as `wptserve`'s hosts share one document root: the **main**
//! host (`web-platform.test`, the test pages' origin) and the **remote** host
//! (`www1.web-platform.test`, `get_host_info().REMOTE_HOST`, a second port so that it is a
//! different origin on the wire as well). [`crate::network::LoopbackNetwork`] resolves those
//! names to the two ports.
//!
//! | `wptserve` | here |
//! |---|---|
//! | static files, `Content-Type` by extension | [`Site::answer`] |
//! | `X.headers` sidecar files | their `Name: value` lines are added to `X`'s response |
//! | `.sub.` files: `{{host}}`, `{{ports[..][..]}}`, `{{domains[..]}}`, `{{hosts[..][..]}}` | substituted with [`Site::substitute`] |
//! | `?pipe=header(Name, Value)\|...` | the headers are added (other pipes ignored) |
//! | `/resources/WebIDLParser.js` rewritten to `/resources/webidl2/lib/webidl2.js` | the same rewrite |
//! | generated `X.window.html`, `X.any.html`, `X.any.serviceworker.html`, ... | a small HTML page, `200` |
//! | a directory (`/`) | a listing, `200` |
//! | `resources/upload.py` | echoes the body with the request's `Content-Type` (`500` without one) |
//! | `/common/slow.py` | `200`, empty body, after `delay` ms (default 2000) of real time |
//! | static files routed for `GET` only | `GET`/`HEAD` only; another method gets `404` unless the URL has `pipe=` (the server the preflight subtests describe; see the Rust port's `wpt/src/server.rs`) |
//!
//! AD-HOC: the listeners speak plain HTTP/1.1. The test pages' URLs keep their `https` scheme
//! (the engine's mixed-content and secure-context checks see `https`), and the network host
//! sends them to the loopback ports without TLS.

use background_fetch_wpt::server::pipe_headers;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// The main host of every test page.
pub const HOST: &str = "web-platform.test";
/// `get_host_info().REMOTE_HOST`.
pub const REMOTE_HOST: &str = "www1.web-platform.test";
/// `location.origin` of every test page (HTTPS port 443, so elided).
pub const ORIGIN: &str = "https://web-platform.test";

/// The body of `wptserve`'s 404.
const NOT_FOUND_BODY: &[u8] = br#"{"error": {"code": 404, "message": ""}}"#;

/// The files and handlers of a WPT root.
#[derive(Clone, Debug)]
pub struct Site {
    root: PathBuf,
}

/// A response of the site: status, headers, body, and how long to wait before answering.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// A delay before the head (`slow.py`).
    pub delay: Duration,
}

impl Answer {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            delay: Duration::ZERO,
        }
    }
}

impl Site {
    /// The site of the WPT root `root`.
    pub fn new(root: impl Into<PathBuf>) -> Site {
        Site { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.sub` substitution, with the values of our two hosts.
    pub fn substitute(text: &str) -> String {
        text.replace("{{host}}", HOST)
            .replace("{{ports[http][0]}}", "80")
            .replace("{{ports[http][1]}}", "8000")
            .replace("{{ports[https][0]}}", "443")
            .replace("{{ports[https][1]}}", "8443")
            .replace("{{domains[www]}}", "www.web-platform.test")
            .replace("{{domains[www1]}}", REMOTE_HOST)
            .replace("{{domains[www2]}}", "www2.web-platform.test")
            .replace("{{hosts[alt][]}}", "not-web-platform.test")
            .replace("{{hosts[][]}}", HOST)
    }

    /// What the site answers for `method` at `path_and_query` with the request's
    /// `Content-Type` and body.
    pub fn answer(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let path = percent_decode(path);
        let pipes = pipe_headers(query);
        let mut answer = self.route(method, &path, query, content_type, body, !pipes.is_empty());
        answer.headers.extend(pipes);
        answer
    }

    fn route(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        piped: bool,
    ) -> Answer {
        // wptserve's REWRITE_RULES: the placeholder parser is served from webidl2.
        let path = if path == "/resources/WebIDLParser.js" {
            "/resources/webidl2/lib/webidl2.js"
        } else {
            path
        };
        if path.contains("..") {
            return Answer::new(404, "application/json", NOT_FOUND_BODY.to_vec());
        }
        if path.ends_with("/resources/upload.py") {
            // upload.py: `request.headers[b'content-type']` raises without one.
            return match content_type {
                Some(ct) => Answer::new(200, ct, body),
                None => Answer::new(500, "text/plain", Vec::new()),
            };
        }
        if path == "/common/slow.py" {
            let delay = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("delay="))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(2000.0);
            let mut a = Answer::new(200, "text/plain", Vec::new());
            a.headers.clear();
            a.delay = Duration::from_millis(delay as u64);
            return a;
        }
        if !matches!(method, "GET" | "HEAD") && !piped {
            // wptserve routes static files for GET only.
            return Answer::new(404, "application/json", NOT_FOUND_BODY.to_vec());
        }
        let file = self.root.join(path.trim_start_matches('/'));
        if file.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(&file)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            let list: String = names.iter().map(|n| format!("<li>{n}</li>")).collect();
            return Answer::new(
                200,
                "text/html",
                format!("<!doctype html><title>{path}</title><ul>{list}</ul>").into_bytes(),
            );
        }
        if let Some(test) = generated_test_page(path)
            && self.root.join(test.trim_start_matches('/')).is_file()
        {
            return Answer::new(
                200,
                "text/html",
                format!(
                    "<!doctype html><meta charset=utf-8><script src=/resources/testharness.js></script><script src=/resources/testharnessreport.js></script><div id=log></div><script src={test}></script>"
                )
                .into_bytes(),
            );
        }
        if let Some(test) = generated_worker_script(path)
            && let Ok(text) = std::fs::read_to_string(self.root.join(test.trim_start_matches('/')))
        {
            return Answer::new(
                200,
                "text/javascript; charset=utf-8",
                worker_wrapper(&test, &text).into_bytes(),
            );
        }
        let Ok(bytes) = std::fs::read(&file) else {
            return Answer::new(404, "application/json", NOT_FOUND_BODY.to_vec());
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = if name.contains(".sub.") {
            Site::substitute(&String::from_utf8_lossy(&bytes)).into_bytes()
        } else {
            bytes
        };
        let mut answer = Answer::new(200, content_type_of(&name), bytes);
        let sidecar = file.with_file_name(format!("{name}.headers"));
        if let Ok(text) = std::fs::read_to_string(sidecar) {
            for line in text.lines() {
                if let Some((n, v)) = line.split_once(':') {
                    answer.headers.push((n.trim().into(), v.trim().into()));
                }
            }
        }
        answer
    }
}

/// The test file behind a generated wrapper URL (`X.window.html` → `X.window.js`,
/// `X.any.html` and `X.any.<kind>.html` → `X.any.js`).
pub fn generated_test_page(path: &str) -> Option<String> {
    let stem = path.strip_suffix(".html")?;
    if let Some(s) = stem.strip_suffix(".window") {
        return Some(format!("{s}.window.js"));
    }
    if let Some(s) = stem.strip_suffix(".any") {
        return Some(format!("{s}.any.js"));
    }
    for kind in [".worker", ".sharedworker", ".serviceworker"] {
        if let Some(s) = stem.strip_suffix(kind).and_then(|s| s.strip_suffix(".any")) {
            return Some(format!("{s}.any.js"));
        }
    }
    None
}

/// The test file behind a generated worker script (`X.any.worker.js`,
/// `X.any.serviceworker.js` → `X.any.js`).
pub fn generated_worker_script(path: &str) -> Option<String> {
    for kind in [
        ".any.worker.js",
        ".any.serviceworker.js",
        ".any.sharedworker.js",
    ] {
        if let Some(s) = path.strip_suffix(kind) {
            return Some(format!("{s}.any.js"));
        }
    }
    None
}

/// wptserve's worker wrapper of an `.any.js` test: `GLOBAL`, testharness.js, the META
/// scripts, the test, `done()`.
fn worker_wrapper(test: &str, text: &str) -> String {
    let mut out = String::from(
        "self.GLOBAL = {\n  isWindow: function() { return false; },\n  isWorker: function() { return true; },\n  isShadowRealm: function() { return false; },\n};\nimportScripts(\"/resources/testharness.js\");\n",
    );
    for line in text.lines() {
        if let Some(script) = line
            .strip_prefix("// META:")
            .map(str::trim)
            .and_then(|l| l.strip_prefix("script="))
        {
            out.push_str(&format!("importScripts({script:?});\n"));
        }
    }
    out.push_str(&format!("importScripts({test:?});\ndone();\n"));
    out
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain",
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// The running loopback server: a tokio runtime of its own with two listeners.
pub struct LoopbackServer {
    runtime: Arc<Runtime>,
    main: SocketAddr,
    remote: SocketAddr,
    site: Site,
}

impl LoopbackServer {
    /// Binds `127.0.0.1:0` twice and serves `site` on both.
    pub fn start(site: Site) -> std::io::Result<LoopbackServer> {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?,
        );
        let (main, remote) = runtime.block_on(async {
            let a = TcpListener::bind("127.0.0.1:0").await?;
            let b = TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, std::io::Error>((a, b))
        })?;
        let addrs = (main.local_addr()?, remote.local_addr()?);
        for listener in [main, remote] {
            let site = site.clone();
            runtime.spawn(accept_loop(listener, site));
        }
        Ok(LoopbackServer {
            runtime,
            main: addrs.0,
            remote: addrs.1,
            site,
        })
    }

    /// The runtime the server (and the loopback network client) run on.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.clone()
    }

    /// The main host's address.
    pub fn main_addr(&self) -> SocketAddr {
        self.main
    }

    /// The remote host's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The site served.
    pub fn site(&self) -> &Site {
        &self.site
    }
}

async fn accept_loop(listener: TcpListener, site: Site) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let site = site.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let site = site.clone();
                async move { Ok::<_, std::convert::Infallible>(serve(site, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn serve(site: Site, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let answer = site.answer(&method, &path_and_query, content_type.as_deref(), body);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = Response::builder().status(answer.status);
    for (n, v) in &answer.headers {
        response = response.header(n.as_str(), v.as_str());
    }
    let body = if method == "HEAD" {
        Bytes::new()
    } else {
        Bytes::from(answer.body)
    };
    response
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pages() {
        assert_eq!(
            generated_test_page("/a/b.https.window.html").as_deref(),
            Some("/a/b.https.window.js")
        );
        assert_eq!(
            generated_test_page("/a/i.https.any.serviceworker.html").as_deref(),
            Some("/a/i.https.any.js")
        );
    }
}
