//! Restarts: every fetch comes back from the store, interrupted records resume with Range,
//! settled fetches whose event did not finish get it again.

use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{BackgroundFetchOptions, DispatchOutcome, FunctionalEventKind as Kind};
use futures::FutureExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const A: &str = "https://example.com/a.bin";
const B: &str = "https://example.com/b.bin";

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// Records every successful event's record bodies, as a service worker copying them to a cache.
fn collect_bodies(bed: &TestBed) -> Arc<Mutex<Vec<Vec<Vec<u8>>>>> {
    let out: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::default();
    let o = out.clone();
    bed.worker.set_handler(move |e| {
        let o = o.clone();
        async move {
            let mut bodies = Vec::new();
            for rec in e
                .registration()
                .match_all(None, Default::default())
                .await
                .unwrap()
            {
                bodies.push(rec.response_ready().await.unwrap().bytes().await.unwrap());
            }
            o.lock().unwrap().push(bodies);
            DispatchOutcome::Completed
        }
        .boxed()
    });
    out
}

#[test]
fn an_interrupted_fetch_resumes_after_a_restart_with_range() {
    let bed = TestBed::new();
    let (a, b) = (body(80_000, 1), body(30_000, 2));
    bed.network.serve(
        A,
        Resource::ok(a.clone())
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    bed.network
        .serve(B, Resource::ok(b.clone()).chunk_size(10_000));
    let m = bed.manager();
    let reg = bed
        .run(async move {
            m.fetch(
                "r",
                [A, B],
                BackgroundFetchOptions {
                    title: Some("T".into()),
                    ..Default::default()
                },
            )
            .await
        })
        .unwrap();
    bed.advance(Duration::from_millis(3500));
    assert_eq!(reg.downloaded(), 30_000 + 30_000);
    // Crash: every in-flight task is dropped; a new engine starts on the same store.
    let bodies = collect_bodies(&bed);
    bed.restart();
    let m = bed.manager();
    let ids = bed.run(async move { m.get_ids().await.unwrap() });
    assert_eq!(ids, vec!["r"], "the fetch came back");
    bed.run_until_idle();
    assert!(
        *bodies.lock().unwrap() == vec![vec![a, b]],
        "every byte, in order"
    );
    let log = bed.network.requests_for(A);
    assert!(
        log.last().unwrap().range_start.is_some_and(|s| s >= 30_000),
        "{log:?}"
    );
    assert_eq!(
        bed.network.requests_for(B).len(),
        1,
        "the completed record was not fetched again"
    );
    let f = bed.engine().fetches();
    assert_eq!(f[0].ui.title, "T");
}

#[test]
fn a_paused_fetch_stays_paused_after_a_restart() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(1000, 0)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("p", A, Default::default()).await })
        .unwrap();
    let engine = bed.engine();
    let uid = reg.uid();
    assert_eq!(bed.run(async move { engine.pause(uid).await }), Ok(()));
    bed.restart();
    bed.run_until_idle();
    assert_eq!(
        bed.network.requests_for(A).len(),
        1,
        "nothing fetched while paused"
    );
    let engine = bed.engine();
    assert_eq!(bed.run(async move { engine.resume(uid).await }), Ok(()));
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
}

