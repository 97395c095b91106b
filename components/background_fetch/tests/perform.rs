//! Perform a background fetch and complete a record: results, failure reasons, downloadTotal,
//! quota, resumption with Range, restarts, pause, offline and retries.

use background_fetch::service::client::BackgroundFetchRegistration;
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BackgroundFetchOptions,
    BackgroundFetchResult as Result_, BlockReason, EngineConfig, FunctionalEventKind,
    NetworkErrorKind, RequestInfo, RetryPolicy,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

const A: &str = "https://example.com/a.bin";
const B: &str = "https://example.com/b.bin";

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn start(
    bed: &TestBed,
    id: &str,
    urls: &[&str],
    download_total: u64,
) -> BackgroundFetchRegistration {
    let m = bed.manager();
    let urls: Vec<String> = urls.iter().map(|s| s.to_string()).collect();
    let id = id.to_owned();
    bed.run(async move {
        let urls: Vec<RequestInfo> = urls.into_iter().map(RequestInfo::from).collect();
        m.fetch(
            &id,
            urls,
            BackgroundFetchOptions {
                download_total,
                ..Default::default()
            },
        )
        .await
    })
    .expect("fetch() resolves")
}

fn stored(bed: &TestBed, reg: &BackgroundFetchRegistration, record: usize) -> Vec<u8> {
    let m = reg.clone();
    let url = [A, B][record].to_string();
    bed.run(async move {
        let rec = m
            .r#match(url.as_str(), Default::default())
            .await
            .unwrap()
            .unwrap();
        rec.response_ready().await.unwrap().bytes().await.unwrap()
    })
}

/// Keeps the event active until the test releases it, so records stay readable.
fn hold_events(bed: &TestBed) -> Arc<Mutex<Vec<futures::channel::oneshot::Sender<()>>>> {
    let holds: Arc<Mutex<Vec<futures::channel::oneshot::Sender<()>>>> = Arc::default();
    let h = holds.clone();
    bed.worker.set_handler(move |_e| {
        let (tx, rx) = futures::channel::oneshot::channel();
        h.lock().unwrap().push(tx);
        Box::pin(async move {
            let _ = rx.await;
            background_fetch::DispatchOutcome::Completed
        })
    });
    holds
}

#[test]
fn all_records_succeed() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(body(100_000, 1)).chunk_size(7000));
    bed.network.serve(B, Resource::ok(body(5, 2)));
    let _holds = hold_events(&bed);
    let reg = start(&bed, "ok", &[A, B], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(reg.failure_reason(), Reason::Empty);
    assert_eq!(reg.downloaded(), 100_005);
    assert_eq!(stored(&bed, &reg, 0), body(100_000, 1));
    assert_eq!(stored(&bed, &reg, 1), body(5, 2));
    assert_eq!(bed.worker.events_of(FunctionalEventKind::Success).len(), 1);
    assert_eq!(bed.worker.events().len(), 1);
}

#[test]
fn a_404_among_records_fails_with_bad_status_after_every_record_settled() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::status(404, &b"not found page"[..]));
    bed.network.serve(
        B,
        Resource::ok(body(50_000, 3))
            .chunk_size(1000)
            .chunk_delay(Duration::from_millis(10)),
    );
    let _holds = hold_events(&bed);
    let reg = start(&bed, "bad", &[A, B], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::BadStatus);
    let ev = bed.worker.events_of(FunctionalEventKind::Fail);
    assert_eq!(ev.len(), 1);
    // The other record finished before the event: all its bytes are there.
    assert_eq!(stored(&bed, &reg, 1), body(50_000, 3));
    // The bad-status record is exposed, with an empty body (its body is not downloaded).
    let r = reg.clone();
    let (status, text) = bed.run(async move {
        let rec = r.r#match(A, Default::default()).await.unwrap().unwrap();
        let resp = rec.response_ready().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    });
    assert_eq!((status, text.as_str()), (404, ""));
}

#[test]
fn first_failure_wins() {
    let bed = TestBed::new();
    bed.network.serve(
        A,
        Resource::ok(body(10, 0)).head_delay(Duration::from_secs(1)),
    );
    bed.network.fault_next(A, vec![Fault::Status(500)]);
    bed.network.serve(B, Resource::ok(body(10, 0)));
    bed.network
        .fault_next(B, vec![Fault::ErrorBeforeHead(NetworkErrorKind::Fatal)]);
    let reg = start(&bed, "first", &[A, B], 0);
    bed.run_until_idle();
    assert_eq!(
        reg.failure_reason(),
        Reason::FetchError,
        "B failed first (A's head was delayed)"
    );
}

