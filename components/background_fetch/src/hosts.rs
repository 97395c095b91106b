//! The host seams: everything that belongs to the embedding browser comes in through these
//! traits. Each is object-safe (`Arc<dyn Trait>`) and returns `Send` futures or streams, so
//! an embedder can back them with any runtime, thread or IPC channel.
//!
//! | Seam | Trait | Reference implementation |
//! |---|---|---|
//! | storage | [`crate::store::Store`] | [`crate::MemoryStore`]; crate `background-fetch-redb` |
//! | network | [`NetworkHost`] | crate `background-fetch-hyper`; [`crate::testing::ScriptedNetwork`] |
//! | UI | [`UiHost`] | the `bgfetch` progress bars; [`crate::testing::RecordingUi`] |
//! | service worker | [`WorkerHost`] | [`crate::testing::RecordingWorker`] |
//! | permission | [`PermissionHost`] | [`Granted`] |
//! | quota | [`QuotaHost`] | [`Unlimited`] |
//! | policy (CSP) | [`PolicyHost`] | [`NoPolicy`] |
//! | time | [`Clock`] | [`crate::testing::VirtualClock`] |
//! | tasks | [`Spawn`] | [`crate::testing::Executor`] |

use crate::fetch::policy::BlockReason;
use crate::fetch::{Request, ResponseHead};
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchResult, ClientSnapshot, EventToken, FetchUid,
    FunctionalEventKind, ImageResource, PermissionState, ServiceWorkerRegistrationId,
};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Runs futures to completion in the background. The engine spawns one task per running
/// background fetch, plus short-lived timer tasks for throttled progress.
pub trait Spawn: Send + Sync {
    /// Runs `future` to completion, concurrently with the caller.
    fn spawn(&self, future: BoxFuture<'static, ()>);
}

/// Time, as the host keeps it. Tests use a virtual clock, so nothing sleeps.
pub trait Clock: Send + Sync {
    /// A monotonic reading: time since an arbitrary, fixed epoch.
    fn now(&self) -> Duration;
    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// How the engine must treat a network error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NetworkErrorKind {
    /// The resource is *temporarily unavailable* (offline, connection refused or reset, DNS
    /// failure, timeout, a body that stopped early): a `GET` record waits and resumes with a
    /// Range request.
    Temporary,
    /// A network error that retrying will not fix (bad response, TLS failure, too many
    /// redirects, ...): the record fails with `fetch-error`.
    Fatal,
    /// A policy blocked the request: the record fails with `fetch-error`, and no byte of any
    /// response is counted or stored.
    Blocked(BlockReason),
    /// An *aborted network error*: the record's result becomes `aborted`.
    Aborted,
}

/// What failed at the transport level, as the network host classified it: for the embedder's
/// diagnostics (a downloader's per-record report, devtools). The engine carries it and never
/// acts on it: [`NetworkErrorKind`] alone decides what happens to the record, and neither is
/// shown to script (a page learns only the failure reason, as the spec says).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NetworkErrorCause {
    /// Name resolution failed.
    Dns,
    /// The TCP connection could not be made (refused, unreachable).
    Connect,
    /// TLS failed (the certificate was refused, the handshake failed).
    Tls,
    /// The connection was reset or closed early.
    Reset,
    /// A timeout passed (connect, response head, a stalled body).
    Timeout,
    /// A proxy refused or failed the request (its CONNECT answer, its authentication).
    Proxy,
    /// The server broke HTTP (a malformed response, a body that does not decode).
    Protocol,
}

impl NetworkErrorCause {
    /// Its name in reports: `dns`, `connect`, `tls`, `reset`, `timeout`, `proxy`, `protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkErrorCause::Dns => "dns",
            NetworkErrorCause::Connect => "connect",
            NetworkErrorCause::Tls => "tls",
            NetworkErrorCause::Reset => "reset",
            NetworkErrorCause::Timeout => "timeout",
            NetworkErrorCause::Proxy => "proxy",
            NetworkErrorCause::Protocol => "protocol",
        }
    }
}

/// A network error, with a message for logs and diagnostics (never shown to script).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkError {
    /// How to treat it.
    pub kind: NetworkErrorKind,
    /// What happened.
    pub message: String,
    /// What failed at the transport level, if the host knows ([`NetworkErrorCause`]:
    /// diagnostics only).
    #[serde(default)]
    pub cause: Option<NetworkErrorCause>,
}

