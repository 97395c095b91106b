//! The script side of the protocol: the objects script sees (`BackgroundFetchManager`,
//! `BackgroundFetchRegistration`, `BackgroundFetchRecord`, `Response`, the functional events)
//! as thin clients of a [`Connection`]. A binding layer (a JavaScript engine's, or Servo's
//! generated WebIDL bindings) calls them; every call becomes a message, every promise a reply.
//!
//! These objects hold no engine state: data, ids and the connection. The `Request` constructor
//! runs here, in the caller's realm (fetch() step 6.1, match() through matchAll()).

use super::protocol::{
    BodyData, BodyId, Call, CallId, EnvironmentData, EventToken, FetchRequestData,
    PROTOCOL_VERSION, RecordData, RecordId, RecordStateData, RegistrationData, Reply, ToScript,
    ToService,
};
use crate::error::DomError;
use crate::fetch::{
    HeaderList, Request, RequestBody, RequestInfo, RequestInit, ResponseHead, ResponseType,
    construct_request,
};
use crate::hosts::{DispatchOutcome, Spawn};
use crate::manager::Requests;
use crate::matching::CacheQueryOptions;
use crate::model::FunctionalEventKind;
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, BackgroundFetchResult,
    BackgroundFetchUiOptions, FetchUid, ServiceWorkerRegistrationId,
};
use crate::store::{ExportMode, Exported};
use crate::sync::lock;
use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where a connection sends its messages (the transport's sending end).
pub trait ServiceSink: Send + Sync {
    /// Sends `message` to the service. Must not block on the service, and must not call back
    /// into the connection before returning.
    fn send(&self, message: ToService);
    /// The connection was dropped: the service may release what it holds for it.
    fn close(&self) {}
}

/// What script does with a functional event: the service worker global's listener, which
/// completes when the event is no longer active (`waitUntil`).
pub type FunctionalEventHandler =
    Arc<dyn Fn(FunctionalEvent) -> BoxFuture<'static, DispatchOutcome> + Send + Sync>;

/// The script side of one connection: one environment's view of the engine. Cloning gives
/// another handle to the same connection.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    sink: Arc<dyn ServiceSink>,
    spawner: Arc<dyn Spawn>,
    environment: EnvironmentData,
    next_call: AtomicU64,
    pending: Mutex<HashMap<CallId, oneshot::Sender<Answer>>>,
    welcome: Mutex<Option<Result<u32, DomError>>>,
    /// The registration objects alive in this environment, by fetch (`[SameObject]`-like:
    /// one object per background fetch).
    registrations: Mutex<HashMap<FetchUid, Weak<RegInner>>>,
    handler: Mutex<Option<FunctionalEventHandler>>,
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.sink.close();
    }
}

/// A weak handle to a [`Connection`] (for transports, which must not keep it alive).
#[derive(Clone)]
pub struct WeakConnection(Weak<ConnInner>);

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("environment", &self.inner.environment)
            .finish()
    }
}

