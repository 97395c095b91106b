//! Connection establishment for hyper-util's pooled client: hyper-util's [`HttpConnector`]
//! (name resolution through [`Resolve`], Happy Eyeballs, a connect timeout per address, TCP
//! keepalive and no Nagle), then TLS with ALPN, under an overall connect timeout, with
//! transparent retries with backoff.
//!
//! The connector is one layer over a TCP connector, so that a proxy layer (CONNECT tunnels,
//! the downloader issue) can slot in between the two: [`Connector::tcp`] is the only place
//! that opens a byte stream to a destination.

use crate::config::{Config, ConnectRetry};
use crate::connectivity::Connectivity;
use crate::resolve::{Resolve, ResolveError, ResolveErrorKind, ResolverService};
use futures::FutureExt;
use futures::future::BoxFuture;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// RFC 8305 §5: "A simple implementation can have a fixed delay for how long to wait before
/// starting the next connection attempt. [...] the recommended value for a default delay is
/// 250 milliseconds."
const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

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
    pub(crate) fn new(kind: ConnectErrorKind, message: impl Into<String>) -> Self {
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

    /// Whether this could mean that the network itself is down (rather than one server):
    /// only probes of destinations known to work can tell.
    fn maybe_network_down(&self) -> bool {
        matches!(
            self.kind,
            ConnectErrorKind::Unreachable
                | ConnectErrorKind::Timeout
                | ConnectErrorKind::Dns(ResolveErrorKind::Unavailable)
        )
    }

    pub(crate) fn from_io(e: &io::Error, what: &str) -> Self {
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

/// The connector given to hyper-util's client.
#[derive(Clone)]
pub(crate) struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    resolver: Arc<dyn Resolve>,
    tcp_keepalive: Option<Duration>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    retry: ConnectRetry,
    connectivity: Connectivity,
}

impl Connector {
    /// A connector for `config`, resolving with `resolver`, with `tls` (whose ALPN list says
    /// which protocols may be negotiated).
    pub fn new(
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
        resolver: Arc<dyn Resolve>,
        connectivity: Connectivity,
    ) -> Self {
        Connector {
            inner: Arc::new(ConnectorInner {
                resolver,
                tcp_keepalive: config.tcp_keepalive,
                tls: tokio_rustls::TlsConnector::from(tls),
                connect_timeout: config.connect_timeout,
                retry: config.connect_retry.clone(),
                connectivity,
            }),
        }
    }
}

impl ConnectorInner {
    /// A TCP connection to the URI's host and port (Happy Eyeballs over its addresses).
    // FIXME: proxies (the downloader issue): a CONNECT tunnel through a proxy would be opened
    //        here, with the destination's host and port, before TLS to the destination.
    async fn tcp(&self, uri: &http::Uri, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let mut tcp = HttpConnector::new_with_resolver(ResolverService {
            resolver: self.resolver.clone(),
            port,
        });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        // hyper-util divides this among the addresses of each family, so that an address
        // that swallows SYNs cannot take the whole budget.
        tcp.set_connect_timeout(Some(self.connect_timeout));
        tcp.set_happy_eyeballs_timeout(Some(CONNECTION_ATTEMPT_DELAY));
        // TCP keepalive: a connection whose peer vanished (a NAT mapping that timed out, a
        // network that changed) is found dead by the kernel even while idle in the pool.
        tcp.set_keepalive(self.tcp_keepalive);
        tcp.set_keepalive_interval(
            self.tcp_keepalive
                .map(|t| (t / 3).max(Duration::from_secs(1))),
        );
        tcp.set_keepalive_retries(self.tcp_keepalive.map(|_| 3));
        // The resolver answers with ports (its own, or `port`): hyper-util keeps them when
        // the URI it is given has none. An IP literal keeps its port.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let target = if bare.parse::<std::net::IpAddr>().is_ok() {
            uri.clone()
        } else {
            http::Uri::builder()
                .scheme(uri.scheme_str().unwrap_or("http"))
                .authority(host)
                .path_and_query("/")
                .build()
                .map_err(|e| ConnectError::new(ConnectErrorKind::BadUrl, e.to_string()))?
        };
        match tower_service::Service::call(&mut tcp, target).await {
            Ok(io) => Ok(io.into_inner()),
            Err(e) => Err(classify_tcp_error(&e, uri)),
        }
    }

    async fn connect_once(
        &self,
        uri: &http::Uri,
        https: bool,
        host: &str,
        port: u16,
    ) -> Result<Conn, ConnectError> {
        let tcp = match self.tcp(uri, host, port).await {
            Ok(t) => t,
            Err(e) => {
                if e.maybe_network_down() {
                    self.connectivity.report_failure(host, port);
                }
                return Err(e);
            }
        };
        self.connectivity.report_success(host, port);
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
                self.connect_once(&uri, https, host, port),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    // Nothing answered in time: perhaps the network is gone.
                    self.connectivity.report_failure(host, port);
                    Err(ConnectError::new(
                        ConnectErrorKind::Timeout,
                        format!(
                            "connecting to {host}:{port} took more than {:?}",
                            self.connect_timeout
                        ),
                    ))
                }
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

/// Classifies a failure of hyper-util's TCP connector by what caused it: a [`ResolveError`]
/// (by its kind), or the socket error of the first address tried.
fn classify_tcp_error(e: &(dyn StdError + 'static), uri: &http::Uri) -> ConnectError {
    let what = format!(
        "connecting to {}{}",
        uri.host().unwrap_or(""),
        uri.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let mut src: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<ResolveError>() {
            return ConnectError::new(ConnectErrorKind::Dns(r.kind), format!("dns error: {r}"));
        }
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return ConnectError::from_io(io, &what);
        }
        src = s.source();
    }
    ConnectError::new(ConnectErrorKind::Other, format!("{what}: {e}"))
}

/// A random number in [0, 1) for jitter (from the standard library's random hasher keys).
pub(crate) fn random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Classifies a TLS handshake failure.
fn tls_error(e: &io::Error) -> ConnectError {
    // tokio-rustls reports rustls errors as io::Error(InvalidData) wrapping rustls::Error.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        use rustls::AlertDescription as A;
        let kind = match inner {
            // RFC 8446 §6.2: the server aborted the handshake. Alerts that say this client and
            // the server cannot agree (versions, ciphers, ALPN, name, client certificate) will
            // not change; the rest (internal_error from an overloaded or restarting server,
            // user_canceled, ...) may pass.
            rustls::Error::AlertReceived(
                A::HandshakeFailure
                | A::ProtocolVersion
                | A::InsufficientSecurity
                | A::NoApplicationProtocol
                | A::UnrecognisedName
                | A::CertificateRequired
                | A::AccessDenied
                | A::IllegalParameter
                | A::UnsupportedExtension,
            ) => ConnectErrorKind::TlsFatal,
            rustls::Error::AlertReceived(_) => ConnectErrorKind::Reset,
            // The certificate was refused, or the server speaks TLS wrongly.
            _ => ConnectErrorKind::TlsFatal,
        };
        return ConnectError::new(kind, format!("TLS error: {inner}"));
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

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
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
        // hyper-util's own metadata (remote and local address), plus the ALPN outcome.
        let c = self.io.inner().tcp().connected();
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
