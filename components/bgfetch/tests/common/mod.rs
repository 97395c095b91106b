//! What the end-to-end tests share: a store in a temporary directory, a server on 127.0.0.1,
//! and the built `bgfetch` binary.
#![allow(dead_code)]

use bgfetch::server::{Route, Server, fill_generated};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Bed {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub server: Server,
    pub rt: tokio::runtime::Runtime,
}

pub fn generated(len: u64, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    fill_generated(seed, 0, &mut v, len as usize);
    v
}

impl Bed {
    pub fn new(routes: Vec<(&str, Route)>) -> Bed {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(Server::start(
                routes.into_iter().map(|(p, r)| (p.to_owned(), r)),
            ))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.redb");
        Bed {
            dir,
            store,
            server,
            rt,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(Bed::bin());
        c.arg("--store").arg(&self.store).args(args);
        c.env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Waits until `get ID` (forwarded to the running process) reports at least `bytes`.
    pub fn wait_downloaded(&self, id: &str, bytes: u64) -> Value {
        let start = Instant::now();
        loop {
            let o = self.run(&["get", id]);
            if o.status.success()
                && let Ok(v) = serde_json::from_slice::<Value>(&o.stdout)
                && v["downloaded"].as_u64().unwrap_or(0) >= bytes
            {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never reached {bytes} bytes: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json_events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Bed {
    /// The binary the tests run.
    pub fn bin() -> std::ffi::OsString {
        // BGFETCH_TEST_BIN runs the tests against another build (to see a test fail on the code
        // before a fix).
        std::env::var_os("BGFETCH_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_bgfetch").into())
    }

    /// Lets the responses held at `path` go on.
    pub fn release(&self, path: &str) {
        self.server.release(path);
    }

    /// Waits until `n` responses for `path` reached their hold point.
    pub fn wait_held(&self, path: &str, n: usize) {
        self.rt.block_on(self.server.wait_held(path, n));
    }

    /// A process's stdout and stderr, with a guard: a process still running after `limit` (a
    /// hang, not a slow run) is killed and reported.
    pub fn finish(child: Child, limit: Duration) -> Output {
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let o = child.wait_with_output().unwrap();
            let _ = tx.send(());
            o
        });
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let o = waiter.join().unwrap();
            panic!("the process hung (killed after {limit:?}): {}", text(&o));
        }
        waiter.join().unwrap()
    }

    /// Reads `stream` line by line until a line contains `needle` (returned), or it ends
    /// (panics, with what was read).
    pub fn read_until(stream: &mut impl Read, needle: &str) -> String {
        let mut all = String::new();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                panic!("never saw {needle:?}; read: {all}");
            }
            all.push_str(&line);
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The control socket of this bed's store: where the build under test puts it.
    pub fn socket(&self) -> PathBuf {
        let new = bgfetch::paths::socket_path(&self.store).unwrap();
        if new.exists() {
            return new;
        }
        let mut old = self.store.as_os_str().to_owned();
        old.push(".sock");
        PathBuf::from(old)
    }
}

/// Files in `dir` (names), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits (polling the file system, which has no event to wait on here) until `cond` holds.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A route that serves `body` and holds after `at` bytes until released.
pub fn held(body: Vec<u8>, at: u64) -> Route {
    Route::bytes(body).hold_after(at)
}
