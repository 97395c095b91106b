//! Functional events, abort(), match()/matchAll(), record objects, updateUI(), click and
//! unregistration.

use background_fetch::service::client::FunctionalEvent;
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchResult as Result_,
    BackgroundFetchUiOptions, CacheQueryOptions, DispatchOutcome, FunctionalEventKind as Kind,
    RequestInfo, RequestInit,
};
use futures::channel::oneshot;
use futures::{FutureExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

const A: &str = "https://example.com/a.txt";
const SLOW: &str = "https://example.com/slow";

#[test]
fn abort_returns_true_once_then_false() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"Background Fetch"[..]));
    bed.network.serve(SLOW, Resource::ok(vec![]));
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    let m = bed.manager();
    let (first, second) = bed.run(async move {
        let reg = m.fetch("a", [A, SLOW], Default::default()).await.unwrap();
        (reg.abort().await.unwrap(), reg.abort().await.unwrap())
    });
    assert!(first);
    assert!(!second);
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 1);
    assert_eq!(bed.worker.events().len(), 1);
}

#[test]
fn abort_after_settling_returns_false() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert!(!bed.run(async move { reg.abort().await.unwrap() }));
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 0);
}

#[test]
fn abort_sets_fields_and_completed_responses_stay_available_in_the_abort_event() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"Background Fetch"[..]));
    bed.network.serve(SLOW, Resource::ok(vec![]));
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    // The service worker reads every record during the abort event.
    let seen: Arc<Mutex<Vec<Result<String, &'static str>>>> = Arc::default();
    let s = seen.clone();
    bed.worker.set_handler(move |e: FunctionalEvent| {
        let s = s.clone();
        async move {
            let reg = e.registration().clone();
            assert_eq!(reg.result(), Result_::Failure);
            assert_eq!(reg.failure_reason(), Reason::Aborted);
            for rec in reg.match_all(None, Default::default()).await.unwrap() {
                let r = match rec.response_ready().await {
                    Ok(resp) => Ok(resp.text().await.unwrap()),
                    Err(e) => Err(e.name()),
                };
                s.lock().unwrap().push(r);
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    let page_reg =
        bed.run(async move { m.fetch("a", [A, SLOW], Default::default()).await.unwrap() });
    bed.run_until_idle();
    assert_eq!(page_reg.downloaded(), 16);
    let r = page_reg.clone();
    assert!(bed.run(async move { r.abort().await.unwrap() }));
    bed.run_until_idle();
    assert_eq!(page_reg.result(), Result_::Failure);
    assert_eq!(page_reg.failure_reason(), Reason::Aborted);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Ok("Background Fetch".to_string()), Err("AbortError")]
    );
    assert!(!page_reg.records_available());
}

/// Perform step 8.4: every record succeeded, but abort() took the edit queue first (here while
/// its write of the abort to the store is slow), so when the settle steps run the fetch is no
/// longer active: the failure reason becomes "aborted" and `backgroundfetchabort` fires,
/// because abort() resolved true.
#[test]
fn abort_wins_the_race_with_completion() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    bed.worker.set_handler(move |e: FunctionalEvent| {
        let r = r.clone();
        async move {
            for rec in e
                .registration()
                .match_all(None, Default::default())
                .await
                .unwrap()
            {
                let result = rec.state().await.unwrap().result;
                r.lock().unwrap().push(result);
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("race", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    // abort() enters the edit queue, takes the fetch out of the active map, and waits on the
    // store.
    bed.store.hold_flag_writes();
    let (tx, rx) = oneshot::channel();
    let r = reg.clone();
    use background_fetch::Spawn;
    bed.executor.spawn(Box::pin(async move {
        let _ = tx.send(r.abort().await.unwrap());
    }));
    bed.run_until_idle();
    // Meanwhile the record completes, and the settle steps wait for the edit queue.
    bed.network.release(A);
    bed.run_until_idle();
    assert!(bed.worker.events().is_empty(), "the settle steps wait");
    bed.store.release_flag_writes();
    bed.run_until_idle();
    assert_eq!(rx.now_or_never(), Some(Ok(true)), "abort() resolved true");
    assert_eq!(
        *results.lock().unwrap(),
        vec![background_fetch::RecordResult::Success],
        "every record succeeded"
    );
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 1);
    assert_eq!(bed.worker.events().len(), 1);
    assert_eq!(reg.failure_reason(), Reason::Aborted);
}

#[test]
fn an_aborted_incomplete_record_rejects_with_abort_error() {
    let bed = TestBed::new();
    bed.network.serve(SLOW, Resource::ok(vec![]));
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    let m = bed.manager();
    let ready = bed.run(async move {
        let reg = m.fetch("a", SLOW, Default::default()).await.unwrap();
        let rec = reg
            .r#match(SLOW, Default::default())
            .await
            .unwrap()
            .unwrap();
        assert!(reg.abort().await.unwrap());
        rec.response_ready().await.map(|_| ()).map_err(|e| e.name())
    });
    assert_eq!(ready, Err("AbortError"));
}

#[test]
fn match_with_query_options() {
    let bed = TestBed::new();
    let feature = "https://example.com/resources/feature-name.txt";
    bed.network
        .serve(feature, Resource::ok(&b"Background Fetch"[..]));
    bed.network.serve(
        "https://example.com/resources/feature-name.txt?id=3",
        Resource::ok(&b"3"[..]),
    );
    bed.network.serve(SLOW, Resource::ok(vec![]));
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    let put = bed.request(
        "resources/feature-name.txt",
        RequestInit {
            method: Some("PUT".into()),
            ..Default::default()
        },
    );
    let m = bed.manager();
    let counts = bed.run(async move {
        let reg = m
            .fetch(
                "q",
                vec![
                    RequestInfo::from("resources/feature-name.txt"),
                    "resources/feature-name.txt".into(),
                    "resources/feature-name.txt?id=3".into(),
                    put.into(),
                    SLOW.into(),
                ],
                Default::default(),
            )
            .await
            .unwrap();
        let mut counts = Vec::new();
        for o in [
            CacheQueryOptions::default(),
            CacheQueryOptions {
                ignore_search: true,
                ..Default::default()
            },
            CacheQueryOptions {
                ignore_method: true,
                ..Default::default()
            },
            CacheQueryOptions {
                ignore_search: true,
                ignore_method: true,
                ignore_vary: false,
            },
        ] {
            counts.push(
                reg.match_all(Some("resources/feature-name.txt".into()), o)
                    .await
                    .unwrap()
                    .len(),
            );
        }
        let all = reg.match_all(None, Default::default()).await.unwrap();
        counts.push(all.len());
        let idx: Vec<_> = all.iter().map(|r| r.index()).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4], "records in request order");
        let none = reg
            .r#match("resources/missing.txt", Default::default())
            .await
            .unwrap();
        assert!(
            none.is_none(),
            "match() resolves undefined when nothing matches"
        );
        counts
    });
    assert_eq!(counts, vec![2, 3, 3, 4, 5]);
}

#[test]
fn match_all_rejects_once_records_are_unavailable() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    bed.run_until_idle();
    assert!(!reg.records_available());
    let err = bed.run(async move { reg.match_all(None, Default::default()).await.unwrap_err() });
    assert_eq!(err.name(), "InvalidStateError");
}

#[test]
fn response_ready_resolves_at_the_head_and_streams_while_downloading() {
    let bed = TestBed::new();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    bed.network.serve(
        A,
        // The head comes a second late: match() and the record's state, each a round trip
        // through the protocol, come before it.
        Resource::ok(data.clone())
            .head_delay(Duration::from_secs(1))
            .chunk_size(5000)
            .chunk_delay(Duration::from_secs(1)),
    );
    let m = bed.manager();
    let clock = bed.clock.clone();
    let (at_head, first_chunk_at, all, reg) = bed.run(async move {
        // match() right after fetch(), before any response: it follows the record.
        let reg = m.fetch("stream", A, Default::default()).await.unwrap();
        let rec = reg.r#match(A, Default::default()).await.unwrap().unwrap();
        let state = rec.state().await.unwrap();
        assert!(state.response_head.is_none() && state.stored_bytes == 0);
        let resp = rec.response_ready().await.unwrap();
        let at_head = clock.now_duration();
        let state = rec.state().await.unwrap();
        assert_eq!(state.response_head.map(|h| h.status), Some(200));
        let mut body = resp.into_body();
        let first = body.next().await.unwrap().unwrap();
        let first_chunk_at = clock.now_duration();
        assert_eq!(rec.state().await.unwrap().stored_bytes, 5000);
        let mut all = first.to_vec();
        while let Some(c) = body.next().await {
            all.extend_from_slice(&c.unwrap());
        }
        (at_head, first_chunk_at, all, reg)
    });
    assert_eq!(
        at_head,
        Duration::from_secs(1),
        "resolved when the head arrived"
    );
    assert_eq!(
        first_chunk_at,
        Duration::from_secs(2),
        "streamed before the download finished"
    );
    assert_eq!(all, data);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    // The reader is gone: the stored records are dropped now.
    assert_eq!(bed.store.fetch_count(), 0);
}

#[test]
fn a_record_failing_before_its_head_rejects_with_type_error() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.fault_next(
        A,
        vec![Fault::ErrorBeforeHead(
            background_fetch::NetworkErrorKind::Fatal,
        )],
    );
    let m = bed.manager();
    let ready = bed.run(async move {
        let reg = m.fetch("f", A, Default::default()).await.unwrap();
        let rec = reg.r#match(A, Default::default()).await.unwrap().unwrap();
        rec.response_ready().await.map(|_| ()).map_err(|e| e.name())
    });
    assert_eq!(ready, Err("TypeError"));
}

