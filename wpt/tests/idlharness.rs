//! The intent of `background-fetch/idlharness.https.any.js`: every interface, member,
//! dictionary member and enum value of the Background Fetch IDL has a counterpart in the
//! script-facing Rust API: the script side of the engine's protocol (`service::client`), which
//! a binding layer calls and which the port's subtests drive.
//!
//! `idlharness.js` checks JavaScript bindings (interface objects, prototypes, `length`,
//! `@@unscopables`, ...), which a component without bindings does not have. What carries over
//! is the shape: the IDL blocks of the pinned spec source
//! (`components/background_fetch/tests/data/background-fetch.bs`, `index.bs` of
//! WICG/background-fetch at a1f0bc2; see `SOURCE.md` there) are parsed with
//! `background_fetch_wpt::idl`, and [`TABLE`] below maps each IDL item to its Rust counterpart:
//!
//! * every row's check is Rust code that names the real items with the types the IDL implies
//!   (`Promise<T>` → a future of `Result<T, DomError>`, `T?` → `Option<T>`, an optional
//!   argument with a default → a value whose `Default` is that default, ...), so the compiler
//!   checks the counterpart exists; closures taking the objects as arguments are type-checked
//!   without being called;
//! * runtime checks cover what types cannot: enum strings (`as_str()`), dictionary defaults,
//!   event handler names;
//! * exhaustive `match`es without a wildcard make a Rust enum variant without an IDL value a
//!   compile error;
//! * the test fails if an IDL item has no row, or a row names an item the IDL does not have.

use background_fetch::service::Connection;
use background_fetch::service::client::{
    BackgroundFetchManager, BackgroundFetchRecord, BackgroundFetchRegistration, FunctionalEvent,
    Response,
};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, BackgroundFetchResult,
    BackgroundFetchUiOptions, CacheQueryOptions, DispatchOutcome, DomError, FunctionalEventKind,
    ImageResource, Request, RequestInfo, Requests, ServiceWorkerRegistrationId,
};
use background_fetch_wpt::*;
use futures::FutureExt;

upstream_file! {
    file: "idlharness.https.any.js",
    subtests: {
        "idl_test: every item of the background-fetch IDL has a Rust counterpart" => idl_test,
    }
}

/// The pinned spec source (not copied: the core crate's test data).
const SPEC_SOURCE: &str =
    include_str!("../../components/background_fetch/tests/data/background-fetch.bs");

/// One IDL item and its Rust counterpart.
struct Row {
    /// The IDL item, as `background_fetch_wpt::idl::items` prints it.
    idl: &'static str,
    /// The Rust counterpart, for readers.
    rust: &'static str,
    /// Type-checks the counterpart, and checks at run time what types cannot.
    check: fn() -> Result<(), String>,
}

/// Type-checks `_f` (a closure naming the counterpart) without calling it.
fn compiles<F>(_f: F) -> Result<(), String> {
    Ok(())
}

fn same<T: PartialEq + std::fmt::Debug>(rust: T, idl: T) -> Result<(), String> {
    if rust == idl {
        Ok(())
    } else {
        Err(format!("Rust has {rust:?}, the IDL {idl:?}"))
    }
}

/// The IDL values of `BackgroundFetchResult`; no wildcard, so a new Rust variant fails to
/// compile until it gets an IDL value and a row.
fn result_value(r: BackgroundFetchResult) -> &'static str {
    match r {
        BackgroundFetchResult::Empty => "",
        BackgroundFetchResult::Success => "success",
        BackgroundFetchResult::Failure => "failure",
    }
}

/// The IDL values of `BackgroundFetchFailureReason` (exhaustive, as above).
fn failure_reason_value(r: BackgroundFetchFailureReason) -> &'static str {
    use BackgroundFetchFailureReason::*;
    match r {
        Empty => "",
        Aborted => "aborted",
        BadStatus => "bad-status",
        FetchError => "fetch-error",
        QuotaExceeded => "quota-exceeded",
        DownloadTotalExceeded => "download-total-exceeded",
    }
}

fn result(r: BackgroundFetchResult, idl: &str) -> Result<(), String> {
    same(r.as_str(), idl)?;
    same(result_value(r), idl)
}

