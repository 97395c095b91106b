//! The control socket end to end (issue 17 items 1, 8, 9, 10, 14 and 15's peer check and
//! permissions; issue 11's private socket): the built binary against servers the tests start on
//! 127.0.0.1.

mod common;

use bgfetch::server::Route;
use common::{Bed, code, files_in, generated, held, text, wait_for};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Item 1: a `match` whose body is cut short (the fetch is aborted while it streams) exits
/// non-zero, and `-o FILE` leaves no file.
#[test]
fn a_match_cut_short_exits_non_zero_and_writes_no_file() {
    // (Held past the network host's read buffer, so the stored bytes reach the reader.)
    let bed = Bed::new(vec![(
        "/slow.bin",
        held(generated(2_000_000, 1), 1_000_000),
    )]);
    let url = bed.url("/slow.bin");
    let runner = bed.spawn(&["fetch", "m", &url]);
    bed.wait_held("/slow.bin", 1);
    // Its first byte shows the body is streaming.
    let mut to_stdout = bed.spawn(&["match", "m", &url]);
    let mut first = [0u8; 1];
    to_stdout
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    let file = bed.dir.path().join("cut.bin");
    let to_file = bed.spawn(&["match", "m", &url, "-o", file.to_str().unwrap()]);
    let dir = bed.dir.path().to_owned();
    wait_for("the -o reader receiving bytes", || {
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n == "cut.bin" || n.starts_with(".bgfetch-match-"))
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    });
    let o = bed.run(&["abort", "m"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "true",
        "{}",
        text(&o)
    );
    let o = Bed::finish(to_stdout, Duration::from_secs(60));
    assert_ne!(code(&o), 0, "a short body is not a success: {}", text(&o));
    assert!(o.stdout.len() < 2_000_000);
    let o = Bed::finish(to_file, Duration::from_secs(60));
    assert_ne!(code(&o), 0, "a short body is not a success: {}", text(&o));
    assert!(!file.exists(), "no partial file");
    assert!(
        !files_in(bed.dir.path())
            .iter()
            .any(|f| f.starts_with(".bgfetch-match-")),
        "no temporary file left"
    );
    let o = Bed::finish(runner, Duration::from_secs(60));
    assert_eq!(code(&o), 1, "{}", text(&o));
}

