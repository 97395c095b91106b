//! The upstream service worker scripts (`service_workers/*.js`), rewritten as Rust functional
//! event handlers for the engine's [`RecordingWorker`], and the messages they post to the page.
//!
//! A [`ServiceWorkerGlobal`] is one running script. Like `sw-helpers.js`, it learns its client
//! from the page's first `postMessage` (the handshake of `backgroundFetchTest`), answers
//! `'ready'`, and posts everything else to that client with
//! [`ServiceWorkerGlobal::send_message_to_document`]. The handler's future is the event's
//! `waitUntil()` promise: the engine treats the event as no longer active once it completes.

use background_fetch::service::Connection;
use background_fetch::service::client::{
    BackgroundFetchRecord, BackgroundFetchRegistration, FunctionalEvent,
};
use background_fetch::testing::Executor;
use background_fetch::{
    BackgroundFetchUiOptions, Clock, DispatchOutcome, DomError, FunctionalEventKind,
};
use futures::FutureExt;
use futures::channel::mpsc::UnboundedSender;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `cloneRegistration(event.registration)`: every enumerable non-function property of a
/// `BackgroundFetchRegistration`, copied into a plain object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrationCopy {
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
    pub result: String,
    /// `failureReason`
    pub failure_reason: String,
    /// `recordsAvailable`
    pub records_available: bool,
}

/// `cloneRegistration(reg)` of `sw-helpers.js`.
pub fn clone_registration(reg: &BackgroundFetchRegistration) -> RegistrationCopy {
    RegistrationCopy {
        id: reg.id().to_owned(),
        upload_total: reg.upload_total(),
        uploaded: reg.uploaded(),
        download_total: reg.download_total(),
        downloaded: reg.downloaded(),
        result: reg.result().as_str().to_owned(),
        failure_reason: reg.failure_reason().as_str().to_owned(),
        records_available: reg.records_available(),
    }
}

/// One entry of `results` as `sw.js` (and `sw-cors.js`) build it from a record whose
/// `responseReady` resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchResult {
    /// `response.url`
    pub url: String,
    /// `response.status`
    pub status: u16,
    /// `await response.text()`, or `'error'` if reading the body failed.
    pub text: String,
    /// `response.type` (`sw-cors.js` only).
    pub r#type: Option<String>,
    /// `response.headers.get('X-Secret-Header')` (`sw-cors.js` only; `None` is `null`).
    pub secret_header: Option<String>,
}

/// The message `sw.js` / `sw-cors.js` post: `{type, eventRegistration, results}`, or on any
/// error `{type, eventRegistration: {}, results: [], error: true}` (then
/// `event_registration` is all defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventMessage {
    /// `event.type`
    pub r#type: String,
    /// `cloneRegistration(event.registration)`, taken after the records were read.
    pub event_registration: RegistrationCopy,
    /// One entry per matched record; `None` (`null`) when its `responseReady` rejected.
    pub results: Vec<Option<FetchResult>>,
    /// Set on the error path.
    pub error: bool,
}

/// One entry of `sw-abort.js`'s `results`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbortResult {
    /// Whether `responseReady` resolved.
    pub response: bool,
    /// The rejection's `name` when it did not.
    pub name: Option<String>,
}

/// A message from a service worker to the page (`event.data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `'ready'`: the handshake answer of `sw-helpers.js`.
    Ready,
    /// `sw.js` / `sw-cors.js`: the outcome of a functional event.
    Event(EventMessage),
    /// `sw-abort.js`: `{results}`.
    AbortResults(Vec<AbortResult>),
    /// `sw-update-ui.js`: `{update}`.
    Update(String),
}

impl Message {
    /// The message as posted by `sw.js` / `sw-cors.js` (panics, like a failed assertion, on
    /// another shape).
    #[track_caller]
    pub fn event(self) -> EventMessage {
        match self {
            Message::Event(e) => e,
            other => {
                panic!("expected a functional event message from the service worker, got {other:?}")
            }
        }
    }

    /// `message.results` of `sw-abort.js`.
    #[track_caller]
    pub fn abort_results(self) -> Vec<AbortResult> {
        match self {
            Message::AbortResults(r) => r,
            other => panic!("expected {{results}} from sw-abort.js, got {other:?}"),
        }
    }

    /// `message.update` of `sw-update-ui.js`.
    #[track_caller]
    pub fn update(self) -> String {
        match self {
            Message::Update(u) => u,
            other => panic!("expected {{update}} from sw-update-ui.js, got {other:?}"),
        }
    }
}