#[test]
fn records_keep_their_request_body() {
    let bed = TestBed::new();
    bed.network
        .serve("https://example.com/upload", Resource::echo());
    bed.network.serve(SLOW, Resource::ok(vec![]));
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    let r = bed.request_with_body("/upload", "POST", "Background Fetch request body");
    let m = bed.manager();
    let (method, body) = bed.run(async move {
        let reg = m
            .fetch(
                "body",
                vec![RequestInfo::from(r), SLOW.into()],
                Default::default(),
            )
            .await
            .unwrap();
        let rec = reg
            .r#match(
                "/upload",
                CacheQueryOptions {
                    ignore_method: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let mut s = rec.request_body().unwrap();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        (rec.request().method.clone(), out)
    });
    assert_eq!(method, "POST");
    assert_eq!(body, b"Background Fetch request body");
}

#[test]
fn records_are_available_until_the_event_is_no_longer_active() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    let (tx, rx) = oneshot::channel::<()>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    bed.worker.set_handler(move |_e| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move {
            let _ = rx.await;
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    bed.run_until_idle();
    // The event is dispatched and waiting (waitUntil): records still available.
    assert_eq!(reg.result(), Result_::Success);
    assert!(reg.records_available());
    assert_eq!(bed.store.fetch_count(), 1);
    let engine = bed.engine();
    let uid = reg.uid();
    let finished = bed.run(async move {
        let engine2 = engine.clone();
        let waiter = async move { engine2.finished(uid).await };
        tx.send(()).unwrap();
        waiter.await
    });
    assert!(
        finished,
        "Engine::finished resolves once the records are dropped"
    );
    bed.run_until_idle();
    assert!(!reg.records_available());
    assert_eq!(bed.store.fetch_count(), 0, "the stored bodies are dropped");
}

#[test]
fn the_page_sees_the_final_result_before_the_service_worker_event() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    let page = reg.clone();
    let observed = Arc::new(Mutex::new(None));
    let o = observed.clone();
    bed.worker.set_handler(move |_e| {
        *o.lock().unwrap() = Some((page.result(), page.failure_reason()));
        async { DispatchOutcome::Completed }.boxed()
    });
    bed.network.release(A);
    bed.run_until_idle();
    assert_eq!(
        *observed.lock().unwrap(),
        Some((Result_::Success, Reason::Empty))
    );
}

#[test]
fn progress_is_not_fired_after_the_result_is_set_but_records_available_still_changes() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    reg.on_progress(move |reg| {
        r.lock()
            .unwrap()
            .push((reg.result(), reg.records_available()))
    });
    bed.network.release(A);
    bed.run_until_idle();
    let results = results.lock().unwrap().clone();
    assert_eq!(
        results.last(),
        Some(&(Result_::Success, true)),
        "{results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|(r, _)| *r == Result_::Success)
            .count(),
        1
    );
    assert!(!reg.records_available());
}