#[test]
fn a_crash_during_the_event_fires_it_again_and_loses_nothing() {
    let bed = TestBed::new();
    let a = body(5000, 3);
    bed.network.serve(A, Resource::ok(a.clone()));
    // The first service worker never finishes its event (the process dies meanwhile).
    bed.worker
        .set_handler(|_e| futures::future::pending().boxed());
    let m = bed.manager();
    bed.run(async move { m.fetch("e", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
    let bodies = collect_bodies(&bed);
    bed.restart();
    bed.run_until_idle();
    assert!(
        *bodies.lock().unwrap() == vec![vec![a]],
        "the records were read again"
    );
    assert_eq!(
        bed.worker.events_of(Kind::Success).len(),
        2,
        "fired again after the restart"
    );
    assert_eq!(bed.store.fetch_count(), 0, "then dropped");
    assert_eq!(bed.network.requests_for(A).len(), 1);
}

#[test]
fn an_unregistered_fetch_does_not_come_back() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(1000, 0)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    bed.run(async move { m.fetch("u", A, Default::default()).await })
        .unwrap();
    let engine = bed.engine();
    let r = bed.registration.clone();
    bed.run(async move { engine.unregister(&r).await });
    bed.restart();
    bed.run_until_idle();
    assert!(bed.engine().fetches().is_empty());
    assert!(bed.worker.events().is_empty());
}

#[test]
fn ids_are_unique_across_restarts() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(10, 0)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let first = bed
        .run(async move { m.fetch("x", A, Default::default()).await })
        .unwrap();
    bed.restart();
    let m = bed.manager();
    let again = bed.run(async move { m.fetch("x", A, Default::default()).await });
    assert_eq!(
        again.unwrap_err().name(),
        "TypeError",
        "still active after the restart"
    );
    let m = bed.manager();
    let other = bed
        .run(async move { m.fetch("y", A, Default::default()).await })
        .unwrap();
    assert!(other.uid() > first.uid());
}

#[test]
fn restored_fetches_can_wait_to_be_resumed() {
    let config = background_fetch::EngineConfig {
        resume_on_start: false,
        ..Default::default()
    };
    let bed = TestBed::with_config(config);
    bed.network.serve(A, Resource::ok(body(1000, 0)));
    bed.network.serve(B, Resource::ok(body(1000, 1)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    bed.network.fault_next(B, vec![Fault::Hold]);
    let m = bed.manager();
    let (a, b) = bed.run(async move {
        (
            m.fetch("a", A, Default::default()).await.unwrap(),
            m.fetch("b", B, Default::default()).await.unwrap(),
        )
    });
    bed.restart();
    bed.run_until_idle();
    assert_eq!(
        bed.network.log().len(),
        2,
        "nothing fetched after the restart yet"
    );
    // Restored and visible, though idle.
    let m = bed.manager();
    let ids = bed.run(async move { m.get_ids().await.unwrap() });
    assert_eq!(ids, vec!["a", "b"]);
    // Abort one and resume only it: it settles as aborted; the other stays idle.
    let m = bed.manager();
    assert!(bed.run(async move { m.get("a").await.unwrap().unwrap().abort().await.unwrap() }));
    assert_eq!(bed.engine().resume_restored(Some(a.uid())), 1);
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 1);
    assert_eq!(bed.network.log().len(), 2);
    assert_eq!(bed.engine().resume_restored(None), 1);
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
    assert_eq!(bed.worker.finished().last().map(|(_, u)| *u), Some(b.uid()));
}

#[test]
fn an_unfinished_upload_is_not_sent_again_after_a_restart() {
    let bed = TestBed::new();
    let upload = "https://example.com/upload";
    bed.network.serve(upload, Resource::echo());
    bed.network.serve(A, Resource::ok(body(100, 0)));
    bed.network.fault_next(upload, vec![Fault::Hold]);
    let r = bed.request_with_body("/upload", "POST", "once");
    let m = bed.manager();
    bed.run(async move {
        m.fetch(
            "up",
            vec![background_fetch::RequestInfo::from(r), A.into()],
            Default::default(),
        )
        .await
    })
    .unwrap();
    bed.run_until_idle();
    assert_eq!(bed.network.requests_for(upload).len(), 1);
    bed.restart();
    bed.run_until_idle();
    assert_eq!(bed.network.requests_for(upload).len(), 1, "not sent again");
    assert_eq!(bed.worker.events_of(Kind::Fail).len(), 1);
    let ev = &bed.worker.events_of(Kind::Fail)[0];
    assert_eq!(
        ev.registration().failure_reason(),
        background_fetch::BackgroundFetchFailureReason::FetchError
    );
}

/// A fuzzer makes a test bed per input: dropping one, with fetches still in flight, must free
/// the engine and every host (found by the `request_matching` fuzz target, whose memory grew
/// 21 KB per input until libFuzzer's 2 GB limit).
#[test]
fn a_dropped_test_bed_frees_the_engine_and_its_hosts() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(10, 1)));
    bed.network.serve(B, Resource::ok(body(10, 2)));
    bed.network.fault_next(B, vec![Fault::Hold]);
    let alive = Arc::new(());
    let weak = Arc::downgrade(&alive);
    bed.worker.set_handler(move |_| {
        let _keep = &alive;
        async { DispatchOutcome::Completed }.boxed()
    });
    let m = bed.manager();
    let reg = bed
        .run(async move {
            m.fetch("f", [A, B], BackgroundFetchOptions::default())
                .await
        })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(bed.network.in_flight(), 1, "B is held");
    drop(reg);
    drop(bed);
    assert!(
        weak.upgrade().is_none(),
        "the service worker host (and so the engine holding it) outlived the test bed"
    );
}