impl Connection {
    /// A connection of the script of `environment`, sending through `sink`. Functional event
    /// handlers run on `spawner`. Nothing is sent until [`Connection::hello`]; the transport
    /// hands every message from the service to [`Connection::receive`].
    pub fn new(
        sink: Arc<dyn ServiceSink>,
        environment: EnvironmentData,
        spawner: Arc<dyn Spawn>,
    ) -> Connection {
        Connection {
            inner: Arc::new(ConnInner {
                sink,
                spawner,
                environment,
                next_call: AtomicU64::new(1),
                pending: Mutex::new(HashMap::new()),
                welcome: Mutex::new(None),
                registrations: Mutex::new(HashMap::new()),
                handler: Mutex::new(None),
            }),
        }
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakConnection {
        WeakConnection(Arc::downgrade(&self.inner))
    }

    /// The connection of a weak handle, if it is still open.
    pub fn upgrade(weak: &WeakConnection) -> Option<Connection> {
        weak.0.upgrade().map(|inner| Connection { inner })
    }

    /// Sends the connection's first message: the protocol version and the environment.
    pub fn hello(&self) {
        self.inner.sink.send(ToService::Hello {
            version: PROTOCOL_VERSION,
            environment: self.inner.environment.clone(),
        });
    }

    /// The service's answer to [`Connection::hello`], once it arrived.
    pub fn welcome(&self) -> Option<Result<u32, DomError>> {
        lock(&self.inner.welcome).clone()
    }

    /// The environment of the connection's script.
    pub fn environment(&self) -> &EnvironmentData {
        &self.inner.environment
    }

    /// `registration.backgroundFetch` for the service worker registration `registration`,
    /// which has an active worker.
    pub fn background_fetch(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BackgroundFetchManager {
        self.background_fetch_with(registration, true)
    }

    /// `registration.backgroundFetch`, saying whether the registration has an active worker
    /// (`registration.active`: fetch() step 8.4).
    pub fn background_fetch_with(
        &self,
        registration: &ServiceWorkerRegistrationId,
        active_worker: bool,
    ) -> BackgroundFetchManager {
        BackgroundFetchManager {
            conn: self.clone(),
            registration: registration.clone(),
            active_worker,
        }
    }

    /// Sets the service worker global's listener of functional events (a service worker's
    /// connection). Without one, events are reported skipped.
    pub fn on_functional_event(
        &self,
        handler: impl Fn(FunctionalEvent) -> BoxFuture<'static, DispatchOutcome> + Send + Sync + 'static,
    ) {
        *lock(&self.inner.handler) = Some(Arc::new(handler));
    }

    /// Handles a message from the service (the transport calls it for each).
    pub fn receive(&self, message: ToScript) {
        match message {
            ToScript::Welcome(w) => *lock(&self.inner.welcome) = Some(w),
            ToScript::Reply { call, result } => {
                if let Some(tx) = lock(&self.inner.pending).remove(&call) {
                    // The registration object is made now, in message order: an update that
                    // follows this reply finds it, even before the caller's task resumes.
                    let registration = match &result {
                        Ok(Reply::Registration(data) | Reply::MaybeRegistration(Some(data))) => {
                            Some(self.registration(data.clone()))
                        }
                        _ => None,
                    };
                    let _ = tx.send(Answer {
                        result,
                        registration,
                    });
                }
            }
            ToScript::Update { data, progress } => {
                // "Update background fetch instances" step 6: a task queued on the script's
                // event loop for each instance, so it runs after what script does with a reply
                // that came before it (fetch() resolving with the values of its reply, as
                // upstream fetch.https.window.js expects), and before what comes after it.
                let reg = lock(&self.inner.registrations)
                    .get(&data.uid)
                    .and_then(Weak::upgrade);
                if let Some(reg) = reg {
                    self.inner.spawner.spawn(
                        async move {
                            // 6.3 to 6.9: the values, unless the object has newer ones.
                            if RegInner::refresh(&reg, data) && progress {
                                // 6.10. Fire an event named "progress" at bgFetchRegistration.
                                let listeners = lock(&reg.listeners).clone();
                                let reg = BackgroundFetchRegistration { inner: reg };
                                for l in listeners {
                                    l(&reg);
                                }
                            }
                        }
                        .boxed(),
                    );
                }
            }
            ToScript::Event {
                event,
                kind,
                registration,
            } => {
                let handler = lock(&self.inner.handler).clone();
                let conn = self.clone();
                let Some(handler) = handler else {
                    self.inner.sink.send(ToService::EventDone {
                        event,
                        outcome: DispatchOutcome::Skipped,
                    });
                    return;
                };
                let e = FunctionalEvent {
                    kind,
                    registration: self.registration(registration),
                    token: Some(event),
                    conn: self.clone(),
                    active: Arc::new(AtomicBool::new(true)),
                };
                let active = e.active.clone();
                self.inner.spawner.spawn(
                    async move {
                        let outcome = handler(e).await;
                        active.store(false, Ordering::SeqCst);
                        conn.inner
                            .sink
                            .send(ToService::EventDone { event, outcome });
                    }
                    .boxed(),
                );
            }
        }
    }

    /// Makes a call now (its message is sent before this returns); the future is its reply.
    fn call(
        &self,
        call_data: Call,
    ) -> impl Future<Output = Result<Reply, DomError>> + Send + 'static {
        let (call, rx) = self.start_call(call_data);
        async move { Self::answer(call, rx).await.result }
    }

    /// Makes a call whose reply is a registration (or none) now; the future is its object.
    fn call_for_registration(
        &self,
        call_data: Call,
    ) -> impl Future<Output = Result<Option<BackgroundFetchRegistration>, DomError>> + Send + 'static
    {
        let (call, rx) = self.start_call(call_data);
        async move { Self::answer(call, rx).await.registration() }
    }

    fn start_call(&self, call_data: Call) -> (CallId, oneshot::Receiver<Answer>) {
        let call = CallId(self.inner.next_call.fetch_add(1, Ordering::SeqCst));
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(call, tx);
        self.inner.sink.send(ToService::Call { call, call_data });
        (call, rx)
    }

    async fn answer(call: CallId, rx: oneshot::Receiver<Answer>) -> Answer {
        rx.await.unwrap_or_else(|_| Answer {
            result: Err(DomError::invalid_state(format!(
                "the background fetch service went away before answering call {}",
                call.0
            ))),
            registration: None,
        })
    }

    /// The registration object of this environment for `data`'s fetch, with the newer of its
    /// values and `data`'s.
    fn registration(&self, data: RegistrationData) -> BackgroundFetchRegistration {
        let uid = data.uid;
        let mut regs = lock(&self.inner.registrations);
        if let Some(reg) = regs.get(&uid).and_then(Weak::upgrade) {
            RegInner::refresh(&reg, data);
            return BackgroundFetchRegistration { inner: reg };
        }
        regs.retain(|_, w| w.strong_count() > 0);
        let inner = Arc::new(RegInner {
            conn: self.clone(),
            data: Mutex::new(data),
            listeners: Mutex::new(Vec::new()),
        });
        regs.insert(uid, Arc::downgrade(&inner));
        BackgroundFetchRegistration { inner }
    }

    fn release(&self, records: Vec<RecordId>, bodies: Vec<BodyId>) {
        self.inner.sink.send(ToService::Release { records, bodies });
    }
}

/// A reply, with the registration object the connection made from it when it arrived.
struct Answer {
    result: Result<Reply, DomError>,
    registration: Option<BackgroundFetchRegistration>,
}

impl Answer {
    /// The registration of a `Registration` or `MaybeRegistration` reply.
    fn registration(self) -> Result<Option<BackgroundFetchRegistration>, DomError> {
        match self.result? {
            Reply::Registration(_) | Reply::MaybeRegistration(Some(_)) => Ok(self.registration),
            Reply::MaybeRegistration(None) => Ok(None),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: Reply) -> DomError {
    DomError::invalid_state(format!("unexpected reply from the service: {reply:?}"))
}

/// `BackgroundFetchManager` over a connection.
#[derive(Clone, Debug)]
pub struct BackgroundFetchManager {
    conn: Connection,
    registration: ServiceWorkerRegistrationId,
    active_worker: bool,
}

impl BackgroundFetchManager {
    /// `fetch(id, requests, options)`: the `Request` constructor runs here (step 6.1), now;
    /// the rest in the engine. The call is made before this returns (the future is its
    /// answer). Streamed request bodies are sent chunk by chunk, on the connection's spawner.
    pub fn fetch(
        &self,
        id: &str,
        requests: impl Into<Requests>,
        options: BackgroundFetchOptions,
    ) -> impl Future<Output = Result<BackgroundFetchRegistration, DomError>> + Send + 'static {
        let made = self.start_fetch(id, requests.into(), options);
        async move {
            let (call, rx) = made?;
            let answer = Connection::answer(call, rx).await;
            answer.registration()?.ok_or_else(|| {
                DomError::invalid_state("the service answered fetch() without a registration")
            })
        }
    }

    /// fetch()'s synchronous part: the requests, the call, and the task sending streamed
    /// bodies.
    fn start_fetch(
        &self,
        id: &str,
        requests: Requests,
        options: BackgroundFetchOptions,
    ) -> Result<(CallId, oneshot::Receiver<Answer>), DomError> {
        let requests = match requests {
            Requests::One(r) => vec![r],
            Requests::Many(v) => v,
        };
        let base = &self.conn.inner.environment.base_url;
        let mut data = Vec::with_capacity(requests.len());
        let mut streams = Vec::new();
        for (i, info) in requests.into_iter().enumerate() {
            // 6.1. Let internalRequest be the request of the result of invoking the Request
            //      constructor with request.
            let object = construct_request(info, RequestInit::default(), base)?;
            let body = match object.body {
                None => None,
                Some(RequestBody::Bytes(b)) => Some(BodyData::Bytes(b)),
                Some(RequestBody::Stream(s)) => {
                    streams.push((i, s));
                    Some(BodyData::Streamed)
                }
            };
            data.push(FetchRequestData {
                request: object.request,
                body,
            });
        }
        let (call, rx) = self.conn.start_call(Call::Fetch {
            registration: self.registration.clone(),
            id: id.to_owned(),
            requests: data,
            options,
            active_worker: self.active_worker,
        });
        // The streamed bodies go one after the other while the call waits (fetch() 8.8).
        let sink = self.conn.inner.sink.clone();
        if streams.is_empty() {
            return Ok((call, rx));
        }
        let upload = async move {
            for (record, mut stream) in streams {
                loop {
                    let chunk = match stream.next().await {
                        Some(Ok(bytes)) => Ok(Some(bytes)),
                        Some(Err(e)) => Err(e),
                        None => Ok(None),
                    };
                    let last = !matches!(chunk, Ok(Some(_)));
                    sink.send(ToService::UploadChunk {
                        call,
                        record,
                        chunk,
                    });
                    if last {
                        break;
                    }
                }
            }
        };
        self.conn.inner.spawner.spawn(upload.boxed());
        Ok((call, rx))
    }

    /// `get(id)` (the call is made before this returns).
    pub fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<BackgroundFetchRegistration>, DomError>> + Send + 'static
    {
        self.conn.call_for_registration(Call::Get {
            registration: self.registration.clone(),
            id: id.to_owned(),
        })
    }

    /// `getIds()` (the call is made before this returns).
    pub fn get_ids(&self) -> impl Future<Output = Result<Vec<String>, DomError>> + Send + 'static {
        let reply = self.conn.call(Call::GetIds {
            registration: self.registration.clone(),
        });
        async move {
            match reply.await? {
                Reply::Ids(ids) => Ok(ids),
                other => Err(unexpected(other)),
            }
        }
    }
}

/// What a `progress` listener receives: the registration it fired at.
pub type ProgressListener = Arc<dyn Fn(&BackgroundFetchRegistration) + Send + Sync>;

struct RegInner {
    conn: Connection,
    data: Mutex<RegistrationData>,
    listeners: Mutex<Vec<ProgressListener>>,
}

impl RegInner {
    /// Takes `data`'s values unless the object already has newer ones (a reply and an update
    /// can cross); whether it took them.
    fn refresh(this: &RegInner, data: RegistrationData) -> bool {
        let mut current = lock(&this.data);
        if data.revision < current.revision {
            return false;
        }
        *current = data;
        true
    }
}

/// `BackgroundFetchRegistration` over a connection: its attributes are the values the service
/// last delivered ([`ToScript::Update`]).
#[derive(Clone)]
pub struct BackgroundFetchRegistration {
    inner: Arc<RegInner>,
}

impl PartialEq for BackgroundFetchRegistration {
    /// Identity, like `===` on the JS objects.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for BackgroundFetchRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*lock(&self.inner.data), f)
    }
}

