//! The harness: runs each operation on the store, then on the model, and compares.

use super::disk::{Disk, Fault};
use super::model::{
    Cand, Live, Mem, Poison, Snap, body_seed, mix, pattern, request_seed, ui_icons, ui_title,
};
use super::{
    AppendAt, FaultSpec, Generation, GroupCommit, Input, Len, Limit, MAX_APPENDED, NewGeneration,
    Op, Outcome, ReadAt, ReadMax, Settlement,
};
use background_fetch::store::{FetchMeta, RecordState, Store, StoreError, StoreErrorKind};
use background_fetch::testing::store_contract::{head, meta};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchResult, FetchUid, RecordResult,
};
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use bytes::Bytes;
use futures::executor::block_on;
use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

/// The store's name in errors (no such file exists: the bytes live in `Disk`).
const PATH: &str = "/nonexistent/store_ops/mem.redb";
/// Uids at and past this one are never created: operations on them find nothing.
const BOGUS_UID: u64 = 1 << 40;
/// A fetch with more candidate states than this is no longer checked until the next restart
/// (never seen in practice; the bound keeps a long run of faults from exploding).
const MAX_CANDS: usize = 512;

/// A set of error kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Kinds(u8);

impl Kinds {
    const GONE: Kinds = Kinds(1);
    const CORRUPT: Kinds = Kinds(2);
    const QUOTA: Kinds = Kinds(4);
    /// What an injected fault (or a record it poisoned) fails with: `Io`, or `QuotaExceeded`
    /// for a full disk.
    const FAULT: Kinds = Kinds(4 | 8);

    fn has(self, k: StoreErrorKind) -> bool {
        let bit = match k {
            StoreErrorKind::Gone => 1,
            StoreErrorKind::Corrupt => 2,
            StoreErrorKind::QuotaExceeded => 4,
            StoreErrorKind::Io => 8,
            StoreErrorKind::Closed => 16,
        };
        self.0 & bit != 0
    }
}

impl Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = ["Gone", "Corrupt", "QuotaExceeded", "Io", "Closed"];
        let set: Vec<&str> = (0..5)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| names[i])
            .collect();
        write!(f, "Err({})", set.join("|"))
    }
}

/// Bytes read, shown by length and first bytes.
#[derive(PartialEq, Eq)]
struct Read(Vec<u8>);

impl Debug for Read {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: Vec<String> = self.0.iter().take(6).map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "{} bytes [{}{}]",
            self.0.len(),
            head.join(" "),
            if self.0.len() > 6 { " …" } else { "" }
        )
    }
}

/// What an operation did to every fetch's durable state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Global {
    /// Nothing.
    None,
    /// A durable commit of everything (a flush of every fetch).
    DurableAll,
    /// Maybe a durable commit of everything.
    Maybe,
    /// A fault fired: anything the store does after an I/O error.
    Faulted,
}

impl Global {
    fn join(self, other: Global) -> Global {
        match (self, other) {
            (a, b) if a == b => a,
            (Global::Faulted, _) | (_, Global::Faulted) => Global::Faulted,
            _ => Global::Maybe,
        }
    }
}

/// One possible outcome of an operation on one candidate.
struct Step<T> {
    exp: Result<T, Kinds>,
    next: Cand,
    global: Global,
}

fn ok<T>(v: T, next: Cand) -> Step<T> {
    Step {
        exp: Ok(v),
        next,
        global: Global::None,
    }
}

fn durable<T>(v: T, next: Cand) -> Step<T> {
    Step {
        exp: Ok(v),
        next,
        global: Global::DurableAll,
    }
}

fn err<T>(k: Kinds, next: Cand) -> Step<T> {
    Step {
        exp: Err(k),
        next,
        global: Global::None,
    }
}

/// Context of an operation on one fetch: the other fetches' bytes, for the store's quota.
struct Ctx {
    others_min: u64,
    others_max: u64,
    limit: Option<u64>,
}

impl Ctx {
    /// The store's quota check for `n` more bytes of a fetch holding `own`.
    fn quota<T>(&self, own: u64, n: u64, on_ok: Step<T>, unchanged: Cand) -> Vec<Step<T>> {
        let Some(max) = self.limit else {
            return vec![on_ok];
        };
        if own + self.others_min + n > max {
            vec![err(Kinds::QUOTA, unchanged)]
        } else if own + self.others_max + n > max {
            vec![err(Kinds::QUOTA, unchanged), on_ok]
        } else {
            vec![on_ok]
        }
    }
}

/// The live fetch of `c`, or the outcome when there is none.
fn fetch_of<T>(c: &Cand) -> Result<&Live, Vec<Step<T>>> {
    match &c.mem {
        Mem::Live(l) => Ok(l),
        Mem::Absent => Err(vec![err(Kinds::GONE, c.clone())]),
        Mem::Lost => Err(vec![err(Kinds::FAULT, c.clone())]),
    }
}

/// The live fetch of `c` if it has record `rec`, or the outcome when not.
fn record_of<T>(c: &Cand, rec: usize) -> Result<&Live, Vec<Step<T>>> {
    let l = fetch_of(c)?;
    if rec >= l.snap.records.len() {
        return Err(vec![err(Kinds::GONE, c.clone())]);
    }
    Ok(l)
}

/// `c` with its live fetch changed by `f`.
fn changed(c: &Cand, f: impl FnOnce(&mut Live)) -> Cand {
    let mut c = c.clone();
    if let Mem::Live(l) = &mut c.mem {
        f(l);
    }
    c
}

/// Runs `then` on `c` where record `rec` is not poisoned; a poisoned record fails with the
/// error that poisoned it.
fn unpoisoned<T>(c: &Cand, rec: usize, then: impl FnOnce(Cand) -> Vec<Step<T>>) -> Vec<Step<T>> {
    let poison = c.live().expect("a live fetch").poison[rec];
    match poison {
        Poison::No => then(c.clone()),
        Poison::Yes => vec![err(Kinds::FAULT, c.clone())],
        Poison::Maybe => {
            let yes = changed(c, |l| l.poison[rec] = Poison::Yes);
            let no = changed(c, |l| l.poison[rec] = Poison::No);
            let mut v = vec![err(Kinds::FAULT, yes)];
            v.extend(then(no));
            v
        }
    }
}

/// Runs `then` on `c` where no record is poisoned (`commit_fetch`: a fetch whose bytes were
/// lost must not come to exist).
fn unpoisoned_all<T>(c: &Cand, then: impl Fn(Cand) -> Vec<Step<T>>) -> Vec<Step<T>> {
    fn from<T>(c: Cand, rec: usize, then: &dyn Fn(Cand) -> Vec<Step<T>>) -> Vec<Step<T>> {
        if rec >= c.live().map_or(0, |l| l.poison.len()) {
            return then(c);
        }
        unpoisoned(&c, rec, |c| from(c, rec + 1, then))
    }
    from(c.clone(), 0, &then)
}

fn dedup(cands: impl IntoIterator<Item = Cand>) -> Vec<Cand> {
    let mut out: Vec<Cand> = Vec::new();
    for c in cands {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// What `load()` shows of a candidate.
fn loaded(c: &Cand, meta: &FetchMeta) -> Option<background_fetch::store::StoredFetch> {
    match &c.mem {
        Mem::Live(l) if l.snap.committed => Some(l.snap.stored(meta)),
        _ => None,
    }
}

/// A short description of a result, for the trace.
fn brief<T>(r: &Result<T, StoreError>, ok: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("Err({:?}: {})", e.kind, e.message),
    }
}

fn unit(_: &()) -> String {
    "Ok".into()
}

/// Whether write `i` of the writes since the last sync survives a crash.
fn keep_write(seed: u16, keep: u8, i: usize) -> bool {
    match keep {
        0 => false,
        255 => true,
        k => (mix(u64::from(seed) << 32 | i as u64) % 255) < u64::from(k),
    }
}

/// What an input reached (for judging a corpus: `seeds::corpus_stats`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    pub ops: usize,
    pub faults: u64,
    pub crashes: usize,
    /// Crashes that kept some but not all unsynced writes.
    pub partial_crashes: usize,
    pub reopens: usize,
    pub max_cands: usize,
    pub unknown: bool,
    pub errors: BTreeMap<String, usize>,
}

