//! `store_ops`: arbitrary sequences of store operations on a
//! [`RedbStore`](background_fetch_redb::RedbStore) whose disk fails writes and crashes, checked
//! against a reference model (a `BTreeMap` of fetches), with reopens in between.
//!
//! # What runs
//!
//! The store runs on `MemDisk` (`store_ops/disk.rs`), an in-memory redb backend and body file
//! system that models a real disk: writes land in a volatile image, `sync_data` makes them durable, and a **crash**
//! keeps the durable image plus a subset of the writes since the last sync that the input
//! chooses (none, all, or each with some probability, applied in order). Every backend made
//! before a crash fails all further I/O and the old factory refuses to open, so the old store
//! dies as a killed process would; a new store then opens the surviving image. **Faults** are
//! armed by the input: the Nth write or sync from now fails with EIO (once, a few times, or for
//! good); the disk is full past a length (ENOSPC, which the store reports as `QuotaExceeded`); or
//! bad blocks (every write past an offset fails for good, while the header still writes, so the
//! store reopens the file fine and then every commit fails). One fault may fire per store
//! session (a session ends at a reopen or crash; a fault that has not fired may stay armed while
//! the next store opens).
//!
//! The store's settings come from small sets: redb's cache (16 MiB or 1 MiB, which also chooses
//! `inline_body_max`: 64 KiB or 4 KiB, so that `Len::Medium` bodies live in body files in half
//! the inputs and `Len::Big` ones in all), quick-repair on or off, `group_commit_bytes` (4 KiB,
//! 64 KiB or 2 MiB; the store clamps it to at least 64 KiB, so spills of buffered bytes to body
//! files come after 64 KiB or 2 MiB of appends, which `Download` and `Len::Big` appends reach),
//! and `max_total_bytes` (none, which also enables the append fast
//! path, or 64 KiB, 1.5 MiB or 3 MiB). The group commit interval is an hour and idle compaction
//! is off, so nothing depends on the clock: an input always does the same thing.
//!
//! Operations ([`Op`]; at most [`MAX_OPS`] per input, at most [`MAX_APPENDED`] body bytes): every
//! [`Store`](background_fetch::Store) method (`create_fetch` of the next uid and of a live one,
//! `append_request_body`, `commit_fetch`, `read_request_body`, `begin_response` with the same, a
//! greater or an older generation, `append_response_body` at the right offset or a wrong one,
//! with the current generation or not, `complete_record`, `read_response_body`, `set_flags`, `mark_request_sent`,
//! `set_ui`, `settle`, `delete_fetch`, `usage`, `load`; `uid_floor` after every operation), the
//! store's `flush`, `check_integrity`, `compact` and `stats`, a clean reopen (drop, then open), a
//! crash, and arming a fault. Each runs to completion with `futures::executor::block_on`, then a
//! `uid_floor()` round trip makes sure the storage thread finished what the operation started
//! (the group commit it may run after replying, the appends the fast path queued) before the
//! harness looks at the disk or changes it.
//!
//! # What is checked
//!
//! The model (`store_ops/model.rs`) keeps, per fetch, what the store's memory holds and what its
//! disk holds durably (what a crash would leave). Without a fault both are exact and **every
//! return value must equal the model's**: `Ok` or the error kind (`Gone`, `Corrupt`,
//! `QuotaExceeded`), every byte read (bodies are derived from (uid, record, generation, offset);
//! reads are repeated until `max` or the end), `load()`'s fetches (metadata, title and icons,
//! flags, settled, upload total, each record's state, response head, generation and length),
//! `usage()`, `stats().fetches`, the counts of `check_integrity()`, and `uid_floor()` after
//! every operation. The durable state follows the contract: `commit_fetch`, `complete_record`,
//! `settle`, `set_flags`, `mark_request_sent`, `set_ui`, `delete_fetch` of a live fetch, `load`, `flush`,
//! `check_integrity` and `compact` make everything durable; appends and `begin_response` do not.
//!
//! When a fault fires, which fetches the store committed and which it returned to their durable
//! state (poisoning records that lost bytes, in any fetch) depends on which write failed, so a
//! fetch then has a few candidate states; each later result must fit one of them, and keeps only
//! those it fits. Concretely:
//!
//! * an operation fails with `Io` or `QuotaExceeded` only if a fault fired during it (or while
//!   the store was finishing it), or its fetch or record may be poisoned or lost by an earlier
//!   fault, or the store's own quota says so; any other error kind is checked exactly;
//! * an operation that returns `Ok` from a durable commit (`complete_record`, `commit_fetch`,
//!   `settle`, `delete_fetch`, ...) made its fetch durable even if a fault fired: its state and
//!   bytes survive every later crash;
//! * the durable state never goes back: after a crash `load()` returns, for every fetch, one of
//!   the durable states the model allows (so acknowledged completions, settles and deletes
//!   survive, uncommitted fetches are discarded, deleted fetches never come back), and every
//!   stored body is read back byte for byte (so a body is always a prefix of what its
//!   generation was given, and request bodies are what was appended);
//! * a record that lost bytes never completes with `success` until it restarts (a greater
//!   generation) or fails, and a fetch being created that lost request bytes never commits;
//! * `check_integrity()` never reports a problem, faults or not, and a reopen always succeeds
//!   once the fault is gone (a fault armed across a reopen may fail that open, with an error);
//! * `uid_floor()` equals the model's within a session (so it never decreases), and after a
//!   restart is at least one more than every uid a durable commit acknowledged and every uid
//!   `load()` returns, at most the floor before, and exactly the floor before after a clean
//!   reopen of a session without faults.
//!
//! # What is deliberately not checked
//!
//! * Which fetches a fault reverts, and whether a commit whose sync failed counts: that depends
//!   on which write failed (redb's write order); the model allows each fetch either outcome.
//! * That an operation which fails reports a real loss: when an operation begins by reopening a
//!   file left broken by an earlier fault, the store reports the fetches that reopen reverted as
//!   failed even if the operation's own commit then landed. The model accepts that error (a
//!   spurious failure loses nothing) and counts the commit as landed.
//! * The exact number of bytes one read returns: the contract says "up to `max`", so the harness
//!   reads until `max` or the end and checks the bytes.
//! * `stats().buffered_bytes`, file sizes and the `compact()` report: implementation details.
//! * What the trait leaves open: `begin_response` on a completed record, `complete_record` on a
//!   pending one and `append_request_body` on a committed fetch are modelled as the store does
//!   them (the record becomes active again with its bytes; it completes; the bytes are added).
//! * Linux's reading of a failed `fsync` (the kernel may drop the dirty pages it could not write
//!   while reads still see them): the store, like any store that reopens the file after a failed
//!   sync, counts a commit it then finds there as landed. `MemDisk` keeps unsynced writes pending
//!   after a failed sync instead (the next successful sync persists them).
//! * Torn writes inside one `write` call: redb's checksums are meant for them, but the disk
//!   model keeps or drops whole writes. Read errors are not injected.
//! * Purges (`purge_registration`, `retain_registrations`): a host API, not driven.
//! * Concurrency: operations are sequential (the engine's concurrent use is covered by the
//!   store's own tests and the `engine_script` target).
//!
//! # When it fails
//!
//! A failure panics with what went wrong, the settings, every operation of the input with what
//! it returned (and where faults fired), and the model's candidate states. To look at an input
//! that passes, set `STORE_OPS_TRACE=1` (the trace, with timings, goes to stderr). The seed
//! corpus and the regression inputs are written from scenarios in `store_ops/seeds.rs`
//! (`cargo test -p background-fetch-fuzz --lib store_ops::seeds::write_seed_corpus -- --ignored`);
//! `store_ops::seeds::corpus_stats` (ignored, `STORE_OPS_DIR=<dir>`) says what a corpus reaches.