impl BackgroundFetchRegistration {
    /// The values, as delivered.
    pub fn data(&self) -> RegistrationData {
        lock(&self.inner.data).clone()
    }
    /// The fetch's uid (not web-exposed).
    pub fn uid(&self) -> FetchUid {
        lock(&self.inner.data).uid
    }
    /// `id`
    pub fn id(&self) -> String {
        lock(&self.inner.data).id.clone()
    }
    /// `uploadTotal`
    pub fn upload_total(&self) -> u64 {
        lock(&self.inner.data).upload_total
    }
    /// `uploaded`
    pub fn uploaded(&self) -> u64 {
        lock(&self.inner.data).uploaded
    }
    /// `downloadTotal`
    pub fn download_total(&self) -> u64 {
        lock(&self.inner.data).download_total
    }
    /// `downloaded`
    pub fn downloaded(&self) -> u64 {
        lock(&self.inner.data).downloaded
    }
    /// `result`
    pub fn result(&self) -> BackgroundFetchResult {
        lock(&self.inner.data).result
    }
    /// `failureReason`
    pub fn failure_reason(&self) -> BackgroundFetchFailureReason {
        lock(&self.inner.data).failure_reason
    }
    /// `recordsAvailable`
    pub fn records_available(&self) -> bool {
        lock(&self.inner.data).records_available
    }

