//! The seed corpus, written as scenarios: an encoder that turns an [`Input`] into the bytes that
//! decode to it, the scenarios, and `write_seed_corpus` (ignored) that writes them to
//! `fuzz/seeds/store_ops/` (and the inputs of fixed bugs to `fuzz/regressions/store_ops/`).
//! `seeds_decode_to_their_scenario` keeps the encoder honest and runs them all.
//!
//! Regenerate with
//! `cargo test -p background-fetch-fuzz --lib store_ops::seeds::write_seed_corpus -- --ignored`.

use super::*;

/// Writes the bytes that decode (with `arbitrary`) to a value.
trait Enc {
    fn enc(&self, out: &mut Vec<u8>);
}

/// An enum's variant `index` of `count`: `arbitrary` reads a `u32` and takes
/// `(u32 * count) >> 32`.
fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    let v = (u64::from(index) << 32).div_ceil(u64::from(count));
    out.extend_from_slice(&(v as u32).to_le_bytes());
}

impl Enc for u8 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Enc for u16 {
    fn enc(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Enc for bool {
    fn enc(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

/// Fieldless enums: the variant's index.
macro_rules! enc_fieldless {
    ($($t:ident { $($v:ident),* $(,)? })*) => {$(
        impl Enc for $t {
            fn enc(&self, out: &mut Vec<u8>) {
                let all = [$($t::$v),*];
                let i = all.iter().position(|v| std::mem::discriminant(v) == std::mem::discriminant(self)).unwrap();
                variant(out, i as u32, all.len() as u32);
            }
        }
    )*};
}

enc_fieldless! {
    GroupCommit { Kib4, Kib64, Mib2 }
    Limit { None, Kib64, Kib1536, Mib3 }
    Generation { Current, Current2, Current3, Older, Newer }
    NewGeneration { Same, Next, Next2, Skip, Older }
    AppendAt { End, End2, End3, End4, Behind, Ahead, Start }
    ReadMax { Zero, One, Seven, Page, Mib, Huge }
    Outcome { Success, Success2, Aborted, BadStatus, FetchError, QuotaExceeded, Redundant }
    Settlement { Success, Aborted, BadStatus, QuotaExceeded }
}

impl Enc for Len {
    fn enc(&self, out: &mut Vec<u8>) {
        match *self {
            Len::Zero => variant(out, 0, 5),
            Len::Tiny(n) => {
                variant(out, 1, 5);
                n.enc(out);
            }
            Len::Small(n) => {
                variant(out, 2, 5);
                n.enc(out);
            }
            Len::Medium(n) => {
                variant(out, 3, 5);
                n.enc(out);
            }
            Len::Big(n) => {
                variant(out, 4, 5);
                n.enc(out);
            }
        }
    }
}

impl Enc for ReadAt {
    fn enc(&self, out: &mut Vec<u8>) {
        match *self {
            ReadAt::Start => variant(out, 0, 6),
            ReadAt::Middle => variant(out, 1, 6),
            ReadAt::NearEnd(n) => {
                variant(out, 2, 6);
                n.enc(out);
            }
            ReadAt::End => variant(out, 3, 6),
            ReadAt::Past(n) => {
                variant(out, 4, 6);
                n.enc(out);
            }
            ReadAt::At(n) => {
                variant(out, 5, 6);
                n.enc(out);
            }
        }
    }
}

impl Enc for FaultSpec {
    fn enc(&self, out: &mut Vec<u8>) {
        match *self {
            FaultSpec::WriteEio { after, count } => {
                variant(out, 0, 4);
                after.enc(out);
                count.enc(out);
            }
            FaultSpec::SyncEio { after, count } => {
                variant(out, 1, 4);
                after.enc(out);
                count.enc(out);
            }
            FaultSpec::DiskFull { headroom } => {
                variant(out, 2, 4);
                headroom.enc(out);
            }
            FaultSpec::BadBlocks { at } => {
                variant(out, 3, 4);
                at.enc(out);
            }
        }
    }
}

impl Enc for ConfigChoice {
    fn enc(&self, out: &mut Vec<u8>) {
        self.small_cache.enc(out);
        self.quick_repair.enc(out);
        self.group_commit.enc(out);
        self.limit.enc(out);
    }
}

const OPS: u32 = 23;

impl Enc for Op {
    fn enc(&self, out: &mut Vec<u8>) {
        match self {
            Op::Create {
                records,
                second_key,
            } => {
                variant(out, 0, OPS);
                records.enc(out);
                second_key.enc(out);
            }
            Op::CreateDuplicate { fetch } => {
                variant(out, 1, OPS);
                fetch.enc(out);
            }
            Op::AppendRequest { fetch, record, len } => {
                variant(out, 2, OPS);
                fetch.enc(out);
                record.enc(out);
                len.enc(out);
            }
            Op::Commit { fetch, flags } => {
                variant(out, 3, OPS);
                fetch.enc(out);
                flags.enc(out);
            }
            Op::ReadRequest {
                fetch,
                record,
                at,
                max,
            } => {
                variant(out, 4, OPS);
                fetch.enc(out);
                record.enc(out);
                at.enc(out);
                max.enc(out);
            }
            Op::Begin {
                fetch,
                record,
                generation,
                status,
            } => {
                variant(out, 5, OPS);
                fetch.enc(out);
                record.enc(out);
                generation.enc(out);
                status.enc(out);
            }
            Op::Append {
                fetch,
                record,
                generation,
                at,
                len,
            } => {
                variant(out, 6, OPS);
                fetch.enc(out);
                record.enc(out);
                generation.enc(out);
                at.enc(out);
                len.enc(out);
            }
            Op::Download {
                fetch,
                record,
                pieces,
            } => {
                variant(out, 7, OPS);
                fetch.enc(out);
                record.enc(out);
                pieces.enc(out);
            }
            Op::Complete {
                fetch,
                record,
                generation,
                result,
            } => {
                variant(out, 8, OPS);
                fetch.enc(out);
                record.enc(out);
                generation.enc(out);
                result.enc(out);
            }
            Op::Read {
                fetch,
                record,
                generation,
                at,
                max,
            } => {
                variant(out, 9, OPS);
                fetch.enc(out);
                record.enc(out);
                generation.enc(out);
                at.enc(out);
                max.enc(out);
            }
            Op::SetFlags { fetch, flags } => {
                variant(out, 10, OPS);
                fetch.enc(out);
                flags.enc(out);
            }
            Op::SetUi { fetch, title } => {
                variant(out, 11, OPS);
                fetch.enc(out);
                title.enc(out);
            }
            Op::Settle { fetch, result } => {
                variant(out, 12, OPS);
                fetch.enc(out);
                result.enc(out);
            }
            Op::Delete { fetch } => {
                variant(out, 13, OPS);
                fetch.enc(out);
            }
            Op::Usage { second_key } => {
                variant(out, 14, OPS);
                second_key.enc(out);
            }
            Op::Stats => variant(out, 15, OPS),
            Op::Load => variant(out, 16, OPS),
            Op::Flush => variant(out, 17, OPS),
            Op::CheckIntegrity => variant(out, 18, OPS),
            Op::Compact => variant(out, 19, OPS),
            Op::Reopen { fault_on_open } => {
                variant(out, 20, OPS);
                fault_on_open.enc(out);
            }
            Op::Crash {
                seed,
                keep,
                fault_on_open,
            } => {
                variant(out, 21, OPS);
                seed.enc(out);
                keep.enc(out);
                fault_on_open.enc(out);
            }
            Op::Arm(spec) => {
                variant(out, 22, OPS);
                spec.enc(out);
            }
        }
    }
}

impl Enc for Input {
    fn enc(&self, out: &mut Vec<u8>) {
        self.config.enc(out);
        // `arbitrary_take_rest` of a Vec: a `true` byte before each element.
        for op in &self.ops {
            out.push(1);
            op.enc(out);
        }
    }
}

fn encode(input: &Input) -> Vec<u8> {
    let mut out = Vec::new();
    input.enc(&mut out);
    out
}

const PLAIN: ConfigChoice = ConfigChoice {
    small_cache: false,
    quick_repair: true,
    group_commit: GroupCommit::Kib64,
    limit: Limit::None,
};

// Shorthands for the scenarios (fetch 0 is the one created last, 1 the one before).
fn create(records: u8) -> Op {
    Op::Create {
        records: records - 1,
        second_key: false,
    }
}
fn begin(fetch: u8, record: u8) -> Op {
    Op::Begin {
        fetch,
        record,
        generation: NewGeneration::Same,
        status: 0,
    }
}
fn restart_record(fetch: u8, record: u8) -> Op {
    Op::Begin {
        fetch,
        record,
        generation: NewGeneration::Next,
        status: 1,
    }
}
fn append(fetch: u8, record: u8, len: Len) -> Op {
    Op::Append {
        fetch,
        record,
        generation: Generation::Current,
        at: AppendAt::End,
        len,
    }
}
fn complete(fetch: u8, record: u8) -> Op {
    Op::Complete {
        fetch,
        record,
        generation: Generation::Current,
        result: Outcome::Success,
    }
}
fn read(fetch: u8, record: u8, at: ReadAt, max: ReadMax) -> Op {
    Op::Read {
        fetch,
        record,
        generation: Generation::Current,
        at,
        max,
    }
}
fn commit(fetch: u8) -> Op {
    Op::Commit { fetch, flags: 0 }
}
fn crash(keep: u8) -> Op {
    Op::Crash {
        seed: 7,
        keep,
        fault_on_open: false,
    }
}
const BIG: Len = Len::Big(7); // 768 KiB and a bit
const SMALL: Len = Len::Small(3000);

/// A fetch created and committed with request bodies, its first record downloading.
fn download_start() -> Vec<Op> {
    vec![
        create(2),
        Op::AppendRequest {
            fetch: 0,
            record: 0,
            len: Len::Small(100),
        },
        commit(0),
        begin(0, 0),
        append(0, 0, SMALL),
        append(0, 0, Len::Tiny(17)),
    ]
}

fn scenarios() -> Vec<(&'static str, Input)> {
    let with = |config: ConfigChoice, ops: Vec<Op>| Input { config, ops };
    let cat = |parts: Vec<Vec<Op>>| parts.concat();
    vec![
        (
            "download-complete-reopen",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        read(0, 0, ReadAt::Middle, ReadMax::Seven),
                        complete(0, 0),
                        Op::ReadRequest {
                            fetch: 0,
                            record: 0,
                            at: ReadAt::Start,
                            max: ReadMax::Page,
                        },
                        Op::Load,
                        Op::Reopen {
                            fault_on_open: false,
                        },
                        read(0, 0, ReadAt::Start, ReadMax::Mib),
                    ],
                ]),
            ),
        ),
        (
            "crash-loses-buffered-bytes",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![crash(255), append(0, 0, SMALL)],
                ]),
            ),
        ),
        (
            "group-commit-then-crash-keeping-some-writes",
            with(
                ConfigChoice {
                    group_commit: GroupCommit::Kib4,
                    ..PLAIN
                },
                cat(vec![
                    download_start(),
                    vec![
                        append(0, 0, BIG),
                        append(0, 0, BIG),
                        begin(0, 1),
                        append(0, 1, BIG),
                        Op::Stats,
                        crash(128),
                        read(0, 0, ReadAt::Start, ReadMax::Page),
                    ],
                ]),
            ),
        ),
        (
            "io-error-in-complete",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        Op::Arm(FaultSpec::WriteEio { after: 2, count: 1 }),
                        complete(0, 0),
                        append(0, 0, Len::Tiny(3)),
                        Op::CheckIntegrity,
                        crash(0),
                    ],
                ]),
            ),
        ),
        (
            "io-error-after-a-non-durable-group-commit",
            with(
                ConfigChoice {
                    group_commit: GroupCommit::Kib4,
                    ..PLAIN
                },
                cat(vec![
                    download_start(),
                    vec![
                        create(1),
                        commit(0),
                        begin(0, 0),
                        append(0, 0, SMALL),
                        append(1, 0, BIG),
                        append(1, 0, BIG),
                        Op::Arm(FaultSpec::WriteEio { after: 1, count: 2 }),
                        complete(0, 0),
                        complete(1, 0),
                        append(1, 0, SMALL),
                        read(1, 0, ReadAt::Start, ReadMax::Mib),
                        crash(255),
                    ],
                ]),
            ),
        ),
        (
            "failing-syncs-then-crash",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        Op::Arm(FaultSpec::SyncEio { after: 0, count: 0 }),
                        complete(0, 0),
                        Op::SetUi { fetch: 0, title: 1 },
                        Op::Load,
                        crash(200),
                    ],
                ]),
            ),
        ),
        (
            "disk-full",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        Op::Arm(FaultSpec::DiskFull { headroom: 20 }),
                        append(0, 0, BIG),
                        append(0, 0, BIG),
                        append(0, 0, BIG),
                        complete(0, 0),
                        Op::Usage { second_key: false },
                        Op::Flush,
                        Op::Reopen {
                            fault_on_open: false,
                        },
                    ],
                ]),
            ),
        ),
        (
            "store-quota",
            with(
                ConfigChoice {
                    limit: Limit::Kib64,
                    ..PLAIN
                },
                cat(vec![
                    download_start(),
                    vec![
                        append(0, 0, Len::Big(0)),
                        append(0, 0, SMALL),
                        Op::Complete {
                            fetch: 0,
                            record: 0,
                            generation: Generation::Current,
                            result: Outcome::QuotaExceeded,
                        },
                        Op::Delete { fetch: 0 },
                        create(1),
                        Op::AppendRequest {
                            fetch: 0,
                            record: 0,
                            len: SMALL,
                        },
                    ],
                ]),
            ),
        ),
        (
            "generations-offsets-and-stale-calls",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        Op::Append {
                            fetch: 0,
                            record: 0,
                            generation: Generation::Current,
                            at: AppendAt::Behind,
                            len: SMALL,
                        },
                        Op::Append {
                            fetch: 0,
                            record: 0,
                            generation: Generation::Current,
                            at: AppendAt::Ahead,
                            len: SMALL,
                        },
                        restart_record(0, 0),
                        Op::Append {
                            fetch: 0,
                            record: 0,
                            generation: Generation::Older,
                            at: AppendAt::Start,
                            len: SMALL,
                        },
                        append(0, 0, SMALL),
                        Op::Begin {
                            fetch: 0,
                            record: 0,
                            generation: NewGeneration::Older,
                            status: 2,
                        },
                        Op::Read {
                            fetch: 0,
                            record: 0,
                            generation: Generation::Older,
                            at: ReadAt::Start,
                            max: ReadMax::Page,
                        },
                        Op::Complete {
                            fetch: 0,
                            record: 7,
                            generation: Generation::Current,
                            result: Outcome::Success,
                        },
                        crash(255),
                    ],
                ]),
            ),
        ),
        (
            "delete-and-uid-floor",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        create(1),
                        Op::Delete { fetch: 1 },
                        Op::Delete { fetch: 7 },
                        crash(255),
                        create(3),
                        Op::CreateDuplicate { fetch: 0 },
                        Op::Load,
                        crash(0),
                        create(1),
                    ],
                ]),
            ),
        ),
        (
            "settle-pause-ui",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        Op::SetFlags { fetch: 0, flags: 1 },
                        Op::SetUi { fetch: 0, title: 3 },
                        Op::Settle {
                            fetch: 0,
                            result: Settlement::BadStatus,
                        },
                        crash(0),
                        Op::SetUi { fetch: 0, title: 2 },
                        Op::Reopen {
                            fault_on_open: false,
                        },
                    ],
                ]),
            ),
        ),
        (
            "download-past-a-group-commit-then-partial-crash",
            with(
                ConfigChoice {
                    group_commit: GroupCommit::Kib4,
                    small_cache: true,
                    ..PLAIN
                },
                cat(vec![
                    download_start(),
                    vec![
                        Op::Download {
                            fetch: 0,
                            record: 0,
                            pieces: 2,
                        },
                        crash(100),
                        Op::Download {
                            fetch: 0,
                            record: 1,
                            pieces: 1,
                        },
                        Op::Arm(FaultSpec::WriteEio { after: 9, count: 0 }),
                        complete(0, 1),
                        crash(160),
                    ],
                ]),
            ),
        ),
        (
            "reads-of-every-size",
            with(
                ConfigChoice {
                    small_cache: true,
                    ..PLAIN
                },
                cat(vec![
                    download_start(),
                    vec![
                        append(0, 0, BIG),
                        read(0, 0, ReadAt::NearEnd(9), ReadMax::Huge),
                        read(0, 0, ReadAt::At(5000), ReadMax::Huge),
                        read(0, 0, ReadAt::Past(3), ReadMax::One),
                        read(0, 0, ReadAt::Start, ReadMax::Zero),
                        Op::Flush,
                        read(0, 0, ReadAt::At(77), ReadMax::Huge),
                    ],
                ]),
            ),
        ),
        (
            "uncommitted-fetches-are-discarded",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        create(2),
                        Op::AppendRequest {
                            fetch: 0,
                            record: 1,
                            len: SMALL,
                        },
                        Op::Load,
                        commit(0),
                        create(1),
                        crash(255),
                        commit(0),
                    ],
                ]),
            ),
        ),
        (
            "compact-after-deletes",
            with(
                ConfigChoice {
                    quick_repair: false,
                    ..PLAIN
                },
                cat(vec![
                    download_start(),
                    vec![
                        append(0, 0, BIG),
                        complete(0, 0),
                        Op::Delete { fetch: 0 },
                        Op::Compact,
                        Op::CheckIntegrity,
                        crash(255),
                    ],
                ]),
            ),
        ),
        (
            "fault-while-reopening",
            with(
                PLAIN,
                cat(vec![
                    download_start(),
                    vec![
                        Op::Arm(FaultSpec::WriteEio { after: 0, count: 0 }),
                        Op::Crash {
                            seed: 1,
                            keep: 255,
                            fault_on_open: true,
                        },
                        append(0, 0, SMALL),
                    ],
                ]),
            ),
        ),
    ]
}

