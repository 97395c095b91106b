//! The host's own testharness.js files (`tests/self/`), run like the upstream ones: a WPT root
//! is made in a temporary directory from `resources/` of the shared WPT root (a symbolic link:
//! nothing upstream is copied) and this crate's own test files.

use background_fetch_js::runner::{Runner, default_root};
use std::path::Path;

#[test]
fn the_host_s_own_platform_tests_pass() {
    let upstream = std::env::var_os("WPT_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(default_root);
    let root = tempfile::tempdir().expect("a temporary directory");
    std::os::unix::fs::symlink(
        upstream
            .join("resources")
            .canonicalize()
            .expect("the WPT root's resources/"),
        root.path().join("resources"),
    )
    .unwrap();
    let dir = root.path().join("background-fetch");
    std::fs::create_dir(&dir).unwrap();
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/self");
    for entry in std::fs::read_dir(&own).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.join("big.bin"), vec![7u8; 1 << 20]).unwrap();
    let root_path = root.path().to_owned();
    // Boa's interpreter wants a larger stack than a test thread's 2 MiB.
    let results = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let runner = Runner::new(&root_path).expect("the loopback server starts");
            let mut results = runner.run_file("platform.https.window.js");
            results.extend(runner.run_file("streams.https.window.js"));
            results.extend(runner.run_file("workers.https.window.js"));
            results
        })
        .unwrap()
        .join()
        .unwrap();
    for r in &results {
        assert_eq!(r.harness.0, "OK", "{}", r.harness.1);
        assert!(!r.subtests.is_empty());
        for s in &r.subtests {
            assert_eq!(s.status, "PASS", "{}: {}", s.name, s.message);
        }
    }
}