    /// Adds a `progress` listener; it runs when the service delivers new values.
    pub fn on_progress(
        &self,
        listener: impl Fn(&BackgroundFetchRegistration) + Send + Sync + 'static,
    ) {
        lock(&self.inner.listeners).push(Arc::new(listener));
    }

    /// `abort()` (the call is made before this returns).
    pub fn abort(&self) -> impl Future<Output = Result<bool, DomError>> + Send + 'static {
        let reply = self.inner.conn.call(Call::Abort { fetch: self.uid() });
        async move {
            match reply.await? {
                Reply::Aborted(b) => Ok(b),
                other => Err(unexpected(other)),
            }
        }
    }

    /// `match(request, options)`: the first of `matchAll()`, or `None` (undefined).
    pub fn r#match(
        &self,
        request: impl Into<RequestInfo>,
        options: CacheQueryOptions,
    ) -> impl Future<Output = Result<Option<BackgroundFetchRecord>, DomError>> + Send + 'static
    {
        let all = self.match_all(Some(request.into()), options);
        async move { Ok(all.await?.into_iter().next()) }
    }

    /// `matchAll(request, options)`: its synchronous steps (and the call) before this
    /// returns.
    pub fn match_all(
        &self,
        request: Option<RequestInfo>,
        options: CacheQueryOptions,
    ) -> impl Future<Output = Result<Vec<BackgroundFetchRecord>, DomError>> + Send + 'static {
        let made = self.start_match_all(request, options);
        let conn = self.inner.conn.clone();
        async move {
            match made?.await? {
                Reply::Records(records) => Ok(records
                    .into_iter()
                    .map(|r| BackgroundFetchRecord::new(&conn, r))
                    .collect()),
                other => Err(unexpected(other)),
            }
        }
    }

    fn start_match_all(
        &self,
        request: Option<RequestInfo>,
        options: CacheQueryOptions,
    ) -> Result<impl Future<Output = Result<Reply, DomError>> + Send + 'static, DomError> {
        // 1. If this's records available flag is unset, return a promise rejected with an
        //    InvalidStateError DOMException.
        if !self.records_available() {
            return Err(DomError::invalid_state(
                "the records of this background fetch are no longer available",
            ));
        }
        let base = &self.inner.conn.inner.environment.base_url;
        let request = match request {
            Some(info) => Some(construct_request(info, RequestInit::default(), base)?.request),
            None => None,
        };
        Ok(self.inner.conn.call(Call::MatchAll {
            fetch: self.uid(),
            request,
            options,
        }))
    }
}

