//! `--out` delivery end to end (issue 17 items 2-7, issue 11's file names): the built binary
//! against servers the tests start on 127.0.0.1. Downloads are stopped at known points with the
//! server's hold gates, not with timing.

mod common;

use bgfetch::server::Route;
use common::{Bed, code, files_in, generated, held, json_events, text, wait_for};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Item 2: `--out` is checked before anything is registered or fetched.
#[test]
fn an_out_that_is_a_regular_file_is_refused_before_the_fetch_starts() {
    let bed = Bed::new(vec![("/a.bin", Route::bytes(vec![1u8; 1000]))]);
    let file = bed.dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let o = bed.run(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a directory"),
        "{}",
        text(&o)
    );
    assert!(bed.server.log().is_empty(), "nothing is fetched");
    assert!(bed.run(&["ids"]).stdout.is_empty(), "nothing is registered");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Item 2: an `--out` whose directories do not exist yet is made (as curl's `--create-dirs`
/// does), and the file is delivered into it.
#[test]
fn a_missing_nested_out_is_created() {
    let bed = Bed::new(vec![("/a.bin", Route::bytes(vec![7u8; 1000]))]);
    let out = bed.dir.path().join("x").join("y").join("z");
    let o = bed.run(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), vec![7u8; 1000]);
}

/// Item 2 (and 15: delivery errors on stderr): a delivery that fails keeps every byte in the
/// store, and `run` delivers once the cause is fixed.
#[test]
fn a_failed_delivery_keeps_the_download_for_run() {
    let a = generated(200_000, 2);
    let bed = Bed::new(vec![
        ("/a.bin", held(a.clone(), 100_000)),
        ("/b.txt", Route::bytes(&b"bee"[..])),
    ]);
    let out = bed.out();
    let child = bed.spawn(&[
        "fetch",
        "keep",
        &bed.url("/a.bin"),
        &bed.url("/b.txt"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/a.bin", 1);
    // The directory goes away and a file takes its place while the fetch runs.
    std::fs::rename(&out, bed.dir.path().join("moved")).unwrap();
    std::fs::write(&out, b"in the way").unwrap();
    bed.release("/a.bin");
    let o = Bed::finish(child, Duration::from_secs(120));
    assert_eq!(code(&o), 3, "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("bgfetch run"),
        "says how to go on: {}",
        text(&o)
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("could not"),
        "errors go to stderr: {}",
        text(&o)
    );
    // The cause is fixed; `run` delivers from the store.
    std::fs::remove_file(&out).unwrap();
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        std::fs::read(out.join("a.bin")).unwrap() == a,
        "byte for byte"
    );
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"bee");
    assert_eq!(
        bed.server.requests_for("/a.bin").len(),
        1,
        "not downloaded again"
    );
    assert!(bed.run(&["ids"]).stdout.is_empty());
}

/// Item 3: two fetches delivering files of one name into one directory at the same time.
#[test]
fn two_fetches_with_one_file_name_in_one_out_keep_their_own_bytes() {
    let x = generated(300_000, 11);
    let y = generated(300_000, 12);
    let bed = Bed::new(vec![
        ("/x/s.bin", held(x.clone(), 100_000)),
        ("/y/s.bin", held(y.clone(), 100_000)),
    ]);
    let out = bed.out();
    for (id, path) in [("one", "/x/s.bin"), ("two", "/y/s.bin")] {
        let o = bed.run(&[
            "fetch",
            id,
            &bed.url(path),
            "--out",
            out.to_str().unwrap(),
            "--detach",
        ]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    let child = bed.spawn(&["run"]);
    // Both are half way, each writing its temporary file.
    bed.wait_held("/x/s.bin", 1);
    bed.wait_held("/y/s.bin", 1);
    bed.release("/x/s.bin");
    bed.release("/y/s.bin");
    let o = Bed::finish(child, Duration::from_secs(120));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(files_in(&out), vec!["s-1.bin", "s.bin"]);
    let mut got = vec![
        std::fs::read(out.join("s.bin")).unwrap(),
        std::fs::read(out.join("s-1.bin")).unwrap(),
    ];
    got.sort();
    let mut want = vec![x, y];
    want.sort();
    assert!(got == want, "each file holds one fetch's bytes");
}

/// Item 4: a file created under the chosen name while the fetch ran is not replaced.
#[test]
fn a_file_created_during_the_download_is_never_overwritten() {
    let a = generated(200_000, 4);
    let bed = Bed::new(vec![("/a.bin", held(a.clone(), 50_000))]);
    let out = bed.out();
    let child = bed.spawn(&[
        "--json",
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/a.bin", 1);
    std::fs::write(out.join("a.bin"), b"mine").unwrap();
    bed.release("/a.bin");
    let o = Bed::finish(child, Duration::from_secs(120));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), b"mine");
    assert!(std::fs::read(out.join("a-1.bin")).unwrap() == a);
    let saved: Vec<_> = json_events(&o)
        .into_iter()
        .filter(|e| e["event"] == "saved")
        .collect();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["path"], out.join("a-1.bin").to_str().unwrap());
}

/// Item 5: a symlink planted where the old temporary name was is not followed.
#[test]
fn temporary_files_never_follow_a_planted_symlink() {
    let a = generated(100_000, 5);
    let bed = Bed::new(vec![("/s.bin", Route::bytes(a.clone()))]);
    let out = bed.out();
    std::fs::create_dir(&out).unwrap();
    let victim = bed.dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink("../victim", out.join(".s.bin.part")).unwrap();
    let o = bed.run(&[
        "fetch",
        "f",
        &bed.url("/s.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::read(out.join("s.bin")).unwrap() == a);
}

/// Item 5, by what the process asks of the kernel (a planted symlink at a random name cannot be
/// aimed in a test): in `--out`, every file is created exclusively (`O_EXCL`, or a hard link,
/// which never follows nor replaces a name), a rename replaces only one of the fetch's own
/// temporary names (a symlink planted there is replaced, never followed), and the final name is
/// taken with `RENAME_NOREPLACE`. A large body (hard-linked from the store) and a small one
/// (written out) are both checked.
#[test]
fn every_name_in_out_is_taken_exclusively() {
    if !strace_works() {
        return;
    }
    let bed = Bed::new(vec![
        ("/big.bin", Route::bytes(generated(300_000, 9))),
        ("/small.bin", Route::bytes(vec![4u8; 1000])),
    ]);
    let out = bed.out();
    let t = traced_fetch(
        &bed,
        &[],
        "open,openat,openat2,creat,link,linkat,symlink,symlinkat,rename,renameat,renameat2",
        &["/big.bin", "/small.bin"],
    );
    let dir = format!("\"{}/", out.to_str().unwrap());
    // The name a call makes or replaces: its last quoted path.
    let target = |l: &str| -> String {
        let q: Vec<&str> = l.split('"').collect();
        q.get(q.len().saturating_sub(2)).unwrap_or(&"").to_string()
    };
    let (mut exclusive, mut renamed_over_own, mut no_replace) = (0, 0, 0);
    for l in t.lines().filter(|l| l.contains(&dir)) {
        let name = target(l);
        let in_out = name.starts_with(out.to_str().unwrap());
        if l.contains("open") && l.contains("O_CREAT") {
            assert!(l.contains("O_EXCL"), "a create that is not exclusive: {l}");
            exclusive += 1;
        } else if l.contains("link(") || l.contains("linkat(") {
            assert!(!l.contains("symlink"), "a symlink made: {l}");
            exclusive += 1;
        } else if l.contains("rename") && in_out {
            let file = name.rsplit('/').next().unwrap_or_default();
            if l.contains("RENAME_NOREPLACE") {
                no_replace += 1;
            } else {
                assert!(
                    file.starts_with(".bgfetch-") && file.ends_with(".part"),
                    "a rename that may replace a name the fetch did not choose: {l}"
                );
                renamed_over_own += 1;
            }
        }
    }
    assert!(exclusive >= 2, "{exclusive} exclusive creates:\n{t}");
    assert_eq!(no_replace, 2, "the two final names:\n{t}");
    assert!(renamed_over_own <= 2, "{t}");
    let mut files = files_in(&out);
    files.sort();
    assert_eq!(files, vec!["big.bin", "small.bin"]);
}

/// Item 6: the success event fires again after a crash that followed delivery; the files are
/// not delivered twice. The crash comes while a `match` reader (which never reads) keeps the
/// store from dropping the records, after the file is in place.
#[test]
fn delivery_repeated_after_a_crash_writes_no_copies() {
    let a = generated(4_000_000, 6);
    let bed = Bed::new(vec![("/a.bin", held(a.clone(), 1_000_000))]);
    let out = bed.out();
    let mut runner = bed.spawn(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/a.bin", 1);
    // A reader that never reads: the records stay in the store after the event.
    let mut reader = bed
        .cmd(&["match", "f", &bed.url("/a.bin")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its first byte shows it holds the body; from now on nobody reads it.
    let mut first = [0u8; 1];
    reader
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    bed.release("/a.bin");
    wait_for("a.bin delivered", || out.join("a.bin").exists());
    runner.kill().unwrap(); // SIGKILL: the event never finished
    runner.wait().unwrap();
    let _ = reader.kill();
    let _ = reader.wait();
    let o = bed.run(&["run"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("backgroundfetchsuccess"),
        "the event fired again: {}",
        text(&o)
    );
    assert_eq!(files_in(&out), vec!["a.bin"], "no second copy");
    assert!(std::fs::read(out.join("a.bin")).unwrap() == a);
    assert!(bed.run(&["ids"]).stdout.is_empty());
    assert_eq!(
        code(&bed.run(&["match", "f", &bed.url("/a.bin")])),
        1,
        "the store dropped the records"
    );
}

/// Item 7: the directory is synced after the renames, before exit 0 (seen with strace).
#[test]
fn the_out_directory_is_synced_after_the_renames() {
    if !strace_works() {
        return;
    }
    let bed = Bed::new(vec![
        ("/a.bin", Route::bytes(vec![1u8; 1000])),
        ("/b.bin", Route::bytes(vec![2u8; 1000])),
    ]);
    let out = bed.out();
    let t = traced_fetch(
        &bed,
        &["-y"],
        "fsync,fdatasync,rename,renameat,renameat2,link,linkat",
        &["/a.bin", "/b.bin"],
    );
    let out_s = out.to_str().unwrap();
    let lines: Vec<&str> = t.lines().collect();
    let last_rename = lines
        .iter()
        .rposition(|l| {
            (l.contains("rename") || l.contains("link("))
                && (l.contains(&format!("{out_s}/b.bin\""))
                    || l.contains(&format!("{out_s}/a.bin\"")))
        })
        .unwrap_or_else(|| panic!("no rename into {out_s}:\n{t}"));
    let dir_sync = lines
        .iter()
        .rposition(|l| l.contains("fsync(") && l.contains(&format!("<{out_s}>")));
    assert!(
        dir_sync.is_some_and(|s| s > last_rename),
        "no fsync of {out_s} after the last rename:\n{t}"
    );
}

/// Issue 12: delivering a small body makes one new file in `--out`, no more. A temporary name
/// reserved by creating an empty file that the export then replaced cost a second inode per
/// record and freed one: ext4 scans the inodes it freed recently at every file it creates
/// (`recently_deleted`, seen with perf), so 1,000 files took 2.3 s to deliver, and more the
/// more records there were.
#[test]
fn a_small_body_is_delivered_with_one_new_file() {
    if !strace_works() {
        return;
    }
    let bed = Bed::new(vec![
        ("/a.bin", Route::bytes(vec![1u8; 1000])),
        ("/b.bin", Route::bytes(vec![2u8; 1000])),
        ("/c.bin", Route::bytes(vec![3u8; 1000])),
    ]);
    let out = bed.out();
    let t = traced_fetch(
        &bed,
        &[],
        "open,openat,openat2,creat,unlink,unlinkat",
        &["/a.bin", "/b.bin", "/c.bin"],
    );
    let in_out = format!("\"{}/", out.to_str().unwrap());
    let created: Vec<&str> = t
        .lines()
        .filter(|l| l.contains(&in_out) && l.contains("O_CREAT") && !l.contains("-probe-"))
        .collect();
    assert_eq!(
        created.len(),
        3,
        "one file made per record:\n{}",
        created.join("\n")
    );
    let removed: Vec<&str> = t
        .lines()
        .filter(|l| l.contains(&in_out) && l.contains("unlink") && !l.contains("-probe-"))
        .collect();
    assert!(
        removed.is_empty(),
        "nothing removed:\n{}",
        removed.join("\n")
    );
    let mut files = files_in(&out);
    files.sort();
    assert_eq!(files, vec!["a.bin", "b.bin", "c.bin"]);
}

/// Issue 11: a name derived from a URL always fits the file system (255 bytes with its
/// collision suffix and the temporary file's name).
#[test]
fn a_very_long_url_segment_still_gets_a_file() {
    let long = "n".repeat(250);
    let path1 = format!("/one/{long}.bin");
    let path2 = format!("/two/{long}.bin");
    let bed = Bed::new(vec![
        (path1.as_str(), Route::bytes(&b"first"[..])),
        (path2.as_str(), Route::bytes(&b"second"[..])),
    ]);
    let out = bed.out();
    let o = bed.run(&[
        "fetch",
        "f",
        &bed.url(&path1),
        &bed.url(&path2),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let files = files_in(&out);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert!(f.len() <= 255, "{} bytes", f.len());
        assert!(f.ends_with(".bin"), "{f}");
    }
    let mut contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    contents.sort();
    assert_eq!(contents, vec![b"first".to_vec(), b"second".to_vec()]);
}

/// Item 15: an abort with no process running leaves nothing in `--out`. Issue 12: nothing is
/// written there while the fetch downloads (the bodies are in the store until the success
/// event hands them over), so a killed download leaves no temporary file to clean up.
#[test]
fn an_abort_with_no_process_running_leaves_no_temporary_files() {
    let bed = Bed::new(vec![("/a.bin", held(generated(300_000, 7), 100_000))]);
    let out = bed.out();
    let mut runner = bed.spawn(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/a.bin", 1);
    bed.wait_downloaded("f", 100_000);
    assert_eq!(
        files_in(&out),
        Vec::<String>::new(),
        "nothing in --out while downloading"
    );
    runner.kill().unwrap();
    runner.wait().unwrap();
    let o = bed.run(&["abort", "f"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "true");
    assert_eq!(files_in(&out), Vec::<String>::new());
}

/// Issue 12: a large body is not copied into `--out`: the delivered file is the store's own
/// body file, hard-linked (same inode) when both are on one file system, as here; the store
/// only drops its name for it. A small body (kept inside the database) is written out.
#[test]
fn a_large_body_is_delivered_by_linking_the_stores_file() {
    use std::os::unix::fs::MetadataExt;
    let big = generated(3_000_000, 21);
    let small = generated(2_000, 22);
    let bed = Bed::new(vec![
        ("/big.bin", held(big.clone(), 1_000_000)),
        ("/small.bin", Route::bytes(small.clone())),
    ]);
    let out = bed.out();
    let child = bed.spawn(&[
        "--json",
        "fetch",
        "f",
        &bed.url("/big.bin"),
        &bed.url("/small.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/big.bin", 1);
    let bodies = background_fetch_redb::body_dir(&bed.store);
    let mut inode = None;
    wait_for("the large body's file", || {
        inode = std::fs::read_dir(&bodies).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".response"))
                .map(|e| e.metadata().unwrap().ino())
        });
        inode.is_some()
    });
    bed.release("/big.bin");
    let o = Bed::finish(child, Duration::from_secs(120));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let delivered = out.join("big.bin");
    assert!(std::fs::read(&delivered).unwrap() == big, "byte for byte");
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().ino(),
        inode.unwrap(),
        "the store's file itself, linked"
    );
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().nlink(),
        1,
        "the store's name is gone"
    );
    assert!(std::fs::read(out.join("small.bin")).unwrap() == small);
    assert_eq!(files_in(&out), vec!["big.bin", "small.bin"]);
}

/// Whether strace can trace here (it is installed, and ptrace is allowed); says SKIPPED if not.
fn strace_works() -> bool {
    let traces = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !traces {
        eprintln!(
            "SKIPPED: strace is not installed or may not trace here (apt-get install strace)"
        );
    }
    traces
}

/// `bgfetch fetch f URL... --out OUT` under `strace -f -qq FLAGS -e trace=SYSCALLS`; checks it
/// exits 0 and gives the trace.
fn traced_fetch(bed: &Bed, flags: &[&str], syscalls: &str, paths: &[&str]) -> String {
    let trace = bed.dir.path().join("trace.txt");
    let urls: Vec<String> = paths.iter().map(|p| bed.url(p)).collect();
    let o = Command::new("strace")
        .args(["-f", "-qq"])
        .args(flags)
        .arg("-o")
        .arg(&trace)
        .args(["-e", &format!("trace={syscalls}")])
        .arg(Bed::bin())
        .arg("--store")
        .arg(&bed.store)
        .args(["fetch", "f"])
        .args(&urls)
        .arg("--out")
        .arg(bed.out())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    std::fs::read_to_string(&trace).unwrap()
}
