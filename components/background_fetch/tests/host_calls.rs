//! The host calls another thread or process may answer (issue 13: "host calls that another
//! thread or process answers are asynchronous (permission state, which the spec asks of an
//! environment, not an origin string; the active worker; quota), and none is called on every
//! body chunk").

use background_fetch::PermissionState;
use background_fetch::testing::{Resource, TestBed};
use std::time::Duration;

const A: &str = "https://example.com/a.bin";

/// fetch() step 8.1: "the permission state for a PermissionDescriptor with name
/// "background-fetch", and this's relevant settings object": the host is asked with the
/// caller's environment (its URL, its embedder data), not only its origin.
#[test]
fn the_permission_is_asked_for_the_callers_environment() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(vec![1u8; 10]));
    let m = bed.manager();
    bed.run(async move { m.fetch("p", A, Default::default()).await })
        .unwrap();
    let asked = bed.permission.asked();
    assert!(!asked.is_empty());
    for client in asked {
        assert_eq!(client.base_url.as_str(), "https://example.com/page.html");
        assert_eq!(client.origin, "https://example.com");
    }
}

/// An answer that comes later (another process) is waited for; a denial still rejects.
#[test]
fn a_slow_permission_answer_is_waited_for() {
    let bed = TestBed::new();
    bed.permission.set(PermissionState::Denied);
    bed.permission
        .answer_after(&bed.clock, Duration::from_secs(3));
    let m = bed.manager();
    let e = bed
        .run(async move { m.fetch("p", A, Default::default()).await })
        .expect_err("denied");
    assert_eq!(e.name(), "NotAllowedError");
}

/// The quota is asked when bytes are reserved, not for every chunk stored.
#[test]
fn the_quota_is_not_asked_for_every_body_chunk() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(vec![3u8; 1 << 20]).chunk_size(16 * 1024));
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("q", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(reg.downloaded(), 1 << 20);
    let asked = bed.quota.asked();
    assert!(
        asked <= 2,
        "the quota host was asked {asked} times for 64 chunks"
    );
}
