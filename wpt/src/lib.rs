//! The WPT `background-fetch/` conformance suite, ported to Rust (see `README.md`).
//!
//! * [`harness`]: the page ([`Test`]) a subtest runs in, with `utils.js`'s helpers
//!   (`backgroundFetchTest`, `uniqueId`, `getMessageFromServiceWorker`, ...).
//! * [`service_workers`]: `sw.js`, `sw-abort.js`, `sw-update-ui.js` and `sw-cors.js` as Rust
//!   functional event handlers.
//! * [`server`]: the loopback WPT server (`feature-name.txt`, `upload.py`, `slow.py`, pipes, a
//!   cross-origin `www1` host) on the engine's scripted network; [`cors`]: Fetch's CORS
//!   protocol in front of it.
//! * [`asserts`]: `testharness.js` assertions as macros.
//! * [`expectations`]: the per-file expectation files; [`run_under_libtest`] and [`summary`]
//!   run the subtests against them.
//! * [`idl`]: the WebIDL blocks of the pinned spec source, for the `idlharness` check.
//!
//! Each upstream file is one test file, `tests/<upstream stem>.rs`, that declares its subtests
//! once with [`upstream_file!`]: a table from the exact upstream subtest name to the Rust
//! function. The macro makes a libtest `#[test]` per subtest and a static [`UpstreamFile`]
//! that `tests/summary.rs` runs again to print the totals.

pub mod asserts;
pub mod body;
pub mod cors;
pub mod expectations;
pub mod harness;
pub mod idl;
pub mod server;
pub mod service_workers;

pub use body::{BodyInit, FormDataValue, body};
pub use harness::{HostInfo, PageSetup, ServiceWorkerRegistration, Test, get_host_info};
pub use service_workers::{AbortResult, EventMessage, FetchResult, Message, RegistrationCopy};

use expectations::{Expectations, Status};
use futures::future::BoxFuture;
use std::panic::AssertUnwindSafe;

/// One upstream subtest.
pub struct Subtest {
    /// The exact upstream subtest name.
    pub name: &'static str,
    /// The Rust function that ports it.
    pub function: &'static str,
    /// Runs it in a fresh page.
    pub run: fn(Test) -> BoxFuture<'static, ()>,
}

/// One upstream test file.
pub struct UpstreamFile {
    /// Its name under `background-fetch/` (for example `fetch.https.window.js`).
    pub file: &'static str,
    /// How its page is set up.
    pub page: PageSetup,
    /// The text of `expectations/<file>.ini`.
    pub expectations: &'static str,
    /// Its subtests, in upstream order.
    pub subtests: &'static [Subtest],
}

/// Every upstream file the port covers, with its number of subtests (catalogue §1): the ten
/// current hand-written files, Chromium's two newer ones, and the IDL check standing for the
/// eleventh current file, the generated `idlharness.https.any.js`.
pub const CATALOGUE: [(&str, usize); 13] = [
    ("abort.https.window.js", 3),
    ("content-security-policy.https.window.js", 1),
    ("fetch-uploads.https.window.js", 3),
    ("fetch.https.window.js", 14),
    ("get-ids.https.window.js", 2),
    ("get.https.window.js", 3),
    ("match.https.window.js", 5),
    ("mixed-content-and-allowed-schemes.https.window.js", 8),
    ("port-blocking.https.window.js", 6),
    ("update-ui.https.window.js", 3),
    ("cors.https.window.js", 5),
    ("match-request-body.https.window.js", 8),
    // Generated upstream; here one check over every IDL member.
    ("idlharness.https.any.js", 1),
];

/// The number of hand-written upstream subtests (48 current + 13 from Chromium's copy).
pub const HAND_WRITTEN: usize = 61;

