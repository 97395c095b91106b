//! The seed corpus: scripts chosen to reach each path of the engine, encoded with
//! [`Script::to_bytes`]. `cargo test -p background-fetch-fuzz --lib -- --ignored
//! write_engine_script_seeds` rewrites `fuzz/seeds/engine_script/`.

use super::*;

// Resource indexes (see `resources::RESOURCES`).
const SMALL: u8 = 0;
const EMPTY: u8 = 1;
const EPISODE: u8 = 2;
const BYTEWISE: u8 = 3;
const NORANGE: u8 = 4;
const MISSING: u8 = 5;
const SLOWHEAD: u8 = 6;
const UPLOAD: u8 = 7;

fn fetch(id: u8, resources: &[u8], total: Total) -> FetchOp {
    FetchOp {
        id,
        prompt: false,
        resources: resources.to_vec(),
        total,
        title: true,
        ui: UiPlan::Title,
        delay: EventDelay::None,
        chunk: None,
        first_faults: None,
    }
}

fn f(op: FetchOp) -> Op {
    Op::Fetch(op)
}

fn fault(record: u8, faults: &[FaultSpec]) -> Op {
    Op::Fault {
        fetch: 0,
        record,
        faults: faults.to_vec(),
    }
}

fn ms(n: u8) -> Op {
    Op::Advance(Advance::Steps(n))
}

fn secs(n: u8) -> Op {
    Op::Advance(Advance::Seconds(n))
}

const MINUTE: Op = Op::Advance(Advance::Minute);

/// Faults apply to the next attempt: going offline and back interrupts every running `GET`
/// record, so each makes a new attempt (with Range) that takes its queued faults.
const OFFLINE: Op = Op::Online(false);
const ONLINE: Op = Op::Online(true);

