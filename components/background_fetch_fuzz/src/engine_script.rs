//! `engine_script`: the whole engine on the deterministic hosts of `background_fetch::testing`
//! (a [`TestBed`](background_fetch::testing::TestBed)), driven by a script of up to
//! [`MAX_OPS`] operations decoded from the input, with invariants checked after every step and
//! at a teardown that lets everything finish.
//!
//! # The script
//!
//! | op | what it does |
//! |---|---|
//! | [`Op::Fetch`] | `fetch(id, records, {downloadTotal, title})` with an id of three, 1–3 records from the resources below, a `downloadTotal` of none / exact / one short / half / generous / 1 byte ([`Total`]), optionally another chunk size ([`CHUNK_SIZES`]), a plan for its settle event ([`UiPlan`], [`EventDelay`]) and optional faults for the first attempt of one record |
//! | [`Op::Fault`] | faults for the next attempt of one record: reset / fatal error after n bytes, network error before the head (temporary, fatal, aborted), blocked, 5xx, hold until released, changed `ETag`, Range ignored, bogus `Content-Range`, unsolicited 206, early end ([`FaultSpec`]); at most [`MAX_FAULT_SETS_PER_RECORD`] per record so that every fetch can finish |
//! | [`Op::Change`] | the resource of one record changes on the server (other bytes, new `ETag` or `Last-Modified` where it has one) |
//! | [`Op::Release`] | releases held responses of one record |
//! | [`Op::Online`] | the network goes on- or offline (engine and network together) |
//! | [`Op::Advance`] | lets virtual time pass (a few ms up to a minute) |
//! | [`Op::Pause`], [`Op::Resume`], [`Op::UserAbort`], [`Op::Click`] | what the user does in the UI |
//! | [`Op::Abort`] | `registration.abort()` from the page (or from the page of a crashed engine) |
//! | [`Op::Match`] | `match(url)` and `matchAll()`, reading every completed record's body |
//! | [`Op::LateUpdateUi`] | `updateUI()` on a settle event the worker kept ([`UiPlan::Keep`]) |
//! | [`Op::Restart`] | a crash: every task dropped, a new engine on the same store |
//! | [`Op::Answer`] | the user answers the permission prompt of a fetch made with [`FetchOp::prompt`] |
//! | [`Op::AbortThenCrash`] | `registration.abort()` resolves, and the process crashes before any other task runs |
//! | [`Op::AlwaysReady`] | the network becomes always ready (every chunk there before it is asked for) or not |
//! | [`Op::AbortInside`] | `registration.abort()` called (its message sent) from inside a record's transfer, at a byte of it |
//!
//! The resources (each record gets its own copy, with bytes made from its fetch, record and
//! resource numbers):
//!
//! | resource | response | size | chunks | delays | Range | `ETag` |
//! |---|---|---|---|---|---|---|
//! | `small.txt` | 200 | 16 | 16 | none | yes | no |
//! | `empty.txt` | 200 | 0 | — | none | yes | no |
//! | `episode.mp3` | 200 | 20 000 | 3000 | 100 ms per chunk | yes | yes |
//! | `bytewise.bin` | 200 | 40 | 1 | 10 ms per chunk | yes | no (`Last-Modified`) |
//! | `norange.bin` | 200 | 9000 | 2048 | 50 ms per chunk | no (always 200) | no |
//! | `missing.txt` | 404 with an error page | 0 downloaded | — | none | — | no |
//! | `slowhead.bin` | 200 | 5000 | 1000 | 2 s head, 200 ms per chunk | yes | weak |
//! | `upload` | `POST` with a body, echoed back | 34–35 | one | none | yes | no |
//!
//! Every record has a URL of its own (`/f<fetch>/r<record>/<resource>`), so a network fault
//! and every attempt the network logs belong to exactly one record. Which fault set each
//! attempt took is replayed from the network's log (`oracle.rs`), and the checks that depend on
//! the server telling the truth are relaxed only for the records whose attempts took a fault
//! that changes the outcome or lies about the bytes.
//!
//! # What is checked
//!
//! After every step:
//! * a registration's `result` (and `failureReason`), once set, never changes, whichever way it
//!   is seen: the page's instances (also from inside `progress` listeners), the service
//!   worker's event instances, and the UI snapshots;
//! * each fetch finishes at most one settle event (`backgroundfetchsuccess` / `fail` /
//!   `abort`), and is dispatched at most once more per restart that happened while one of its
//!   settle events was running (the durable settle of `spec-map.md` deviation 16: an event
//!   the crash interrupted fires again); every dispatch is of the same kind, matching the
//!   result and failure reason;
//! * `downloaded` never exceeds a non-zero `downloadTotal`, not even on the
//!   `download-total-exceeded` path (the engine cancels the chunk that would cross it, so it is
//!   never stored), nor the most the records can hold; `uploaded` never exceeds what the
//!   attempts sent; the same for every UI snapshot;
//! * `abort()` resolves true at most once per fetch, never after it settled, and the fetch then
//!   ends `aborted`, also when the process crashed right after (it is not active again after
//!   the restart); `pause`/`resume` report a change only when there is one; the paused flag,
//!   the permission prompt and the title survive a restart;
//! * a record whose `abort()` from inside its transfer resolved true stores no more bytes than
//!   the network had delivered of it when the answer came (complete a record step 13: nothing
//!   after the abort all flag), also with an always-ready network;
//! * nothing of a fetch waiting on the permission prompt reaches the network, across restarts;
//! * in a settle event `recordsAvailable` is true, `matchAll()` gives every record,
//!   `downloaded` is the sum of the records' stored bytes (and for a success, of the resources'
//!   sizes, with `uploaded` equal to `uploadTotal`);
//! * every record read (in settle events, by `match`/`matchAll()`, and after each restart from
//!   the restored fetches) with result `success` has exactly the bytes of one version of the
//!   resource (one its attempts were served: a resumption across a change must be refused when
//!   the resource has a validator or no Range support), an ok status,
//!   its URL and no `Content-Range`/`Content-Length`; a `bad-status` record has an empty body;
//!   an `aborted` one rejects with `AbortError`, other failures with `TypeError`;
//! * `updateUI()` resolves once per event and shows its title (and icons) at once; a second
//!   call and a call after the event finished reject with `InvalidStateError`; a call on an
//!   event of a crashed process settles nowhere;
//! * `fetch()` rejects with `TypeError` exactly when the id is active, and `getIds()` lists
//!   exactly the fetches that neither settled nor were aborted;
//! * objects of a crashed engine's page reach no engine: their calls (`abort()`) settle nowhere
//!   (script reaches the engine through the test bed's service and protocol, and a crashed
//!   process's connections go with it).
//!
//! At teardown (online, holds released, everything resumed, run until idle): every fetch
//! finished exactly one settle event; its failure reason is the model's
//! (`oracle::expected_reason`): exact when no fault or change could alter a record's outcome
//! and the user did not abort, otherwise one of the reasons its records could end with (each
//! record's result is also checked against its own possible results in the settle event);
//! every instance shows a result and no records; the UI shows the final result and the last
//! title; nothing is active, nothing is in flight, the store is empty, and no quota is leaked
//! (a fetch reserving the whole quota is accepted).
//!
//! A failure panics with the step, the op, the last lines of a trace of what happened, and the
//! script (`Debug`). `BGFETCH_ENGINE_SCRIPT_TRACE=1` prints the whole trace of a passing run
//! too, for example with `BGFETCH_FUZZ_INPUT=engine_script:<file>` and `tests/corpus.rs`.
//!
//! # What is not checked, and why
//!
//! * The exact failure reason of a fetch where a fault could change a record's result, or the
//!   user aborted: which record finishes first decides it (perform step 5.3).
//! * The bytes of records whose attempts took a fault that lies about the resource (a 200 cut
//!   short with a matching `Content-Length`, a bogus `Content-Range`, a 206 for a 404), or whose
//!   resource changed between attempts with neither validator nor a refusal of Range: the
//!   engine cannot tell, and stores what it was told.
//! * `downloaded` of a page instance against the records at arbitrary times: progress is
//!   throttled (`EngineConfig::progress_interval`); it is exact only in settle events.