#[test]
fn download_total_is_strict_equal_succeeds() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(body(1000, 0)).chunk_size(100));
    bed.network
        .serve(B, Resource::ok(body(500, 0)).chunk_size(100));
    let reg = start(&bed, "eq", &[A, B], 1500);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(reg.downloaded(), 1500);
}

#[test]
fn exceeding_download_total_cancels_everything_at_once() {
    let bed = TestBed::new();
    // A streams quickly; B trickles and is still in flight when A crosses the limit.
    bed.network.serve(
        A,
        Resource::ok(body(1000, 0))
            .chunk_size(100)
            .chunk_delay(Duration::from_millis(1)),
    );
    bed.network.serve(
        B,
        Resource::ok(body(1000, 0))
            .chunk_size(10)
            .chunk_delay(Duration::from_secs(1)),
    );
    let _holds = hold_events(&bed);
    let reg = start(&bed, "dte", &[A, B], 999);
    let elapsed = bed.executor.run_until_idle(&bed.clock);
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::DownloadTotalExceeded);
    assert!(
        reg.downloaded() <= 999,
        "downloaded never exceeds downloadTotal: {}",
        reg.downloaded()
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "B was cancelled, not waited for: {elapsed:?}"
    );
    assert_eq!(bed.worker.events_of(FunctionalEventKind::Fail).len(), 1);
    assert_eq!(
        bed.network.in_flight(),
        0,
        "nothing in flight after the cancel"
    );
    // B's record was aborted; A's is not exposed.
    let r = reg.clone();
    let (a, b) = bed.run(async move {
        let recs = r.match_all(None, Default::default()).await.unwrap();
        (
            recs[0].response_ready().await.map(|_| ()),
            recs[1].response_ready().await.map(|_| ()),
        )
    });
    assert_eq!(a.unwrap_err().name(), "TypeError");
    assert_eq!(b.unwrap_err().name(), "AbortError");
}

#[test]
fn store_running_out_of_quota_mid_download_fails_with_quota_exceeded() {
    let bed = TestBed::new();
    bed.quota.set(Some(5000));
    bed.network
        .serve(A, Resource::ok(body(10_000, 0)).chunk_size(1000));
    let reg = start(&bed, "q", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.failure_reason(), Reason::QuotaExceeded);
    assert_eq!(reg.downloaded(), 5000);
    // Its data was dropped after the event: the quota is free again.
    assert_eq!(bed.store.total_bytes(), 0);
}

#[test]
fn a_store_write_error_fails_the_fetch_cleanly() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(body(10_000, 0)).chunk_size(1000));
    // create, commit, begin_response, then 3 appends succeed; the 4th write fails.
    bed.store
        .inject_failures(background_fetch::store::StoreErrorKind::Io, 5, 1);
    let reg = start(&bed, "io", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::FetchError);
}

#[test]
fn a_reset_resumes_with_range_and_stores_the_same_bytes() {
    let bed = TestBed::new();
    let data = body(100_000, 9);
    bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(4096)
            .header("etag", "\"abc\""),
    );
    bed.network.fault_next(A, vec![Fault::ResetAfter(30_000)]);
    bed.network.fault_next(A, vec![Fault::ResetAfter(20_000)]);
    let _holds = hold_events(&bed);
    let reg = start(&bed, "resume", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let log = bed.network.requests_for(A);
    assert_eq!(
        log.iter().map(|r| r.range_start).collect::<Vec<_>>(),
        vec![None, Some(30_000), Some(50_000)]
    );
    assert_eq!(log[1].etag.as_deref(), Some("\"abc\""));
    assert_eq!(stored(&bed, &reg, 0), data);
    // The exposed response is the first one: 200, no Content-Range or Content-Length.
    let r = reg.clone();
    let head = bed.run(async move {
        let rec = r.r#match(A, Default::default()).await.unwrap().unwrap();
        rec.response_ready().await.unwrap().head().clone()
    });
    assert_eq!(head.status, 200);
    assert!(!head.headers.contains("content-range") && !head.headers.contains("content-length"));
}

#[test]
fn a_response_stored_with_a_content_coding_restarts_instead_of_resuming() {
    // Deviation 36: the stored bytes belong to the coded representation; a Range request
    // would get identity bytes (validated against the coded representation's ETag, nginx's
    // W/"abc"), so the record restarts from scratch.
    let bed = TestBed::new();
    let data = body(100_000, 7);
    bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(4096)
            .header("etag", "W/\"abc\"")
            .header("content-encoding", "gzip"),
    );
    bed.network.fault_next(A, vec![Fault::ResetAfter(30_000)]);
    let _holds = hold_events(&bed);
    let reg = start(&bed, "coded", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let log = bed.network.requests_for(A);
    assert_eq!(
        log.iter().map(|r| r.range_start).collect::<Vec<_>>(),
        vec![None, None],
        "restarted, never resumed"
    );
    assert_eq!(stored(&bed, &reg, 0), data);
}

