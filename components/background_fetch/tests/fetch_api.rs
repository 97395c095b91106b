//! `BackgroundFetchManager.fetch()`, `get()`, `getIds()` and the registration's attributes.

use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchOptions, BackgroundFetchResult,
    DomErrorKind, FunctionalEventKind, PermissionState, RequestInfo, RequestInit, RequestMode,
};
use bytes::Bytes;
use futures::StreamExt;

const URL: &str = "https://example.com/file.bin";

fn opts() -> BackgroundFetchOptions {
    BackgroundFetchOptions::default()
}

#[test]
fn empty_requests_reject_with_type_error() {
    let bed = TestBed::new();
    let m = bed.manager();
    let err = bed
        .run(async move { m.fetch("x", Vec::<RequestInfo>::new(), opts()).await })
        .unwrap_err();
    assert_eq!(err.kind, DomErrorKind::TypeError);
    assert_eq!(bed.store.fetch_count(), 0);
}

#[test]
fn request_constructor_errors_are_rethrown() {
    let bed = TestBed::new();
    for bad in ["https://user:pass@domain/secret.txt", "http://[::1"] {
        let m = bed.manager();
        let err = bed
            .run(async move { m.fetch("x", bad, opts()).await })
            .unwrap_err();
        assert_eq!(err.kind, DomErrorKind::TypeError, "{bad}");
    }
}

#[test]
fn no_cors_requests_reject_with_type_error() {
    let bed = TestBed::new();
    let m = bed.manager();
    let r = bed.request(
        URL,
        RequestInit {
            mode: Some(RequestMode::NoCors),
            ..Default::default()
        },
    );
    let err = bed
        .run(async move { m.fetch("x", r, opts()).await })
        .unwrap_err();
    assert_eq!(err.kind, DomErrorKind::TypeError);
    assert!(err.message.contains("no-cors"), "{}", err.message);
}

#[test]
fn denied_permission_rejects_with_not_allowed_error() {
    let bed = TestBed::new();
    bed.permission.set(PermissionState::Denied);
    let m = bed.manager();
    let err = bed
        .run(async move { m.fetch("x", URL, opts()).await })
        .unwrap_err();
    assert_eq!(err.kind, DomErrorKind::NotAllowedError);
    assert_eq!(bed.store.fetch_count(), 0);
}

#[test]
fn no_active_worker_rejects_with_type_error_but_get_and_get_ids_work() {
    let bed = TestBed::new();
    bed.worker.set_active(&bed.registration, false);
    let m = bed.manager();
    let (fetch, get, ids) = bed.run(async move {
        (
            m.fetch("x", URL, opts()).await,
            m.get("x").await,
            m.get_ids().await,
        )
    });
    assert_eq!(fetch.unwrap_err().kind, DomErrorKind::TypeError);
    assert!(get.unwrap().is_none());
    assert!(ids.unwrap().is_empty());
}

#[test]
fn active_ids_are_unique_and_reusable_once_settled() {
    let bed = TestBed::new();
    bed.network.serve(URL, Resource::ok(vec![1u8; 10]));
    bed.network.fault_next(URL, vec![Fault::Hold]);
    let m = bed.manager();
    let (a, b) = bed.run(async move {
        let a = m.fetch("my-id", URL, opts()).await;
        let b = m.fetch("my-id", URL, opts()).await;
        (a, b)
    });
    let a = a.unwrap();
    assert_eq!(b.unwrap_err().kind, DomErrorKind::TypeError);
    bed.network.release(URL);
    bed.run_until_idle();
    assert_eq!(a.result(), BackgroundFetchResult::Success);
    // Settled: the id is free again.
    let m = bed.manager();
    let c = bed
        .run(async move { m.fetch("my-id", URL, opts()).await })
        .unwrap();
    assert_ne!(c.uid(), a.uid());
    bed.run_until_idle();
    assert_eq!(c.result(), BackgroundFetchResult::Success);
}

