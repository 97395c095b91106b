//! Configuration of a [`crate::HyperNetwork`].

use crate::credentials::Credentials;
use crate::resolve::Resolve;
use background_fetch::{PolicyHost, SimpleCsp};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Building a [`crate::HyperNetwork`] failed.
#[derive(Debug)]
pub enum BuildError {
    /// The TLS configuration is unusable (a bad root certificate, say).
    Tls(String),
    /// The internal runtime could not start.
    Runtime(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Tls(m) => write!(f, "TLS configuration: {m}"),
            BuildError::Runtime(e) => write!(f, "cannot start the network runtime: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Everything a [`crate::HyperNetwork`] can be tuned with. `Config::default()` is a sensible
/// browser-like setup: HTTP/2 over TLS when the server offers it, the webpki roots, 30 s to
/// connect, 60 s for a response head, 60 s of silence before a body is given up as stalled.
#[derive(Clone)]
pub struct Config {
    /// Budget for one connection attempt: name resolution, TCP connect and TLS handshake
    /// together. Exceeding it is a temporary error (retried under [`Config::connect_retry`]).
    /// The TCP part is shared among a name's addresses (RFC 8305 Happy Eyeballs: an address
    /// that swallows SYNs cannot take it all).
    pub connect_timeout: Duration,
    /// How long to wait for the response head once the request (and its body) has been handed
    /// to a connection. Exceeding it is a temporary error.
    pub response_head_timeout: Duration,
    /// How long the response body (or the request body upload) may make no progress before the
    /// transfer is given up as stalled: a temporary error, after which the engine resumes with a
    /// Range request. Time the engine spends storing a chunk does not count (the socket is not
    /// read then).
    pub idle_timeout: Duration,
    /// An optional minimum rate for a response body: fewer than `bytes` received in any
    /// `window` (time the engine spends storing chunks does not count) is a temporary error,
    /// after which the engine resumes with a Range request. `None`: only the idle timeout.
    pub min_rate: Option<MinRate>,
    /// TCP keepalive: idle time before the first probe (`None`: off). A pooled connection whose
    /// peer vanished is then found dead by the kernel.
    pub tcp_keepalive: Option<Duration>,
    /// HTTP/2 PING keepalive: a PING after this long without a frame, on active and idle
    /// connections alike (`None`: off).
    pub http2_keepalive_interval: Option<Duration>,
    /// How long an HTTP/2 PING may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// The largest response header section accepted (HTTP/1.1 and HTTP/2; browsers allow
    /// about 256 KiB). A larger one is a fatal error that says so.
    pub max_response_header_size: u32,
    /// How many TLS session tickets each partition of the connection pool keeps for
    /// resumption.
    pub tls_sessions_per_partition: usize,
    /// How many partitions of the connection pool (one per top-level site of the callers) are
    /// kept; the least recently used goes first.
    pub max_partitions: usize,
    /// Transparent retries of *connection establishment* inside one attempt (nothing has been
    /// sent yet, so this is safe for every method). See the crate docs for how this divides the
    /// work with the engine's own [`background_fetch::RetryPolicy`].
    pub connect_retry: ConnectRetry,
    /// Redirects followed before the fetch fails (Fetch: 20).
    pub max_redirects: u32,
    /// Offer HTTP/2 by ALPN on TLS connections (plain `http` always uses HTTP/1.1).
    pub http2: bool,
    /// Certificate roots and TLS settings.
    pub tls: TlsConfig,
    /// The `User-Agent` header sent when the request has none (`None`: none sent).
    pub user_agent: Option<String>,
    /// Capacity, in events, of the channel between the socket task and the stream returned by
    /// [`background_fetch::NetworkHost::fetch`]. This is the backpressure: while the channel is
    /// full the socket is not read. 1 to 4 is plenty.
    pub channel_capacity: usize,
    /// Largest chunk of decoded bytes produced from a content-coded body in one event.
    pub max_decoded_chunk: usize,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// For a request body that cannot be re-opened ([`background_fetch::RequestBodySource`]
    /// without `reopen`; the engine's always can): up to this size it is kept in memory while
    /// it is sent, so that a 307 or 308 redirect can send it again. A larger body met by such
    /// a redirect fails the fetch.
    pub max_replay_body: usize,
    /// Cache CORS-preflight results (for `Access-Control-Max-Age`, at most 2 hours).
    pub preflight_cache: bool,
    /// The online/offline signal. See [`crate::Connectivity`].
    pub connectivity: ConnectivityConfig,
    /// Name resolution (`None`: the system resolver through `getaddrinfo`).
    pub resolver: Option<Arc<dyn Resolve>>,
    /// Cookies and HTTP authentication, if the embedder has them. `None`: requests are sent
    /// without credentials whatever their credentials mode (the mode still governs the CORS
    /// check).
    pub credentials: Option<Arc<dyn Credentials>>,
    /// The caller's policy checks (Content Security Policy's `connect-src`), run on every
    /// request of an attempt, redirects included (Fetch's main fetch: "should request be
    /// blocked by Content Security Policy"). Give it the engine's `Hosts::policy`, so that the
    /// first URL (checked by the engine) and every hop agree. Default:
    /// [`background_fetch::SimpleCsp`].
    pub policy: Arc<dyn PolicyHost>,
    /// Worker threads of the runtime [`crate::HyperNetwork::new`] creates (ignored by
    /// [`crate::HyperNetwork::with_handle`]).
    pub worker_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_secs(30),
            response_head_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            connect_retry: ConnectRetry::default(),
            max_redirects: 20,
            http2: true,
            tls: TlsConfig::default(),
            user_agent: Some(concat!("background-fetch-hyper/", env!("CARGO_PKG_VERSION")).into()),
            channel_capacity: 2,
            max_decoded_chunk: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 8,
            max_replay_body: 1 << 20,
            min_rate: None,
            tcp_keepalive: Some(Duration::from_secs(45)),
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(20),
            max_response_header_size: 256 * 1024,
            tls_sessions_per_partition: 32,
            max_partitions: 64,
            preflight_cache: true,
            connectivity: ConnectivityConfig::default(),
            resolver: None,
            credentials: None,
            policy: Arc::new(SimpleCsp),
            worker_threads: 2,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_head_timeout", &self.response_head_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_retry", &self.connect_retry)
            .field("max_redirects", &self.max_redirects)
            .field("http2", &self.http2)
            .field("tls", &self.tls)
            .field("user_agent", &self.user_agent)
            .field("channel_capacity", &self.channel_capacity)
            .field("max_decoded_chunk", &self.max_decoded_chunk)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("max_replay_body", &self.max_replay_body)
            .field("min_rate", &self.min_rate)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("http2_keepalive_interval", &self.http2_keepalive_interval)
            .field("http2_keepalive_timeout", &self.http2_keepalive_timeout)
            .field("max_response_header_size", &self.max_response_header_size)
            .field(
                "tls_sessions_per_partition",
                &self.tls_sessions_per_partition,
            )
            .field("max_partitions", &self.max_partitions)
            .field("preflight_cache", &self.preflight_cache)
            .field("connectivity", &self.connectivity)
            .field("resolver", &self.resolver.is_some())
            .field("credentials", &self.credentials.is_some())
            .field("policy", &"dyn PolicyHost")
            .field("worker_threads", &self.worker_threads)
            .finish()
    }
}

/// A minimum transfer rate: at least `bytes` in every `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes that must arrive ...
    pub bytes: u64,
    /// ... within this long.
    pub window: Duration,
}