mod disk;
mod harness;
mod model;
#[cfg(test)]
mod seeds;

use arbitrary::{Arbitrary, Unstructured};

/// At most this many operations per input.
pub const MAX_OPS: usize = 64;
/// At most this many body bytes appended per input (further appends are cut short).
pub const MAX_APPENDED: u64 = 6 << 20;

/// One input: the store's settings and the operations.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// The store's settings.
    pub config: ConfigChoice,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// The store's settings, from small sets.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ConfigChoice {
    /// redb's cache: 1 MiB instead of 16 MiB.
    pub small_cache: bool,
    /// Commit with redb's quick-repair.
    pub quick_repair: bool,
    /// `group_commit_bytes`.
    pub group_commit: GroupCommit,
    /// `max_total_bytes`.
    pub limit: Limit,
}

/// `group_commit_bytes` (the store uses at least 64 KiB).
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum GroupCommit {
    Kib4,
    Kib64,
    Mib2,
}

/// `max_total_bytes`.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Limit {
    None,
    Kib64,
    Kib1536,
    Mib3,
}

/// Which fetch an operation names: one of the four created last (`% 8 == 7`: a uid never
/// created).
pub type FetchPick = u8;

/// The fetch flags an op byte names: bit 0 paused, bit 1 awaiting permission, bit 2 aborted.
pub fn stored_flags(b: u8) -> background_fetch::store::StoredFlags {
    background_fetch::store::StoredFlags {
        paused: b & 1 != 0,
        awaiting_permission: b & 2 != 0,
        aborted: b & 4 != 0,
    }
}

