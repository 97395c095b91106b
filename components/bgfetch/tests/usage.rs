//! The program as a person and a script use it (issue 17 items 11, 12, 13 and 15; issue 11's
//! disk quota): the built binary against servers the tests start on 127.0.0.1.

mod common;

use bgfetch::server::Route;
use common::{Bed, code, held, text};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Item 11: a query holding the store for a moment (it answers from the store when no process
/// runs) does not make a `fetch` fail: the fetch waits for it.
#[test]
fn a_query_holding_the_store_does_not_make_a_fetch_fail() {
    let bed = Bed::new(vec![("/a.bin", Route::bytes(vec![1u8; 1000]))]);
    // What `bgfetch ids` does while no process runs: it opens the store.
    let query = background_fetch_redb::RedbStore::open(&bed.store, Default::default()).unwrap();
    let mut fetch = bed.spawn(&["fetch", "f", &bed.url("/a.bin")]);
    let mut stderr = fetch.stderr.take().unwrap();
    Bed::read_until(&mut stderr, "waiting for the store");
    drop(query);
    let o = Bed::finish(fetch, Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", text(&o));
}

/// Item 12: with stdout a terminal and stderr redirected, nothing is drawn into the file and no
/// message is lost (the display follows stderr).
#[test]
fn with_stderr_redirected_messages_are_not_lost() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: script(1) is not installed (apt-get install bsdutils)");
        return;
    }
    let bed = Bed::new(vec![("/a.bin", Route::bytes(vec![1u8; 1000]))]);
    let out = bed.out();
    let err = bed.dir.path().join("err.log");
    let typescript = bed.dir.path().join("typescript");
    let inner = format!(
        "'{}' --store '{}' fetch f '{}' --out '{}' 2>'{}'",
        Bed::bin().to_string_lossy(),
        bed.store.display(),
        bed.url("/a.bin"),
        out.display(),
        err.display()
    );
    // script(1) gives the command a terminal for stdout; stderr goes to the file.
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &inner])
        .arg(&typescript)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let shown = format!(
        "{}{}",
        std::fs::read_to_string(&typescript).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    assert!(shown.contains("backgroundfetchsuccess"), "{shown:?}");
    assert!(shown.contains("saved"), "{shown:?}");
    assert!(out.join("a.bin").exists());
}

/// Item 13: a URL without a scheme is refused with a message naming it, not fetched from
/// localhost.
#[test]
fn a_url_without_a_scheme_is_refused_naming_it() {
    let bed = Bed::new(vec![]);
    let o = bed.run(&["fetch", "x", "example.com/file.iso", "--detach"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("example.com/file.iso") && err.contains("https://example.com/file.iso"),
        "{err}"
    );
    assert!(bed.run(&["ids"]).stdout.is_empty(), "nothing registered");
    // With --origin, a page-relative URL is what the page would fetch.
    let bed = Bed::new(vec![("/rel/a.txt", Route::bytes(&b"rel"[..]))]);
    let o = bed.run(&["fetch", "r", "rel/a.txt", "--origin", &bed.url("/")]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

/// Issue 11: quota comes from the disk: a downloadTotal that cannot fit is a QuotaExceededError
/// at fetch() (exit 2), before anything is fetched.
#[test]
fn a_download_total_larger_than_the_disk_is_a_quota_exceeded_error() {
    let bed = Bed::new(vec![("/a.bin", Route::bytes(vec![1u8; 1000]))]);
    let o = bed.run(&[
        "fetch",
        "big",
        &bed.url("/a.bin"),
        "--download-total",
        "1000000000000000000",
        "--detach",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("QuotaExceededError"),
        "{}",
        text(&o)
    );
    assert!(bed.server.log().is_empty());
}

fn signal_then_run(signal: &str, expected: i32) {
    let bed = Bed::new(vec![("/a.bin", held(vec![5u8; 300_000], 100_000))]);
    let out = bed.out();
    let child = bed.spawn(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/a.bin", 1);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = Bed::finish(child, Duration::from_secs(60));
    assert_eq!(code(&o), expected, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bgfetch run"),
        "{}",
        text(&o)
    );
    bed.release("/a.bin");
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("a.bin")).unwrap(),
        vec![5u8; 300_000]
    );
}

/// Item 15: SIGTERM exits 143 (128 + 15), the fetch paused for `run`.
#[test]
fn sigterm_exits_143_and_run_continues() {
    signal_then_run("-TERM", 143);
}

/// Item 15: SIGHUP (the terminal closed) pauses the fetch like SIGINT, exit 129.
#[test]
fn sighup_exits_129_and_run_continues() {
    signal_then_run("-HUP", 129);
}

/// Item 15: a failure names the URLs that failed and their status.
#[test]
fn a_failure_names_the_url_and_its_status() {
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    let o = bed.run(&["fetch", "job", &bed.url("/a"), &bed.url("/missing")]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&bed.url("/missing")) && err.contains("404"),
        "{err}"
    );
}

/// Item 15: `--json` is honoured by the queries.
#[test]
fn json_ids_is_a_json_array() {
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "one", &bed.url("/a"), "--detach"])),
        0
    );
    let o = bed.run(&["--json", "ids"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v, serde_json::json!(["one"]));
}

/// Item 15: `get` and `abort` under `--json` print JSON too (an object, a boolean), and a
/// fetch that is not there is an error on stderr with nothing on stdout to misparse.
#[test]
fn json_get_and_abort_print_json() {
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "one", &bed.url("/a"), "--detach"])),
        0
    );
    let o = bed.run(&["--json", "get", "one"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["id"], "one", "{v}");
    assert_eq!(v["result"], "", "{v}");
    let o = bed.run(&["--json", "get", "other"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let o = bed.run(&["--json", "abort", "one"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v, serde_json::json!(true));
    let o = bed.run(&["--json", "abort", "one"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v, serde_json::json!(false), "{}", text(&o));
}

/// Item 15: a closed stdout (`bgfetch ids | head -0`) is not a crash.
#[test]
fn queries_do_not_panic_on_a_closed_stdout() {
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "one", &bed.url("/a"), "--detach"])),
        0
    );
    for args in [vec!["ids"], vec!["abort", "nothing"], vec!["get", "one"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = bed
            .cmd(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("internal error") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert_ne!(code(&o), 101, "{args:?}: {err}");
    }
}

/// Issue 17's "done when": `--help` (top level and `fetch`) and the README say what `--out`
/// delivery does: when files appear, what a clash does, what exit 0 guarantees.
#[test]
fn help_and_readme_describe_out_delivery() {
    let bed = Bed::new(vec![]);
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    for (what, text) in [
        (
            "--help",
            String::from_utf8(bed.run(&["--help"]).stdout).unwrap(),
        ),
        (
            "fetch --help",
            String::from_utf8(bed.run(&["fetch", "--help"]).stdout).unwrap(),
        ),
        ("README.md", readme),
    ] {
        for needle in [
            "before the fetch",
            "temporary file",
            "hard-linked",
            "-1, -2",
            "never replaced",
            "Exit 0",
            "synced",
            "bgfetch run",
            "143",
        ] {
            assert!(text.contains(needle), "{what} does not say {needle:?}");
        }
    }
}
