//! The engine side of the protocol: a [`Service`] owns the engine and answers the protocol for
//! many connections, each the script of one environment, in this process or another.
//!
//! The algorithms run in the engine, unchanged: the service turns each [`Call`] into the same
//! call on the engine's own objects of the connection's environment, and their results and
//! `progress` events into messages.

use super::protocol::{
    BodyData, BodyId, Call, CallId, EnvironmentData, EnvironmentKindData, EventToken,
    PROTOCOL_VERSION, RecordData, RecordId, RecordStateData, RegistrationData, Reply, ToScript,
    ToService,
};
use crate::engine::Engine;
use crate::error::DomError;
use crate::fetch::{RequestBody, RequestInfo, RequestObject};
use crate::hosts::{DispatchOutcome, FunctionalEventData, WorkerHost};
use crate::manager::Requests;
use crate::manager::{Environment, EnvironmentKind, EnvironmentSettings};
use crate::model::{FetchUid, ServiceWorkerRegistrationId};
use crate::registration::{BackgroundFetchRecord, BackgroundFetchRegistration};
use crate::sync::lock;
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where the service sends a connection's messages (the transport's sending end).
pub trait ScriptSink: Send + Sync {
    /// Sends `message` to the connection's script. Must not block on the script, and must not
    /// call back into the service before returning.
    fn send(&self, message: ToScript);
}

/// Names a connection of a [`Service`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// A handle to a [`Service`] that does not keep it alive ([`Service::downgrade`]).
#[derive(Clone)]
pub struct WeakService(Weak<ServiceInner>);

impl WeakService {
    /// The service, if something else still holds it.
    pub fn upgrade(&self) -> Option<Service> {
        self.0.upgrade().map(|inner| Service { inner })
    }
}

/// The engine side of the protocol. Cloning gives another handle to the same service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    engine: Engine,
    connections: Mutex<HashMap<ConnectionId, Arc<Conn>>>,
    next_connection: AtomicU64,
    workers: WorkerBridge,
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        // Events waiting for a service worker's connection look again, find the service gone
        // and fail, instead of waiting for a connection that can no longer come.
        let waiting: Vec<_> = lock(&self.workers.inner)
            .waiting
            .drain()
            .flat_map(|(_, w)| w)
            .collect();
        for w in waiting {
            let _ = w.send(());
        }
    }
}

/// One connection: the script of one environment.
struct Conn {
    id: ConnectionId,
    sink: Arc<dyn ScriptSink>,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    environment: Option<Environment>,
    /// The registration instances handed to the connection (each sends its progress).
    instances: HashMap<FetchUid, BackgroundFetchRegistration>,
    records: HashMap<RecordId, BackgroundFetchRecord>,
    bodies: HashMap<BodyId, Arc<futures::lock::Mutex<Body>>>,
    /// Streamed request bodies of `fetch()` calls, fed by [`ToService::UploadChunk`].
    uploads: HashMap<(CallId, usize), mpsc::UnboundedSender<Result<Bytes, DomError>>>,
    next_id: u64,
}

/// A body being read: the stream and the bytes read so far.
struct Body {
    stream: BoxStream<'static, Result<Bytes, DomError>>,
    offset: u64,
}

impl ConnState {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Service {
    /// A service for `engine`. `workers` is the bridge the engine's [`WorkerHost`] dispatches
    /// functional events through (give the engine the same bridge, or call
    /// [`WorkerBridge::dispatch`] from its worker host).
    pub fn new(engine: Engine, workers: WorkerBridge) -> Service {
        Service {
            inner: Arc::new(ServiceInner {
                engine,
                connections: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(1),
                workers,
            }),
        }
    }