#[test]
fn download_total_beyond_quota_rejects_with_quota_exceeded_error() {
    let bed = TestBed::new();
    bed.quota.set(Some(1000));
    let m = bed.manager();
    let err = bed
        .run(async move {
            m.fetch(
                "x",
                URL,
                BackgroundFetchOptions {
                    download_total: (1 << 53) - 1,
                    ..opts()
                },
            )
            .await
        })
        .unwrap_err();
    assert_eq!(err.kind, DomErrorKind::QuotaExceededError);
    assert_eq!((err.quota, err.requested), (None, None));
    assert_eq!(bed.store.fetch_count(), 0, "nothing is left in the store");
}

#[test]
fn download_totals_are_reserved_atomically_across_fetches() {
    let bed = TestBed::new();
    bed.quota.set(Some(1000));
    bed.network.serve(URL, Resource::ok(vec![1u8; 10]));
    bed.network.fault_next(URL, vec![Fault::Hold]);
    let m = bed.manager();
    let (a, b, c) = bed.run(async move {
        let a = m
            .fetch(
                "a",
                URL,
                BackgroundFetchOptions {
                    download_total: 600,
                    ..opts()
                },
            )
            .await;
        let b = m
            .fetch(
                "b",
                URL,
                BackgroundFetchOptions {
                    download_total: 600,
                    ..opts()
                },
            )
            .await;
        let c = m
            .fetch(
                "c",
                URL,
                BackgroundFetchOptions {
                    download_total: 400,
                    ..opts()
                },
            )
            .await;
        (a, b, c)
    });
    assert!(a.is_ok());
    assert_eq!(
        b.unwrap_err().kind,
        DomErrorKind::QuotaExceededError,
        "600 + 600 > 1000"
    );
    assert!(c.is_ok(), "600 + 400 fits");
    // Once `a` settles and its data is dropped, its reservation is released.
    bed.network.release(URL);
    bed.run_until_idle();
    let m = bed.manager();
    let d = bed.run(async move {
        m.fetch(
            "d",
            URL,
            BackgroundFetchOptions {
                download_total: 900,
                ..opts()
            },
        )
        .await
    });
    assert!(d.is_ok());
}

#[test]
fn request_bodies_are_stored_before_resolving_and_count_as_upload_total() {
    let bed = TestBed::new();
    bed.network
        .serve("https://example.com/upload", Resource::echo());
    let m = bed.manager();
    let stream_body = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"upload")),
        Ok(Bytes::from_static(b"2")),
    ])
    .boxed();
    let r1 = bed.request(
        "/upload",
        RequestInit {
            method: Some("POST".into()),
            body: Some("Background Fetch!".into()),
            content_type: Some("text/plain;charset=UTF-8".into()),
            ..Default::default()
        },
    );
    let r2 = bed.request(
        "/upload",
        RequestInit {
            method: Some("PUT".into()),
            body: Some(background_fetch::RequestBody::Stream(stream_body)),
            ..Default::default()
        },
    );
    let (reg, upload_total, uploaded) = bed.run(async move {
        let reg = m
            .fetch("up", vec![RequestInfo::from(r1), r2.into()], opts())
            .await
            .unwrap();
        // Read straight away, as a page does right after `await`.
        (reg.clone(), reg.upload_total(), reg.uploaded())
    });
    assert_eq!(upload_total, 17 + 7);
    assert_eq!(uploaded, 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), BackgroundFetchResult::Success);
    assert_eq!(reg.uploaded(), 24);
    let log = bed.network.requests_for("https://example.com/upload");
    let mut bodies: Vec<_> = log
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec!["Background Fetch!", "upload2"]);
}

#[test]
fn an_errored_body_stream_rejects_with_type_error_and_stores_nothing() {
    let bed = TestBed::new();
    let m = bed.manager();
    let body = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(background_fetch::DomError::type_error("boom")),
    ])
    .boxed();
    let r = bed.request(
        "/upload",
        RequestInit {
            method: Some("POST".into()),
            body: Some(background_fetch::RequestBody::Stream(body)),
            ..Default::default()
        },
    );
    let err = bed
        .run(async move { m.fetch("x", r, opts()).await })
        .unwrap_err();
    assert_eq!(err.kind, DomErrorKind::TypeError);
    assert_eq!(bed.store.fetch_count(), 0);
    assert_eq!(bed.store.total_bytes(), 0);
}

