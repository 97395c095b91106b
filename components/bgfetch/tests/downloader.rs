//! bgfetch as a downloader with curl's, wget's and aria2c's conventions (issue 14): headers,
//! integrity, input files, control from a second terminal (pause, resume, ls), politeness
//! (--limit-rate, --parallel), per-record events, and help, completions and man page that agree.

mod common;

use bgfetch::server::Route;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sha256-BASE64` of `body`.
fn sri(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("sha256-{}", base64_std(digest.as_ref()))
}

/// Standard base64 with padding (test-side: the program never encodes).
fn base64_std(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn headers_are_sent_and_forbidden_ones_refused() {
    let bed = Bed::new(vec![("/h", Route::bytes("ok"))]);
    let o = bed.run(&[
        "fetch",
        "h",
        &bed.url("/h"),
        "-H",
        "Authorization: Bearer t0ken",
        "--header",
        "X-Trace:  abc ",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let logged = &bed.server.requests_for("/h")[0];
    let h = |n: &str| {
        logged
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h("authorization"), Some("Bearer t0ken"));
    assert_eq!(h("x-trace"), Some("abc"));
    // A forbidden header is a clear error, and nothing is registered.
    for (header, name) in [
        ("Cookie: a=b", "Cookie"),
        ("Proxy-Authorization: x", "Proxy-Authorization"),
    ] {
        let o = bed.run(&["fetch", "bad", &bed.url("/h"), "-H", header]);
        assert_eq!(code(&o), 3, "{}", text(&o));
        assert!(
            stderr(&o).contains(&format!("{name} is a forbidden request header")),
            "{}",
            text(&o)
        );
    }
    let o = bed.run(&["fetch", "bad", &bed.url("/h"), "-H", "no colon"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(stderr(&o).contains("'Name: value'"), "{}", text(&o));
    // A name the Request constructor refuses: fetch() is rejected with its TypeError.
    let o = bed.run(&["fetch", "bad", &bed.url("/h"), "-H", "Bad Name: x"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(stderr(&o).contains("TypeError"), "{}", text(&o));
    assert!(bed.run(&["ids"]).stdout.is_empty());
}

#[test]
fn integrity_is_checked_per_url() {
    let good = b"the expected bytes".to_vec();
    let bed = Bed::new(vec![
        ("/good", Route::bytes(good.clone())),
        ("/bad", Route::bytes("tampered")),
    ]);
    let out = bed.out();
    let o = bed.run(&[
        "--json",
        "fetch",
        "sri",
        &bed.url("/good"),
        &bed.url("/bad"),
        "--integrity",
        &bed.url("/good"),
        &sri(&good),
        "--integrity",
        &bed.url("/bad"),
        &sri(&good),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let records: Vec<Value> = json_events(&o)
        .into_iter()
        .filter(|e| e["event"] == "record")
        .collect();
    let result = |url: &str| {
        records
            .iter()
            .find(|r| r["url"] == url)
            .map(|r| r["result"].clone())
    };
    assert_eq!(
        result(&bed.url("/good")),
        Some("success".into()),
        "{records:?}"
    );
    assert_eq!(
        result(&bed.url("/bad")),
        Some("fetch-error".into()),
        "{records:?}"
    );
    // Bad metadata, or a URL that is not fetched, is a usage error.
    let o = bed.run(&[
        "fetch",
        "x",
        &bed.url("/good"),
        "--integrity",
        &bed.url("/good"),
        "md5-abc",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(stderr(&o).contains("md5-abc"), "{}", text(&o));
    let o = bed.run(&[
        "fetch",
        "x",
        &bed.url("/good"),
        "--integrity",
        &bed.url("/nope"),
        &sri(&good),
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(stderr(&o).contains("not one of the URLs"), "{}", text(&o));
}

#[test]
fn an_input_file_gives_urls_names_and_integrity_and_stdin_works_too() {
    let a = generated(5000, 1);
    let bed = Bed::new(vec![
        ("/x/a.bin", Route::bytes(a.clone())),
        ("/x/b.bin", Route::bytes("bee")),
        ("/x/c.bin", Route::bytes("sea")),
    ]);
    let out = bed.out();
    let list = bed.dir.path().join("urls.txt");
    std::fs::write(
        &list,
        format!(
            "# a comment, then a blank line\n\n{} first.bin {}\n{}   \n",
            bed.url("/x/a.bin"),
            sri(&a),
            bed.url("/x/b.bin"),
        ),
    )
    .unwrap();
    let o = bed.run(&[
        "fetch",
        "list",
        &bed.url("/x/c.bin"),
        "-i",
        list.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(files_in(&out), vec!["b.bin", "c.bin", "first.bin"]);
    assert!(std::fs::read(out.join("first.bin")).unwrap() == a);
    // "-": standard input.
    let out2 = bed.dir.path().join("out2");
    let mut child = bed
        .cmd(&[
            "fetch",
            "stdin",
            "--input-file",
            "-",
            "--out",
            out2.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.take().unwrap(),
        "{} named.txt",
        bed.url("/x/b.bin")
    )
    .unwrap();
    let o = Bed::finish(child, Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(std::fs::read(out2.join("named.txt")).unwrap(), b"bee");
    // A bad line is an error that names it; nothing is registered.
    std::fs::write(
        &list,
        format!("{}\n{} a/b\n", bed.url("/x/b.bin"), bed.url("/x/c.bin")),
    )
    .unwrap();
    let o = bed.run(&["fetch", "bad", "-i", list.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(stderr(&o).contains("line 2"), "{}", text(&o));
    let o = bed.run(&["fetch", "bad", "-i", "/nonexistent/list"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(stderr(&o).contains("/nonexistent/list"), "{}", text(&o));
    assert!(bed.run(&["ids"]).stdout.is_empty());
}

fn ls(bed: &Bed) -> Vec<Value> {
    let o = bed.run(&["--json", "ls"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn pause_resume_and_ls_from_a_second_terminal() {
    let body = generated(200_000, 5);
    let bed = Bed::new(vec![
        ("/p.bin", held(body.clone(), 50_000)),
        ("/q.bin", Route::bytes("q")),
    ]);
    // No store yet: an empty table.
    let o = bed.run(&["ls"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("ID"),
        "{}",
        text(&o)
    );
    let out = bed.out();
    let child = bed.spawn(&[
        "fetch",
        "pp",
        &bed.url("/p.bin"),
        &bed.url("/q.bin"),
        "--title",
        "Two files",
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held_guarded("/p.bin", 1);
    bed.wait_downloaded("pp", 50_001);
    let rows = ls(&bed);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], "pp");
    assert_eq!(rows[0]["title"], "Two files");
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(rows[0]["records"], 2);
    assert!(rows[0]["downloaded"].as_u64().unwrap() >= 50_001);
    let o = bed.run(&["pause", "pp"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "true");
    assert_eq!(ls(&bed)[0]["state"], "paused");
    // The table for people.
    let o = bed.run(&["ls"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in [
        "ID",
        "TITLE",
        "STATE",
        "DOWNLOADED / TOTAL",
        "RATE",
        "RECORDS DONE",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("pp ") && row.contains("Two files") && row.contains("paused"),
        "{table}"
    );
    // Pausing again changes nothing; an unknown id is not found.
    assert_eq!(
        String::from_utf8_lossy(&bed.run(&["pause", "pp"]).stdout).trim(),
        "false"
    );
    assert_eq!(code(&bed.run(&["pause", "nope"])), 1);
    // Resumed, it completes (the held response goes on once released).
    let o = bed.run(&["resume", "pp"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "true",
        "{}",
        text(&o)
    );
    bed.release("/p.bin");
    let o = Bed::finish(child, Duration::from_secs(120));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read(out.join("p.bin")).unwrap() == body);
}

#[test]
fn a_fetch_registered_with_no_process_running_is_listed_as_stopped() {
    let bed = Bed::new(vec![("/d.bin", Route::bytes("d"))]);
    let o = bed.run(&["fetch", "later", &bed.url("/d.bin"), "--detach"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let rows = ls(&bed);
    assert_eq!(rows[0]["state"], "stopped", "{rows:?}");
    assert_eq!(rows[0]["recordsDone"], 0);
    assert_eq!(rows[0]["records"], 1);
    // Paused from here, it stays paused in the store.
    assert_eq!(
        String::from_utf8_lossy(&bed.run(&["pause", "later"]).stdout).trim(),
        "true"
    );
    assert_eq!(ls(&bed)[0]["state"], "paused");
    assert_eq!(
        String::from_utf8_lossy(&bed.run(&["resume", "later"]).stdout).trim(),
        "true"
    );
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn parallel_limits_the_records_downloading_at_once() {
    let bed = Bed::new(vec![
        ("/one", held(generated(10_000, 1), 0)),
        ("/two", Route::bytes("two")),
    ]);
    let child = bed.spawn(&[
        "fetch",
        "serial",
        &bed.url("/one"),
        &bed.url("/two"),
        "--parallel",
        "1",
    ]);
    bed.wait_held_guarded("/one", 1);
    // The first record holds the only slot: the second has not been asked for.
    let o = bed.run(&["get", "serial"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(bed.server.requests_for("/two").is_empty());
    bed.release("/one");
    let o = Bed::finish(child, Duration::from_secs(120));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(bed.server.requests_for("/two").len(), 1);
    let o = bed.run(&["fetch", "x", &bed.url("/two"), "--parallel", "0"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
}

#[test]
fn limit_rate_is_parsed_like_curl_s_and_kept_with_the_fetch() {
    let bed = Bed::new(vec![("/r.bin", Route::bytes(generated(20_000, 2)))]);
    let o = bed.run(&["fetch", "r", &bed.url("/r.bin"), "--limit-rate", "2X"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(stderr(&o).contains("\"2X\" is not a rate"), "{}", text(&o));
    assert!(bed.run(&["ids"]).stdout.is_empty());
    // Registered with a limit, run by another process: it completes under it.
    let o = bed.run(&[
        "fetch",
        "r",
        &bed.url("/r.bin"),
        "--limit-rate",
        "10M",
        "--detach",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(ls(&bed)[0]["limitRate"], 10 * 1024 * 1024);
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn a_failed_record_says_why_in_its_event_and_on_stderr() {
    // A port where nothing listens: connection refused (temporary: retried, here not).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let bed = Bed::new(vec![
        ("/ok", Route::bytes("ok")),
        ("/404", Route::status(404, "not here")),
    ]);
    let refused = format!("http://127.0.0.1:{port}/x");
    // --retry 0: one attempt, so the refused record fails at once.
    let o = bed.run(&[
        "--json",
        "fetch",
        "why",
        &bed.url("/ok"),
        &bed.url("/404"),
        &refused,
        "--retry",
        "0",
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let records: Vec<Value> = json_events(&o)
        .into_iter()
        .filter(|e| e["event"] == "record")
        .collect();
    let by = |url: &str| records.iter().find(|r| r["url"] == url).cloned().unwrap();
    let ok = by(&bed.url("/ok"));
    assert_eq!(
        (
            ok["result"].as_str(),
            ok["status"].as_u64(),
            ok["bytes"].as_u64()
        ),
        (Some("success"), Some(200), Some(2))
    );
    let nf = by(&bed.url("/404"));
    assert_eq!(nf["result"], "bad-status");
    assert_eq!(nf["status"], 404);
    assert_eq!(nf["cause"], "http-status");
    let r = by(&refused);
    assert_eq!(r["result"], "fetch-error", "{r}");
    assert_eq!(r["cause"], "connect", "{r}");
    assert!(r["status"].is_null());
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&o)
    );
}

/// The `--long` options a help text lists.
fn long_options(help: &str) -> Vec<String> {
    let mut v: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|w| w.len() > 2)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn help_and_the_man_pages_agree() {
    let bed = Bed::new(vec![]);
    let help = bed.run(&["--help"]);
    assert_eq!(code(&help), 0);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for must in [
        "Exit codes:",
        "Environment:",
        "HTTPS_PROXY",
        "SSL_CERT_FILE",
        "BGFETCH_STORE",
    ] {
        assert!(help.contains(must), "--help lacks {must}: {help}");
    }
    let man = |args: &[&str]| {
        let o = bed.run(args);
        assert_eq!(code(&o), 0, "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fR", "")
    };
    let page = man(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH bgfetch"),
        "{page}"
    );
    for must in [
        "Exit codes:",
        "Environment:",
        "HTTPS_PROXY",
        "SSL_CERT_FILE",
    ] {
        assert!(page.contains(must), "the man page lacks {must}");
    }
    for sub in [
        "fetch",
        "run",
        "ls",
        "pause",
        "resume",
        "ids",
        "get",
        "abort",
        "match",
        "demo",
        "completions",
        "man",
    ] {
        let o = bed.run(&[sub, "--help"]);
        assert_eq!(code(&o), 0, "{sub}: {}", text(&o));
        let page = man(&["man", sub]);
        assert!(
            page.contains(&format!(".TH bgfetch-{sub}")),
            "{sub}: {page}"
        );
        for opt in long_options(&String::from_utf8_lossy(&o.stdout)) {
            assert!(page.contains(&opt), "bgfetch man {sub} lacks {opt}");
        }
    }
    let o = bed.run(&["man", "nope"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    for shell in ["bash", "zsh", "fish"] {
        let o = bed.run(&["completions", shell]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(
            script.contains("--limit-rate") && script.contains("pause"),
            "{shell}"
        );
    }
}