/// A fetch the harness knows.
struct Fetch {
    meta: FetchMeta,
    cands: Vec<Cand>,
    /// Too many candidates: not checked until the next restart.
    unknown: bool,
}

/// Runs one input.
pub(crate) struct Harness<'a> {
    input: &'a Input,
    config: RedbStoreConfig,
    disk: Arc<Disk>,
    store: Option<RedbStore>,
    fetches: BTreeMap<u64, Fetch>,
    /// Uids created (their `create_fetch` returned `Ok`), oldest first.
    created: Vec<u64>,
    /// `uid_floor()`: one more than the highest uid created (exact).
    floor: u64,
    /// The floor a crash cannot go below (a durable commit that wrote it was acknowledged).
    floor_lo: u64,
    /// The highest floor a durable commit may have written.
    floor_hi: u64,
    /// The last `uid_floor()` the store returned.
    observed_floor: u64,
    /// A fault fired and the store may not have finished dealing with it (its handle may be
    /// broken, a reopen and a revert may be pending).
    maybe_broken: bool,
    /// Injected failures when the session (this store) started.
    session_start: u64,
    /// Injected failures after the last operation.
    last_injected: u64,
    appended: u64,
    trace: Vec<String>,
    /// Injected failures when the trace last said.
    noted_injected: u64,
    summary: Summary,
}

impl<'a> Harness<'a> {
    pub(crate) fn run(input: &'a Input) -> Summary {
        let c = input.config;
        let config = RedbStoreConfig {
            cache_size: if c.small_cache { 1 << 20 } else { 16 << 20 },
            group_commit_bytes: match c.group_commit {
                GroupCommit::Kib4 => 4 << 10,
                GroupCommit::Kib64 => 64 << 10,
                GroupCommit::Mib2 => 2 << 20,
            },
            // Tied to the cache choice, so that inputs written before body files existed
            // decode the same: bodies past 4 KiB (small cache) or 64 KiB live in files.
            inline_body_max: if c.small_cache { 4 << 10 } else { 64 << 10 },
            // Operations are sequential: nothing would come to share a commit.
            group_commit_wait: Duration::ZERO,
            group_commit_interval: Duration::from_secs(3600),
            quick_repair: c.quick_repair,
            compact_when_idle: None,
            compact_min_free_bytes: 0,
            quota: None,
            max_total_bytes: match c.limit {
                Limit::None => None,
                Limit::Kib64 => Some(64 << 10),
                Limit::Kib1536 => Some(1536 << 10),
                Limit::Mib3 => Some(3 << 20),
            },
        };
        let disk = Disk::new();
        let mut h = Harness {
            input,
            config,
            disk,
            store: None,
            fetches: BTreeMap::new(),
            created: Vec::new(),
            floor: 0,
            floor_lo: 0,
            floor_hi: 0,
            observed_floor: 0,
            maybe_broken: false,
            session_start: 0,
            last_injected: 0,
            appended: 0,
            trace: Vec::new(),
            noted_injected: 0,
            summary: Summary::default(),
        };
        let store = match h.open() {
            Ok(s) => s,
            Err(e) => h.fail(format!("a new store failed to open: {e}")),
        };
        h.store = Some(store);
        let timed = std::env::var_os("STORE_OPS_TRACE").is_some();
        for (i, op) in input.ops.iter().enumerate() {
            let started = std::time::Instant::now();
            h.op(i, op);
            if timed {
                let t = started.elapsed();
                h.trace.push(format!("   ({t:?})"));
            }
        }
        // Everything must survive a clean restart.
        h.trace.push("-- end of input: a clean reopen --".into());
        h.restart(None, false);
        if std::env::var_os("STORE_OPS_TRACE").is_some() {
            eprintln!("store_ops: {:?}\n{}\n", h.input.config, h.trace.join("\n"));
        }
        h.summary.ops = input.ops.len();
        h.summary.faults = h.disk.injected();
        h.summary
    }

    fn open(&self) -> Result<RedbStore, background_fetch_redb::OpenError> {
        RedbStore::open_with_backends(
            PATH,
            self.disk.factory(),
            self.disk.body_fs(),
            self.config.clone(),
        )
    }

    fn store(&self) -> &RedbStore {
        self.store.as_ref().expect("the store is open")
    }

    #[track_caller]
    fn fail(&self, what: String) -> ! {
        let mut model = String::new();
        for (uid, f) in &self.fetches {
            if uid >= &BOGUS_UID {
                continue;
            }
            model.push_str(&format!(
                "  fetch {uid} ({} records, storage key {:?}){}:\n",
                f.meta.requests.len(),
                f.meta.registration.storage_key,
                if f.unknown { " UNKNOWN" } else { "" }
            ));
            for c in &f.cands {
                model.push_str(&format!("    {c:?}\n"));
            }
        }
        panic!(
            "store_ops: {what}\n\nsettings: {:?}\n\noperations (the last one failed):\n{}\n\n\
             model (candidate states per fetch): floor {} (durable between {} and {}), \
             maybe_broken {}, injected faults {}\n{model}\ninput: {:?}",
            self.config,
            self.trace.join("\n"),
            self.floor,
            self.floor_lo,
            self.floor_hi,
            self.maybe_broken,
            self.disk.injected(),
            self.input
        );
    }

    /// Waits until the storage thread finished what the last operation started (the group
    /// commit it runs after replying, the appends the fast path queued), and returns whether a
    /// fault fired since the last operation.
    fn barrier(&mut self) -> bool {
        match block_on(self.store().uid_floor()) {
            Ok(f) => self.observed_floor = f,
            Err(e) => self.fail(format!("uid_floor() failed: {e}")),
        }
        let now = self.disk.injected();
        let window = now != self.last_injected;
        self.last_injected = now;
        window
    }

    /// Replaces the last line of the trace (the operation running) with `line`, marked if a
    /// fault fired meanwhile.
    fn note(&mut self, mut line: String) {
        let injected = self.disk.injected();
        if injected != self.noted_injected {
            line.push_str(&format!(
                "  [{} fault(s) fired]",
                injected - self.noted_injected
            ));
            self.noted_injected = injected;
        }
        *self.trace.last_mut().expect("an operation") = line;
    }

    fn session_faulted(&self) -> bool {
        self.disk.injected() != self.session_start
    }

    fn check_floor(&self) {
        if self.observed_floor != self.floor {
            self.fail(format!(
                "uid_floor() is {}, the model says {}",
                self.observed_floor, self.floor
            ));
        }
    }

    /// Applies `f` to every candidate of every fetch.
    fn expand_all(&mut self, f: impl Fn(&Cand) -> Vec<Cand>) {
        for fetch in self.fetches.values_mut() {
            let next = dedup(fetch.cands.iter().flat_map(&f));
            fetch.cands = next;
            self.summary.max_cands = self.summary.max_cands.max(fetch.cands.len());
            if fetch.cands.len() > MAX_CANDS {
                fetch.unknown = true;
                self.summary.unknown = true;
            }
        }
    }