/// Inputs of bugs found and fixed (written to `fuzz/regressions/store_ops/`).
fn regressions() -> Vec<(&'static str, Input)> {
    vec![
        (
            // `Body::read_buffered` computed `offset + max`, which overflowed.
            "read-with-huge-max-killed-the-storage-thread",
            Input {
                config: PLAIN,
                ops: vec![
                    create(1),
                    begin(0, 0),
                    append(0, 0, SMALL),
                    append(0, 0, SMALL),
                    read(0, 0, ReadAt::At(3005), ReadMax::Huge),
                ],
            },
        ),
        (
            // A failed compaction left redb's failed handle in place: check_integrity() kept
            // failing once the disk was fine.
            "compaction-io-error-left-a-failed-handle",
            Input {
                config: ConfigChoice {
                    quick_repair: false,
                    limit: Limit::Kib64,
                    ..PLAIN
                },
                ops: vec![
                    Op::Arm(FaultSpec::SyncEio {
                        after: 255,
                        count: 1,
                    }),
                    Op::Compact,
                    Op::CheckIntegrity,
                ],
            },
        ),
        (
            // An I/O error reverted a fetch being created, losing buffered request bytes;
            // commit_fetch then succeeded with truncated request bodies.
            "commit-after-lost-request-bytes",
            Input {
                config: ConfigChoice {
                    group_commit: GroupCommit::Kib4,
                    ..PLAIN
                },
                ops: vec![
                    create(1),
                    Op::AppendRequest {
                        fetch: 0,
                        record: 0,
                        len: Len::Small(99),
                    },
                    create(1),
                    commit(0),
                    Op::AppendRequest {
                        fetch: 1,
                        record: 0,
                        len: Len::Small(99),
                    },
                    begin(0, 0),
                    append(0, 0, BIG),
                    append(0, 0, BIG),
                    Op::Arm(FaultSpec::WriteEio { after: 0, count: 1 }),
                    complete(0, 0),
                    commit(1),
                    Op::ReadRequest {
                        fetch: 1,
                        record: 0,
                        at: ReadAt::Start,
                        max: ReadMax::Page,
                    },
                ],
            },
        ),
        (
            // A delete that could not be written (bad blocks: the store reopens the file fine,
            // then the commit fails again) returned Ok; a crash brought the fetch back.
            "delete-that-could-not-be-written-returned-ok",
            Input {
                config: PLAIN,
                ops: vec![
                    create(1),
                    commit(0),
                    create(1),
                    commit(0),
                    Op::Arm(FaultSpec::BadBlocks { at: 0 }),
                    Op::Delete { fetch: 1 },
                    crash(255),
                ],
            },
        ),
    ]
}

