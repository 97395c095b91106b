//! The conformance summary: runs every subtest of every ported upstream file against its
//! expectations and prints, per file and in total, `N passed, M failed (K expected
//! failures)`. Exits non-zero on an unexpected result (a failure expected to pass, or a pass
//! expected to fail), an inconsistent expectation file, or a file or subtest count that does not
//! match the catalogue.
//!
//! `cargo test --workspace` runs it (a `harness = false` test target); on its own:
//! `cargo test -p background-fetch-wpt --test summary`.
//!
//! The subtests are written once, in the per-file test files; this target includes those files
//! as modules and runs their `FILE` tables.

#[path = "abort.rs"]
mod abort;
#[path = "content-security-policy.rs"]
mod content_security_policy;
#[path = "cors.rs"]
mod cors;
#[path = "fetch.rs"]
mod fetch;
#[path = "fetch-uploads.rs"]
mod fetch_uploads;
#[path = "get.rs"]
mod get;
#[path = "get-ids.rs"]
mod get_ids;
#[path = "idlharness.rs"]
mod idlharness;
#[path = "match.rs"]
mod r#match;
#[path = "match-request-body.rs"]
mod match_request_body;
#[path = "mixed-content-and-allowed-schemes.rs"]
mod mixed_content_and_allowed_schemes;
#[path = "port-blocking.rs"]
mod port_blocking;
#[path = "update-ui.rs"]
mod update_ui;

fn main() -> std::process::ExitCode {
    // `--list` (test runners enumerating tests): this target has no libtest tests to list.
    if std::env::args().any(|a| a == "--list") {
        return std::process::ExitCode::SUCCESS;
    }
    let files = [
        &abort::FILE,
        &content_security_policy::FILE,
        &fetch_uploads::FILE,
        &fetch::FILE,
        &get_ids::FILE,
        &get::FILE,
        &r#match::FILE,
        &mixed_content_and_allowed_schemes::FILE,
        &port_blocking::FILE,
        &update_ui::FILE,
        &cors::FILE,
        &match_request_body::FILE,
        &idlharness::FILE,
    ];
    println!("background-fetch WPT subtests, ported to Rust\n");
    if background_fetch_wpt::summary(&files) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