fn reason(r: BackgroundFetchFailureReason, idl: &str) -> Result<(), String> {
    same(r.as_str(), idl)?;
    same(failure_reason_value(r), idl)
}

/// The interface of a functional event of `kind` (one [`FunctionalEvent`] type carries both;
/// exhaustive, so a new kind fails to compile until it gets an interface).
fn event_interface(kind: FunctionalEventKind) -> &'static str {
    match kind {
        FunctionalEventKind::Success | FunctionalEventKind::Fail => "BackgroundFetchUpdateUIEvent",
        FunctionalEventKind::Abort | FunctionalEventKind::Click => "BackgroundFetchEvent",
    }
}

/// `on` + the event type of a functional event kind (the `ServiceWorkerGlobalScope` handler),
/// and the interface of its event.
fn handler(kind: FunctionalEventKind, idl: &str, interface: &str) -> Result<(), String> {
    same(format!("on{}", kind.event_type()).as_str(), idl)?;
    same(event_interface(kind), interface)
}

/// The table kept beside the test: one row per IDL item.
const TABLE: &[Row] = &[
    // partial interface ServiceWorkerGlobalScope: the event handler attributes belong to the
    // binding layer; the service fires each event at the service worker global's connection,
    // whose listener is set with `Connection::on_functional_event`.
    Row {
        idl: "partial interface ServiceWorkerGlobalScope",
        rust: "Connection::on_functional_event (the service worker global's connection)",
        check: || {
            compiles(|sw: Connection| {
                sw.on_functional_event(|e: FunctionalEvent| {
                    async move {
                        let _: FunctionalEventKind = e.kind();
                        DispatchOutcome::Completed
                    }
                    .boxed()
                })
            })
        },
    },
    Row {
        idl: "attribute ServiceWorkerGlobalScope.onbackgroundfetchsuccess",
        rust: "FunctionalEvent of kind Success (a BackgroundFetchUpdateUIEvent)",
        check: || {
            handler(
                FunctionalEventKind::Success,
                "onbackgroundfetchsuccess",
                "BackgroundFetchUpdateUIEvent",
            )
        },
    },
    Row {
        idl: "attribute ServiceWorkerGlobalScope.onbackgroundfetchfail",
        rust: "FunctionalEvent of kind Fail (a BackgroundFetchUpdateUIEvent)",
        check: || {
            handler(
                FunctionalEventKind::Fail,
                "onbackgroundfetchfail",
                "BackgroundFetchUpdateUIEvent",
            )
        },
    },
    Row {
        idl: "attribute ServiceWorkerGlobalScope.onbackgroundfetchabort",
        rust: "FunctionalEvent of kind Abort (a BackgroundFetchEvent)",
        check: || {
            handler(
                FunctionalEventKind::Abort,
                "onbackgroundfetchabort",
                "BackgroundFetchEvent",
            )
        },
    },
    Row {
        idl: "attribute ServiceWorkerGlobalScope.onbackgroundfetchclick",
        rust: "FunctionalEvent of kind Click (a BackgroundFetchEvent)",
        check: || {
            handler(
                FunctionalEventKind::Click,
                "onbackgroundfetchclick",
                "BackgroundFetchEvent",
            )
        },
    },
    // partial interface ServiceWorkerRegistration
    Row {
        idl: "partial interface ServiceWorkerRegistration",
        rust: "ServiceWorkerRegistrationId",
        check: || compiles(|_: ServiceWorkerRegistrationId| ()),
    },
    Row {
        idl: "readonly attribute ServiceWorkerRegistration.backgroundFetch",
        rust: "Connection::background_fetch(&ServiceWorkerRegistrationId) -> BackgroundFetchManager (background_fetch_with: and whether registration.active)",
        check: || {
            compiles(
                |page: Connection, registration: ServiceWorkerRegistrationId| {
                    let _: BackgroundFetchManager = page.background_fetch(&registration);
                    let _: BackgroundFetchManager =
                        page.background_fetch_with(&registration, false);
                },
            )
        },
    },
    // BackgroundFetchManager
    Row {
        idl: "interface BackgroundFetchManager [Exposed=(Window,Worker)]",
        rust: "BackgroundFetchManager (of a connection of any environment kind)",
        check: || compiles(|_: BackgroundFetchManager| ()),
    },
    Row {
        idl: "operation BackgroundFetchManager.fetch(id, requests, optional options = {})",
        rust: "BackgroundFetchManager::fetch(&str, impl Into<Requests>, BackgroundFetchOptions)",
        check: || {
            compiles(|m: BackgroundFetchManager, requests: Requests| async move {
                let _: Result<BackgroundFetchRegistration, DomError> = m
                    .fetch("id", requests, BackgroundFetchOptions::default())
                    .await;
            })?;
            // (RequestInfo or sequence<RequestInfo>)
            compiles(|r: Requests| match r {
                Requests::One(_one) => {
                    let _: RequestInfo = _one;
                }
                Requests::Many(_many) => {
                    let _: Vec<RequestInfo> = _many;
                }
            })?;
            // optional options = {}
            same(
                BackgroundFetchOptions::default(),
                BackgroundFetchOptions {
                    icons: None,
                    title: None,
                    download_total: 0,
                    embedder_data: None,
                },
            )
        },
    },
    Row {
        idl: "operation BackgroundFetchManager.get(id)",
        rust: "BackgroundFetchManager::get(&str) -> Result<Option<BackgroundFetchRegistration>, DomError>",
        check: || {
            compiles(|m: BackgroundFetchManager| async move {
                let _: Result<Option<BackgroundFetchRegistration>, DomError> = m.get("id").await;
            })
        },
    },
    Row {
        idl: "operation BackgroundFetchManager.getIds()",
        rust: "BackgroundFetchManager::get_ids() -> Result<Vec<String>, DomError>",
        check: || {
            compiles(|m: BackgroundFetchManager| async move {
                let _: Result<Vec<String>, DomError> = m.get_ids().await;
            })
        },
    },
    // BackgroundFetchUIOptions, BackgroundFetchOptions
    Row {
        idl: "dictionary BackgroundFetchUIOptions",
        rust: "BackgroundFetchUiOptions",
        check: || compiles(|_: BackgroundFetchUiOptions| ()),
    },
    Row {
        idl: "dictionary member BackgroundFetchUIOptions.icons",
        rust: "BackgroundFetchUiOptions::icons: Option<Vec<ImageResource>>",
        check: || {
            compiles(|o: BackgroundFetchUiOptions| {
                let _: Option<Vec<ImageResource>> = o.icons;
            })
        },
    },
    Row {
        idl: "dictionary member BackgroundFetchUIOptions.title",
        rust: "BackgroundFetchUiOptions::title: Option<String>",
        check: || {
            compiles(|o: BackgroundFetchUiOptions| {
                let _: Option<String> = o.title;
            })
        },
    },
    Row {
        idl: "dictionary BackgroundFetchOptions : BackgroundFetchUIOptions",
        rust: "BackgroundFetchOptions (the parent's members flattened in)",
        check: || compiles(|_: BackgroundFetchOptions| ()),
    },
    Row {
        idl: "dictionary member BackgroundFetchOptions.downloadTotal = 0",
        rust: "BackgroundFetchOptions::download_total: u64, default 0",
        check: || {
            compiles(|o: BackgroundFetchOptions| {
                let _: u64 = o.download_total;
            })?;
            same(BackgroundFetchOptions::default().download_total, 0)
        },
    },
    Row {
        idl: "inherited dictionary member BackgroundFetchOptions.icons",
        rust: "BackgroundFetchOptions::icons: Option<Vec<ImageResource>>",
        check: || {
            compiles(|o: BackgroundFetchOptions| {
                let _: Option<Vec<ImageResource>> = o.icons;
            })
        },
    },
    Row {
        idl: "inherited dictionary member BackgroundFetchOptions.title",
        rust: "BackgroundFetchOptions::title: Option<String>",
        check: || {
            compiles(|o: BackgroundFetchOptions| {
                let _: Option<String> = o.title;
            })
        },
    },
    // BackgroundFetchRegistration
    Row {
        idl: "interface BackgroundFetchRegistration : EventTarget [Exposed=(Window,Worker)]",
        rust: "BackgroundFetchRegistration (EventTarget: on_progress listeners)",
        check: || compiles(|_: BackgroundFetchRegistration| ()),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.id",
        rust: "BackgroundFetchRegistration::id() -> String",
        check: || compiles(|r: BackgroundFetchRegistration| -> String { r.id() }),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.uploadTotal",
        rust: "BackgroundFetchRegistration::upload_total() -> u64",
        check: || compiles(|r: BackgroundFetchRegistration| -> u64 { r.upload_total() }),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.uploaded",
        rust: "BackgroundFetchRegistration::uploaded() -> u64",
        check: || compiles(|r: BackgroundFetchRegistration| -> u64 { r.uploaded() }),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.downloadTotal",
        rust: "BackgroundFetchRegistration::download_total() -> u64",
        check: || compiles(|r: BackgroundFetchRegistration| -> u64 { r.download_total() }),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.downloaded",
        rust: "BackgroundFetchRegistration::downloaded() -> u64",
        check: || compiles(|r: BackgroundFetchRegistration| -> u64 { r.downloaded() }),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.result",
        rust: "BackgroundFetchRegistration::result() -> BackgroundFetchResult",
        check: || {
            compiles(|r: BackgroundFetchRegistration| -> BackgroundFetchResult { r.result() })
        },
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.failureReason",
        rust: "BackgroundFetchRegistration::failure_reason() -> BackgroundFetchFailureReason",
        check: || {
            compiles(
                |r: BackgroundFetchRegistration| -> BackgroundFetchFailureReason {
                    r.failure_reason()
                },
            )
        },
    },
    Row {
        idl: "readonly attribute BackgroundFetchRegistration.recordsAvailable",
        rust: "BackgroundFetchRegistration::records_available() -> bool",
        check: || compiles(|r: BackgroundFetchRegistration| -> bool { r.records_available() }),
    },
    Row {
        idl: "attribute BackgroundFetchRegistration.onprogress",
        rust: "BackgroundFetchRegistration::on_progress(Fn(&BackgroundFetchRegistration))",
        check: || {
            compiles(|r: BackgroundFetchRegistration| {
                r.on_progress(|target: &BackgroundFetchRegistration| {
                    let _ = target.downloaded();
                })
            })
        },
    },
    Row {
        idl: "operation BackgroundFetchRegistration.abort()",
        rust: "BackgroundFetchRegistration::abort() -> Result<bool, DomError>",
        check: || {
            compiles(|r: BackgroundFetchRegistration| async move {
                let _: Result<bool, DomError> = r.abort().await;
            })
        },
    },
    Row {
        idl: "operation BackgroundFetchRegistration.match(request, optional options = {})",
        rust: "BackgroundFetchRegistration::r#match(impl Into<RequestInfo>, CacheQueryOptions) -> Result<Option<BackgroundFetchRecord>, DomError> (undefined when nothing matches: deviation 29)",
        check: || {
            compiles(
                |r: BackgroundFetchRegistration, request: RequestInfo| async move {
                    let _: Result<Option<BackgroundFetchRecord>, DomError> =
                        r.r#match(request, CacheQueryOptions::default()).await;
                },
            )?;
            same(
                CacheQueryOptions::default(),
                CacheQueryOptions {
                    ignore_search: false,
                    ignore_method: false,
                    ignore_vary: false,
                },
            )
        },
    },
    Row {
        idl: "operation BackgroundFetchRegistration.matchAll(optional request, optional options = {})",
        rust: "BackgroundFetchRegistration::match_all(Option<RequestInfo>, CacheQueryOptions) -> Result<Vec<BackgroundFetchRecord>, DomError>",
        check: || {
            compiles(
                |r: BackgroundFetchRegistration, request: Option<RequestInfo>| async move {
                    let _: Result<Vec<BackgroundFetchRecord>, DomError> =
                        r.match_all(request, CacheQueryOptions::default()).await;
                },
            )
        },
    },
    // enum BackgroundFetchResult
    Row {
        idl: "enum BackgroundFetchResult",
        rust: "BackgroundFetchResult",
        check: || compiles(result_value),
    },
    Row {
        idl: "enum value BackgroundFetchResult \"\"",
        rust: "BackgroundFetchResult::Empty",
        check: || result(BackgroundFetchResult::Empty, ""),
    },
    Row {
        idl: "enum value BackgroundFetchResult \"success\"",
        rust: "BackgroundFetchResult::Success",
        check: || result(BackgroundFetchResult::Success, "success"),
    },
    Row {
        idl: "enum value BackgroundFetchResult \"failure\"",
        rust: "BackgroundFetchResult::Failure",
        check: || result(BackgroundFetchResult::Failure, "failure"),
    },
    // enum BackgroundFetchFailureReason
    Row {
        idl: "enum BackgroundFetchFailureReason",
        rust: "BackgroundFetchFailureReason",
        check: || {
            let all: Vec<&str> = BackgroundFetchFailureReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect();
            same(
                all,
                vec![
                    "",
                    "aborted",
                    "bad-status",
                    "fetch-error",
                    "quota-exceeded",
                    "download-total-exceeded",
                ],
            )
        },
    },
    Row {
        idl: "enum value BackgroundFetchFailureReason \"\"",
        rust: "BackgroundFetchFailureReason::Empty",
        check: || reason(BackgroundFetchFailureReason::Empty, ""),
    },
    Row {
        idl: "enum value BackgroundFetchFailureReason \"aborted\"",
        rust: "BackgroundFetchFailureReason::Aborted",
        check: || reason(BackgroundFetchFailureReason::Aborted, "aborted"),
    },
    Row {
        idl: "enum value BackgroundFetchFailureReason \"bad-status\"",
        rust: "BackgroundFetchFailureReason::BadStatus",
        check: || reason(BackgroundFetchFailureReason::BadStatus, "bad-status"),
    },
    Row {
        idl: "enum value BackgroundFetchFailureReason \"fetch-error\"",
        rust: "BackgroundFetchFailureReason::FetchError",
        check: || reason(BackgroundFetchFailureReason::FetchError, "fetch-error"),
    },
    Row {
        idl: "enum value BackgroundFetchFailureReason \"quota-exceeded\"",
        rust: "BackgroundFetchFailureReason::QuotaExceeded",
        check: || {
            reason(
                BackgroundFetchFailureReason::QuotaExceeded,
                "quota-exceeded",
            )
        },
    },
    Row {
        idl: "enum value BackgroundFetchFailureReason \"download-total-exceeded\"",
        rust: "BackgroundFetchFailureReason::DownloadTotalExceeded",
        check: || {
            reason(
                BackgroundFetchFailureReason::DownloadTotalExceeded,
                "download-total-exceeded",
            )
        },
    },
    // BackgroundFetchRecord
    Row {
        idl: "interface BackgroundFetchRecord [Exposed=(Window,Worker)]",
        rust: "BackgroundFetchRecord",
        check: || compiles(|_: BackgroundFetchRecord| ()),
    },
    Row {
        idl: "readonly attribute BackgroundFetchRecord.request",
        rust: "BackgroundFetchRecord::request() -> &Request (+ request_body() for its body)",
        check: || {
            compiles(|r: BackgroundFetchRecord| {
                let _: &Request = r.request();
                let _ = r.request_body();
            })
        },
    },
    Row {
        idl: "readonly attribute BackgroundFetchRecord.responseReady",
        rust: "BackgroundFetchRecord::response_ready() -> Result<Response, DomError> (the same promise at every call)",
        check: || {
            compiles(|r: BackgroundFetchRecord| async move {
                let _: Result<Response, DomError> = r.response_ready().await;
            })
        },
    },
    // BackgroundFetchEvent
    Row {
        idl: "interface BackgroundFetchEvent : ExtendableEvent [Exposed=ServiceWorker]",
        rust: "FunctionalEvent of kind Abort or Click (fired at the service worker global's connection; ExtendableEvent's waitUntil is the listener's future, whose end is reported to the service)",
        check: || {
            compiles(|e: FunctionalEvent| {
                let _: bool = e.is_active();
            })?;
            same(
                [FunctionalEventKind::Abort, FunctionalEventKind::Click].map(event_interface),
                ["BackgroundFetchEvent"; 2],
            )
        },
    },
    Row {
        idl: "constructor BackgroundFetchEvent(type, init)",
        rust: "FunctionalEvent::new_untrusted(FunctionalEventKind, BackgroundFetchRegistration)",
        check: || {
            compiles(
                |kind: FunctionalEventKind, registration: BackgroundFetchRegistration| {
                    let e = FunctionalEvent::new_untrusted(kind, registration);
                    let _: &str = e.event_type();
                    let _: bool = e.is_trusted();
                },
            )
        },
    },
    Row {
        idl: "readonly attribute BackgroundFetchEvent.registration",
        rust: "FunctionalEvent::registration() -> &BackgroundFetchRegistration",
        check: || {
            compiles(|e: FunctionalEvent| {
                let _: &BackgroundFetchRegistration = e.registration();
            })
        },
    },
    Row {
        idl: "dictionary BackgroundFetchEventInit : ExtendableEventInit",
        rust: "the arguments of FunctionalEvent::new_untrusted",
        check: || Ok(()),
    },
    Row {
        idl: "dictionary member BackgroundFetchEventInit.registration (required)",
        rust: "the `registration: BackgroundFetchRegistration` argument (not an Option: required)",
        check: || {
            compiles(|registration: BackgroundFetchRegistration| {
                FunctionalEvent::new_untrusted(FunctionalEventKind::Success, registration)
            })
        },
    },
    // BackgroundFetchUpdateUIEvent
    Row {
        idl: "interface BackgroundFetchUpdateUIEvent : BackgroundFetchEvent [Exposed=ServiceWorker]",
        rust: "FunctionalEvent of kind Success or Fail (its BackgroundFetchEvent part: the same object)",
        check: || {
            same(
                [FunctionalEventKind::Success, FunctionalEventKind::Fail].map(event_interface),
                ["BackgroundFetchUpdateUIEvent"; 2],
            )
        },
    },
    Row {
        idl: "constructor BackgroundFetchUpdateUIEvent(type, init)",
        rust: "FunctionalEvent::new_untrusted(FunctionalEventKind, BackgroundFetchRegistration)",
        check: || {
            compiles(
                |kind: FunctionalEventKind, registration: BackgroundFetchRegistration| {
                    FunctionalEvent::new_untrusted(kind, registration)
                },
            )
        },
    },
    Row {
        idl: "operation BackgroundFetchUpdateUIEvent.updateUI(optional options = {})",
        rust: "FunctionalEvent::update_ui(BackgroundFetchUiOptions) -> Result<(), DomError> (a TypeError on abort and click events, which have none)",
        check: || {
            compiles(|e: FunctionalEvent| async move {
                let _: Result<(), DomError> =
                    e.update_ui(BackgroundFetchUiOptions::default()).await;
            })?;
            // optional options = {}
            same(
                BackgroundFetchUiOptions::default(),
                BackgroundFetchUiOptions {
                    icons: None,
                    title: None,
                },
            )
        },
    },
];

async fn idl_test(_t: Test) {
    let definitions = idl::parse_source(SPEC_SOURCE)
        .unwrap_or_else(|e| panic!("the spec's IDL does not parse: {e}"));
    let items = idl::items(&definitions);
    assert_true!(items.len() > 40, "the spec source has its IDL blocks");
    let mut problems = Vec::new();
    for item in &items {
        if !TABLE.iter().any(|row| row.idl == item) {
            problems.push(format!(
                "IDL item without a Rust counterpart in TABLE: {item}"
            ));
        }
    }
    for row in TABLE {
        if !items.iter().any(|item| item == row.idl) {
            problems.push(format!(
                "TABLE row for an item the IDL does not have: {}",
                row.idl
            ));
        }
        if TABLE.iter().filter(|r| r.idl == row.idl).count() > 1 {
            problems.push(format!("TABLE lists {} twice", row.idl));
        }
        if let Err(e) = (row.check)() {
            problems.push(format!("{} ({}): {e}", row.idl, row.rust));
        }
    }
    problems.dedup();
    assert_equals!(problems, Vec::<String>::new(), "IDL items and TABLE rows");
}