#[test]
fn a_200_answer_to_a_range_request_restarts_and_downloaded_goes_down() {
    let bed = TestBed::new();
    let data = body(50_000, 4);
    // Chunks arrive over virtual time, so throttled progress can report the drop to 0.
    bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(5000)
            .chunk_delay(Duration::from_secs(1)),
    );
    bed.network.fault_next(A, vec![Fault::ResetAfter(20_000)]);
    bed.network
        .fault_next(A, vec![Fault::IgnoreRange, Fault::Hold]);
    let reg = start(&bed, "restart", &[A], 0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    reg.on_progress(move |r| s.lock().unwrap().push(r.downloaded()));
    bed.run_until_idle();
    assert_eq!(reg.downloaded(), 20_000);
    bed.network.release(A);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).any(|w| w[1] < w[0]),
        "downloaded decreased on restart: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), 50_000);
}

#[test]
fn an_invalid_partial_response_fails_with_fetch_error() {
    for fault in [
        Fault::ETag("\"changed\"".into()),
        Fault::ContentRange("bytes 1-10/50000".into()),
    ] {
        let bed = TestBed::new();
        bed.network.serve(
            A,
            Resource::ok(body(50_000, 0))
                .chunk_size(5000)
                .header("etag", "\"v1\""),
        );
        bed.network.fault_next(A, vec![Fault::ResetAfter(10_000)]);
        bed.network.fault_next(A, vec![fault.clone()]);
        let reg = start(&bed, "invalid", &[A], 0);
        bed.run_until_idle();
        assert_eq!(reg.failure_reason(), Reason::FetchError, "{fault:?}");
    }
}

#[test]
fn a_short_206_is_followed_by_another_range_request() {
    let bed = TestBed::new();
    let data = body(30_000, 5);
    bed.network
        .serve(A, Resource::ok(data.clone()).chunk_size(5000));
    bed.network.fault_next(A, vec![Fault::ResetAfter(10_000)]);
    bed.network.fault_next(A, vec![Fault::EndAfter(5000)]);
    let _holds = hold_events(&bed);
    let reg = start(&bed, "short", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let starts: Vec<_> = bed
        .network
        .requests_for(A)
        .iter()
        .map(|r| r.range_start)
        .collect();
    assert_eq!(starts, vec![None, Some(10_000), Some(15_000)]);
    assert_eq!(stored(&bed, &reg, 0), data);
}

#[test]
fn an_unsolicited_206_to_the_first_request_is_completed_with_range() {
    let bed = TestBed::new();
    let data = body(20_000, 6);
    bed.network.serve(A, Resource::ok(data.clone()));
    bed.network
        .fault_next(A, vec![Fault::UnsolicitedPartial(8000)]);
    let _holds = hold_events(&bed);
    let reg = start(&bed, "unsolicited", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(stored(&bed, &reg, 0), data);
}

#[test]
fn a_206_with_unknown_complete_length_completes_at_its_last_byte() {
    let bed = TestBed::new();
    let data = body(10_000, 7);
    bed.network.serve(A, Resource::ok(data.clone()));
    bed.network.fault_next(A, vec![Fault::ResetAfter(4000)]);
    bed.network
        .fault_next(A, vec![Fault::ContentRange("bytes 4000-9999/*".into())]);
    let reg = start(&bed, "star", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(
        bed.network.requests_for(A).len(),
        2,
        "no third request, no 416"
    );
}

#[test]
fn non_get_records_are_not_retried() {
    let bed = TestBed::new();
    bed.network
        .serve("https://example.com/upload", Resource::echo());
    bed.network.fault_next(
        "https://example.com/upload",
        vec![Fault::ErrorBeforeHead(NetworkErrorKind::Temporary)],
    );
    let m = bed.manager();
    let r = bed.request_with_body("/upload", "POST", "x");
    let reg = bed
        .run(async move { m.fetch("post", r, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(reg.failure_reason(), Reason::FetchError);
    assert_eq!(
        bed.network.requests_for("https://example.com/upload").len(),
        1
    );
}

#[test]
fn temporary_errors_back_off_and_eventually_give_up() {
    let config = EngineConfig {
        retry: RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            multiplier: 2.0,
            jitter: 0.0,
            max_attempts: Some(5),
        },
        ..Default::default()
    };
    let bed = TestBed::with_config(config);
    bed.network.serve(A, Resource::ok(body(10, 0)));
    for _ in 0..10 {
        bed.network
            .fault_next(A, vec![Fault::ErrorBeforeHead(NetworkErrorKind::Temporary)]);
    }
    let reg = start(&bed, "giveup", &[A], 0);
    let elapsed = bed.executor.run_until_idle(&bed.clock);
    assert_eq!(reg.failure_reason(), Reason::FetchError);
    assert_eq!(bed.network.requests_for(A).len(), 5);
    assert_eq!(
        elapsed,
        Duration::from_secs(1 + 2 + 4 + 8),
        "1s, 2s, 4s, 8s between the 5 attempts"
    );
}

#[test]
fn temporary_errors_recover() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(10, 0)));
    for _ in 0..3 {
        bed.network
            .fault_next(A, vec![Fault::ErrorBeforeHead(NetworkErrorKind::Temporary)]);
    }
    let reg = start(&bed, "recover", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(bed.network.requests_for(A).len(), 4);
}

#[test]
fn blocked_requests_fail_only_their_record_and_count_nothing() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(16, 0)));
    bed.network.serve(B, Resource::ok(body(1000, 0)));
    bed.network
        .fault_next(B, vec![Fault::Block(BlockReason::Cors)]);
    let _holds = hold_events(&bed);
    let m = bed.manager();
    let reg = bed
        .run(async move {
            m.fetch(
                "cors",
                [
                    A,
                    B,
                    "http://example.org/mixed",
                    "https://example.com:587/port",
                ],
                Default::default(),
            )
            .await
        })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(reg.failure_reason(), Reason::FetchError);
    assert_eq!(
        reg.downloaded(),
        16,
        "no byte of the blocked response is counted"
    );
    assert!(
        bed.network
            .requests_for("http://example.org/mixed")
            .is_empty(),
        "never sent"
    );
    assert!(
        bed.network
            .requests_for("https://example.com:587/port")
            .is_empty(),
        "never sent"
    );
    let r = reg.clone();
    let results = bed.run(async move {
        let mut out = Vec::new();
        for rec in r.match_all(None, Default::default()).await.unwrap() {
            out.push(rec.response_ready().await.map(|_| ()).map_err(|e| e.name()));
        }
        out
    });
    assert_eq!(
        results,
        vec![Ok(()), Err("TypeError"), Err("TypeError"), Err("TypeError")]
    );
}

