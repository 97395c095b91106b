//! Model-based test: random sequences of fetch (granted, or waiting on the permission prompt) /
//! abort / user abort / permission answers / pause / resume / offline / network faults / an
//! always-ready network with aborts from inside a transfer / time / match / click / restart /
//! abort then crash, checked against a reference model.
//!
//! Invariants checked after every step: a registration's result is set once and never changes;
//! each fetch gets at most one of success / fail / abort (counted when the event finished);
//! `downloaded` never exceeds a non-zero `downloadTotal`; every record a service worker reads
//! in a settle event has exactly the bytes the server sent; `abort()` returns true at most once
//! per fetch; nothing is fetched for a fetch waiting on the permission prompt, across restarts
//! too; a fetch whose `abort()` resolved true is not active again after a crash. At the end
//! (online, everything resumed, time run out), every fetch settled with exactly one event, and
//! the failure reason is the one the model predicts.

use background_fetch::service::client::{BackgroundFetchManager, BackgroundFetchRegistration};
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchOptions,
    BackgroundFetchResult as Outcome, DispatchOutcome, FetchUid, FunctionalEventKind as Kind,
    PermissionState, RecordResult, RequestInfo,
};
use futures::FutureExt;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IDS: [&str; 3] = ["a", "b", "c"];

/// The server's resources: (url, status, size, chunk, chunk delay ms, range support).
const RESOURCES: [(&str, u16, usize, usize, u64, bool); 4] = [
    ("https://example.com/feature.txt", 200, 16, 16, 0, true),
    (
        "https://example.com/episode.mp3",
        200,
        20_000,
        3000,
        100,
        true,
    ),
    ("https://example.com/missing.txt", 404, 0, 1, 0, true),
    (
        "https://example.com/norange.bin",
        200,
        50_000,
        7000,
        50,
        false,
    ),
];

fn resource_body(i: usize) -> Vec<u8> {
    (0..RESOURCES[i].2)
        .map(|n| (n as u8).wrapping_mul(17).wrapping_add(i as u8))
        .collect()
}

#[derive(Clone, Debug)]
enum Step {
    Fetch {
        id: usize,
        resources: Vec<usize>,
        download_total: u64,
        /// The permission is "prompt": the fetch starts paused until the user answers.
        prompt: bool,
    },
    /// The user answers the permission prompt.
    Answer {
        id: usize,
        accept: bool,
    },
    Abort(usize),
    /// `abort()` resolves, and the process crashes before any other task runs.
    AbortThenCrash(usize),
    /// The network becomes always ready (or not): every chunk is there before it is asked for.
    AlwaysReady(bool),
    /// `abort()` is called from inside the transfer, when the engine receives byte `at` of
    /// `resource` (whichever fetch with `id` is active then).
    AbortAt {
        id: usize,
        resource: usize,
        at: u64,
    },
    UserAbort(usize),
    Pause(usize),
    Resume(usize),
    Online(bool),
    Reset {
        resource: usize,
        after: u64,
    },
    Advance(u64),
    Match(usize),
    Click(usize),
    Restart,
}

#[derive(Clone, Debug, Default)]
struct Model {
    /// Network faults still allowed per resource (so every fetch can finish).
    faults_left: [u8; 4],
    steps: usize,
}

struct ModelMachine;

impl ReferenceStateMachine for ModelMachine {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            faults_left: [3; 4],
            steps: 0,
        })
        .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Step> {
        prop_oneof![
            4 => (0..3usize, proptest::collection::vec(0..4usize, 1..4), prop_oneof![Just(0u64), Just(16), Just(20_000), Just(20_016), Just(60_000), 1..80_000u64], prop::bool::weighted(0.2))
                .prop_map(|(id, resources, download_total, prompt)| Step::Fetch { id, resources, download_total, prompt }),
            1 => (0..3usize, any::<bool>()).prop_map(|(id, accept)| Step::Answer { id, accept }),
            1 => (0..3usize).prop_map(Step::Abort),
            1 => (0..3usize).prop_map(Step::AbortThenCrash),
            1 => any::<bool>().prop_map(Step::AlwaysReady),
            1 => (0..3usize, 0..4usize, 1..60_000u64).prop_map(|(id, resource, at)| Step::AbortAt { id, resource, at }),
            1 => (0..3usize).prop_map(Step::UserAbort),
            1 => (0..3usize).prop_map(Step::Pause),
            2 => (0..3usize).prop_map(Step::Resume),
            1 => any::<bool>().prop_map(Step::Online),
            2 => (0..4usize, 0..60_000u64).prop_map(|(resource, after)| Step::Reset { resource, after }),
            3 => (1..3000u64).prop_map(Step::Advance),
            1 => (0..3usize).prop_map(Step::Match),
            1 => (0..3usize).prop_map(Step::Click),
            1 => Just(Step::Restart),
        ]
        .boxed()
    }

    fn preconditions(state: &Model, step: &Step) -> bool {
        match step {
            Step::Reset { resource, .. } => state.faults_left[*resource] > 0,
            _ => true,
        }
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        if let Step::Reset { resource, .. } = step {
            state.faults_left[*resource] -= 1;
        }
        state.steps += 1;
        state
    }
}

