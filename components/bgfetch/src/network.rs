//! The network as a system tool sets it up, and as the program watches it.
//!
//! * **Trust** ([`NetArgs::cacert`]): the platform's certificate store by default, read by
//!   `rustls-native-certs` (through `background-fetch-hyper`'s [`TlsConfig::native_roots`]):
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the system's bundle, as curl and
//!   OpenSSL find it. `--cacert FILE` trusts the certificates in `FILE` instead (as curl's
//!   does). A system with no store at all (and neither variable set) falls back to the
//!   compiled-in Mozilla roots, with a warning.
//! * **Proxies** ([`NetArgs::proxy`]): `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`
//!   (lower case too), or `--proxy URL` for every request (`NO_PROXY` still applies).
//! * **Politeness**: `--parallel N` records of a fetch at once; `--limit-rate RATE` per fetch,
//!   shared by its records ([`Pacer`], applied in [`ObservedNetwork`]).
//! * **Detail**: [`ObservedNetwork`] hands each failed attempt (with its transport-level cause)
//!   to the [`RecordLog`].
//!
//! [`TlsConfig::native_roots`]: background_fetch_hyper::TlsConfig::native_roots

use crate::records::RecordLog;
use background_fetch::{FetchUid, NetworkEvent, NetworkHost, NetworkRequest};
use background_fetch_hyper::{Config, ProxyConfig};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// The network options of the commands that download (`fetch`, `run`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NetArgs {
    /// Trust the CA certificates in FILE (PEM) instead of the platform's store (which is
    /// SSL_CERT_FILE / SSL_CERT_DIR when set, else the system's bundle).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// `--proxy URL`: the HTTP proxy for every request.
    #[arg(
        long,
        value_name = "URL",
        help = "Send every request through this HTTP proxy, http://[USER:PASSWORD@]HOST[:PORT] \
                (https is tunnelled with CONNECT). Overrides HTTP_PROXY, HTTPS_PROXY and \
                ALL_PROXY; NO_PROXY still applies"
    )]
    pub proxy: Option<String>,
    /// Download at most N records of a fetch at once (default 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: Option<u16>,
    /// Retry a record N times after a temporary failure (connection refused or reset, DNS,
    /// timeout) that stored nothing, waiting 0.5 s, then twice as long each time, at most
    /// 16 s (default 7; a record that makes progress is always resumed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub retry: Option<u32>,
}

/// How the network is set up.
pub struct NetSetup {
    /// The host's configuration.
    pub config: Config,
    /// Whether `config` trusts the platform's store (and may fall back to the compiled-in
    /// roots if the platform has none).
    pub may_fall_back: bool,
    /// Records of a fetch at once.
    pub parallel: usize,
    /// Attempts of a record that store nothing before it fails.
    pub attempts: u32,
}

impl NetSetup {
    /// For a process that downloads nothing (queries answered from the store, the demo's
    /// local server): the compiled-in roots, no proxy.
    pub fn offline() -> NetSetup {
        NetSetup {
            config: Config::default(),
            may_fall_back: false,
            parallel: 16,
            attempts: 8,
        }
    }
}

impl NetArgs {
    /// The setup these options and the environment (read through `var`) ask for; a bad value
    /// is an error that names it.
    pub fn setup(&self, var: impl Fn(&str) -> Option<String>) -> Result<NetSetup, String> {
        let mut config = Config::default();
        config.tls.webpki_roots = false;
        let mut may_fall_back = false;
        match &self.cacert {
            Some(file) => {
                config
                    .tls
                    .add_roots_from_paths(Some(file), None)
                    .map_err(|e| format!("--cacert: {e}"))?;
            }
            None => {
                config.tls.native_roots = true;
                may_fall_back = var("SSL_CERT_FILE").is_none() && var("SSL_CERT_DIR").is_none();
            }
        }
        let proxy = match &self.proxy {
            Some(url) => {
                let mut b = ProxyConfig::builder().all(url);
                if let Some(no) = var("NO_PROXY").or_else(|| var("no_proxy")) {
                    b = b.no(&no);
                }
                b.build().map_err(|e| format!("--proxy: {e}"))?
            }
            None => ProxyConfig::from_vars(&var).map_err(|e| e.to_string())?,
        };
        config.proxy = (!proxy.is_empty()).then_some(proxy);
        Ok(NetSetup {
            config,
            may_fall_back,
            parallel: self.parallel.map(usize::from).unwrap_or(16),
            attempts: self.retry.unwrap_or(7) + 1,
        })
    }
}

