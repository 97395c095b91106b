//! Firing functional events, as data: the engine gives the [`WorkerHost`] the event's kind,
//! fetch and a token, and keeps what `updateUI()` needs under the token while the event is
//! active. The event objects script sees are built from the token where script runs (in this
//! process, [`crate::Engine::functional_event`]; in another, the service protocol).
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::core::EngineInner;
use crate::hosts::{DispatchOutcome, FunctionalEventData, WorkerHost};
use crate::model::{EventToken, FunctionalEventKind};
use crate::state::{ActiveEvent, BgFetch, UpdateUiState};
use crate::sync::lock;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
    if bg.flags().silent
        || !engine
            .hosts
            .worker
            .has_active_worker(&bg.registration)
            .await
    {
        tracing::info!(uid = %bg.uid, event = kind.event_type(), "not dispatched: no active worker");
        return DispatchOutcome::Skipped;
    }
    // with registration: the result of getting a BackgroundFetchRegistration instance for
    // bgFetch in the event object's relevant Realm (the service worker global's): made when
    // the event's object is made from its token.
    let state = UpdateUiState::new();
    let token = {
        let mut events = lock(&engine.events);
        events.next += 1;
        let token = EventToken(events.next);
        events.active.insert(
            token,
            ActiveEvent {
                fetch: bg.clone(),
                kind,
                state: state.clone(),
            },
        );
        token
    };
    let data = FunctionalEventData {
        kind,
        token,
        uid: bg.uid,
        id: bg.id.clone(),
        registration: bg.registration.clone(),
    };
    tracing::info!(uid = %bg.uid, id = %bg.id, event = kind.event_type(), ?token, "dispatching");
    let outcome = WorkerHost::dispatch(&*engine.hosts.worker, data).await;
    state.active.store(false, Ordering::SeqCst);
    lock(&engine.events).active.remove(&token);
    tracing::info!(uid = %bg.uid, event = kind.event_type(), ?outcome, "event no longer active");
    outcome
}