mod harness;
mod oracle;
mod resources;

use arbitrary::{Arbitrary, Unstructured};

/// The most operations a script runs (the rest of the input is ignored).
pub const MAX_OPS: usize = 48;

/// The most fault sets queued for one record over its life (each is taken by one attempt), so
/// that every fetch can finish at teardown (the retry policy gives up after 20 attempts in a
/// row that stored nothing).
pub const MAX_FAULT_SETS_PER_RECORD: usize = 3;

/// Runs the target: decodes `data` into a [`Script`] and runs it; panics when an invariant
/// breaks, with the step, the trace of what happened, and the script.
pub fn run(data: &[u8]) {
    let Ok(script) = Script::from_bytes(data) else {
        return;
    };
    harness::run(&script);
}

/// A script: the operations to run, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// The operations (at most [`MAX_OPS`]).
    pub ops: Vec<Op>,
}

/// A reference to a fetch the script created: 0 is the latest, 1 the one before, and so on
/// (modulo how many there are). Ops on it do nothing before the first fetch resolved.
pub type FetchRef = u8;

/// One operation of a [`Script`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `registration.backgroundFetch.fetch(..)` from the page.
    Fetch(FetchOp),
    /// Faults for the next attempt of one record.
    Fault {
        /// Which fetch.
        fetch: FetchRef,
        /// Which of its records (modulo their number).
        record: u8,
        /// What goes wrong in that attempt (one or two faults).
        faults: Vec<FaultSpec>,
    },
    /// The resource of one record changes on the server: other bytes (same length), and a new
    /// `ETag` or `Last-Modified` where it has one.
    Change {
        /// Which fetch.
        fetch: FetchRef,
        /// Which of its records.
        record: u8,
    },
    /// Releases the held responses of one record (and its later holds).
    Release {
        /// Which fetch.
        fetch: FetchRef,
        /// Which of its records.
        record: u8,
    },
    /// The network goes online (`true`) or offline.
    Online(bool),
    /// Virtual time passes.
    Advance(Advance),
    /// The user pauses the fetch.
    Pause(FetchRef),
    /// The user resumes the fetch.
    Resume(FetchRef),
    /// `registration.abort()` in the page.
    Abort(FetchRef),
    /// The user aborts the fetch from the UI.
    UserAbort(FetchRef),
    /// The user clicks the fetch's UI (`backgroundfetchclick`).
    Click(FetchRef),
    /// `match(url of record)` and `matchAll()` in the page, reading the completed records.
    Match {
        /// Which fetch.
        fetch: FetchRef,
        /// Which record's URL to match.
        record: u8,
    },
    /// `updateUI()` on the last settle event of the fetch that the worker kept.
    LateUpdateUi(FetchRef),
    /// A crash and restart on the same store.
    Restart,
    /// The user answers the permission prompt (`Engine::permission_decision`).
    Answer {
        /// Which fetch.
        fetch: FetchRef,
        /// Accept (`true`) or refuse.
        accept: bool,
    },
    /// `registration.abort()` resolves, and the process crashes before any other task runs.
    AbortThenCrash(FetchRef),
    /// The network becomes always ready (`true`): every attempt's chunks are there before the
    /// engine asks, so nothing else runs during a transfer.
    AlwaysReady(bool),
    /// `registration.abort()` from inside a record's transfer, when the engine receives the
    /// byte at `at / 255` of the record's body.
    AbortInside {
        /// Which fetch.
        fetch: FetchRef,
        /// Which of its records.
        record: u8,
        /// Where in the body.
        at: u8,
    },
}

