//! Benchmarks `bgfetch` against `curl` and `aria2c` on this machine, in one run, with the
//! workspace's own server on 127.0.0.1 (generated bodies, so gigabytes need no disk on the
//! server side).
//!
//! ```text
//! cargo build --release -p bgfetch --bins --examples
//! target/release/examples/bench [1g] [4g] [8g] [small] [--rounds N]   # default: 1g small, 3 rounds
//! ```
//!
//! * `1g`, `4g`, `8g`: one file of 1 (4, 8) GiB. `curl -s -o FILE URL && sync`;
//!   `aria2c -q -d DIR URL && sync`; `bgfetch --json fetch ID URL --out DIR`, timed twice: when
//!   its stdout shows `backgroundfetchsuccess` (every byte durable in the store: "store only")
//!   and when it exits (the file delivered into `DIR`, synced: what a person runs).
//! * `small`: one fetch of 1,000 files of 16 KiB. curl: one process with every URL, no sync
//!   (it never syncs); aria2c: `-j 16 -i LIST`, no sync; bgfetch as above (durable).
//!
//! Each round runs the three tools in turn, the order alternating from round to round, each
//! from an empty directory (store and output) in one temporary directory on one disk. Printed:
//! every time, the medians and their ratios, bgfetch's peak RSS and the bytes it wrote to disk
//! (GNU time's `%M`, and `%O` × 512: the blocks the kernel accounted to the process, its
//! page-cache writes included), the load average at the start.

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

/// What GNU time reported for a run.
#[derive(Default, Clone, Copy)]
struct Usage {
    rss_kib: Option<u64>,
    written: Option<u64>,
}

fn usage(stderr: &str) -> Usage {
    let field = |key: &str| {
        stderr
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Usage {
        rss_kib: field("maxrss="),
        written: field("oublock=").map(|b| b * 512),
    }
}

fn timed(program: &Path) -> Command {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "maxrss=%M\noublock=%O"]).arg(program);
    c
}

/// One bgfetch run: when its stdout showed `backgroundfetchsuccess`, when it exited.
struct BgRun {
    event: Duration,
    exit: Duration,
    usage: Usage,
}

fn run_bgfetch(mut c: Command) -> BgRun {
    use std::io::BufRead;
    let start = Instant::now();
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bgfetch");
    let stdout = child.stdout.take().expect("piped");
    let mut event = None;
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        if event.is_none() && line.contains("\"backgroundfetchsuccess\"") {
            event = Some(start.elapsed());
        }
    }
    let out = child.wait_with_output().expect("wait");
    let exit = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bgfetch failed: {stderr}");
    BgRun {
        event: event.expect("a backgroundfetchsuccess line"),
        exit,
        usage: usage(&stderr),
    }
}

