//! The connection pools: one per partition (the caller's site), each with its own TLS session
//! cache, so that a tracker embedded in two sites cannot link their background fetches
//! through a shared connection or TLS session (Chromium partitions its socket pools and
//! session cache by network anonymization key the same way).

use crate::body::ReqBody;
use crate::config::Config;
use crate::connect::Connector;
use crate::connectivity::Connectivity;
use crate::resolve::Resolve;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioTimer;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// A pooled client.
pub(crate) type HttpClient = Client<Connector, ReqBody>;

/// One partition: its pooled client, and one that speaks only HTTP/1.1 (for a server that
/// refuses a request over HTTP/2 with `HTTP_1_1_REQUIRED`). Both share the partition's TLS
/// session cache.
pub(crate) struct Partition {
    pub client: HttpClient,
    pub http1: HttpClient,
}

/// The partitions, created on first use and dropped least recently used first.
pub(crate) struct Pools {
    config: Config,
    tls: Arc<rustls::ClientConfig>,
    resolver: Arc<dyn Resolve>,
    connectivity: Connectivity,
    handle: Handle,
    partitions: Mutex<Partitions>,
}

/// A use counter, and each partition by key with when it was last used.
type Partitions = (u64, HashMap<String, (u64, Arc<Partition>)>);

/// hyper's executor: spawns on the host's runtime, whichever thread asks.
#[derive(Clone)]
struct HandleExecutor(Handle);

impl<F> hyper::rt::Executor<F> for HandleExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

impl Pools {
    pub fn new(
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
        resolver: Arc<dyn Resolve>,
        connectivity: Connectivity,
        handle: Handle,
    ) -> Self {
        Pools {
            config: config.clone(),
            tls,
            resolver,
            connectivity,
            handle,
            partitions: Mutex::new((0, HashMap::new())),
        }
    }

    /// The partition of a caller whose origin is `origin`.
    ///
    /// AD-HOC: Chromium keys by the top-level site (scheme and registrable domain); without a
    ///         public suffix list we key by the caller's origin, which partitions at least as
    ///         finely.
    pub fn get(&self, origin: &str) -> Arc<Partition> {
        let mut guard = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, map) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if let Some((used, p)) = map.get_mut(origin) {
            *used = now;
            return p.clone();
        }
        if map.len() >= self.config.max_partitions.max(1)
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let p = Arc::new(self.partition());
        map.insert(origin.to_owned(), (now, p.clone()));
        p
    }

    fn partition(&self) -> Partition {
        // Each partition resumes only its own TLS sessions.
        let resumption =
            rustls::client::Resumption::in_memory_sessions(self.config.tls_sessions_per_partition);
        let mut tls = (*self.tls).clone();
        tls.resumption = resumption.clone();
        let mut tls1 = (*self.tls).clone();
        tls1.resumption = resumption;
        tls1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Partition {
            client: self.client(Arc::new(tls)),
            http1: self.client(Arc::new(tls1)),
        }
    }

    fn client(&self, tls: Arc<rustls::ClientConfig>) -> HttpClient {
        let c = &self.config;
        let connector = Connector::new(c, tls, self.resolver.clone(), self.connectivity.clone());
        let mut b = Client::builder(HandleExecutor(self.handle.clone()));
        b.timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(c.pool_idle_timeout)
            .pool_max_idle_per_host(c.pool_max_idle_per_host)
            .http2_adaptive_window(true)
            // Response header limits: browsers accept about 256 KiB.
            // AD-HOC: over HTTP/1.1 hyper bounds the head by its read buffer (about 400 KiB,
            //         which also bounds body reads: lowering it would cost throughput) and by a
            //         count of fields; a head over either is the same fatal error.
            .http1_max_headers(MAX_HTTP1_HEADERS)
            .http2_max_header_list_size(c.max_response_header_size);
        if let Some(interval) = c.http2_keepalive_interval {
            // RFC 9113 §6.7: PING frames find a connection dead (a NAT mapping that timed
            // out, a network that changed) before a request waits on it.
            b.http2_keep_alive_interval(interval)
                .http2_keep_alive_timeout(c.http2_keepalive_timeout)
                .http2_keep_alive_while_idle(true);
        }
        b.build(connector)
    }
}

/// Response header fields accepted over HTTP/1.1 (hyper's default is 100).
const MAX_HTTP1_HEADERS: usize = 1024;
