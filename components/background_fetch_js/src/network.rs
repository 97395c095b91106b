//! The engine's network in the runner: HTTP/1.1 over TCP to the [`crate::server`]'s loopback
//! ports, with the WPT host names resolved to them (a resolver override: `web-platform.test` is
//! the main listener, `www1.web-platform.test` the remote one; any other name does not resolve).
//!
//! It counts the transfers in flight, so the event loop knows when waiting means waiting for
//! real time (a socket) rather than for the virtual clock.

use crate::server::{HOST, REMOTE_HOST};
use background_fetch::{
    HeaderList, NetworkError, NetworkEvent, NetworkHost, NetworkRequest, ResponseHead, ResponseType,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Runtime;
use url::Url;

/// The loopback network. Cloning gives another handle to the same one.
#[derive(Clone)]
pub struct LoopbackNetwork {
    runtime: Arc<Runtime>,
    main: SocketAddr,
    remote: SocketAddr,
    in_flight: Arc<AtomicUsize>,
}

/// A response read whole (page `fetch()`, `importScripts`).
#[derive(Clone, Debug)]
pub struct WholeResponse {
    /// Status.
    pub status: u16,
    /// Status text.
    pub status_text: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl LoopbackNetwork {
    /// A network that reaches `main` and `remote` on `runtime`.
    pub fn new(runtime: Arc<Runtime>, main: SocketAddr, remote: SocketAddr) -> Self {
        LoopbackNetwork {
            runtime,
            main,
            remote,
            in_flight: Arc::default(),
        }
    }

    /// How many transfers are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn resolve(&self, url: &Url) -> Option<SocketAddr> {
        match url.host_str()? {
            HOST => Some(self.main),
            REMOTE_HOST => Some(self.remote),
            _ => None,
        }
    }

    /// Sends one request and reads the whole response, blocking the calling thread (which
    /// must not be one of the runtime's). Used for scripts.
    pub fn get_blocking(&self, url: &Url) -> Result<WholeResponse, String> {
        let addr = self
            .resolve(url)
            .ok_or_else(|| format!("{url}: the host does not resolve"))?;
        let req = build(url, "GET", &[], Vec::new())?;
        self.runtime.block_on(async move {
            let resp = send(addr, req).await?;
            whole(resp).await
        })
    }

    /// Sends one request on the runtime; `done` receives the whole response. Counted in flight
    /// until `done` has been called.
    pub fn request(
        &self,
        url: Url,
        method: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        done: impl FnOnce(Result<WholeResponse, String>) + Send + 'static,
    ) {
        let Some(addr) = self.resolve(&url) else {
            done(Err(format!("{url}: the host does not resolve")));
            return;
        };
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        self.runtime.spawn(async move {
            let result = async {
                let req = build(&url, &method, &headers, body)?;
                whole(send(addr, req).await?).await
            }
            .await;
            done(result);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn build(
    url: &Url,
    method: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (n, v) in headers {
        req = req.header(n.as_str(), v.as_str());
    }
    req.body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())
}

async fn send(
    addr: SocketAddr,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

async fn whole(resp: hyper::Response<hyper::body::Incoming>) -> Result<WholeResponse, String> {
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(WholeResponse {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or("").to_owned(),
        headers,
        body,
    })
}

impl NetworkHost for LoopbackNetwork {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let url = request.request.url.clone();
        let Some(addr) = self.resolve(&url) else {
            return futures::stream::iter([NetworkEvent::Error(NetworkError::fatal(format!(
                "{url}: the host does not resolve on the loopback WPT server"
            )))])
            .boxed();
        };
        let (tx, rx) = mpsc::unbounded();
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        self.runtime.spawn(async move {
            transfer(addr, request, tx).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
        rx.boxed()
    }
}

/// One attempt: the request (its body read whole first), the head, the body's frames.
async fn transfer(
    addr: SocketAddr,
    request: NetworkRequest,
    tx: mpsc::UnboundedSender<NetworkEvent>,
) {
    let r = &request.request;
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    if let Some(start) = request.range_start.filter(|s| *s > 0) {
        headers.push(("range".into(), format!("bytes={start}-")));
    }
    let mut body = Vec::new();
    if let Some(mut source) = request.body {
        while let Some(chunk) = source.stream.next().await {
            match chunk {
                Ok(b) => body.extend_from_slice(&b),
                Err(e) => {
                    let _ = tx.unbounded_send(NetworkEvent::Error(NetworkError::fatal(format!(
                        "the request body could not be read: {e}"
                    ))));
                    return;
                }
            }
        }
    }
    let sent = body.len() as u64;
    let req = match build(&r.url, &r.method, &headers, body) {
        Ok(req) => req,
        Err(e) => {
            let _ = tx.unbounded_send(NetworkEvent::Error(NetworkError::fatal(e)));
            return;
        }
    };
    let resp = match send(addr, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let _ = tx.unbounded_send(NetworkEvent::Error(NetworkError::temporary(e)));
            return;
        }
    };
    if sent > 0 {
        let _ = tx.unbounded_send(NetworkEvent::UploadProgress(sent));
    }
    let status = resp.status();
    let headers: HeaderList = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let head = ResponseHead {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or("").to_owned(),
        headers,
        url_list: vec![r.url.clone()],
        response_type: ResponseType::Basic,
        resume_headers: Default::default(),
    };
    if tx.unbounded_send(NetworkEvent::Response(head)).is_err() {
        return;
    }
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                    && tx.unbounded_send(NetworkEvent::Data(data)).is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ =
                    tx.unbounded_send(NetworkEvent::Error(NetworkError::temporary(e.to_string())));
                return;
            }
        }
    }
}

/// A network round trip on the engine's clock before a transfer's first event. With the event
/// loop's clock (which stands still while script runs), this makes the runner deterministic: a
/// transfer cannot complete before the script that started it has seen `fetch()` resolve, as
/// on any real network.
pub struct Latency {
    inner: Arc<dyn NetworkHost>,
    clock: Arc<dyn background_fetch::Clock>,
    delay: std::time::Duration,
}

impl Latency {
    /// `inner` with `delay` before each transfer's events.
    pub fn new(
        inner: Arc<dyn NetworkHost>,
        clock: Arc<dyn background_fetch::Clock>,
        delay: std::time::Duration,
    ) -> Self {
        Latency {
            inner,
            clock,
            delay,
        }
    }
}

impl NetworkHost for Latency {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let sleep = self.clock.sleep(self.delay);
        let inner = self.inner.clone();
        futures::stream::once(async move {
            sleep.await;
            inner.fetch(request)
        })
        .flatten()
        .boxed()
    }
}

/// The network a page and its engine use: the engine's [`NetworkHost`], plus what the event
/// loop needs of it (whether a transfer is in flight, scripts read whole and synchronously).
pub trait PageNetwork: NetworkHost {
    /// How many transfers are in flight.
    fn in_flight(&self) -> usize;
    /// Sends a GET and reads the whole response, blocking the calling thread (scripts).
    fn get_blocking(&self, url: &Url) -> Result<WholeResponse, String>;
    /// Whether requests need the CORS protocol around this network (a network that runs it
    /// itself, such as `background-fetch-hyper`'s, says no).
    fn needs_cors(&self) -> bool {
        true
    }
}

impl PageNetwork for LoopbackNetwork {
    fn in_flight(&self) -> usize {
        LoopbackNetwork::in_flight(self)
    }
    fn get_blocking(&self, url: &Url) -> Result<WholeResponse, String> {
        LoopbackNetwork::get_blocking(self, url)
    }
}

/// An app's network: the app's own origin served on loopback ([`LoopbackNetwork`], behind the
/// CORS protocol), when it has one, and every other URL through the embedder's network (for
/// `bgfetch js`, `background-fetch-hyper`'s, proxies included), counted while in flight.
#[derive(Clone)]
pub struct AppNetwork {
    loopback: Option<LoopbackNetwork>,
    other: Arc<dyn NetworkHost>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts a transfer in flight while it lives.
struct InFlight(Arc<AtomicUsize>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppNetwork {
    /// `other` for every URL, and `loopback` for the hosts it serves.
    pub fn new(loopback: Option<LoopbackNetwork>, other: Arc<dyn NetworkHost>) -> AppNetwork {
        AppNetwork {
            loopback,
            other,
            in_flight: Arc::default(),
        }
    }

    fn loopback_for(&self, url: &Url) -> Option<&LoopbackNetwork> {
        self.loopback.as_ref().filter(|l| l.resolve(url).is_some())
    }
}

impl NetworkHost for AppNetwork {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        if let Some(l) = self.loopback_for(&request.request.url) {
            return background_fetch_wpt::cors::CorsNetwork::new(Arc::new(l.clone()))
                .fetch(request);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        self.other
            .fetch(request)
            .map(move |e| {
                let _ = &guard;
                e
            })
            .boxed()
    }
}

impl PageNetwork for AppNetwork {
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
            + self.loopback.as_ref().map_or(0, LoopbackNetwork::in_flight)
    }

    fn get_blocking(&self, url: &Url) -> Result<WholeResponse, String> {
        if let Some(l) = self.loopback_for(url) {
            return l.get_blocking(url);
        }
        let request = background_fetch::Request::get(url.clone());
        let mut events = futures::executor::block_on_stream(self.fetch(NetworkRequest {
            request,
            body: None,
            range_start: None,
            validators: Default::default(),
            client: background_fetch::ClientSnapshot::for_url(url.clone()),
            fetch: background_fetch::FetchUid(0),
            record: 0,
        }));
        let mut head: Option<ResponseHead> = None;
        let mut body = Vec::new();
        for event in events.by_ref() {
            match event {
                NetworkEvent::Response(h) => head = Some(h),
                NetworkEvent::Data(d) => body.extend_from_slice(&d),
                NetworkEvent::UploadProgress(_) => {}
                NetworkEvent::Error(e) => return Err(format!("{url}: {e:?}")),
            }
        }
        let head = head.ok_or_else(|| format!("{url}: no response"))?;
        Ok(WholeResponse {
            status: head.status,
            status_text: head.status_text.clone(),
            headers: head
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            body,
        })
    }

    fn needs_cors(&self) -> bool {
        false
    }
}