/// Parses a rate as curl's `--limit-rate` does: bytes per second, with an optional `k`, `M`
/// or `G` suffix (powers of 1024; either case; a fraction allowed: `1.5M`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a rate: write bytes per second, with an optional k, M or G suffix \
             (for example 500k or 2M)"
        )
    };
    let t = text.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
        _ => (t, 'b'),
    };
    let scale: f64 = match unit {
        'b' => 1.0,
        'k' => 1024.0,
        'm' => 1024.0 * 1024.0,
        'g' => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let rate = n * scale;
    if !rate.is_finite() || rate < 1.0 || rate > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(rate as u64)
}

/// Paces a fetch's bytes to a rate, whichever of its records they belong to: each chunk
/// takes its share of time after the previous one (idle time earns no burst).
pub struct Pacer {
    rate: u64,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer of `rate` bytes per second.
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            next: Mutex::new(None),
        }
    }

    /// Waits until `n` more bytes fit the rate.
    pub async fn take(&self, n: usize) {
        let until = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let start = next.filter(|t| *t > now).unwrap_or(now);
            let end = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            *next = Some(end);
            end
        };
        tokio::time::sleep_until(until).await;
    }
}

/// The rate limit of each fetch, as its embedder data says (looked up once per fetch).
#[derive(Default)]
pub struct RateLimits {
    lookup: OnceLock<Box<dyn Fn(FetchUid) -> Option<u64> + Send + Sync>>,
    pacers: Mutex<HashMap<FetchUid, Option<Arc<Pacer>>>>,
}

impl RateLimits {
    /// Sets how a fetch's rate limit is found (once the engine is known).
    pub fn set_lookup(&self, lookup: impl Fn(FetchUid) -> Option<u64> + Send + Sync + 'static) {
        let _ = self.lookup.set(Box::new(lookup));
    }

    fn pacer(&self, uid: FetchUid) -> Option<Arc<Pacer>> {
        let mut pacers = self.pacers.lock().unwrap();
        if let Some(p) = pacers.get(&uid) {
            return p.clone();
        }
        let rate = self.lookup.get().and_then(|l| l(uid))?;
        let p = Some(Arc::new(Pacer::new(rate)));
        pacers.insert(uid, p.clone());
        p
    }
}

/// The network host, watched: failed attempts go to the record log, and a fetch's bytes are
/// paced to its rate limit (while a chunk waits, the socket is not read: the host's
/// backpressure slows the server down).
pub struct ObservedNetwork {
    inner: Arc<dyn NetworkHost>,
    log: Arc<RecordLog>,
    limits: Arc<RateLimits>,
}

impl ObservedNetwork {
    /// `inner`, watched.
    pub fn new(
        inner: Arc<dyn NetworkHost>,
        log: Arc<RecordLog>,
        limits: Arc<RateLimits>,
    ) -> ObservedNetwork {
        ObservedNetwork { inner, log, limits }
    }
}

