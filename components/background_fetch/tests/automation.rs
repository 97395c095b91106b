//! The spec's WebDriver extension command, "background fetch click" (§7), through
//! `Engine::webdriver_click`.

use background_fetch::automation::{WebDriverError, match_service_worker_registration};
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{FunctionalEventKind as Kind, ServiceWorkerRegistrationId};
use url::Url;

const A: &str = "https://example.com/a.bin";

fn page() -> Url {
    Url::parse("https://example.com/app/page.html").unwrap()
}

#[test]
fn a_closed_context_is_no_such_window() {
    let bed = TestBed::new();
    let err = bed
        .engine()
        .webdriver_click(None, std::slice::from_ref(&bed.registration), "x")
        .unwrap_err();
    assert_eq!(err, WebDriverError::NoSuchWindow);
    assert_eq!((err.status(), err.error_code()), (404, "no such window"));
}

#[test]
fn a_page_no_registration_controls_is_an_invalid_service_worker_state() {
    let bed = TestBed::new();
    let other = Url::parse("https://other.example/page.html").unwrap();
    let err = bed
        .engine()
        .webdriver_click(Some(&other), std::slice::from_ref(&bed.registration), "x")
        .unwrap_err();
    assert_eq!(err, WebDriverError::InvalidServiceWorkerState);
    assert_eq!(
        (err.status(), err.error_code()),
        (400, "invalid service worker state")
    );
}

#[test]
fn an_unknown_id_is_background_fetch_not_found() {
    let bed = TestBed::new();
    let err = bed
        .engine()
        .webdriver_click(
            Some(&page()),
            std::slice::from_ref(&bed.registration),
            "nope",
        )
        .unwrap_err();
    assert_eq!(err, WebDriverError::BackgroundFetchNotFound);
    assert_eq!(
        (err.status(), err.error_code()),
        (404, "background fetch not found")
    );
}

/// The newest background fetch with the id is clicked, settled ones included (the spec keeps
/// a history, not only the active map).
#[test]
fn the_newest_fetch_with_the_id_gets_the_click() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(vec![1u8; 10]));
    let m = bed.manager();
    let old = bed
        .run(async move { m.fetch("dl", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
    let engine = bed.engine();
    engine
        .webdriver_click(Some(&page()), std::slice::from_ref(&bed.registration), "dl")
        .unwrap();
    bed.run_until_idle();
    let clicks = bed.worker.events_of(Kind::Click);
    assert_eq!(clicks.len(), 1);
    assert_eq!(clicks[0].registration().uid(), old.uid());
    // The id is reused by a newer fetch (still running): it is the one clicked now.
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let new = bed
        .run(async move { m.fetch("dl", A, Default::default()).await })
        .unwrap();
    engine
        .webdriver_click(Some(&page()), std::slice::from_ref(&bed.registration), "dl")
        .unwrap();
    bed.run_until_idle();
    let clicks = bed.worker.events_of(Kind::Click);
    assert_eq!(clicks.len(), 2);
    assert_eq!(clicks[1].registration().uid(), new.uid());
    assert_ne!(old.uid(), new.uid());
}

#[test]
fn the_longest_matching_scope_of_the_pages_storage_key_wins() {
    let root = ServiceWorkerRegistrationId::for_scope(&Url::parse("https://example.com/").unwrap());
    let app =
        ServiceWorkerRegistrationId::for_scope(&Url::parse("https://example.com/app/").unwrap());
    let apple =
        ServiceWorkerRegistrationId::for_scope(&Url::parse("https://example.com/apple").unwrap());
    let all = [root.clone(), app.clone(), apple.clone()];
    let key = "https://example.com";
    let at = |u: &str| match_service_worker_registration(&all, key, &Url::parse(u).unwrap());
    assert_eq!(at("https://example.com/app/page.html"), Some(&app));
    assert_eq!(at("https://example.com/index.html"), Some(&root));
    // Prefix-based, not path-structural.
    assert_eq!(at("https://example.com/apple-pie.html"), Some(&apple));
    assert_eq!(
        match_service_worker_registration(
            &all,
            "https://other.example",
            &Url::parse("https://example.com/app/").unwrap()
        ),
        None,
        "another storage key's registrations never match"
    );
}
