//! Runs a [`Script`] on a [`TestBed`] and checks the invariants (see the module above).
//!
//! Script (the page and the service worker global) reaches the engine through the test bed's
//! service and protocol; what the embedder does (pause, resume, the user's abort, click, the
//! permission prompt's answer, the network) are engine calls.

use super::oracle::{self, Changed, Effects, Expectation, Queued};
use super::resources::{Kind, RecordSpec};
use super::{EventDelay, FetchOp, FetchRef, MAX_FAULT_SETS_PER_RECORD, Op, Script, Total, UiPlan};
use background_fetch::service::client::{
    BackgroundFetchRecord, BackgroundFetchRegistration, FunctionalEvent,
};
use background_fetch::testing::{TestBed, UiCall};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchOptions,
    BackgroundFetchResult as Outcome, BackgroundFetchUiOptions, Clock, DispatchOutcome, FetchUid,
    FunctionalEventKind as Kind_, ImageResource, OperationError, PermissionState, RecordResult,
    RequestInfo, Spawn,
};
use futures::FutureExt;
use futures::future::MaybeDone;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The ids fetches are made with.
const IDS: [&str; 3] = ["a", "b", "c"];

/// The quota of every storage key on a `TestBed`.
const TEST_BED_QUOTA: u64 = 1 << 30;

/// How many trace lines a failure message shows.
const TRACE_SHOWN: usize = 80;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `script` and panics at the first broken invariant.
pub(super) fn run(script: &Script) {
    let mut h = Harness::new(script);
    for (i, op) in script.ops.iter().enumerate() {
        h.step = i + 1;
        h.apply(op);
        h.bed.executor.run_until_stalled();
        h.check();
    }
    h.step = script.ops.len() + 1;
    h.teardown();
    if std::env::var_os("BGFETCH_ENGINE_SCRIPT_TRACE").is_some() {
        eprintln!("script: {script:?}");
        for line in &h.trace {
            eprintln!("  {line}");
        }
    }
}

/// A (result, failure reason) pair.
type Settled = (Outcome, Reason);

/// What a settle or click event handler saw when it started.
#[derive(Clone, Debug)]
struct EventSeen {
    kind: Kind_,
    uid: FetchUid,
    result: Outcome,
    reason: Reason,
    downloaded: u64,
    uploaded: u64,
    records_available: bool,
    /// `matchAll()`: (index, stored bytes, result) of each record, or the rejection.
    records: Result<Vec<(usize, u64, RecordResult)>, String>,
}

/// What `responseReady` gave.
#[derive(Clone, Debug)]
struct ResponseSeen {
    status: u16,
    url: String,
    /// `Content-Range` or `Content-Length` was exposed.
    range_headers: bool,
    body: Result<Vec<u8>, String>,
}

/// One record read (in an event, by `matchAll()`, or after a restart).
#[derive(Clone, Debug)]
struct ReadSeen {
    source: &'static str,
    uid: FetchUid,
    index: usize,
    url: String,
    result: RecordResult,
    stored: u64,
    /// The response, or the name of the rejection.
    response: Result<ResponseSeen, &'static str>,
}

/// A settle event the worker kept for a later `updateUI()`.
struct Kept {
    uid: FetchUid,
    event: FunctionalEvent,
    /// The restart count when it was dispatched.
    epoch: usize,
    /// `updateUI()` was called on it.
    called: bool,
}

/// State the service worker's handler and the `progress` listeners share with the harness.
#[derive(Default)]
struct Shared {
    /// Per fetch number: what the settle event handler does.
    plans: HashMap<usize, (UiPlan, EventDelay)>,
    violations: Vec<String>,
    events: Vec<EventSeen>,
    reads: Vec<ReadSeen>,
    /// The title the last successful `updateUI()` set, per fetch.
    titles: HashMap<FetchUid, String>,
    kept: Vec<Kept>,
    titles_made: usize,
    /// How many restarts happened.
    epoch: usize,
    /// What `abort()` called from inside a transfer resolved ([`Op::AbortInside`]), unless the
    /// instance belonged to an engine that crashed since.
    aborted_inside: Vec<AbortedInside>,
}

/// An `abort()` called from inside a transfer: the fetch, the record, the most bytes it may
/// hold (what the network had delivered of its URL when abort() was answered), and the result
/// (an error's name and message).
type AbortedInside = (usize, usize, u64, Result<bool, String>);

/// A fetch `fetch()` resolved.
struct Tracked {
    /// Its number (the how-many-th fetch op made it), which its URLs carry.
    slot: usize,
    id: usize,
    uid: FetchUid,
    /// The page's instance, while it belongs to the running engine and may still change.
    reg: Option<BackgroundFetchRegistration>,
    /// An instance of a page of an engine that crashed.
    stale: Option<BackgroundFetchRegistration>,
    records: Vec<RecordSpec>,
    /// Per record: the fault sets queued for it.
    faults: Vec<Vec<Queued>>,
    /// Per record: the changes of its resource.
    changes: Vec<Vec<Changed>>,
    download_total: u64,
    upload_total: u64,
    title: String,
    abort_returned_true: bool,
    user_aborted: bool,
    /// A restart happened before its result was known.
    restarted_unsettled: bool,
    paused: bool,
    /// Made while the permission was "prompt", and the user has not answered (nor resumed).
    awaiting_permission: bool,
    /// `abort()` resolved true from inside the transfer of this record: (record, the most
    /// bytes it may have stored: the transfer takes nothing once the abort all flag is set).
    aborted_inside: Option<(usize, u64)>,
    /// Its result and failure reason, once anything showed them.
    settled: Option<Settled>,
    /// Settle events a restart interrupted (each may be dispatched again).
    interrupted_events: usize,
}

impl Tracked {
    fn label(&self) -> String {
        format!("fetch #{} (id {:?}, {})", self.slot, IDS[self.id], self.uid)
    }

    /// The most body bytes its records can hold, whatever the server does.
    fn most_bytes(&self) -> u64 {
        self.records.iter().map(RecordSpec::served_size).sum()
    }

    fn all_get(&self) -> bool {
        self.records.iter().all(RecordSpec::is_get)
    }
}

/// What the harness shares with the service worker's handler goes with it: the kept events
/// hold the service worker global's connection, whose listener holds the handler, which holds
/// this (a cycle that leaked every test bed).
impl Drop for Harness<'_> {
    fn drop(&mut self) {
        let shared = std::mem::take(&mut *lock(&self.shared));
        drop(shared);
    }
}

struct Harness<'s> {
    script: &'s Script,
    bed: TestBed,
    shared: Arc<Mutex<Shared>>,
    fetches: Vec<Tracked>,
    /// Fetch ops run so far (rejected ones included).
    slots: usize,
    step: usize,
    trace: Vec<String>,
    online: bool,
    /// UI calls, events and reads already checked.
    ui_seen: usize,
    events_seen: usize,
    reads_seen: usize,
    /// The result each fetch's UI showed.
    ui_settled: HashMap<FetchUid, Settled>,
}

/// The fetch number in a record URL `https://example.com/f<n>/r<i>/<name>`.
fn slot_of(url: &url::Url) -> Option<usize> {
    url.path_segments()?.next()?.strip_prefix('f')?.parse().ok()
}

fn consistent(kind: Kind_, (result, reason): Settled) -> bool {
    match kind {
        Kind_::Success => result == Outcome::Success && reason == Reason::Empty,
        Kind_::Fail => {
            result == Outcome::Failure && !matches!(reason, Reason::Empty | Reason::Aborted)
        }
        Kind_::Abort => result == Outcome::Failure && reason == Reason::Aborted,
        Kind_::Click => true,
    }
}

fn icons_for(slot: usize) -> Vec<ImageResource> {
    vec![ImageResource {
        src: format!("https://example.com/icons/{slot}.png"),
        sizes: Some("96x96".into()),
        r#type: Some("image/png".into()),
        label: Some(format!("fetch {slot}")),
    }]
}