/// Issue 11 item 2: a fetch mixing GET and POST that waited on the permission prompt came back
/// from a restart with its GET records running, without the user's consent (the restored
/// paused flag was `paused && all GET`, and awaiting permission was not kept).
#[test]
fn a_fetch_waiting_on_the_prompt_still_waits_after_a_restart() {
    let bed = TestBed::new();
    bed.permission
        .set(background_fetch::PermissionState::Prompt);
    let upload = "https://example.com/upload";
    bed.network.serve(upload, Resource::echo());
    bed.network.serve(A, Resource::ok(body(100, 0)));
    let r = bed.request_with_body("/upload", "POST", "once");
    let m = bed.manager();
    let reg = bed
        .run(async move {
            m.fetch(
                "mixed",
                vec![background_fetch::RequestInfo::from(r), A.into()],
                Default::default(),
            )
            .await
        })
        .unwrap();
    let uid = reg.uid();
    bed.run_until_idle();
    bed.restart();
    bed.run_until_idle();
    assert!(
        bed.network.log().is_empty(),
        "nothing is fetched before the user answers: {:?}",
        bed.network.log()
    );
    let ui = bed.ui.last(uid).unwrap();
    assert!(ui.paused && ui.awaiting_permission, "{ui:?}");
    assert!(bed.worker.events().is_empty(), "no event fired");
    let engine = bed.engine();
    assert_eq!(
        bed.run(async move { engine.permission_decision(uid, true).await }),
        Ok(())
    );
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
    assert_eq!(bed.network.requests_for(upload).len(), 1, "sent once");
    assert_eq!(bed.network.requests_for(upload)[0].body, b"once");
}

/// Issue 11 item 2: a POST-only fetch still at the prompt fired `backgroundfetchfail` after a
/// restart (every unfinished non-GET record failed, though none had been sent).
#[test]
fn a_post_fetch_at_the_prompt_neither_fails_nor_sends_after_a_restart() {
    let bed = TestBed::new();
    bed.permission
        .set(background_fetch::PermissionState::Prompt);
    let upload = "https://example.com/upload";
    bed.network.serve(upload, Resource::echo());
    let r = bed.request_with_body("/upload", "POST", "once");
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("post", r, Default::default()).await })
        .unwrap();
    let uid = reg.uid();
    bed.run_until_idle();
    bed.restart();
    bed.run_until_idle();
    assert!(bed.worker.events().is_empty(), "{:?}", bed.worker.events());
    assert!(bed.network.log().is_empty());
    let engine = bed.engine();
    assert_eq!(
        bed.run(async move { engine.permission_decision(uid, true).await }),
        Ok(())
    );
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
}

/// Issue 11 item 2: a non-GET record that was never sent (queued behind the per-fetch limit)
/// is not "unfinished": after a restart it is sent, once; only one that may have been sent
/// fails.
#[test]
fn a_queued_upload_that_was_never_sent_is_sent_after_a_restart() {
    let bed = TestBed::with_config(background_fetch::EngineConfig {
        max_parallel_per_fetch: 1,
        ..Default::default()
    });
    let (first, second) = ("https://example.com/first", "https://example.com/second");
    bed.network.serve(first, Resource::echo());
    bed.network.serve(second, Resource::echo());
    bed.network.fault_next(first, vec![Fault::Hold]);
    let r1 = bed.request_with_body("/first", "POST", "1");
    let r2 = bed.request_with_body("/second", "POST", "2");
    let m = bed.manager();
    bed.run(async move {
        m.fetch(
            "two",
            vec![
                background_fetch::RequestInfo::from(r1),
                background_fetch::RequestInfo::from(r2),
            ],
            Default::default(),
        )
        .await
    })
    .unwrap();
    bed.run_until_idle();
    assert_eq!(bed.network.requests_for(first).len(), 1);
    assert!(bed.network.requests_for(second).is_empty());
    let results: Arc<Mutex<Vec<background_fetch::RecordResult>>> = Arc::default();
    let r = results.clone();
    bed.worker.set_handler(move |e| {
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
    bed.restart();
    bed.run_until_idle();
    assert_eq!(bed.network.requests_for(first).len(), 1, "not sent again");
    assert_eq!(
        bed.network.requests_for(second).len(),
        1,
        "sent after the restart"
    );
    assert_eq!(bed.worker.events_of(Kind::Fail).len(), 1);
    assert_eq!(
        *results.lock().unwrap(),
        vec![
            background_fetch::RecordResult::FetchError,
            background_fetch::RecordResult::Success
        ]
    );
}

/// Issue 11 item 3: `abort()` changed memory only: after a crash the fetch was back in
/// `getIds()`, a second `abort()` resolved true again, and its records downloaded again to a
/// `backgroundfetchsuccess`.
#[test]
fn an_abort_survives_a_crash() {
    let bed = TestBed::new();
    bed.network.serve(
        A,
        Resource::ok(body(50_000, 3))
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("gone", A, Default::default()).await })
        .unwrap();
    bed.advance(Duration::from_millis(1500));
    // abort() resolves true (its reply crossed the protocol), and the process crashes as soon
    // as the page has it.
    let r = reg.clone();
    assert_eq!(bed.run(async move { r.abort().await }), Ok(true));
    bed.restart();
    let m = bed.manager();
    assert!(
        bed.run(async move { m.get_ids().await.unwrap() })
            .is_empty(),
        "an aborted fetch is not active again"
    );
    let m = bed.manager();
    assert!(
        bed.run(async move { m.get("gone").await.unwrap() })
            .is_none()
    );
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 1);
    assert!(bed.worker.events_of(Kind::Success).is_empty());
    assert_eq!(
        bed.network.requests_for(A).len(),
        1,
        "nothing downloaded again"
    );
}