/// A fetch that `fetch()` resolved.
struct Tracked {
    id: usize,
    uid: FetchUid,
    reg: BackgroundFetchRegistration,
    resources: Vec<usize>,
    download_total: u64,
    abort_returned_true: bool,
    user_aborted_while_active: bool,
    /// Waiting on the permission prompt: nothing of it may be fetched.
    awaiting_permission: bool,
    /// The user refused the prompt.
    refused: bool,
    last_result: std::cell::Cell<Outcome>,
    /// Its objects belong to an engine that restarted (a page would be gone too).
    stale: bool,
}

struct Sut {
    bed: TestBed,
    tracked: Vec<Tracked>,
    violations: Arc<Mutex<Vec<String>>>,
    /// The page's manager now (replaced at each restart), for aborts from inside a transfer:
    /// the network's action starts a task of the page's that calls get() and abort() through
    /// the protocol while the transfer goes on.
    manager: Arc<Mutex<BackgroundFetchManager>>,
    /// What `abort()` called from inside a transfer resolved, per fetch.
    aborted_inside: Arc<Mutex<Vec<(FetchUid, bool)>>>,
}

fn expected_reason(t: &Tracked) -> Option<Reason> {
    if t.abort_returned_true || t.refused {
        return Some(Reason::Aborted);
    }
    if t.user_aborted_while_active {
        return None; // depends on which records had finished
    }
    let total: u64 = t
        .resources
        .iter()
        .map(|&r| {
            if RESOURCES[r].1 == 200 {
                RESOURCES[r].2 as u64
            } else {
                0
            }
        })
        .sum();
    Some(if t.download_total > 0 && total > t.download_total {
        Reason::DownloadTotalExceeded
    } else if t.resources.iter().any(|&r| RESOURCES[r].1 != 200) {
        Reason::BadStatus
    } else {
        Reason::Empty
    })
}