#[test]
fn csp_captured_at_fetch_time_blocks_the_record() {
    let bed = TestBed::new();
    bed.network
        .serve("https://example.com/", Resource::ok(body(10, 0)));
    let env = bed
        .engine()
        .create_environment(background_fetch::EnvironmentSettings {
            policy: background_fetch::PolicyContainer {
                csp: vec!["connect-src 'none'".into()],
                referrer_policy: String::new(),
                csp_report_only: Vec::new(),
            },
            ..background_fetch::EnvironmentSettings::window(
                Url::parse("https://example.com/csp.html").unwrap(),
            )
        });
    let m = env.background_fetch(&bed.registration);
    let (reg, ready) = bed.run(async move {
        let reg = m.fetch("csp", "/", Default::default()).await.unwrap();
        let rec = reg.r#match("/", Default::default()).await.unwrap().unwrap();
        let ready = rec.response_ready().await.map(|_| ()).map_err(|e| e.name());
        (reg, ready)
    });
    assert_eq!(ready, Err("TypeError"));
    assert_eq!(reg.failure_reason(), Reason::FetchError);
    assert!(bed.network.log().is_empty());
}

#[test]
fn pause_stops_everything_and_resume_continues_with_range() {
    let bed = TestBed::new();
    let data = body(100_000, 2);
    bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    let _holds = hold_events(&bed);
    let reg = start(&bed, "pause", &[A], 0);
    bed.advance(Duration::from_millis(3500));
    let engine = bed.engine();
    let uid = reg.uid();
    assert_eq!(bed.run(async move { engine.pause(uid).await }), Ok(()));
    bed.run_until_idle();
    assert_eq!(bed.network.in_flight(), 0, "nothing in flight while paused");
    let paused_at = bed.network.requests_for(A).len();
    bed.clock.advance(Duration::from_secs(3600));
    bed.run_until_idle();
    assert_eq!(bed.network.requests_for(A).len(), paused_at);
    assert!(bed.ui.last(uid).unwrap().paused);
    let engine = bed.engine();
    assert_eq!(bed.run(async move { engine.resume(uid).await }), Ok(()));
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let log = bed.network.requests_for(A);
    assert!(
        log.last().unwrap().range_start.is_some_and(|s| s > 0),
        "resumed with Range"
    );
    assert_eq!(stored(&bed, &reg, 0), data);
}

