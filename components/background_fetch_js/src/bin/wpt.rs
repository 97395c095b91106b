//! `wpt --root DIR [--verbose] [FILE...]`: runs the upstream `background-fetch/` files of the
//! WPT root `DIR`, prints every subtest with its status and `N passed, M failed`, and exits
//! with 1 when a result differs from `expectations/upstream.txt`.

use background_fetch_js::expectations;
use background_fetch_js::runner::{Runner, default_root, test_files};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut root = default_root();
    let mut verbose = false;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = PathBuf::from(args.next().expect("--root DIR")),
            "--verbose" | "-v" => verbose = true,
            _ => only.push(a),
        }
    }
    std::process::exit(run(&root, verbose, &only));
}

fn run(root: &std::path::Path, verbose: bool, only: &[String]) -> i32 {
    let started = Instant::now();
    let files = match test_files(root) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", root.display());
            return 2;
        }
    };
    let expected = match expectations::parse(expectations::EXPECTATIONS) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("expectations: {e}");
            return 2;
        }
    };
    let mut runner = Runner::new(root).expect("the loopback server starts");
    runner.verbose = verbose;
    let mut results = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for file in files
        .iter()
        .filter(|f| only.is_empty() || only.iter().any(|o| f.contains(o.as_str())))
    {
        let t = Instant::now();
        let variants = runner.run_file(file);
        let took = t.elapsed().as_secs_f64();
        for r in variants {
            let p = r.subtests.iter().filter(|s| s.status == "PASS").count();
            let f = r.subtests.len() - p;
            println!(
                "{}: {p} passed, {f} failed ({took:.1} s for {file}, harness {})",
                r.file, r.harness.0
            );
            for s in &r.subtests {
                if s.status == "PASS" {
                    println!("  PASS {}", s.name);
                } else {
                    println!("  {} {}: {}", s.status, s.name, s.message);
                }
            }
            if r.harness.0 != "OK" {
                println!("  harness {}: {}", r.harness.0, r.harness.1);
            }
            passed += p;
            failed += f;
            results.push(r);
        }
    }
    println!(
        "{passed} passed, {failed} failed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let problems = expectations::check(&results, &expected);
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() { 0 } else { 1 }
}