    fn revert_all(&mut self) {
        self.expand_all(|c| vec![c.clone(), c.reverted()]);
    }

    fn ctx(&self, uid: u64) -> Ctx {
        let (mut lo, mut hi) = (0, 0);
        for (u, f) in &self.fetches {
            if *u == uid {
                continue;
            }
            lo += f.cands.iter().map(Cand::bytes).min().unwrap_or(0);
            hi += f.cands.iter().map(Cand::bytes).max().unwrap_or(0);
        }
        Ctx {
            others_min: lo,
            others_max: hi,
            limit: self.config.max_total_bytes,
        }
    }

    /// A fetch the input names: one of the four created last, or one never created.
    fn pick(&mut self, fetch: u8) -> u64 {
        let recent: Vec<u64> = self.created.iter().rev().take(4).copied().collect();
        if fetch % 8 == 7 || recent.is_empty() {
            let uid = BOGUS_UID + u64::from(fetch % 4);
            self.fetches.entry(uid).or_insert_with(|| Fetch {
                meta: meta(uid, "a", 1),
                cands: vec![Cand::absent()],
                unknown: false,
            });
            return uid;
        }
        recent[usize::from(fetch % 8) % recent.len()]
    }

    /// A record the input names: mostly one of the fetch's, sometimes one past the last.
    fn record(&self, uid: u64, record: u8) -> usize {
        let n = self.fetches[&uid].meta.requests.len();
        match record % 8 {
            7 => n,
            r => usize::from(r) % n,
        }
    }

    /// The first candidate's live state of `uid` (what the operation's parameters derive
    /// from).
    fn rep(&self, uid: u64) -> Option<Live> {
        self.fetches[&uid]
            .cands
            .iter()
            .find_map(|c| c.live().cloned())
    }

    fn rep_record(&self, uid: u64, rec: usize) -> (u32, u64, u64) {
        self.rep(uid)
            .and_then(|l| {
                l.snap
                    .records
                    .get(rec)
                    .map(|r| (r.generation, r.body, r.req))
            })
            .unwrap_or((0, 0, 0))
    }

    /// `n` body bytes, less if the input already appended a lot.
    fn budget(&mut self, n: u64) -> u64 {
        let n = if self.appended + n > MAX_APPENDED {
            n % 257
        } else {
            n
        };
        self.appended += n;
        n
    }

    fn after(&mut self, window: bool, cleared: bool) {
        if window {
            self.maybe_broken = true;
        } else if cleared {
            self.maybe_broken = false;
        }
    }

    /// A durable commit of everything (may have) landed: the floor it wrote.
    fn durable_floor(&mut self, acknowledged: bool, certain_commit: bool) {
        self.floor_hi = self.floor;
        if acknowledged && (certain_commit || !self.session_faulted()) {
            self.floor_lo = self.floor;
        }
    }

    /// The model's side of an operation on fetch `uid`: `step` gives each candidate's possible
    /// outcomes; the observed result must be one of them.
    #[allow(clippy::too_many_arguments)]
    fn update<T: PartialEq + Debug>(
        &mut self,
        uid: u64,
        what: &str,
        durable_op: bool,
        certain_commit: bool,
        window: bool,
        obs: &Result<T, StoreError>,
        step: impl Fn(&Cand, &Ctx) -> Vec<Step<T>>,
    ) {
        let was_broken = self.maybe_broken;
        if window || was_broken {
            self.revert_all();
        }
        if self.fetches[&uid].unknown {
            // Too many candidates: only the store's own consistency is checked until the next
            // restart.
            if let Err(e) = obs
                && e.kind == StoreErrorKind::Closed
            {
                self.fail(format!("{what} on fetch {uid} failed: {e}"));
            }
            self.after(window, false);
            return;
        }
        let ctx = self.ctx(uid);
        let f = &self.fetches[&uid];
        let mut steps = Vec::new();
        for c in &f.cands {
            let mut s = step(c, &ctx);
            if was_broken && !window {
                // The operation may begin by reopening the file and reverting this fetch; its
                // durable commit then lands, but the store reports the revert.
                let landed_err: Vec<Step<T>> = s
                    .iter()
                    .filter(|st| st.exp.is_ok() && st.global == Global::DurableAll)
                    .map(|st| Step {
                        exp: Err(Kinds::FAULT),
                        next: st.next.clone(),
                        global: Global::DurableAll,
                    })
                    .collect();
                s.extend(landed_err);
            }
            if window {
                for st in &s {
                    steps.push(Step {
                        exp: Err(Kinds::FAULT),
                        next: st.next.clone(),
                        global: Global::Faulted,
                    });
                }
                steps.push(Step {
                    exp: Err(Kinds::FAULT),
                    next: c.clone(),
                    global: Global::Faulted,
                });
            }
            steps.extend(s);
        }
        let obs_k = obs.as_ref().map_err(|e| e.kind);
        if let Err(k) = obs_k {
            *self
                .summary
                .errors
                .entry(format!("{what}: {k:?}"))
                .or_default() += 1;
        }
        let fits = |s: &Step<T>| match (&s.exp, &obs_k) {
            (Ok(a), Ok(b)) => a == *b,
            (Err(ks), Err(k)) => ks.has(*k),
            _ => false,
        };
        let (matched, missed): (Vec<Step<T>>, Vec<Step<T>>) = steps.into_iter().partition(fits);
        if matched.is_empty() {
            let mut expected: Vec<String> = missed
                .iter()
                .map(|s| match &s.exp {
                    Ok(v) => {
                        let mut s = format!("Ok({v:?})");
                        s.truncate(200);
                        s
                    }
                    Err(k) => format!("{k:?}"),
                })
                .collect();
            expected.sort();
            expected.dedup();
            let mut got = format!("{obs:?}");
            got.truncate(300);
            self.fail(format!(
                "{what} on fetch {uid} returned {got}; the model expected one of: {}{}",
                expected.join(", "),
                if window {
                    " (a fault fired during it)"
                } else {
                    ""
                }
            ));
        }
        let global = matched
            .iter()
            .map(|s| s.global)
            .reduce(Global::join)
            .unwrap_or(Global::None);
        let next = dedup(matched.into_iter().map(|s| s.next));
        self.fetches.get_mut(&uid).expect("known").cands = next;
        match global {
            Global::None => {
                if window {
                    self.revert_all();
                }
            }
            Global::DurableAll => {
                for (u, f) in self.fetches.iter_mut() {
                    f.cands = dedup(f.cands.iter().flat_map(|c| {
                        if window && *u != uid {
                            let unacked = c.landed_unacked();
                            vec![c.landed(), c.reverted(), unacked.reverted(), unacked]
                        } else {
                            vec![c.landed()]
                        }
                    }));
                }
            }
            Global::Maybe => self.expand_all(|c| {
                let mut v = vec![c.clone(), c.landed()];
                if window {
                    v.push(c.reverted());
                    let unacked = c.landed_unacked();
                    v.push(unacked.reverted());
                    v.push(unacked);
                }
                v
            }),
            Global::Faulted => self.expand_all(|c| c.faulted(durable_op)),
        }
        if durable_op {
            self.durable_floor(global == Global::DurableAll, certain_commit);
        }
        if was_broken {
            self.revert_all();
        }
        self.after(
            window,
            certain_commit && global == Global::DurableAll && obs.is_ok(),
        );
    }

