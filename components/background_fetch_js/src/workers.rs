//! The engine's side of dedicated and shared workers
//! (<https://html.spec.whatwg.org/multipage/workers.html>): each worker global is an
//! environment of the event loop whose Background Fetch objects (reached through
//! `navigator.serviceWorker`'s registrations) talk to the engine over a connection of kind
//! [`EnvironmentKindData::Worker`]. The globals themselves are in `src/js/workers.js`.

use crate::engine_host::{BrowserSide, EnvId};
use background_fetch::PolicyContainer;
use background_fetch::service::Connection;
use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use std::sync::Arc;
use url::Url;

/// The kinds of worker global `native.createWorker` makes besides service workers.
pub const WORKER_KINDS: [&str; 2] = ["dedicatedworker", "sharedworker"];

/// Opens the connection of dedicated or shared worker global `env`, whose script is at
/// `script_url` (its API base URL and origin).
///
/// AD-HOC: the worker's policy container is empty; upstream it comes from its script's
/// response (its `Content-Security-Policy` headers).
pub fn worker_connection(browser: &BrowserSide, env: EnvId, script_url: &Url) -> Connection {
    let conn = background_fetch::service::in_process::connect(
        &browser.service,
        EnvironmentData {
            kind: EnvironmentKindData::Worker,
            base_url: script_url.clone(),
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        },
        Arc::new(browser.executor.clone()),
    );
    browser
        .connections
        .lock()
        .unwrap()
        .insert(env, conn.clone());
    conn
}
