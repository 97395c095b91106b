//! End-to-end tests: the built `bgfetch` binary against servers the tests start on 127.0.0.1.

mod common;

use bgfetch::server::{Body, Route};
use common::{Bed, code, generated, json_events, text};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn success_with_out_writes_every_file_byte_for_byte() {
    let a = generated(300_000, 1);
    let bed = Bed::new(vec![
        ("/files/a.bin", Route::bytes(a.clone())),
        ("/files/b.txt", Route::bytes(&b"hello"[..])),
        ("/other/b.txt", Route::bytes(&b"second b"[..])),
    ]);
    let out = bed.out();
    let o = bed.run(&[
        "--json",
        "fetch",
        "job",
        &bed.url("/files/a.bin"),
        &bed.url("/files/b.txt"),
        &bed.url("/other/b.txt"),
        "--title",
        "Three files",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read(out.join("a.bin")).unwrap() == a);
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(out.join("b-1.txt")).unwrap(),
        b"second b",
        "a colliding name is made unique"
    );
    let all = json_events(&o);
    // Then one `saved` event per file, naming it.
    let (saved, events): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|e| e["event"] == "saved");
    let mut paths: Vec<_> = saved
        .iter()
        .map(|e| {
            (
                e["url"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            (
                bed.url("/files/a.bin"),
                out.join("a.bin").to_str().unwrap().to_owned()
            ),
            (
                bed.url("/files/b.txt"),
                out.join("b.txt").to_str().unwrap().to_owned()
            ),
            (
                bed.url("/other/b.txt"),
                out.join("b-1.txt").to_str().unwrap().to_owned()
            ),
        ]
    );
    assert_eq!(events.first().unwrap()["event"], "registered");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "backgroundfetchsuccess");
    assert_eq!(last["downloaded"], 300_000 + 5 + 8);
    assert_eq!(last["result"], "success");
    for e in &events {
        for field in [
            "event",
            "id",
            "downloaded",
            "downloadTotal",
            "uploaded",
            "uploadTotal",
            "result",
            "failureReason",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    // Settled: nothing is active any more.
    let ids = bed.run(&["ids"]);
    assert_eq!(code(&ids), 0);
    assert!(ids.stdout.is_empty());
}

#[test]
fn a_404_among_several_files_fails_with_bad_status() {
    let bed = Bed::new(vec![
        ("/a", Route::bytes(&b"a"[..])),
        ("/c", Route::bytes(&b"c"[..])),
    ]);
    let o = bed.run(&[
        "fetch",
        "job",
        &bed.url("/a"),
        &bed.url("/missing"),
        &bed.url("/c"),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad-status"),
        "{}",
        text(&o)
    );
}

#[test]
fn download_total_is_enforced_strictly() {
    let bed = Bed::new(vec![("/f", Route::bytes(vec![7u8; 10_000]))]);
    let o = bed.run(&[
        "--json",
        "fetch",
        "small",
        &bed.url("/f"),
        "--download-total",
        "9999",
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(
        json_events(&o).last().unwrap()["failureReason"],
        "download-total-exceeded"
    );
    let o = bed.run(&[
        "--json",
        "fetch",
        "exact",
        &bed.url("/f"),
        "--download-total",
        "10000",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn sigkill_mid_download_then_run_completes_with_range() {
    let len = 6_000_000;
    let body = generated(len, 3);
    let bed = Bed::new(vec![(
        "/big.bin",
        Route::ok(Body::Generated { len, seed: 3 }).rate(3_000_000),
    )]);
    let out = bed.out();
    let mut child = bed.spawn(&[
        "fetch",
        "big",
        &bed.url("/big.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_downloaded("big", 1_000_000);
    // Past the store's group commit interval (500 ms), so some bytes are durable.
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        std::fs::read(out.join("big.bin")).unwrap() == body,
        "byte for byte"
    );
    assert_eq!(
        common::files_in(&out),
        vec!["big.bin"],
        "no temporary file left by the killed process"
    );
    let log = bed.server.requests_for("/big.bin");
    assert!(log.len() >= 2, "{log:?}");
    let range = log
        .last()
        .unwrap()
        .range
        .clone()
        .expect("the resumed request asks for a range");
    let start: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(start > 0, "{range}");
}

#[cfg(unix)]
#[test]
fn sigint_exits_130_with_the_fetch_paused_then_run_completes() {
    let len = 4_000_000;
    let body = generated(len, 4);
    let bed = Bed::new(vec![(
        "/f.bin",
        Route::ok(Body::Generated { len, seed: 4 }).rate(2_000_000),
    )]);
    let out = bed.out();
    let child = bed.spawn(&[
        "fetch",
        "f",
        &bed.url("/f.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_downloaded("f", 200_000);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 130, "{}", text(&o));
    let get = bed.run(&["get", "f"]);
    assert_eq!(code(&get), 0, "{}", text(&get));
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read(out.join("f.bin")).unwrap() == body);
}

#[test]
fn abort_from_a_second_process() {
    let bed = Bed::new(vec![(
        "/slow",
        Route::ok(Body::Generated {
            len: 50_000_000,
            seed: 1,
        })
        .rate(1_000_000),
    )]);
    let child = bed.spawn(&["--json", "fetch", "slow", &bed.url("/slow")]);
    bed.wait_downloaded("slow", 1);
    let ids = bed.run(&["ids"]);
    assert_eq!(String::from_utf8_lossy(&ids.stdout).trim(), "slow");
    let o = bed.run(&["abort", "slow"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "true");
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1, "{}", text(&o));
    let last = json_events(&o).pop().unwrap();
    assert_eq!(last["event"], "backgroundfetchabort");
    assert_eq!(last["failureReason"], "aborted");
    let again = bed.run(&["abort", "slow"]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "false");
}

#[test]
fn a_duplicate_active_id_is_rejected_with_type_error() {
    let bed = Bed::new(vec![("/f", Route::bytes(vec![1u8; 100]))]);
    let o = bed.run(&["fetch", "dup", &bed.url("/f"), "--detach"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = bed.run(&["fetch", "dup", &bed.url("/f")]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("TypeError: "),
        "{}",
        text(&o)
    );
    // The detached fetch is still there, and `run` finishes it.
    assert_eq!(
        String::from_utf8_lossy(&bed.run(&["ids"]).stdout).trim(),
        "dup"
    );
    assert_eq!(code(&bed.run(&["run"])), 0);
}

#[test]
fn fetch_rejections_exit_2_with_the_dom_error() {
    let bed = Bed::new(vec![]);
    let o = bed.run(&["fetch", "none"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("TypeError: "),
        "{}",
        text(&o)
    );
    let o = bed.run(&["fetch", "creds", "https://user:pass@example.com/x"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let o = bed.run(&["fetch", "bad", "http://[::1"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn a_corrupt_store_exits_3_with_a_clear_message() {
    let bed = Bed::new(vec![]);
    let junk = b"this is not a store, just some text that happens to be here";
    std::fs::write(&bed.store, junk).unwrap();
    for args in [
        vec!["ids"],
        vec!["run"],
        vec!["fetch", "x", "http://127.0.0.1:1/"],
    ] {
        let o = bed.run(&args);
        assert_eq!(code(&o), 3, "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(bed.store.to_str().unwrap()),
            "names the file: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read(&bed.store).unwrap(),
        junk,
        "nothing is deleted or rewritten"
    );
}

#[test]
fn usage_errors_exit_3() {
    let bed = Bed::new(vec![]);
    assert_eq!(code(&bed.run(&["frobnicate"])), 3);
    assert_eq!(code(&bed.run(&["fetch"])), 3);
    assert_eq!(
        code(&bed.run(&["fetch", "x", "--download-total", "lots"])),
        3
    );
    assert_eq!(code(&bed.run(&["--help"])), 0);
}

#[test]
fn queries_are_forwarded_to_the_running_process() {
    let body = generated(3_000_000, 9);
    let bed = Bed::new(vec![
        ("/done.txt", Route::bytes(&b"finished early"[..])),
        (
            "/slow.bin",
            Route::ok(Body::Generated {
                len: 3_000_000,
                seed: 9,
            })
            .rate(1_500_000),
        ),
    ]);
    let mut child = bed.spawn(&["fetch", "q", &bed.url("/done.txt"), &bed.url("/slow.bin")]);
    let v = bed.wait_downloaded("q", 100_000);
    assert_eq!(v["id"], "q");
    assert_eq!(v["result"], "");
    assert_eq!(v["recordsAvailable"], true);
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["method"], "GET");
    // match while the fetch runs: the completed record, and the one still downloading (streamed
    // until it completes).
    let o = bed.run(&["match", "q", &bed.url("/done.txt")]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(o.stdout, b"finished early");
    let file = bed.dir.path().join("slow.out");
    let o = bed.run(&[
        "match",
        "q",
        &bed.url("/slow.bin"),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read(&file).unwrap() == body);
    let o = bed.run(&["match", "q", &bed.url("/nothing")]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn uploads_are_sent_and_their_answers_stored() {
    let bed = Bed::new(vec![("/echo", Route::ok(Body::Echo))]);
    let file = bed.dir.path().join("up.txt");
    std::fs::write(&file, b"upload me").unwrap();
    let out = bed.out();
    let o = bed.run(&[
        "--json",
        "fetch",
        "up",
        "--upload",
        "PUT",
        &bed.url("/echo"),
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let last = json_events(&o)
        .into_iter()
        .rfind(|e| e["event"] == "backgroundfetchsuccess")
        .unwrap();
    assert_eq!(
        (last["uploadTotal"].as_u64(), last["uploaded"].as_u64()),
        (Some(9), Some(9))
    );
    assert_eq!(std::fs::read(out.join("echo")).unwrap(), b"upload me");
}

#[test]
fn a_failed_fetch_leaves_nothing_in_out() {
    let bed = Bed::new(vec![
        ("/a.bin", Route::bytes(vec![1u8; 200_000])),
        ("/b.bin", Route::bytes(vec![2u8; 10])),
    ]);
    let out = bed.out();
    let o = bed.run(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        &bed.url("/missing.bin"),
        &bed.url("/b.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left in --out: {left:?}");
}

#[test]
fn a_store_locked_by_a_process_that_does_not_answer_exits_3() {
    let bed = Bed::new(vec![]);
    // Another "process" holds the store and serves no control socket.
    let held = background_fetch_redb::RedbStore::open(&bed.store, Default::default()).unwrap();
    // Each command waits a few seconds for a store that a query might hold for a moment: run
    // them side by side.
    let children: Vec<_> = [
        vec!["ids"],
        vec!["get", "x"],
        vec!["run"],
        vec!["fetch", "x", "http://127.0.0.1:1/f"],
    ]
    .into_iter()
    .map(|args| (bed.spawn(&args), args))
    .collect();
    for (child, args) in children {
        let o = child.wait_with_output().unwrap();
        assert_eq!(code(&o), 3, "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("locked") && err.contains(bed.store.to_str().unwrap()),
            "{args:?}: {err}"
        );
    }
    drop(held);
}