/// Declares the subtests of one upstream file: a table from each exact upstream subtest name
/// to the `async fn(Test)` that ports it.
///
/// ```ignore
/// background_fetch_wpt::upstream_file! {
///     file: "get-ids.https.window.js",
///     subtests: {
///         "BackgroundFetchManager.getIds() does not require an activated worker" => get_ids_without_an_active_worker,
///         "The BackgroundFetchManager exposes active fetches" => exposes_active_fetches,
///     }
/// }
/// ```
///
/// It defines `pub static FILE: UpstreamFile` (with `expectations/<file>.ini` included), and
/// under `cfg(test)` a module `subtest` with one `#[test]` per subtest, named after its
/// function, plus `expectations_list_every_subtest`.
#[macro_export]
macro_rules! upstream_file {
    (
        file: $file:literal,
        $(page: $page:expr,)?
        subtests: { $( $name:literal => $function:ident ),* $(,)? } $(,)?
    ) => {
        /// This upstream file: its name, page set-up, expectations and subtests.
        pub static FILE: $crate::UpstreamFile = $crate::UpstreamFile {
            file: $file,
            page: $crate::__page_setup!($($page)?),
            expectations: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/expectations/",
                $file,
                ".ini"
            )),
            subtests: &[$(
                $crate::Subtest {
                    name: $name,
                    function: stringify!($function),
                    run: |t| ::std::boxed::Box::pin($function(t)),
                }
            ),*],
        };

        #[cfg(test)]
        mod subtest {
            $(
                #[test]
                fn $function() {
                    $crate::run_under_libtest(&super::FILE, $name);
                }
            )*

            #[test]
            fn expectations_list_every_subtest() {
                if let Err(e) = $crate::check_expectations(&super::FILE) {
                    panic!("{e}");
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __page_setup {
    () => {
        $crate::PageSetup::DEFAULT
    };
    ($page:expr) => {
        $page
    };
}

/// What happened to a subtest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Pass,
    /// An assertion failed, or the subtest could not finish (`TIMEOUT: ...`).
    Fail(String),
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    };
    if text.starts_with("deadlock:") {
        format!("TIMEOUT: nothing is left to run and no timer is pending ({text})")
    } else {
        text
    }
}

/// Runs one subtest in a fresh page.
pub fn run_subtest(file: &UpstreamFile, subtest: &Subtest) -> Outcome {
    let t = Test::new(file.file, file.page);
    let body = (subtest.run)(t.clone());
    match std::panic::catch_unwind(AssertUnwindSafe(|| t.run(body))) {
        Ok(()) => Outcome::Pass,
        Err(payload) => Outcome::Fail(panic_message(payload.as_ref())),
    }
}

/// Parses `file`'s expectations and checks they list exactly its subtests.
pub fn check_expectations(file: &UpstreamFile) -> Result<Expectations, String> {
    let e = Expectations::parse(file.expectations)
        .map_err(|e| format!("expectations/{}.ini: {e}", file.file))?;
    let names: Vec<&str> = file.subtests.iter().map(|s| s.name).collect();
    e.check_covers(file.file, &names)
        .map_err(|e| format!("expectations/{}.ini:\n{e}", file.file))?;
    Ok(e)
}

/// The body of a libtest `#[test]` for the subtest `name` of `file`: runs it and panics on an
/// unexpected result (a failure expected to pass, or a pass expected to fail).
pub fn run_under_libtest(file: &UpstreamFile, name: &str) {
    let expectations = Expectations::parse(file.expectations)
        .unwrap_or_else(|e| panic!("expectations/{}.ini: {e}", file.file));
    let expected = expectations
        .subtests
        .get(name)
        .unwrap_or_else(|| panic!("expectations/{}.ini has no entry for [{name}]", file.file));
    let subtest = file
        .subtests
        .iter()
        .find(|s| s.name == name)
        .expect("the subtest is in the file's table");
    println!("{} [{name}]", file.file);
    match (run_subtest(file, subtest), expected.status) {
        (Outcome::Pass, Status::Pass) => {}
        (Outcome::Fail(message), Status::Pass) => {
            panic!("{} [{name}]: unexpected FAIL: {message}", file.file)
        }
        (Outcome::Pass, Status::Fail) => panic!(
            "{} [{name}]: unexpected PASS (expected FAIL: {}); update expectations/{}.ini",
            file.file,
            expected.reason.as_deref().unwrap_or_default(),
            file.file
        ),
        (Outcome::Fail(message), Status::Fail) => println!(
            "expected FAIL: {}\n  got: {message}",
            expected.reason.as_deref().unwrap_or_default()
        ),
    }
}

/// The totals of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Subtests that passed.
    pub passed: usize,
    /// Subtests that failed (expected or not).
    pub failed: usize,
    /// Failures the expectations list as FAIL.
    pub expected_failures: usize,
    /// Failures expected to pass, and passes expected to fail.
    pub unexpected: usize,
    /// Expectation files that do not list exactly their file's subtests.
    pub bad_expectation_files: usize,
}