struct RecInner {
    conn: Connection,
    data: RecordData,
    response_ready: Shared<BoxFuture<'static, Result<Response, DomError>>>,
}

impl Drop for RecInner {
    fn drop(&mut self) {
        self.conn.release(vec![self.data.record], Vec::new());
    }
}

/// `BackgroundFetchRecord` over a connection. Clones are the same record object (one
/// `responseReady` promise).
#[derive(Clone)]
pub struct BackgroundFetchRecord {
    inner: Arc<RecInner>,
}

impl fmt::Debug for BackgroundFetchRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundFetchRecord")
            .field("index", &self.inner.data.index)
            .field("url", &self.inner.data.request.url.as_str())
            .finish()
    }
}

impl BackgroundFetchRecord {
    fn new(conn: &Connection, data: RecordData) -> Self {
        let c = conn.clone();
        let record = data.record;
        let ready = async move {
            match c.call(Call::ResponseReady { record }).await? {
                Reply::Response { head, body } => Ok(Response {
                    head,
                    body: Arc::new(Mutex::new(Some(RemoteBody {
                        conn: c.clone(),
                        body,
                    }))),
                }),
                other => Err(unexpected(other)),
            }
        }
        .boxed();
        BackgroundFetchRecord {
            inner: Arc::new(RecInner {
                conn: conn.clone(),
                data,
                response_ready: ready.shared(),
            }),
        }
    }

    /// `request` (its body is [`Self::request_body`]).
    pub fn request(&self) -> &Request {
        &self.inner.data.request
    }

    /// The record's index in its background fetch.
    pub fn index(&self) -> usize {
        self.inner.data.index
    }