    /// A handle that does not keep the service (and so its engine) alive.
    pub fn downgrade(&self) -> WeakService {
        WeakService(Arc::downgrade(&self.inner))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Opens a connection whose messages go to `sink`. Its first message must be
    /// [`ToService::Hello`].
    pub fn connect(&self, sink: Arc<dyn ScriptSink>) -> ConnectionId {
        let id = ConnectionId(self.inner.next_connection.fetch_add(1, Ordering::SeqCst));
        let conn = Arc::new(Conn {
            id,
            sink,
            state: Mutex::new(ConnState::default()),
        });
        lock(&self.inner.connections).insert(id, conn);
        id
    }

    /// Closes a connection (its process went away): its objects are released, and functional
    /// events it was running count as finished.
    pub fn disconnect(&self, id: ConnectionId) {
        let conn = lock(&self.inner.connections).remove(&id);
        if let Some(conn) = conn {
            let state = std::mem::take(&mut *lock(&conn.state));
            drop(state);
            self.inner.workers.disconnected(id);
        }
    }

    /// Handles a message of connection `id`. Calls run on the engine's tasks; their replies
    /// are sent when they are done.
    pub fn receive(&self, id: ConnectionId, message: ToService) {
        let Some(conn) = lock(&self.inner.connections).get(&id).cloned() else {
            tracing::debug!(?id, "a message for a closed connection");
            return;
        };
        match message {
            ToService::Hello {
                version,
                environment,
            } => {
                let welcome = self.hello(&conn, version, environment);
                conn.sink.send(ToScript::Welcome(welcome));
            }
            ToService::Call { call, call_data } => {
                // Streamed bodies are registered now, before the chunks that follow the call.
                let uploads = match &call_data {
                    Call::Fetch { requests, .. } => {
                        let mut st = lock(&conn.state);
                        requests
                            .iter()
                            .enumerate()
                            .map(|(i, r)| match r.body {
                                Some(BodyData::Streamed) => {
                                    let (tx, rx) = mpsc::unbounded();
                                    st.uploads.insert((call, i), tx);
                                    Some(rx)
                                }
                                _ => None,
                            })
                            .collect()
                    }
                    _ => Vec::new(),
                };
                let this = self.clone();
                let task = async move {
                    let result = this.call(&conn, call, call_data, uploads).await;
                    conn.sink.send(ToScript::Reply { call, result });
                };
                self.inner.engine.inner.hosts.spawner.spawn(task.boxed());
            }
            ToService::UploadChunk {
                call,
                record,
                chunk,
            } => {
                let mut st = lock(&conn.state);
                match chunk {
                    Ok(Some(bytes)) => {
                        if let Some(tx) = st.uploads.get(&(call, record)) {
                            let _ = tx.unbounded_send(Ok(bytes));
                        }
                    }
                    Ok(None) => {
                        st.uploads.remove(&(call, record));
                    }
                    Err(e) => {
                        if let Some(tx) = st.uploads.remove(&(call, record)) {
                            let _ = tx.unbounded_send(Err(e));
                        }
                    }
                }
            }
            ToService::Release { records, bodies } => {
                let mut st = lock(&conn.state);
                for r in records {
                    st.records.remove(&r);
                }
                for b in bodies {
                    st.bodies.remove(&b);
                }
            }
            ToService::EventDone { event, outcome } => {
                self.inner.workers.done(event, outcome);
            }
        }
    }

    fn hello(
        &self,
        conn: &Conn,
        version: u32,
        environment: EnvironmentData,
    ) -> Result<u32, DomError> {
        if version != PROTOCOL_VERSION {
            return Err(DomError::invalid_state(format!(
                "protocol version {version} is not supported (this service speaks \
                 {PROTOCOL_VERSION})"
            )));
        }
        let mut st = lock(&conn.state);
        if st.environment.is_some() {
            return Err(DomError::invalid_state("the connection already said hello"));
        }
        let engine = &self.inner.engine;
        let env = match &environment.kind {
            EnvironmentKindData::ServiceWorker(registration) => {
                // The service worker global: functional events are created in its realm, and
                // its calls use its environment (its script's URL, its policy container).
                let env = engine.set_service_worker_environment(
                    registration,
                    EnvironmentSettings {
                        kind: EnvironmentKind::ServiceWorker,
                        base_url: environment.base_url,
                        secure_context: environment.secure_context,
                        policy: environment.policy,
                        embedder: environment.embedder,
                    },
                );
                self.inner.workers.attach(registration.clone(), conn.id);
                env
            }
            kind => engine.create_environment(EnvironmentSettings {
                kind: match kind {
                    EnvironmentKindData::Window => EnvironmentKind::Window,
                    _ => EnvironmentKind::Worker,
                },
                base_url: environment.base_url,
                secure_context: environment.secure_context,
                policy: environment.policy,
                embedder: environment.embedder,
            }),
        };
        st.environment = Some(env);
        Ok(PROTOCOL_VERSION)
    }

    fn environment(conn: &Conn) -> Result<Environment, DomError> {
        lock(&conn.state)
            .environment
            .clone()
            .ok_or_else(|| DomError::invalid_state("the connection has not said hello"))
    }

    async fn call(
        &self,
        conn: &Arc<Conn>,
        call: CallId,
        data: Call,
        mut uploads: Vec<Option<mpsc::UnboundedReceiver<Result<Bytes, DomError>>>>,
    ) -> Result<Reply, DomError> {
        let env = Self::environment(conn)?;
        match data {
            Call::Fetch {
                registration,
                id,
                requests,
                options,
                active_worker,
            } => {
                let infos: Vec<RequestInfo> = requests
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let body = match r.body {
                            None => None,
                            Some(BodyData::Bytes(b)) => Some(RequestBody::Bytes(b)),
                            Some(BodyData::Streamed) => {
                                let rx = uploads.get_mut(i).and_then(Option::take);
                                Some(RequestBody::Stream(match rx {
                                    Some(rx) => rx.boxed(),
                                    None => futures::stream::empty().boxed(),
                                }))
                            }
                        };
                        RequestInfo::from(RequestObject {
                            request: r.request,
                            body,
                        })
                    })
                    .collect();
                let manager = env.background_fetch(&registration);
                // fetch() 8.4 uses the registration as script sees it (in its step order).
                let result = manager
                    .fetch_with_active_worker(&id, Requests::Many(infos), options, active_worker)
                    .await;
                lock(&conn.state).uploads.retain(|(c, _), _| *c != call);
                let reg = result?;
                Ok(Reply::Registration(self.watch(conn, &reg)))
            }
            Call::Get { registration, id } => {
                let manager = env.background_fetch(&registration);
                let reg = manager.get(&id).await?;
                Ok(Reply::MaybeRegistration(
                    reg.map(|reg| self.watch(conn, &reg)),
                ))
            }
            Call::GetIds { registration } => Ok(Reply::Ids(
                env.background_fetch(&registration).get_ids().await?,
            )),
            Call::Abort { fetch } => {
                let reg = Self::instance(conn, fetch)?;
                Ok(Reply::Aborted(reg.abort().await?))
            }
            Call::MatchAll {
                fetch,
                request,
                options,
            } => {
                let reg = Self::instance(conn, fetch)?;
                let query = request.map(|request| {
                    RequestInfo::from(RequestObject {
                        request,
                        body: None,
                    })
                });
                let records = reg.match_all(query, options).await?;
                let mut st = lock(&conn.state);
                Ok(Reply::Records(
                    records
                        .into_iter()
                        .map(|r| {
                            let id = RecordId(st.next());
                            let data = RecordData {
                                record: id,
                                index: r.index(),
                                request: r.request().clone(),
                            };
                            st.records.insert(id, r);
                            data
                        })
                        .collect(),
                ))
            }
            Call::ResponseReady { record } => {
                let rec = Self::record(conn, record)?;
                let response = rec.response_ready().await?;
                let head = response.head().clone();
                let body = self.keep_body(conn, response.into_body());
                Ok(Reply::Response { head, body })
            }
            Call::ReadRequestBody { record } => {
                let rec = Self::record(conn, record)?;
                Ok(Reply::Body(
                    rec.request_body().map(|body| self.keep_body(conn, body)),
                ))
            }
            Call::ReadBody { body, offset } => {
                let Some(body_state) = lock(&conn.state).bodies.get(&body).cloned() else {
                    return Err(DomError::type_error("the body is no longer being read"));
                };
                let mut b = body_state.lock().await;
                if b.offset != offset {
                    return Err(DomError::type_error(format!(
                        "body reads must be in order: {} bytes were read, not {offset}",
                        b.offset
                    )));
                }
                match b.stream.next().await {
                    Some(Ok(bytes)) => {
                        b.offset += bytes.len() as u64;
                        Ok(Reply::Chunk(Some(bytes)))
                    }
                    Some(Err(e)) => {
                        drop(b);
                        lock(&conn.state).bodies.remove(&body);
                        Err(e)
                    }
                    None => {
                        drop(b);
                        lock(&conn.state).bodies.remove(&body);
                        Ok(Reply::Chunk(None))
                    }
                }
            }
            Call::RecordState { record } => {
                let rec = Self::record(conn, record)?;
                Ok(Reply::RecordState(RecordStateData {
                    result: rec.result(),
                    response_head: rec.response_head(),
                    stored_bytes: rec.stored_bytes(),
                }))
            }
            Call::ExportBody {
                record,
                destination,
                mode,
            } => {
                let rec = Self::record(conn, record)?;
                Ok(Reply::Exported(
                    rec.export_response_body(destination, mode).await?,
                ))
            }
            Call::UpdateUi { event, options } => {
                let Some(event) = self.inner.engine.functional_event(event) else {
                    return Err(DomError::invalid_state(
                        "updateUI() was called after the event stopped being active",
                    ));
                };
                let Some(ui_event) = event.update_ui_event() else {
                    return Err(DomError::type_error(
                        "updateUI() exists on backgroundfetchsuccess and backgroundfetchfail \
                         events only",
                    ));
                };
                ui_event.update_ui(options).await?;
                Ok(Reply::Done)
            }
        }
    }