/// Runs every subtest of `files` against its expectations, printing each result and a line
/// `N passed, M failed (K expected failures)` per file.
pub fn run_files(files: &[&UpstreamFile]) -> Totals {
    let mut totals = Totals::default();
    let _quiet = QuietPanics::on_this_thread();
    for file in files {
        println!("{}", file.file);
        let expectations = match check_expectations(file) {
            Ok(e) => e,
            Err(e) => {
                println!("  {e}");
                totals.bad_expectation_files += 1;
                continue;
            }
        };
        let (mut p, mut f, mut k) = (0, 0, 0);
        for subtest in file.subtests {
            let expected = &expectations.subtests[subtest.name];
            let outcome = run_subtest(file, subtest);
            let reason = expected.reason.as_deref().unwrap_or_default();
            let (status, notes) = match (&outcome, expected.status) {
                (Outcome::Pass, Status::Pass) => {
                    p += 1;
                    ("PASS", vec![])
                }
                (Outcome::Pass, Status::Fail) => {
                    p += 1;
                    totals.unexpected += 1;
                    ("PASS", vec![format!("UNEXPECTED: expected FAIL: {reason}")])
                }
                (Outcome::Fail(m), Status::Fail) => {
                    f += 1;
                    k += 1;
                    (
                        "FAIL",
                        vec![format!("expected: {reason}"), format!("got: {m}")],
                    )
                }
                (Outcome::Fail(m), Status::Pass) => {
                    f += 1;
                    totals.unexpected += 1;
                    ("FAIL", vec!["UNEXPECTED".to_owned(), format!("got: {m}")])
                }
            };
            println!("  {status}  {}", subtest.name);
            for note in notes {
                println!("          {note}");
            }
        }
        println!("  {p} passed, {f} failed ({k} expected failures)");
        totals.passed += p;
        totals.failed += f;
        totals.expected_failures += k;
    }
    totals
}

std::thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silences the panic hook on the current thread while it lives (failed assertions are
/// reported by the summary instead). Other threads, such as concurrent libtest tests, keep
/// their output.
struct QuietPanics;

impl QuietPanics {
    fn on_this_thread() -> QuietPanics {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !QUIET.with(|q| q.get()) {
                    previous(info);
                }
            }));
        });
        QUIET.with(|q| q.set(true));
        QuietPanics
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(false));
    }
}

/// Checks that `files` are the catalogued files with their catalogued subtest counts, runs
/// them ([`run_files`]) and prints the closing `Total: N passed, M failed (K expected
/// failures)`. Returns whether everything was as expected.
pub fn summary(files: &[&UpstreamFile]) -> bool {
    let mut ok = true;
    let mut hand_written = 0;
    for (catalogued, count) in CATALOGUE.iter() {
        match files.iter().find(|f| f.file == *catalogued) {
            None => {
                println!("{catalogued}: MISSING from the summary");
                ok = false;
            }
            Some(f) if f.subtests.len() != *count => {
                println!(
                    "{catalogued}: {} subtests, the catalogue lists {count}",
                    f.subtests.len()
                );
                ok = false;
            }
            Some(f) if !f.file.starts_with("idlharness") => hand_written += f.subtests.len(),
            Some(_) => {}
        }
    }
    if files.len() != CATALOGUE.len() {
        println!(
            "{} files, the catalogue lists {}",
            files.len(),
            CATALOGUE.len()
        );
        ok = false;
    }
    if hand_written != HAND_WRITTEN {
        println!("{hand_written} hand-written subtests, the catalogue lists {HAND_WRITTEN}");
        ok = false;
    }
    let totals = run_files(files);
    if totals.unexpected > 0 {
        println!("{} unexpected results", totals.unexpected);
        ok = false;
    }
    if totals.bad_expectation_files > 0 {
        println!(
            "{} inconsistent expectation files",
            totals.bad_expectation_files
        );
        ok = false;
    }
    println!(
        "\n{hand_written} hand-written upstream subtests and the IDL check ({} files)",
        files.len()
    );
    println!(
        "Total: {} passed, {} failed ({} expected failures)",
        totals.passed, totals.failed, totals.expected_failures
    );
    ok
}

#[cfg(test)]
mod self_tests;