#[test]
fn request_bodies_over_quota_reject_with_quota_exceeded_error() {
    let bed = TestBed::new();
    bed.quota.set(Some(10));
    let m = bed.manager();
    let r = bed.request(
        "/upload",
        RequestInit {
            method: Some("POST".into()),
            body: Some(vec![0u8; 11].into()),
            ..Default::default()
        },
    );
    let err = bed
        .run(async move { m.fetch("x", r, opts()).await })
        .unwrap_err();
    assert_eq!(err.kind, DomErrorKind::QuotaExceededError);
    assert_eq!(bed.store.fetch_count(), 0);
}

#[test]
fn duplicate_urls_are_separate_records() {
    let bed = TestBed::new();
    bed.network
        .serve(URL, Resource::ok(&b"Background Fetch"[..]));
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("dup", [URL, URL], opts()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(reg.result(), BackgroundFetchResult::Success);
    assert_eq!(reg.downloaded(), 32);
    assert_eq!(bed.network.requests_for(URL).len(), 2);
}

#[test]
fn new_registration_attributes() {
    let bed = TestBed::new();
    bed.network.serve(URL, Resource::ok(vec![1u8; 10]));
    let m = bed.manager();
    bed.run(async move {
        let reg = m
            .fetch(
                "attrs",
                URL,
                BackgroundFetchOptions {
                    download_total: 1234,
                    ..opts()
                },
            )
            .await
            .unwrap();
        // Read straight away, as a page does right after `await`.
        assert_eq!(reg.id(), "attrs");
        assert_eq!(reg.upload_total(), 0);
        assert_eq!(reg.uploaded(), 0);
        assert_eq!(reg.download_total(), 1234);
        assert_eq!(reg.downloaded(), 0);
        assert_eq!(reg.result(), BackgroundFetchResult::Empty);
        assert_eq!(reg.failure_reason(), Reason::Empty);
        assert!(reg.records_available());
    });
}

#[test]
fn get_returns_the_same_instance_and_get_ids_lists_active_fetches_in_order() {
    let bed = TestBed::new();
    bed.network
        .serve(URL, Resource::ok(vec![1u8; 100]).chunk_size(10));
    bed.network.fault_next(URL, vec![Fault::ResetAfter(50)]);
    bed.network.fault_next(URL, vec![Fault::Hold]);
    bed.network.fault_next(URL, vec![Fault::Hold]);
    let m = bed.manager();
    let (a, ids, got, empty, missing) = bed.run(async move {
        let a = m.fetch("a", URL, opts()).await.unwrap();
        let _b = m.fetch("b", URL, opts()).await.unwrap();
        let ids = m.get_ids().await.unwrap();
        let got = m.get("a").await.unwrap().unwrap();
        (a, ids, got, m.get("").await, m.get("nope").await)
    });
    assert_eq!(ids, vec!["a", "b"]);
    assert!(got == a, "the same manager gives the same instance");
    assert_eq!(empty.unwrap_err().kind, DomErrorKind::TypeError);
    assert!(missing.unwrap().is_none());
    // Another environment's instance agrees on every value, downloaded included.
    bed.run_until_idle();
    let other = bed.connect_window("https://example.com/other.html");
    let m2 = other.background_fetch(&bed.registration);
    let b2 = bed.run(async move { m2.get("a").await.unwrap().unwrap() });
    assert!(b2 != a);
    assert_eq!(b2.downloaded(), a.downloaded());
    assert_eq!(a.downloaded(), 50);
}

#[test]
fn get_resolves_undefined_once_the_fetch_settled() {
    let bed = TestBed::new();
    bed.network.serve(URL, Resource::ok(vec![1u8; 10]));
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("gone", URL, opts()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(reg.result(), BackgroundFetchResult::Success);
    let m = bed.manager();
    let (got, ids) =
        bed.run(async move { (m.get("gone").await.unwrap(), m.get_ids().await.unwrap()) });
    assert!(got.is_none());
    assert!(ids.is_empty());
}

#[test]
fn prompt_permission_starts_paused_until_the_user_accepts() {
    let bed = TestBed::new();
    bed.permission.set(PermissionState::Prompt);
    bed.network.serve(URL, Resource::ok(vec![1u8; 10]));
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("p", URL, opts()).await })
        .unwrap();
    bed.run_until_idle();
    assert!(
        bed.network.log().is_empty(),
        "nothing is fetched before the user accepts"
    );
    let ui = bed.ui.last(reg.uid()).unwrap();
    assert!(ui.paused && ui.awaiting_permission);
    let engine = bed.engine();
    let uid = reg.uid();
    assert_eq!(
        bed.run(async move { engine.permission_decision(uid, true).await }),
        Ok(())
    );
    bed.run_until_idle();
    assert_eq!(reg.result(), BackgroundFetchResult::Success);
}

