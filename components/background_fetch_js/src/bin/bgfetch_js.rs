//! `bgfetch-js --root DIR [--store PATH] [--register SW.js] [--timeout SECS] [--verbose] PAGE.js`:
//! runs a web
//! app headless. DIR is served on loopback as the app's origin (`https://web-platform.test`,
//! resolved to the loopback port), PAGE.js runs in the page realm (after
//! `navigator.serviceWorker.register(SW.js)` when `--register` is given: apps such as MDN's
//! example leave that step to a page this program does not have), `background-fetch` is
//! granted, and the program prints the console output and what the background fetch UI showed,
//! then exits when nothing is pending (or after `--timeout`, default 60 s) with `bgfetch`'s
//! exit codes: 0 done, 3 a script threw.
//!
//! With `--store PATH` the background fetches are kept in a redb store: a run that stops before
//! a fetch finished leaves it there, and the next run on the same store resumes it and fires its
//! event at the service worker that run registers.
//!
//! The `bgfetch` program's `bgfetch js` runs apps on its own hosts instead (hyper network, a
//! live `--origin`, the worker's registration kept in the store so that `bgfetch run` resumes a
//! killed fetch and runs the worker's handlers itself): see [`background_fetch_js::app`]. This
//! program stays for the host's tests (an in-memory store, or `--store`, on the loopback
//! network only; the next run registers the worker again).

use background_fetch_js::runner::Runner;
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut root = None;
    let mut register = None;
    let mut store = None;
    let mut timeout = Duration::from_secs(60);
    let mut verbose = false;
    let mut page = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = args.next().map(PathBuf::from),
            "--register" => register = args.next(),
            "--store" => store = args.next().map(PathBuf::from),
            "--timeout" => {
                timeout = Duration::from_secs_f64(
                    args.next().and_then(|s| s.parse().ok()).unwrap_or(60.0),
                )
            }
            "--verbose" | "-v" => verbose = true,
            _ => page = Some(a),
        }
    }
    let (Some(root), Some(page)) = (root, page) else {
        eprintln!(
            "usage: bgfetch-js --root DIR [--store PATH] [--register SW.js] [--timeout SECS] [-v] PAGE.js"
        );
        std::process::exit(3);
    };
    let mut runner = match Runner::new(&root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: {e}", root.display());
            std::process::exit(3);
        }
    };
    runner.verbose = verbose;
    runner.timeout = timeout;
    runner.real_time = true;
    runner.store = store;
    let mut prelude =
        String::from("test_driver.set_permission({name: 'background-fetch'}, 'granted');");
    if let Some(sw) = register {
        prelude.push_str(&format!(
            "navigator.serviceWorker.register({});",
            serde_json::to_string(&sw).unwrap_or_default()
        ));
    }
    let run = runner.run_app(&prelude, &page);
    for line in run.plain_lines() {
        println!("{line}");
    }
    for e in &run.errors {
        eprintln!("error: {e}");
    }
    std::process::exit(if run.errors.is_empty() { 0 } else { 3 });
}