#[test]
fn seeds_decode_to_their_scenario() {
    for (name, input) in scenarios().into_iter().chain(regressions()) {
        let bytes = encode(&input);
        let decoded = Input::arbitrary_take_rest(Unstructured::new(&bytes)).expect(name);
        assert_eq!(
            format!("{decoded:?}"),
            format!("{input:?}"),
            "{name}: the encoder is out of date"
        );
        run(&bytes);
    }
}

#[test]
#[ignore = "writes fuzz/seeds/store_ops/ and fuzz/regressions/store_ops/"]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/store_ops");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in scenarios() {
        std::fs::write(dir.join(name), encode(&input)).unwrap();
    }
    let dir = dir.join("../../regressions/store_ops");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in regressions() {
        std::fs::write(dir.join(name), encode(&input)).unwrap();
    }
}

/// Pseudo-random inputs, for development: `STORE_OPS_SMOKE=<count>`.
#[test]
#[ignore = "development aid"]
fn random_inputs() {
    let count: u64 = std::env::var("STORE_OPS_SMOKE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for i in 0..count {
        let mut x = super::model::mix(i);
        let len = 50 + (x % 300) as usize;
        let mut data = Vec::with_capacity(len);
        for _ in 0..len {
            x = super::model::mix(x);
            data.push(x as u8);
        }
        let started = std::time::Instant::now();
        if let Err(e) = std::panic::catch_unwind(|| run(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "?".into());
            std::fs::write(format!("/tmp/store_ops_fail_{i}"), &data).unwrap();
            panic!("input {i} failed: {msg}");
        }
        let t = started.elapsed();
        if t.as_millis() > 200 {
            eprintln!("input {i}: {t:?}");
        }
    }
}