/// Retries of connection establishment inside one fetch attempt, with exponential backoff and
/// jitter. Only failures that happen before any byte of the request is sent are retried
/// (connection refused or reset, name resolution, connect timeout, unreachable network, a
/// TLS handshake cut short); certificate errors are not.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectRetry {
    /// Retries after the first failure (0 disables retrying).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Upper bound of a delay.
    pub max_delay: Duration,
    /// Each retry multiplies the delay by this.
    pub multiplier: f64,
    /// Fraction of the delay randomised away (0 = none, 0.5 = up to half).
    pub jitter: f64,
}

impl Default for ConnectRetry {
    fn default() -> Self {
        ConnectRetry {
            max_retries: 2,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            multiplier: 3.0,
            jitter: 0.3,
        }
    }
}

impl ConnectRetry {
    /// No retries: every connect failure is reported at once.
    pub fn none() -> Self {
        ConnectRetry {
            max_retries: 0,
            ..Default::default()
        }
    }

    /// The delay before retry number `retry` (1 = first), with `random` in [0, 1).
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let base = self.initial_delay.as_secs_f64()
            * self
                .multiplier
                .max(1.0)
                .powi(retry.saturating_sub(1).min(64) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }
}

/// The online/offline signal's settings. See [`crate::Connectivity`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectivityConfig {
    /// While offline, how often to probe whether the network is back.
    pub probe_interval: Duration,
    /// `host:port` pairs known to work that the checks and probes connect to (TCP only).
    /// Empty: the last few destinations that accepted a connection.
    pub probe_targets: Vec<(String, u16)>,
    /// Whether failures that could mean the network is down (network unreachable, connect
    /// timeout, name resolution unavailable) start a check of the destinations known to work,
    /// which can take the signal offline. With `false` the signal only changes through
    /// [`crate::Connectivity::set_online`].
    pub detect: bool,
    /// After this long offline (as detected, not as set by the embedder) with no successful
    /// probe, the signal goes back online anyway so that the engine tries real requests again;
    /// a failure takes it offline again. This bounds the harm of a false "offline", for example
    /// one broken name server answering SERVFAIL (which `getaddrinfo` reports just like having
    /// no network). `None`: stay offline until a probe or a connection succeeds.
    pub recheck_after: Option<Duration>,
}

