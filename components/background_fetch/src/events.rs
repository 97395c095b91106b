//! Functional events: `BackgroundFetchEvent`, `BackgroundFetchUpdateUIEvent` and `updateUI()`.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::core::EngineInner;
use crate::engine::{Engine, WeakEngine};
use crate::error::DomError;
use crate::hosts::FunctionalEventData;
use crate::model::{BackgroundFetchUiOptions, EventToken, FunctionalEventKind};
use crate::registration::BackgroundFetchRegistration;
use crate::state::UpdateUiState;
use crate::sync::{Watch, lock};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// `BackgroundFetchEvent`.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-event>
#[derive(Clone, Debug)]
pub struct BackgroundFetchEvent {
    kind: FunctionalEventKind,
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchevent-registration>
    registration: BackgroundFetchRegistration,
    trusted: bool,
    /// The token of an event the engine fired (`None` for one script constructed).
    token: Option<EventToken>,
}

impl BackgroundFetchEvent {
    /// `new BackgroundFetchEvent(type, {registration})`, as script would construct it
    /// (`isTrusted` false).
    pub fn new_untrusted(
        kind: FunctionalEventKind,
        registration: BackgroundFetchRegistration,
    ) -> Self {
        BackgroundFetchEvent {
            kind,
            registration,
            trusted: false,
            token: None,
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

    /// `registration`: the instance in the service worker global's realm.
    pub fn registration(&self) -> &BackgroundFetchRegistration {
        &self.registration
    }

    /// `isTrusted`
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }
}

/// `BackgroundFetchUpdateUIEvent`: the event of `backgroundfetchsuccess` and
/// `backgroundfetchfail`.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-update-ui-event>
#[derive(Clone)]
pub struct BackgroundFetchUpdateUiEvent {
    event: BackgroundFetchEvent,
    state: Arc<UpdateUiState>,
    engine: Weak<EngineInner>,
}

impl fmt::Debug for BackgroundFetchUpdateUiEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundFetchUpdateUiEvent")
            .field("event", &self.event)
            .field("active", &self.is_active())
            .finish()
    }
}

impl BackgroundFetchUpdateUiEvent {
    /// `new BackgroundFetchUpdateUIEvent(type, {registration})`, as script would construct it
    /// (`isTrusted` false: `updateUI()` rejects).
    pub fn new_untrusted(
        kind: FunctionalEventKind,
        registration: BackgroundFetchRegistration,
    ) -> Self {
        BackgroundFetchUpdateUiEvent {
            event: BackgroundFetchEvent::new_untrusted(kind, registration),
            state: UpdateUiState::new(),
            engine: Weak::new(),
        }
    }

    /// The `BackgroundFetchEvent` part.
    pub fn event(&self) -> &BackgroundFetchEvent {
        &self.event
    }

    /// `registration`
    pub fn registration(&self) -> &BackgroundFetchRegistration {
        &self.event.registration
    }

    /// Whether the event is still active (not finished and not timed out).
    pub fn is_active(&self) -> bool {
        self.state.active.load(Ordering::SeqCst)
    }