/// The seeds, by file name.
fn seeds() -> Vec<(&'static str, Script)> {
    use FaultSpec::*;
    let s = |ops: Vec<Op>| Script { ops };
    vec![
        ("01-small", s(vec![f(fetch(0, &[SMALL], Total::Unlimited))])),
        (
            "02-three-records-exact-total",
            s(vec![
                f(fetch(0, &[EPISODE, BYTEWISE, SMALL], Total::Exact)),
                MINUTE,
            ]),
        ),
        (
            "03-download-total-exceeded",
            s(vec![
                f(fetch(1, &[EPISODE, SMALL], Total::OneShort)),
                MINUTE,
            ]),
        ),
        (
            "04-one-byte-total",
            s(vec![f(fetch(1, &[BYTEWISE], Total::OneByte)), secs(2)]),
        ),
        (
            "05-404-among-records",
            s(vec![
                f(fetch(2, &[MISSING, BYTEWISE], Total::Generous)),
                secs(1),
            ]),
        ),
        (
            "06-upload-and-empty",
            s(vec![
                f(FetchOp {
                    ui: UiPlan::TitleAndIcons,
                    ..fetch(0, &[UPLOAD, EMPTY, SMALL], Total::Exact)
                }),
                secs(1),
            ]),
        ),
        (
            "07-pause-resume",
            s(vec![
                f(fetch(0, &[EPISODE], Total::Unlimited)),
                ms(20),
                Op::Pause(0),
                secs(5),
                Op::Match {
                    fetch: 0,
                    record: 0,
                },
                Op::Resume(0),
                MINUTE,
            ]),
        ),
        (
            "08-offline-online",
            s(vec![
                f(fetch(0, &[EPISODE, NORANGE], Total::Exact)),
                ms(10),
                Op::Online(false),
                secs(9),
                Op::Online(true),
                MINUTE,
            ]),
        ),
        (
            "09-restart-mid-download",
            s(vec![
                f(fetch(0, &[EPISODE, SMALL, NORANGE], Total::Exact)),
                ms(12),
                Op::Restart,
                Op::Match {
                    fetch: 0,
                    record: 1,
                },
                MINUTE,
            ]),
        ),
        (
            "10-restart-mid-event",
            s(vec![
                f(FetchOp {
                    delay: EventDelay::Long,
                    ..fetch(0, &[SMALL, BYTEWISE], Total::Unlimited)
                }),
                secs(2),
                Op::Restart,
                secs(3),
                Op::Restart,
                MINUTE,
            ]),
        ),
        (
            "11-abort",
            s(vec![
                f(fetch(0, &[EPISODE, SMALL], Total::Unlimited)),
                ms(5),
                Op::Abort(0),
                Op::Abort(0),
                Op::Match {
                    fetch: 0,
                    record: 1,
                },
            ]),
        ),
        (
            "12-user-abort",
            s(vec![
                f(fetch(1, &[EPISODE, BYTEWISE], Total::Unlimited)),
                ms(3),
                Op::UserAbort(0),
                Op::Click(0),
                secs(1),
            ]),
        ),
        (
            "13-click-and-match",
            s(vec![
                f(fetch(0, &[EPISODE, SMALL], Total::Exact)),
                Op::Click(0),
                Op::Match {
                    fetch: 0,
                    record: 1,
                },
                MINUTE,
                Op::Click(0),
                Op::Match {
                    fetch: 0,
                    record: 0,
                },
            ]),
        ),
        (
            "14-resets",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ResetAfter(128)])),
                    ..fetch(0, &[EPISODE, NORANGE, BYTEWISE], Total::Exact)
                }),
                fault(1, &[ResetAfter(100)]),
                fault(2, &[ResetAfter(10)]),
                ms(4),
                OFFLINE,
                ONLINE,
                MINUTE,
            ]),
        ),
        (
            "15-fatal-after",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ResetAfter(60)])),
                    ..fetch(0, &[EPISODE], Total::Unlimited)
                }),
                fault(0, &[FatalAfter(200)]),
                MINUTE,
            ]),
        ),
        (
            "16-server-error-first",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ServerError(2)])),
                    ..fetch(0, &[SMALL, EPISODE], Total::Unlimited)
                }),
                MINUTE,
            ]),
        ),
        (
            "17-hold-release",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![Hold])),
                    ..fetch(0, &[SMALL, SLOWHEAD], Total::Exact)
                }),
                secs(3),
                Op::Pause(0),
                Op::Release {
                    fetch: 0,
                    record: 0,
                },
                Op::Resume(0),
                MINUTE,
            ]),
        ),
        (
            "18-changed-etag-on-resume",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ResetAfter(90)])),
                    ..fetch(0, &[EPISODE, SLOWHEAD], Total::Exact)
                }),
                fault(0, &[ChangedETag]),
                fault(1, &[ResetAfter(255), ChangedETag]),
                MINUTE,
                fault(1, &[IgnoreRange]),
                MINUTE,
            ]),
        ),
        (
            "19-ignore-range-on-resume",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ResetAfter(150)])),
                    ..fetch(0, &[EPISODE, BYTEWISE], Total::Exact)
                }),
                fault(0, &[IgnoreRange]),
                fault(1, &[ResetAfter(100), IgnoreRange]),
                ms(3),
                OFFLINE,
                ONLINE,
                MINUTE,
            ]),
        ),
        (
            "20-bogus-content-range",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![BogusContentRange(0)])),
                    ..fetch(0, &[SMALL, EPISODE], Total::Unlimited)
                }),
                fault(1, &[BogusContentRange(5)]),
                ms(3),
                OFFLINE,
                ONLINE,
                MINUTE,
            ]),
        ),
        (
            "21-unsolicited-partial",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![UnsolicitedPartial(100)])),
                    ..fetch(0, &[EPISODE], Total::Exact)
                }),
                MINUTE,
                f(FetchOp {
                    first_faults: Some((0, vec![UnsolicitedPartial(1)])),
                    ..fetch(1, &[EMPTY, MISSING], Total::Unlimited)
                }),
                secs(1),
            ]),
        ),
        (
            "22-end-after",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ResetAfter(50)])),
                    ..fetch(0, &[EPISODE, NORANGE], Total::Exact)
                }),
                fault(0, &[EndAfter(30)]),
                fault(1, &[EndAfter(100)]),
                ms(20),
                OFFLINE,
                ONLINE,
                MINUTE,
            ]),
        ),
        (
            "23-duplicate-id",
            s(vec![
                f(fetch(0, &[EPISODE], Total::Unlimited)),
                f(fetch(0, &[SMALL], Total::Unlimited)),
                MINUTE,
                f(fetch(0, &[SMALL], Total::Unlimited)),
            ]),
        ),
        (
            "24-keep-and-late-update-ui",
            s(vec![
                f(FetchOp {
                    ui: UiPlan::Keep,
                    delay: EventDelay::Second,
                    ..fetch(0, &[SMALL], Total::Unlimited)
                }),
                Op::LateUpdateUi(0),
                Op::LateUpdateUi(0),
                f(FetchOp {
                    ui: UiPlan::Keep,
                    ..fetch(1, &[SMALL], Total::Unlimited)
                }),
                Op::LateUpdateUi(0),
            ]),
        ),
        (
            "25-update-ui-twice",
            s(vec![
                f(FetchOp {
                    ui: UiPlan::TwiceInTurn,
                    ..fetch(0, &[SMALL], Total::Unlimited)
                }),
                f(FetchOp {
                    ui: UiPlan::TwiceAtOnce,
                    ..fetch(1, &[MISSING], Total::Unlimited)
                }),
                secs(1),
            ]),
        ),
        (
            "26-restart-paused",
            s(vec![
                f(fetch(0, &[EPISODE, BYTEWISE], Total::Exact)),
                ms(7),
                Op::Pause(0),
                Op::Restart,
                secs(9),
                Op::Match {
                    fetch: 0,
                    record: 1,
                },
                Op::Resume(0),
                MINUTE,
            ]),
        ),
        (
            "27-restart-unfinished-upload",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![Hold])),
                    ..fetch(0, &[UPLOAD, SMALL], Total::Unlimited)
                }),
                Op::Restart,
                MINUTE,
            ]),
        ),
        (
            "28-slow-head-pause",
            s(vec![
                f(fetch(2, &[SLOWHEAD, NORANGE], Total::Half)),
                secs(1),
                Op::Pause(0),
                secs(4),
                Op::Resume(0),
                MINUTE,
            ]),
        ),
        (
            "29-network-errors-before-head",
            s(vec![
                f(FetchOp {
                    first_faults: Some((1, vec![TemporaryError])),
                    ..fetch(0, &[EPISODE, SMALL], Total::Unlimited)
                }),
                fault(0, &[TemporaryError]),
                fault(0, &[AbortedError]),
                MINUTE,
                f(FetchOp {
                    first_faults: Some((0, vec![FatalError])),
                    ..fetch(1, &[BYTEWISE], Total::Unlimited)
                }),
                f(FetchOp {
                    first_faults: Some((0, vec![Blocked])),
                    ..fetch(2, &[SMALL], Total::Unlimited)
                }),
                MINUTE,
            ]),
        ),
        (
            "30-offline-restart",
            s(vec![
                f(fetch(0, &[EPISODE], Total::Generous)),
                ms(3),
                Op::Online(false),
                Op::Restart,
                secs(9),
                Op::Online(true),
                MINUTE,
            ]),
        ),
        (
            "31-upload-faults",
            s(vec![
                f(FetchOp {
                    first_faults: Some((0, vec![ResetAfter(100)])),
                    ..fetch(0, &[UPLOAD], Total::Unlimited)
                }),
                f(FetchOp {
                    first_faults: Some((0, vec![UnsolicitedPartial(120)])),
                    ..fetch(1, &[UPLOAD, SMALL], Total::Exact)
                }),
                secs(1),
            ]),
        ),
        (
            "32-many-fetches",
            s(vec![
                f(fetch(0, &[EPISODE, SMALL], Total::Unlimited)),
                f(fetch(1, &[NORANGE, BYTEWISE, MISSING], Total::Exact)),
                f(FetchOp {
                    delay: EventDelay::Short,
                    ui: UiPlan::Keep,
                    ..fetch(2, &[SLOWHEAD], Total::OneShort)
                }),
                ms(30),
                Op::Pause(2),
                fault(0, &[ResetAfter(30), Hold]),
                Op::Online(false),
                secs(1),
                Op::Online(true),
                Op::Restart,
                Op::Resume(2),
                Op::Match {
                    fetch: 1,
                    record: 2,
                },
                secs(3),
                Op::Click(1),
                Op::Abort(2),
                Op::Release {
                    fetch: 0,
                    record: 0,
                },
                Op::LateUpdateUi(1),
                MINUTE,
                f(fetch(0, &[SMALL], Total::Half)),
            ]),
        ),
        (
            "33-small-chunks-with-resets",
            s(vec![
                f(FetchOp {
                    chunk: Some(0),
                    ..fetch(0, &[EPISODE, BYTEWISE, UPLOAD], Total::Exact)
                }),
                fault(0, &[ResetAfter(77)]),
                fault(1, &[ResetAfter(33)]),
                ms(4),
                Op::Pause(0),
                Op::Resume(0),
                ms(40),
                Op::Restart,
                fault(0, &[EndAfter(20)]),
                OFFLINE,
                ONLINE,
                MINUTE,
            ]),
        ),
        (
            "34-one-chunk-each",
            s(vec![
                f(FetchOp {
                    chunk: Some(5),
                    ..fetch(1, &[EPISODE, NORANGE, SLOWHEAD], Total::Half)
                }),
                f(FetchOp {
                    chunk: Some(5),
                    ..fetch(2, &[EPISODE, NORANGE, SLOWHEAD], Total::Exact)
                }),
                secs(5),
            ]),
        ),
        (
            "35-resource-changes",
            s(vec![
                f(fetch(0, &[EPISODE, BYTEWISE, SLOWHEAD], Total::Exact)),
                ms(10),
                OFFLINE,
                Op::Change {
                    fetch: 0,
                    record: 0,
                },
                Op::Change {
                    fetch: 0,
                    record: 1,
                },
                Op::Change {
                    fetch: 0,
                    record: 2,
                },
                ONLINE,
                MINUTE,
            ]),
        ),
        (
            "36-change-while-paused",
            s(vec![
                f(fetch(1, &[NORANGE, EPISODE], Total::Unlimited)),
                ms(10),
                Op::Pause(0),
                Op::Change {
                    fetch: 0,
                    record: 0,
                },
                Op::Change {
                    fetch: 0,
                    record: 1,
                },
                Op::Restart,
                Op::Resume(0),
                MINUTE,
            ]),
        ),
        (
            "37-prompt-restart-accept",
            s(vec![
                f(FetchOp {
                    prompt: true,
                    ..fetch(0, &[UPLOAD, EPISODE], Total::Unlimited)
                }),
                secs(1),
                Op::Restart,
                secs(1),
                Op::Answer {
                    fetch: 0,
                    accept: true,
                },
                MINUTE,
            ]),
        ),
        (
            "38-prompt-restart-refuse",
            s(vec![
                f(FetchOp {
                    prompt: true,
                    ..fetch(1, &[UPLOAD], Total::Unlimited)
                }),
                Op::Restart,
                Op::Answer {
                    fetch: 0,
                    accept: false,
                },
                MINUTE,
            ]),
        ),
        (
            "39-abort-then-crash",
            s(vec![
                f(fetch(0, &[EPISODE, NORANGE], Total::Unlimited)),
                ms(30),
                Op::AbortThenCrash(0),
                MINUTE,
            ]),
        ),
        (
            "40-always-ready-abort-inside",
            s(vec![
                Op::AlwaysReady(true),
                f(FetchOp {
                    chunk: Some(3),
                    first_faults: Some((0, vec![Hold])),
                    ..fetch(2, &[EPISODE, SMALL], Total::Unlimited)
                }),
                Op::AbortInside {
                    fetch: 0,
                    record: 0,
                    at: 100,
                },
                Op::Release {
                    fetch: 0,
                    record: 0,
                },
                MINUTE,
            ]),
        ),
        (
            "41-always-ready-pause-restart",
            s(vec![
                Op::AlwaysReady(true),
                f(FetchOp {
                    first_faults: Some((0, vec![Hold])),
                    ..fetch(0, &[NORANGE, EPISODE], Total::Unlimited)
                }),
                Op::Pause(0),
                Op::Restart,
                Op::Release {
                    fetch: 0,
                    record: 0,
                },
                Op::Resume(0),
                Op::AlwaysReady(false),
                MINUTE,
            ]),
        ),
    ]
}

#[test]
fn scripts_survive_encoding() {
    for (name, script) in seeds() {
        let bytes = script.to_bytes();
        assert_eq!(
            Script::from_bytes(&bytes).unwrap(),
            script,
            "{name} decodes back"
        );
    }
}

#[test]
fn every_byte_string_decodes() {
    for data in [&[][..], &[0], &[255; 7], &[3, 9, 200, 1, 2, 3, 4, 5, 6]] {
        let script = Script::from_bytes(data).unwrap();
        assert!(script.ops.len() <= MAX_OPS);
    }
}

#[test]
#[ignore = "writes fuzz/seeds/engine_script/"]
fn write_engine_script_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/engine_script");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, script) in seeds() {
        std::fs::write(dir.join(name), script.to_bytes()).unwrap();
    }
}
