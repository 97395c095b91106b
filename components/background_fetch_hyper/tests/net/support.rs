//! A fault-injecting HTTP/1.1 test server (plain or TLS) on 127.0.0.1, a test CA, an HTTP/2
//! server, and helpers to drive the host.

#![allow(dead_code)]

use background_fetch::{
    ClientSnapshot, FetchUid, NetworkError, NetworkEvent, NetworkHost, NetworkRequest, Request,
    RequestBodySource, ResponseHead, Validators,
};
use background_fetch_hyper::{Config, ConnectRetry, HyperNetwork};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Order of arrival over the whole server (0-based).
    pub index: usize,
    /// Which connection it came on (0-based).
    pub conn: usize,
    pub method: String,
    pub target: String,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// How the server misbehaves while answering.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Send the head and `n` body bytes, then reset the connection (RST).
    ResetAt(usize),
    /// Send the head and `n` body bytes, then close the connection (FIN).
    CloseAt(usize),
    /// Send the head and `n` body bytes, then hold the connection open, silent.
    StallAt(usize),
    /// Send the body `chunk` bytes at a time, pausing `every` between chunks.
    Trickle {
        chunk: usize,
        every: Duration,
    },
    /// Read the request and never answer.
    NoResponse,
    /// Reset the connection without answering.
    ResetBeforeHead,
    /// Answer with these raw bytes instead of a response.
    Raw(Vec<u8>),
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// `None`: the body's length; `Some(n)`: this (possibly wrong) length.
    pub content_length: Option<usize>,
    pub chunked: bool,
    /// Neither Content-Length nor chunked: the body ends when the connection closes.
    pub close_delimited: bool,
    pub fault: Fault,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            reason: reason(status).into(),
            headers: Vec::new(),
            body: body.into(),
            content_length: None,
            chunked: false,
            close_delimited: false,
            fault: Fault::None,
        }
    }
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::new(200, body)
    }
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::new(status, "").header("location", location)
    }
    pub fn header(mut self, n: &str, v: &str) -> Self {
        self.headers.push((n.to_owned(), v.to_owned()));
        self
    }
    pub fn fault(mut self, f: Fault) -> Self {
        self.fault = f;
        self
    }
    pub fn content_length(mut self, n: usize) -> Self {
        self.content_length = Some(n);
        self
    }
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
    pub fn close_delimited(mut self) -> Self {
        self.close_delimited = true;
        self
    }
    /// CORS headers allowing any origin.
    pub fn acao(self, v: &str) -> Self {
        self.header("access-control-allow-origin", v)
    }
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Whatever")
}

pub type Handler = Arc<dyn Fn(&Logged) -> Reply + Send + Sync>;

/// A generated CA and a server certificate for `localhost`, `127.0.0.1` and `*.test`.
pub struct TestCa {
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    pub cert: CertificateDer<'static>,
    pub key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "background-fetch test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "a.test".to_string(),
            "b.test".to_string(),
        ])
        .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        TestCa {
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            cert: leaf.der().clone(),
            key: leaf_key.serialize_der(),
        }
    }

    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
        )
        .unwrap();
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(c)
    }
}

