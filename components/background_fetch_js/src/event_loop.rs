//! The event loop: one Boa [`Context`] with a realm per environment (the page, each service
//! worker global), a task queue, timers on the engine's clock, and Boa's job queue as the
//! microtask queue (a microtask checkpoint after every task).
//!
//! <https://html.spec.whatwg.org/multipage/webappapis.html#event-loop-processing-model>
//!
//! AD-HOC: the page and its service workers share one event loop and one microtask queue (one
//! thread, one Boa context); upstream each agent has its own. Tasks still run one at a time,
//! in the order they were queued, each followed by a checkpoint.
//!
//! Time: timers and the engine run on one [`background_fetch::testing::VirtualClock`]. While a
//! transfer on the loopback sockets is in flight the clock follows real time; when only timers
//! remain it jumps to the next one, so `step_timeout` and the engine's retry delays cost
//! nothing.

use crate::bootstrap::bootstrap_realm;
use crate::engine_host::{BrowserSide, Inbound};
use crate::natives;
use crate::state::{Env, LoopState, Task, install, take, with_state};
use boa_engine::{Context, JsValue, Source};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use url::Url;

/// How long a program's loop waits with nothing happening before it concludes that nothing is
/// pending.
const QUIET: Duration = Duration::from_millis(300);

/// The event loop of one page.
pub struct EventLoop {
    context: Context,
    /// Timers wait in real time (a program) instead of the clock jumping to them (tests).
    pub real_time: bool,
    /// Set from outside (a program's SIGINT), the loop ends at its next turn.
    pub stop: Option<Arc<AtomicBool>>,
}

impl EventLoop {
    /// A loop whose page is at `page_url`, on `browser`.
    pub fn new(browser: BrowserSide, page_url: Url, verbose: bool) -> EventLoop {
        let context = Context::builder()
            .host_hooks(std::rc::Rc::new(crate::rejections::Hooks))
            .build()
            .expect("a Boa context");
        let realm = context.realm().clone();
        let mut envs = HashMap::new();
        envs.insert(
            0,
            Env {
                realm,
                url: page_url,
                callback: None,
            },
        );
        install(LoopState {
            browser,
            tasks: VecDeque::new(),
            timers: BTreeMap::new(),
            timer_ids: HashMap::new(),
            next_timer: 0,
            ops: HashMap::new(),
            next_op: 0,
            envs,
            next_env: 0,
            page_csp: Vec::new(),
            reports: Vec::new(),
            done: false,
            verbose,
            harness: None,
            caches: Default::default(),
            registrations: None,
            console: Vec::new(),
        });
        let mut this = EventLoop {
            context,
            real_time: false,
            stop: None,
        };
        this.bootstrap(0, "window")
            .unwrap_or_else(|e| panic!("the page's bootstrap failed: {e}"));
        this
    }

    /// The context.
    pub fn context(&mut self) -> &mut Context {
        &mut self.context
    }

    /// Installs the bindings in environment `env`'s realm (the current one).
    fn bootstrap(&mut self, env: crate::engine_host::EnvId, kind: &str) -> Result<(), String> {
        let native = natives::native_object(&mut self.context);
        bootstrap_realm(&mut self.context, native, env, kind)
    }

    /// Evaluates `source` (named `name`) in the page's realm as one task's script.
    pub fn eval_page(&mut self, name: &str, source: &str) -> Result<JsValue, String> {
        let _ = name;
        self.context
            .eval(Source::from_bytes(source))
            .map_err(|e| e.to_string())
    }