/// The service worker scripts of `background-fetch/service_workers/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// `sw.js`
    Sw,
    /// `sw-abort.js`
    SwAbort,
    /// `sw-update-ui.js`
    SwUpdateUi,
    /// `sw-cors.js` (Chromium's copy)
    SwCors,
}

impl Script {
    /// The script for a file name (`'sw.js'`, ...).
    pub fn from_file_name(name: &str) -> Option<Script> {
        Some(match name {
            "sw.js" => Script::Sw,
            "sw-abort.js" => Script::SwAbort,
            "sw-update-ui.js" => Script::SwUpdateUi,
            "sw-cors.js" => Script::SwCors,
            _ => return None,
        })
    }

    /// Whether the script has a listener for `kind` (otherwise the dispatch is skipped).
    pub fn listens_to(self, kind: FunctionalEventKind) -> bool {
        use FunctionalEventKind::*;
        match self {
            Script::Sw | Script::SwCors => matches!(kind, Success | Fail | Abort),
            Script::SwAbort => kind == Abort,
            Script::SwUpdateUi => kind == Success,
        }
    }
}

/// A running service worker script.
pub struct ServiceWorkerGlobal {
    script: Script,
    /// `source` of `sw-helpers.js`: the page's client, once the handshake happened.
    source: Mutex<Option<UnboundedSender<Message>>>,
    executor: Executor,
    clock: Arc<dyn Clock>,
}

impl ServiceWorkerGlobal {
    /// Starts `script`; `executor` and `clock` give it `setTimeout`.
    pub fn new(script: Script, executor: Executor, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(ServiceWorkerGlobal {
            script,
            source: Mutex::new(None),
            executor,
            clock,
        })
    }

    /// The script.
    pub fn script(&self) -> Script {
        self.script
    }

    /// Installs the script's functional event listeners on its connection to the service.
    pub fn install(self: &Arc<Self>, connection: &Connection) {
        let this = self.clone();
        connection.on_functional_event(move |event| this.clone().dispatch(event));
    }

    /// `self.addEventListener('message', ...)` of `sw-helpers.js`: remember the client, answer
    /// `'ready'`.
    pub fn on_message(&self, source: UnboundedSender<Message>) {
        *self.source.lock().unwrap() = Some(source);
        self.send_message_to_document(Message::Ready);
    }

    /// `sendMessageToDocument(msg)`: `source.postMessage(msg)`. Before the handshake `source`
    /// is null, the call throws, and the message is lost (the page then waits forever).
    pub fn send_message_to_document(&self, message: Message) {
        if let Some(source) = self.source.lock().unwrap().as_ref() {
            let _ = source.unbounded_send(message);
        }
    }

    /// `step_timeout(f, ms)`: runs `f` in a later task, after `ms` of virtual time.
    fn step_timeout(&self, ms: u64, f: BoxFuture<'static, ()>) {
        let sleep = self.clock.sleep(Duration::from_millis(ms));
        self.executor.spawn_boxed(
            async move {
                sleep.await;
                f.await;
            }
            .boxed(),
        );
    }

    fn dispatch(self: Arc<Self>, event: FunctionalEvent) -> BoxFuture<'static, DispatchOutcome> {
        if !self.script.listens_to(event.kind()) {
            return futures::future::ready(DispatchOutcome::Skipped).boxed();
        }
        match self.script {
            Script::Sw => async move {
                let message = sw_js(&event, false).await;
                self.send_message_to_document(Message::Event(message));
                DispatchOutcome::Completed
            }
            .boxed(),
            Script::SwCors => async move {
                let message = sw_js(&event, true).await;
                self.send_message_to_document(Message::Event(message));
                DispatchOutcome::Completed
            }
            .boxed(),
            Script::SwAbort => async move {
                // A rejected matchAll() rejects waitUntil(): nothing is posted.
                if let Some(results) = sw_abort_js(event.registration()).await {
                    self.send_message_to_document(Message::AbortResults(results));
                }
                DispatchOutcome::Completed
            }
            .boxed(),
            Script::SwUpdateUi => self.sw_update_ui_js(event),
        }
    }

    /// `sw-update-ui.js`.
    fn sw_update_ui_js(
        self: Arc<Self>,
        event: FunctionalEvent,
    ) -> BoxFuture<'static, DispatchOutcome> {
        // `backgroundfetchsuccess` only (Script::listens_to): a BackgroundFetchUpdateUIEvent.
        let ui_event = event;
        let title = |t: &str| BackgroundFetchUiOptions {
            title: Some(t.to_owned()),
            icons: None,
        };
        let id = ui_event.registration().id();
        if id == "update-inactive" {
            // No waitUntil(): one task later the event is no longer active.
            let this = self.clone();
            self.step_timeout(
                0,
                async move {
                    if let Err(e) = ui_event.update_ui(title("New title")).await {
                        this.send_message_to_document(Message::Update(e.name().to_owned()));
                    }
                }
                .boxed(),
            );
            return futures::future::ready(DispatchOutcome::Completed).boxed();
        }
        let params: Vec<BackgroundFetchUiOptions> = match id.as_str() {
            "update-once" => vec![title("Title1")],
            "update-twice" => vec![title("Title1"), title("Title2")],
            _ => vec![],
        };
        async move {
            // Promise.all(params.map(p => event.updateUI(p))): every call is made at once (the
            // calls are sent in order in one poll, before any answer).
            let calls: Vec<_> = params.into_iter().map(|p| ui_event.update_ui(p)).collect();
            let update = match futures::future::try_join_all(calls).await {
                Ok(_) => "update success".to_owned(),
                Err(e) => e.name().to_owned(),
            };
            self.send_message_to_document(Message::Update(update));
            DispatchOutcome::Completed
        }
        .boxed()
    }
}