#[test]
fn pause_is_refused_when_a_record_is_not_get() {
    let bed = TestBed::new();
    bed.network.serve(
        "https://example.com/upload",
        Resource::echo().head_delay(Duration::from_secs(5)),
    );
    let m = bed.manager();
    let r = bed.request_with_body("/upload", "POST", "x");
    let reg = bed
        .run(async move { m.fetch("post", r, Default::default()).await })
        .unwrap();
    let engine = bed.engine();
    let uid = reg.uid();
    assert!(bed.run(async move { engine.pause(uid).await }).is_err());
    assert!(!bed.ui.last(uid).unwrap().can_pause);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
}

#[test]
fn offline_pauses_and_online_resumes_with_range() {
    let bed = TestBed::new();
    let data = body(60_000, 8);
    bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    let _holds = hold_events(&bed);
    let reg = start(&bed, "offline", &[A], 0);
    bed.advance(Duration::from_millis(2500));
    bed.set_online(false);
    bed.run_until_idle();
    assert_eq!(bed.network.in_flight(), 0);
    assert!(!bed.ui.last(reg.uid()).unwrap().online);
    let before = bed.network.requests_for(A).len();
    bed.clock.advance(Duration::from_secs(600));
    bed.run_until_idle();
    assert_eq!(
        bed.network.requests_for(A).len(),
        before,
        "nothing is tried while offline"
    );
    bed.set_online(true);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(stored(&bed, &reg, 0), data);
}

#[test]
fn aborting_a_paused_fetch_does_not_hang() {
    let bed = TestBed::new();
    bed.network.serve(
        A,
        Resource::ok(body(100, 0))
            .chunk_size(10)
            .chunk_delay(Duration::from_secs(1)),
    );
    let reg = start(&bed, "pa", &[A], 0);
    let engine = bed.engine();
    let uid = reg.uid();
    assert_eq!(bed.run(async move { engine.pause(uid).await }), Ok(()));
    bed.run_until_idle();
    let engine = bed.engine();
    assert_eq!(bed.run(async move { engine.user_abort(uid).await }), Ok(()));
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::Aborted);
    assert_eq!(bed.worker.events_of(FunctionalEventKind::Abort).len(), 1);
}

#[test]
fn concurrency_is_limited_per_fetch_and_globally() {
    let config = EngineConfig {
        max_parallel_per_fetch: 2,
        max_parallel_global: 3,
        ..Default::default()
    };
    let bed = TestBed::with_config(config);
    let urls: Vec<String> = (0..6)
        .map(|i| format!("https://example.com/f{i}"))
        .collect();
    for u in &urls {
        bed.network.serve(
            u,
            Resource::ok(body(1000, 0))
                .chunk_size(100)
                .chunk_delay(Duration::from_millis(10)),
        );
    }
    let m = bed.manager();
    let (u1, u2) = (urls[..3].to_vec(), urls[3..].to_vec());
    let (a, b) = bed.run(async move {
        let a = m
            .fetch(
                "a",
                u1.into_iter().map(RequestInfo::from).collect::<Vec<_>>(),
                Default::default(),
            )
            .await
            .unwrap();
        let b = m
            .fetch(
                "b",
                u2.into_iter().map(RequestInfo::from).collect::<Vec<_>>(),
                Default::default(),
            )
            .await
            .unwrap();
        (a, b)
    });
    bed.run_until_idle();
    assert_eq!(
        (a.result(), b.result()),
        (Result_::Success, Result_::Success)
    );
    assert_eq!(bed.network.max_in_flight(), 3);
}