    fn instance(conn: &Conn, uid: FetchUid) -> Result<BackgroundFetchRegistration, DomError> {
        lock(&conn.state)
            .instances
            .get(&uid)
            .cloned()
            .ok_or_else(|| DomError::invalid_state(format!("no registration {uid} here")))
    }

    fn record(conn: &Conn, id: RecordId) -> Result<BackgroundFetchRecord, DomError> {
        lock(&conn.state)
            .records
            .get(&id)
            .cloned()
            .ok_or_else(|| DomError::invalid_state("the record object was released"))
    }

    fn keep_body(
        &self,
        conn: &Conn,
        stream: BoxStream<'static, Result<Bytes, DomError>>,
    ) -> BodyId {
        let mut st = lock(&conn.state);
        let id = BodyId(st.next());
        st.bodies.insert(
            id,
            Arc::new(futures::lock::Mutex::new(Body { stream, offset: 0 })),
        );
        id
    }

    /// The connection's instance `reg`, sending its progress to the connection from now on.
    fn watch(&self, conn: &Arc<Conn>, reg: &BackgroundFetchRegistration) -> RegistrationData {
        let first = lock(&conn.state)
            .instances
            .insert(reg.uid(), reg.clone())
            .is_none();
        if first {
            let weak: Weak<Conn> = Arc::downgrade(conn);
            lock(&reg.inner.observers).push(Arc::new(move |instance, progress| {
                if let Some(conn) = weak.upgrade() {
                    conn.sink.send(ToScript::Update {
                        data: registration_data(instance),
                        progress,
                    });
                }
            }));
        }
        registration_data(reg)
    }
}