#[test]
fn prompt_permission_refused_aborts() {
    let bed = TestBed::new();
    bed.permission.set(PermissionState::Prompt);
    bed.network.serve(URL, Resource::ok(vec![1u8; 10]));
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("p", URL, opts()).await })
        .unwrap();
    let engine = bed.engine();
    let uid = reg.uid();
    assert_eq!(
        bed.run(async move { engine.permission_decision(uid, false).await }),
        Ok(())
    );
    bed.run_until_idle();
    assert_eq!(reg.result(), BackgroundFetchResult::Failure);
    assert_eq!(reg.failure_reason(), Reason::Aborted);
    assert_eq!(bed.worker.events_of(FunctionalEventKind::Abort).len(), 1);
    assert!(bed.network.log().is_empty());
}

/// Spans entered on this thread right now, innermost last, as a subscriber sees them.
mod span_probe {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// An event's name and the names of the spans entered when it was recorded.
    pub type Recorded = Arc<Mutex<Vec<(String, Vec<&'static str>)>>>;

    #[derive(Default)]
    pub struct Probe {
        next: AtomicU64,
        names: Mutex<HashMap<u64, &'static str>>,
        stack: Mutex<Vec<u64>>,
        /// For each event: the names of the spans entered when it was recorded.
        pub events: Recorded,
    }

    impl Subscriber for Probe {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            self.names
                .lock()
                .unwrap()
                .insert(id, span.metadata().name());
            Id::from_u64(id)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let names = self.names.lock().unwrap();
            let entered = self
                .stack
                .lock()
                .unwrap()
                .iter()
                .map(|id| names[id])
                .collect();
            self.events
                .lock()
                .unwrap()
                .push((event.metadata().name().to_owned(), entered));
        }
        fn enter(&self, span: &Id) {
            self.stack.lock().unwrap().push(span.into_u64());
        }
        fn exit(&self, span: &Id) {
            let mut stack = self.stack.lock().unwrap();
            if let Some(i) = stack.iter().rposition(|s| *s == span.into_u64()) {
                stack.remove(i);
            }
        }
    }
}

/// Issue 11 item 9: `fetch()` entered its span with a guard held across `.await`, so while it
/// waited (here on a request body stream) its span stayed entered on the thread, and whatever
/// ran next there was logged inside `fetch()`.
#[test]
fn fetch_leaves_its_span_when_it_waits() {
    let probe = span_probe::Probe::default();
    let events = probe.events.clone();
    tracing::subscriber::with_default(probe, || {
        let bed = TestBed::new();
        bed.network
            .serve("https://example.com/upload", Resource::echo());
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let body = futures::stream::once(async move {
            let _ = rx.await;
            Ok(Bytes::from_static(b"late"))
        })
        .boxed();
        let r = bed.request(
            "/upload",
            RequestInit {
                method: Some("PUT".into()),
                body: Some(background_fetch::RequestBody::Stream(body)),
                ..Default::default()
            },
        );
        let m = bed.manager();
        use background_fetch::Spawn;
        bed.executor.spawn(Box::pin(async move {
            m.fetch("waiting", r, opts()).await.unwrap();
        }));
        bed.run_until_idle();
        // fetch() is suspended, waiting for its body.
        tracing::info!("probe");
        let _ = tx.send(());
        bed.run_until_idle();
    });
    let events = events.lock().unwrap();
    let (_, entered) = events
        .iter()
        .find(|(name, _)| name.contains("fetch_api.rs"))
        .expect("the probe event was recorded");
    assert!(
        !entered.contains(&"fetch()"),
        "an event outside fetch() was recorded inside its span: {entered:?}"
    );
}