impl NetworkError {
    /// A temporary error.
    pub fn temporary(message: impl Into<String>) -> Self {
        NetworkError {
            kind: NetworkErrorKind::Temporary,
            message: message.into(),
            cause: None,
        }
    }
    /// A fatal error.
    pub fn fatal(message: impl Into<String>) -> Self {
        NetworkError {
            kind: NetworkErrorKind::Fatal,
            message: message.into(),
            cause: None,
        }
    }
    /// A policy block.
    pub fn blocked(reason: BlockReason, message: impl Into<String>) -> Self {
        NetworkError {
            kind: NetworkErrorKind::Blocked(reason),
            message: message.into(),
            cause: None,
        }
    }
    /// The same error, with its transport-level cause.
    pub fn with_cause(mut self, cause: NetworkErrorCause) -> Self {
        self.cause = Some(cause);
        self
    }
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for NetworkError {}

/// The validators of the stored response, for an `If-Range` on a resumed request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The stored response's `ETag`, if any (weak or strong; the host decides whether it can
    /// use it in `If-Range`, which needs a strong one).
    pub etag: Option<String>,
    /// The stored response's `Last-Modified`, if any.
    pub last_modified: Option<String>,
    /// The stored response's `Date`, if any: a `Last-Modified` is a strong validator (usable in
    /// `If-Range`) only when it is at least 60 seconds before the `Date` (RFC 9110 §8.8.2.2).
    pub date: Option<String>,
}

/// Opens a stored request body at a byte offset: the bytes from there to its end, in order.
pub type OpenRequestBody =
    Arc<dyn Fn(u64) -> BoxStream<'static, Result<Bytes, StoreError>> + Send + Sync>;

/// A request body streamed from the store to the network.
pub struct RequestBodySource {
    /// Its length in bytes.
    pub length: u64,
    /// The bytes, in order.
    pub stream: BoxStream<'static, Result<Bytes, StoreError>>,
    /// Opens the body again at an offset, for a host that must send it again within the
    /// attempt (a 307 or 308 redirect, a retry on another connection). `None`: the body can be
    /// read once.
    pub reopen: Option<OpenRequestBody>,
}

impl RequestBodySource {
    /// A body that can be read once.
    pub fn once(length: u64, stream: BoxStream<'static, Result<Bytes, StoreError>>) -> Self {
        RequestBodySource {
            length,
            stream,
            reopen: None,
        }
    }

    /// A body that `open` opens at any offset (the store's request body); `stream` is
    /// `open(0)`.
    pub fn reopenable(
        length: u64,
        open: impl Fn(u64) -> BoxStream<'static, Result<Bytes, StoreError>> + Send + Sync + 'static,
    ) -> Self {
        RequestBodySource {
            length,
            stream: open(0),
            reopen: Some(Arc::new(open)),
        }
    }

    /// The body from `offset` on, if it can be opened again.
    pub fn open_at(&self, offset: u64) -> Option<BoxStream<'static, Result<Bytes, StoreError>>> {
        self.reopen.as_ref().map(|open| open(offset))
    }
}

impl fmt::Debug for RequestBodySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RequestBodySource({} bytes{})",
            self.length,
            if self.reopen.is_some() {
                ", re-openable"
            } else {
                ""
            }
        )
    }
}

/// One fetch attempt for a record ("complete a record" step 11).
#[derive(Debug)]
pub struct NetworkRequest {
    /// The record's request. Its keepalive flag is set and its service-workers mode is
    /// `"none"` (steps 5 and 6): the host must not route it through a service worker.
    pub request: Request,
    /// The request body, if the request has one.
    pub body: Option<RequestBodySource>,
    /// `Some(n)` with n > 0 when resuming: the host sends `Range: bytes=n-` and
    /// `Accept-Encoding: identity` ("add a range header", step 8).
    pub range_start: Option<u64>,
    /// The stored response's validators when resuming (for `If-Range`).
    pub validators: Validators,
    /// The caller of `fetch()`, captured then: origin, base URL, policy container.
    pub client: ClientSnapshot,
    /// Which background fetch and record this attempt is for (for logs and scheduling).
    pub fetch: FetchUid,
    /// The record's index in its background fetch.
    pub record: usize,
}