/// A registration instance's values as data.
pub(crate) fn registration_data(reg: &BackgroundFetchRegistration) -> RegistrationData {
    // One reading of the slots, with the revision they had.
    let slots = lock(&reg.inner.slots);
    RegistrationData {
        uid: reg.uid(),
        registration: reg.inner.fetch.registration.clone(),
        id: reg.id().to_owned(),
        upload_total: reg.upload_total(),
        uploaded: slots.uploaded,
        download_total: reg.download_total(),
        downloaded: slots.downloaded,
        result: slots.result,
        failure_reason: slots.failure_reason,
        records_available: slots.records_available,
        revision: reg.inner.revision.load(Ordering::SeqCst),
    }
}

/// Functional events as data: dispatches the engine's functional events to the connection of
/// their registration's service worker global, and answers whether a registration has an
/// active worker from what the embedder pushed ([`WorkerBridge::set_active_worker`]). Give
/// the engine a [`ServiceWorkerHost`] over it, or call [`WorkerBridge::dispatch`] from the
/// engine's own worker host.
#[derive(Clone, Default)]
pub struct WorkerBridge {
    inner: Arc<Mutex<BridgeState>>,
}

#[derive(Default)]
struct BridgeState {
    /// The connection of each registration's service worker global.
    workers: HashMap<ServiceWorkerRegistrationId, ConnectionId>,
    active: HashSet<ServiceWorkerRegistrationId>,
    /// Events sent to a worker's connection, until it reports them done.
    pending: HashMap<EventToken, (ConnectionId, oneshot::Sender<DispatchOutcome>)>,
    /// Events of an active worker that has no connection yet, woken when one attaches or the
    /// worker stops being active.
    waiting: HashMap<ServiceWorkerRegistrationId, Vec<oneshot::Sender<()>>>,
    /// Asked to start a registration's service worker when an event waits for it.
    start: Option<StartWorker>,
}