fn run_shell(script: &str) -> Duration {
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn fresh(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn secs(v: &[f64]) -> String {
    v.iter()
        .map(|s| format!("{s:.2}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// A case: what each tool runs, and how to check what it left.
struct Case {
    name: String,
    payload: u64,
    urls: Vec<String>,
    /// curl's command line (a shell script) writing into the given directory.
    curl: Box<dyn Fn(&Path) -> String>,
    /// aria2c's, when installed.
    aria2c: Box<dyn Fn(&Path) -> String>,
}

fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn run_case(case: &Case, work: &Path, rounds: usize, aria2c: bool) {
    let mut curl = Vec::new();
    let mut aria = Vec::new();
    let mut event = Vec::new();
    let mut exit = Vec::new();
    let mut usages = Vec::new();
    println!("{} (load average {} at the start)", case.name, load());
    for round in 0..rounds {
        let mut tools = vec!["curl", "aria2c", "bgfetch"];
        if !aria2c {
            tools.retain(|t| *t != "aria2c");
        }
        if round % 2 == 1 {
            tools.reverse();
        }
        for tool in tools {
            let dir = work.join(tool);
            fresh(&dir);
            let out = dir.join("out");
            fresh(&out);
            match tool {
                "curl" => curl.push(run_shell(&(case.curl)(&out)).as_secs_f64()),
                "aria2c" => aria.push(run_shell(&(case.aria2c)(&out)).as_secs_f64()),
                _ => {
                    let mut c = timed(&bgfetch_binary());
                    c.arg("--store").arg(dir.join("store.redb"));
                    c.args(["--json", "fetch", "bench"])
                        .args(&case.urls)
                        .arg("--out")
                        .arg(&out);
                    let r = run_bgfetch(c);
                    event.push(r.event.as_secs_f64());
                    exit.push(r.exit.as_secs_f64());
                    usages.push(r.usage);
                }
            }
            assert_eq!(bytes_in(&out), case.payload, "{tool} delivered every byte");
            fresh(&dir);
        }
    }
    let (c, e, x) = (
        median(curl.clone()),
        median(event.clone()),
        median(exit.clone()),
    );
    println!("  curl                   {} s", secs(&curl));
    if aria2c {
        println!("  aria2c                 {} s", secs(&aria));
    }
    println!(
        "  bgfetch, store only    {} s (backgroundfetchsuccess)",
        secs(&event)
    );
    println!("  bgfetch --out          {} s (exit)", secs(&exit));
    println!(
        "  medians: bgfetch store only / curl {:.2}; bgfetch --out / curl {:.2}",
        e / c,
        x / c
    );
    if aria2c {
        let a = median(aria.clone());
        println!(
            "           bgfetch --out / aria2c {:.2} (aria2c / bgfetch --out {:.2})",
            x / a,
            a / x
        );
    }
    let rss: Vec<String> = usages
        .iter()
        .map(|u| {
            u.rss_kib
                .map(|k| format!("{:.1}", k as f64 / 1024.0))
                .unwrap_or_else(|| "?".into())
        })
        .collect();
    let written: Vec<String> = usages
        .iter()
        .map(|u| {
            u.written
                .map(|b| {
                    format!(
                        "{:.1} MiB ({:.3}x)",
                        b as f64 / 1048576.0,
                        b as f64 / case.payload as f64
                    )
                })
                .unwrap_or_else(|| "?".into())
        })
        .collect();
    println!("  bgfetch peak RSS       {} MiB", rss.join(" / "));
    println!("  bgfetch wrote          {}", written.join(" / "));
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut rounds = 3;
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        rounds = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--rounds N");
        args.drain(i..=i + 1);
    }
    if args.is_empty() {
        args = vec!["1g".into(), "small".into()];
    }
    let aria2c = Command::new("aria2c").arg("--version").output().is_ok();
    if !aria2c {
        println!("aria2c is not installed (Debian: aria2): comparing with curl only");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::start(benchmark_routes())).unwrap();
    let work = std::env::temp_dir().join(format!("bgfetch-bench-{}", std::process::id()));
    for arg in &args {
        let case = match arg.as_str() {
            "1g" | "4g" | "8g" => {
                let gib: u64 = arg.trim_end_matches('g').parse().unwrap();
                let url = server.url(&format!("/gen{gib}"));
                let (u1, u2) = (url.clone(), url.clone());
                Case {
                    name: format!("{gib} GiB, one file"),
                    payload: gib << 30,
                    urls: vec![url],
                    curl: Box::new(move |out| {
                        format!("curl -s -o '{}/f' '{u1}' && sync", out.display())
                    }),
                    aria2c: Box::new(move |out| {
                        format!("aria2c -q -d '{}' '{u2}' && sync", out.display())
                    }),
                }
            }
            "small" => {
                let urls: Vec<String> = (0..1000)
                    .map(|i| server.url(&format!("/small/{i}")))
                    .collect();
                let (u1, u2) = (urls.clone(), urls.clone());
                let list = work.join("urls.txt");
                Case {
                    name: "1,000 x 16 KiB, one fetch".into(),
                    payload: 1000 * 16 * 1024,
                    urls,
                    curl: Box::new(move |out| {
                        let mut s = "curl -s".to_owned();
                        for (i, u) in u1.iter().enumerate() {
                            s.push_str(&format!(" -o '{}/{i}' '{u}'", out.display()));
                        }
                        s
                    }),
                    aria2c: Box::new(move |out| {
                        std::fs::create_dir_all(list.parent().unwrap()).unwrap();
                        std::fs::write(&list, u2.join("\n")).unwrap();
                        format!(
                            "aria2c -q -j 16 -d '{}' -i '{}'",
                            out.display(),
                            list.display()
                        )
                    }),
                }
            }
            other => panic!("unknown case {other}: 1g, 4g, 8g or small"),
        };
        run_case(&case, &work, rounds, aria2c);
    }
    let _ = std::fs::remove_dir_all(&work);
}
