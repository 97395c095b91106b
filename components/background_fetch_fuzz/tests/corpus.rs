//! Replays every fuzz input kept in the tree, as ordinary tests: the seed corpora
//! (`fuzz/seeds/<target>/`) and the inputs of crashes found and fixed
//! (`fuzz/regressions/<target>/`). No nightly compiler or cargo-fuzz is needed.
//!
//! A failure names the file, its size and the panic message; reproduce it with
//! `cargo fuzz run --sanitizer none <target> <file>` or with this test and `BGFETCH_FUZZ_INPUT`.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.expect("a readable corpus directory").path();
            if path.is_file() && path.extension().is_none_or(|x| x != "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let run = background_fetch_fuzz::target(target).expect("a known target");
    let files = inputs(target);
    let seeds = files
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "seeds"))
        .count();
    assert!(seeds > 0, "fuzz/seeds/{target}/ holds no seed inputs");
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("a readable input");
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!(
                "{} ({} bytes): {message}",
                path.display(),
                data.len()
            ));
        }
    }
    println!("{target}: {} inputs replayed", files.len());
    assert!(
        failures.is_empty(),
        "{} of {} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn fetch_inputs_corpus() {
    replay("fetch_inputs");
}

#[test]
fn content_range_corpus() {
    replay("content_range");
}

#[test]
fn request_matching_corpus() {
    replay("request_matching");
}

#[test]
fn engine_script_corpus() {
    replay("engine_script");
}

#[test]
fn store_ops_corpus() {
    replay("store_ops");
}

/// `BGFETCH_FUZZ_INPUT=<target>:<file>` runs one input outside the harness (a debugger, logs).
#[test]
fn one_input_from_the_environment() {
    let Ok(spec) = std::env::var("BGFETCH_FUZZ_INPUT") else {
        return;
    };
    let (target, file) = spec
        .split_once(':')
        .expect("BGFETCH_FUZZ_INPUT=<target>:<file>");
    let run = background_fetch_fuzz::target(target).expect("a known target");
    run(&std::fs::read(file).expect("a readable input"));
}