/// What a fetch attempt reports, in order: any number of `UploadProgress`, then either an
/// `Error`, or a `Response` followed by `Data` chunks and then either the end of the stream
/// (the body finished normally) or an `Error` (the body stream errored).
///
/// A body cut off before its end (the connection closed early) is an `Error` of kind
/// [`NetworkErrorKind::Temporary`]. The engine defends against hosts that report it as a
/// normal end anyway: a full response without content coding whose body ended before its
/// `Content-Length` is treated as temporarily unavailable.
///
/// Dropping the stream terminates the fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkEvent {
    /// `processRequestBodyChunkLength`: this many more request body bytes were transmitted.
    UploadProgress(u64),
    /// The response head arrived (after redirects and CORS).
    Response(ResponseHead),
    /// Decoded body bytes (after content-coding).
    Data(Bytes),
    /// A network error: before the head, the response is a network error; after it, the body
    /// stream errored.
    Error(NetworkError),
}

/// The network. One call per fetch attempt; the host runs Fetch (redirects, CORS, policy
/// checks, content decoding) and reports events.
///
/// # Contract
///
/// * **One attempt per call.** Redirects, CORS preflights and connection retries that send
///   nothing happen inside it; the engine makes the next attempt (with a Range request) after
///   an [`NetworkErrorKind::Temporary`] error.
/// * **Order of events**: [`NetworkEvent`]'s. A second head, or bytes before a head, fail the
///   record.
/// * **Truncation.** A body that stops before its end is an `Error` (temporary when a retry can
///   help: reset, timeout, a close before `Content-Length`), never a normal end. The engine also
///   treats a full, identity-coded response that ended short of its `Content-Length` as
///   temporary, for hosts that cannot tell.
/// * **Content codings.** `Data` is decoded; the head keeps `Content-Encoding` (in
///   `headers`, or in `resume_headers` when CORS filtering removed it): the engine restarts
///   rather than Range-resumes a coded response, since the decoded bytes of one representation
///   do not continue the other's.
/// * **Resumption.** With [`NetworkRequest::range_start`] the host sends `Range: bytes=n-`,
///   `Accept-Encoding: identity` and an `If-Range` from [`NetworkRequest::validators`] when one
///   is strong; a request with an author `Range` header is never resumed.
/// * **Flow control.** The engine pulls: it polls the stream again once the previous chunk is
///   stored. A host keeps at most a bounded amount in flight (hyper's: two chunks), never the
///   whole body. A stream whose next chunk is always ready is fine: the transfer yields to
///   the executor after each stored chunk, so script's calls and other fetches go on.
/// * **Cancellation.** Dropping the stream terminates the transfer (pause, abort, offline).
/// * **Errors.** [`NetworkErrorKind`]: `Temporary` for what waiting can fix (offline, refused,
///   reset, DNS failure of a name that may resolve later, timeouts), `Fatal` for what it cannot,
///   `Blocked` for policy (scheme, mixed content, bad port, CSP, CORS: no byte is stored), and
///   `Aborted`. A failure of one destination is that record's, not "the network is offline":
///   connectivity comes through [`crate::Engine::set_online`]. [`NetworkError::cause`] says
///   what failed at the transport level (DNS, connect, TLS, ...) for the embedder's own
///   diagnostics; the engine passes it by and never acts on it.
/// * **Uploads.** [`NetworkRequest::body`] can be re-opened at an offset
///   ([`RequestBodySource::open_at`]) for a 307/308; `UploadProgress` counts each byte once per
///   attempt.
/// * **No service worker, no keepalive to a page.** The request's service-workers mode is
///   `"none"`; it belongs to no document (an embedder whose Fetch requires a client for
///   keepalive, as Servo's does, must not set it).
pub trait NetworkHost: Send + Sync {
    /// Starts a fetch attempt. The returned stream must be `'static` and `Send`; dropping it
    /// must cancel the transfer.
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent>;
}