    /// `updateUI(options)`. The checks run synchronously at the call, on the caller's event
    /// loop; the returned future completes once the new title and icons are stored.
    ///
    /// <https://wicg.github.io/background-fetch/#dom-backgroundfetchupdateuievent-updateui>
    pub fn update_ui(
        &self,
        options: BackgroundFetchUiOptions,
    ) -> BoxFuture<'static, Result<(), DomError>> {
        // 1. If any of the following is true, throw an "InvalidStateError" DOMException:
        //    - this's isTrusted attribute is false;
        //    - this's UI updated flag is set;
        //    - this is not active.
        // AD-HOC: "throw" inside in-parallel steps means rejecting the promise (outline
        //         §11.C.9); the checks run synchronously before going in parallel.
        let rejection = if !self.event.trusted {
            Some("updateUI() was called on an event that is not trusted")
        } else if self.state.ui_updated.load(Ordering::SeqCst) {
            Some("updateUI() may only be called once per event")
        } else if !self.is_active() {
            Some("updateUI() was called after the event stopped being active")
        } else {
            None
        };
        if let Some(message) = rejection {
            return futures::future::ready(Err(DomError::invalid_state(message))).boxed();
        }
        // AD-HOC: the icons are processed against the caller's API base URL (the service
        //         worker's), as fetch() does; a src that does not parse rejects before the UI
        //         updated flag is set.
        let icons = match options.icons.as_ref().map(|icons| {
            icons
                .iter()
                .map(|icon| icon.process(&self.event.registration.inner.base_url))
                .collect::<Result<Vec<_>, _>>()
        }) {
            None => None,
            Some(Ok(icons)) => Some(icons),
            Some(Err(e)) => return futures::future::ready(Err(e)).boxed(),
        };
        // 2. Set this's UI updated flag.
        self.state.ui_updated.store(true, Ordering::SeqCst);
        let engine = self.engine.clone();
        // 4. Let bgFetch be this's background fetch.
        let bg = self.event.registration.inner.fetch.clone();
        async move {
            // 3. If options is null, return.
            // AD-HOC: options defaults to {} and cannot be null; an empty dictionary resolves.
            let Some(engine) = engine.upgrade() else {
                return Err(DomError::invalid_state(
                    "the background fetch engine has shut down",
                ));
            };
            let (title, icons) = {
                let mut s = bg.lock();
                // 5. If options's icons member is present, set bgFetch's icons to options's
                //    icons.
                if let Some(icons) = icons {
                    s.icons = icons;
                }
                // 6. If options's title member is present, set bgFetch's title to options's
                //    title.
                if let Some(title) = options.title {
                    s.title = title;
                }
                (s.title.clone(), s.icons.clone())
            };
            // The title and icons are kept with the fetch, and shown by the display.
            // AD-HOC: a store that refuses them is reported to the UI host, which shows them
            //         all the same; the promise resolves, as the spec has no failure here.
            if let Err(e) = engine.hosts.store.set_ui(bg.uid, title, icons).await {
                tracing::warn!(uid = %bg.uid, error = %e, "could not store updateUI() values");
                engine.storage_failed(bg.uid, crate::hosts::StoredChange::Ui, &e);
            }
            engine.update_ui(&bg);
            // 7. Resolve promise.
            Ok(())
        }
        .boxed()
    }
}

/// A functional event for the [`crate::WorkerHost`] to dispatch at the active worker.
#[derive(Clone, Debug)]
pub enum FunctionalEvent {
    /// `backgroundfetchsuccess`
    Success(BackgroundFetchUpdateUiEvent),
    /// `backgroundfetchfail`
    Fail(BackgroundFetchUpdateUiEvent),
    /// `backgroundfetchabort`
    Abort(BackgroundFetchEvent),
    /// `backgroundfetchclick`
    Click(BackgroundFetchEvent),
}

impl FunctionalEvent {
    /// Which event.
    pub fn kind(&self) -> FunctionalEventKind {
        match self {
            FunctionalEvent::Success(_) => FunctionalEventKind::Success,
            FunctionalEvent::Fail(_) => FunctionalEventKind::Fail,
            FunctionalEvent::Abort(_) => FunctionalEventKind::Abort,
            FunctionalEvent::Click(_) => FunctionalEventKind::Click,
        }
    }

