//! Functional events: `BackgroundFetchEvent`, `BackgroundFetchUpdateUIEvent` and `updateUI()`.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::engine::EngineInner;
use crate::error::DomError;
use crate::hosts::DispatchOutcome;
use crate::model::{BackgroundFetchUiOptions, FunctionalEventKind};
use crate::registration::BackgroundFetchRegistration;
use crate::state::BgFetch;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
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

struct UpdateUiState {
    /// <https://wicg.github.io/background-fetch/#backgroundfetchupdateuievent-ui-updated-flag>
    ui_updated: AtomicBool,
    /// ExtendableEvent's "active": dispatching, or with pending `waitUntil` promises.
    active: AtomicBool,
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
            state: Arc::new(UpdateUiState {
                ui_updated: AtomicBool::new(false),
                active: AtomicBool::new(true),
            }),
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
            if let Err(e) = engine.hosts.store.set_ui(bg.uid, title, icons).await {
                tracing::warn!(uid = %bg.uid, error = %e, "could not store updateUI() values");
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

    /// The event as a `BackgroundFetchUpdateUIEvent`, for success and fail.
    pub fn update_ui_event(&self) -> Option<&BackgroundFetchUpdateUiEvent> {
        match self {
            FunctionalEvent::Success(e) | FunctionalEvent::Fail(e) => Some(e),
            _ => None,
        }
    }
}

/// Fires functional event `kind` for `bg` at its registration's active worker, and completes
/// when the event is no longer active (or was not dispatched).
///
/// "Fire a functional event" (Service Workers) asserts an active worker; when there is none
/// (outline §11.D.6) or the host skips or fails the dispatch (§11.D.7), the event counts as no
/// longer active at once, so the records still become unavailable and the storage is released.
pub(crate) async fn fire(
    engine: &Arc<EngineInner>,
    bg: &Arc<BgFetch>,
    kind: FunctionalEventKind,
) -> DispatchOutcome {
    if bg.flags().silent || !engine.hosts.worker.has_active_worker(&bg.registration) {
        tracing::info!(uid = %bg.uid, event = kind.event_type(), "not dispatched: no active worker");
        return DispatchOutcome::Skipped;
    }
    // with registration: the result of getting a BackgroundFetchRegistration instance for
    // bgFetch in the event object's relevant Realm (the service worker global's).
    let sw_env = engine.service_worker_environment(&bg.registration);
    let registration = sw_env
        .background_fetch(&bg.registration)
        .inner
        .get_instance(bg);
    let base = BackgroundFetchEvent {
        kind,
        registration,
        trusted: true,
    };
    let ui_state = Arc::new(UpdateUiState {
        ui_updated: AtomicBool::new(false),
        active: AtomicBool::new(true),
    });
    let event = match kind {
        FunctionalEventKind::Success | FunctionalEventKind::Fail => {
            let e = BackgroundFetchUpdateUiEvent {
                event: base,
                state: ui_state.clone(),
                engine: Arc::downgrade(engine),
            };
            if kind == FunctionalEventKind::Success {
                FunctionalEvent::Success(e)
            } else {
                FunctionalEvent::Fail(e)
            }
        }
        FunctionalEventKind::Abort => FunctionalEvent::Abort(base),
        FunctionalEventKind::Click => FunctionalEvent::Click(base),
    };
    tracing::info!(uid = %bg.uid, id = %bg.id, event = kind.event_type(), "dispatching");
    let outcome = engine.hosts.worker.dispatch(event).await;
    ui_state.active.store(false, Ordering::SeqCst);
    tracing::info!(uid = %bg.uid, event = kind.event_type(), ?outcome, "event no longer active");
    outcome
}
