//! The crate's layers: script side → protocol → service → algorithms → hosts, with no module
//! reaching back up, and no import circle.

use background_fetch::testing::layering::assert_no_import_circle;
use std::path::Path;

/// The algorithms and the state they share.
const ALGORITHMS: [&str; 6] = [
    "core",
    "perform",
    "functional",
    "quota",
    "recovery",
    "state",
];
/// The host seams.
const HOSTS: [&str; 3] = ["hosts", "memory_store", "store"];
/// The Fetch pieces the engine carries: plain data and pure functions, below everything.
const FETCH: [&str; 7] = [
    "fetch",
    "fetch::headers",
    "fetch::request",
    "fetch::response",
    "fetch::cors",
    "fetch::content_range",
    "fetch::policy",
];
/// The script side's objects (same process) and the service above them.
const SCRIPT_SIDE: [&str; 5] = ["manager", "registration", "events", "engine", "service"];

#[test]
fn the_layers_hold_and_there_is_no_import_circle() {
    let g = assert_no_import_circle(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let above = |m: &str, layer: &[&str]| {
        g[m].iter()
            .filter(|u| {
                layer
                    .iter()
                    .any(|l| u == l || u.starts_with(&format!("{l}::")))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    for m in ALGORITHMS {
        let up = above(m, &SCRIPT_SIDE);
        assert!(
            up.is_empty(),
            "the algorithm module {m} uses the script side: {up:?}"
        );
    }
    for m in HOSTS {
        let mut up = above(m, &SCRIPT_SIDE);
        up.extend(above(m, &ALGORITHMS));
        assert!(
            up.is_empty(),
            "the host module {m} uses a layer above it: {up:?}"
        );
    }
    for m in FETCH {
        let mut up = above(m, &SCRIPT_SIDE);
        up.extend(above(m, &ALGORITHMS));
        up.extend(above(m, &HOSTS));
        assert!(
            up.is_empty(),
            "the Fetch module {m} uses a layer above it: {up:?}"
        );
    }
    let up: Vec<_> = g["service::protocol"]
        .iter()
        .filter(|u| u.starts_with("service::"))
        .collect();
    assert!(
        up.is_empty(),
        "the protocol uses the service or the client: {up:?}"
    );
}