type Outcomes = Arc<Mutex<Vec<Result<(), &'static str>>>>;

fn update_ui_bed(calls: Vec<Option<&'static str>>, later: bool) -> (TestBed, Outcomes) {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    let results: Outcomes = Arc::default();
    let r = results.clone();
    let stash: Arc<Mutex<Vec<FunctionalEvent>>> = Arc::default();
    let st = stash.clone();
    bed.worker.set_handler(move |e: FunctionalEvent| {
        let r = r.clone();
        let calls = calls.clone();
        if later {
            st.lock().unwrap().push(e);
            return async { DispatchOutcome::Completed }.boxed();
        }
        async move {
            let ev = e;
            let futs: Vec<_> = calls
                .iter()
                .map(|t| {
                    ev.update_ui(BackgroundFetchUiOptions {
                        title: t.map(str::to_owned),
                        icons: None,
                    })
                })
                .collect();
            for f in futs {
                let res = f.await.map_err(|e| e.name());
                r.lock().unwrap().push(res);
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    bed.run(async move { m.fetch("ui", A, Default::default()).await.unwrap() });
    bed.run_until_idle();
    if later {
        let ev = stash.lock().unwrap()[0].clone();
        let res = bed.run(async move {
            ev.update_ui(BackgroundFetchUiOptions {
                title: Some("New title".into()),
                icons: None,
            })
            .await
        });
        results.lock().unwrap().push(res.map_err(|e| e.name()));
    }
    (bed, results)
}

#[test]
fn update_ui_resolves_once_and_keeps_the_title() {
    let (bed, results) = update_ui_bed(vec![Some("Title1")], false);
    assert_eq!(*results.lock().unwrap(), vec![Ok(())]);
    let uid = bed.engine().fetches()[0].uid;
    assert_eq!(bed.ui.last(uid).unwrap().title, "Title1");
}

#[test]
fn update_ui_called_twice_fails() {
    let (_bed, results) = update_ui_bed(vec![Some("Title1"), Some("Title2")], false);
    assert_eq!(
        *results.lock().unwrap(),
        vec![Ok(()), Err("InvalidStateError")]
    );
}

#[test]
fn update_ui_fails_when_the_event_is_not_active() {
    let (_bed, results) = update_ui_bed(vec![], true);
    assert_eq!(*results.lock().unwrap(), vec![Err("InvalidStateError")]);
}

#[test]
fn update_ui_on_an_untrusted_event_fails() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    // Script's untrusted event constructor (`new BackgroundFetchUpdateUIEvent(...)`) on the
    // script side: the event never reaches the service.
    let m = bed.manager();
    let (trusted, err) = bed.run(async move {
        let reg = m.fetch("a", A, Default::default()).await.unwrap();
        let ev = FunctionalEvent::new_untrusted(Kind::Success, reg);
        (
            ev.is_trusted(),
            ev.update_ui(Default::default()).await.unwrap_err(),
        )
    });
    assert!(!trusted);
    assert_eq!(err.name(), "InvalidStateError");
}

#[test]
fn click_fires_backgroundfetchclick_before_and_after_completion() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    let engine = bed.engine();
    let uid = reg.uid();
    assert_eq!(bed.run(async move { engine.click(uid).await }), Ok(()));
    bed.network.release(A);
    bed.run_until_idle();
    let engine = bed.engine();
    assert_eq!(bed.run(async move { engine.click(uid).await }), Ok(()));
    let clicks = bed.worker.events_of(Kind::Click);
    assert_eq!(clicks.len(), 2);
    // After settlement the records are unavailable to the click handler.
    assert!(!clicks[1].registration().records_available());
    let engine = bed.engine();
    assert!(
        bed.run(async move { engine.click(background_fetch::FetchUid(999)).await })
            .is_err()
    );
}

#[test]
fn no_listener_or_no_worker_still_releases_the_records() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.worker
        .set_handler(|_e| async { DispatchOutcome::Skipped }.boxed());
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    bed.run_until_idle();
    assert!(!reg.records_available());
    assert_eq!(bed.store.fetch_count(), 0);
}

#[test]
fn unregistering_aborts_everything_without_events_and_purges_storage() {
    let bed = TestBed::new();
    bed.network.serve(
        A,
        Resource::ok(vec![1u8; 100_000])
            .chunk_size(1000)
            .chunk_delay(Duration::from_millis(100)),
    );
    let m = bed.manager();
    let reg = bed.run(async move { m.fetch("a", A, Default::default()).await.unwrap() });
    bed.advance(Duration::from_secs(1));
    assert!(bed.store.total_bytes() > 0);
    let engine = bed.engine();
    let registration = bed.registration.clone();
    bed.run(async move { engine.unregister(&registration).await });
    bed.run_until_idle();
    assert!(bed.worker.events().is_empty(), "no event fires");
    assert_eq!(bed.store.fetch_count(), 0);
    assert_eq!(bed.store.total_bytes(), 0);
    assert!(bed.ui.removed(reg.uid()));
    assert_eq!(bed.network.in_flight(), 0);
    let m = bed.manager();
    assert!(
        bed.run(async move { m.get_ids().await.unwrap() })
            .is_empty()
    );
}

#[test]
fn clearing_a_storage_key_purges_its_fetches_only() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(vec![1u8; 1000]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    bed.network.fault_next(A, vec![Fault::Hold]);
    let other = background_fetch::ServiceWorkerRegistrationId::for_scope(
        &Url::parse("https://other.example/").unwrap(),
    );
    let page = bed.page();
    let m1 = page.background_fetch(&bed.registration);
    let m2 = page.background_fetch(&other);
    let (a, b) = bed.run(async move {
        (
            m1.fetch("a", A, Default::default()).await.unwrap(),
            m2.fetch("b", A, Default::default()).await.unwrap(),
        )
    });
    let engine = bed.engine();
    bed.run(async move { engine.clear_storage_key("https://example.com").await });
    bed.network.release(A);
    bed.run_until_idle();
    assert!(bed.ui.removed(a.uid()));
    assert!(!bed.ui.removed(b.uid()));
    // (The page is not of other.example's origin, so its instance of `b` gets no updates: ask
    // the engine.)
    let info = bed
        .engine()
        .fetches()
        .into_iter()
        .find(|f| f.uid == b.uid())
        .unwrap();
    assert_eq!(info.ui.result, Result_::Success);
    assert_eq!(
        bed.worker.events().len(),
        1,
        "only the other storage key's fetch fired an event"
    );
}

fn icon(src: &str) -> background_fetch::ImageResource {
    background_fetch::ImageResource {
        src: src.into(),
        sizes: Some("64x64".into()),
        r#type: Some("image/png".into()),
        label: None,
    }
}

/// Issue 11 item 5: `fetch()` resolved its icons' `src` against the caller's base URL, but
/// `updateUI()` kept them relative, so the UI got `b.png` with no base to fetch it from.
/// "Processing an ImageResource from an API" resolves `src` against the caller's API base URL
/// (the service worker's, for `updateUI()`), in both.
#[test]
fn icons_are_resolved_in_fetch_and_in_update_ui_and_kept_across_a_restart() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    // Held before and after the restart.
    bed.network.fault_next(A, vec![Fault::Hold]);
    bed.network.fault_next(A, vec![Fault::Hold]);
    bed.worker.set_handler(|e: FunctionalEvent| {
        async move {
            if matches!(e.kind(), Kind::Success | Kind::Fail) {
                e.update_ui(BackgroundFetchUiOptions {
                    title: None,
                    icons: Some(vec![icon("icons/b.png")]),
                })
                .await
                .unwrap();
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    let reg = bed
        .run(async move {
            m.fetch(
                "icons",
                A,
                background_fetch::BackgroundFetchOptions {
                    icons: Some(vec![icon("img/a.png")]),
                    ..Default::default()
                },
            )
            .await
        })
        .unwrap();
    let uid = reg.uid();
    let shown = bed.ui.last(uid).unwrap().icons;
    assert_eq!(shown, vec![icon("https://example.com/img/a.png")]);
    bed.restart();
    let restored = bed.engine().fetches()[0].ui.icons.clone();
    assert_eq!(restored, vec![icon("https://example.com/img/a.png")]);
    bed.network.release(A);
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
    let shown = bed.ui.last(uid).unwrap().icons;
    assert_eq!(
        shown,
        vec![icon("https://example.com/icons/b.png")],
        "updateUI()'s icon resolved against the service worker's base URL"
    );
}

/// Issue 11 item 5: an icon whose `src` does not parse is a `TypeError` ("processing an
/// ImageResource from an API" throws), in `fetch()` and in `updateUI()`.
#[test]
fn an_icon_src_that_does_not_parse_is_a_type_error() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    bed.worker.set_handler(move |e: FunctionalEvent| {
        let r = r.clone();
        async move {
            if matches!(e.kind(), Kind::Success | Kind::Fail) {
                let res = e
                    .update_ui(BackgroundFetchUiOptions {
                        title: Some("kept?".into()),
                        icons: Some(vec![icon("https://exa mple.com/b.png")]),
                    })
                    .await;
                r.lock().unwrap().push(res.map_err(|e| e.name()));
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    let err = bed
        .run(async move {
            m.fetch(
                "bad-icon",
                A,
                background_fetch::BackgroundFetchOptions {
                    icons: Some(vec![icon("http://[::1")]),
                    ..Default::default()
                },
            )
            .await
        })
        .unwrap_err();
    assert_eq!(err.name(), "TypeError");
    assert!(bed.network.log().is_empty(), "nothing was fetched");
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("ok", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(*results.lock().unwrap(), vec![Err("TypeError")]);
    assert_eq!(
        bed.ui.last(reg.uid()).unwrap().title,
        "",
        "a rejected updateUI() changes nothing"
    );
}

/// Issue 11 item 10: create record objects makes one `responseReady` promise and one body
/// stream per record object (steps 2.3, 2.6 to 2.8); every read of `responseReady` made a new
/// Response with a stream of its own, so one record object's body could be read twice. Now the
/// same record object (and its clones, the same JS object) gives the same Response, whose body
/// can be read once; another record object for the same record has its own.
#[test]
fn a_record_object_has_one_response_ready_promise() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"Background Fetch"[..]));
    // The event stays active, so the records stay available.
    bed.worker
        .set_handler(|_| futures::future::pending::<DispatchOutcome>().boxed());
    let m = bed.manager();
    let (first, again, clone, other) = bed.run(async move {
        let reg = m.fetch("once", A, Default::default()).await.unwrap();
        let records = reg.match_all(None, Default::default()).await.unwrap();
        let rec = records[0].clone();
        let first = rec.response_ready().await.unwrap().text().await;
        let again = rec.response_ready().await.unwrap().text().await;
        let clone = records[0].response_ready().await.unwrap().bytes().await;
        let fresh = reg.match_all(None, Default::default()).await.unwrap();
        let other = fresh[0].response_ready().await.unwrap().text().await;
        (first, again, clone, other)
    });
    assert_eq!(first.unwrap(), "Background Fetch");
    assert_eq!(
        again.map_err(|e| e.name()),
        Err("TypeError"),
        "the body was read"
    );
    assert_eq!(
        clone.map_err(|e| e.name()),
        Err("TypeError"),
        "a clone is the same object"
    );
    assert_eq!(
        other.unwrap(),
        "Background Fetch",
        "a new record object reads again"
    );
}

/// `Response.text()` is "UTF-8 decode" (Encoding Standard): a leading BOM is removed and
/// invalid sequences become U+FFFD.
#[test]
fn response_text_is_utf8_decode() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(&b"\xEF\xBB\xBFcaf\xC3\xA9 \xFF!"[..]));
    bed.worker
        .set_handler(|_| futures::future::pending::<DispatchOutcome>().boxed());
    let m = bed.manager();
    let text = bed.run(async move {
        let reg = m.fetch("bom", A, Default::default()).await.unwrap();
        let rec = reg.r#match(A, Default::default()).await.unwrap().unwrap();
        rec.response_ready().await.unwrap().text().await.unwrap()
    });
    assert_eq!(text, "café \u{FFFD}!");
}

/// "Contains background fetch" step 3: the map has the id, but for another (newer) fetch, so
/// the old registration's abort() resolves false and leaves the new fetch running.
#[test]
fn abort_of_a_fetch_whose_id_was_reused_returns_false() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    bed.network.serve(SLOW, Resource::ok(&b"y"[..]));
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    let m = bed.manager();
    let old = bed
        .run(async move { m.fetch("same", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(old.result(), Result_::Success);
    let m = bed.manager();
    let new = bed
        .run(async move { m.fetch("same", SLOW, Default::default()).await })
        .unwrap();
    let o = old.clone();
    assert!(!bed.run(async move { o.abort().await.unwrap() }));
    bed.network.release(SLOW);
    bed.run_until_idle();
    assert_eq!(
        new.result(),
        Result_::Success,
        "the new fetch was not aborted"
    );
    assert!(bed.worker.events_of(Kind::Abort).is_empty());
}

/// A record's response result, each value reached by the algorithm that sets it and seen
/// through the record object: "success", "bad-status", "fetch-error", "aborted" and
/// "redundant" (a record object made before its record restarted keeps the old response
/// data).
#[test]
fn record_results_are_set_by_complete_a_record() {
    let bed = TestBed::new();
    let ok = "https://example.com/ok";
    let missing = "https://example.com/missing";
    let broken = "https://example.com/broken";
    let restarts = "https://example.com/restarts";
    bed.network.serve(ok, Resource::ok(&b"ok"[..]));
    bed.network.serve(broken, Resource::ok(&b"broken"[..]));
    bed.network.fault_next(broken, vec![Fault::FatalAfter(0)]);
    bed.network
        .serve(restarts, Resource::ok(vec![7u8; 20_000]).chunk_size(5_000));
    bed.network
        .fault_next(restarts, vec![Fault::ResetAfter(5_000)]);
    bed.network
        .fault_next(restarts, vec![Fault::Hold, Fault::IgnoreRange]);
    bed.worker
        .set_handler(|_| futures::future::pending::<DispatchOutcome>().boxed());
    let m = bed.manager();
    let (reg, early) = bed.run(async move {
        let reg = m
            .fetch(
                "results",
                [ok, missing, broken, restarts],
                Default::default(),
            )
            .await
            .unwrap();
        let early = reg
            .r#match(restarts, Default::default())
            .await
            .unwrap()
            .unwrap();
        (reg, early)
    });
    // The restarting record stored 5,000 bytes, then its retry is held.
    bed.run_until_idle();
    let e = early.clone();
    assert_eq!(
        bed.run(async move { e.state().await.unwrap().stored_bytes }),
        5_000
    );
    bed.network.release(restarts);
    bed.run_until_idle();
    let e = early.clone();
    assert_eq!(
        bed.run(async move { e.state().await.unwrap().result }),
        background_fetch::RecordResult::Redundant,
        "the record object made before the restart"
    );
    let r = reg.clone();
    let results: Vec<_> = bed.run(async move {
        let mut results = Vec::new();
        for rec in r.match_all(None, Default::default()).await.unwrap() {
            results.push(rec.state().await.unwrap().result);
        }
        results
    });
    use background_fetch::RecordResult as R;
    assert_eq!(
        results,
        vec![R::Success, R::BadStatus, R::FetchError, R::Success]
    );
    // "aborted": a record still running when abort() sets the abort all flag.
    bed.network.fault_next(SLOW, vec![Fault::Hold]);
    bed.network.serve(SLOW, Resource::ok(&b"z"[..]));
    let m = bed.manager();
    let result = bed.run(async move {
        let reg = m.fetch("aborted", SLOW, Default::default()).await.unwrap();
        let rec = reg
            .r#match(SLOW, Default::default())
            .await
            .unwrap()
            .unwrap();
        assert!(reg.abort().await.unwrap());
        let _ = rec.response_ready().await;
        rec.state().await.unwrap().result
    });
    assert_eq!(result, R::Aborted);
}

/// `BackgroundFetchRecord::export_response_body` (for embedders that deliver files, from their
/// functional event's handler) waits for the record's result, then hands a successful body to a
/// path (the in-memory store streams it); a record that failed is a `TypeError` and writes
/// nothing.
#[test]
fn a_successful_records_body_is_exported_to_a_path() {
    use background_fetch::store::{ExportMode, Exported};
    let dir = std::env::temp_dir().join(format!("bgfetch-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"exported bytes"[..]));
    bed.network
        .serve(SLOW, Resource::status(404, &b"missing"[..]));
    type Outcomes = Vec<Result<Exported, background_fetch::DomError>>;
    let seen: Arc<Mutex<Option<Outcomes>>> = Arc::default();
    let (d, s) = (dir.clone(), seen.clone());
    bed.worker.set_handler(move |event| {
        let (d, s) = (d.clone(), s.clone());
        async move {
            let records = event
                .registration()
                .match_all(None, CacheQueryOptions::default())
                .await
                .unwrap();
            let mut out = Vec::new();
            for (r, name) in records.iter().zip(["a.txt", "missing"]) {
                out.push(r.export_response_body(d.join(name), ExportMode::Move).await);
            }
            *s.lock().unwrap() = Some(out);
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    bed.run(async move {
        m.fetch("export", vec![A, SLOW], Default::default())
            .await
            .unwrap()
    });
    bed.run_until_idle();
    let mut outcomes = seen.lock().unwrap().take().expect("the event ran");
    let err = outcomes
        .pop()
        .unwrap()
        .expect_err("a failed record has no body");
    assert!(err.to_string().contains("BadStatus"), "{err}");
    assert_eq!(outcomes.pop().unwrap().unwrap(), Exported::Streamed);
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"exported bytes");
    assert!(!dir.join("missing").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