/// Reads every record whose result is final (the bodies of those that can be exposed).
async fn read_records(
    records: &[BackgroundFetchRecord],
    source: &'static str,
    uid: FetchUid,
) -> Vec<ReadSeen> {
    let mut out = Vec::new();
    for rec in records {
        // The record's result and stored bytes, at one instant of the engine.
        let (result, stored) = match rec.state().await {
            Ok(state) => (state.result, state.stored_bytes),
            Err(e) => {
                out.push(ReadSeen {
                    source,
                    uid,
                    index: rec.index(),
                    url: rec.request().url.to_string(),
                    result: RecordResult::Empty,
                    stored: 0,
                    response: Err(e.name()),
                });
                continue;
            }
        };
        if matches!(result, RecordResult::Empty | RecordResult::Redundant) {
            continue;
        }
        let response = match rec.response_ready().await {
            Ok(resp) => {
                let status = resp.status();
                let url = resp.url();
                let range_headers = resp.headers().contains("content-range")
                    || resp.headers().contains("content-length");
                let body = resp.bytes().await.map_err(|e| e.to_string());
                Ok(ResponseSeen {
                    status,
                    url,
                    range_headers,
                    body,
                })
            }
            Err(e) => Err(e.name()),
        };
        out.push(ReadSeen {
            source,
            uid,
            index: rec.index(),
            url: rec.request().url.to_string(),
            result,
            stored,
            response,
        });
    }
    out
}

