//! The protocol between script and the engine: plain serde data, so that script can run in
//! another process than the engine (Servo's content processes, Chromium's renderers and
//! service worker processes) and reach it only by messages.
//!
//! A connection belongs to one environment (a document, a worker or a service worker global):
//! its first message is [`ToService::Hello`]. Script then makes [`Call`]s, each answered by one
//! [`ToScript::Reply`] with the same [`CallId`]; the service also sends, unasked, the
//! registrations' new values ([`ToScript::Update`], the `progress` events) and, to a service
//! worker's connection, the functional events to fire ([`ToScript::Event`]), which script
//! answers with [`ToService::EventDone`] once they are no longer active.
//!
//! Nothing in a message refers to memory: registrations are named by their [`FetchUid`],
//! record objects by a [`RecordId`], response bodies by a [`BodyId`] and functional events by
//! an [`EventToken`], all meaningful within one connection only.
//!
//! Every message round-trips through postcard, the non-self-describing format `ipc-channel`
//! uses (a property test generates messages and checks it).

use crate::error::DomError;
use crate::fetch::{Request, ResponseHead};
use crate::hosts::DispatchOutcome;
use crate::matching::CacheQueryOptions;
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, BackgroundFetchResult,
    BackgroundFetchUiOptions, FetchUid, PolicyContainer, RecordResult, ServiceWorkerRegistrationId,
};
pub use crate::model::{EventToken, FunctionalEventKind};
use crate::store::{ExportMode, Exported};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use url::Url;

/// The version of this protocol. [`ToService::Hello`] carries the client's; a service refuses
/// a connection of another version. Version 2 added [`RegistrationData::revision`]; version 3
/// added [`Call::RecordState`] and [`Call::ExportBody`].
pub const PROTOCOL_VERSION: u32 = 3;

/// Names one call of a connection (chosen by the client, unique within the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(pub u64);

/// Names one `BackgroundFetchRecord` object of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId(pub u64);

/// Names one body being read (a response's, or a record's request body) on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BodyId(pub u64);

/// The kind of environment a connection's script runs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvironmentKindData {
    /// A document.
    Window,
    /// A dedicated or shared worker.
    Worker,
    /// The service worker global of this registration: functional events are fired at it.
    ServiceWorker(ServiceWorkerRegistrationId),
}

/// The environment settings object of a connection's script.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentData {
    /// Its kind.
    pub kind: EnvironmentKindData,
    /// Its API base URL (its origin is the environment's origin).
    pub base_url: Url,
    /// Whether it is a secure context.
    pub secure_context: bool,
    /// Its policy container.
    pub policy: PolicyContainer,
    /// Opaque embedder data about it, kept with its fetches (`ClientSnapshot::embedder`).
    pub embedder: Option<Vec<u8>>,
}

impl EnvironmentData {
    /// An environment of `kind` at `base_url` that is a secure context, with an empty policy
    /// container and no embedder data (set the fields for others).
    pub fn secure(kind: EnvironmentKindData, base_url: Url) -> Self {
        EnvironmentData {
            kind,
            base_url,
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        }
    }
}

/// A `BackgroundFetchRegistration` instance's values, as the service last delivered them to
/// the connection (its environment's view: "update background fetch instances").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationData {
    /// The background fetch.
    pub uid: FetchUid,
    /// Its service worker registration.
    pub registration: ServiceWorkerRegistrationId,
    /// `id`
    pub id: String,
    /// `uploadTotal`
    pub upload_total: u64,
    /// `uploaded`
    pub uploaded: u64,
    /// `downloadTotal`
    pub download_total: u64,
    /// `downloaded`
    pub downloaded: u64,
    /// `result`
    pub result: BackgroundFetchResult,
    /// `failureReason`
    pub failure_reason: BackgroundFetchFailureReason,
    /// `recordsAvailable`
    pub records_available: bool,
    /// Grows with every change of the values above: a reply and an update can cross (the
    /// service may announce a change while the reply that made the object is on its way, or
    /// before script has taken the object from it), and the script side keeps the newest.
    pub revision: u64,
}

/// A `BackgroundFetchRecord` object made for the connection ("create record objects").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordData {
    /// The object.
    pub record: RecordId,
    /// The record's index in its background fetch.
    pub index: usize,
    /// `request` (its body is read with [`Call::ReadRequestBody`]).
    pub request: Request,
}

/// A request of `fetch()`, after the `Request` constructor ran in the caller's realm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequestData {
    /// The request (its `body_length` is ignored: the service counts the bytes it stores).
    pub request: Request,
    /// Its body.
    pub body: Option<BodyData>,
}

/// A request body in `fetch()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyData {
    /// The bytes, in hand.
    Bytes(Bytes),
    /// A stream: its chunks follow as [`ToService::UploadChunk`] messages of the call.
    Streamed,
}

