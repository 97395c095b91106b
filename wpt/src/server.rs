//! The loopback resource server: the part of the WPT server (`wptserve`) the background-fetch
//! subtests rely on, served in-process on the engine's [`ScriptedNetwork`].
//!
//! | Upstream | Here |
//! |---|---|
//! | `https://web-platform.test/` and its `www`, `www1`, `www2` subdomains, one document root | [`WptServer`] answers for [`HOSTS`] on the default ports; any other host does not resolve (a fatal network error) |
//! | static files (`resources/feature-name.txt`, `resources/cors-resource.txt` + `.headers`, the test pages, `/`) | [`WptServer::new`]'s document root; the query string is ignored, as `wptserve` does |
//! | `wptserve` routes static files for `GET` only | a static file answers `GET` and `HEAD`; another method (`PUT`, `POST`, a CORS preflight's `OPTIONS`) gets `404` |
//! | `?pipe=header(Name, Value)\|...` | the headers are added to the response; see the fidelity note below |
//! | `resources/upload.py` | echoes the request body with the request's `Content-Type` (`500` without one: `upload.py` raises a `KeyError`) |
//! | `/common/slow.py` | `200` with an empty body after `delay` ms (default 2000) of **virtual** time |
//! | a missing file | `404` with `wptserve`'s small JSON error body (the engine must not expose it: deviation 10) |
//!
//! **Fidelity note (pipes).** In `wptserve` pipes only rewrite the response of a route that
//! exists, and static files have no `OPTIONS`, `PUT` or `POST` route, so upstream the two
//! `fetch.https.window.js` preflight subtests cannot pass against a static file (Chromium's
//! baseline marks them FAIL). Here a URL with a `pipe=` query is answered for **every** method
//! with the piped headers: that is the server the subtests describe (a cross-origin resource that
//! approves the preflight). A static file without pipes keeps `wptserve`'s routing, which is what
//! `cors.https.window.js` relies on ("fails without preflight approval").

use background_fetch::testing::{Resource, ScriptedNetwork};
use background_fetch::{
    HeaderList, NetworkError, NetworkEvent, NetworkHost, NetworkRequest, ResponseHead, ResponseType,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// The WPT server's main host (`location.host` of every test page).
pub const HOST: &str = "web-platform.test";
/// `location.origin` of every test page.
pub const ORIGIN: &str = "https://web-platform.test";
/// `get_host_info().REMOTE_HOST`: `'www1.' + host`.
pub const REMOTE_HOST: &str = "www1.web-platform.test";
/// `get_host_info().HTTPS_REMOTE_ORIGIN` (the HTTPS port is 443, so it is omitted).
pub const HTTPS_REMOTE_ORIGIN: &str = "https://www1.web-platform.test";
/// The hosts the server answers for (they share one document root, as in `wptserve`).
pub const HOSTS: [&str; 4] = [
    HOST,
    "www.web-platform.test",
    "www1.web-platform.test",
    "www2.web-platform.test",
];

/// `resources/feature-name.txt`: exactly these 16 bytes, no trailing newline.
pub const FEATURE_NAME: &[u8] = b"Background Fetch";
/// `resources/cors-resource.txt` (Chromium's copy): 45 bytes.
pub const CORS_RESOURCE: &[u8] = b"Cross-origin Background Fetch text resource.\n";
/// The headers of `resources/cors-resource.txt.headers`.
pub const CORS_RESOURCE_HEADERS: [(&str, &str); 5] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, OPTIONS, HEAD"),
    ("Access-Control-Allow-Headers", "*"),
    ("Access-Control-Max-Age", "86400"),
    ("X-Secret-Header", "SuperSecretValue"),
];
/// The body of `wptserve`'s 404 (a small JSON error object).
pub const NOT_FOUND_BODY: &[u8] = br#"{"error": {"code": 404, "message": ""}}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// `resources/upload.py`
    Upload,
    /// `/common/slow.py`
    Slow,
}

#[derive(Clone, Debug)]
enum Route {
    Static(Resource),
    Script(Script),
}

/// A request the server received (including those it answered without the scripted network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLogEntry {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// The request headers.
    pub headers: HeaderList,
}