/// The service worker: records what each event shows, calls `updateUI()` as planned, reads
/// the records, and keeps the event active for the planned delay.
fn install_worker(bed: &TestBed, shared: Arc<Mutex<Shared>>) {
    let clock = bed.clock.clone();
    let ui = bed.ui.clone();
    bed.worker.set_handler(move |e: FunctionalEvent| {
        let shared = shared.clone();
        let clock = clock.clone();
        let ui = ui.clone();
        async move {
            let kind = e.kind();
            let reg = e.registration().clone();
            let uid = reg.uid();
            let mut seen = EventSeen {
                kind,
                uid,
                result: reg.result(),
                reason: reg.failure_reason(),
                downloaded: reg.downloaded(),
                uploaded: reg.uploaded(),
                records_available: reg.records_available(),
                records: Ok(Vec::new()),
            };
            if kind == Kind_::Click {
                lock(&shared).events.push(seen);
                return DispatchOutcome::Completed;
            }
            let records = match reg.match_all(None, Default::default()).await {
                Ok(r) => r,
                Err(err) => {
                    seen.records = Err(err.to_string());
                    lock(&shared).events.push(seen);
                    return DispatchOutcome::Completed;
                }
            };
            let mut states = Vec::new();
            for r in &records {
                match r.state().await {
                    Ok(state) => states.push((r.index(), state.stored_bytes, state.result)),
                    Err(err) => {
                        seen.records = Err(format!("the state of record {}: {err}", r.index()));
                        break;
                    }
                }
            }
            if seen.records.is_ok() {
                seen.records = Ok(states);
            }
            lock(&shared).events.push(seen);
            let slot = records.first().and_then(|r| slot_of(&r.request().url));
            let (plan, delay) = slot
                .and_then(|s| lock(&shared).plans.get(&s).copied())
                .unwrap_or((UiPlan::None, EventDelay::None));
            // BackgroundFetchUpdateUIEvent: success and fail.
            if let (Kind_::Success | Kind_::Fail, Some(slot)) = (kind, slot) {
                update_ui_as_planned(&shared, &ui, &e, plan, uid, slot).await;
            }
            let reads = read_records(&records, kind.event_type(), uid).await;
            lock(&shared).reads.extend(reads);
            let delay = match delay {
                EventDelay::None => Duration::ZERO,
                EventDelay::Short => Duration::from_millis(50),
                EventDelay::Second => Duration::from_secs(1),
                EventDelay::Long => Duration::from_secs(10),
            };
            if !delay.is_zero() {
                Clock::sleep(&clock, delay).await;
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
}

async fn update_ui_as_planned(
    shared: &Arc<Mutex<Shared>>,
    ui: &background_fetch::testing::RecordingUi,
    ev: &FunctionalEvent,
    plan: UiPlan,
    uid: FetchUid,
    slot: usize,
) {
    let title = || {
        let mut s = lock(shared);
        s.titles_made += 1;
        format!("Fetch {slot}, title {}", s.titles_made)
    };
    let options = |title: String, icons: bool| BackgroundFetchUiOptions {
        title: Some(title),
        icons: icons.then(|| icons_for(slot)),
    };
    let who = format!("fetch #{slot} ({uid}) {}", ev.event_type());
    // After a successful call: the UI shows the new title (and icons) at once.
    let shown = |t: &str, icons: bool| {
        let mut s = lock(shared);
        match ui.last(uid) {
            Some(snap) if snap.title == t && (!icons || snap.icons == icons_for(slot)) => {}
            other => s.violations.push(format!(
                "{who}: updateUI({t:?}) resolved but the UI shows {:?}",
                other.map(|o| (o.title, o.icons))
            )),
        }
        s.titles.insert(uid, t.to_owned());
    };
    let must_reject = |r: Result<(), background_fetch::DomError>, what: &str| {
        if !matches!(&r, Err(e) if e.name() == "InvalidStateError") {
            lock(shared).violations.push(format!(
                "{who}: {what} gave {r:?}, not an InvalidStateError"
            ));
        }
    };
    match plan {
        UiPlan::None => {}
        UiPlan::Title | UiPlan::TitleAndIcons => {
            let icons = plan == UiPlan::TitleAndIcons;
            let t = title();
            match ev.update_ui(options(t.clone(), icons)).await {
                Ok(()) => shown(&t, icons),
                Err(e) => lock(shared)
                    .violations
                    .push(format!("{who}: the first updateUI() rejected: {e}")),
            }
        }
        UiPlan::TwiceInTurn => {
            let t = title();
            match ev.update_ui(options(t.clone(), false)).await {
                Ok(()) => shown(&t, false),
                Err(e) => lock(shared)
                    .violations
                    .push(format!("{who}: the first updateUI() rejected: {e}")),
            }
            let again = ev.update_ui(options(title(), true)).await;
            must_reject(again, "a second updateUI()");
            shown(&t, false);
        }
        UiPlan::TwiceAtOnce => {
            let (t1, t2) = (title(), title());
            // Each call's steps start when script calls it (a binding polls the call at once):
            // the first is sent before the second is called.
            let first = started(ev.update_ui(options(t1.clone(), true)).boxed()).await;
            let second = ev.update_ui(options(t2, false));
            must_reject(
                second.await,
                "a second updateUI() called before the first resolved",
            );
            match finished(first).await {
                Ok(()) => shown(&t1, true),
                Err(e) => lock(shared)
                    .violations
                    .push(format!("{who}: the first updateUI() rejected: {e}")),
            }
        }
        UiPlan::Keep => {
            let mut s = lock(shared);
            let epoch = s.epoch;
            s.kept.push(Kept {
                uid,
                event: ev.clone(),
                epoch,
                called: false,
            });
        }
    }
}

/// Polls `call` once: the steps of a script call up to its first wait run (its message to the
/// service is sent, or it rejects at once), as when a binding calls it. [`finished`] awaits it.
async fn started<F: Future + Unpin>(call: F) -> MaybeDone<F> {
    let mut call = futures::future::maybe_done(call);
    let _ = futures::poll!(&mut call);
    call
}

/// The result of a call [`started`] made.
async fn finished<F: Future + Unpin>(mut call: MaybeDone<F>) -> F::Output {
    (&mut call).await;
    std::pin::Pin::new(&mut call)
        .take_output()
        .expect("the call was awaited")
}

impl<'s> Harness<'s> {
    /// Makes `call` from an object of a page or service worker global of an engine that crashed:
    /// its process is gone, so the call must settle nowhere (a violation if it ever does).
    fn settles_nowhere<T: fmt::Debug + Send + 'static>(
        &self,
        what: String,
        call: impl Future<Output = T> + Send + 'static,
    ) {
        let shared = self.shared.clone();
        self.bed.executor.spawn(
            async move {
                let r = call.await;
                lock(&shared).violations.push(format!(
                    "{what} on an object of a crashed engine settled with {r:?}"
                ));
            }
            .boxed(),
        );
    }

    fn new(script: &'s Script) -> Self {
        let bed = TestBed::new();
        let shared = Arc::new(Mutex::new(Shared::default()));
        install_worker(&bed, shared.clone());
        Harness {
            script,
            bed,
            shared,
            fetches: Vec::new(),
            slots: 0,
            step: 0,
            trace: Vec::new(),
            online: true,
            ui_seen: 0,
            events_seen: 0,
            reads_seen: 0,
            ui_settled: HashMap::new(),
        }
    }

    fn note(&mut self, line: impl fmt::Display) {
        let step = self.step;
        self.trace.push(format!("[{step}] {line}"));
    }

    /// Panics with the step, the recent trace and the script.
    fn fail(&self, msg: impl fmt::Display) -> ! {
        let ops = self.script.ops.len();
        let at = match self.script.ops.get(self.step.wrapping_sub(1)) {
            Some(op) => format!("step {} of {ops}: {op:?}", self.step),
            None => format!("the teardown after {ops} steps"),
        };
        let skip = self.trace.len().saturating_sub(TRACE_SHOWN);
        let mut trace = String::new();
        if skip > 0 {
            let _ = writeln!(trace, "  ... {skip} earlier lines");
        }
        for line in &self.trace[skip..] {
            let _ = writeln!(trace, "  {line}");
        }
        panic!(
            "engine_script: invariant broken at {at}\n  {msg}\ntrace:\n{trace}script: {:?}",
            self.script
        );
    }

    fn target(&self, f: FetchRef) -> Option<usize> {
        let n = self.fetches.len();
        (n > 0).then(|| n - 1 - usize::from(f) % n)
    }

    fn by_uid(&self, uid: FetchUid) -> Option<&Tracked> {
        self.fetches.iter().find(|t| t.uid == uid)
    }

    /// The effects of the faults each record's attempts took so far.
    fn effects(&self, t: &Tracked) -> Vec<Effects> {
        (0..t.records.len())
            .map(|i| self.record_effects(t, i))
            .collect()
    }

    fn record_effects(&self, t: &Tracked, i: usize) -> Effects {
        let r = &t.records[i];
        oracle::effects(
            r,
            &t.faults[i],
            &t.changes[i],
            &self.bed.network.requests_for(&r.url),
        )
    }

    /// The most `uploaded` can be: each attempt of an upload sends its body once.
    fn most_uploaded(&self, t: &Tracked) -> u64 {
        t.records
            .iter()
            .filter(|r| !r.is_get())
            .map(|r| r.upload_size() * (self.bed.network.requests_for(&r.url).len() as u64 + 1))
            .sum()
    }

    /// Watches an instance's `progress` events.
    fn watch(&self, t: &Tracked, reg: &BackgroundFetchRegistration) {
        let shared = self.shared.clone();
        let (label, total, most) = (t.label(), t.download_total, t.most_bytes());
        let seen: Mutex<Option<Settled>> = Mutex::new(None);
        reg.on_progress(move |r| {
            let mut v = Vec::new();
            let downloaded = r.downloaded();
            if total > 0 && downloaded > total {
                v.push(format!(
                    "{label}: a progress event shows downloaded {downloaded} > downloadTotal {total}"
                ));
            }
            if downloaded > most {
                v.push(format!(
                    "{label}: a progress event shows downloaded {downloaded}, more than its records can hold ({most})"
                ));
            }
            let now = (r.result(), r.failure_reason());
            let mut s = lock(&seen);
            match *s {
                Some(before) if before != now => v.push(format!(
                    "{label}: a progress event shows {now:?} after {before:?}"
                )),
                None if now.0 != Outcome::Empty => *s = Some(now),
                _ => {}
            }
            if !v.is_empty() {
                lock(&shared).violations.extend(v);
            }
        });
    }

    // ----- ops -----

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Fetch(f) => self.fetch(f),
            Op::Fault {
                fetch,
                record,
                faults,
            } => {
                let Some(i) = self.target(*fetch) else {
                    return self.note("fault: no fetch yet");
                };
                let r = usize::from(*record) % self.fetches[i].records.len();
                self.queue_faults(i, r, faults);
            }
            Op::Change { fetch, record } => {
                let Some(i) = self.target(*fetch) else { return };
                let r = usize::from(*record) % self.fetches[i].records.len();
                self.change(i, r);
            }
            Op::Release { fetch, record } => {
                let Some(i) = self.target(*fetch) else { return };
                let t = &self.fetches[i];
                let url = t.records[usize::from(*record) % t.records.len()]
                    .url
                    .clone();
                self.bed.network.release(&url);
                self.note(format_args!("release {url}"));
            }
            Op::Online(online) => {
                self.bed.set_online(*online);
                self.online = *online;
                self.note(if *online { "online" } else { "offline" });
            }
            Op::Advance(a) => {
                self.bed.advance(a.duration());
                self.note(format_args!("advance {:?}", a.duration()));
            }
            Op::Pause(f) | Op::Resume(f) => {
                let Some(i) = self.target(*f) else { return };
                let pause = matches!(op, Op::Pause(_));
                let (uid, engine) = (self.fetches[i].uid, self.bed.engine());
                let result = self.bed.run(async move {
                    if pause {
                        engine.pause(uid).await
                    } else {
                        engine.resume(uid).await
                    }
                });
                let changed = done(&result);
                let label = self.fetches[i].label();
                self.note(format_args!(
                    "{} {label} -> {result:?}",
                    if pause { "pause" } else { "resume" }
                ));
                if result == Err(OperationError::NotOffered) && self.fetches[i].all_get() {
                    self.fail(format_args!(
                        "{label}: pause not offered though every request is GET"
                    ));
                }
                let t = &self.fetches[i];
                // Resuming from the UI also answers the permission prompt.
                let answered = changed && !pause && t.awaiting_permission;
                if changed && !answered {
                    if t.paused == pause {
                        self.fail(format_args!(
                            "{label}: {} reported a change, but it was already {}",
                            if pause { "pause" } else { "resume" },
                            if pause { "paused" } else { "running" }
                        ));
                    }
                    if pause && !t.all_get() {
                        self.fail(format_args!("{label}: paused though it has an upload"));
                    }
                    if t.settled.is_some() {
                        self.fail(format_args!("{label}: paused or resumed after it settled"));
                    }
                    match self.bed.ui.last(uid) {
                        Some(s) if s.paused == pause => {}
                        other => self.fail(format_args!(
                            "{label}: the UI shows paused {:?} after the change",
                            other.map(|s| s.paused)
                        )),
                    }
                    self.fetches[i].paused = pause;
                }
                if answered {
                    self.fetches[i].awaiting_permission = false;
                    self.fetches[i].paused = false;
                }
            }
            Op::Abort(f) => {
                let Some(i) = self.target(*f) else { return };
                let t = &self.fetches[i];
                let label = t.label();
                let Some(reg) = t.reg.clone() else {
                    // The page of a crashed engine: its objects cannot reach any engine (its
                    // calls settle nowhere; an abort reaching the new engine would show in its
                    // events and results).
                    let Some(stale) = t.stale.clone() else { return };
                    self.note(format_args!("abort() {label} in a crashed page"));
                    self.settles_nowhere(format!("{label}: abort()"), async move {
                        stale.abort().await
                    });
                    return;
                };
                let r = self.bed.run(async move { reg.abort().await });
                self.note(format_args!("abort() {label} -> {r:?}"));
                match r {
                    Ok(true) => self.abort_resolved_true(i),
                    Ok(false) => {}
                    Err(e) => self.fail(format_args!("{label}: abort() rejected: {e}")),
                }
            }
            Op::UserAbort(f) => {
                let Some(i) = self.target(*f) else { return };
                let uid = self.fetches[i].uid;
                let engine = self.bed.engine();
                let result = self.bed.run(async move { engine.user_abort(uid).await });
                let aborted = done(&result);
                let label = self.fetches[i].label();
                self.note(format_args!("user abort {label} -> {result:?}"));
                if aborted {
                    if let Some(s) = self.fetches[i].settled {
                        self.fail(format_args!(
                            "{label}: user_abort reported success after it settled with {s:?}"
                        ));
                    }
                    self.fetches[i].user_aborted = true;
                }
            }
            Op::Click(f) => {
                let Some(i) = self.target(*f) else { return };
                let (uid, engine) = (self.fetches[i].uid, self.bed.engine());
                let before = self.bed.worker.events_of(Kind_::Click).len();
                let result = self.bed.run(async move { engine.click(uid).await });
                let clicked = done(&result);
                let after = self.bed.worker.events_of(Kind_::Click).len();
                let label = self.fetches[i].label();
                self.note(format_args!("click {label} -> {result:?}"));
                if after != before + usize::from(clicked) {
                    self.fail(format_args!(
                        "{label}: click returned {clicked} but {} click events were dispatched",
                        after - before
                    ));
                }
            }
            Op::Match { fetch, record } => {
                let Some(i) = self.target(*fetch) else { return };
                self.match_records(i, usize::from(*record));
            }
            Op::LateUpdateUi(f) => {
                let Some(i) = self.target(*f) else { return };
                self.late_update_ui(i);
            }
            Op::Restart => self.restart(),
            Op::Answer { fetch, accept } => {
                let Some(i) = self.target(*fetch) else { return };
                let (uid, engine, accept) = (self.fetches[i].uid, self.bed.engine(), *accept);
                let result = self
                    .bed
                    .run(async move { engine.permission_decision(uid, accept).await });
                let answered = done(&result);
                let label = self.fetches[i].label();
                self.note(format_args!("answer {label} accept {accept} -> {result:?}"));
                if answered {
                    if !self.fetches[i].awaiting_permission {
                        self.fail(format_args!(
                            "{label}: the prompt was answered though the fetch was not waiting on it"
                        ));
                    }
                    self.fetches[i].awaiting_permission = false;
                    if !accept {
                        // The refusal sets the abort all flag, like the UI's abort.
                        self.fetches[i].user_aborted = true;
                    }
                }
            }
            Op::AbortThenCrash(f) => {
                if let Some(i) = self.target(*f)
                    && let Some(reg) = self.fetches[i].reg.clone()
                {
                    // The process crashes as soon as abort()'s reply reached the page.
                    let r = self.bed.run(async move { reg.abort().await });
                    let label = self.fetches[i].label();
                    self.note(format_args!("abort() {label} then crash -> {r:?}"));
                    match r {
                        Ok(true) => self.abort_resolved_true(i),
                        Ok(false) => {}
                        Err(e) => self.fail(format_args!("{label}: abort() rejected: {e}")),
                    }
                }
                self.restart();
            }
            Op::AlwaysReady(on) => {
                self.bed.network.set_always_ready(*on);
                self.note(format_args!("always-ready network {on}"));
            }
            Op::AbortInside { fetch, record, at } => {
                let Some(i) = self.target(*fetch) else { return };
                let t = &self.fetches[i];
                let Some(reg) = t.reg.clone() else { return };
                let r = usize::from(*record) % t.records.len();
                let spec = &t.records[r];
                let offset = u64::from(*at) * spec.download_size() / 255 + 1;
                let (url, label) = (spec.url.clone(), t.label());
                self.note(format_args!(
                    "abort() {label} when {url} reaches byte {offset}"
                ));
                let shared = self.shared.clone();
                let epoch = lock(&self.shared).epoch;
                let executor = self.bed.executor.clone();
                let (network, at_url) = (self.bed.network.clone(), url.clone());
                // abort() is called (its message sent) when the engine receives that byte. The
                // engine runs it in a task of the service's; the transfer yields between
                // chunks, so it is answered during the transfer. Complete a record step 13:
                // once the abort all flag is set (before abort() resolves true) the record
                // takes no further bytes, so what the network had delivered of its URL when
                // the answer came bounds what it stores.
                self.bed
                    .network
                    .when_delivered(&url, offset, move |_reached| {
                        let reg = reg.clone();
                        let (network, url) = (network.clone(), at_url.clone());
                        let mut call = async move { reg.abort().await }.boxed();
                        let now = call.as_mut().now_or_never();
                        let shared = shared.clone();
                        executor.spawn(
                            async move {
                                let result = match now {
                                    Some(result) => result,
                                    None => call.await,
                                };
                                let bound = network.delivered(&url);
                                let mut shared = lock(&shared);
                                // An instance of an engine that crashed since settles nowhere.
                                if shared.epoch == epoch {
                                    shared.aborted_inside.push((
                                        i,
                                        r,
                                        bound,
                                        result.map_err(|e| e.to_string()),
                                    ));
                                } else {
                                    shared.violations.push(format!(
                                        "abort() from inside a transfer settled with {result:?} \
                                     after its engine crashed"
                                    ));
                                }
                            }
                            .boxed(),
                        );
                    });
            }
        }
    }

    /// `abort()` of fetch `i` resolved true: once only, and never after it settled.
    fn abort_resolved_true(&mut self, i: usize) {
        let t = &self.fetches[i];
        let label = t.label();
        if t.abort_returned_true {
            self.fail(format_args!("{label}: abort() resolved true twice"));
        }
        if let Some(s) = t.settled {
            self.fail(format_args!(
                "{label}: abort() resolved true after it settled with {s:?}"
            ));
        }
        self.fetches[i].abort_returned_true = true;
    }

    fn fetch(&mut self, op: &FetchOp) {
        let slot = self.slots;
        self.slots += 1;
        let id = usize::from(op.id) % IDS.len();
        let records: Vec<RecordSpec> = op
            .resources
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let chunk = op.chunk.map(|c| super::CHUNK_SIZES[usize::from(c)]);
                RecordSpec::new(slot, i, usize::from(r), chunk)
            })
            .collect();
        for r in &records {
            self.bed.network.serve(&r.url, r.resource(0));
        }
        let sum: u64 = records.iter().map(RecordSpec::download_size).sum();
        let download_total = match op.total {
            Total::Unlimited => 0,
            Total::Exact => sum,
            Total::OneShort => sum.saturating_sub(1),
            Total::Half => sum / 2,
            Total::Generous => sum + 1000,
            Total::OneByte => 1,
        };
        let upload_total: u64 = records.iter().map(RecordSpec::upload_size).sum();
        let title = op.title.then(|| format!("Fetch {slot}"));
        lock(&self.shared).plans.insert(slot, (op.ui, op.delay));
        let infos: Vec<RequestInfo> = records
            .iter()
            .map(|r| {
                if r.is_get() {
                    RequestInfo::from(r.url.as_str())
                } else {
                    let body = String::from_utf8(r.body.clone()).expect("an ASCII body");
                    RequestInfo::from(self.bed.request_with_body(&r.url, "POST", &body))
                }
            })
            .collect();
        let mut tracked = Tracked {
            slot,
            id,
            uid: FetchUid(0),
            reg: None,
            stale: None,
            faults: vec![Vec::new(); records.len()],
            changes: vec![Vec::new(); records.len()],
            records,
            download_total,
            upload_total,
            title: title.clone().unwrap_or_default(),
            abort_returned_true: false,
            user_aborted: false,
            restarted_unsettled: false,
            paused: false,
            awaiting_permission: op.prompt,
            aborted_inside: None,
            settled: None,
            interrupted_events: 0,
        };
        // Faults for the first attempt are queued before the fetch exists.
        let mut first = None;
        if let Some((record, faults)) = &op.first_faults {
            let r = usize::from(*record) % tracked.records.len();
            first = Some(self.resolve_faults(&tracked.records[r], faults));
            let queued = Queued {
                logged_before: 0,
                faults: first.clone().unwrap_or_default(),
            };
            self.bed
                .network
                .fault_next(&tracked.records[r].url, queued.faults.clone());
            tracked.faults[r].push(queued);
        }
        let m = self.bed.manager();
        let active_before = {
            let m = m.clone();
            self.bed.run(async move { m.get_ids().await })
        };
        let active_before = match active_before {
            Ok(ids) => ids.contains(&IDS[id].to_owned()),
            Err(e) => self.fail(format_args!("getIds() rejected: {e}")),
        };
        let options = BackgroundFetchOptions {
            title,
            download_total,
            ..Default::default()
        };
        if op.prompt {
            self.bed.permission.set(PermissionState::Prompt);
        }
        let r = self
            .bed
            .run(async move { m.fetch(IDS[id], infos, options).await });
        self.bed.permission.set(PermissionState::Granted);
        let names: Vec<&str> = tracked
            .records
            .iter()
            .map(|r| super::resources::RESOURCES[r.resource].name)
            .collect();
        match r {
            Ok(reg) => {
                tracked.uid = reg.uid();
                self.note(format_args!(
                    "fetch #{slot} id {:?} {names:?} downloadTotal {download_total} (sum {sum}) first faults {first:?} -> {}",
                    IDS[id], tracked.uid
                ));
                if active_before {
                    self.fail(format_args!(
                        "fetch() resolved with id {:?} already active",
                        IDS[id]
                    ));
                }
                if reg.id() != IDS[id]
                    || reg.download_total() != download_total
                    || reg.upload_total() != upload_total
                {
                    self.fail(format_args!(
                        "fetch #{slot}: the registration says id {:?}, downloadTotal {}, uploadTotal {}; expected {:?}, {download_total}, {upload_total}",
                        reg.id(),
                        reg.download_total(),
                        reg.upload_total(),
                        IDS[id]
                    ));
                }
                if self.fetches.iter().any(|t| t.uid == tracked.uid) {
                    self.fail(format_args!("fetch #{slot}: uid {} reused", tracked.uid));
                }
                self.watch(&tracked, &reg);
                tracked.reg = Some(reg);
                self.fetches.push(tracked);
            }
            Err(e) => {
                self.note(format_args!(
                    "fetch #{slot} id {:?} {names:?} -> {e}",
                    IDS[id]
                ));
                if !active_before || e.name() != "TypeError" {
                    self.fail(format_args!(
                        "fetch() rejected with {e} (id {:?} active before: {active_before})",
                        IDS[id]
                    ));
                }
            }
        }
    }

    fn resolve_faults(
        &self,
        record: &RecordSpec,
        faults: &[super::FaultSpec],
    ) -> Vec<background_fetch::testing::Fault> {
        faults
            .iter()
            .map(|f| oracle::resolve(*f, record.served_size()))
            .collect()
    }

    fn queue_faults(&mut self, i: usize, r: usize, faults: &[super::FaultSpec]) {
        let t = &self.fetches[i];
        let (label, url) = (t.label(), t.records[r].url.clone());
        if t.faults[r].len() >= MAX_FAULT_SETS_PER_RECORD {
            return self.note(format_args!("faults for {url}: the record had its share"));
        }
        let resolved = self.resolve_faults(&t.records[r], faults);
        let logged_before = self.bed.network.requests_for(&url).len();
        self.bed.network.fault_next(&url, resolved.clone());
        self.note(format_args!(
            "faults for {label} record {r} after {logged_before} attempts: {resolved:?}"
        ));
        self.fetches[i].faults[r].push(Queued {
            logged_before,
            faults: resolved,
        });
    }

    fn change(&mut self, i: usize, r: usize) {
        let t = &self.fetches[i];
        let (label, spec) = (t.label(), &t.records[r]);
        if !spec.can_change() || t.changes[r].len() >= MAX_FAULT_SETS_PER_RECORD {
            return self.note(format_args!(
                "change {label} record {r}: not this record, or not again"
            ));
        }
        let version = t.changes[r].len() as u32 + 1;
        let logged_before = self.bed.network.requests_for(&spec.url).len();
        self.bed.network.serve(&spec.url, spec.resource(version));
        self.note(format_args!(
            "change {label} record {r} to version {version} after {logged_before} attempts"
        ));
        self.fetches[i].changes[r].push(Changed {
            logged_before,
            version,
        });
    }

    fn match_records(&mut self, i: usize, record: usize) {
        let t = &self.fetches[i];
        let label = t.label();
        let Some(reg) = t.reg.clone() else {
            return self.note(format_args!("match {label}: no live instance"));
        };
        let (uid, n) = (t.uid, t.records.len());
        let spec = &t.records[record % n];
        let (url, is_get, index) = (spec.url.clone(), spec.is_get(), record % n);
        let available = reg.records_available();
        let (all, one) = {
            let url = url.clone();
            self.bed.run(async move {
                // Both calls check recordsAvailable now, before anything else runs (a binding
                // polls each call at once).
                let all = started(reg.match_all(None, Default::default()).boxed()).await;
                let one = started(reg.r#match(url.as_str(), Default::default()).boxed()).await;
                let all = match finished(all).await {
                    Ok(records) => Ok((
                        records.len(),
                        read_records(&records, "matchAll()", uid).await,
                    )),
                    Err(e) => Err(e),
                };
                let one = finished(one)
                    .await
                    .map(|r| r.map(|r| (r.index(), r.request().url.to_string())));
                (all, one)
            })
        };
        self.note(format_args!(
            "match {label} (records available: {available}) -> matchAll() {:?}, match({url}) {one:?}",
            all.as_ref().map(|(n, reads)| (n, reads.len()))
        ));
        match (available, all, one) {
            (true, Ok((len, reads)), Ok(one)) => {
                if len != n {
                    self.fail(format_args!("{label}: matchAll() gave {len} of {n} records"));
                }
                match one {
                    Some((got, got_url)) if got == index && got_url == url => {}
                    None if !is_get => {}
                    other => self.fail(format_args!(
                        "{label}: match({url}) gave {other:?}, not record {index}"
                    )),
                }
                lock(&self.shared).reads.extend(reads);
            }
            (false, Err(a), Err(b))
                if a.name() == "InvalidStateError" && b.name() == "InvalidStateError" => {}
            (available, all, one) => self.fail(format_args!(
                "{label}: with records available {available}, matchAll() gave {:?} and match() {one:?}",
                all.map(|(n, _)| n)
            )),
        }
    }

    fn late_update_ui(&mut self, i: usize) {
        let uid = self.fetches[i].uid;
        let label = self.fetches[i].label();
        let (event, expect_ok) = {
            let mut s = lock(&self.shared);
            let epoch = s.epoch;
            let Some(k) = s.kept.iter_mut().rev().find(|k| k.uid == uid) else {
                drop(s);
                return self.note(format_args!("late updateUI {label}: no event kept"));
            };
            // Only once, only while the event is active, only in the process that fired it.
            let ok = !k.called && k.event.is_active() && k.epoch == epoch;
            k.called = true;
            if k.epoch != epoch {
                // The service worker global of a crashed engine: its call settles nowhere.
                let event = k.event.clone();
                drop(s);
                self.note(format_args!(
                    "late updateUI {label}: an event of a crashed engine"
                ));
                self.settles_nowhere(format!("{label}: updateUI()"), async move {
                    event.update_ui(Default::default()).await
                });
                return;
            }
            (k.event.clone(), ok)
        };
        let title = format!("Late title for fetch #{}", self.fetches[i].slot);
        let r = {
            let title = title.clone();
            self.bed.run(async move {
                event
                    .update_ui(BackgroundFetchUiOptions {
                        title: Some(title),
                        icons: None,
                    })
                    .await
            })
        };
        self.note(format_args!(
            "late updateUI {label} (may resolve: {expect_ok}) -> {r:?}"
        ));
        match (expect_ok, r) {
            (true, Ok(())) => {
                match self.bed.ui.last(uid) {
                    Some(s) if s.title == title => {}
                    other => self.fail(format_args!(
                        "{label}: updateUI({title:?}) resolved but the UI shows {:?}",
                        other.map(|s| s.title)
                    )),
                }
                lock(&self.shared).titles.insert(uid, title);
            }
            (false, Err(e)) if e.name() == "InvalidStateError" => {}
            (expect_ok, r) => self.fail(format_args!(
                "{label}: updateUI() on a kept event gave {r:?}; expected {}",
                if expect_ok {
                    "to resolve"
                } else {
                    "an InvalidStateError"
                }
            )),
        }
    }

    /// Per fetch: (settle events dispatched, settle events finished).
    fn settle_counts(&self) -> HashMap<FetchUid, (usize, usize)> {
        let mut m: HashMap<FetchUid, (usize, usize)> = HashMap::new();
        for e in self.bed.worker.events() {
            if e.kind() != Kind_::Click {
                m.entry(e.registration().uid()).or_default().0 += 1;
            }
        }
        for (kind, uid) in self.bed.worker.finished() {
            if kind != Kind_::Click {
                m.entry(uid).or_default().1 += 1;
            }
        }
        m
    }

    fn restart(&mut self) {
        let counts = self.settle_counts();
        for t in &mut self.fetches {
            let (dispatched, finished) = counts.get(&t.uid).copied().unwrap_or_default();
            if dispatched.saturating_sub(finished) > t.interrupted_events {
                t.interrupted_events += 1;
            }
            if t.settled.is_none() {
                t.restarted_unsettled = true;
            }
        }
        lock(&self.shared).epoch += 1;
        for t in &mut self.fetches {
            if let Some(reg) = t.reg.take() {
                t.stale = Some(reg);
            }
        }
        self.bed.restart();
        self.bed.engine().set_online(self.online);
        self.note("restart");
        let m = self.bed.manager();
        let counts = self.settle_counts();
        for i in 0..self.fetches.len() {
            let t = &self.fetches[i];
            if t.settled.is_some() {
                // The old instance keeps its last values; nothing updates it any more.
                continue;
            }
            let (label, uid, id) = (t.label(), t.uid, IDS[t.id]);
            let got = {
                let m = m.clone();
                self.bed.run(async move { m.get(id).await })
            };
            match got {
                // abort() resolved true before the crash: it is not active again, it only
                // settles (as "aborted").
                Ok(Some(reg)) if reg.uid() == uid && self.fetches[i].abort_returned_true => self
                    .fail(format_args!(
                        "{label} is active again after the restart although abort() resolved \
                         true: {reg:?}"
                    )),
                Ok(_) if self.fetches[i].abort_returned_true => {
                    self.note(format_args!("{label} came back aborted, not active"));
                }
                Ok(Some(reg)) if reg.uid() == uid => {
                    self.note(format_args!("{label} came back: {reg:?}"));
                    self.watch(&self.fetches[i], &reg);
                    self.check_restored(i, &reg);
                    self.fetches[i].reg = Some(reg);
                }
                // Restored settled (its event fires again), or it finished while the new
                // engine started or while get() ran (its event waits for the worker host to
                // know the new engine).
                Ok(None)
                    if counts.get(&uid).is_some_and(|c| c.0 > 0)
                        || self.settle_counts().get(&uid).is_some_and(|c| c.0 > 0) =>
                {
                    self.note(format_args!("{label} came back settled"));
                }
                other => self.fail(format_args!(
                    "{label} did not come back after the restart: get({id:?}) gave {other:?}"
                )),
            }
        }
    }

    /// A fetch restored after a restart: its paused flag and title were kept, and every
    /// completed record still reads back its bytes.
    fn check_restored(&mut self, i: usize, reg: &BackgroundFetchRegistration) {
        let t = &self.fetches[i];
        let (label, uid) = (t.label(), t.uid);
        let title = lock(&self.shared)
            .titles
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| t.title.clone());
        let paused = t.paused || t.awaiting_permission;
        match self.bed.ui.last(uid) {
            Some(s)
                if s.paused == paused
                    && s.awaiting_permission == t.awaiting_permission
                    && s.title == title => {}
            other => self.fail(format_args!(
                "{label}: restored with the UI showing {:?}; expected paused {paused}, awaiting \
                 permission {} and title {title:?}",
                other.map(|s| (s.paused, s.awaiting_permission, s.title)),
                t.awaiting_permission
            )),
        }
        let reg = reg.clone();
        let reads = self.bed.run(async move {
            match reg.match_all(None, Default::default()).await {
                Ok(records) => Ok(read_records(&records, "after a restart", uid).await),
                Err(e) => Err(e),
            }
        });
        match reads {
            Ok(reads) => lock(&self.shared).reads.extend(reads),
            Err(e) => self.fail(format_args!(
                "{label}: matchAll() after the restart rejected: {e}"
            )),
        }
    }

    // ----- invariants -----

    fn check(&mut self) {
        let inside = std::mem::take(&mut lock(&self.shared).aborted_inside);
        for (i, record, bound, r) in inside {
            let label = self.fetches[i].label();
            self.note(format_args!(
                "abort() {label} from inside the transfer of record {record} -> {r:?}"
            ));
            match r {
                Ok(true) => {
                    self.abort_resolved_true(i);
                    self.fetches[i].aborted_inside = Some((record, bound));
                }
                Ok(false) => {}
                Err(e) => self.fail(format_args!("{label}: abort() rejected: {e}")),
            }
        }
        let log = self.bed.network.log();
        for t in self.fetches.iter().filter(|t| t.awaiting_permission) {
            if let Some(r) = log.iter().find(|r| r.fetch == t.uid) {
                self.fail(format_args!(
                    "{}: {} {} was fetched while the fetch waits on the permission prompt",
                    t.label(),
                    r.method,
                    r.url
                ));
            }
        }
        let violations = std::mem::take(&mut lock(&self.shared).violations);
        if let Some(v) = violations.first() {
            self.fail(format_args!(
                "{v}{}",
                if violations.len() > 1 {
                    format!(" (and {} more)", violations.len() - 1)
                } else {
                    String::new()
                }
            ));
        }
        self.check_events();
        self.check_reads();
        self.check_instances();
        self.check_ui();
        self.check_counts();
        self.check_active();
    }

    /// `getIds()` lists exactly the fetches that have not settled and were not aborted.
    fn check_active(&mut self) {
        let m = self.bed.manager();
        let ids = match self.bed.run(async move { m.get_ids().await }) {
            Ok(ids) => ids,
            Err(e) => self.fail(format_args!("getIds() rejected: {e}")),
        };
        let mut expected: Vec<&str> = self
            .fetches
            .iter()
            .filter(|t| t.settled.is_none() && !t.abort_returned_true)
            .map(|t| IDS[t.id])
            .collect();
        let mut got: Vec<&str> = ids.iter().map(String::as_str).collect();
        expected.sort_unstable();
        got.sort_unstable();
        if got != expected {
            self.fail(format_args!(
                "getIds() gives {ids:?}; the fetches not settled nor aborted are {expected:?}"
            ));
        }
    }

    fn saw_settled(&mut self, i: usize, s: Settled, how: &str) {
        let t = &mut self.fetches[i];
        match t.settled {
            None => t.settled = Some(s),
            Some(before) if before != s => {
                let label = t.label();
                self.fail(format_args!(
                    "{label}: {how} shows {s:?}, but it had settled with {before:?}"
                ))
            }
            Some(_) => {}
        }
    }

    fn check_events(&mut self) {
        let events: Vec<EventSeen> = lock(&self.shared).events[self.events_seen..].to_vec();
        self.events_seen += events.len();
        for e in events {
            let Some(i) = self.fetches.iter().position(|t| t.uid == e.uid) else {
                self.fail(format_args!(
                    "an event for a fetch fetch() never resolved: {e:?}"
                ));
            };
            let label = self.fetches[i].label();
            self.note(format_args!(
                "{} for {label}: {:?}/{:?}, downloaded {}, uploaded {}, records {:?}",
                e.kind.event_type(),
                e.result,
                e.reason,
                e.downloaded,
                e.uploaded,
                e.records
            ));
            let settled = (e.result, e.reason);
            if e.kind == Kind_::Click {
                if e.result != Outcome::Empty {
                    self.saw_settled(i, settled, "a click event's registration");
                }
                continue;
            }
            if e.result == Outcome::Empty || !consistent(e.kind, settled) {
                self.fail(format_args!(
                    "{label}: {} with result {:?} and failure reason {:?}",
                    e.kind.event_type(),
                    e.result,
                    e.reason
                ));
            }
            self.saw_settled(i, settled, e.kind.event_type());
            let t = &self.fetches[i];
            if !e.records_available {
                self.fail(format_args!(
                    "{label}: recordsAvailable is false in {}",
                    e.kind.event_type()
                ));
            }
            let records = match &e.records {
                Ok(r) if r.len() == t.records.len() => r,
                other => self.fail(format_args!(
                    "{label}: matchAll() in {} gave {other:?} for {} records",
                    e.kind.event_type(),
                    t.records.len()
                )),
            };
            // Each record ends as the model allows, and the failure reason comes from them.
            let effects = self.effects(t);
            for &(index, stored, result) in records {
                let (spec, eff) = (&t.records[index], &effects[index]);
                let mut allowed =
                    oracle::possible_results(spec, eff, t.user_aborted, t.restarted_unsettled);
                // downloadTotal crossed: the record that crossed it, and the others cancelled
                // (the event does not wait for them); also when abort() resolved true at the
                // same time and settle step 8.4 made the reason "aborted".
                let exceedable = t.download_total > 0 && t.most_bytes() > t.download_total;
                if e.reason == Reason::DownloadTotalExceeded
                    || (t.abort_returned_true && exceedable)
                {
                    for r in [
                        RecordResult::DownloadTotalExceeded,
                        RecordResult::Aborted,
                        RecordResult::Empty,
                    ] {
                        oracle::insert(&mut allowed, r);
                    }
                }
                if t.abort_returned_true {
                    oracle::insert(&mut allowed, RecordResult::Aborted);
                }
                // Complete a record step 13: the transfer stops within the chunk in hand.
                if let Some((r, bound)) = t.aborted_inside
                    && r == index
                    && stored > bound
                {
                    self.fail(format_args!(
                        "{label}: record {index} stored {stored} bytes; abort() from inside its \
                         transfer allows at most {bound}"
                    ));
                }
                if !allowed.contains(&result) || stored > oracle::max_stored(spec, eff) {
                    self.fail(format_args!(
                        "{label}: in {}, record {index} ({}) is {result:?} with {stored} bytes stored; the model allows {allowed:?} and at most {} bytes (fault effects {eff:?})",
                        e.kind.event_type(),
                        spec.url,
                        oracle::max_stored(spec, eff)
                    ));
                }
            }
            let from_records = match e.reason {
                Reason::Empty => records.iter().all(|r| r.2 == RecordResult::Success),
                Reason::Aborted => {
                    t.abort_returned_true || records.iter().any(|r| r.2 == RecordResult::Aborted)
                }
                reason => records.iter().any(|r| r.2.failure_reason() == Some(reason)),
            };
            if !from_records {
                self.fail(format_args!(
                    "{label}: {} with failure reason {:?}, but its records are {records:?}",
                    e.kind.event_type(),
                    e.reason
                ));
            }
            let stored: u64 = records.iter().map(|r| r.1).sum();
            if e.downloaded != stored {
                self.fail(format_args!(
                    "{label}: downloaded is {} in {}, but its records hold {stored} bytes",
                    e.downloaded,
                    e.kind.event_type()
                ));
            }
            if t.download_total > 0 && e.downloaded > t.download_total {
                self.fail(format_args!(
                    "{label}: downloaded {} > downloadTotal {} in {}",
                    e.downloaded,
                    t.download_total,
                    e.kind.event_type()
                ));
            }
            if e.kind == Kind_::Success {
                if let Some(r) = records.iter().find(|r| r.2 != RecordResult::Success) {
                    self.fail(format_args!(
                        "{label}: backgroundfetchsuccess with record {} {:?}",
                        r.0, r.2
                    ));
                }
                let sum: u64 = t.records.iter().map(RecordSpec::download_size).sum();
                if effects.iter().all(|e| !e.lying) && e.downloaded != sum {
                    self.fail(format_args!(
                        "{label}: backgroundfetchsuccess with downloaded {}, but the resources hold {sum} bytes",
                        e.downloaded
                    ));
                }
                let uploads_clean = t
                    .records
                    .iter()
                    .zip(&effects)
                    .all(|(r, e)| r.is_get() || !e.any);
                if uploads_clean && e.uploaded != t.upload_total {
                    self.fail(format_args!(
                        "{label}: backgroundfetchsuccess with uploaded {} of uploadTotal {}",
                        e.uploaded, t.upload_total
                    ));
                }
            }
        }
    }

    fn check_reads(&mut self) {
        let reads: Vec<ReadSeen> = lock(&self.shared).reads[self.reads_seen..].to_vec();
        self.reads_seen += reads.len();
        for r in reads {
            let Some(t) = self.by_uid(r.uid) else {
                self.fail(format_args!("a read of an unknown fetch: {r:?}"));
            };
            let label = t.label();
            let Some(spec) = t.records.get(r.index) else {
                self.fail(format_args!(
                    "{label}: a read of record {} of {}",
                    r.index,
                    t.records.len()
                ));
            };
            if r.url != spec.url {
                self.fail(format_args!(
                    "{label}: record {} has URL {}, not {}",
                    r.index, r.url, spec.url
                ));
            }
            let effects = self.record_effects(t, r.index);
            let lying = effects.lying;
            let what = format!(
                "{label} record {} ({}) read {}",
                r.index, spec.url, r.source
            );
            match (r.result, &r.response) {
                (RecordResult::Success, Ok(resp)) => {
                    let body = match &resp.body {
                        Ok(b) => b,
                        Err(e) => self.fail(format_args!("{what}: its body errored: {e}")),
                    };
                    if !(200..300).contains(&resp.status)
                        || resp.url != spec.url
                        || resp.range_headers
                    {
                        self.fail(format_args!(
                            "{what}: success with status {}, URL {}, Content-Range/Length exposed: {}",
                            resp.status, resp.url, resp.range_headers
                        ));
                    }
                    if body.len() as u64 != r.stored {
                        self.fail(format_args!(
                            "{what}: {} bytes read, {} stored",
                            body.len(),
                            r.stored
                        ));
                    }
                    if !lying {
                        if matches!(spec.kind(), Kind::NotFound) {
                            self.fail(format_args!("{what}: a 404 record succeeded"));
                        }
                        let versions: Vec<Vec<u8>> = if spec.can_change() {
                            effects.versions.iter().map(|v| spec.body_of(*v)).collect()
                        } else {
                            vec![spec.body.clone()]
                        };
                        if !versions.contains(body) {
                            let expected = &versions[versions.len() - 1];
                            let at = body
                                .iter()
                                .zip(expected)
                                .position(|(a, b)| a != b)
                                .unwrap_or(body.len().min(expected.len()));
                            self.fail(format_args!(
                                "{what}: its {} bytes are not the resource's {} (of version {:?}; first difference from the last at byte {at})",
                                body.len(),
                                expected.len(),
                                effects.versions
                            ));
                        }
                    }
                }
                (RecordResult::BadStatus, Ok(resp)) => {
                    if (200..300).contains(&resp.status)
                        || !matches!(&resp.body, Ok(b) if b.is_empty())
                        || r.stored != 0
                    {
                        self.fail(format_args!(
                            "{what}: bad-status with status {}, body {:?}, {} bytes stored",
                            resp.status,
                            resp.body.as_ref().map(Vec::len),
                            r.stored
                        ));
                    }
                }
                (RecordResult::Aborted, Err("AbortError")) => {}
                (
                    RecordResult::FetchError
                    | RecordResult::DownloadTotalExceeded
                    | RecordResult::QuotaExceeded,
                    Err("TypeError"),
                ) => {}
                (result, response) => self.fail(format_args!(
                    "{what}: result {result:?} and responseReady gave {:?}",
                    response.as_ref().map(|r| r.status)
                )),
            }
        }
    }

    fn check_instances(&mut self) {
        for i in 0..self.fetches.len() {
            let t = &self.fetches[i];
            let Some(reg) = &t.reg else { continue };
            let label = t.label();
            let now = (reg.result(), reg.failure_reason());
            let (downloaded, uploaded) = (reg.downloaded(), reg.uploaded());
            if t.download_total > 0 && downloaded > t.download_total {
                self.fail(format_args!(
                    "{label}: downloaded {downloaded} > downloadTotal {}",
                    t.download_total
                ));
            }
            if downloaded > t.most_bytes() {
                self.fail(format_args!(
                    "{label}: downloaded {downloaded}, more than its records can hold ({})",
                    t.most_bytes()
                ));
            }
            let most_up = self.most_uploaded(t);
            if uploaded > most_up.max(t.upload_total) {
                self.fail(format_args!(
                    "{label}: uploaded {uploaded} of uploadTotal {}",
                    t.upload_total
                ));
            }
            match (now.0, t.settled) {
                (Outcome::Empty, Some(s)) => self.fail(format_args!(
                    "{label}: the page's instance shows no result, but it settled with {s:?}"
                )),
                (Outcome::Empty, None) => {}
                _ => self.saw_settled(i, now, "the page's instance"),
            }
        }
    }

    fn check_ui(&mut self) {
        let calls = self.bed.ui.calls();
        let new = &calls[self.ui_seen.min(calls.len())..];
        self.ui_seen = calls.len();
        for call in new {
            let (UiCall::Show(s) | UiCall::Update(s)) = call else {
                continue;
            };
            let Some(i) = self.fetches.iter().position(|t| t.uid == s.uid) else {
                continue;
            };
            let t = &self.fetches[i];
            let label = t.label();
            if s.download_total != t.download_total || s.id != IDS[t.id] {
                self.fail(format_args!("{label}: the UI shows {s:?}"));
            }
            if (t.download_total > 0 && s.downloaded > t.download_total)
                || s.downloaded > t.most_bytes()
            {
                self.fail(format_args!(
                    "{label}: the UI shows downloaded {} (downloadTotal {}, records hold at most {})",
                    s.downloaded,
                    t.download_total,
                    t.most_bytes()
                ));
            }
            if s.uploaded > self.most_uploaded(t).max(t.upload_total) {
                self.fail(format_args!(
                    "{label}: the UI shows uploaded {} of {}",
                    s.uploaded, t.upload_total
                ));
            }
            let now = (s.result, s.failure_reason);
            match self.ui_settled.get(&s.uid) {
                Some(before) if s.result == Outcome::Empty || *before != now => self.fail(
                    format_args!("{label}: the UI shows {now:?} after {before:?}"),
                ),
                Some(_) => {}
                None if s.result != Outcome::Empty => {
                    self.ui_settled.insert(s.uid, now);
                    self.saw_settled(i, now, "the UI");
                }
                None => {}
            }
        }
    }

    fn check_counts(&mut self) {
        let counts = self.settle_counts();
        let events = self.bed.worker.events();
        for t in &self.fetches {
            let (dispatched, finished) = counts.get(&t.uid).copied().unwrap_or_default();
            let kinds: Vec<Kind_> = events
                .iter()
                .filter(|e| e.registration().uid() == t.uid && e.kind() != Kind_::Click)
                .map(background_fetch::FunctionalEvent::kind)
                .collect();
            if finished > 1
                || dispatched > 1 + t.interrupted_events
                || kinds.windows(2).any(|w| w[0] != w[1])
            {
                self.fail(format_args!(
                    "{}: {dispatched} settle events dispatched ({kinds:?}), {finished} finished, {} interrupted by restarts",
                    t.label(),
                    t.interrupted_events
                ));
            }
        }
    }

    // ----- teardown -----

    fn teardown(&mut self) {
        self.note("teardown: online, holds released, everything resumed, run until idle");
        self.bed.set_online(true);
        self.online = true;
        for t in &self.fetches {
            for r in &t.records {
                self.bed.network.release(&r.url);
            }
        }
        for i in 0..self.fetches.len() {
            let (uid, engine) = (self.fetches[i].uid, self.bed.engine());
            if done(&self.bed.run(async move { engine.resume(uid).await })) {
                if std::mem::take(&mut self.fetches[i].awaiting_permission) {
                    // Resuming answers the prompt.
                } else if !self.fetches[i].paused {
                    let label = self.fetches[i].label();
                    self.fail(format_args!("{label}: resumed though it was not paused"));
                }
                self.fetches[i].paused = false;
            }
        }
        self.bed.run_until_idle();
        self.check();

        // Every kept event is over now (those of a crashed engine's service worker global settle
        // nowhere: see late_update_ui).
        let kept: Vec<(FetchUid, FunctionalEvent)> = {
            let s = lock(&self.shared);
            s.kept
                .iter()
                .filter(|k| k.epoch == s.epoch)
                .map(|k| (k.uid, k.event.clone()))
                .collect()
        };
        for (uid, event) in kept {
            let r = self
                .bed
                .run(async move { event.update_ui(Default::default()).await });
            if !matches!(&r, Err(e) if e.name() == "InvalidStateError") {
                self.fail(format_args!(
                    "{uid}: updateUI() on a finished event gave {r:?}"
                ));
            }
        }

        let counts = self.settle_counts();
        for i in 0..self.fetches.len() {
            let t = &self.fetches[i];
            let label = t.label();
            let (dispatched, finished) = counts.get(&t.uid).copied().unwrap_or_default();
            if finished != 1 {
                self.fail(format_args!(
                    "{label}: {finished} settle events finished ({dispatched} dispatched), not 1"
                ));
            }
            let Some(settled) = t.settled else {
                self.fail(format_args!("{label}: never showed a result"));
            };
            let effects = self.effects(t);
            let records: Vec<(RecordSpec, Effects)> =
                t.records.iter().cloned().zip(effects).collect();
            let expected = oracle::expected_reason(
                &records,
                t.download_total,
                t.abort_returned_true,
                t.user_aborted,
                t.restarted_unsettled,
            );
            if !expected.allows(settled.1) {
                let effects: Vec<&Effects> = records.iter().map(|r| &r.1).collect();
                self.fail(format_args!(
                    "{label}: settled with {settled:?}; the model expects {expected:?} (downloadTotal {}, abort() true {}, user abort {}, restarted unsettled {}, fault effects {effects:?})",
                    t.download_total,
                    t.abort_returned_true,
                    t.user_aborted,
                    t.restarted_unsettled
                ));
            }
            if let Some(reg) = t.reg.clone() {
                let r = self.bed.run(async move {
                    reg.match_all(None, Default::default())
                        .await
                        .map(|v| v.len())
                });
                let reg = t.reg.as_ref().expect("checked above");
                if reg.result() == Outcome::Empty
                    || reg.records_available()
                    || !matches!(&r, Err(e) if e.name() == "InvalidStateError")
                {
                    self.fail(format_args!(
                        "{label}: after its event the page's instance shows {reg:?} and matchAll() gives {r:?}"
                    ));
                }
            }
            let title = lock(&self.shared)
                .titles
                .get(&t.uid)
                .cloned()
                .unwrap_or_else(|| t.title.clone());
            match self.bed.ui.last(t.uid) {
                Some(s) if (s.result, s.failure_reason) == settled && s.title == title => {}
                other => self.fail(format_args!(
                    "{label}: the UI ends with {:?}; expected {settled:?} and title {title:?}",
                    other.map(|s| (s.result, s.failure_reason, s.title))
                )),
            }
            if matches!(expected, Expectation::Exact(_)) {
                self.note(format_args!("{label}: {settled:?} as the model predicts"));
            } else {
                self.note(format_args!("{label}: {settled:?}, one of {expected:?}"));
            }
        }
        let active: Vec<_> = self
            .bed
            .engine()
            .fetches()
            .into_iter()
            .filter(|f| f.active)
            .collect();
        if !active.is_empty() {
            self.fail(format_args!("still active at the end: {active:?}"));
        }
        let m = self.bed.manager();
        let ids = self.bed.run(async move { m.get_ids().await });
        if !matches!(&ids, Ok(ids) if ids.is_empty()) {
            self.fail(format_args!("getIds() at the end gives {ids:?}"));
        }
        if self.bed.store.fetch_count() != 0 {
            self.fail(format_args!(
                "the store still holds {} fetches at the end",
                self.bed.store.fetch_count()
            ));
        }
        if self.bed.network.in_flight() != 0 {
            self.fail(format_args!(
                "{} requests still in flight at the end",
                self.bed.network.in_flight()
            ));
        }
        self.probe_quota();
    }

    /// Nothing holds quota any more: a fetch reserving all of it is accepted, and succeeds.
    fn probe_quota(&mut self) {
        const URL: &str = "https://example.com/quota-probe.txt";
        self.bed
            .network
            .serve(URL, background_fetch::testing::Resource::ok(&b"probe"[..]));
        let m = self.bed.manager();
        let r = self.bed.run(async move {
            m.fetch(
                "quota-probe",
                URL,
                BackgroundFetchOptions {
                    download_total: TEST_BED_QUOTA,
                    ..Default::default()
                },
            )
            .await
        });
        let reg = match r {
            Ok(reg) => reg,
            Err(e) => self.fail(format_args!(
                "quota leaked: a fetch reserving the whole quota ({TEST_BED_QUOTA} bytes) was refused at the end: {e}"
            )),
        };
        self.bed.run_until_idle();
        if reg.result() != Outcome::Success || self.bed.store.fetch_count() != 0 {
            self.fail(format_args!(
                "the quota probe ended {reg:?} with {} fetches stored",
                self.bed.store.fetch_count()
            ));
        }
    }
}

/// Whether an embedder's operation changed the fetch (in this process: a change the store
/// refused holds until a restart, which the harness's model does not expect).
fn done(result: &Result<(), OperationError>) -> bool {
    matches!(result, Ok(()) | Err(OperationError::NotDurable(_)))
}