/// `getFetchResult(record)` of `sw.js` (with `sw-cors.js`'s two extra fields when `cors`).
async fn get_fetch_result(
    record: Option<BackgroundFetchRecord>,
    cors: bool,
) -> Result<Option<FetchResult>, DomError> {
    // `record.responseReady` on undefined throws a TypeError (taking the error path).
    let record = record.ok_or_else(|| DomError::type_error("record is undefined"))?;
    let Ok(response) = record.response_ready().await else {
        return Ok(None);
    };
    let url = response.url();
    let status = response.status();
    let r#type = cors.then(|| response.response_type().as_str().to_owned());
    let secret_header = if cors {
        response.headers().get_str("X-Secret-Header")
    } else {
        None
    };
    let text = response.text().await.unwrap_or_else(|_| "error".to_owned());
    Ok(Some(FetchResult {
        url,
        status,
        text,
        r#type,
        secret_header,
    }))
}

/// `handleBackgroundFetchEvent(event)` of `sw.js` (`cors`: of `sw-cors.js`, which always calls
/// `matchAll()` and reports `type` and `X-Secret-Header`).
async fn sw_js(event: &FunctionalEvent, cors: bool) -> EventMessage {
    let registration = event.registration().clone();
    let r#type = event.event_type().to_owned();
    let outcome: Result<Vec<Option<FetchResult>>, DomError> = async {
        const FEATURE: &str = "/background-fetch/resources/feature-name.txt";
        // matchFunction(), then "format match(All)? results": a falsy value becomes [], a
        // single record [record], a list stays as it is.
        let records: Vec<Option<BackgroundFetchRecord>> = match registration.id().as_str() {
            "matchexistingrequest" if !cors => registration
                .r#match(FEATURE, Default::default())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
            "matchexistingrequesttwice" if !cors => {
                let match1 = registration.r#match(FEATURE, Default::default()).await?;
                let match2 = registration.r#match(FEATURE, Default::default()).await?;
                vec![match1, match2]
            }
            "matchmissingrequest" if !cors => registration
                .r#match(
                    "/background-fetch/resources/missing.txt",
                    Default::default(),
                )
                .await?
                .into_iter()
                .map(Some)
                .collect(),
            _ => registration
                .match_all(None, Default::default())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        // Promise.all(records.map(getFetchResult)).
        let results =
            futures::future::join_all(records.into_iter().map(|r| get_fetch_result(r, cors))).await;
        results.into_iter().collect()
    }
    .await;
    match outcome {
        Ok(results) => EventMessage {
            r#type,
            event_registration: clone_registration(&registration),
            results,
            error: false,
        },
        Err(_) => EventMessage {
            r#type,
            event_registration: RegistrationCopy::default(),
            results: Vec::new(),
            error: true,
        },
    }
}

/// `sw-abort.js`: `matchAll()`, then each record's `responseReady`.
async fn sw_abort_js(registration: &BackgroundFetchRegistration) -> Option<Vec<AbortResult>> {
    let records = registration
        .match_all(None, Default::default())
        .await
        .ok()?;
    let mut results = Vec::new();
    for record in records {
        results.push(match record.response_ready().await {
            Ok(_) => AbortResult {
                response: true,
                name: None,
            },
            Err(e) => AbortResult {
                response: false,
                name: Some(e.name().to_owned()),
            },
        });
    }
    Some(results)
}