    /// `responseReady`: the same promise at every call.
    pub fn response_ready(&self) -> BoxFuture<'static, Result<Response, DomError>> {
        self.inner.response_ready.clone().boxed()
    }

    /// The record's state right now: its result, its stored response head and how many body
    /// bytes are stored (not web-exposed; for an embedder's own views of a fetch).
    pub fn state(
        &self,
    ) -> impl Future<Output = Result<RecordStateData, DomError>> + Send + 'static {
        let record = self.inner.data.record;
        let reply = self.inner.conn.call(Call::RecordState { record });
        async move {
            match reply.await? {
                Reply::RecordState(state) => Ok(state),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Hands the record's response body to `destination`, a path of the file system of the
    /// service's process, through the store's export: resolves once the record's result is
    /// final and, for a success, the destination is whole and durable; a record that did not
    /// succeed is a `TypeError` and nothing is written (not web-exposed; for an embedder that
    /// delivers bodies as files, see [`Call::ExportBody`]).
    pub fn export_response_body(
        &self,
        destination: std::path::PathBuf,
        mode: ExportMode,
    ) -> impl Future<Output = Result<Exported, DomError>> + Send + 'static {
        let record = self.inner.data.record;
        let reply = self.inner.conn.call(Call::ExportBody {
            record,
            destination,
            mode,
        });
        async move {
            match reply.await? {
                Reply::Exported(how) => Ok(how),
                other => Err(unexpected(other)),
            }
        }
    }

    /// The request's body, read from the engine's store, or `None` when it has none.
    pub fn request_body(&self) -> Option<BoxStream<'static, Result<Bytes, DomError>>> {
        self.request().body_length?;
        let conn = self.inner.conn.clone();
        let record = self.inner.data.record;
        let open = async move {
            match conn.call(Call::ReadRequestBody { record }).await {
                Ok(Reply::Body(Some(body))) => RemoteBody { conn, body }.stream(),
                Ok(Reply::Body(None)) => futures::stream::empty().boxed(),
                Ok(other) => {
                    futures::stream::once(futures::future::ready(Err(unexpected(other)))).boxed()
                }
                Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
            }
        };
        Some(open.flatten_stream().boxed())
    }
}

/// A body held by the service, read chunk by chunk.
struct RemoteBody {
    conn: Connection,
    body: BodyId,
}

impl RemoteBody {
    fn stream(self) -> BoxStream<'static, Result<Bytes, DomError>> {
        /// Releases the body if the reader stops before its end.
        struct Reading {
            body: RemoteBody,
            offset: u64,
            done: bool,
        }
        impl Drop for Reading {
            fn drop(&mut self) {
                if !self.done {
                    self.body.conn.release(Vec::new(), vec![self.body.body]);
                }
            }
        }
        futures::stream::unfold(
            Some(Reading {
                body: self,
                offset: 0,
                done: false,
            }),
            |reading| async move {
                let mut r = reading?;
                let reply = r
                    .body
                    .conn
                    .call(Call::ReadBody {
                        body: r.body.body,
                        offset: r.offset,
                    })
                    .await;
                match reply {
                    Ok(Reply::Chunk(Some(bytes))) => {
                        r.offset += bytes.len() as u64;
                        Some((Ok(bytes), Some(r)))
                    }
                    Ok(Reply::Chunk(None)) => {
                        r.done = true;
                        None
                    }
                    Ok(other) => {
                        r.done = true;
                        Some((Err(unexpected(other)), None))
                    }
                    Err(e) => {
                        r.done = true;
                        Some((Err(e), None))
                    }
                }
            },
        )
        .boxed()
    }
}

/// A `Response` from `responseReady` over a connection. Clones are the same Response object:
/// the body can be read once.
#[derive(Clone)]
pub struct Response {
    head: ResponseHead,
    body: Arc<Mutex<Option<RemoteBody>>>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.head.status)
            .finish()
    }
}

