//! Runs every upstream `background-fetch/` file of `../shared/wpt-upstream` (beside the
//! workspace) and fails on any result that differs from `expectations/upstream.txt`.

use background_fetch_js::expectations;
use background_fetch_js::runner::{Runner, default_root, test_files};

fn main() {
    let root = std::env::var_os("WPT_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(default_root);
    let files = test_files(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let expected = expectations::parse(expectations::EXPECTATIONS).expect("expectations parse");
    let runner = Runner::new(&root).expect("the loopback server starts");
    let mut results = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        for r in runner.run_file(file) {
            let p = r.subtests.iter().filter(|s| s.status == "PASS").count();
            println!("{}: {p} passed, {} failed", r.file, r.subtests.len() - p);
            passed += p;
            failed += r.subtests.len() - p;
            results.push(r);
        }
    }
    println!("{passed} passed, {failed} failed");
    let problems = expectations::check(&results, &expected);
    for p in &problems {
        println!("{p}");
    }
    assert!(
        problems.is_empty(),
        "{} results differ from the expectations",
        problems.len()
    );
}
