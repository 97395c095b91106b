//! Connection establishment: name resolution, TCP, TLS with ALPN, the connect timeout, and
//! transparent retries with backoff, as a connector for hyper-util's pooled client.

use crate::config::ConnectRetry;
use crate::connectivity::Connectivity;
use futures::FutureExt;
use futures::future::BoxFuture;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why a name could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveErrorKind {
    /// The name does not exist (NXDOMAIN, no address): a problem of that server only.
    NotFound,
    /// Resolution itself is unavailable (no network, resolver unreachable, try again later):
    /// a sign that the network is down.
    Unavailable,
}

/// A name resolution failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveError {
    /// What kind of failure.
    pub kind: ResolveErrorKind,
    /// Details.
    pub message: String,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ResolveError {}

/// Name resolution. IP-literal hosts never reach it.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (a domain name), for `port`.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>>;
}

/// The system resolver (`getaddrinfo` on a blocking thread, through tokio).
///
/// `getaddrinfo` reports its failures as text only; "not known", "no address" and
/// `NXDOMAIN` count as [`ResolveErrorKind::NotFound`], everything else (for example
/// "Temporary failure in name resolution", which is what a machine without network gets) as
/// [`ResolveErrorKind::Unavailable`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>> {
        let host = host.to_owned();
        async move {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => {
                    let v: Vec<SocketAddr> = addrs.collect();
                    if v.is_empty() {
                        Err(ResolveError {
                            kind: ResolveErrorKind::NotFound,
                            message: format!("{host}: no address"),
                        })
                    } else {
                        Ok(v)
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let lower = message.to_ascii_lowercase();
                    let kind = if lower.contains("not known")
                        || lower.contains("no address")
                        || lower.contains("nxdomain")
                    {
                        ResolveErrorKind::NotFound
                    } else {
                        ResolveErrorKind::Unavailable
                    };
                    Err(ResolveError {
                        kind,
                        message: format!("{host}: {message}"),
                    })
                }
            }
        }
        .boxed()
    }
}

/// A resolver with fixed answers for some names (like curl's `--resolve`), falling back to
/// another resolver for the rest.
#[derive(Clone)]
pub struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolve>>,
}

impl fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticResolver")
            .field("map", &self.map)
            .finish()
    }
}

impl Default for StaticResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl StaticResolver {
    /// Fixed answers in front of the system resolver.
    pub fn new() -> Self {
        StaticResolver {
            map: HashMap::new(),
            fallback: Some(Arc::new(SystemResolver)),
        }
    }

    /// Fixed answers only: any other name is [`ResolveErrorKind::NotFound`].
    pub fn only() -> Self {
        StaticResolver {
            map: HashMap::new(),
            fallback: None,
        }
    }

    /// Answers `host` (case-insensitive) with `ip`.
    pub fn with(mut self, host: &str, ip: IpAddr) -> Self {
        self.map
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(ip);
        self
    }
}

impl Resolve for StaticResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>> {
        if let Some(ips) = self.map.get(&host.to_ascii_lowercase()) {
            let v = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            return futures::future::ready(Ok(v)).boxed();
        }
        match &self.fallback {
            Some(f) => f.resolve(host, port),
            None => futures::future::ready(Err(ResolveError {
                kind: ResolveErrorKind::NotFound,
                message: format!("{host}: not in the static resolver"),
            }))
            .boxed(),
        }
    }
}

/// What went wrong while connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectErrorKind {
    /// Name resolution failed.
    Dns(ResolveErrorKind),
    /// The server refused the connection.
    Refused,
    /// The connection was reset or closed during the handshake.
    Reset,
    /// The connect timeout passed.
    Timeout,
    /// The network or host is unreachable.
    Unreachable,
    /// The server's certificate was refused, or TLS failed in a way retrying will not fix.
    TlsFatal,
    /// The URL cannot be connected to (no host, bad name).
    BadUrl,
    /// Anything else at the socket level.
    Other,
}

/// A failed connection attempt.
#[derive(Clone, Debug)]
pub(crate) struct ConnectError {
    pub kind: ConnectErrorKind,
    pub message: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    fn new(kind: ConnectErrorKind, message: impl Into<String>) -> Self {
        ConnectError {
            kind,
            message: message.into(),
        }
    }