impl Default for ConnectivityConfig {
    fn default() -> Self {
        ConnectivityConfig {
            probe_interval: Duration::from_secs(5),
            probe_targets: Vec::new(),
            detect: true,
            recheck_after: Some(Duration::from_secs(60)),
        }
    }
}

/// Certificate roots for `https`, and optionally a whole rustls configuration.
///
/// The crypto provider is always *ring*, given explicitly: the process-wide default provider
/// of rustls is neither read nor installed, so an embedding engine's own TLS setup is not
/// disturbed.
#[derive(Clone)]
pub struct TlsConfig {
    /// Trust the Mozilla root program (the `webpki-roots` crate).
    pub webpki_roots: bool,
    /// Further trusted roots (DER), for example an enterprise or test CA.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// A complete rustls client configuration to use instead of the one built from the fields
    /// above. Its ALPN list is replaced according to [`Config::http2`].
    pub client_config: Option<Arc<rustls::ClientConfig>>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            webpki_roots: true,
            extra_roots: Vec::new(),
            client_config: None,
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("webpki_roots", &self.webpki_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("client_config", &self.client_config.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Adds a trusted root certificate in DER form.
    pub fn add_root_der(&mut self, der: impl Into<Vec<u8>>) {
        self.extra_roots.push(CertificateDer::from(der.into()));
    }

    /// Adds every certificate of a PEM document as a trusted root; returns how many.
    pub fn add_roots_pem(&mut self, pem: &[u8]) -> Result<usize, BuildError> {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| BuildError::Tls(format!("bad PEM: {e}")))?;
            self.extra_roots.push(cert);
            n += 1;
        }
        if n == 0 {
            return Err(BuildError::Tls("no certificate in the PEM document".into()));
        }
        Ok(n)
    }

    /// The rustls configuration, with ALPN set for `http2`.
    pub(crate) fn build(&self, http2: bool) -> Result<Arc<rustls::ClientConfig>, BuildError> {
        let mut config = match &self.client_config {
            Some(c) => (**c).clone(),
            None => {
                let mut roots = rustls::RootCertStore::empty();
                if self.webpki_roots {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                for der in &self.extra_roots {
                    roots
                        .add(der.clone())
                        .map_err(|e| BuildError::Tls(format!("bad root certificate: {e}")))?;
                }
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| BuildError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth()
            }
        };
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_retry_delays_grow_and_cap() {
        let r = ConnectRetry {
            max_retries: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.5,
        };
        assert_eq!(r.delay(0, 0.0), Duration::ZERO);
        assert_eq!(r.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(r.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(r.delay(3, 0.0), Duration::from_millis(400));
        assert_eq!(r.delay(4, 0.0), Duration::from_millis(500));
        assert_eq!(r.delay(1, 0.999_999_999), Duration::from_nanos(50_000_000));
    }

    #[test]
    fn pem_roots() {
        let mut t = TlsConfig::default();
        assert!(t.add_roots_pem(b"not pem").is_err());
        assert_eq!(t.extra_roots.len(), 0);
    }
}