    /// Reads until `max` bytes or the end.
    fn read_all(
        &self,
        uid: u64,
        rec: usize,
        generation: Option<u32>,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let store = self.store();
        let read = |at: u64, want: usize| match generation {
            Some(g) => block_on(store.read_response_body(FetchUid(uid), rec, g, at, want)),
            None => block_on(store.read_request_body(FetchUid(uid), rec, at, want)),
        };
        let mut out = Vec::new();
        if max == 0 {
            let b = read(offset, 0)?;
            if !b.is_empty() {
                self.fail(format!(
                    "a read of at most 0 bytes returned {} bytes",
                    b.len()
                ));
            }
            return Ok(out);
        }
        loop {
            let want = max - out.len();
            if want == 0 {
                break;
            }
            let b = read(offset + out.len() as u64, want)?;
            if b.is_empty() {
                break;
            }
            if b.len() > want {
                self.fail(format!(
                    "a read of at most {want} bytes returned {} bytes",
                    b.len()
                ));
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    fn op(&mut self, i: usize, op: &Op) {
        let line = format!("#{i:02} {op:?}");
        // Replaced by the line with the result once there is one.
        self.trace.push(line.clone());
        match *op {
            Op::Create {
                records,
                second_key,
            } => {
                let uid = self.floor;
                if self.created.contains(&uid)
                    && let Some(old) = self.fetches.get(&uid)
                    && old
                        .cands
                        .iter()
                        .any(|c| c.mem != Mem::Absent || c.disk.is_some())
                {
                    self.fail(format!(
                        "uid_floor() is {uid}, but fetch {uid} may still exist: {:?}",
                        old.cands
                    ));
                }
                let n = 1 + usize::from(records % 3);
                let m = meta(uid, if second_key { "b" } else { "a" }, n);
                let r = block_on(self.store().create_fetch(m.clone()));
                let window = self.barrier();
                self.note(format!("{line} uid {uid} → {}", brief(&r, unit)));
                self.fetches.insert(
                    uid,
                    Fetch {
                        meta: m,
                        cands: vec![Cand::absent()],
                        unknown: false,
                    },
                );
                self.update(
                    uid,
                    "create_fetch",
                    false,
                    false,
                    window,
                    &r,
                    |c, _| match &c.mem {
                        Mem::Live(_) => vec![err(Kinds::CORRUPT, c.clone())],
                        _ => vec![ok((), Cand::created(n))],
                    },
                );
                if r.is_ok() {
                    self.floor = uid + 1;
                    self.created.push(uid);
                } else {
                    // A failed `create_fetch` leaves nothing of the fetch: the store fails it
                    // only before taking the fetch in (reopening a file broken by an earlier
                    // fault failed, or the uid exists), so it neither holds the fetch in memory
                    // (live or lost) nor wrote any of it. It must not, since a failed create
                    // does not raise `uid_floor()` (the model's floor stays `uid` too) and the
                    // uid may be handed out again. `update`'s generic fault handling also allows
                    // "it happened, then failed or was reverted", which cannot be here; keeping
                    // those candidates made the next create of this uid look like a reuse. If
                    // the store did keep the fetch, that next create fails with `Corrupt`, which
                    // the model (absent only) then rejects.
                    let f = self.fetches.get_mut(&uid).expect("just inserted");
                    f.cands.retain(|c| c.mem == Mem::Absent && c.disk.is_none());
                    if f.cands.is_empty() {
                        self.fail(format!(
                            "create_fetch of fetch {uid} failed, but the model has it existing"
                        ));
                    }
                }
                self.check_floor();
            }
            Op::CreateDuplicate { fetch } => {
                let uid = self.pick(fetch);
                let f = &self.fetches[&uid];
                if f.cands.iter().any(|c| c.live().is_none()) {
                    self.note(format!("{line} skipped: not certainly live"));
                    return;
                }
                let m = f.meta.clone();
                let n = m.requests.len();
                let r = block_on(self.store().create_fetch(m));
                let window = self.barrier();
                self.note(format!("{line} uid {uid} → {}", brief(&r, unit)));
                self.update(
                    uid,
                    "create_fetch (duplicate)",
                    false,
                    false,
                    window,
                    &r,
                    |c, _| match &c.mem {
                        Mem::Live(_) => vec![err(Kinds::CORRUPT, c.clone())],
                        Mem::Absent if c.disk.is_some() => vec![
                            err(Kinds::CORRUPT, c.clone()),
                            ok(
                                (),
                                Cand {
                                    disk: c.disk.clone(),
                                    ..Cand::created(n)
                                },
                            ),
                        ],
                        _ => vec![ok((), Cand::created(n))],
                    },
                );
                self.check_floor();
            }
            Op::AppendRequest { fetch, record, len } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                // Request appends carry no offset: they are only sent when every candidate
                // agrees on where they land.
                let lens: HashSet<u64> = self.fetches[&uid]
                    .cands
                    .iter()
                    .filter_map(|c| c.live())
                    .filter_map(|l| l.snap.records.get(rec).map(|r| r.req))
                    .collect();
                if lens.len() > 1 {
                    self.note(format!("{line} skipped: length uncertain"));
                    return;
                }
                let at = lens.into_iter().next().unwrap_or(0);
                let n = self.budget(len.request());
                let data = pattern(request_seed(uid, rec), at, n as usize);
                let r = block_on(self.store().append_request_body(
                    FetchUid(uid),
                    rec,
                    Bytes::from(data),
                ));
                let window = self.barrier();
                self.note(format!(
                    "{line} uid {uid} record {rec}: {n} bytes at {at} → {}",
                    brief(&r, unit)
                ));
                self.update(
                    uid,
                    "append_request_body",
                    false,
                    false,
                    window,
                    &r,
                    |c, ctx| {
                        let l = match record_of(c, rec) {
                            Ok(l) => l,
                            Err(s) => return s,
                        };
                        let own = l.snap.bytes();
                        unpoisoned(c, rec, |c| {
                            if n == 0 {
                                return vec![ok((), c)];
                            }
                            let next = changed(&c, |l| {
                                l.snap.records[rec].req += n;
                                l.touched[rec] = true;
                            });
                            ctx.quota(own, n, ok((), next), c)
                        })
                    },
                );
                self.check_floor();
            }
            Op::Commit { fetch, flags } => {
                let uid = self.pick(fetch);
                let flags = super::stored_flags(flags);
                let r = block_on(self.store().commit_fetch(FetchUid(uid), flags));
                self.fetch_op(&line, uid, "commit_fetch", r, true, move |l| {
                    l.snap.committed = true;
                    l.snap.flags = flags;
                });
            }
            Op::SetFlags { fetch, flags } if flags & 0x80 != 0 => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, flags >> 4);
                let r = block_on(self.store().mark_request_sent(FetchUid(uid), rec));
                let window = self.barrier();
                self.note(format!(
                    "{line} uid {uid} record {rec} → {}",
                    brief(&r, unit)
                ));
                self.update(uid, "mark_request_sent", true, true, window, &r, |c, _| {
                    if let Err(s) = record_of(c, rec) {
                        return s;
                    }
                    vec![durable(
                        (),
                        changed(c, |l| {
                            l.snap.records[rec].sent = true;
                            l.touched[rec] = true;
                        }),
                    )]
                });
                self.check_floor();
            }
            Op::SetFlags { fetch, flags } => {
                let uid = self.pick(fetch);
                let flags = super::stored_flags(flags);
                let r = block_on(self.store().set_flags(FetchUid(uid), flags));
                self.fetch_op(&line, uid, "set_flags", r, false, move |l| {
                    l.snap.flags = flags
                });
            }
            Op::SetUi { fetch, title } => {
                let uid = self.pick(fetch);
                let n = title % 4;
                let r = block_on(self.store().set_ui(FetchUid(uid), ui_title(n), ui_icons(n)));
                self.fetch_op(&line, uid, "set_ui", r, false, move |l| l.snap.ui = Some(n));
            }
            Op::Settle { fetch, result } => {
                let uid = self.pick(fetch);
                use BackgroundFetchFailureReason as R;
                let (res, reason) = match result {
                    Settlement::Success => (BackgroundFetchResult::Success, R::Empty),
                    Settlement::Aborted => (BackgroundFetchResult::Failure, R::Aborted),
                    Settlement::BadStatus => (BackgroundFetchResult::Failure, R::BadStatus),
                    Settlement::QuotaExceeded => (BackgroundFetchResult::Failure, R::QuotaExceeded),
                };
                let r = block_on(self.store().settle(FetchUid(uid), res, reason));
                self.fetch_op(&line, uid, "settle", r, false, move |l| {
                    l.snap.settled = Some((res, reason));
                });
            }
            Op::Delete { fetch } => {
                let uid = self.pick(fetch);
                let all_live = self.fetches[&uid].cands.iter().all(|c| c.live().is_some());
                let pending_deletes = self.fetches.values().any(|f| {
                    f.cands
                        .iter()
                        .any(|c| c.mem == Mem::Absent && c.disk.is_some())
                });
                let r = block_on(self.store().delete_fetch(FetchUid(uid)));
                let window = self.barrier();
                self.note(format!("{line} uid {uid} → {}", brief(&r, unit)));
                self.update(uid, "delete_fetch", true, all_live, window, &r, |c, _| {
                    let gone = Cand {
                        mem: Mem::Absent,
                        disk: c.disk.clone(),
                    };
                    match &c.mem {
                        Mem::Live(_) => vec![durable((), gone)],
                        _ => vec![Step {
                            exp: Ok(()),
                            next: gone,
                            global: if pending_deletes {
                                Global::Maybe
                            } else {
                                Global::None
                            },
                        }],
                    }
                });
                self.check_floor();
            }
            Op::ReadRequest {
                fetch,
                record,
                at,
                max,
            } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                let (_, _, req) = self.rep_record(uid, rec);
                let offset = read_offset(at, req);
                let max = read_max(max);
                let r = self.read_all(uid, rec, None, offset, max).map(Read);
                let window = self.barrier();
                self.note(format!(
                    "{line} uid {uid} record {rec} at {offset} max {max} → {}",
                    brief(&r, |b| format!("Ok({} bytes)", b.0.len()))
                ));
                self.update(
                    uid,
                    "read_request_body",
                    false,
                    false,
                    window,
                    &r,
                    |c, _| {
                        let l = match record_of(c, rec) {
                            Ok(l) => l,
                            Err(s) => return s,
                        };
                        let len = l.snap.records[rec].req;
                        let want = expected_read(request_seed(uid, rec), len, offset, max);
                        vec![ok(Read(want), c.clone())]
                    },
                );
                self.check_floor();
            }
            Op::Read {
                fetch,
                record,
                generation,
                at,
                max,
            } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                let (cur, body, _) = self.rep_record(uid, rec);
                let g = pick_generation(generation, cur);
                let offset = read_offset(at, body);
                let max = read_max(max);
                let r = self.read_all(uid, rec, Some(g), offset, max).map(Read);
                let window = self.barrier();
                self.note(format!(
                    "{line} uid {uid} record {rec} generation {g} at {offset} max {max} → {}",
                    brief(&r, |b| format!("Ok({} bytes)", b.0.len()))
                ));
                self.update(
                    uid,
                    "read_response_body",
                    false,
                    false,
                    window,
                    &r,
                    |c, _| {
                        let l = match record_of(c, rec) {
                            Ok(l) => l,
                            Err(s) => return s,
                        };
                        let rm = &l.snap.records[rec];
                        if rm.generation != g {
                            return vec![err(Kinds::GONE, c.clone())];
                        }
                        let seed = body_seed(uid, rec, g);
                        vec![ok(
                            Read(expected_read(seed, rm.body, offset, max)),
                            c.clone(),
                        )]
                    },
                );
                self.check_floor();
            }
            Op::Begin {
                fetch,
                record,
                generation,
                status,
            } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                let (cur, _, _) = self.rep_record(uid, rec);
                let g = match generation {
                    NewGeneration::Same => cur,
                    NewGeneration::Next | NewGeneration::Next2 => cur + 1,
                    NewGeneration::Skip => cur + 2,
                    NewGeneration::Older => cur.saturating_sub(1),
                };
                let status = [200, 206, 404][usize::from(status % 3)];
                let r = block_on(
                    self.store()
                        .begin_response(FetchUid(uid), rec, g, head(status)),
                );
                let window = self.barrier();
                self.note(format!(
                    "{line} uid {uid} record {rec} generation {g} → {}",
                    brief(&r, unit)
                ));
                self.update(uid, "begin_response", false, false, window, &r, |c, _| {
                    let l = match record_of(c, rec) {
                        Ok(l) => l,
                        Err(s) => return s,
                    };
                    if g < l.snap.records[rec].generation {
                        return vec![err(Kinds::GONE, c.clone())];
                    }
                    let next = changed(c, |l| {
                        let r = &mut l.snap.records[rec];
                        if g > r.generation {
                            r.body = 0;
                            r.generation = g;
                            l.poison[rec] = Poison::No;
                        }
                        r.head = Some(status);
                        r.state = RecordState::Active;
                        l.touched[rec] = true;
                    });
                    vec![ok((), next)]
                });
                self.check_floor();
            }
            Op::Append {
                fetch,
                record,
                generation,
                at,
                len,
            } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                let n = self.budget(len.response());
                self.append(&line, uid, rec, generation, at, n);
            }
            Op::Download {
                fetch,
                record,
                pieces,
            } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                for piece in 0..=pieces % 4 {
                    let n = self.budget(Len::Big(pieces.wrapping_add(piece)).response());
                    if piece > 0 {
                        self.trace.push(format!("{line} (piece {piece})"));
                    }
                    self.append(&line, uid, rec, Generation::Current, AppendAt::End, n);
                }
            }
            Op::Complete {
                fetch,
                record,
                generation,
                result,
            } => {
                let uid = self.pick(fetch);
                let rec = self.record(uid, record);
                let (cur, _, _) = self.rep_record(uid, rec);
                let g = pick_generation(generation, cur);
                let result = match result {
                    Outcome::Success | Outcome::Success2 => RecordResult::Success,
                    Outcome::Aborted => RecordResult::Aborted,
                    Outcome::BadStatus => RecordResult::BadStatus,
                    Outcome::FetchError => RecordResult::FetchError,
                    Outcome::QuotaExceeded => RecordResult::QuotaExceeded,
                    Outcome::Redundant => RecordResult::Redundant,
                };
                let r = block_on(self.store().complete_record(FetchUid(uid), rec, g, result));
                let window = self.barrier();
                self.note(format!(
                    "{line} uid {uid} record {rec} generation {g} → {}",
                    brief(&r, unit)
                ));
                self.update(uid, "complete_record", true, true, window, &r, |c, _| {
                    let l = match record_of(c, rec) {
                        Ok(l) => l,
                        Err(s) => return s,
                    };
                    if l.snap.records[rec].generation != g {
                        return vec![err(Kinds::GONE, c.clone())];
                    }
                    let complete = |c: Cand| {
                        let next = changed(&c, |l| {
                            l.snap.records[rec].state = RecordState::Completed(result);
                            l.poison[rec] = Poison::No;
                            l.touched[rec] = true;
                        });
                        vec![durable((), next)]
                    };
                    if result == RecordResult::Success {
                        // Bytes were lost: never report the record complete.
                        unpoisoned(c, rec, complete)
                    } else {
                        complete(c.clone())
                    }
                });
                self.check_floor();
            }
            Op::Usage { second_key } => {
                let key = if second_key { "b" } else { "a" };
                let r = block_on(self.store().usage(key));
                let window = self.barrier();
                self.note(format!("{line} → {}", brief(&r, |n| format!("Ok({n})"))));
                let was_broken = self.maybe_broken;
                if window || was_broken {
                    self.revert_all();
                }
                let (lo, hi) = self.range(|f, c| {
                    if f.meta.registration.storage_key == key {
                        c.bytes()
                    } else {
                        0
                    }
                });
                match r {
                    Ok(n) if (lo..=hi).contains(&n) => {}
                    other => self.fail(format!(
                        "usage({key:?}) returned {other:?}; the model expected {}",
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo} to {hi}")
                        }
                    )),
                }
                if window || was_broken {
                    self.revert_all();
                }
                self.after(window, false);
                self.check_floor();
            }
            Op::Stats => {
                let r = block_on(self.store().stats());
                let window = self.barrier();
                self.note(format!(
                    "{line} → {}",
                    brief(&r, |s| format!("Ok({} fetches)", s.fetches))
                ));
                let was_broken = self.maybe_broken;
                if window || was_broken {
                    self.revert_all();
                }
                let (lo, hi) = self.range(|_, c| u64::from(c.live().is_some()));
                match &r {
                    Ok(s) if (lo..=hi).contains(&(s.fetches as u64)) => {}
                    Err(e) if window && Kinds::FAULT.has(e.kind) => {}
                    other => self.fail(format!(
                        "stats() returned {other:?}; the model expected {lo} to {hi} fetches"
                    )),
                }
                if window || was_broken {
                    self.revert_all();
                }
                self.after(window, false);
                self.check_floor();
            }
            Op::Load => self.load(&line),
            Op::Flush => {
                let r = block_on(self.store().flush());
                self.flush_like(&line, "flush", r.map(|()| None));
            }
            Op::CheckIntegrity => {
                let r = block_on(self.store().check_integrity());
                self.flush_like(&line, "check_integrity", r.map(Some));
            }
            Op::Compact => {
                let r = block_on(self.store().compact());
                self.flush_like(&line, "compact", r.map(|_| None));
            }
            Op::Reopen { fault_on_open } => {
                self.restart(None, fault_on_open);
            }
            Op::Crash {
                seed,
                keep,
                fault_on_open,
            } => {
                self.restart(Some((seed, keep)), fault_on_open);
            }
            Op::Arm(spec) => {
                if self.session_faulted() {
                    self.note(format!("{line} ignored: a fault fired in this session"));
                    return;
                }
                let fault = match spec {
                    FaultSpec::WriteEio { after, count } => Fault::WriteEio {
                        ok: u32::from(after),
                        fail: fail_count(count),
                    },
                    FaultSpec::SyncEio { after, count } => Fault::SyncEio {
                        ok: u32::from(after % 8),
                        fail: fail_count(count),
                    },
                    FaultSpec::DiskFull { headroom } => Fault::DiskFull {
                        cap: self.disk.len() + u64::from(headroom) * 16 * 1024,
                    },
                    FaultSpec::BadBlocks { at } => Fault::BadBlocks {
                        from: (1 + u64::from(at)) * 4096,
                    },
                };
                self.disk.arm(fault);
                self.note(format!("{line}: {fault:?}"));
            }
        }
    }

    /// `append_response_body` of `n` bytes.
    fn append(
        &mut self,
        line: &str,
        uid: u64,
        rec: usize,
        generation: Generation,
        at: AppendAt,
        n: u64,
    ) {
        let (cur, body, _) = self.rep_record(uid, rec);
        let g = pick_generation(generation, cur);
        let offset = match at {
            AppendAt::End | AppendAt::End2 | AppendAt::End3 | AppendAt::End4 => body,
            AppendAt::Behind if body > 0 => body - 1 - (n % body.min(7)),
            AppendAt::Behind | AppendAt::Ahead => body + 1 + n % 5,
            AppendAt::Start => 0,
        };
        let data = pattern(body_seed(uid, rec, g), offset, n as usize);
        let r = block_on(self.store().append_response_body(
            FetchUid(uid),
            rec,
            g,
            offset,
            Bytes::from(data),
        ));
        let window = self.barrier();
        self.note(format!(
            "{line} uid {uid} record {rec} generation {g}: {n} bytes at {offset} → {}",
            brief(&r, unit)
        ));
        self.update(
            uid,
            "append_response_body",
            false,
            false,
            window,
            &r,
            |c, ctx| {
                let l = match record_of(c, rec) {
                    Ok(l) => l,
                    Err(s) => return s,
                };
                if l.snap.records[rec].generation != g {
                    return vec![err(Kinds::GONE, c.clone())];
                }
                let own = l.snap.bytes();
                unpoisoned(c, rec, |c| {
                    let rm = &c.live().expect("live").snap.records[rec];
                    if offset != rm.body || matches!(rm.state, RecordState::Completed(_)) {
                        return vec![err(Kinds::CORRUPT, c)];
                    }
                    if n == 0 {
                        return vec![ok((), c)];
                    }
                    let next = changed(&c, |l| {
                        let r = &mut l.snap.records[rec];
                        if r.state == RecordState::Pending {
                            r.state = RecordState::Active;
                        }
                        r.body += n;
                        l.touched[rec] = true;
                    });
                    ctx.quota(own, n, ok((), next), c)
                })
            },
        );
        self.check_floor();
    }

    /// Σ over fetches of the least and the most `f` of their candidates.
    fn range(&self, f: impl Fn(&Fetch, &Cand) -> u64) -> (u64, u64) {
        let (mut lo, mut hi) = (0, 0);
        for fetch in self.fetches.values() {
            if fetch.unknown {
                return (0, u64::MAX);
            }
            lo += fetch.cands.iter().map(|c| f(fetch, c)).min().unwrap_or(0);
            hi += fetch.cands.iter().map(|c| f(fetch, c)).max().unwrap_or(0);
        }
        (lo, hi)
    }

    /// `commit_fetch`, `set_flags`, `set_ui`, `settle`: change a live fetch, commit durably
    /// (`refuse_poisoned`: not if bytes of it were lost).
    fn fetch_op(
        &mut self,
        line: &str,
        uid: u64,
        what: &str,
        r: Result<(), StoreError>,
        refuse_poisoned: bool,
        change: impl Fn(&mut Live) + Copy,
    ) {
        let window = self.barrier();
        self.note(format!("{line} uid {uid} → {}", brief(&r, unit)));
        self.update(uid, what, true, true, window, &r, |c, _| {
            match fetch_of(c) {
                Ok(_) if refuse_poisoned => {
                    unpoisoned_all(c, |c| vec![durable((), changed(&c, change))])
                }
                Ok(_) => vec![durable((), changed(c, change))],
                Err(s) => s,
            }
        });
        self.check_floor();
    }

    /// `flush`, `check_integrity`, `compact`: a durable commit of everything.
    fn flush_like(
        &mut self,
        line: &str,
        what: &str,
        r: Result<Option<background_fetch_redb::IntegrityReport>, StoreError>,
    ) {
        let window = self.barrier();
        self.note(format!(
            "{line} → {}",
            brief(&r, |rep| match rep {
                Some(rep) => format!("Ok({rep:?})"),
                None => "Ok".into(),
            })
        ));
        let was_broken = self.maybe_broken;
        if window || was_broken {
            self.revert_all();
        }
        match &r {
            Ok(_) => {
                // Every fetch was committed, or reverted to its durable state.
                self.expand_all(|c| {
                    if window {
                        let unacked = c.landed_unacked();
                        vec![c.landed(), c.reverted(), unacked.reverted(), unacked]
                    } else {
                        vec![c.landed()]
                    }
                });
                self.durable_floor(true, false);
            }
            Err(e) if window && Kinds::FAULT.has(e.kind) => {
                self.expand_all(|c| c.faulted(true));
                self.durable_floor(false, false);
            }
            Err(e) => self.fail(format!("{what}() failed with no fault injected: {e}")),
        }
        if let Ok(Some(rep)) = &r {
            if !rep.is_ok() {
                self.fail(format!(
                    "check_integrity() found problems: {:?}",
                    rep.problems
                ));
            }
            if !window && !was_broken {
                self.check_report(rep);
            }
        }
        if was_broken {
            self.revert_all();
        }
        self.after(window, false);
        self.check_floor();
    }

    /// The counts of an integrity report, when the model is exact.
    fn check_report(&self, rep: &background_fetch_redb::IntegrityReport) {
        if self
            .fetches
            .values()
            .any(|f| f.cands.len() != 1 || f.unknown)
        {
            return;
        }
        let (mut fetches, mut uncommitted, mut records, mut body, mut req) = (0, 0, 0, 0, 0);
        for f in self.fetches.values() {
            if let Some(l) = f.cands[0].live() {
                fetches += 1;
                uncommitted += usize::from(!l.snap.committed);
                records += l.snap.records.len();
                body += l.snap.records.iter().map(|r| r.body).sum::<u64>();
                req += l.snap.records.iter().map(|r| r.req).sum::<u64>();
            }
        }
        let got = (
            rep.fetches,
            rep.uncommitted,
            rep.records,
            rep.body_bytes,
            rep.request_bytes,
        );
        if got != (fetches, uncommitted, records, body, req) {
            self.fail(format!(
                "check_integrity() counted (fetches, uncommitted, records, body bytes, request \
                 bytes) = {got:?}; the model says {:?}",
                (fetches, uncommitted, records, body, req)
            ));
        }
    }

    /// `load()` in the middle of a session: discards uncommitted fetches, flushes durably.
    fn load(&mut self, line: &str) {
        let r = block_on(self.store().load());
        let window = self.barrier();
        self.note(format!(
            "{line} → {}",
            brief(&r, |v| format!(
                "Ok(uids {:?})",
                v.iter().map(|f| f.meta.uid.0).collect::<Vec<_>>()
            ))
        ));
        let was_broken = self.maybe_broken;
        if window || was_broken {
            self.revert_all();
        }
        // What a load that went through makes of a candidate: uncommitted fetches deleted, the
        // rest committed durably.
        let loaded_next = |c: &Cand| match &c.mem {
            Mem::Live(l) if l.snap.committed => vec![c.landed()],
            Mem::Live(_) => vec![Cand::absent()],
            Mem::Absent if c.disk.is_some() && window => vec![Cand::absent(), c.clone()],
            Mem::Absent => vec![Cand::absent()],
            Mem::Lost => vec![c.clone()],
        };
        match &r {
            Ok(list) => {
                self.match_loaded(list, "load()", loaded_next);
                self.durable_floor(true, false);
            }
            Err(e) if !window && was_broken && Kinds::FAULT.has(e.kind) => {
                // The load began by reopening the file and reverting a fetch, which it reports,
                // but its own commits landed (see "deliberately not checked").
                self.expand_all(loaded_next);
                self.durable_floor(true, false);
            }
            Err(e) if window && Kinds::FAULT.has(e.kind) => {
                // Uncommitted fetches may be deleted (pending) and anything may have landed or
                // been reverted.
                self.expand_all(|c| {
                    let mut v = c.faulted(true);
                    if let Some(l) = c.live()
                        && !l.snap.committed
                    {
                        let gone = Cand {
                            mem: Mem::Absent,
                            disk: c.disk.clone(),
                        };
                        v.push(gone.landed());
                        v.push(gone);
                    }
                    v
                });
                self.durable_floor(false, false);
            }
            Err(e) => self.fail(format!("load() failed with no fault injected: {e}")),
        }
        if was_broken {
            self.revert_all();
        }
        self.after(window, false);
        self.check_floor();
    }

    /// Checks `load()`'s fetches against the model: each fetch's entry (or absence) must be what
    /// one of its candidates shows; those are kept, turned into what `next` makes of them.
    fn match_loaded(
        &mut self,
        list: &[background_fetch::store::StoredFetch],
        what: &str,
        next: impl Fn(&Cand) -> Vec<Cand>,
    ) {
        let uids: Vec<u64> = list.iter().map(|f| f.meta.uid.0).collect();
        if !uids.is_sorted() || uids.windows(2).any(|w| w[0] == w[1]) {
            self.fail(format!("{what} returned uids {uids:?}: not in order"));
        }
        for u in &uids {
            if !self.fetches.contains_key(u) {
                self.fail(format!(
                    "{what} returned fetch {u}, which was never created"
                ));
            }
        }
        let mut updates = Vec::new();
        for (uid, f) in &self.fetches {
            let entry = list.iter().find(|s| s.meta.uid.0 == *uid);
            if f.unknown {
                updates.push((*uid, None));
                continue;
            }
            let matched: Vec<&Cand> = f
                .cands
                .iter()
                .filter(|c| loaded(c, &f.meta).as_ref() == entry)
                .collect();
            if matched.is_empty() {
                let allowed: Vec<String> = dedup(f.cands.iter().cloned())
                    .iter()
                    .map(|c| format!("{:?}", loaded(c, &f.meta)))
                    .collect();
                self.fail(format!(
                    "{what} returned for fetch {uid}: {entry:?}\nthe model allows one of:\n  {}",
                    allowed.join("\n  ")
                ));
            }
            updates.push((*uid, Some(dedup(matched.into_iter().flat_map(&next)))));
        }
        for (uid, cands) in updates {
            let cands = match cands {
                Some(c) => c,
                // Learn it from what the store says.
                None => vec![self.learn(uid, list.iter().find(|s| s.meta.uid.0 == uid))],
            };
            let f = self.fetches.get_mut(&uid).expect("known");
            f.cands = cands;
            f.unknown = false;
        }
    }

    /// A clean reopen (`crash` None) or a crash, then the new store's state is checked against
    /// the model: `load()`, every body byte, `uid_floor()`, `check_integrity()`.
    fn restart(&mut self, crash: Option<(u16, u8)>, fault_on_open: bool) {
        self.summary.reopens += usize::from(crash.is_none());
        let (lo, hi);
        if let Some((seed, keep)) = crash {
            let (kept, logged) = self.disk.crash(|i| keep_write(seed, keep, i));
            self.summary.crashes += 1;
            if kept > 0 && kept < logged {
                self.summary.partial_crashes += 1;
            }
            // The old store finds its disk gone: its last flush fails, it exits.
            drop(self.store.take());
            self.trace.push(format!(
                "   crashed: kept {kept} of {logged} unsynced writes"
            ));
            for f in self.fetches.values_mut() {
                f.cands = dedup(f.cands.iter().map(|c| Cand::restarted(&c.disk)));
            }
            (lo, hi) = (self.floor_lo, self.floor_hi);
        } else {
            let before = self.last_injected;
            // Dropping the last handle flushes durably and closes.
            drop(self.store.take());
            let window = self.disk.injected() != before;
            let clean = !window && !self.maybe_broken;
            self.trace.push(format!(
                "   closed{}",
                if window { " (a fault fired)" } else { "" }
            ));
            for f in self.fetches.values_mut() {
                f.cands = dedup(f.cands.iter().flat_map(|c| {
                    if clean {
                        vec![Cand::restarted(&c.landed().disk)]
                    } else {
                        vec![Cand::restarted(&c.disk), Cand::restarted(&c.landed().disk)]
                    }
                }));
            }
            // Without a fault in the session, closing commits the floor; otherwise a creation
            // whose commit failed may have left it behind.
            lo = if clean && !self.session_faulted() {
                self.floor
            } else {
                self.floor_lo
            };
            hi = self.floor;
        }
        if !fault_on_open {
            self.disk.disarm();
        }
        let before_open = self.disk.injected();
        let store = match self.open() {
            Ok(s) => s,
            Err(e) => {
                if self.disk.injected() == before_open {
                    self.fail(format!(
                        "the store failed to open with no fault injected: {e}"
                    ));
                }
                self.trace.push(format!("   open failed: {e}"));
                self.disk.disarm();
                match self.open() {
                    Ok(s) => s,
                    Err(e2) => self.fail(format!(
                        "the store failed to open again once the fault was gone: {e2} (the \
                         first attempt: {e})"
                    )),
                }
            }
        };
        self.disk.disarm();
        self.store = Some(store);
        self.session_start = self.disk.injected();
        self.last_injected = self.session_start;
        self.maybe_broken = false;
        self.resync(lo, hi);
    }

    /// After a restart: the store must hold one of the states the model allows, exactly.
    fn resync(&mut self, lo: u64, hi: u64) {
        let r = block_on(self.store().load());
        let list = match r {
            Ok(l) => l,
            Err(e) => self.fail(format!("load() after a restart failed: {e}")),
        };
        self.trace.push(format!(
            "   reopened: load() → uids {:?}",
            list.iter().map(|f| f.meta.uid.0).collect::<Vec<_>>()
        ));
        self.match_loaded(&list, "load() after a restart", |c| vec![c.clone()]);
        for f in self.fetches.values_mut() {
            // The candidates left show the same: they are the same.
            f.cands.truncate(1);
        }
        let floor = match block_on(self.store().uid_floor()) {
            Ok(f) => f,
            Err(e) => self.fail(format!("uid_floor() failed: {e}")),
        };
        if !(lo..=hi).contains(&floor) {
            self.fail(format!(
                "after a restart uid_floor() is {floor}; the model expected {}",
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo} to {hi}")
                }
            ));
        }
        if let Some(max) = list.iter().map(|f| f.meta.uid.0).max()
            && floor <= max
        {
            self.fail(format!(
                "after a restart uid_floor() is {floor}, but fetch {max} exists"
            ));
        }
        self.floor = floor;
        self.floor_lo = floor;
        self.floor_hi = floor;
        self.observed_floor = floor;
        // Every byte of every body.
        let live: Vec<(u64, Snap)> = self
            .fetches
            .iter()
            .filter_map(|(u, f)| f.cands[0].live().map(|l| (*u, l.snap.clone())))
            .collect();
        for (uid, snap) in live {
            for (rec, r) in snap.records.iter().enumerate() {
                let body = self.read_all(uid, rec, Some(r.generation), 0, 1 << 30);
                let want = pattern(body_seed(uid, rec, r.generation), 0, r.body as usize);
                self.check_body(uid, rec, "response", body, want);
                let req = self.read_all(uid, rec, None, 0, 1 << 30);
                let want = pattern(request_seed(uid, rec), 0, r.req as usize);
                self.check_body(uid, rec, "request", req, want);
            }
        }
        match block_on(self.store().check_integrity()) {
            Ok(rep) if rep.is_ok() => self.check_report(&rep),
            Ok(rep) => self.fail(format!(
                "check_integrity() after a restart found problems: {:?}",
                rep.problems
            )),
            Err(e) => self.fail(format!("check_integrity() after a restart failed: {e}")),
        }
        let now = self.disk.injected();
        if now != self.last_injected {
            self.fail("a fault fired with none armed".into());
        }
    }

    /// What the store holds of a fetch the model lost track of (its request body lengths are
    /// read; the bytes must be the pattern's).
    fn learn(&self, uid: u64, entry: Option<&background_fetch::store::StoredFetch>) -> Cand {
        let Some(s) = entry else {
            return Cand::absent();
        };
        let mut snap = snap_of(s);
        for (rec, r) in snap.records.iter_mut().enumerate() {
            match self.read_all(uid, rec, None, 0, 1 << 30) {
                Ok(b) if b == pattern(request_seed(uid, rec), 0, b.len()) => r.req = b.len() as u64,
                other => self.fail(format!(
                    "fetch {uid} record {rec}'s request body is not what was appended: {:?}",
                    other.map(|b| b.len())
                )),
            }
        }
        if snap.records.iter().map(|r| r.req).sum::<u64>() != s.upload_total {
            self.fail(format!(
                "fetch {uid}: load() says upload_total {}, its request bodies hold {}",
                s.upload_total,
                snap.records.iter().map(|r| r.req).sum::<u64>()
            ));
        }
        Cand::restarted(&Some(snap))
    }

    fn check_body(
        &self,
        uid: u64,
        rec: usize,
        what: &str,
        got: Result<Vec<u8>, StoreError>,
        want: Vec<u8>,
    ) {
        match got {
            Ok(got) if got == want => {}
            Ok(got) => {
                let first = got.iter().zip(&want).position(|(a, b)| a != b);
                self.fail(format!(
                    "after a restart fetch {uid} record {rec}'s {what} body has {} bytes, the \
                     model {} (first difference at {first:?})",
                    got.len(),
                    want.len()
                ));
            }
            Err(e) => self.fail(format!(
                "after a restart reading fetch {uid} record {rec}'s {what} body failed: {e}"
            )),
        }
    }
}