    /// Whether retrying could help (and the resource is "temporarily unavailable").
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self.kind,
            ConnectErrorKind::TlsFatal | ConnectErrorKind::BadUrl
        )
    }

    /// Whether this says the network itself is down.
    fn network_down(&self) -> bool {
        matches!(
            self.kind,
            ConnectErrorKind::Unreachable | ConnectErrorKind::Dns(ResolveErrorKind::Unavailable)
        )
    }

    fn from_io(e: &io::Error, what: &str) -> Self {
        use io::ErrorKind as K;
        let kind = match e.kind() {
            K::ConnectionRefused => ConnectErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
                ConnectErrorKind::Reset
            }
            K::TimedOut => ConnectErrorKind::Timeout,
            K::NetworkUnreachable | K::HostUnreachable | K::NetworkDown | K::AddrNotAvailable => {
                ConnectErrorKind::Unreachable
            }
            _ => ConnectErrorKind::Other,
        };
        ConnectError::new(kind, format!("{what}: {e}"))
    }
}

/// Resolves `host` (unless it is an IP literal) and connects to the first address that
/// accepts.
pub(crate) async fn tcp_connect(
    resolver: &dyn Resolve,
    host: &str,
    port: u16,
) -> Result<TcpStream, ConnectError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolver.resolve(bare, port).await.map_err(|e| {
            ConnectError::new(ConnectErrorKind::Dns(e.kind), format!("dns error: {e}"))
        })?,
    };
    let mut last = ConnectError::new(ConnectErrorKind::Other, format!("{host}: no address"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = ConnectError::from_io(&e, &format!("tcp connect to {addr}")),
        }
    }
    Err(last)
}

/// The connector given to hyper-util's client.
#[derive(Clone)]
pub(crate) struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn Resolve>,
    connect_timeout: Duration,
    retry: ConnectRetry,
    connectivity: Connectivity,
}

impl Connector {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        resolver: Arc<dyn Resolve>,
        connect_timeout: Duration,
        retry: ConnectRetry,
        connectivity: Connectivity,
    ) -> Self {
        Connector {
            inner: Arc::new(ConnectorInner {
                tls: tokio_rustls::TlsConnector::from(tls),
                resolver,
                connect_timeout,
                retry,
                connectivity,
            }),
        }
    }
}

impl ConnectorInner {
    async fn connect_once(&self, https: bool, host: &str, port: u16) -> Result<Conn, ConnectError> {
        let tcp = match tcp_connect(&*self.resolver, host, port).await {
            Ok(t) => t,
            Err(e) => {
                if e.network_down() {
                    self.connectivity.report_network_down(host, port);
                }
                return Err(e);
            }
        };
        self.connectivity.report_success();
        if !https {
            return Ok(Conn {
                io: TokioIo::new(Stream::Plain(tcp)),
                h2: false,
            });
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned()).map_err(|e| {
            ConnectError::new(
                ConnectErrorKind::BadUrl,
                format!("bad TLS server name {host:?}: {e}"),
            )
        })?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(&e))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Conn {
            io: TokioIo::new(Stream::Tls(Box::new(tls))),
            h2,
        })
    }

    async fn connect(&self, uri: http::Uri) -> Result<Conn, ConnectError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(ConnectError::new(
                    ConnectErrorKind::BadUrl,
                    format!("unsupported scheme {other:?}"),
                ));
            }
        };
        let Some(host) = uri.host() else {
            return Err(ConnectError::new(ConnectErrorKind::BadUrl, "no host"));
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut retry = 0;
        loop {
            let result = match tokio::time::timeout(
                self.connect_timeout,
                self.connect_once(https, host, port),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(ConnectError::new(
                    ConnectErrorKind::Timeout,
                    format!(
                        "connecting to {host}:{port} took more than {:?}",
                        self.connect_timeout
                    ),
                )),
            };
            match result {
                Ok(c) => return Ok(c),
                Err(e) if e.is_temporary() && retry < self.retry.max_retries => {
                    retry += 1;
                    let delay = self.retry.delay(retry, random());
                    tracing::debug!(error = %e, retry, ?delay, "connect failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A random number in [0, 1) for jitter (from the standard library's random hasher keys).
pub(crate) fn random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn tls_error(e: &io::Error) -> ConnectError {
    // tokio-rustls reports rustls errors as io::Error(InvalidData) wrapping rustls::Error.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return ConnectError::new(ConnectErrorKind::TlsFatal, format!("TLS error: {inner}"));
    }
    let mut c = ConnectError::from_io(e, "TLS handshake");
    if c.kind == ConnectErrorKind::Other && e.kind() == io::ErrorKind::InvalidData {
        c.kind = ConnectErrorKind::TlsFatal;
    }
    c
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = BoxFuture<'static, Result<Conn, ConnectError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let inner = self.inner.clone();
        async move { inner.connect(uri).await }.boxed()
    }
}

/// A TCP stream, possibly under TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A connection handed to hyper.
pub(crate) struct Conn {
    io: TokioIo<Stream>,
    h2: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