trait Sock: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}
impl Sock for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}
impl Sock for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The fault-injecting HTTP/1.1 server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    /// Body bytes written by `Fault::Trickle` replies so far.
    pub written: Arc<AtomicUsize>,
    /// For each TLS connection, in order: whether its handshake resumed a session.
    pub resumed: Arc<Mutex<Vec<bool>>>,
    log: Arc<Mutex<Vec<Logged>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// A plain HTTP server on 127.0.0.1.
    pub async fn http(handler: impl Fn(&Logged) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(Arc::new(handler), None).await
    }

    /// An HTTPS server (HTTP/1.1 only) with a certificate from `ca`.
    pub async fn https(
        ca: &TestCa,
        handler: impl Fn(&Logged) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"http/1.1"]));
        Self::start(Arc::new(handler), Some(acceptor)).await
    }

    async fn start(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let written = Arc::new(AtomicUsize::new(0));
        let written2 = written.clone();
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let resumed2 = resumed.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            let conns = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                // No Nagle: a head and a body written separately must not wait for a delayed
                // ACK (40 ms of real time, which paused-time tests would see as idleness).
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let log = log2.clone();
                let tls = tls.clone();
                let written = written2.clone();
                let resumed = resumed2.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_conn(stream, conn, handler, log, written).await,
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                resumed.lock().unwrap().push(
                                    s.get_ref().1.handshake_kind()
                                        == Some(rustls::HandshakeKind::Resumed),
                                );
                                serve_conn(s, conn, handler, log, written).await
                            }
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            scheme,
            written,
            resumed,
            log,
            task,
        }
    }

    /// A plain HTTP server that gives `early` each request as soon as its head is read: a
    /// reply it returns is sent before the body is read (the body is then read and dropped,
    /// and the connection closed, as nginx's lingering close does); `None` reads the body and
    /// echoes it in a 200.
    pub async fn http_early(
        early: impl Fn(&Logged) -> Option<Reply> + Send + Sync + 'static,
    ) -> Self {
        // A small receive buffer, so that a large body cannot all be in flight by the time the
        // early reply arrives.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let early = Arc::new(early);
        let task = tokio::spawn(async move {
            let conns = Arc::new(AtomicUsize::new(0));
            while let Ok((stream, _)) = listener.accept().await {
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let (log, early) = (log2.clone(), early.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::new(stream);
                    loop {
                        let Some((method, target, headers)) = read_head(&mut r).await else {
                            return;
                        };
                        let mut logged = Logged {
                            index: 0,
                            conn,
                            method,
                            target,
                            headers,
                            body: Vec::new(),
                        };
                        if let Some(reply) = early(&logged) {
                            {
                                let mut log = log.lock().unwrap();
                                logged.index = log.len();
                                log.push(logged.clone());
                            }
                            let reply = reply.header("connection", "close");
                            let _ = write_reply(r.get_mut(), &logged, reply, &AtomicUsize::new(0))
                                .await;
                            // Never read the body; hold the connection until the client
                            // gives up on it.
                            let mut sink = [0u8; 1];
                            let _ = r.get_mut().readable().await;
                            let _ = r.get_mut().try_read(&mut sink);
                            futures::future::pending::<()>().await;
                            return;
                        }
                        let Some(body) = read_body(&mut r, &logged.headers).await else {
                            return;
                        };
                        logged.body = body;
                        {
                            let mut log = log.lock().unwrap();
                            logged.index = log.len();
                            log.push(logged.clone());
                        }
                        let reply = Reply::ok(logged.body.clone());
                        if !write_reply(r.get_mut(), &logged, reply, &AtomicUsize::new(0)).await {
                            return;
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            scheme: "http",
            written: Arc::new(AtomicUsize::new(0)),
            resumed: Arc::new(Mutex::new(Vec::new())),
            log,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `scheme://127.0.0.1:port` + path.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!(
            "{}://127.0.0.1:{}{}",
            self.scheme,
            self.addr.port(),
            path
        ))
        .unwrap()
    }

    /// The same server under another host name (`localhost`, or a `*.test` name given to a
    /// static resolver): another origin.
    pub fn url_as(&self, host: &str, path: &str) -> Url {
        Url::parse(&format!(
            "{}://{}:{}{}",
            self.scheme,
            host,
            self.addr.port(),
            path
        ))
        .unwrap()
    }

    pub fn origin(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.addr.port())
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

async fn read_request<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let (method, target, headers) = read_head(r).await?;
    let body = read_body(r, &headers).await?;
    Some((method, target, headers, body))
}

async fn read_head<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Option<(String, String, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Some((method, target, headers))
}

async fn read_body<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    headers: &[(String, String)],
) -> Option<Vec<u8>> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        r.read_exact(&mut body).await.ok()?;
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(body)
}

async fn serve_conn<S: Sock>(
    stream: S,
    conn: usize,
    handler: Handler,
    log: Arc<Mutex<Vec<Logged>>>,
    written: Arc<AtomicUsize>,
) {
    let mut r = BufReader::new(stream);
    loop {
        let Some((method, target, headers, body)) = read_request(&mut r).await else {
            return;
        };
        let logged = {
            let mut log = log.lock().unwrap();
            let l = Logged {
                index: log.len(),
                conn,
                method,
                target,
                headers,
                body,
            };
            log.push(l.clone());
            l
        };
        let reply = handler(&logged);
        let keep_alive = write_reply(r.get_mut(), &logged, reply, &written).await;
        if !keep_alive {
            return;
        }
    }
}

/// Writes a reply; returns whether the connection can serve another request.
async fn write_reply<S: Sock>(
    s: &mut S,
    req: &Logged,
    reply: Reply,
    written: &AtomicUsize,
) -> bool {
    match &reply.fault {
        Fault::NoResponse => {
            futures::future::pending::<()>().await;
        }
        Fault::ResetBeforeHead => {
            let _ = s.tcp().set_zero_linger();
            return false;
        }
        Fault::Raw(bytes) => {
            let _ = s.write_all(bytes).await;
            let _ = s.flush().await;
            let _ = s.shutdown().await;
            return false;
        }
        _ => {}
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reply.reason);
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    let no_body = req.method == "HEAD" || reply.status == 204 || reply.status == 304;
    if reply.chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    } else if reply.close_delimited {
        head.push_str("connection: close\r\n");
    } else {
        head.push_str(&format!(
            "content-length: {}\r\n",
            reply.content_length.unwrap_or(reply.body.len())
        ));
    }
    head.push_str("\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let body: &[u8] = if no_body { &[] } else { &reply.body };
    let ok = match reply.fault {
        Fault::ResetAt(n) => {
            let _ = s.write_all(&body[..n.min(body.len())]).await;
            let _ = s.flush().await;
            // Let the bytes leave before the reset.
            tokio::task::yield_now().await;
            let _ = s.tcp().set_zero_linger();
            return false;
        }
        Fault::CloseAt(n) => {
            let _ = s.write_all(&body[..n.min(body.len())]).await;
            let _ = s.flush().await;
            let _ = s.shutdown().await;
            return false;
        }
        Fault::StallAt(n) => {
            let _ = s.write_all(&body[..n.min(body.len())]).await;
            let _ = s.flush().await;
            futures::future::pending::<()>().await;
            false
        }
        Fault::Trickle { chunk, every } => {
            let mut ok = true;
            for c in body.chunks(chunk.max(1)) {
                if s.write_all(&encode_chunk(c, reply.chunked)).await.is_err()
                    || s.flush().await.is_err()
                {
                    ok = false;
                    break;
                }
                written.fetch_add(c.len(), Ordering::SeqCst);
                if !every.is_zero() {
                    tokio::time::sleep(every).await;
                }
            }
            if ok && reply.chunked {
                ok = s.write_all(b"0\r\n\r\n").await.is_ok();
            }
            ok
        }
        _ => {
            let mut ok = true;
            if reply.chunked {
                for c in body.chunks(1000) {
                    ok &= s.write_all(&encode_chunk(c, true)).await.is_ok();
                }
                ok &= s.write_all(b"0\r\n\r\n").await.is_ok();
            } else {
                ok &= s.write_all(body).await.is_ok();
            }
            ok
        }
    };
    let _ = s.flush().await;
    if reply.close_delimited || reply.content_length.is_some_and(|n| n != reply.body.len()) {
        let _ = s.shutdown().await;
        return false;
    }
    ok
}

fn encode_chunk(c: &[u8], chunked: bool) -> Vec<u8> {
    if !chunked {
        return c.to_vec();
    }
    let mut v = format!("{:x}\r\n", c.len()).into_bytes();
    v.extend_from_slice(c);
    v.extend_from_slice(b"\r\n");
    v
}

/// A resource served with Range support (honouring If-Range) or without.
#[derive(Clone)]
pub struct Resource {
    pub data: Bytes,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub ranges: bool,
    /// Gzip the whole body for requests that accept it (never for Range requests).
    pub gzip: bool,
    /// What the gzip representation's `ETag` is, next to the identity one's.
    pub coded_etag: CodedEtag,
    /// The `Content-Encoding` of the coded representation (`gzip` unless changed; the body is
    /// gzip-compressed whatever the label, so an unknown label stands for a coding the host
    /// does not decode).
    pub coding: String,
    pub extra: Vec<(String, String)>,
}

/// How a server labels the coded representation of a resource whose identity representation
/// has the `ETag` `"x"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodedEtag {
    /// The same strong `"x"` (wrong by RFC 9110, our old test server's habit).
    Same,
    /// nginx (`gzip on`) and Cloudflare: the `ETag` is weakened to `W/"x"`.
    Nginx,
    /// Apache `mod_deflate`: a suffix, `"x-gzip"`; an `If-Range` of it never matches.
    Apache,
}

impl Resource {
    pub fn new(data: impl Into<Bytes>) -> Self {
        Resource {
            data: data.into(),
            etag: Some("\"v1\"".into()),
            last_modified: Some("Tue, 15 Nov 1994 12:45:26 GMT".into()),
            ranges: true,
            gzip: false,
            coded_etag: CodedEtag::Same,
            coding: "gzip".into(),
            extra: Vec::new(),
        }
    }
    pub fn etag(mut self, e: Option<&str>) -> Self {
        self.etag = e.map(Into::into);
        self
    }
    pub fn last_modified(mut self, l: Option<&str>) -> Self {
        self.last_modified = l.map(Into::into);
        self
    }
    pub fn no_ranges(mut self) -> Self {
        self.ranges = false;
        self
    }
    pub fn gzip(mut self) -> Self {
        self.gzip = true;
        self
    }
    pub fn header(mut self, n: &str, v: &str) -> Self {
        self.extra.push((n.into(), v.into()));
        self
    }
    /// Gzip for requests that accept it, with the coded representation's `ETag` as `server`
    /// gives it.
    pub fn gzip_like(mut self, server: CodedEtag) -> Self {
        self.gzip = true;
        self.coded_etag = server;
        self
    }
    /// Compress (with gzip) for every request not asking for a range, labelled `coding`:
    /// a coding the host does not decode when the label is unknown.
    pub fn coded_as(mut self, coding: &str) -> Self {
        self.gzip = true;
        self.coding = coding.into();
        self
    }

    /// The reply to `req`.
    pub fn reply(&self, req: &Logged) -> Reply {
        let mut headers: Vec<(String, String)> = self.extra.clone();
        if let Some(e) = &self.etag {
            headers.push(("etag".into(), e.clone()));
        }
        if let Some(l) = &self.last_modified {
            headers.push(("last-modified".into(), l.clone()));
        }
        let full = |mut headers: Vec<(String, String)>| {
            let accepts = self.coding != "gzip"
                || req
                    .header("accept-encoding")
                    .is_some_and(|a| a.contains("gzip"));
            if self.gzip && accepts && req.header("range").is_none() {
                if let (Some(e), Some(slot)) =
                    (&self.etag, headers.iter_mut().find(|(n, _)| n == "etag"))
                {
                    let inner = e.trim_start_matches("W/");
                    slot.1 = match self.coded_etag {
                        CodedEtag::Same => e.clone(),
                        CodedEtag::Nginx => format!("W/{inner}"),
                        CodedEtag::Apache => {
                            format!("{}-gzip\"", inner.trim_end_matches('"'))
                        }
                    };
                }
                headers.push(("content-encoding".into(), self.coding.clone()));
                let mut r = Reply::ok(gzip(&self.data));
                r.headers = headers;
                return r;
            }
            let mut r = Reply::ok(self.data.clone());
            r.headers = headers;
            r
        };
        let range = req.header("range").and_then(|r| r.strip_prefix("bytes="));
        let Some(range) = range.filter(|_| self.ranges) else {
            return full(headers);
        };
        headers.push(("accept-ranges".into(), "bytes".into()));
        if let Some(v) = req.header("if-range")
            && Some(v) != self.etag.as_deref()
            && Some(v) != self.last_modified.as_deref()
        {
            return full(headers);
        }
        let start: usize = range.trim_end_matches('-').parse().unwrap();
        let len = self.data.len();
        if start >= len {
            let mut r = Reply::new(416, "");
            headers.push(("content-range".into(), format!("bytes */{len}")));
            r.headers = headers;
            return r;
        }
        headers.push((
            "content-range".into(),
            format!("bytes {start}-{}/{len}", len - 1),
        ));
        let mut r = Reply::new(206, self.data.slice(start..));
        r.headers = headers;
        r
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Deterministic test bytes.
pub fn pattern(n: usize) -> Bytes {
    (0..n)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Test configuration: short timeouts, no connect retries unless asked, the test CA trusted.
pub fn config(ca: Option<&TestCa>) -> Config {
    let mut c = Config {
        connect_timeout: Duration::from_secs(5),
        response_head_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        connect_retry: ConnectRetry::none(),
        ..Config::default()
    };
    c.tls.webpki_roots = false;
    if let Some(ca) = ca {
        c.tls.add_roots_pem(ca.ca_pem.as_bytes()).unwrap();
    }
    c
}

/// A host on the test's runtime.
pub fn host(config: Config) -> HyperNetwork {
    HyperNetwork::with_handle(tokio::runtime::Handle::current(), config).unwrap()
}

/// A GET request from a client of `origin` (a secure context).
pub fn get(url: &Url, origin: &str) -> NetworkRequest {
    request(Request::get(url.clone()), origin)
}

pub fn request(request: Request, origin: &str) -> NetworkRequest {
    let client = ClientSnapshot::for_url(Url::parse(&format!("{origin}/page.html")).unwrap());
    NetworkRequest {
        request,
        body: None,
        range_start: None,
        validators: Validators::default(),
        client,
        fetch: FetchUid(1),
        record: 0,
    }
}

/// A request body source over `chunks`, which can be read once.
pub fn body_source(chunks: Vec<Bytes>) -> RequestBodySource {
    let length = chunks.iter().map(|c| c.len() as u64).sum();
    let stream: BoxStream<'static, Result<Bytes, background_fetch::store::StoreError>> =
        futures::stream::iter(chunks.into_iter().map(Ok)).boxed();
    RequestBodySource::once(length, stream)
}

/// A request body source over `body` in `chunk`-byte pieces that can be opened again at any
/// offset, as the engine's stored request body can.
pub fn reopenable_body(body: Bytes, chunk: usize) -> RequestBodySource {
    let length = body.len() as u64;
    RequestBodySource::reopenable(length, move |offset| {
        let rest = body.slice(offset as usize..);
        let pieces: Vec<Result<Bytes, background_fetch::store::StoreError>> = (0..rest.len())
            .step_by(chunk)
            .map(|i| Ok(rest.slice(i..(i + chunk).min(rest.len()))))
            .collect();
        futures::stream::iter(pieces).boxed()
    })
}

/// What a fetch attempt reported.
#[derive(Debug, Default)]
pub struct Outcome {
    pub uploads: Vec<u64>,
    pub head: Option<ResponseHead>,
    pub body: Vec<u8>,
    pub chunks: usize,
    pub error: Option<NetworkError>,
}

impl Outcome {
    pub fn status(&self) -> u16 {
        self.head.as_ref().expect("a response head").status
    }
    pub fn head(&self) -> &ResponseHead {
        self.head.as_ref().expect("a response head")
    }
    pub fn error(&self) -> &NetworkError {
        self.error.as_ref().expect("an error")
    }
    pub fn kind(&self) -> background_fetch::NetworkErrorKind {
        self.error().kind
    }
}

/// Runs a fetch to its end, checking the event ordering contract on the way.
pub async fn run(host: &HyperNetwork, req: NetworkRequest) -> Outcome {
    collect(host.fetch(req)).await
}

pub async fn collect(mut events: BoxStream<'static, NetworkEvent>) -> Outcome {
    let mut o = Outcome::default();
    while let Some(e) = events.next().await {
        assert!(o.error.is_none(), "an event after an error: {e:?}");
        match e {
            NetworkEvent::UploadProgress(n) => {
                assert!(o.head.is_none(), "upload progress after the head");
                o.uploads.push(n);
            }
            NetworkEvent::Response(h) => {
                assert!(o.head.is_none(), "two heads");
                o.head = Some(h);
            }
            NetworkEvent::Data(b) => {
                assert!(o.head.is_some(), "data before the head");
                o.chunks += 1;
                o.body.extend_from_slice(&b);
            }
            NetworkEvent::Error(e) => o.error = Some(e),
        }
    }
    o
}

/// An HTTP/2 (and HTTP/1.1) server over TLS on hyper, recording the protocol version of each
/// request, serving `body` for every request.
pub struct H2Server {
    pub addr: SocketAddr,
    pub versions: Arc<Mutex<Vec<http::Version>>>,
    pub conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Server {
    pub async fn start(ca: &TestCa, body: Bytes) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"h2", b"http/1.1"]));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let (v2, c2) = (versions.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let versions = v2.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            versions.lock().unwrap().push(req.version());
                            let body = body.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .header("content-length", body.len())
                                        .body(http_body_util::Full::new(body))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        H2Server {
            addr,
            versions,
            conns,
            task,
        }
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("https://localhost:{}{}", self.addr.port(), path)).unwrap()
    }
}

/// A resolver answering per name (like a DNS server the test controls); a name it does not
/// know fails as `NotFound`. Answers can be changed while the host runs.
#[derive(Default)]
pub struct HostResolver {
    answers: Mutex<
        std::collections::HashMap<
            String,
            Result<Vec<SocketAddr>, background_fetch_hyper::ResolveErrorKind>,
        >,
    >,
    /// Names asked, in order.
    pub asked: Mutex<Vec<String>>,
}

impl HostResolver {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn set(
        &self,
        host: &str,
        answer: Result<Vec<SocketAddr>, background_fetch_hyper::ResolveErrorKind>,
    ) {
        self.answers.lock().unwrap().insert(host.into(), answer);
    }
}

impl background_fetch_hyper::Resolve for HostResolver {
    fn resolve(
        &self,
        host: &str,
        _port: u16,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<SocketAddr>, background_fetch_hyper::ResolveError>,
    > {
        self.asked.lock().unwrap().push(host.to_owned());
        let answer = self
            .answers
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .unwrap_or(Err(background_fetch_hyper::ResolveErrorKind::NotFound));
        let host = host.to_owned();
        Box::pin(async move {
            answer.map_err(|kind| background_fetch_hyper::ResolveError {
                kind,
                message: format!("{host}: scripted failure"),
            })
        })
    }
}

/// A listening socket that completes no handshake: its accept queue is full (a listen
/// backlog of 0, filled by one connection never accepted), so Linux drops further SYNs, as a
/// firewall that blackholes them does. Nothing leaves this machine.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
}

impl Blackhole {
    /// On 127.0.0.1, or on ::1 when `v6`.
    pub fn new(v6: bool) -> Self {
        use socket2::{Domain, Socket, Type};
        let (domain, ip): (Domain, std::net::IpAddr) = if v6 {
            (Domain::IPV6, std::net::Ipv6Addr::LOCALHOST.into())
        } else {
            (Domain::IPV4, std::net::Ipv4Addr::LOCALHOST.into())
        };
        let listener = Socket::new(domain, Type::STREAM, None).unwrap();
        if v6 {
            listener.set_only_v6(true).unwrap();
        }
        listener.bind(&SocketAddr::new(ip, 0).into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // Fill the accept queue until a connection attempt gets no answer.
        let mut fillers = Vec::new();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => fillers.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                    break;
                }
            }
            assert!(fillers.len() < 16, "the backlog never filled");
        }
        Blackhole {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

/// A TCP relay in front of a server: [`SilentRelay::silence_existing`] makes every
/// connection relayed so far go silent in both directions without closing (a NAT mapping that
/// timed out, a network that changed), while new connections are relayed as before.
pub struct SilentRelay {
    pub addr: SocketAddr,
    epoch: Arc<AtomicUsize>,
    pub conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentRelay {
    pub async fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let epoch = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let (epoch2, conns2) = (epoch.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                conns2.fetch_add(1, Ordering::SeqCst);
                let mine = epoch2.load(Ordering::SeqCst);
                let epoch = epoch2.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let a = tokio::spawn(pipe(cr, sw, mine, epoch.clone()));
                    let b = tokio::spawn(pipe(sr, cw, mine, epoch));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        SilentRelay {
            addr,
            epoch,
            conns,
            task,
        }
    }

    /// Every connection relayed so far goes silent, for good.
    pub fn silence_existing(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mine: usize,
    epoch: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if epoch.load(Ordering::SeqCst) != mine {
            // Silent: swallow everything, answer nothing, never close.
            futures::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Keep the write half open while silent; close it when the peer closed.
    let _ = w.shutdown().await;
}

/// An HTTP/1.1 and HTTP/2 server (by ALPN) over TLS on hyper, answering with `handler`.
pub struct FnServer {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
    pub versions: Arc<Mutex<Vec<http::Version>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FnServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type FnHandler =
    Arc<dyn Fn(&http::request::Parts) -> http::Response<http_body_util::Full<Bytes>> + Send + Sync>;

impl FnServer {
    pub async fn start(
        ca: &TestCa,
        handler: impl Fn(&http::request::Parts) -> http::Response<http_body_util::Full<Bytes>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self::start_with(ca, Arc::new(handler), |_| {}).await
    }

    pub async fn start_with(
        ca: &TestCa,
        handler: FnHandler,
        tune: impl Fn(&mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>)
        + Send
        + Sync
        + 'static,
    ) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"h2", b"http/1.1"]));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let (c2, v2) = (conns.clone(), versions.clone());
        let tune = Arc::new(tune);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c2.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let versions = v2.clone();
                let tune = tune.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            versions.lock().unwrap().push(req.version());
                            let (parts, _) = req.into_parts();
                            let resp = handler(&parts);
                            async move { Ok::<_, std::convert::Infallible>(resp) }
                        },
                    );
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    tune(&mut builder);
                    let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        FnServer {
            addr,
            conns,
            versions,
            task,
        }
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("https://localhost:{}{}", self.addr.port(), path)).unwrap()
    }
}

/// A response with `body` and `headers`.
pub fn response(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> http::Response<http_body_util::Full<Bytes>> {
    let mut b = http::Response::builder().status(status);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(http_body_util::Full::new(body.into())).unwrap()
}