    /// The event type string.
    pub fn event_type(&self) -> &'static str {
        self.kind().event_type()
    }

    /// `event.registration`.
    pub fn registration(&self) -> &BackgroundFetchRegistration {
        match self {
            FunctionalEvent::Success(e) | FunctionalEvent::Fail(e) => e.registration(),
            FunctionalEvent::Abort(e) | FunctionalEvent::Click(e) => e.registration(),
        }
    }

    /// The event as data (what the [`crate::WorkerHost`] was given), for an event the engine
    /// fired: to hand it on, for example to another process's service worker.
    pub fn data(&self) -> Option<FunctionalEventData> {
        let e = match self {
            FunctionalEvent::Success(e) | FunctionalEvent::Fail(e) => &e.event,
            FunctionalEvent::Abort(e) | FunctionalEvent::Click(e) => e,
        };
        let fetch = &e.registration.inner.fetch;
        Some(FunctionalEventData {
            kind: e.kind,
            token: e.token?,
            uid: fetch.uid,
            id: fetch.id.clone(),
            registration: fetch.registration.clone(),
        })
    }

    /// The event as a `BackgroundFetchUpdateUIEvent`, for success and fail.
    pub fn update_ui_event(&self) -> Option<&BackgroundFetchUpdateUiEvent> {
        match self {
            FunctionalEvent::Success(e) | FunctionalEvent::Fail(e) => Some(e),
            _ => None,
        }
    }
}

impl Engine {
    /// The event object of functional event `token` in its registration's service worker
    /// global (this process's script), with `registration` the global's instance of the
    /// fetch; `None` once the event is no longer active. A [`crate::WorkerHost`] whose script
    /// runs in this process calls it with the token of [`FunctionalEventData`].
    pub fn functional_event(&self, token: EventToken) -> Option<FunctionalEvent> {
        let active = lock(&self.inner.events).active.get(&token).cloned()?;
        let bg = active.fetch;
        // registration: the result of getting a BackgroundFetchRegistration instance for
        // bgFetch in the event object's relevant Realm.
        let sw_env = self.service_worker_environment(&bg.registration);
        let registration = sw_env
            .background_fetch(&bg.registration)
            .inner
            .get_instance(&bg);
        let base = BackgroundFetchEvent {
            kind: active.kind,
            registration,
            trusted: true,
            token: Some(token),
        };
        Some(match active.kind {
            FunctionalEventKind::Success | FunctionalEventKind::Fail => {
                let e = BackgroundFetchUpdateUiEvent {
                    event: base,
                    state: active.state,
                    engine: Arc::downgrade(&self.inner),
                };
                if active.kind == FunctionalEventKind::Success {
                    FunctionalEvent::Success(e)
                } else {
                    FunctionalEvent::Fail(e)
                }
            }
            FunctionalEventKind::Abort => FunctionalEvent::Abort(base),
            FunctionalEventKind::Click => FunctionalEvent::Click(base),
        })
    }
}

/// For a [`crate::WorkerHost`] whose service worker script runs in this process: turns the
/// events it is given as data into their objects, once told the engine
/// ([`EventObjects::attach`]; the worker host exists before the engine, and a restored fetch may
/// fire its event while the engine starts). It holds the engine weakly.
#[derive(Clone, Default)]
pub struct EventObjects {
    engine: Arc<Watch<Option<WeakEngine>>>,
}

impl fmt::Debug for EventObjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventObjects")
    }
}

impl EventObjects {
    /// No engine yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The engine whose events these are (after [`Engine::start`], and after every restart).
    pub fn attach(&self, engine: &Engine) {
        let weak = engine.downgrade();
        self.engine.update(|e| *e = Some(weak));
    }

    /// Forgets the engine (before another starts on the same hosts, as a test's restart
    /// does): events wait for the next [`EventObjects::attach`].
    pub fn detach(&self) {
        self.engine.update(|e| *e = None);
    }

    /// The object of `event`, once a running engine is attached; `None` if the event is no
    /// longer active.
    pub fn object(
        &self,
        event: &FunctionalEventData,
    ) -> BoxFuture<'static, Option<FunctionalEvent>> {
        let engine = self.engine.clone();
        let token = event.token;
        async move {
            // A restart drops the old engine before the new one is attached: wait for a live
            // one.
            engine
                .wait_until(|e| e.as_ref().is_some_and(WeakEngine::is_alive))
                .await;
            let engine = engine.with(|e| e.clone())?.upgrade()?;
            engine.functional_event(token)
        }
        .boxed()
    }
}