/// What the embedder does to run a registration's service worker (connect its global).
type StartWorker = Arc<dyn Fn(&ServiceWorkerRegistrationId) + Send + Sync>;

impl WorkerBridge {
    /// A bridge with no worker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records whether `registration` has an active worker (the embedder's service worker
    /// system pushes it when it changes).
    pub fn set_active_worker(&self, registration: &ServiceWorkerRegistrationId, active: bool) {
        let waiting = {
            let mut st = lock(&self.inner);
            if active {
                st.active.insert(registration.clone());
                Vec::new()
            } else {
                st.active.remove(registration);
                st.waiting.remove(registration).unwrap_or_default()
            }
        };
        // Events waiting for the worker are skipped now.
        for w in waiting {
            let _ = w.send(());
        }
    }

    /// Asks `start` to run a registration's service worker whenever a functional event waits
    /// for an active worker that has no connection (the service worker spec's "run service
    /// worker" before firing a functional event): the embedder starts it, and its global's
    /// connection ([`EnvironmentKindData::ServiceWorker`]) receives the event. Without it the
    /// event waits until the worker connects on its own, or until
    /// [`WorkerBridge::set_active_worker`] says it is not active (then it is skipped).
    pub fn on_start_worker(
        &self,
        start: impl Fn(&ServiceWorkerRegistrationId) + Send + Sync + 'static,
    ) {
        lock(&self.inner).start = Some(Arc::new(start));
    }

    fn attach(&self, registration: ServiceWorkerRegistrationId, connection: ConnectionId) {
        let waiting = {
            let mut st = lock(&self.inner);
            st.workers.insert(registration.clone(), connection);
            st.waiting.remove(&registration).unwrap_or_default()
        };
        for w in waiting {
            let _ = w.send(());
        }
    }

    fn disconnected(&self, connection: ConnectionId) {
        let done: Vec<oneshot::Sender<DispatchOutcome>> = {
            let mut st = lock(&self.inner);
            st.workers.retain(|_, c| *c != connection);
            let tokens: Vec<EventToken> = st
                .pending
                .iter()
                .filter(|(_, (c, _))| *c == connection)
                .map(|(t, _)| *t)
                .collect();
            tokens
                .into_iter()
                .filter_map(|t| st.pending.remove(&t).map(|(_, d)| d))
                .collect()
        };
        for d in done {
            let _ = d.send(DispatchOutcome::Failed(
                "the service worker's connection closed".into(),
            ));
        }
    }

    fn done(&self, event: EventToken, outcome: DispatchOutcome) {
        let done = lock(&self.inner).pending.remove(&event);
        if let Some((_, done)) = done {
            let _ = done.send(outcome);
        }
    }