impl Response {
    /// `status`
    pub fn status(&self) -> u16 {
        self.head.status
    }
    /// `statusText`
    pub fn status_text(&self) -> &str {
        &self.head.status_text
    }
    /// `ok`
    pub fn ok(&self) -> bool {
        self.head.is_ok()
    }
    /// `url` (empty when the URL list is empty)
    pub fn url(&self) -> String {
        self.head.url_string()
    }
    /// `redirected`
    pub fn redirected(&self) -> bool {
        self.head.redirected()
    }
    /// `type`
    pub fn response_type(&self) -> ResponseType {
        self.head.response_type
    }
    /// `headers`
    pub fn headers(&self) -> &HeaderList {
        &self.head.headers
    }
    /// The whole head.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }
    /// `bodyUsed`
    pub fn body_used(&self) -> bool {
        lock(&self.body).is_none()
    }
    /// The body stream, read from the engine as it is consumed. A body already taken gives a
    /// stream that errors with a `TypeError`.
    pub fn into_body(self) -> BoxStream<'static, Result<Bytes, DomError>> {
        match lock(&self.body).take() {
            Some(body) => body.stream(),
            None => crate::fetch::used_body(),
        }
    }
    /// Reads the whole body (`arrayBuffer()`).
    pub async fn bytes(self) -> Result<Vec<u8>, DomError> {
        crate::fetch::read_all(self.into_body()).await
    }
    /// Reads the whole body as text (`text()`: Encoding's UTF-8 decode).
    pub async fn text(self) -> Result<String, DomError> {
        Ok(crate::fetch::utf8_decode(&self.bytes().await?))
    }
}

/// A functional event the service fired at this service worker global: `BackgroundFetchEvent`
/// (abort, click) or `BackgroundFetchUpdateUIEvent` (success, fail); or one script constructed
/// ([`FunctionalEvent::new_untrusted`]).
#[derive(Clone)]
pub struct FunctionalEvent {
    kind: FunctionalEventKind,
    registration: BackgroundFetchRegistration,
    /// The token of an event the service fired (`None` for one script constructed).
    token: Option<EventToken>,
    conn: Connection,
    active: Arc<AtomicBool>,
}

impl fmt::Debug for FunctionalEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionalEvent")
            .field("kind", &self.kind)
            .field("registration", &self.registration)
            .finish()
    }
}

impl FunctionalEvent {
    /// `new BackgroundFetchEvent(type, {registration})` or
    /// `new BackgroundFetchUpdateUIEvent(type, {registration})`, as script constructs it:
    /// `isTrusted` is false, so `updateUI()` rejects, and nothing is sent to the service.
    pub fn new_untrusted(
        kind: FunctionalEventKind,
        registration: BackgroundFetchRegistration,
    ) -> Self {
        FunctionalEvent {
            kind,
            conn: registration.inner.conn.clone(),
            registration,
            token: None,
            active: Arc::new(AtomicBool::new(false)),
        }
    }
    /// Which event.
    pub fn kind(&self) -> FunctionalEventKind {
        self.kind
    }
    /// `type`
    pub fn event_type(&self) -> &'static str {
        self.kind.event_type()
    }
    /// `registration`
    pub fn registration(&self) -> &BackgroundFetchRegistration {
        &self.registration
    }
    /// Whether the listener is still running it.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }
    /// `isTrusted`: whether the service fired it (not script's constructor).
    pub fn is_trusted(&self) -> bool {
        self.token.is_some()
    }
    /// `updateUI(options)` (`BackgroundFetchUpdateUIEvent`: success and fail only). The
    /// engine checks the rest (called once, while active). The call is made before this
    /// returns.
    pub fn update_ui(
        &self,
        options: BackgroundFetchUiOptions,
    ) -> impl Future<Output = Result<(), DomError>> + Send + 'static {
        let made = self.start_update_ui(options);
        async move {
            match made?.await? {
                Reply::Done => Ok(()),
                other => Err(unexpected(other)),
            }
        }
    }

    fn start_update_ui(
        &self,
        options: BackgroundFetchUiOptions,
    ) -> Result<impl Future<Output = Result<Reply, DomError>> + Send + 'static, DomError> {
        if !matches!(
            self.kind,
            FunctionalEventKind::Success | FunctionalEventKind::Fail
        ) {
            return Err(DomError::type_error(format!(
                "{} has no updateUI()",
                self.event_type()
            )));
        }
        // 1. If any of the following is true, throw an "InvalidStateError" DOMException:
        //    - this's isTrusted attribute is false;
        // (The service checks the rest: the UI updated flag, and whether this is active.)
        let Some(event) = self.token else {
            return Err(DomError::invalid_state(
                "updateUI() was called on an event that is not trusted",
            ));
        };
        Ok(self.conn.call(Call::UpdateUi { event, options }))
    }
}