impl NetworkHost for ObservedNetwork {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let (uid, record) = (request.fetch, request.record);
        let pacer = self.limits.pacer(uid);
        let log = self.log.clone();
        self.inner
            .fetch(request)
            .then(move |event| {
                let pacer = pacer.clone();
                let log = log.clone();
                async move {
                    match &event {
                        NetworkEvent::Error(e) => log.attempt_failed(uid, record, e),
                        NetworkEvent::Data(b) => {
                            if let Some(p) = &pacer {
                                p.take(b.len()).await;
                            }
                        }
                        _ => {}
                    }
                    event
                }
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_curl_s() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("500k"), Ok(500 * 1024));
        assert_eq!(parse_rate("2M"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("1.5m"), Ok(1024 * 1024 * 3 / 2));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        for bad in ["", "0", "fast", "2X", "-1k", "k"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_s_records_share_its_rate() {
        // Virtual time: two records of one fetch, 1000 bytes each in 100-byte chunks, at
        // 500 bytes/s between them: 4 s, not the 2 s each would take alone.
        let pacer = Arc::new(Pacer::new(500));
        let start = Instant::now();
        let record = |p: Arc<Pacer>| async move {
            for _ in 0..10 {
                p.take(100).await;
            }
        };
        tokio::join!(record(pacer.clone()), record(pacer.clone()));
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    /// A network that answers every attempt with a head and `chunks` chunks of 1000 bytes.
    struct Chunks(usize);
    impl NetworkHost for Chunks {
        fn fetch(&self, _request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
            let head = background_fetch::ResponseHead {
                status: 200,
                status_text: "OK".into(),
                headers: Default::default(),
                url_list: vec![url::Url::parse("https://a.test/f").unwrap()],
                response_type: background_fetch::ResponseType::Basic,
                resume_headers: Default::default(),
            };
            let events = std::iter::once(NetworkEvent::Response(head)).chain(
                (0..self.0).map(|_| NetworkEvent::Data(bytes::Bytes::from(vec![0u8; 1000]))),
            );
            futures::stream::iter(events).boxed()
        }
    }

    fn request(uid: u64, record: usize) -> NetworkRequest {
        let url = url::Url::parse("https://a.test/f").unwrap();
        NetworkRequest {
            request: background_fetch::Request::get(url.clone()),
            body: None,
            range_start: None,
            validators: Default::default(),
            client: background_fetch::ClientSnapshot::for_url(url),
            fetch: FetchUid(uid),
            record,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_network_paces_only_the_fetches_with_a_limit() {
        let log = RecordLog::new(Arc::new(crate::output::Reporter::new(
            crate::output::Mode::Quiet,
        )));
        let limits = Arc::new(RateLimits::default());
        // Fetch 1 has 2000 bytes/s (as its embedder data would say); fetch 2 has none.
        limits.set_lookup(|uid| (uid == FetchUid(1)).then_some(2000));
        let net = ObservedNetwork::new(Arc::new(Chunks(4)), log, limits);
        let start = Instant::now();
        let (a, b) = tokio::join!(
            net.fetch(request(1, 0)).count(),
            net.fetch(request(1, 1)).count()
        );
        assert_eq!((a, b), (5, 5));
        // 8000 bytes at 2000 bytes/s, shared by the two records.
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        let start = Instant::now();
        assert_eq!(net.fetch(request(2, 0)).count().await, 5);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn options_and_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        // By default: the platform's store, no proxy, 16 at once.
        let s = NetArgs::default().setup(env(&[])).unwrap();
        assert!(s.config.tls.native_roots && !s.config.tls.webpki_roots);
        assert!(s.may_fall_back);
        assert!(s.config.proxy.is_none());
        assert_eq!(s.parallel, 16);
        // SSL_CERT_FILE is the store: no fall-back if it is unusable.
        let s = NetArgs::default()
            .setup(env(&[("SSL_CERT_FILE", "/x.pem")]))
            .unwrap();
        assert!(!s.may_fall_back);
        // Lower-case variables count; a bad one is an error naming it.
        let s = NetArgs::default()
            .setup(env(&[("https_proxy", "http://127.0.0.1:3128")]))
            .unwrap();
        assert!(s.config.proxy.is_some());
        let e = NetArgs::default()
            .setup(env(&[("HTTP_PROXY", "ftp://p")]))
            .err()
            .unwrap();
        assert!(e.contains("HTTP_PROXY") && e.contains("ftp://p"), "{e}");
        let a = NetArgs {
            proxy: Some("socks5://p:1080".into()),
            ..Default::default()
        };
        let e = a.setup(env(&[])).err().unwrap();
        assert!(
            e.contains("--proxy") && e.contains("socks5://p:1080"),
            "{e}"
        );
        let a = NetArgs {
            cacert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = a.setup(env(&[])).err().unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
