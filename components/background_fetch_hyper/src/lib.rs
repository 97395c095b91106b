//! # background-fetch-hyper
//!
//! A [`NetworkHost`] for the `background-fetch` engine, on hyper 1, hyper-util's pooled client
//! and rustls 0.23: the network a background fetch's records are downloaded (and uploaded)
//! through.
//!
//! * **Protocols.** HTTP/1.1, and HTTP/2 negotiated by ALPN over TLS. TLS is rustls with the
//!   *ring* provider given explicitly (the process-wide rustls default is left alone), trusting
//!   the webpki (Mozilla) roots plus roots the embedder adds ([`TlsConfig::add_root_der`],
//!   [`TlsConfig::add_roots_pem`]). Connections are opened by hyper-util's `HttpConnector`
//!   (RFC 8305 Happy Eyeballs, a connect timeout shared among a name's addresses, TCP
//!   keepalive), kept alive over HTTP/2 with PINGs, and a connection that timed out is never
//!   reused. The pools (and TLS session caches) are partitioned by the caller's origin, so
//!   that background fetches of different sites share no connection; within a partition one
//!   pool serves every record of every fetch.
//! * **Streaming with backpressure.** Each [`NetworkHost::fetch`] spawns one task on the host's
//!   tokio runtime; it forwards [`NetworkEvent`]s through a channel of
//!   [`Config::channel_capacity`] events (2 by default). While the engine is storing a chunk and
//!   the channel is full, the task does not read the socket, so TCP (or HTTP/2 flow control)
//!   pushes back on the server. Memory per download is a few chunks whatever its size: the
//!   channel, hyper's HTTP/1.1 read buffer (at most about 400 KiB), or, on HTTP/2, the stream's
//!   flow-control window (adaptive, at most 16 MiB: credit is only returned as the engine takes
//!   the bytes). The benchmark in `BENCHMARKS.md` shows 8 MiB peak RSS for a 1 GiB download.
//!   Dropping the returned stream aborts the task, which closes the HTTP/1.1 connection (or
//!   resets the HTTP/2 stream): that is how the engine terminates a fetch. Request bodies stream
//!   from the store to the socket, with an `UploadProgress` event as each chunk goes out.
//! * **Fetch.** Redirects (at most [`Config::max_redirects`], 20; 301/302 turn `POST` into
//!   `GET`, 303 turns anything but `GET`/`HEAD` into `GET`, dropping the body; 307/308 send the
//!   body again, re-opened in the store, and each byte counts once in `UploadProgress`; a
//!   redirect's `Referrer-Policy` applies to the next hop); each hop is
//!   checked again for scheme, mixed content and bad port; the response's URL list has every
//!   URL. Redirect mode `"error"` fails; `"manual"` reports an `opaqueredirect` response (status
//!   0, no headers, no body). CORS for cross-origin requests: the CORS check on every response
//!   (redirects included), CORS-preflight (`OPTIONS` with `Access-Control-Request-Method` and
//!   `-Headers`) for a method or header that is not safelisted, with a preflight cache; the
//!   response of a `cors` request is CORS-filtered (`ResponseType::Cors`), a same-origin one
//!   is `basic`. A cross-origin redirect from a cross-origin URL taints the origin: the request
//!   then says `Origin: null` and needs `Access-Control-Allow-Origin: null` or `*`. Mode
//!   `"same-origin"` refuses cross-origin URLs. The credentials mode decides the credentials
//!   flag, which the CORS check honours (`*` is refused with `"include"`, which also needs
//!   `Access-Control-Allow-Credentials: true`).
//! * **No size leak** (spec issue 178): a response that fails CORS is refused on its head,
//!   before any body byte is read; the engine sees `Blocked(Cors)` and counts nothing.
//! * **Content codings.** A first request (no range) says
//!   `Accept-Encoding: gzip, deflate, br, zstd` and the body is decoded as it streams by
//!   async-compression's decoders (chains such as `gzip, br` too, every `Content-Encoding` line
//!   counted, bytes after the last gzip member ignored), a bounded chunk at a time, so a
//!   compression bomb costs no memory; the bytes the engine stores and counts are decoded
//!   bytes. A list with an unknown coding passes through unchanged, as Fetch does.
//! * **Resuming.** A request with `range_start = Some(n)` says `Range: bytes=n-`,
//!   `Accept-Encoding: identity` and `If-Range` with a strong validator only (RFC 9110
//!   §13.1.5: the stored strong ETag; with no ETag at all, a Last-Modified at least 60 s
//!   before the stored Date). The engine never asks to resume a response stored with a
//!   content coding, nor a request whose author set `Range`: it restarts those records.
//!   The host reports the head as it is (206 with `Content-Range`, or a 200 when the server
//!   restarted or the validator changed, or a 416); the engine runs "validate a partial
//!   response" and decides. A content-coded 206 is a fatal error: its bytes could not line up
//!   with the stored ones.
//! * **Integrity.** A request with integrity metadata (`sha256`/`sha384`/`sha512`) has the
//!   decoded body hashed as it streams and checked at its end; a mismatch is a fatal error
//!   (after the bytes, which the engine then discards with the record). Such a request is never
//!   resumed: the part already stored could not be hashed, so a resumed attempt asks for the
//!   whole body and the engine restarts the record on the 200.
//!
//! ## Who does what: this host and the engine
//!
//! | Concern | This host | The engine |
//! |---|---|---|
//! | scheme / mixed content / bad port | checks every hop (redirect targets included) | checks before each attempt |
//! | CSP | — | its `PolicyHost`, before each attempt |
//! | CORS, preflight, filtering | yes | — |
//! | 206 validation, restart on 200, success on complete-length | reports heads as they are | "validate a partial response", "complete a record" |
//! | retry | connection establishment only, within one attempt ([`ConnectRetry`], short) | everything else: waits with [`background_fetch::RetryPolicy`] and resumes with Range |
//! | timeouts | connect (per address and overall), response head, idle body/upload, optional minimum rate | — |
//! | connectivity | detects it ([`Connectivity`]) | pauses `GET` records while offline |
//!
//! There is no double backoff: the host retries only failures that happen before a byte of the
//! request is sent (refused, reset during connect/TLS, name resolution, connect timeout,
//! unreachable), a couple of times within a second or two, which also saves non-`GET` records
//! (the engine never retries those) from a momentary refusal. Whatever still fails is reported
//! once as [`NetworkErrorKind::Temporary`](background_fetch::NetworkErrorKind::Temporary), and from then on the engine's retry policy alone
//! decides when to try again.
//!
//! ## Error classification
//!
//! | What happened | Reported as |
//! |---|---|
//! | connection refused or reset, name resolution failed, connect/TLS-handshake timeout, network unreachable, a TLS alert that may pass (`internal_error`, ...) | `Temporary` (after [`Config::connect_retry`]) |
//! | no response head within [`Config::response_head_timeout`]; no body bytes for [`Config::idle_timeout`] (empty HTTP/2 DATA frames are no bytes); slower than [`Config::min_rate`]; upload stalled | `Temporary` (the connection is not reused) |
//! | the body stopped early (connection closed or reset, fewer bytes than `Content-Length`, a broken chunked encoding, an HTTP/2 reset, a close-delimited coded body cut inside its coding) | `Temporary` (after the bytes received so far) |
//! | an HTTP/2 stream refused with `HTTP_1_1_REQUIRED`; a `421` | retried once (over HTTP/1.1; on a new connection) |
//! | certificate refused, a TLS alert that will not pass (`handshake_failure`, `protocol_version`, ...) | `Fatal` |
//! | a malformed response head; a header section over [`Config::max_response_header_size`] | `Fatal` (saying so) |
//! | too many redirects (loops included), redirect mode `"error"` (with or without `Location`), several `Location` headers, an unparsable `Location` (mode `"follow"`) | `Fatal` |
//! | a corrupt content-coded body; a content-coded 206; a body that fails its integrity metadata | `Fatal` |
//! | the request body could not be read from the store; a 307/308 needing a body that can neither be re-opened nor was kept | `Fatal` |
//! | cache mode `"only-if-cached"` (there is no HTTP cache) | `Fatal` |
//! | scheme not `http(s)`, mixed content, bad port (on any hop) | `Blocked(Scheme / MixedContent / BadPort)` |
//! | CORS check or preflight failed; mode `"same-origin"` with a cross-origin URL | `Blocked(Cors)` |
//! | mode `"no-cors"` (background fetch rejects it at `fetch()`) | `Blocked(Other)` |
//!
//! ## Credentials
//!
//! The host has no cookie jar and no authentication cache. The credentials flag governs the
//! CORS check; cookies and `Authorization` are sent only if the embedder supplies a
//! [`Credentials`] hook ([`Config::credentials`]).
//!
//! ## Connectivity
//!
//! [`HyperNetwork::connectivity`] tells whether the network looks online (see [`Connectivity`]
//! for the rules: a failure to reach one destination is that record's; only when destinations
//! known to work fail too does it go offline, and back online on any successful connection or
//! probe). [`HyperNetwork::drive_engine`] forwards
//! it to `Engine::set_online` until the returned link is dropped.
//!
//! ## Example
//!
//! ```no_run
//! use background_fetch::{NetworkEvent, NetworkHost, NetworkRequest, Request, ClientSnapshot, FetchUid, Validators};
//! use background_fetch_hyper::{Config, HyperNetwork};
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! let mut config = Config::default();
//! config.idle_timeout = Duration::from_secs(30);
//! // config.tls.add_roots_pem(include_bytes!("corp-ca.pem"))?;
//! let network = HyperNetwork::new(config).expect("a runtime and a TLS configuration");
//! // Give `network` to the engine as `Hosts::network` (an `Arc<dyn NetworkHost>`), and keep
//! // `let _link = network.drive_engine(&engine);` alive beside the engine.
//!
//! // Or drive it directly, from any executor:
//! let url = url::Url::parse("https://example.com/episode.mp3").unwrap();
//! let mut events = network.fetch(NetworkRequest {
//!     request: Request::get(url.clone()),
//!     body: None,
//!     range_start: None,
//!     validators: Validators::default(),
//!     client: ClientSnapshot::for_url(url),
//!     fetch: FetchUid(1),
//!     record: 0,
//! });
//! futures::executor::block_on(async {
//!     while let Some(event) = events.next().await {
//!         match event {
//!             NetworkEvent::Response(head) => println!("{} {:?}", head.status, head.url()),
//!             NetworkEvent::Data(bytes) => println!("{} bytes", bytes.len()),
//!             NetworkEvent::Error(e) => println!("{e}"),
//!             NetworkEvent::UploadProgress(_) => {}
//!         }
//!     }
//! });
//! ```