/// What script asks of the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `registration.backgroundFetch.fetch(id, requests, options)`. `active_worker`: whether
    /// the service worker registration has an active worker, as script sees it (fetch() step
    /// 8.4).
    Fetch {
        /// The service worker registration.
        registration: ServiceWorkerRegistrationId,
        /// The id.
        id: String,
        /// The requests.
        requests: Vec<FetchRequestData>,
        /// The options.
        options: BackgroundFetchOptions,
        /// Whether the registration has an active worker.
        active_worker: bool,
    },
    /// `get(id)`.
    Get {
        /// The service worker registration.
        registration: ServiceWorkerRegistrationId,
        /// The id.
        id: String,
    },
    /// `getIds()`.
    GetIds {
        /// The service worker registration.
        registration: ServiceWorkerRegistrationId,
    },
    /// `abort()` on the connection's instance of `fetch`.
    Abort {
        /// The background fetch.
        fetch: FetchUid,
    },
    /// `matchAll(request, options)` (and `match()`, which takes the first) on the connection's
    /// instance of `fetch`. `request` is the result of the `Request` constructor in the
    /// caller's realm.
    MatchAll {
        /// The background fetch.
        fetch: FetchUid,
        /// The query, or every record.
        request: Option<Request>,
        /// The cache query options.
        options: CacheQueryOptions,
    },
    /// `record.responseReady`: answered once the response is ready (or not to be).
    ResponseReady {
        /// The record object.
        record: RecordId,
    },
    /// A record's request body, to read with [`Call::ReadBody`] (`None` when it has none).
    ReadRequestBody {
        /// The record object.
        record: RecordId,
    },
    /// The next chunk of a body from `offset` (the bytes read so far).
    ReadBody {
        /// The body.
        body: BodyId,
        /// The bytes read so far.
        offset: u64,
    },
    /// A record's state right now (not web-exposed: for an embedder's own views of a fetch,
    /// such as a download manager's list, that must not wait on `responseReady`).
    RecordState {
        /// The record object.
        record: RecordId,
    },
    /// Hands a record's response body to `destination`, a path of the file system of the
    /// service's process, through the store's export (not web-exposed: for an embedder that
    /// delivers bodies as files, in place of reading the body chunk by chunk and writing it
    /// again). Answered once the record's result is final: [`Reply::Exported`] when it is a
    /// success and the destination is whole and durable; a `TypeError` otherwise, with nothing
    /// written.
    ExportBody {
        /// The record object.
        record: RecordId,
        /// Where the body goes.
        destination: PathBuf,
        /// What the store may do with its own copy.
        mode: ExportMode,
    },
    /// `event.updateUI(options)` on an active functional event.
    UpdateUi {
        /// The event.
        event: EventToken,
        /// The options.
        options: BackgroundFetchUiOptions,
    },
}

/// What the service answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// `fetch()`: the registration instance.
    Registration(RegistrationData),
    /// `get()`.
    MaybeRegistration(Option<RegistrationData>),
    /// `getIds()`.
    Ids(Vec<String>),
    /// `abort()`.
    Aborted(bool),
    /// `matchAll()`: the record objects, in request order.
    Records(Vec<RecordData>),
    /// `responseReady` resolved: the response's head and its body.
    Response {
        /// Status, headers, URL list and type (`Content-Range` and `Content-Length` removed).
        head: ResponseHead,
        /// The body.
        body: BodyId,
    },
    /// [`Call::ReadRequestBody`].
    Body(Option<BodyId>),
    /// [`Call::ReadBody`]: the next chunk, or `None` at the end.
    Chunk(Option<Bytes>),
    /// Done (`updateUI()`).
    Done,
    /// [`Call::RecordState`].
    RecordState(RecordStateData),
    /// [`Call::ExportBody`]: how the store delivered the body.
    Exported(Exported),
}

/// A record's state at one moment ([`Call::RecordState`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordStateData {
    /// Its response's result (`Empty` while it is in progress).
    pub result: RecordResult,
    /// The stored response head, once one arrived.
    pub response_head: Option<ResponseHead>,
    /// How many body bytes are stored.
    pub stored_bytes: u64,
}

/// A message from script to the service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToService {
    /// The first message of a connection.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
        /// The environment the connection's script runs in.
        environment: EnvironmentData,
    },
    /// A call, answered by a [`ToScript::Reply`] with the same id.
    Call {
        /// Its id.
        call: CallId,
        /// What it asks.
        call_data: Call,
    },
    /// A chunk of a streamed request body of a [`Call::Fetch`] (`Ok(None)` ends the body;
    /// `Err` means the stream errored, and `fetch()` rejects).
    UploadChunk {
        /// The fetch call.
        call: CallId,
        /// Which request.
        record: usize,
        /// The chunk.
        chunk: Result<Option<Bytes>, DomError>,
    },
    /// Script dropped these record objects and stopped reading these bodies.
    Release {
        /// Record objects.
        records: Vec<RecordId>,
        /// Bodies.
        bodies: Vec<BodyId>,
    },
    /// A functional event is no longer active (its `waitUntil` promises settled or timed out),
    /// or could not be dispatched.
    EventDone {
        /// The event.
        event: EventToken,
        /// What became of it.
        outcome: DispatchOutcome,
    },
}

/// A message from the service to script.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToScript {
    /// The answer to [`ToService::Hello`]: the service's [`PROTOCOL_VERSION`], or why the
    /// connection is refused.
    Welcome(Result<u32, DomError>),
    /// The answer to a call.
    Reply {
        /// The call.
        call: CallId,
        /// The answer, or the exception the promise rejects with.
        result: Result<Reply, DomError>,
    },
    /// A registration instance of the connection got new values (update background fetch
    /// instances, steps 6.3 to 6.9); when `progress` is set, a `progress` event follows (step
    /// 6.10: not for the records available flag unset after the result was set).
    Update {
        /// The new values.
        data: RegistrationData,
        /// Whether to fire `progress`.
        progress: bool,
    },
    /// Fire this functional event at the service worker global (a service worker's connection
    /// only); answer with [`ToService::EventDone`].
    Event {
        /// The event, for `updateUI()` and [`ToService::EventDone`].
        event: EventToken,
        /// Which event.
        kind: FunctionalEventKind,
        /// `event.registration`: the instance in the service worker global.
        registration: RegistrationData,
    },
}