/// What the user sees for a background fetch (the "display" algorithm's inputs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSnapshot {
    /// Which fetch.
    pub uid: FetchUid,
    /// The origin of the registration's scope URL: the UI must display it prominently.
    pub origin: String,
    /// The fetch's id.
    pub id: String,
    /// Its title (from `fetch()` or `updateUI()`).
    pub title: String,
    /// Its icons (from `fetch()` or `updateUI()`).
    pub icons: Vec<ImageResource>,
    /// `downloadTotal` (0 = unknown).
    pub download_total: u64,
    /// Upload total.
    pub upload_total: u64,
    /// Stored body bytes total.
    pub downloaded: u64,
    /// Uploaded bytes.
    pub uploaded: u64,
    /// The paused flag.
    pub paused: bool,
    /// Whether the network reports being online.
    pub online: bool,
    /// The permission was `"prompt"`: the fetch waits for [`crate::Engine::permission_decision`].
    pub awaiting_permission: bool,
    /// Every record is `GET`, so the UI may offer pause.
    pub can_pause: bool,
    /// The result (empty while running).
    pub result: BackgroundFetchResult,
    /// The failure reason.
    pub failure_reason: BackgroundFetchFailureReason,
}

/// The browser UI. The engine calls it; what the user does comes back through
/// [`crate::Engine::pause`], [`crate::Engine::resume`], [`crate::Engine::user_abort`],
/// [`crate::Engine::click`] and [`crate::Engine::permission_decision`].
///
/// **Threads and re-entrancy.** The calls come synchronously from the engine's tasks (on
/// whatever thread the [`Spawn`]er runs them) or from the embedder's own calls into the engine
/// (`set_online`, `fetch()`), never with an engine lock held. An implementation returns
/// quickly (it posts to its UI thread) and may call back into the engine: those calls are
/// `async` and do not run inside it. Progress listeners
/// ([`crate::BackgroundFetchRegistration::on_progress`]) follow the same rules.
pub trait UiHost: Send + Sync {
    /// Display a new background fetch (also called for every fetch restored after a restart).
    /// The UI must show the origin, must not be dismissible until the result is set, and must
    /// offer abort.
    fn show(&self, ui: &UiSnapshot);
    /// Progress, paused, title/icons or result changed. Throttled like progress events.
    fn update(&self, ui: &UiSnapshot);
    /// The fetch is gone (its registration was unregistered or its storage cleared).
    fn remove(&self, uid: FetchUid);
    /// The store refused a change that script or the user made and sees (a pause, an abort,
    /// `updateUI()`'s title and icons, the result): it holds in this process, but a restart
    /// would forget it. The user should hear of it (the engine has already logged it). Also
    /// reported to the embedder's operation that made the change
    /// ([`crate::OperationError::NotDurable`]), where there is one. The default does nothing.
    fn storage_failed(&self, failure: &StorageFailure) {
        let _ = failure;
    }
}

/// A change the store refused ([`UiHost::storage_failed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageFailure {
    /// The fetch.
    pub uid: FetchUid,
    /// What was not stored.
    pub change: StoredChange,
    /// Why.
    pub error: StoreError,
}

/// What kind of change the store refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoredChange {
    /// The paused flag, the abort all flag or the permission answer: a restart restores the
    /// fetch as it was before the change (running again after an abort, for example).
    Flags,
    /// The title and icons from `updateUI()`: a restart shows the earlier ones.
    Ui,
    /// The result: a restart runs the fetch's unfinished records again, and its event fires
    /// again.
    Result,
}

/// What became of a functional event dispatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DispatchOutcome {
    /// The event was dispatched and is no longer active (its `waitUntil` promises settled or
    /// timed out).
    Completed,
    /// Not dispatched: no listener for the event type ("should skip event"), or no active
    /// worker.
    Skipped,
    /// Running the service worker failed.
    Failed(String),
}

/// A functional event to fire at a service worker global, as data: its kind, its background
/// fetch and a token. The event's objects (its `registration`, `updateUI()`) are made from the
/// token where the worker's script runs: [`crate::Engine::functional_event`] in this process,
/// the service protocol's `ToScript::Event` in another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionalEventData {
    /// Which event.
    pub kind: FunctionalEventKind,
    /// Names the event while it is active.
    pub token: EventToken,
    /// Its background fetch.
    pub uid: FetchUid,
    /// The fetch's id.
    pub id: String,
    /// The service worker registration whose active worker gets it.
    pub registration: ServiceWorkerRegistrationId,
}