/// Item 8: a `match` reader that stops reading (`bgfetch match ... | less`) is dropped after the
/// write timeout, so the runner exits once its fetch is over.
#[test]
fn a_reader_that_stops_reading_does_not_keep_the_runner_alive() {
    let bed = Bed::new(vec![("/a.bin", held(generated(4_000_000, 8), 1_000_000))]);
    let url = bed.url("/a.bin");
    let runner = bed
        .cmd(&["fetch", "f", &url])
        .env("BGFETCH_CONTROL_TIMEOUT_MS", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bed.wait_held("/a.bin", 1);
    let mut reader = bed
        .cmd(&["match", "f", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It is streaming; from now on nobody reads its stdout.
    let mut first = [0u8; 1];
    reader
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    bed.release("/a.bin");
    let o = Bed::finish(runner, Duration::from_secs(120));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let _ = reader.kill();
    let _ = reader.wait();
}

/// Item 8: while the runner waits for such a reader, SIGTERM still stops it (143).
#[test]
fn a_signal_stops_a_runner_waiting_for_a_stalled_reader() {
    let bed = Bed::new(vec![("/a.bin", held(generated(4_000_000, 9), 1_000_000))]);
    let url = bed.url("/a.bin");
    let mut runner = bed
        .cmd(&["--json", "fetch", "f", &url])
        .env("BGFETCH_CONTROL_TIMEOUT_MS", "600000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bed.wait_held("/a.bin", 1);
    let mut reader = bed
        .cmd(&["match", "f", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    reader
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    bed.release("/a.bin");
    let mut stdout = runner.stdout.take().unwrap();
    Bed::read_until(&mut stdout, "backgroundfetchsuccess");
    let pid = runner.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = Bed::finish(runner, Duration::from_secs(60));
    assert_eq!(code(&o), 143, "{}", text(&o));
    let _ = reader.kill();
    let _ = reader.wait();
}

fn connect(sock: &Path) -> UnixStream {
    let c = UnixStream::connect(sock).unwrap();
    // A guard against a hang, not a measure: the server answers long before.
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

/// Reads until the server closes; panics if it never does.
fn read_until_closed(c: &mut UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    match c.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server neither answered nor closed: {e}"),
    }
    buf
}

/// Item 9: a query line without end and a client that sends nothing are cut off.
#[test]
fn the_control_socket_bounds_line_length_and_idle_clients() {
    let bed = Bed::new(vec![("/a.bin", held(vec![1u8; 1000], 10))]);
    let runner = bed
        .cmd(&["fetch", "f", &bed.url("/a.bin")])
        .env("BGFETCH_CONTROL_TIMEOUT_MS", "300")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bed.wait_held("/a.bin", 1);
    let sock = bed.socket();
    let mut long = connect(&sock);
    let _ = long.write_all(&vec![b'x'; 300_000]); // the server may close before the end
    let answer = read_until_closed(&mut long);
    assert!(
        String::from_utf8_lossy(&answer).contains("longer than"),
        "{answer:?}"
    );
    let mut idle = connect(&sock);
    read_until_closed(&mut idle);
    // It still answers.
    let o = bed.run(&["ids"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "f",
        "{}",
        text(&o)
    );
    bed.release("/a.bin");
    assert_eq!(code(&Bed::finish(runner, Duration::from_secs(60))), 0);
}

/// Item 9: connections beyond the limit are closed at once with a reason.
#[test]
fn the_control_socket_bounds_connections() {
    let bed = Bed::new(vec![("/a.bin", held(vec![1u8; 1000], 10))]);
    let runner = bed.spawn(&["fetch", "f", &bed.url("/a.bin")]);
    bed.wait_held("/a.bin", 1);
    let sock = bed.socket();
    let idle: Vec<UnixStream> = (0..64).map(|_| connect(&sock)).collect();
    let mut extra = connect(&sock);
    let answer = read_until_closed(&mut extra);
    assert!(
        String::from_utf8_lossy(&answer).contains("busy"),
        "{answer:?}"
    );
    drop(idle);
    let o = bed.run(&["ids"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "f",
        "{}",
        text(&o)
    );
    bed.release("/a.bin");
    assert_eq!(code(&Bed::finish(runner, Duration::from_secs(60))), 0);
}

/// Item 10: with no process running, `match` on a record that is not complete answers at once
/// (and leaves the store to `run`).
#[test]
fn match_with_no_process_running_says_the_record_is_incomplete() {
    let bed = Bed::new(vec![("/a.bin", Route::bytes(vec![3u8; 5000]))]);
    let url = bed.url("/a.bin");
    assert_eq!(code(&bed.run(&["fetch", "d", &url, "--detach"])), 0);
    let o = Bed::finish(bed.spawn(&["match", "d", &url]), Duration::from_secs(60));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("incomplete") && err.contains("bgfetch run"),
        "{err}"
    );
    assert_eq!(code(&bed.run(&["run"])), 0);
}

/// Item 14: a store path longer than a Unix socket address still has a reachable socket.
#[test]
fn a_long_store_path_still_has_a_control_socket() {
    let bed = Bed::new(vec![("/a.bin", held(vec![1u8; 1000], 10))]);
    let dir = bed.dir.path().join("d".repeat(120));
    std::fs::create_dir(&dir).unwrap();
    let store = dir.join("store.redb");
    let cmd = |args: &[&str]| {
        let mut c = Command::new(Bed::bin());
        c.arg("--store")
            .arg(&store)
            .args(args)
            .env_remove("RUST_LOG");
        c
    };
    let runner = cmd(&["fetch", "f", &bed.url("/a.bin")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bed.wait_held("/a.bin", 1);
    let o = cmd(&["ids"]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "f");
    bed.release("/a.bin");
    assert_eq!(code(&Bed::finish(runner, Duration::from_secs(60))), 0);
}

/// Item 14: a `match` on a record queued behind 16 others says it waits (no misleading time-out)
/// and answers when the record arrives.
#[test]
fn a_match_on_a_queued_record_says_it_waits_then_answers() {
    let paths: Vec<String> = (0..18).map(|i| format!("/q/{i}")).collect();
    let bed = Bed::new(
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), held(format!("body {i}").into_bytes(), 0)))
            .collect(),
    );
    let urls: Vec<String> = paths.iter().map(|p| bed.url(p)).collect();
    let mut args = vec!["fetch", "q"];
    args.extend(urls.iter().map(String::as_str));
    let runner = bed.spawn(&args);
    for p in &paths[..16] {
        bed.wait_held(p, 1);
    }
    let mut m = bed.spawn(&["match", "q", &urls[17]]);
    let mut stderr = m.stderr.take().unwrap();
    let line = Bed::read_until(&mut stderr, "waiting");
    assert!(line.contains(&urls[17]), "{line}");
    for p in &paths {
        bed.release(p);
    }
    let o = Bed::finish(m, Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(o.stdout, b"body 17");
    assert_eq!(code(&Bed::finish(runner, Duration::from_secs(60))), 0);
}

/// Issue 11 and item 15: the store, the directory bgfetch makes for it, the store's body files,
/// the control socket and the delivered files (a small body written out of the database, a
/// large one linked from the store's file) are the owner's only, whatever the umask (here 002).
#[test]
fn what_bgfetch_creates_is_private_whatever_the_umask() {
    let bed = Bed::new(vec![
        ("/a.bin", held(vec![1u8; 1000], 10)),
        ("/b.bin", held(vec![2u8; 300_000], 200_000)),
    ]);
    let data = bed.dir.path().join("data");
    let store = data.join("store.redb");
    let out = bed.out();
    let runner = Command::new("sh")
        .args(["-c", "umask 002; exec \"$0\" \"$@\""])
        .arg(Bed::bin())
        .arg("--store")
        .arg(&store)
        .args([
            "fetch",
            "f",
            &bed.url("/a.bin"),
            &bed.url("/b.bin"),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bed.wait_held("/a.bin", 1);
    bed.wait_held("/b.bin", 1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&store), 0o600, "the store");
    assert_eq!(mode(&data), 0o700, "its directory");
    let bodies = background_fetch_redb::body_dir(&store);
    wait_for("the large body's file", || {
        std::fs::read_dir(&bodies).is_ok_and(|d| d.count() > 0)
    });
    assert_eq!(mode(&bodies), 0o700, "the store's body directory");
    for f in std::fs::read_dir(&bodies).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let new = bgfetch::paths::socket_path(&store).unwrap();
    let sock = if new.exists() {
        new
    } else {
        let mut old = store.as_os_str().to_owned();
        old.push(".sock");
        old.into()
    };
    assert_eq!(mode(&sock) & 0o077, 0, "the socket {}", sock.display());
    assert_eq!(
        mode(sock.parent().unwrap()) & 0o077,
        0,
        "the socket's directory"
    );
    bed.release("/a.bin");
    bed.release("/b.bin");
    let o = Bed::finish(runner, Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(mode(&out.join("a.bin")), 0o600, "a delivered file");
    assert_eq!(mode(&out.join("b.bin")), 0o600, "a delivered file");
    assert!(std::fs::read(out.join("b.bin")).unwrap() == vec![2u8; 300_000]);
}

/// Item 15: a listener run by another user where a client looks for the socket is not trusted
/// (its bytes are not written by `match -o`). Needs root to run the fake as `nobody`.
#[test]
fn a_listener_of_another_user_is_not_trusted() {
    if bgfetch::paths::uid() != 0 || !Path::new("/usr/bin/perl").exists() {
        eprintln!("SKIPPED: needs root and /usr/bin/perl to run a listener as another user");
        return;
    }
    let bed = Bed::new(vec![]);
    std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = bed.dir.path().join("run");
    let runtime = run.join("bgfetch");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    let new = bgfetch::paths::socket_path_in(&runtime, &bed.store).unwrap();
    let mut old = bed.store.as_os_str().to_owned();
    old.push(".sock");
    let fake = r#"
use IO::Socket::UNIX; use IO::Select;
my @l = map { unlink $_; IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $_, Listen => 5) or die "$_: $!" } @ARGV;
chmod 0777, @ARGV;
$| = 1; print "ready\n";
my $s = IO::Select->new(@l);
while (my @r = $s->can_read) { for my $x (@r) { my $c = $x->accept; my $q = <$c>;
  print $c "{\"kind\":\"body\",\"value\":200}\nFAKE BYTES"; close $c; } }
"#;
    let mut listener = Command::new("/usr/bin/perl")
        .arg("-e")
        .arg(fake)
        .arg(&new)
        .arg(&old)
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Bed::read_until(listener.stdout.as_mut().unwrap(), "ready");
    let file = bed.dir.path().join("got");
    let o = bed
        .cmd(&[
            "match",
            "x",
            "http://127.0.0.1/",
            "-o",
            file.to_str().unwrap(),
        ])
        .env("XDG_RUNTIME_DIR", &run)
        .output()
        .unwrap();
    let _ = listener.kill();
    let _ = listener.wait();
    let got = std::fs::read(&file).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&got).contains("FAKE"),
        "{}",
        text(&o)
    );
    assert_ne!(code(&o), 0, "{}", text(&o));
}

use std::os::unix::process::CommandExt;

/// A query whose process goes away before answering (its fetches ended and it exited, between
/// the connection and the answer) is answered by the store, not reported as an error ("error:
/// Connection reset by peer", exit 3: seen in CI as a flaky `queries_are_forwarded_to_the_running_process`).
#[test]
fn a_process_that_goes_away_before_answering_leaves_the_answer_to_the_store() {
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "gone", &bed.url("/a"), "--detach"])),
        0
    );
    // A listener where the running process's socket would be, which reads the query and
    // closes the connection without answering, as an exiting process does.
    let sock = bgfetch::paths::socket_path(&bed.store).unwrap();
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 256];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            drop(conn);
        }
    });
    let o = bed.run(&["--json", "ids"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v, serde_json::json!(["gone"]), "{}", text(&o));
    let _ = std::fs::remove_file(&sock);
    drop(server);
}