    /// Fires `event` at its registration's service worker global through `service`: sends it
    /// as data to the worker's connection, and completes when the worker reports it no longer
    /// active. An active worker that has no connection yet is started
    /// ([`WorkerBridge::on_start_worker`]) and the event waits for its connection; with no
    /// active worker the event is skipped.
    pub fn dispatch(
        &self,
        service: &Service,
        event: FunctionalEventData,
    ) -> BoxFuture<'static, DispatchOutcome> {
        // The service is held weakly while the event waits: the engine holds this future (its
        // worker host's dispatch), and the service holds the engine.
        let (bridge, weak) = (self.clone(), service.downgrade());
        async move {
            let gone = || DispatchOutcome::Failed("the service is gone".into());
            // The service worker spec's "fire a functional event": with no active worker,
            // nothing is fired; otherwise the worker is run (connected) first.
            let (service, conn) = loop {
                let Some(service) = weak.upgrade() else {
                    return gone();
                };
                let (waiter, start) = {
                    let mut st = lock(&bridge.inner);
                    let worker = st.workers.get(&event.registration).copied();
                    let conn =
                        worker.and_then(|id| lock(&service.inner.connections).get(&id).cloned());
                    if let Some(conn) = conn {
                        break (service, conn);
                    }
                    if !st.active.contains(&event.registration) {
                        tracing::info!(
                            scope = %event.registration.scope,
                            "no active service worker: skipped"
                        );
                        return DispatchOutcome::Skipped;
                    }
                    let (tx, rx) = oneshot::channel();
                    st.waiting
                        .entry(event.registration.clone())
                        .or_default()
                        .push(tx);
                    (rx, st.start.clone())
                };
                tracing::info!(
                    scope = %event.registration.scope,
                    "the event waits for the service worker to run"
                );
                drop(service);
                if let Some(start) = start {
                    start(&event.registration);
                }
                let _ = waiter.await;
            };
            // The event's registration is the service worker global's instance: the worker's
            // connection can match() and abort() through it.
            let Some(object) = service.engine().functional_event(event.token) else {
                return DispatchOutcome::Skipped;
            };
            let (tx, rx) = oneshot::channel();
            lock(&bridge.inner)
                .pending
                .insert(event.token, (conn.id, tx));
            let registration = service.watch(&conn, object.registration());
            conn.sink.send(ToScript::Event {
                event: event.token,
                kind: event.kind,
                registration,
            });
            drop(service);
            let token = event.token;
            let outcome = rx
                .await
                .unwrap_or_else(|_| DispatchOutcome::Failed("the event was dropped".into()));
            lock(&bridge.inner).pending.remove(&token);
            outcome
        }
        .boxed()
    }
}

/// The bridge as the engine's worker host. The engine is started before the service exists, so
/// the service is given to the bridge afterwards ([`ServiceWorkerHost::serve`]); an event the
/// engine fires before that (a fetch restored from the store settling at once) waits for it.
///
/// The engine holds its worker host, and the service holds the engine, so the worker host holds
/// the service weakly: the embedder's [`Service`] handles keep the engine alive, and when the
/// last goes the engine goes with it. An event dispatched after that fails ("the service is
/// gone").
#[derive(Clone, Default)]
pub struct ServiceWorkerHost {
    bridge: WorkerBridge,
    service: Arc<Mutex<ServiceSlot>>,
}

#[derive(Default)]
struct ServiceSlot {
    service: Option<WeakService>,
    waiting: Vec<oneshot::Sender<Service>>,
}

impl ServiceWorkerHost {
    /// A worker host over `bridge`.
    pub fn new(bridge: WorkerBridge) -> Self {
        ServiceWorkerHost {
            bridge,
            service: Arc::default(),
        }
    }

    /// Dispatches through `service` from now on (and the events that waited for it).
    pub fn serve(&self, service: &Service) {
        let waiting = {
            let mut slot = lock(&self.service);
            slot.service = Some(service.downgrade());
            std::mem::take(&mut slot.waiting)
        };
        for w in waiting {
            let _ = w.send(service.clone());
        }
    }
}

impl WorkerHost for ServiceWorkerHost {
    fn has_active_worker(
        &self,
        registration: &ServiceWorkerRegistrationId,
    ) -> BoxFuture<'static, bool> {
        // Pushed by the embedder (WorkerBridge::set_active_worker), so answered at once.
        let active = lock(&self.bridge.inner).active.contains(registration);
        futures::future::ready(active).boxed()
    }

    fn dispatch(&self, event: FunctionalEventData) -> BoxFuture<'static, DispatchOutcome> {
        let waiting = {
            let mut slot = lock(&self.service);
            match &slot.service {
                Some(weak) => {
                    return match weak.upgrade() {
                        Some(service) => self.bridge.dispatch(&service, event),
                        None => futures::future::ready(DispatchOutcome::Failed(
                            "the service is gone".into(),
                        ))
                        .boxed(),
                    };
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    slot.waiting.push(tx);
                    rx
                }
            }
        };
        let bridge = self.bridge.clone();
        async move {
            match waiting.await {
                Ok(service) => bridge.dispatch(&service, event).await,
                Err(_) => DispatchOutcome::Failed("the worker host was dropped unserved".into()),
            }
        }
        .boxed()
    }
}