/// What `load()` says of a fetch, as the model's [`Snap`] (to learn an unknown fetch).
fn snap_of(s: &background_fetch::store::StoredFetch) -> Snap {
    Snap {
        committed: true,
        flags: s.flags,
        settled: s.settled,
        ui: (0..4u8).find(|n| s.meta.title == ui_title(*n)),
        records: s
            .records
            .iter()
            .map(|r| super::model::RecM {
                state: r.state,
                generation: r.generation,
                head: r.response.as_ref().map(|h| h.status),
                body: r.body_length,
                req: 0,
                sent: r.request_sent,
            })
            .collect(),
    }
}

fn fail_count(count: u8) -> u32 {
    match count % 4 {
        0 => u32::MAX,
        n => u32::from(n),
    }
}

fn pick_generation(g: Generation, cur: u32) -> u32 {
    match g {
        Generation::Current | Generation::Current2 | Generation::Current3 => cur,
        Generation::Older if cur > 0 => cur - 1,
        Generation::Older | Generation::Newer => cur + 1,
    }
}

fn read_offset(at: ReadAt, len: u64) -> u64 {
    match at {
        ReadAt::Start => 0,
        ReadAt::Middle => len / 2,
        ReadAt::NearEnd(n) => len.saturating_sub(u64::from(n)),
        ReadAt::End => len,
        ReadAt::Past(n) => len + 1 + u64::from(n),
        ReadAt::At(n) => u64::from(n),
    }
}

fn read_max(max: ReadMax) -> usize {
    match max {
        ReadMax::Zero => 0,
        ReadMax::One => 1,
        ReadMax::Seven => 7,
        ReadMax::Page => 4096,
        ReadMax::Mib => 1 << 20,
        ReadMax::Huge => usize::MAX,
    }
}

/// The bytes a read of at most `max` bytes from `offset` returns, of a body of `len` bytes.
fn expected_read(seed: u64, len: u64, offset: u64, max: usize) -> Vec<u8> {
    if offset >= len || max == 0 {
        return Vec::new();
    }
    let n = (len - offset).min(max as u64);
    pattern(seed, offset, n as usize)
}