/// Time per seed, for development: `cargo test --release ... seed_timings -- --ignored --nocapture`.
#[test]
#[ignore = "development aid"]
fn seed_timings() {
    for (name, input) in scenarios() {
        let bytes = encode(&input);
        let started = std::time::Instant::now();
        for _ in 0..5 {
            run(&bytes);
        }
        eprintln!("{name}: {:?}", started.elapsed() / 5);
    }
}

/// What the inputs of a corpus reach, for development:
/// `STORE_OPS_DIR=fuzz/corpus/store_ops cargo test --release -p background-fetch-fuzz --lib
/// store_ops::seeds::corpus_stats -- --ignored --nocapture`.
#[test]
#[ignore = "development aid"]
fn corpus_stats() {
    let dir = std::env::var("STORE_OPS_DIR").expect("STORE_OPS_DIR");
    let (mut n, mut faulted, mut partial, mut multi, mut unknown, mut crashes, mut reopens) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut ops = 0;
    let mut max_cands = 0;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let Ok(mut input) = Input::arbitrary_take_rest(Unstructured::new(&data)) else {
            continue;
        };
        input.ops.truncate(MAX_OPS);
        let s = super::harness::Harness::run(&input);
        n += 1;
        ops += s.ops;
        faulted += usize::from(s.faults > 0);
        partial += usize::from(s.partial_crashes > 0);
        multi += usize::from(s.max_cands > 1);
        unknown += usize::from(s.unknown);
        crashes += s.crashes;
        reopens += s.reopens;
        max_cands = max_cands.max(s.max_cands);
        for (k, v) in s.errors {
            *errors.entry(k).or_default() += v;
        }
    }
    eprintln!(
        "{n} inputs, {ops} ops; {faulted} with a fault fired, {partial} with a partial crash, \
         {multi} with several candidates (max {max_cands}), {unknown} lost track; \
         {crashes} crashes, {reopens} reopens"
    );
    for (k, v) in errors {
        eprintln!("  {v:6} {k}");
    }
}