/// The control socket's frames, as a test writes and reads them: a 4-byte big-endian length,
/// then the message in postcard.
mod frames {
    use bgfetch::control::wire::{self, FromRunner, ToRunner};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    pub fn write_raw(c: &mut UnixStream, length: u32, bytes: &[u8]) {
        let _ = c.write_all(&length.to_be_bytes());
        let _ = c.write_all(bytes);
    }

    pub fn write(c: &mut UnixStream, m: &ToRunner) {
        let b = wire::encode(m);
        write_raw(c, b.len() as u32, &b);
    }

    pub fn write_from_runner(c: &mut UnixStream, m: &FromRunner) {
        let b = wire::encode(m);
        write_raw(c, b.len() as u32, &b);
    }

    /// The next frame's bytes, or `None` when the connection closed.
    pub fn read_raw(c: &mut UnixStream) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        c.read_exact(&mut len).ok()?;
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        c.read_exact(&mut b).ok()?;
        Some(b)
    }

    pub fn read(c: &mut UnixStream) -> Option<FromRunner> {
        Some(wire::decode(&read_raw(c)?).expect("a message"))
    }

    pub fn read_to_runner(c: &mut UnixStream) -> Option<ToRunner> {
        Some(wire::decode(&read_raw(c)?).expect("a message"))
    }
}