#[test]
fn progress_is_throttled_with_a_final_event_on_result() {
    let config = EngineConfig {
        progress_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let bed = TestBed::with_config(config);
    bed.network.serve(
        A,
        Resource::ok(body(100_000, 0))
            .chunk_size(1000)
            .chunk_delay(Duration::from_millis(10)),
    );
    let reg = start(&bed, "throttle", &[A], 0);
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let clock = bed.clock.clone();
    reg.on_progress(move |r| {
        e.lock()
            .unwrap()
            .push((clock.now_duration(), r.downloaded(), r.result()))
    });
    bed.run_until_idle();
    let events = events.lock().unwrap().clone();
    // 100 chunks over ~1 s of virtual time: about one event per second plus the final one.
    assert!(events.len() <= 4, "{} events: {events:?}", events.len());
    let last = events.last().unwrap();
    assert_eq!((last.1, last.2), (100_000, Result_::Success));
    for w in events.windows(2) {
        if w[1].2 == Result_::Empty {
            assert!(w[1].0 - w[0].0 >= Duration::from_secs(1), "{events:?}");
        }
    }
}

#[test]
fn a_reset_after_the_last_byte_completes_on_the_416() {
    let bed = TestBed::new();
    let data = body(20_000, 1);
    bed.network.serve(
        A,
        Resource::ok(data.clone())
            .chunk_size(5000)
            .header("etag", "\"e\""),
    );
    bed.network.fault_next(A, vec![Fault::ResetAfter(20_000)]);
    let _holds = hold_events(&bed);
    let reg = start(&bed, "416", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let starts: Vec<_> = bed
        .network
        .requests_for(A)
        .iter()
        .map(|r| r.range_start)
        .collect();
    assert_eq!(starts, vec![None, Some(20_000)]);
    assert!(stored(&bed, &reg, 0) == data);
}

#[test]
fn a_416_for_another_length_restarts_nothing_and_fails() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(body(20_000, 1)).chunk_size(5000));
    bed.network.fault_next(A, vec![Fault::ResetAfter(10_000)]);
    bed.network.fault_next(A, vec![Fault::Status(416)]);
    let reg = start(&bed, "416b", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.failure_reason(), Reason::BadStatus);
}

/// Issue 11 item 4: every record that ever waited on connectivity left a waker in the engine's
/// online watch until connectivity next changed; across 100,000 records on a steady network
/// that was 100,000 wakers, scanned at every wait.
#[test]
fn connectivity_waiters_stay_bounded_across_100000_records() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(body(1, 7)));
    let records = 10_000;
    for round in 0..10 {
        let urls: Vec<&str> = std::iter::repeat_n(A, records).collect();
        let reg = start(&bed, &format!("many-{round}"), &urls, 0);
        bed.run_until_idle();
        assert_eq!(reg.result(), Result_::Success, "round {round}");
        let d = bed.engine().diagnostics();
        assert_eq!(
            d.connectivity_waiters,
            0,
            "round {round}: {} records finished and left wakers behind",
            (round + 1) * records
        );
        bed.engine().forget(reg.uid());
    }
    assert_eq!(bed.engine().diagnostics().fetches, 0);
}

/// The uid of the fetch with `id` (for the UI's pause and abort, which take uids).
fn uid_of(bed: &TestBed, id: &str) -> Option<background_fetch::FetchUid> {
    bed.engine()
        .fetches()
        .into_iter()
        .find(|f| f.id == id)
        .map(|f| f.uid)
}

/// An always-ready network (every chunk is there before the engine asks) serving `A` in 100
/// chunks of 1,000 bytes, with `action` run the moment the engine receives byte 3,000.
fn always_ready_with_action_at_3000(bed: &TestBed, action: impl FnOnce() + Send + 'static) {
    let action = move |_reached: u64| action();
    bed.network.set_always_ready(true);
    bed.network
        .serve(A, Resource::ok(body(100_000, 9)).chunk_size(1000));
    bed.network.when_delivered(A, 3000, action);
}

/// Issue 11 item 1: `abort()` resolved true, yet with a network that always had data ready the
/// record kept downloading to the end of its body (the race polled the network first and the
/// data branch never looked at the abort all flag). Complete a record step 13: abort when the
/// flag is set, within one chunk.
///
/// Script's `get()` and `abort()` go through the protocol, in tasks of their own: an
/// always-ready download must leave them room. It did not (the transfer never yielded, so
/// `get()` was answered only once the whole body had arrived and the fetch had settled, and
/// `abort()` came too late to do anything).
#[test]
fn abort_stops_an_always_ready_transfer_within_one_chunk() {
    let bed = TestBed::new();
    let (manager, network) = (bed.manager(), bed.network.clone());
    let spawner = bed.executor.clone();
    /// Bytes delivered when get() was answered, abort()'s answer, bytes delivered then.
    type Seen = Option<(u64, Option<bool>, u64)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s = seen.clone();
    always_ready_with_action_at_3000(&bed, move || {
        use futures::FutureExt;
        spawner.spawn_boxed(
            async move {
                let reg = manager.get("ready").await.unwrap();
                let at_get = network.delivered(A);
                let aborted = match reg {
                    Some(reg) => Some(reg.abort().await.unwrap()),
                    None => None,
                };
                *s.lock().unwrap() = Some((at_get, aborted, network.delivered(A)));
            }
            .boxed(),
        );
    });
    let reg = start(&bed, "ready", &[A], 0);
    bed.run_until_idle();
    let (at_get, aborted, at_abort) = seen.lock().unwrap().expect("the script's task ran");
    assert!(
        at_get <= 10_000,
        "get() was answered after {at_get} of 100,000 bytes (asked at 3,000)"
    );
    assert_eq!(aborted, Some(true), "abort() resolved true");
    let delivered = bed.network.delivered(A);
    assert!(
        delivered <= at_abort + 1000,
        "{delivered} bytes delivered; abort() had resolved at {at_abort}"
    );
    assert!(delivered < 100_000, "the transfer stopped");
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::Aborted);
    assert_eq!(bed.worker.events_of(FunctionalEventKind::Abort).len(), 1);
}