#![warn(missing_docs)]

mod body;
mod config;
mod connect;
mod connectivity;
pub mod cors;
mod credentials;
pub mod decode;
mod fetch;
mod integrity;
mod pool;
mod resolve;

pub use config::{BuildError, Config, ConnectRetry, ConnectivityConfig, MinRate, TlsConfig};
pub use connectivity::Connectivity;
pub use credentials::Credentials;
pub use resolve::{Resolve, ResolveError, ResolveErrorKind, StaticResolver, SystemResolver};

use background_fetch::{Engine, NetworkError, NetworkEvent, NetworkHost, NetworkRequest};
use fetch::{Msg, Shared, Tx};
use futures::stream::{BoxStream, Stream, StreamExt};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::Instrument;

/// The network host. Cheap to clone (clones share the connection pool, the preflight cache and
/// the connectivity signal).
#[derive(Clone)]
pub struct HyperNetwork {
    shared: Arc<Shared>,
    handle: Handle,
    _runtime: Option<Arc<OwnedRuntime>>,
}

impl fmt::Debug for HyperNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperNetwork")
            .field("config", &self.shared.config)
            .field("online", &self.shared.connectivity.is_online())
            .field("own_runtime", &self._runtime.is_some())
            .finish()
    }
}

/// A runtime the host created; shut down without blocking when the last clone goes.
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl HyperNetwork {
    /// A host on its own multi-threaded tokio runtime ([`Config::worker_threads`] threads).
    /// The engine may poll the streams from any executor.
    pub fn new(config: Config) -> Result<Self, BuildError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("background-fetch-net")
            .enable_all()
            .build()
            .map_err(BuildError::Runtime)?;
        let mut host = Self::with_handle(rt.handle().clone(), config)?;
        host._runtime = Some(Arc::new(OwnedRuntime(Some(rt))));
        Ok(host)
    }

    /// A host whose tasks run on the embedder's tokio runtime (which must have I/O and time
    /// enabled).
    pub fn with_handle(handle: Handle, config: Config) -> Result<Self, BuildError> {
        let tls = config.tls.build(config.http2)?;
        let resolver: Arc<dyn Resolve> = config
            .resolver
            .clone()
            .unwrap_or_else(|| Arc::new(SystemResolver));
        let connectivity = Connectivity::new(
            config.connectivity.clone(),
            resolver.clone(),
            config.connect_timeout,
            handle.clone(),
        );
        let pools = pool::Pools::new(&config, tls, resolver, connectivity.clone(), handle.clone());
        Ok(HyperNetwork {
            shared: Arc::new(Shared {
                config,
                pools,
                connectivity,
                preflight: Default::default(),
            }),
            handle,
            _runtime: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The runtime the host's tasks run on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The online/offline signal.
    pub fn connectivity(&self) -> Connectivity {
        self.shared.connectivity.clone()
    }

    /// Forwards the connectivity signal to `engine` (`Engine::set_online`), starting with the
    /// current state, until the returned link is dropped.
    #[must_use = "dropping the link stops forwarding"]
    pub fn drive_engine(&self, engine: &Engine) -> EngineLink {
        let mut changes = self.connectivity().changes();
        let engine = engine.clone();
        let task = self.handle.spawn(async move {
            while let Some(online) = changes.next().await {
                engine.set_online(online);
            }
        });
        EngineLink(task.abort_handle())
    }
}

/// Keeps [`HyperNetwork::drive_engine`] forwarding; dropping it stops.
#[derive(Debug)]
pub struct EngineLink(AbortHandle);

impl Drop for EngineLink {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NetworkHost for HyperNetwork {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let capacity = self.shared.config.channel_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let span = tracing::info_span!(
            "net",
            fetch = %request.fetch,
            record = request.record,
            url = %request.request.url,
            range_start = ?request.range_start,
        );
        let task = self
            .handle
            .spawn(fetch::run(self.shared.clone(), request, Tx(tx)).instrument(span));
        EventStream {
            rx,
            task: task.abort_handle(),
            done: false,
        }
        .boxed()
    }
}

/// The stream returned by [`HyperNetwork::fetch`]: aborts the socket task when dropped.
struct EventStream {
    rx: mpsc::Receiver<Msg>,
    task: AbortHandle,
    done: bool,
}

impl Stream for EventStream {
    type Item = NetworkEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NetworkEvent>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Msg::Event(e))) => {
                if matches!(e, NetworkEvent::Error(_)) {
                    this.done = true;
                }
                Poll::Ready(Some(e))
            }
            Poll::Ready(Some(Msg::End)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                // The task went away without finishing (its runtime shut down, or it
                // panicked): the resource is temporarily unavailable from here.
                this.done = true;
                Poll::Ready(Some(NetworkEvent::Error(NetworkError::temporary(
                    "the network task stopped before the fetch finished",
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