/// A query's first message: hello, with `version`.
fn hello(version: u32) -> bgfetch::control::wire::ToRunner {
    use background_fetch::service::protocol::ToService;
    bgfetch::control::wire::ToRunner::Script(Box::new(ToService::Hello {
        version,
        environment: bgfetch::control::client::query_environment(),
    }))
}

/// A frame that is not a message, and a frame longer than the limit, are refused with a reason
/// (no panic); the running process goes on: it answers the next query and its fetch completes
/// with every byte.
#[test]
fn a_malformed_or_oversized_frame_is_refused_and_loses_nothing() {
    use bgfetch::control::wire::{FromRunner, MAX_FRAME};
    let body = generated(300_000, 4);
    let bed = Bed::new(vec![("/a.bin", held(body.clone(), 100_000))]);
    let out = bed.out();
    let runner = bed.spawn(&[
        "fetch",
        "f",
        &bed.url("/a.bin"),
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_held("/a.bin", 1);
    let sock = bed.socket();
    // Not a message, as the first frame and after a hello.
    for after_hello in [false, true] {
        let mut c = connect(&sock);
        if after_hello {
            frames::write(
                &mut c,
                &hello(background_fetch::service::protocol::PROTOCOL_VERSION),
            );
            assert!(matches!(
                frames::read(&mut c),
                Some(FromRunner::Script(
                    background_fetch::service::protocol::ToScript::Welcome(Ok(_))
                ))
            ));
        }
        frames::write_raw(&mut c, 3, &[0xff, 0xff, 0xff]);
        match frames::read(&mut c) {
            Some(FromRunner::Refused(why)) => assert!(why.contains("not a message"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(frames::read_raw(&mut c), None, "then it closes");
    }
    // Longer than the limit (its bytes are never sent).
    let mut c = connect(&sock);
    frames::write_raw(&mut c, MAX_FRAME as u32 + 1, &[]);
    match frames::read(&mut c) {
        Some(FromRunner::Refused(why)) => assert!(why.contains("longer than"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A first message other than hello.
    let mut c = connect(&sock);
    frames::write(
        &mut c,
        &bgfetch::control::wire::ToRunner::Control {
            call: 1,
            query: bgfetch::control::wire::Control::Ids,
        },
    );
    match frames::read(&mut c) {
        Some(FromRunner::Refused(why)) => assert!(why.contains("Hello"), "{why}"),
        other => panic!("{other:?}"),
    }
    let o = bed.run(&["ids"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "f",
        "{}",
        text(&o)
    );
    bed.release("/a.bin");
    let o = Bed::finish(runner, Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read(out.join("a.bin")).unwrap() == body);
}

/// Two bgfetch builds of different protocol versions: the running process refuses a query of
/// another version with the engine's `Welcome` refusal (and goes on), and a query refused so
/// says why and does not take the store for itself.
#[test]
fn a_query_of_another_protocol_version_is_refused_with_the_reason() {
    use background_fetch::service::protocol::{PROTOCOL_VERSION, ToScript};
    use bgfetch::control::wire::FromRunner;
    // The running process, asked by an older build.
    let bed = Bed::new(vec![("/a.bin", held(vec![1u8; 1000], 10))]);
    let runner = bed.spawn(&["fetch", "f", &bed.url("/a.bin")]);
    bed.wait_held("/a.bin", 1);
    let mut c = connect(&bed.socket());
    frames::write(&mut c, &hello(PROTOCOL_VERSION - 1));
    match frames::read(&mut c) {
        Some(FromRunner::Script(ToScript::Welcome(Err(e)))) => {
            let why = e.to_string();
            assert!(
                why.contains(&format!("version {}", PROTOCOL_VERSION - 1))
                    && why.contains(&PROTOCOL_VERSION.to_string()),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    drop(c);
    let o = bed.run(&["ids"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "f",
        "{}",
        text(&o)
    );
    bed.release("/a.bin");
    assert_eq!(code(&Bed::finish(runner, Duration::from_secs(60))), 0);

    // This build, asking a newer one (a listener that refuses every hello as it would).
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "v", &bed.url("/a"), "--detach"])),
        0
    );
    let sock = bgfetch::paths::socket_path(&bed.store).unwrap();
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let first = frames::read_to_runner(&mut conn);
        assert!(
            matches!(&first, Some(bgfetch::control::wire::ToRunner::Script(m))
                if matches!(**m, background_fetch::service::protocol::ToService::Hello { .. })),
            "{first:?}"
        );
        frames::write_from_runner(
            &mut conn,
            &FromRunner::Script(ToScript::Welcome(Err(
                background_fetch::DomError::invalid_state(format!(
                    "protocol version {PROTOCOL_VERSION} is not supported (this service speaks {})",
                    PROTOCOL_VERSION + 1
                )),
            ))),
        );
        let _ = frames::read_raw(&mut conn);
    });
    let o = bed.run(&["ids"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused") && err.contains(&format!("speaks {}", PROTOCOL_VERSION + 1)),
        "{err}"
    );
    assert!(
        o.stdout.is_empty(),
        "no answer from the store: {}",
        text(&o)
    );
    server.join().unwrap();
    let _ = std::fs::remove_file(&sock);
}

/// A process that welcomes a query and goes away before answering it (in the middle of the
/// query's calls) leaves the answer to the store, as one that goes away before the welcome.
#[test]
fn a_process_that_goes_away_in_the_middle_of_a_query_leaves_the_answer_to_the_store() {
    use background_fetch::service::protocol::{PROTOCOL_VERSION, ToScript};
    use bgfetch::control::wire::FromRunner;
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "mid", &bed.url("/a"), "--detach"])),
        0
    );
    let sock = bgfetch::paths::socket_path(&bed.store).unwrap();
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        // Each connection is welcomed; its next message gets no answer: the process closes.
        for _ in 0..2 {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let _ = frames::read_raw(&mut conn);
            frames::write_from_runner(
                &mut conn,
                &FromRunner::Script(ToScript::Welcome(Ok(PROTOCOL_VERSION))),
            );
            let _ = frames::read_raw(&mut conn);
        }
    });
    let o = bed.run(&["--json", "get", "mid"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["id"], "mid", "{}", text(&o));
    let o = bed.run(&["--json", "ids"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!(["mid"])
    );
    let _ = std::fs::remove_file(&sock);
    server.join().unwrap();
}

/// A query may read and abort, not make fetches: a `fetch()` call on the control socket is
/// rejected with a `NotAllowedError`, and the connection still answers.
#[test]
fn a_query_may_not_call_fetch_on_the_control_socket() {
    use background_fetch::service::protocol::{
        Call, CallId, PROTOCOL_VERSION, ToScript, ToService,
    };
    use bgfetch::control::wire::{Control, ControlAnswer, FromRunner, ToRunner};
    let bed = Bed::new(vec![("/a.bin", held(vec![1u8; 1000], 10))]);
    let runner = bed.spawn(&["fetch", "f", &bed.url("/a.bin")]);
    bed.wait_held("/a.bin", 1);
    let mut c = connect(&bed.socket());
    frames::write(&mut c, &hello(PROTOCOL_VERSION));
    assert!(matches!(
        frames::read(&mut c),
        Some(FromRunner::Script(ToScript::Welcome(Ok(_))))
    ));
    let scope = url::Url::parse(&bed.url("/")).unwrap();
    frames::write(
        &mut c,
        &ToRunner::Script(Box::new(ToService::Call {
            call: CallId(1),
            call_data: Call::Fetch {
                registration: background_fetch::ServiceWorkerRegistrationId::for_scope(&scope),
                id: "sneaky".into(),
                requests: Vec::new(),
                options: Default::default(),
                active_worker: true,
            },
        })),
    );
    match frames::read(&mut c) {
        Some(FromRunner::Script(ToScript::Reply {
            call: CallId(1),
            result: Err(e),
        })) => assert!(e.to_string().contains("control socket"), "{e}"),
        other => panic!("{other:?}"),
    }
    frames::write(
        &mut c,
        &ToRunner::Control {
            call: 2,
            query: Control::Ids,
        },
    );
    assert_eq!(
        frames::read(&mut c),
        Some(FromRunner::Control {
            call: 2,
            answer: ControlAnswer::Ids(vec!["f".into()])
        })
    );
    drop(c);
    bed.release("/a.bin");
    assert_eq!(code(&Bed::finish(runner, Duration::from_secs(60))), 0);
}

/// A process that sends what this bgfetch cannot read (a frame that is not a message) gets a
/// clear error, not a panic nor an answer made up.
#[test]
fn a_frame_from_the_process_that_is_not_a_message_is_a_clear_error() {
    use background_fetch::service::protocol::{PROTOCOL_VERSION, ToScript};
    use bgfetch::control::wire::FromRunner;
    let bed = Bed::new(vec![("/a", Route::bytes(&b"a"[..]))]);
    assert_eq!(
        code(&bed.run(&["fetch", "g", &bed.url("/a"), "--detach"])),
        0
    );
    let sock = bgfetch::paths::socket_path(&bed.store).unwrap();
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = frames::read_raw(&mut conn);
        frames::write_from_runner(
            &mut conn,
            &FromRunner::Script(ToScript::Welcome(Ok(PROTOCOL_VERSION))),
        );
        let _ = frames::read_raw(&mut conn);
        frames::write_raw(&mut conn, 2, &[0xee, 0xee]);
        let _ = frames::read_raw(&mut conn);
    });
    let o = bed.run(&["ids"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a message"),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty(), "{}", text(&o));
    server.join().unwrap();
    let _ = std::fs::remove_file(&sock);
}