/// The arguments of [`Op::Fetch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOp {
    /// Index of the id in `["a", "b", "c"]`.
    pub id: u8,
    /// The permission is `"prompt"`: the fetch starts paused until the user answers
    /// ([`Op::Answer`], or a resume from the UI).
    pub prompt: bool,
    /// Indexes in the resource table (see the module documentation), one per record (1 to 3).
    pub resources: Vec<u8>,
    /// The `downloadTotal` option.
    pub total: Total,
    /// Whether the `title` option is given.
    pub title: bool,
    /// What the service worker does with `updateUI()` in the settle event.
    pub ui: UiPlan,
    /// How long the service worker keeps the settle event active.
    pub delay: EventDelay,
    /// Bytes per network chunk for every record instead of the resource's own: index in
    /// [`CHUNK_SIZES`] (at least a 64th of the body, so an attempt has at most 64 chunks).
    pub chunk: Option<u8>,
    /// Faults for the first attempt of one record: (record, faults).
    pub first_faults: Option<(u8, Vec<FaultSpec>)>,
}

/// The chunk sizes [`FetchOp::chunk`] chooses from.
pub const CHUNK_SIZES: [usize; 6] = [1, 3, 64, 1000, 4096, 65536];

/// The `downloadTotal` of a fetch, relative to the sum of its resources' sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Total {
    /// 0: no limit.
    Unlimited,
    /// Exactly the sum.
    Exact,
    /// One byte short.
    OneShort,
    /// Half of it.
    Half,
    /// The sum plus 1000.
    Generous,
    /// One byte.
    OneByte,
}

