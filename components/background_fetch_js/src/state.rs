//! The event loop's state that native functions reach: tasks, timers, pending operations, the
//! environments and the harness's report. It lives in a thread-local of the loop's thread.

use crate::engine_host::{BrowserSide, EnvId};
use boa_engine::builtins::promise::ResolvingFunctions;
use boa_engine::{JsObject, JsValue, realm::Realm};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;
use url::Url;

/// A task: a function to call with arguments.
pub struct Task {
    /// The function.
    pub callback: JsObject,
    /// Its arguments.
    pub args: Vec<JsValue>,
}

/// One environment of the loop.
pub struct Env {
    /// Its realm.
    pub realm: Realm,
    /// Its creation URL (the page's, or the worker script's).
    pub url: Url,
    /// The function the browser side's messages are given to.
    pub callback: Option<JsObject>,
}

/// A line of the harness's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The subtest name (empty for the harness status).
    pub name: String,
    /// `PASS`, `FAIL`, `TIMEOUT`, `NOTRUN`, or the harness status (`OK`, `ERROR`, `TIMEOUT`).
    pub status: String,
    /// The message.
    pub message: String,
}

/// The state natives reach (the loop's thread only).
pub struct LoopState {
    /// The browser side.
    pub browser: BrowserSide,
    /// Queued tasks.
    pub tasks: VecDeque<Task>,
    /// Timers by (deadline, id).
    pub timers: BTreeMap<(Duration, u64), Task>,
    /// Deadline of each timer id.
    pub timer_ids: HashMap<u64, Duration>,
    /// The last timer id.
    pub next_timer: u64,
    /// Promises of operations in progress.
    pub ops: HashMap<u64, ResolvingFunctions>,
    /// The last operation id.
    pub next_op: u64,
    /// The environments.
    pub envs: HashMap<EnvId, Env>,
    /// The last environment id.
    pub next_env: EnvId,
    /// The page's Content Security Policies (a `<meta http-equiv>` adds one).
    pub page_csp: Vec<String>,
    /// The harness's reports, in order.
    pub reports: Vec<Report>,
    /// The harness finished.
    pub done: bool,
    /// Console output is printed.
    pub verbose: bool,
    /// The harness's closing status.
    pub harness: Option<Report>,
    /// Console output, in order.
    pub console: Vec<String>,
    /// The Cache API's caches.
    pub caches: crate::cache_store::CacheStore,
    /// Where the page's service worker registrations are kept (an app run on a store).
    pub registrations: Option<crate::registrations::RegistrationRows>,
}

thread_local! {
    static STATE: RefCell<Option<LoopState>> = const { RefCell::new(None) };
}

/// Runs `f` on the loop's state. Must not call into JavaScript.
pub fn with_state<R>(f: impl FnOnce(&mut LoopState) -> R) -> R {
    STATE.with(|s| f(s.borrow_mut().as_mut().expect("the event loop is running")))
}

/// Makes `state` the loop's state.
pub fn install(state: LoopState) {
    STATE.with(|s| *s.borrow_mut() = Some(state));
}

/// Takes the loop's state away.
pub fn take() -> Option<LoopState> {
    STATE.with(|s| s.borrow_mut().take())
}