fn install_worker(bed: &TestBed, violations: Arc<Mutex<Vec<String>>>) {
    bed.worker.set_handler(move |e| {
        let violations = violations.clone();
        async move {
            let reg = e.registration().clone();
            let consistent = match e.kind() {
                Kind::Success => reg.result() == Outcome::Success,
                Kind::Fail => {
                    reg.result() == Outcome::Failure
                        && !matches!(reg.failure_reason(), Reason::Aborted | Reason::Empty)
                }
                Kind::Abort => reg.failure_reason() == Reason::Aborted,
                Kind::Click => true,
            };
            if !consistent {
                violations.lock().unwrap().push(format!(
                    "{} with result {:?}/{:?}",
                    e.event_type(),
                    reg.result(),
                    reg.failure_reason()
                ));
            }
            if e.kind() == Kind::Click {
                return DispatchOutcome::Completed;
            }
            let records = match reg.match_all(None, Default::default()).await {
                Ok(r) => r,
                Err(err) => {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("matchAll in {}: {err}", e.event_type()));
                    return DispatchOutcome::Completed;
                }
            };
            for rec in records {
                let url = rec.request().url.to_string();
                let Some(i) = RESOURCES.iter().position(|r| r.0 == url) else {
                    continue;
                };
                match rec.state().await {
                    Ok(state) if state.result == RecordResult::Success => {}
                    Ok(_) => continue,
                    Err(err) => {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("{url}: the record's state: {err}"));
                        continue;
                    }
                }
                match rec.response_ready().await {
                    Ok(resp) => match resp.bytes().await {
                        Ok(bytes) if bytes == resource_body(i) => {}
                        Ok(bytes) => violations.lock().unwrap().push(format!(
                            "{url}: {} bytes differ from the {} sent",
                            bytes.len(),
                            RESOURCES[i].2
                        )),
                        Err(err) => violations
                            .lock()
                            .unwrap()
                            .push(format!("{url}: body error {err}")),
                    },
                    Err(err) => violations.lock().unwrap().push(format!(
                        "{url}: a successful record's responseReady rejected: {err}"
                    )),
                }
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
}

impl Sut {
    fn tracked_by_id(&mut self, id: usize) -> Option<&mut Tracked> {
        self.tracked
            .iter_mut()
            .rev()
            .find(|t| t.id == id && !t.stale)
    }

    /// Notes that `abort()` resolved `true` for `uid` (once only).
    fn abort_returned_true(&mut self, uid: FetchUid) {
        let Some(t) = self.tracked.iter_mut().find(|t| t.uid == uid) else {
            return;
        };
        if t.abort_returned_true {
            self.violations
                .lock()
                .unwrap()
                .push(format!("abort() of {uid} returned true twice"));
        }
        t.abort_returned_true = true;
    }

    /// Takes note of what `abort()` called from inside a transfer resolved.
    fn note_aborts_inside(&mut self) {
        let inside: Vec<_> = std::mem::take(&mut *self.aborted_inside.lock().unwrap());
        for (uid, aborted) in inside {
            if aborted {
                self.abort_returned_true(uid);
            }
        }
    }

    /// A crash and restart: the tracked fetches get the new engine's instances.
    fn restart(&mut self) {
        let online = self.bed.engine().is_online();
        self.bed.restart();
        self.bed.engine().set_online(online);
        *self.manager.lock().unwrap() = self.bed.manager();
        // Active fetches get new page instances; settled ones keep their last state.
        let m = self.bed.manager();
        let events = self.terminal_events();
        for t in self.tracked.iter_mut().filter(|t| !t.stale) {
            if t.reg.result() != Outcome::Empty {
                t.stale = true;
                continue;
            }
            let id = IDS[t.id];
            let m = m.clone();
            let got = self.bed.run(async move { m.get(id).await });
            match got {
                // abort() resolved true: the fetch is not active again (it only settles).
                Ok(Some(reg)) if reg.uid() == t.uid && t.abort_returned_true => {
                    self.violations.lock().unwrap().push(format!(
                        "fetch {id} {} is active again after a crash although abort() resolved \
                         true",
                        t.uid
                    ))
                }
                Ok(_) if t.abort_returned_true => t.stale = true,
                Ok(Some(reg)) if reg.uid() == t.uid => t.reg = reg,
                // The restored fetch already finished while the new engine started (or while
                // get() ran: its event may wait for the worker host to know the new engine).
                Ok(None)
                    if events.contains_key(&t.uid)
                        || self
                            .bed
                            .worker
                            .finished()
                            .iter()
                            .any(|(k, u)| *u == t.uid && *k != Kind::Click) =>
                {
                    t.stale = true
                }
                _ => self.violations.lock().unwrap().push(format!(
                    "fetch {id} {} did not come back after a restart",
                    t.uid
                )),
            }
        }
    }

    fn terminal_events(&self) -> HashMap<FetchUid, usize> {
        let mut m = HashMap::new();
        for (kind, uid) in self.bed.worker.finished() {
            if kind != Kind::Click {
                *m.entry(uid).or_default() += 1;
            }
        }
        m
    }
}

struct EngineUnderTest;

impl StateMachineTest for EngineUnderTest {
    type SystemUnderTest = Sut;
    type Reference = ModelMachine;

    fn init_test(_: &Model) -> Sut {
        let bed = TestBed::new();
        for (i, (url, status, _, chunk, delay, range)) in RESOURCES.iter().enumerate() {
            let mut r = Resource::status(*status, resource_body(i))
                .chunk_size(*chunk)
                .chunk_delay(Duration::from_millis(*delay));
            if *status != 200 {
                r = Resource::status(*status, &b"error page"[..]);
            }
            if !range {
                r = r.no_range();
            }
            bed.network.serve(url, r.header("etag", "\"v\""));
        }
        let violations = Arc::new(Mutex::new(Vec::new()));
        install_worker(&bed, violations.clone());
        Sut {
            manager: Arc::new(Mutex::new(bed.manager())),
            bed,
            tracked: Vec::new(),
            violations,
            aborted_inside: Arc::default(),
        }
    }

    fn apply(mut sut: Sut, _: &Model, step: Step) -> Sut {
        let bed = &sut.bed;
        match step {
            Step::Fetch {
                id,
                resources,
                download_total,
                prompt,
            } => {
                if prompt {
                    bed.permission.set(PermissionState::Prompt);
                }
                let m = bed.manager();
                let urls: Vec<RequestInfo> = resources
                    .iter()
                    .map(|&r| RequestInfo::from(RESOURCES[r].0))
                    .collect();
                let res = bed.run(async move {
                    m.fetch(
                        IDS[id],
                        urls,
                        BackgroundFetchOptions {
                            download_total,
                            ..Default::default()
                        },
                    )
                    .await
                });
                bed.permission.set(PermissionState::Granted);
                if let Ok(reg) = res {
                    sut.tracked.push(Tracked {
                        id,
                        uid: reg.uid(),
                        reg,
                        resources,
                        download_total,
                        abort_returned_true: false,
                        user_aborted_while_active: false,
                        awaiting_permission: prompt,
                        refused: false,
                        last_result: std::cell::Cell::new(Outcome::Empty),
                        stale: false,
                    });
                }
            }
            Step::Answer { id, accept } => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let uid = t.uid;
                    let engine = sut.bed.engine();
                    if sut
                        .bed
                        .run(async move { engine.permission_decision(uid, accept).await })
                        .is_ok()
                    {
                        let t = sut.tracked_by_id(id).unwrap();
                        t.awaiting_permission = false;
                        t.refused = !accept;
                    }
                }
            }
            Step::AbortThenCrash(id) => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let uid = t.uid;
                    let reg = t.reg.clone();
                    // abort()'s reply crosses the protocol; the crash comes as soon as the
                    // page has it.
                    match sut.bed.run(async move { reg.abort().await }) {
                        Ok(true) => sut.abort_returned_true(uid),
                        Ok(false) => {}
                        Err(e) => sut
                            .violations
                            .lock()
                            .unwrap()
                            .push(format!("abort() rejected: {e}")),
                    }
                }
                sut.restart();
            }
            Step::AlwaysReady(ready) => bed.network.set_always_ready(ready),
            Step::AbortAt { id, resource, at } => {
                let manager = sut.manager.clone();
                let out = sut.aborted_inside.clone();
                let spawner = bed.executor.clone();
                bed.network
                    .when_delivered(RESOURCES[resource].0, at, move |_| {
                        let m = manager.lock().unwrap().clone();
                        spawner.spawn_boxed(
                            async move {
                                let Ok(Some(reg)) = m.get(IDS[id]).await else {
                                    return;
                                };
                                if let Ok(aborted) = reg.abort().await {
                                    out.lock().unwrap().push((reg.uid(), aborted));
                                }
                            }
                            .boxed(),
                        );
                    });
            }
            Step::Abort(id) => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let reg = t.reg.clone();
                    let uid = t.uid;
                    let r = sut.bed.run(async move { reg.abort().await });
                    match r {
                        Ok(true) => sut.abort_returned_true(uid),
                        Ok(false) => {}
                        Err(e) => sut
                            .violations
                            .lock()
                            .unwrap()
                            .push(format!("abort() rejected: {e}")),
                    }
                }
            }
            Step::UserAbort(id) => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let uid = t.uid;
                    let active = t.reg.result() == Outcome::Empty;
                    let engine = sut.bed.engine();
                    if sut
                        .bed
                        .run(async move { engine.user_abort(uid).await })
                        .is_ok()
                        && active
                    {
                        sut.tracked_by_id(id).unwrap().user_aborted_while_active = true;
                    }
                }
            }
            Step::Pause(id) | Step::Resume(id) => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let uid = t.uid;
                    let engine = sut.bed.engine();
                    let pause = matches!(step, Step::Pause(_));
                    let changed = sut.bed.run(async move {
                        if pause {
                            engine.pause(uid).await
                        } else {
                            engine.resume(uid).await
                        }
                    });
                    if changed.is_ok() && !pause {
                        // Resuming from the UI answers the prompt too.
                        sut.tracked_by_id(id).unwrap().awaiting_permission = false;
                    }
                }
            }
            Step::Online(online) => bed.set_online(online),
            Step::Reset { resource, after } => bed
                .network
                .fault_next(RESOURCES[resource].0, vec![Fault::ResetAfter(after)]),
            Step::Advance(ms) => bed.advance(Duration::from_millis(ms)),
            Step::Match(id) => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let reg = t.reg.clone();
                    let expected = t.resources.len();
                    let available = reg.records_available();
                    let r = sut.bed.run(async move {
                        reg.match_all(None, Default::default())
                            .await
                            .map(|v| v.len())
                    });
                    match r {
                        Ok(n) if n != expected => sut
                            .violations
                            .lock()
                            .unwrap()
                            .push(format!("matchAll gave {n} records")),
                        Err(e) if available && e.name() != "InvalidStateError" => sut
                            .violations
                            .lock()
                            .unwrap()
                            .push(format!("matchAll: {e}")),
                        _ => {}
                    }
                }
            }
            Step::Click(id) => {
                if let Some(t) = sut.tracked_by_id(id) {
                    let uid = t.uid;
                    let engine = sut.bed.engine();
                    // A fetch settled and forgotten has nothing to click.
                    let _ = sut.bed.run(async move { engine.click(uid).await });
                }
            }
            Step::Restart => sut.restart(),
        }
        sut.bed.executor.run_until_stalled();
        sut.note_aborts_inside();
        sut
    }

    fn check_invariants(sut: &Sut, _: &Model) {
        let violations = sut.violations.lock().unwrap().clone();
        assert!(violations.is_empty(), "violations: {violations:?}");
        let log = sut.bed.network.log();
        for t in sut.tracked.iter().filter(|t| t.awaiting_permission) {
            let sent: Vec<_> = log.iter().filter(|r| r.fetch == t.uid).collect();
            assert!(
                sent.is_empty(),
                "{} {} waits on the permission prompt, yet {sent:?} were fetched",
                IDS[t.id],
                t.uid
            );
        }
        for t in sut.tracked.iter().filter(|t| !t.stale) {
            let now = t.reg.result();
            let before = t.last_result.get();
            assert!(
                before == Outcome::Empty || before == now,
                "{}: result changed from {before:?} to {now:?}",
                IDS[t.id]
            );
            t.last_result.set(now);
            if t.download_total > 0 {
                assert!(
                    t.reg.downloaded() <= t.download_total,
                    "{}: downloaded {} > downloadTotal {}",
                    IDS[t.id],
                    t.reg.downloaded(),
                    t.download_total
                );
            }
        }
        for (uid, n) in sut.terminal_events() {
            assert!(
                n <= 1,
                "fetch {uid} got {n} settle events; finished {:?}; dispatched {:?}",
                sut.bed.worker.finished(),
                sut.bed
                    .worker
                    .events()
                    .iter()
                    .map(|e| (e.event_type(), e.registration().uid()))
                    .collect::<Vec<_>>()
            );
        }
    }

    fn teardown(mut sut: Sut, _: Model) {
        sut.bed.set_online(true);
        // Resuming from the UI answers every prompt still waiting.
        for t in &mut sut.tracked {
            t.awaiting_permission = false;
        }
        for t in sut.tracked.iter().filter(|t| !t.stale) {
            let engine = sut.bed.engine();
            let uid = t.uid;
            // Most are not paused: only the paused ones change.
            let _ = sut.bed.run(async move { engine.resume(uid).await });
        }
        sut.bed.run_until_idle();
        sut.note_aborts_inside();
        Self::check_invariants(&sut, &Model::default());
        let events = sut.terminal_events();
        let kinds: HashMap<FetchUid, Kind> = sut
            .bed
            .worker
            .finished()
            .into_iter()
            .filter(|(k, _)| *k != Kind::Click)
            .map(|(k, u)| (u, k))
            .collect();
        for t in &mut sut.tracked {
            assert_eq!(
                events.get(&t.uid),
                Some(&1),
                "fetch {} {}: settle events",
                IDS[t.id],
                t.uid
            );
            let kind = kinds[&t.uid];
            if let Some(reason) = expected_reason(t) {
                let expected_kind = match reason {
                    Reason::Empty => Kind::Success,
                    Reason::Aborted => Kind::Abort,
                    _ => Kind::Fail,
                };
                assert_eq!(
                    kind, expected_kind,
                    "fetch {} {:?} downloadTotal {}",
                    IDS[t.id], t.resources, t.download_total
                );
                if !t.stale {
                    assert_eq!(
                        t.reg.failure_reason(),
                        reason,
                        "fetch {} {:?} downloadTotal {}",
                        IDS[t.id],
                        t.resources,
                        t.download_total
                    );
                }
            }
            if !t.stale {
                assert_ne!(
                    t.reg.result(),
                    Outcome::Empty,
                    "fetch {} never settled",
                    IDS[t.id]
                );
                assert!(!t.reg.records_available());
            }
        }
        assert_eq!(
            sut.bed.store.fetch_count(),
            0,
            "every settled fetch's data was dropped"
        );
        assert_eq!(sut.bed.network.in_flight(), 0);
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2048, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(sequential 1..40 => EngineUnderTest);
}