/// One operation. A record index `r` names record `r % 8 % n` of a fetch with `n` records, or
/// (`r % 8 == 7`) record `n`, which does not exist.
#[derive(Arbitrary, Debug, Clone)]
#[allow(missing_docs)]
pub enum Op {
    /// `create_fetch` with the next uid (`uid_floor`).
    Create {
        records: u8,
        second_key: bool,
    },
    /// `create_fetch` with the uid of a live fetch: `Corrupt`.
    CreateDuplicate {
        fetch: FetchPick,
    },
    AppendRequest {
        fetch: FetchPick,
        record: u8,
        len: Len,
    },
    /// `commit_fetch` with the flags of [`stored_flags`] (bit 0 is the paused flag: inputs
    /// written when the op carried only that decode the same).
    Commit {
        fetch: FetchPick,
        flags: u8,
    },
    ReadRequest {
        fetch: FetchPick,
        record: u8,
        at: ReadAt,
        max: ReadMax,
    },
    Begin {
        fetch: FetchPick,
        record: u8,
        generation: NewGeneration,
        status: u8,
    },
    Append {
        fetch: FetchPick,
        record: u8,
        generation: Generation,
        at: AppendAt,
        len: Len,
    },
    /// `1 + pieces % 4` appends of `Len::Big` at the end (past a group commit, quickly).
    Download {
        fetch: FetchPick,
        record: u8,
        pieces: u8,
    },
    Complete {
        fetch: FetchPick,
        record: u8,
        generation: Generation,
        result: Outcome,
    },
    Read {
        fetch: FetchPick,
        record: u8,
        generation: Generation,
        at: ReadAt,
        max: ReadMax,
    },
    /// `set_flags` with [`stored_flags`]`(flags)`; with bit 7 set, `mark_request_sent` of
    /// record `flags >> 4` instead.
    SetFlags {
        fetch: FetchPick,
        flags: u8,
    },
    SetUi {
        fetch: FetchPick,
        title: u8,
    },
    Settle {
        fetch: FetchPick,
        result: Settlement,
    },
    Delete {
        fetch: FetchPick,
    },
    Usage {
        second_key: bool,
    },
    Stats,
    Load,
    Flush,
    CheckIntegrity,
    Compact,
    /// Drop the store (it flushes and closes) and open it again. `fault_on_open`: an armed fault
    /// that has not fired stays armed while the store opens.
    Reopen {
        fault_on_open: bool,
    },
    /// The machine crashes: `keep` chooses which writes since the last sync survive (0: none,
    /// 255: all, else each with probability keep/255, drawn from `seed`).
    Crash {
        seed: u16,
        keep: u8,
        fault_on_open: bool,
    },
    /// Arm a fault (ignored once a fault fired in this session).
    Arm(FaultSpec),
}

/// A body length.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Len {
    Zero,
    /// 1 to 256 bytes.
    Tiny(u8),
    /// 1 to 4096 bytes.
    Small(u16),
    /// 1 to 16384 bytes.
    Medium(u16),
    /// About 100 KiB to 800 KiB (requests: 16 KiB to 64 KiB): a few of them reach a group
    /// commit. Rarer than the others: they cost time.
    Big(u8),
}

impl Len {
    fn response(self) -> u64 {
        match self {
            Len::Zero => 0,
            Len::Tiny(n) => u64::from(n) + 1,
            Len::Small(n) => u64::from(n % 4096) + 1,
            Len::Medium(n) => u64::from(n % 16384) + 1,
            Len::Big(n) => (1 + u64::from(n % 8)) * 96 * 1024 + u64::from(n) * 13,
        }
    }

    fn request(self) -> u64 {
        match self {
            Len::Big(n) => (1 + u64::from(n % 4)) * 16 * 1024 + u64::from(n),
            other => other.response(),
        }
    }
}

/// The generation an operation names (mostly the current one).
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Generation {
    Current,
    Current2,
    Current3,
    Older,
    Newer,
}

/// The generation `begin_response` names.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum NewGeneration {
    Same,
    Next,
    Next2,
    Skip,
    Older,
}

/// Where an append writes (mostly at the end).
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum AppendAt {
    End,
    End2,
    End3,
    End4,
    Behind,
    Ahead,
    Start,
}

/// Where a read starts.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum ReadAt {
    Start,
    Middle,
    NearEnd(u8),
    End,
    Past(u8),
    At(u16),
}

/// How much a read asks for.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum ReadMax {
    Zero,
    One,
    Seven,
    Page,
    Mib,
    /// `usize::MAX`.
    Huge,
}

/// A record result for `complete_record`.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Outcome {
    Success,
    Success2,
    Aborted,
    BadStatus,
    FetchError,
    QuotaExceeded,
    Redundant,
}

/// A result for `settle`.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Settlement {
    Success,
    Aborted,
    BadStatus,
    QuotaExceeded,
}

/// A fault to arm.
#[derive(Arbitrary, Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum FaultSpec {
    /// After `after` writes, fail `count % 4` writes (0: every one from then on) with EIO.
    WriteEio { after: u8, count: u8 },
    /// After `after % 8` syncs, fail `count % 4` syncs (0: every one) with EIO.
    SyncEio { after: u8, count: u8 },
    /// The disk is full `headroom` × 16 KiB past the current file length.
    DiskFull { headroom: u8 },
    /// Every write past `(1 + at) × 4 KiB` fails with EIO, for good.
    BadBlocks { at: u8 },
}

/// Runs the target.
pub fn run(data: &[u8]) {
    let Ok(mut input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    input.ops.truncate(MAX_OPS);
    harness::Harness::run(&input);
}