/// What the service worker's settle event handler does with `updateUI()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UiPlan {
    /// Nothing.
    None,
    /// One call with a title.
    Title,
    /// One call with a title and icons.
    TitleAndIcons,
    /// A call, awaited, then a second that must reject.
    TwiceInTurn,
    /// Two calls at once: the first resolves, the second rejects.
    TwiceAtOnce,
    /// Keeps the event for [`Op::LateUpdateUi`].
    Keep,
}

/// How long the settle event handler waits (with `waitUntil`) before it finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventDelay {
    /// It finishes at once.
    None,
    /// 50 ms of virtual time.
    Short,
    /// One second.
    Second,
    /// Ten seconds.
    Long,
}

/// A network fault for one attempt. Byte counts are a fraction `n / 255` of the record's size
/// plus one, so that they land inside the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSpec {
    /// The connection resets (temporarily unavailable) after some bytes.
    ResetAfter(u8),
    /// The body errors fatally after some bytes.
    FatalAfter(u8),
    /// A temporary network error before the head (offline, refused).
    TemporaryError,
    /// A fatal network error before the head.
    FatalError,
    /// An aborted network error before the head.
    AbortedError,
    /// The request is blocked (a failed CORS check).
    Blocked,
    /// A 5xx status (500, 502, 503, 504) with an empty body.
    ServerError(u8),
    /// The head is held until released (or the teardown).
    Hold,
    /// The response carries another `ETag`.
    ChangedETag,
    /// A Range request gets the full 200.
    IgnoreRange,
    /// A 206 with one of a few wrong `Content-Range` values.
    BogusContentRange(u8),
    /// A request without Range gets a 206 with the first bytes.
    UnsolicitedPartial(u8),
    /// The body ends normally after some bytes.
    EndAfter(u8),
}

/// How much virtual time an [`Op::Advance`] lets pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// 1 to 256 ms.
    Millis(u8),
    /// 20 ms steps up to about 5 s.
    Steps(u8),
    /// 1 to 10 s.
    Seconds(u8),
    /// A minute.
    Minute,
}

impl Advance {
    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        use std::time::Duration;
        match self {
            Advance::Millis(n) => Duration::from_millis(u64::from(n) + 1),
            Advance::Steps(n) => Duration::from_millis(20 * (u64::from(n) + 1)),
            Advance::Seconds(n) => Duration::from_secs(u64::from(n % 10) + 1),
            Advance::Minute => Duration::from_secs(60),
        }
    }
}

// ----- decoding: one byte at a time, so that the fuzzer's mutations map to small changes and
// seeds can be written by hand (`Script::to_bytes`) -----

fn byte(u: &mut Unstructured<'_>) -> arbitrary::Result<u8> {
    // Pads with zeros once the data runs out; never fails.
    u8::arbitrary(u)
}

const OP_TAGS: u8 = 25;