/// The service worker side: registration state and functional event dispatch.
pub trait WorkerHost: Send + Sync {
    /// Whether the registration has an active worker (`fetch()` step 8.4, and before a
    /// functional event is fired). Asynchronous: the answer may come from another process.
    fn has_active_worker(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BoxFuture<'static, bool>;
    /// Fires a functional event at the registration's active worker and completes when the
    /// event is no longer active. The engine marks the event inactive when this completes, so
    /// `updateUI()` after that rejects.
    fn dispatch(&self, event: FunctionalEventData) -> BoxFuture<'static, DispatchOutcome>;
}

/// The permission state of `"background-fetch"`.
pub trait PermissionHost: Send + Sync {
    /// The permission state for `environment` (the caller's relevant settings object, as
    /// `fetch()` step 8.1 asks: its origin, URL and the embedder's own data about it, which
    /// tells a partitioned or sandboxed document from its origin). Asynchronous: a browser
    /// answers from its permission store, in another process or thread.
    fn permission_state(&self, environment: &ClientSnapshot)
    -> BoxFuture<'static, PermissionState>;
}

/// Quota per storage key.
pub trait QuotaHost: Send + Sync {
    /// The quota of `storage_key` in bytes, or `None` for unlimited. Asked when a fetch is
    /// made (before its request bodies are stored and its `downloadTotal` reserved) and when
    /// it starts or resumes downloading; never for each chunk (the engine keeps the answer in
    /// its ledger).
    fn quota(&self, storage_key: &str) -> BoxFuture<'static, Option<u64>>;
}

/// Policy decisions that need the caller's policy container (CSP). Scheme, mixed content and
/// bad ports are checked by the engine itself.
pub trait PolicyHost: Send + Sync {
    /// Whether `client`'s policies allow `request`. The engine calls it before every fetch
    /// attempt, for the record's URL; a network host that follows redirects calls it for each
    /// hop (Fetch checks CSP for every request).
    fn check(&self, client: &ClientSnapshot, request: &Request) -> Result<(), BlockReason>;
}

/// A [`UiHost`] that shows nothing (a headless embedder; what the user does can still come in
/// through [`crate::Engine::pause`] and the like).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUi;
impl UiHost for NoUi {
    fn show(&self, _ui: &UiSnapshot) {}
    fn update(&self, _ui: &UiSnapshot) {}
    fn remove(&self, _uid: FetchUid) {}
}

/// A [`PermissionHost`] that always answers `"granted"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Granted;
impl PermissionHost for Granted {
    fn permission_state(
        &self,
        _environment: &ClientSnapshot,
    ) -> BoxFuture<'static, PermissionState> {
        futures::future::ready(PermissionState::Granted).boxed()
    }
}

/// A [`QuotaHost`] with no limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unlimited;
impl QuotaHost for Unlimited {
    fn quota(&self, _storage_key: &str) -> BoxFuture<'static, Option<u64>> {
        futures::future::ready(None).boxed()
    }
}

/// A [`QuotaHost`] with the same fixed quota for every storage key.
#[derive(Clone, Copy, Debug)]
pub struct FixedQuota(pub u64);
impl QuotaHost for FixedQuota {
    fn quota(&self, _storage_key: &str) -> BoxFuture<'static, Option<u64>> {
        futures::future::ready(Some(self.0)).boxed()
    }
}

/// A [`PolicyHost`] that allows everything (no CSP support).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPolicy;
impl PolicyHost for NoPolicy {
    fn check(&self, _client: &ClientSnapshot, _request: &Request) -> Result<(), BlockReason> {
        Ok(())
    }
}

/// A [`PolicyHost`] that understands the `connect-src` directive's `'none'` and `'self'`
/// source expressions and explicit origins, which is what conformance tests use. Embedders
/// with a real CSP implementation plug theirs in instead.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimpleCsp;
impl PolicyHost for SimpleCsp {
    fn check(&self, client: &ClientSnapshot, request: &Request) -> Result<(), BlockReason> {
        // Report-only policies never block: what they would block is only reported (here, in
        // the log).
        for policy in &client.policy.csp_report_only {
            if let Err(reason) = Self::allows(policy, client, request) {
                tracing::info!(%policy, url = %request.url, %reason, "report-only CSP violation");
            }
        }
        for policy in &client.policy.csp {
            Self::allows(policy, client, request)?;
        }
        Ok(())
    }
}

