//! # background-fetch-fuzz
//!
//! The fuzz targets of the background-fetch workspace. Each target is a function
//! `run(data: &[u8])` that decodes `data` into an input (with [`arbitrary`]), drives the code
//! under test with it, and **panics** when an invariant breaks. The same functions are run by
//!
//! * cargo-fuzz (libFuzzer), from the `fuzz/` directory at the top of the repository, which is
//!   its own cargo workspace so that `cargo test --workspace` never builds libFuzzer; and
//! * ordinary tests (`tests/corpus.rs`), which replay every input under `fuzz/seeds/<target>/`
//!   and `fuzz/regressions/<target>/` on a stable compiler, without cargo-fuzz.
//!
//! | target | what it drives | what it checks |
//! |---|---|---|
//! | [`fetch_inputs`] | `BackgroundFetchManager::fetch()` with arbitrary ids, requests and options | never a panic; every rejection is one of the spec's DOM errors, and the right one |
//! | [`content_range`] | Content-Range parsing, "extract content-range values", "validate a partial response" | agreement with a naive reference; round trip of valid values |
//! | [`request_matching`] | `match()` / `matchAll()` on a finished fetch | agreement with a naive "request matches cached item" |
//! | [`engine_script`] | the whole engine on deterministic hosts, driven by a script | result set once, at most one settle event, `downloaded` bounded, bytes intact across restarts |
//! | [`store_ops`] | `RedbStore` on an in-memory disk that fails writes and crashes | agreement with a `BTreeMap` model across reopens |
//!
//! Run a target with `cargo fuzz run --sanitizer none <target>` from the repository root (see
//! `fuzz/README.md`).

pub mod content_range;
pub mod engine_script;
pub mod fetch_inputs;
pub mod request_matching;
pub mod store_ops;

mod reference;

/// A fuzz target: decodes the input and panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name cargo-fuzz knows it by.
pub const TARGETS: &[(&str, Target)] = &[
    ("fetch_inputs", fetch_inputs::run),
    ("content_range", content_range::run),
    ("request_matching", request_matching::run),
    ("engine_script", engine_script::run),
    ("store_ops", store_ops::run),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