impl Op {
    fn decode(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
        Ok(match byte(u)? % OP_TAGS {
            0..=3 => Op::Fetch(FetchOp::decode(u)?),
            4..=6 => Op::Fault {
                fetch: byte(u)?,
                record: byte(u)?,
                faults: decode_faults(u)?,
            },
            7 => Op::Release {
                fetch: byte(u)?,
                record: byte(u)?,
            },
            8 => Op::Online(byte(u)? & 1 == 1),
            9..=11 => Op::Advance(match (byte(u)? % 4, byte(u)?) {
                (0, n) => Advance::Millis(n),
                (1, n) => Advance::Steps(n),
                (2, n) => Advance::Seconds(n % 10),
                _ => Advance::Minute,
            }),
            12 => Op::Pause(byte(u)?),
            13 => Op::Resume(byte(u)?),
            14 => Op::Abort(byte(u)?),
            15 => Op::UserAbort(byte(u)?),
            16 => Op::Click(byte(u)?),
            17 => Op::Match {
                fetch: byte(u)?,
                record: byte(u)?,
            },
            18 => Op::Restart,
            19 => Op::LateUpdateUi(byte(u)?),
            20 => Op::Change {
                fetch: byte(u)?,
                record: byte(u)?,
            },
            21 => Op::Answer {
                fetch: byte(u)?,
                accept: byte(u)? & 1 == 1,
            },
            22 => Op::AbortThenCrash(byte(u)?),
            23 => Op::AlwaysReady(byte(u)? & 1 == 1),
            _ => Op::AbortInside {
                fetch: byte(u)?,
                record: byte(u)?,
                at: byte(u)?,
            },
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Fetch(f) => {
                out.push(0);
                f.encode(out);
            }
            Op::Fault {
                fetch,
                record,
                faults,
            } => {
                out.extend([4, *fetch, *record]);
                encode_faults(faults, out);
            }
            Op::Release { fetch, record } => out.extend([7, *fetch, *record]),
            Op::Online(on) => out.extend([8, u8::from(*on)]),
            Op::Advance(a) => out.extend(match a {
                Advance::Millis(n) => [9, 0, *n],
                Advance::Steps(n) => [9, 1, *n],
                Advance::Seconds(n) => [9, 2, *n],
                Advance::Minute => [9, 3, 0],
            }),
            Op::Pause(f) => out.extend([12, *f]),
            Op::Resume(f) => out.extend([13, *f]),
            Op::Abort(f) => out.extend([14, *f]),
            Op::UserAbort(f) => out.extend([15, *f]),
            Op::Click(f) => out.extend([16, *f]),
            Op::Match { fetch, record } => out.extend([17, *fetch, *record]),
            Op::Restart => out.push(18),
            Op::LateUpdateUi(f) => out.extend([19, *f]),
            Op::Change { fetch, record } => out.extend([20, *fetch, *record]),
            Op::Answer { fetch, accept } => out.extend([21, *fetch, u8::from(*accept)]),
            Op::AbortThenCrash(f) => out.extend([22, *f]),
            Op::AlwaysReady(on) => out.extend([23, u8::from(*on)]),
            Op::AbortInside { fetch, record, at } => out.extend([24, *fetch, *record, *at]),
        }
    }
}

const TOTALS: [Total; 6] = [
    Total::Unlimited,
    Total::Exact,
    Total::OneShort,
    Total::Half,
    Total::Generous,
    Total::OneByte,
];
const UI_PLANS: [UiPlan; 6] = [
    UiPlan::None,
    UiPlan::Title,
    UiPlan::TitleAndIcons,
    UiPlan::TwiceInTurn,
    UiPlan::TwiceAtOnce,
    UiPlan::Keep,
];
const DELAYS: [EventDelay; 4] = [
    EventDelay::None,
    EventDelay::Short,
    EventDelay::Second,
    EventDelay::Long,
];

fn index_of<T: PartialEq>(table: &[T], v: &T) -> u8 {
    table
        .iter()
        .position(|x| x == v)
        .expect("a value of the table") as u8
}

impl FetchOp {
    fn decode(u: &mut Unstructured<'_>) -> arbitrary::Result<FetchOp> {
        let id_byte = byte(u)?;
        let (id, prompt) = (id_byte % 3, id_byte & 0x80 != 0);
        let n = 1 + byte(u)? % 3;
        let mut resources = Vec::new();
        for _ in 0..n {
            resources.push(byte(u)? % resources::RESOURCES.len() as u8);
        }
        let total = TOTALS[usize::from(byte(u)?) % TOTALS.len()];
        let flags = byte(u)?;
        let chunk = if flags & 0x40 != 0 {
            Some(byte(u)? % CHUNK_SIZES.len() as u8)
        } else {
            None
        };
        let first_faults = if flags & 0x80 != 0 {
            Some((byte(u)?, decode_faults(u)?))
        } else {
            None
        };
        Ok(FetchOp {
            id,
            prompt,
            resources,
            total,
            title: flags & 1 != 0,
            ui: UI_PLANS[usize::from((flags >> 1) & 7) % UI_PLANS.len()],
            delay: DELAYS[usize::from((flags >> 4) & 3)],
            chunk,
            first_faults,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // The id byte's value modulo 3 is the id; its high bit, the prompt.
        out.push(if self.prompt {
            (0x80..=0x82u8)
                .find(|b| b % 3 == self.id % 3)
                .expect("one of three")
        } else {
            self.id
        });
        out.push(self.resources.len() as u8 - 1);
        out.extend(&self.resources);
        out.push(index_of(&TOTALS, &self.total));
        let flags = u8::from(self.title)
            | index_of(&UI_PLANS, &self.ui) << 1
            | index_of(&DELAYS, &self.delay) << 4
            | if self.chunk.is_some() { 0x40 } else { 0 }
            | if self.first_faults.is_some() { 0x80 } else { 0 };
        out.push(flags);
        if let Some(c) = self.chunk {
            out.push(c);
        }
        if let Some((record, faults)) = &self.first_faults {
            out.push(*record);
            encode_faults(faults, out);
        }
    }
}

fn decode_faults(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<FaultSpec>> {
    let n = 1 + byte(u)? % 2;
    let mut faults = Vec::new();
    for _ in 0..n {
        let (kind, p) = (byte(u)? % 13, byte(u)?);
        faults.push(match kind {
            0 => FaultSpec::ResetAfter(p),
            1 => FaultSpec::FatalAfter(p),
            2 => FaultSpec::TemporaryError,
            3 => FaultSpec::FatalError,
            4 => FaultSpec::AbortedError,
            5 => FaultSpec::Blocked,
            6 => FaultSpec::ServerError(p % 4),
            7 => FaultSpec::Hold,
            8 => FaultSpec::ChangedETag,
            9 => FaultSpec::IgnoreRange,
            10 => FaultSpec::BogusContentRange(p % oracle::BOGUS_CONTENT_RANGES.len() as u8),
            11 => FaultSpec::UnsolicitedPartial(p),
            _ => FaultSpec::EndAfter(p),
        });
    }
    Ok(faults)
}

fn encode_faults(faults: &[FaultSpec], out: &mut Vec<u8>) {
    assert!((1..=2).contains(&faults.len()), "one or two faults per set");
    out.push(faults.len() as u8 - 1);
    for f in faults {
        out.extend(match *f {
            FaultSpec::ResetAfter(p) => [0, p],
            FaultSpec::FatalAfter(p) => [1, p],
            FaultSpec::TemporaryError => [2, 0],
            FaultSpec::FatalError => [3, 0],
            FaultSpec::AbortedError => [4, 0],
            FaultSpec::Blocked => [5, 0],
            FaultSpec::ServerError(p) => [6, p],
            FaultSpec::Hold => [7, 0],
            FaultSpec::ChangedETag => [8, 0],
            FaultSpec::IgnoreRange => [9, 0],
            FaultSpec::BogusContentRange(p) => [10, p],
            FaultSpec::UnsolicitedPartial(p) => [11, p],
            FaultSpec::EndAfter(p) => [12, p],
        });
    }
}

impl Script {
    /// Decodes a script: operations one after another until the data or [`MAX_OPS`] runs out.
    pub fn from_bytes(data: &[u8]) -> arbitrary::Result<Script> {
        Script::arbitrary_take_rest(Unstructured::new(data))
    }

    /// The bytes [`Script::from_bytes`] decodes back into this script (for writing seeds).
    /// Panics on values the decoder never produces (an empty fault set, no records, more than
    /// three).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}

impl<'a> Arbitrary<'a> for Script {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut ops = Vec::new();
        while ops.len() < MAX_OPS && !u.is_empty() {
            ops.push(Op::decode(u)?);
        }
        Ok(Script { ops })
    }
}

#[cfg(test)]
mod seeds;