/// Issue 11 item 1, the user's pause: the transfer stops within one chunk, and resuming
/// continues with Range from exactly the stored length.
#[test]
fn pause_stops_an_always_ready_transfer_within_one_chunk_and_resumes_with_range() {
    let bed = TestBed::new();
    let engine = bed.engine();
    let paused = Arc::new(Mutex::new(None));
    let p = paused.clone();
    always_ready_with_action_at_3000(&bed, move || {
        use futures::FutureExt;
        let uid = engine
            .fetches()
            .into_iter()
            .find(|f| f.id == "ready")
            .unwrap()
            .uid;
        *p.lock().unwrap() = engine.pause(uid).now_or_never();
    });
    let _holds = hold_events(&bed);
    let reg = start(&bed, "ready", &[A], 0);
    bed.run_until_idle();
    assert_eq!(*paused.lock().unwrap(), Some(Ok(())), "pause() took effect");
    let delivered = bed.network.delivered(A);
    assert!(
        delivered <= 4000,
        "{delivered} bytes delivered after pausing at 3,000"
    );
    assert_eq!(reg.result(), Result_::Empty, "still running, paused");
    let uid = uid_of(&bed, "ready").unwrap();
    let engine = bed.engine();
    assert_eq!(bed.run(async move { engine.resume(uid).await }), Ok(()));
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let log = bed.network.requests_for(A);
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].range_start,
        Some(delivered),
        "resumed from the stored length"
    );
    assert_eq!(stored(&bed, &reg, 0), body(100_000, 9));
}

/// Issue 11 item 1, connectivity: going offline interrupts an always-ready transfer within one
/// chunk too.
#[test]
fn offline_stops_an_always_ready_transfer_within_one_chunk() {
    let bed = TestBed::new();
    let engine = bed.engine();
    always_ready_with_action_at_3000(&bed, move || engine.set_online(false));
    let _holds = hold_events(&bed);
    let reg = start(&bed, "ready", &[A], 0);
    bed.run_until_idle();
    let delivered = bed.network.delivered(A);
    assert!(
        delivered <= 4000,
        "{delivered} bytes delivered after going offline at 3,000"
    );
    bed.set_online(true);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(bed.network.requests_for(A)[1].range_start, Some(delivered));
    assert_eq!(stored(&bed, &reg, 0), body(100_000, 9));
}

/// Issue 11 item 6: a record that restarts (a 200 answers its Range request) gave its old bytes
/// back to the quota but not to its fetch's `downloadTotal` reservation, so another fetch could
/// reserve them and the re-download failed with `quota-exceeded` although the whole
/// `downloadTotal` had been reserved.
#[test]
fn a_restarted_record_keeps_its_fetchs_reservation() {
    let bed = TestBed::new();
    bed.quota.set(Some(150_000));
    bed.network.serve(
        A,
        Resource::ok(body(100_000, 4))
            .chunk_size(10_000)
            .chunk_delay(Duration::from_secs(1)),
    );
    bed.network.fault_next(A, vec![Fault::ResetAfter(50_000)]);
    bed.network.fault_next(A, vec![Fault::IgnoreRange]);
    bed.network.serve(B, Resource::ok(body(10, 5)));
    bed.network.fault_next(B, vec![Fault::Hold]);
    let _holds = hold_events(&bed);
    let x = start(&bed, "x", &[A], 100_000);
    // The reset at 5 s, the retry after at most 0.5 s answered 200: the record restarted.
    bed.advance(Duration::from_millis(5800));
    assert_eq!(bed.network.requests_for(A).len(), 2);
    assert_eq!(x.downloaded(), 0, "the record restarted from scratch");
    // Another fetch reserves what the quota has left for it: 150,000 - 100,000 reserved by x.
    let m = bed.manager();
    let y = bed.run(async move {
        m.fetch(
            "y",
            B,
            BackgroundFetchOptions {
                download_total: 60_000,
                ..Default::default()
            },
        )
        .await
    });
    assert_eq!(
        y.map(|_| ()).map_err(|e| e.name()),
        Err("QuotaExceededError"),
        "x's reservation is whole again: 150,000 - 100,000 leaves less than 60,000"
    );
    let m = bed.manager();
    let y = bed.run(async move {
        m.fetch(
            "y",
            B,
            BackgroundFetchOptions {
                download_total: 50_000,
                ..Default::default()
            },
        )
        .await
    });
    assert!(y.is_ok(), "{y:?}");
    bed.run_until_idle();
    assert_eq!(x.result(), Result_::Success, "{:?}", x.failure_reason());
    assert_eq!(stored(&bed, &x, 0), body(100_000, 4));
}