/// Issue 11 item 3, the UI's abort: durable before it returns.
#[test]
fn a_user_abort_survives_a_crash() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(1000, 3)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("ui", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    let engine = bed.engine();
    let uid = reg.uid();
    // The UI's abort returns, and the process crashes before any other task ran.
    assert_eq!(engine.user_abort(uid).now_or_never(), Some(Ok(())));
    bed.restart();
    bed.network.release(A);
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 1);
    assert!(bed.worker.events_of(Kind::Success).is_empty());
    assert_eq!(
        bed.network.requests_for(A).len(),
        1,
        "nothing downloaded again"
    );
}

/// Issue 11 item 3, a refused prompt: the abort it causes is durable too.
#[test]
fn a_refused_prompt_survives_a_crash() {
    let bed = TestBed::new();
    bed.permission
        .set(background_fetch::PermissionState::Prompt);
    bed.network.serve(A, Resource::ok(body(1000, 3)));
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("no", A, Default::default()).await })
        .unwrap();
    let engine = bed.engine();
    let uid = reg.uid();
    // The user refuses, and the process crashes before any other task ran.
    assert_eq!(
        engine.permission_decision(uid, false).now_or_never(),
        Some(Ok(()))
    );
    bed.restart();
    bed.run_until_idle();
    assert_eq!(bed.worker.events_of(Kind::Abort).len(), 1);
    assert!(bed.network.log().is_empty());
}

/// Issue 13: the embedder's opaque data about the caller of `fetch()` is stored with the fetch
/// and handed to the network host with every request, also after a restart (Servo would keep
/// its serialised request client and policy container there).
#[test]
fn the_embedders_client_data_is_kept_across_a_restart() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(100, 0)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let env = bed
        .engine()
        .create_environment(background_fetch::EnvironmentSettings {
            embedder: Some(b"servo client #7".to_vec()),
            ..background_fetch::EnvironmentSettings::window(
                url::Url::parse("https://example.com/page.html").unwrap(),
            )
        });
    let m = env.background_fetch(&bed.registration);
    bed.run(async move { m.fetch("blob", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    bed.restart();
    bed.run_until_idle();
    let log = bed.network.requests_for(A);
    assert_eq!(log.len(), 2, "once before the crash, once after");
    for r in &log {
        assert_eq!(r.client.embedder.as_deref(), Some(&b"servo client #7"[..]));
    }
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
}

/// A page of the crashed process is gone with it: an object it made before the crash cannot
/// reach the engine that crashed (nor the new one). Through the protocol its calls went to the
/// old service, which its connection kept alive, and so the old engine: `abort()` resolved true
/// there (and wrote to the shared store) while the new engine finished the fetch with
/// `backgroundfetchsuccess` (found by tests/model.rs once it ran through the protocol).
#[test]
fn objects_of_a_crashed_page_do_not_reach_any_engine() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(10, 4)));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let old = bed
        .run(async move { m.fetch("f", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    bed.restart();
    let aborted = Arc::new(Mutex::new(None));
    let a = aborted.clone();
    use background_fetch::Spawn;
    bed.executor.spawn(
        async move {
            *a.lock().unwrap() = Some(old.abort().await);
        }
        .boxed(),
    );
    bed.run_until_idle();
    assert_eq!(
        *aborted.lock().unwrap(),
        None,
        "the crashed page's abort() settles nowhere"
    );
    assert_eq!(bed.worker.events_of(Kind::Success).len(), 1);
    assert!(bed.worker.events_of(Kind::Abort).is_empty());
}