impl SimpleCsp {
    /// Whether one serialised policy allows `request` from `client`.
    fn allows(policy: &str, client: &ClientSnapshot, request: &Request) -> Result<(), BlockReason> {
        for directive in policy.split(';') {
            let mut parts = directive.split_ascii_whitespace();
            let Some(name) = parts.next() else { continue };
            let name = name.to_ascii_lowercase();
            if name != "connect-src" && name != "default-src" {
                continue;
            }
            let sources: Vec<&str> = parts.collect();
            let origin = request.url.origin().ascii_serialization();
            let allowed = sources.iter().any(|s| match *s {
                "'none'" => false,
                "'self'" => origin == client.origin,
                "*" => matches!(request.url.scheme(), "http" | "https"),
                other => other.trim_end_matches('/') == origin,
            });
            if !allowed {
                return Err(BlockReason::Csp);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    #[test]
    fn simple_csp() {
        let mut client = ClientSnapshot::for_url(Url::parse("https://a.test/page").unwrap());
        let same = Request::get(Url::parse("https://a.test/x").unwrap());
        let other = Request::get(Url::parse("https://b.test/x").unwrap());
        assert_eq!(SimpleCsp.check(&client, &same), Ok(()));
        client.policy.csp = vec!["connect-src 'none'".into()];
        assert_eq!(SimpleCsp.check(&client, &same), Err(BlockReason::Csp));
        client.policy.csp = vec!["script-src 'none'; connect-src 'self'".into()];
        assert_eq!(SimpleCsp.check(&client, &same), Ok(()));
        assert_eq!(SimpleCsp.check(&client, &other), Err(BlockReason::Csp));
        client.policy.csp = vec!["default-src https://b.test".into()];
        assert_eq!(SimpleCsp.check(&client, &other), Ok(()));
    }

    /// A report-only policy (its disposition "report") never blocks; an enforced one beside it
    /// still does.
    #[test]
    fn report_only_policies_never_block() {
        let mut client = ClientSnapshot::for_url(Url::parse("https://a.test/page").unwrap());
        let other = Request::get(Url::parse("https://b.test/x").unwrap());
        client.policy.csp_report_only = vec!["connect-src 'none'".into()];
        assert_eq!(SimpleCsp.check(&client, &other), Ok(()));
        client.policy.csp = vec!["connect-src 'self'".into()];
        assert_eq!(SimpleCsp.check(&client, &other), Err(BlockReason::Csp));
    }
}

/// The hosts an engine runs on.
#[derive(Clone)]
pub struct Hosts {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Network.
    pub network: Arc<dyn NetworkHost>,
    /// Browser UI.
    pub ui: Arc<dyn UiHost>,
    /// Service worker registrations and functional event dispatch.
    pub worker: Arc<dyn WorkerHost>,
    /// The `"background-fetch"` permission.
    pub permission: Arc<dyn PermissionHost>,
    /// Quota per storage key.
    pub quota: Arc<dyn QuotaHost>,
    /// CSP decisions.
    pub policy: Arc<dyn PolicyHost>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Background tasks.
    pub spawner: Arc<dyn Spawn>,
}

impl Hosts {
    /// Hosts with what every embedding must provide (storage, network, the service worker
    /// side, time and tasks) and sensible defaults for the rest: no UI ([`crate::NoUi`]), the
    /// permission granted ([`crate::Granted`]), no quota ([`crate::Unlimited`]) and
    /// [`crate::SimpleCsp`]. Change any with the `with_*` methods.
    pub fn new(
        store: Arc<dyn Store>,
        network: Arc<dyn NetworkHost>,
        worker: Arc<dyn WorkerHost>,
        clock: Arc<dyn Clock>,
        spawner: Arc<dyn Spawn>,
    ) -> Hosts {
        Hosts {
            store,
            network,
            ui: Arc::new(NoUi),
            worker,
            permission: Arc::new(Granted),
            quota: Arc::new(Unlimited),
            policy: Arc::new(SimpleCsp),
            clock,
            spawner,
        }
    }

    /// With `ui`.
    pub fn with_ui(mut self, ui: Arc<dyn UiHost>) -> Hosts {
        self.ui = ui;
        self
    }

    /// With `permission`.
    pub fn with_permission(mut self, permission: Arc<dyn PermissionHost>) -> Hosts {
        self.permission = permission;
        self
    }

    /// With `quota`.
    pub fn with_quota(mut self, quota: Arc<dyn QuotaHost>) -> Hosts {
        self.quota = quota;
        self
    }

    /// With `policy`.
    pub fn with_policy(mut self, policy: Arc<dyn PolicyHost>) -> Hosts {
        self.policy = policy;
        self
    }
}