/// The loopback WPT server. Cloning gives another handle to the same server.
#[derive(Clone)]
pub struct WptServer {
    network: ScriptedNetwork,
    files: Arc<Mutex<BTreeMap<String, Route>>>,
    log: Arc<Mutex<Vec<ServerLogEntry>>>,
    timing: Arc<Mutex<Timing>>,
}

/// How fast the server answers (on virtual time). The default answers at once in one chunk,
/// like a local `wptserve`; [`Timing::slow`] makes every transfer trickle, to check that the
/// subtests do not depend on everything arriving at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Bytes per body chunk.
    pub chunk_size: usize,
    /// Virtual time before each chunk.
    pub chunk_delay: Duration,
    /// Virtual time before each response head (added to `slow.py`'s own delay).
    pub head_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            chunk_size: 16 * 1024,
            chunk_delay: Duration::ZERO,
            head_delay: Duration::ZERO,
        }
    }
}

impl Timing {
    /// One byte per chunk, 7 ms apart, heads after 30 ms.
    pub fn slow() -> Self {
        Timing {
            chunk_size: 1,
            chunk_delay: Duration::from_millis(7),
            head_delay: Duration::from_millis(30),
        }
    }

    /// The timing named by the environment variable `BGF_WPT_NETWORK` (`slow`), else the
    /// default.
    pub fn from_env() -> Self {
        match std::env::var("BGF_WPT_NETWORK").as_deref() {
            Ok("slow") => Timing::slow(),
            _ => Timing::default(),
        }
    }
}

fn text_file(body: &'static [u8], content_type: &str) -> Resource {
    Resource::ok(Bytes::from_static(body)).header("Content-Type", content_type)
}

impl WptServer {
    /// A server with the document root the background-fetch tests use.
    pub fn new(network: ScriptedNetwork) -> Self {
        let server = WptServer {
            network,
            files: Arc::default(),
            log: Arc::default(),
            timing: Arc::default(),
        };
        server.add_file(
            "/",
            text_file(
                b"<!doctype html><title>web-platform-tests</title>",
                "text/html",
            ),
        );
        server.add_file(
            "/background-fetch/resources/feature-name.txt",
            text_file(FEATURE_NAME, "text/plain"),
        );
        let mut cors = text_file(CORS_RESOURCE, "text/plain");
        for (name, value) in CORS_RESOURCE_HEADERS {
            cors = cors.header(name, value);
        }
        server.add_file("/background-fetch/resources/cors-resource.txt", cors);
        server.add_route(
            "/background-fetch/resources/upload.py",
            Route::Script(Script::Upload),
        );
        server.add_route("/common/slow.py", Route::Script(Script::Slow));
        server
    }

    /// Adds a static file at `path` (for example a test page).
    pub fn add_file(&self, path: &str, resource: Resource) {
        self.add_route(path, Route::Static(resource));
    }

    fn add_route(&self, path: &str, route: Route) {
        self.files.lock().unwrap().insert(path.to_owned(), route);
    }

    /// Sets how fast the server answers.
    pub fn set_timing(&self, timing: Timing) {
        *self.timing.lock().unwrap() = timing;
    }

    /// The scripted network behind the server (chunking, faults, holds, its own log).
    pub fn network(&self) -> &ScriptedNetwork {
        &self.network
    }

    /// Every request the server received, in order.
    pub fn log(&self) -> Vec<ServerLogEntry> {
        self.log.lock().unwrap().clone()
    }

