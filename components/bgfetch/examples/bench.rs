//! Benchmarks `bgfetch` against `curl` on this machine, with the workspace's own server on
//! 127.0.0.1 (generated bodies, so gigabytes need no disk on the server side).
//!
//! ```text
//! cargo build --release -p bgfetch --bins --examples
//! target/release/examples/bench [1g] [4g] [small]      # default: all three
//! ```
//!
//! * `1g`, `4g`: one file of 1 GiB (4 GiB): time until `bgfetch fetch --out DIR` exits after
//!   `backgroundfetchsuccess` (the file is in DIR), against `curl -s -o FILE URL && sync`; and
//!   bgfetch's peak RSS (GNU time's `%M`).
//! * `small`: one fetch of 1,000 files of 16 KiB.
//!
//! Each run starts from an empty store and output directory, in a temporary directory on the
//! same disk for both tools.

use bgfetch::server::{Server, benchmark_routes};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn bgfetch_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the example's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("bgfetch");
    assert!(
        bin.exists(),
        "build it first: cargo build --release -p bgfetch --bins --examples"
    );
    bin
}

/// Runs `c`, timing the whole run and (for `bgfetch --json`) the moment its stdout shows the
/// `backgroundfetchsuccess` event.
fn time_bgfetch(mut c: Command) -> (Duration, Option<Duration>, Option<u64>, bool) {
    use std::io::BufRead;
    let start = Instant::now();
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let stdout = child.stdout.take().expect("piped");
    let mut event_at = None;
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        if event_at.is_none() && line.contains("\"backgroundfetchsuccess\"") {
            event_at = Some(start.elapsed());
        }
    }
    let out = child.wait_with_output().expect("wait");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss_kib = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("maxrss="))
        .and_then(|v| v.parse().ok());
    if !out.status.success() {
        eprintln!("command failed: {stderr}");
    }
    (elapsed, event_at, rss_kib, out.status.success())
}

fn time_cmd(mut c: Command) -> (Duration, Option<u64>, bool) {
    let start = Instant::now();
    let out = c.output().expect("run");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss_kib = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("maxrss="))
        .and_then(|v| v.parse().ok());
    if !out.status.success() {
        eprintln!("command failed: {stderr}");
    }
    (elapsed, rss_kib, out.status.success())
}

fn fresh(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

fn one_file(server: &Server, work: &Path, gib: u64) {
    let url = server.url(&format!("/gen{gib}"));
    let len = gib << 30;
    // curl, writing a file and syncing it.
    fresh(work);
    let file = work.join("curl.bin");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("curl -s -o '{}' '{url}' && sync", file.display()));
    let (curl, _, ok) = time_cmd(c);
    assert!(ok && std::fs::metadata(&file).unwrap().len() == len);
    fresh(work);
    // bgfetch: registration, download into the store, success event writing --out.
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "maxrss=%M"])
        .arg(bgfetch_binary())
        .arg("--store")
        .arg(work.join("store.redb"));
    c.args(["--json", "fetch", "bench", &url, "--out"])
        .arg(work.join("out"));
    let (bg, event, rss, ok) = time_bgfetch(c);
    assert!(ok, "bgfetch failed");
    let delivered = std::fs::metadata(work.join("out").join(format!("gen{gib}")))
        .unwrap()
        .len();
    assert_eq!(delivered, len);
    let rss_mib = rss.map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN);
    let event = event.expect("a backgroundfetchsuccess line");
    println!(
        "{gib} GiB: curl -o + sync {:.2} s ({:.0} MB/s); bgfetch: backgroundfetchsuccess at {:.2} s ({:.2}x curl), --out written and exited at {:.2} s ({:.2}x); peak RSS {rss_mib:.1} MiB",
        curl.as_secs_f64(),
        len as f64 / 1e6 / curl.as_secs_f64(),
        event.as_secs_f64(),
        event.as_secs_f64() / curl.as_secs_f64(),
        bg.as_secs_f64(),
        bg.as_secs_f64() / curl.as_secs_f64()
    );
    fresh(work);
}

fn small_files(server: &Server, work: &Path) {
    fresh(work);
    let urls: Vec<String> = (0..1000)
        .map(|i| server.url(&format!("/small/{i}")))
        .collect();
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "maxrss=%M"])
        .arg(bgfetch_binary())
        .arg("--store")
        .arg(work.join("store.redb"));
    c.args(["--json", "fetch", "small"])
        .args(&urls)
        .arg("--out")
        .arg(work.join("out"));
    let (bg, event, rss, ok) = time_bgfetch(c);
    assert!(ok, "bgfetch failed");
    let event = event.expect("a backgroundfetchsuccess line");
    let n = std::fs::read_dir(work.join("out")).unwrap().count();
    assert_eq!(n, 1000);
    // curl: one process, the same 1,000 URLs.
    fresh(work);
    let mut c = Command::new("curl");
    c.arg("-s");
    for (i, u) in urls.iter().enumerate() {
        c.arg("-o").arg(work.join(format!("{i}"))).arg(u);
    }
    let (curl, _, ok) = time_cmd(c);
    assert!(ok);
    println!(
        "1,000 x 16 KiB: bgfetch backgroundfetchsuccess at {:.2} s, --out written and exited at {:.2} s (peak RSS {:.1} MiB); curl (one process, sequential) {:.2} s",
        event.as_secs_f64(),
        bg.as_secs_f64(),
        rss.map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN),
        curl.as_secs_f64()
    );
    fresh(work);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = args.is_empty();
    let want = |k: &str| all || args.iter().any(|a| a == k);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let routes = benchmark_routes();
    let server = rt.block_on(Server::start(routes)).unwrap();
    let work = std::env::temp_dir().join(format!("bgfetch-bench-{}", std::process::id()));
    if want("1g") {
        one_file(&server, &work, 1);
    }
    if want("4g") {
        one_file(&server, &work, 4);
    }
    if want("small") {
        small_files(&server, &work);
    }
    let _ = std::fs::remove_dir_all(&work);
}