    /// Runs tasks, timers and the engine until the harness reports done, nothing can happen
    /// any more, or `limit` of virtual time (or 4 × `limit` of real time) passed.
    pub fn run(&mut self, limit: Duration) -> bool {
        let start_virtual = with_state(|s| s.browser.clock.now_duration());
        let start_real = Instant::now();
        let mut last_real = Instant::now();
        let mut idle_since = Instant::now();
        loop {
            self.checkpoint();
            if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                return false;
            }
            let browser = with_state(|s| s.browser.clone());
            if browser.executor.run_until_stalled() > 0 {
                idle_since = Instant::now();
            }
            // Messages from the browser side become tasks.
            let inbound: Vec<Inbound> = browser.inbound.lock().unwrap().drain(..).collect();
            let had_inbound = !inbound.is_empty();
            for message in inbound {
                self.deliver(message);
                self.checkpoint();
            }
            if let Some(task) = with_state(|s| s.tasks.pop_front()) {
                self.run_task(task);
                idle_since = Instant::now();
                continue;
            }
            if had_inbound {
                idle_since = Instant::now();
                continue;
            }
            let now = browser.clock.now_duration();
            let due = with_state(|s| {
                let key = s.timers.keys().next().copied()?;
                if key.0 <= now {
                    s.timer_ids.remove(&key.1);
                    s.timers.remove(&key)
                } else {
                    None
                }
            });
            if let Some(task) = due {
                self.run_task(task);
                continue;
            }
            if with_state(|s| s.done) {
                return true;
            }
            if now - start_virtual > limit || start_real.elapsed() > limit * 4 {
                return false;
            }
            if browser.network.in_flight() > 0 {
                idle_since = Instant::now();
                // A socket is busy: wait for it in real time, and keep the clock in step.
                std::thread::sleep(Duration::from_millis(1));
                let elapsed = last_real.elapsed();
                last_real = Instant::now();
                browser.clock.advance(elapsed);
                continue;
            }
            last_real = Instant::now();
            if browser.executor.run_until_stalled() > 0 {
                continue;
            }
            if !browser.inbound.lock().unwrap().is_empty() {
                continue;
            }
            // Idle: jump to the next timer, the page's or the engine's.
            let next_js = with_state(|s| s.timers.keys().next().map(|k| k.0));
            let next_engine = browser.clock.next_deadline();
            let next = match (next_js, next_engine) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) if self.real_time && idle_since.elapsed() < QUIET => {
                    // A program: work outside the loop (a store's threads, a socket) may still
                    // wake a task; it is over once nothing happened for a while.
                    std::thread::sleep(Duration::from_millis(2));
                    browser.clock.advance(last_real.elapsed());
                    last_real = Instant::now();
                    continue;
                }
                (None, None) => return false,
            };
            if next > now && self.real_time {
                // A program: wait for the timer in real time (a little at a time, so that
                // sockets are served meanwhile).
                let wait = (next - now).min(Duration::from_millis(10));
                std::thread::sleep(wait);
                browser.clock.advance(last_real.elapsed());
                last_real = Instant::now();
            } else if next > now {
                browser.clock.advance(next - now);
            } else {
                browser.clock.advance(Duration::ZERO);
            }
        }
    }

    fn run_task(&mut self, task: Task) {
        if let Err(e) = task
            .callback
            .call(&JsValue::undefined(), &task.args, &mut self.context)
        {
            natives::report_exception(&mut self.context, e);
        }
        self.checkpoint();
    }

    /// A microtask checkpoint, then "notify about rejected promises".
    pub fn checkpoint(&mut self) {
        loop {
            if let Err(e) = self.context.run_jobs() {
                natives::report_exception(&mut self.context, e);
            }
            let rejected = crate::rejections::take();
            if rejected.is_empty() {
                return;
            }
            let callbacks: Vec<_> =
                with_state(|s| s.envs.values().filter_map(|e| e.callback.clone()).collect());
            for promise in rejected {
                let reason =
                    match boa_engine::object::builtins::JsPromise::from_object(promise.clone())
                        .map(|p| p.state())
                    {
                        Ok(boa_engine::builtins::promise::PromiseState::Rejected(v)) => v,
                        _ => continue,
                    };
                // Each environment's callback fires the event if the promise is of its realm.
                let message = boa_engine::object::ObjectInitializer::new(&mut self.context)
                    .property(
                        boa_engine::js_string!("type"),
                        boa_engine::js_string!("unhandledrejection"),
                        boa_engine::property::Attribute::all(),
                    )
                    .property(
                        boa_engine::js_string!("promise"),
                        promise.clone(),
                        boa_engine::property::Attribute::all(),
                    )
                    .property(
                        boa_engine::js_string!("reason"),
                        reason,
                        boa_engine::property::Attribute::all(),
                    )
                    .build();
                for cb in &callbacks {
                    if let Err(e) = cb.call(
                        &JsValue::undefined(),
                        &[message.clone().into()],
                        &mut self.context,
                    ) {
                        natives::report_exception(&mut self.context, e);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, message: Inbound) {
        match message {
            Inbound::Settle { op, result } => {
                let Some(resolvers) = with_state(|s| s.ops.remove(&op)) else {
                    return;
                };
                let outcome = match result {
                    Ok((value, bytes)) => {
                        natives::json_to_js(&value, bytes, &mut self.context).map(|v| (true, v))
                    }
                    Err(e) => natives::dom_error_to_js(&e, &mut self.context).map(|v| (false, v)),
                };
                let call = match outcome {
                    Ok((true, v)) => {
                        resolvers
                            .resolve
                            .call(&JsValue::undefined(), &[v], &mut self.context)
                    }
                    Ok((false, v)) => {
                        resolvers
                            .reject
                            .call(&JsValue::undefined(), &[v], &mut self.context)
                    }
                    Err(e) => {
                        let err = e.into_opaque(&mut self.context).unwrap_or_default();
                        resolvers
                            .reject
                            .call(&JsValue::undefined(), &[err], &mut self.context)
                    }
                };
                if let Err(e) = call {
                    natives::report_exception(&mut self.context, e);
                }
            }
            Inbound::Notify { env, message } => {
                let callback = with_state(|s| s.envs.get(&env).and_then(|e| e.callback.clone()));
                let Some(callback) = callback else { return };
                match JsValue::from_json(&message, &mut self.context) {
                    Ok(v) => {
                        if let Err(e) =
                            callback.call(&JsValue::undefined(), &[v], &mut self.context)
                        {
                            natives::report_exception(&mut self.context, e);
                        }
                    }
                    Err(e) => natives::report_exception(&mut self.context, e),
                }
            }
        }
    }

    /// Runs `f` on the loop's state.
    pub fn inspect<R>(&self, f: impl FnOnce(&mut LoopState) -> R) -> R {
        with_state(f)
    }

    /// The harness's closing status, once it reported.
    pub fn harness(&self) -> Option<crate::state::Report> {
        with_state(|s| s.harness.clone())
    }

    /// The harness's reports.
    pub fn reports(&self) -> Vec<crate::state::Report> {
        with_state(|s| s.reports.clone())
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        // Break the cycles between the engine's tasks and the page.
        let state = take();
        if let Some(state) = state {
            state.browser.executor.drop_all_tasks();
            drop(state);
        }
    }
}