    /// What the server answers for `method` at `url`.
    fn answer(&self, method: &str, url: &Url, headers: &HeaderList) -> Answer {
        let host_ok = url.host_str().is_some_and(|h| HOSTS.contains(&h));
        let port_ok = match url.scheme() {
            "https" => url.port_or_known_default() == Some(443),
            "http" => url.port_or_known_default() == Some(80),
            _ => false,
        };
        if !host_ok || !port_ok {
            return Answer::Unreachable;
        }
        let pipe_headers = pipe_headers(url.query().unwrap_or_default());
        let route = self.files.lock().unwrap().get(url.path()).cloned();
        match route {
            None => Answer::Direct(404, NOT_FOUND_BODY, Vec::new()),
            Some(Route::Script(Script::Upload)) => {
                if headers.contains("content-type") {
                    Answer::Scripted(with_headers(Resource::echo(), &pipe_headers))
                } else {
                    // upload.py reads request.headers['content-type']: a KeyError, so a 500.
                    Answer::Direct(500, b"", Vec::new())
                }
            }
            Some(Route::Script(Script::Slow)) => {
                let delay = url
                    .query_pairs()
                    .find(|(k, _)| k == "delay")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(2000);
                Answer::Scripted(with_headers(
                    Resource::ok(Bytes::new()).head_delay(Duration::from_millis(delay)),
                    &pipe_headers,
                ))
            }
            Some(Route::Static(resource)) => {
                if matches!(method, "GET" | "HEAD") || !pipe_headers.is_empty() {
                    Answer::Scripted(with_headers(resource, &pipe_headers))
                } else {
                    // wptserve routes static files for GET only.
                    Answer::Direct(404, NOT_FOUND_BODY, pipe_headers)
                }
            }
        }
    }
}

enum Answer {
    /// Served by the scripted network (registered at the exact URL first).
    Scripted(Resource),
    /// Answered here: status, body, extra headers.
    Direct(u16, &'static [u8], Vec<(String, String)>),
    /// The host does not resolve.
    Unreachable,
}

fn with_headers(mut resource: Resource, headers: &[(String, String)]) -> Resource {
    for (n, v) in headers {
        resource = resource.header(n, v);
    }
    resource
}

/// The `header(Name, Value)` pipes of a query string's `pipe` parameter (other pipes are
/// ignored): wptserve's `?pipe=header(...)`.
pub fn pipe_headers(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k != "pipe" {
            continue;
        }
        for pipe in v.split('|') {
            let pipe = pipe.trim();
            let Some(args) = pipe
                .strip_prefix("header(")
                .and_then(|rest| rest.strip_suffix(')'))
            else {
                continue;
            };
            let mut parts = args.splitn(3, ',');
            if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                out.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    out
}

impl NetworkHost for WptServer {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let url = request.request.url.clone();
        let method = request.request.method.clone();
        self.log.lock().unwrap().push(ServerLogEntry {
            method: method.clone(),
            url: url.to_string(),
            headers: request.request.headers.clone(),
        });
        match self.answer(&method, &url, &request.request.headers) {
            Answer::Scripted(resource) => {
                let timing = *self.timing.lock().unwrap();
                let resource = Resource {
                    head_delay: resource.head_delay + timing.head_delay,
                    ..resource
                }
                .chunk_size(timing.chunk_size)
                .chunk_delay(timing.chunk_delay);
                self.network.serve(url.as_str(), resource);
                self.network.fetch(request)
            }
            Answer::Direct(status, body, extra) => {
                let mut headers: HeaderList = extra.into_iter().collect();
                headers.set("content-length", body.len().to_string());
                let head = ResponseHead {
                    status,
                    status_text: String::new(),
                    headers,
                    url_list: vec![url],
                    response_type: ResponseType::Basic,
                    resume_headers: Default::default(),
                };
                let mut events = vec![NetworkEvent::Response(head)];
                if !body.is_empty() {
                    events.push(NetworkEvent::Data(Bytes::from_static(body)));
                }
                futures::stream::iter(events).boxed()
            }
            Answer::Unreachable => {
                futures::stream::iter([NetworkEvent::Error(NetworkError::fatal(format!(
                    "{url}: the host does not resolve on the loopback WPT server"
                )))])
                .boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_parsed_from_the_query() {
        let url = Url::parse(
            "https://www1.web-platform.test/background-fetch/resources/feature-name.txt?pipe=header(Access-Control-Allow-Origin, *)|header(Access-Control-Allow-Methods, PUT)",
        )
        .unwrap();
        assert_eq!(
            pipe_headers(url.query().unwrap()),
            vec![
                ("Access-Control-Allow-Origin".to_owned(), "*".to_owned()),
                ("Access-Control-Allow-Methods".to_owned(), "PUT".to_owned()),
            ]
        );
        assert!(pipe_headers("id=3").is_empty());
    }

    #[test]
    fn the_feature_name_file_is_exactly_16_bytes() {
        assert_eq!(FEATURE_NAME.len(), 16);
        assert_eq!(CORS_RESOURCE.len(), 45);
    }
}