/// Issue 11 item 7: a host that reports a cut-off body as a normal end (Servo's net stack does)
/// made the engine store a truncated response as a success. A body shorter than its
/// identity-coded `Content-Length` is incomplete (RFC 9112 §6.3): the record resumes.
#[test]
fn a_body_cut_off_before_its_content_length_resumes_instead_of_succeeding() {
    let bed = TestBed::new();
    let data = body(100_000, 6);
    bed.network
        .serve(A, Resource::ok(data.clone()).chunk_size(10_000));
    bed.network.fault_next(A, vec![Fault::CutOffAfter(30_000)]);
    let _holds = hold_events(&bed);
    let reg = start(&bed, "cut", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    let log = bed.network.requests_for(A);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].range_start, Some(30_000), "resumed from the cut");
    assert_eq!(stored(&bed, &reg, 0), data);
}

/// Issue 11 item 7, a non-GET request: a cut-off response is not reissued; the record fails.
#[test]
fn a_cut_off_response_to_an_upload_fails_its_record() {
    let bed = TestBed::new();
    let upload = "https://example.com/upload";
    bed.network.serve(upload, Resource::echo());
    bed.network.fault_next(upload, vec![Fault::CutOffAfter(2)]);
    let r = bed.request_with_body("/upload", "POST", "four");
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("up", r, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::FetchError);
    assert_eq!(bed.network.requests_for(upload).len(), 1);
}

/// Issue 11 item 8: a server that always cuts the body short and ignores Range made every
/// attempt "progress" (bytes were stored before the cut), so the retry policy's attempt limit
/// never applied and the record retried for ever. Progress is a record reaching further than
/// it ever did; with the default policy (20 attempts without progress) the record fails with
/// `fetch-error` and the fetch settles, in bounded virtual time.
#[test]
fn a_server_that_always_cuts_the_body_short_ends_in_fetch_error() {
    let bed = TestBed::new();
    bed.network
        .serve(A, Resource::ok(body(100_000, 8)).no_range());
    for _ in 0..100 {
        bed.network.fault_next(A, vec![Fault::ResetAfter(40_000)]);
    }
    let reg = start(&bed, "cut", &[A], 0);
    let elapsed = bed.executor.run_until_idle(&bed.clock);
    assert_eq!(reg.result(), Result_::Failure);
    assert_eq!(reg.failure_reason(), Reason::FetchError);
    let attempts = bed.network.requests_for(A).len();
    let limit = RetryPolicy::default().max_attempts.unwrap() as usize;
    assert_eq!(
        attempts,
        limit + 1,
        "one attempt that progressed, then {limit} that did not"
    );
    assert!(elapsed < Duration::from_secs(30 * 60), "{elapsed:?}");
    assert_eq!(bed.worker.events_of(FunctionalEventKind::Fail).len(), 1);
}

/// Issue 11 item 8: real progress still resets the count: a server that supports Range and cuts
/// every response short completes the record.
#[test]
fn a_server_that_cuts_short_but_resumes_completes() {
    let bed = TestBed::new();
    let data = body(100_000, 8);
    bed.network.serve(A, Resource::ok(data.clone()));
    // 39 cuts, each 2,500 bytes further than the last: more than the 20 attempts without
    // progress the policy allows, but every one progressed.
    for _ in 0..39 {
        bed.network.fault_next(A, vec![Fault::ResetAfter(2_500)]);
    }
    let _holds = hold_events(&bed);
    let reg = start(&bed, "resume", &[A], 0);
    bed.run_until_idle();
    assert_eq!(reg.result(), Result_::Success);
    assert_eq!(bed.network.requests_for(A).len(), 40);
    assert_eq!(stored(&bed, &reg, 0), data);
}
