//! Tests of the harness itself: that the loopback server, the CORS host and the runner do what
//! the subtests rely on, so a passing subtest is not passing vacuously.

use crate::server::{HTTPS_REMOTE_ORIGIN, NOT_FOUND_BODY, ORIGIN, ServerLogEntry};
use crate::*;
use background_fetch::{CredentialsMode, RequestInfo, RequestInit};
use std::time::Duration;

const PAGE: &str = "fetch.https.window.js";

/// Runs `body` in a fresh page of `fetch.https.window.js` and returns the server log.
fn run(body: impl FnOnce(Test) -> BoxFuture<'static, ()>) -> (Test, Vec<ServerLogEntry>) {
    let t = Test::new(PAGE, PageSetup::DEFAULT);
    t.run(body(t.clone()));
    let log = t.server().log();
    (t, log)
}

fn requests(log: &[ServerLogEntry]) -> Vec<(String, String)> {
    log.iter()
        .map(|e| (e.method.clone(), e.url.clone()))
        .collect()
}

fn header(e: &ServerLogEntry, name: &str) -> Option<String> {
    e.headers.get_str(name)
}

#[test]
fn a_cross_origin_put_is_preflighted_then_sent_with_an_origin() {
    let url = format!(
        "{HTTPS_REMOTE_ORIGIN}/background-fetch/resources/feature-name.txt?pipe=header(Access-Control-Allow-Origin, *)|header(Access-Control-Allow-Methods, PUT)"
    );
    let u = url.clone();
    let (_, log) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            let put = t.new_request(
                u,
                RequestInit {
                    method: Some("PUT".into()),
                    ..Default::default()
                },
            );
            bgf.fetch("x", put, Default::default()).await.unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.r#type, "backgroundfetchsuccess");
        })
    });
    let parsed = url::Url::parse(&url).unwrap().to_string();
    assert_eq!(
        requests(&log),
        vec![("OPTIONS".into(), parsed.clone()), ("PUT".into(), parsed)]
    );
    assert_eq!(
        header(&log[0], "access-control-request-method").as_deref(),
        Some("PUT")
    );
    assert_eq!(header(&log[0], "origin").as_deref(), Some(ORIGIN));
    assert_eq!(header(&log[1], "origin").as_deref(), Some(ORIGIN));
}

#[test]
fn a_non_safelisted_content_type_is_listed_in_the_preflight() {
    let url = format!(
        "{HTTPS_REMOTE_ORIGIN}/background-fetch/resources/feature-name.txt?pipe=header(Access-Control-Allow-Origin, *)"
    );
    let (_, log) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            let post = t.new_request(
                url,
                RequestInit {
                    method: Some("POST".into()),
                    headers: Some(vec![("Content-Type".into(), "text/json".into())]),
                    ..Default::default()
                },
            );
            bgf.fetch("x", post, Default::default()).await.unwrap();
            let m = t.get_message_from_service_worker().await.event();
            // The pipe does not allow the header: the preflight fails, nothing else is sent.
            assert_eq!(m.r#type, "backgroundfetchfail");
            assert_eq!(m.results, vec![None]);
        })
    });
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].method, "OPTIONS");
    assert_eq!(
        header(&log[0], "access-control-request-headers").as_deref(),
        Some("content-type")
    );
}

#[test]
fn a_preflight_to_a_static_file_gets_a_404_and_nothing_follows() {
    let (_, log) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw-cors.js").await;
            let request = t.new_request(
                format!("{HTTPS_REMOTE_ORIGIN}/background-fetch/resources/cors-resource.txt"),
                RequestInit {
                    headers: Some(vec![("X-Custom-Header".into(), "SecretValue".into())]),
                    ..Default::default()
                },
            );
            bgf.fetch("x", request, Default::default()).await.unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.r#type, "backgroundfetchfail");
        })
    });
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].method, "OPTIONS");
    assert_eq!(
        header(&log[0], "access-control-request-headers").as_deref(),
        Some("x-custom-header")
    );
}

#[test]
fn credentialed_requests_are_refused_against_a_wildcard_after_the_response() {
    let (_, log) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw-cors.js").await;
            let request = t.new_request(
                format!("{HTTPS_REMOTE_ORIGIN}/background-fetch/resources/cors-resource.txt"),
                RequestInit {
                    credentials: Some(CredentialsMode::Include),
                    ..Default::default()
                },
            );
            let reg = bgf.fetch("x", request, Default::default()).await.unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.r#type, "backgroundfetchfail");
            assert_eq!(m.event_registration.downloaded, 0);
            assert_eq!(reg.failure_reason().as_str(), "fetch-error");
        })
    });
    // A simple GET: no preflight, the response is refused.
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "GET");
}

#[test]
fn a_response_failing_cors_is_requested_but_never_counted() {
    let (_, log) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            let reg = bgf
                .fetch(
                    "x",
                    format!("{HTTPS_REMOTE_ORIGIN}/background-fetch/resources/feature-name.txt"),
                    Default::default(),
                )
                .await
                .unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.results, vec![None]);
            assert_eq!(reg.downloaded(), 0);
        })
    });
    assert_eq!(requests(&log).len(), 1);
    assert_eq!(log[0].method, "GET");
}

/// Runs a cross-origin download of a CORS-enabled file that resets after 5 bytes, with the
/// resource's `ETag` changed on the resumed request when `changed`; returns the event type and
/// the text the service worker read.
/// The event type and the texts the service worker read.
type ResumeOutcome = (String, Vec<Option<String>>);

fn cross_origin_resume(changed: bool) -> ResumeOutcome {
    use background_fetch::testing::{Fault, Resource};
    let path = "/background-fetch/resources/versioned.txt";
    let url = format!("{HTTPS_REMOTE_ORIGIN}{path}");
    let got: std::sync::Arc<std::sync::Mutex<Option<ResumeOutcome>>> = Default::default();
    let (u, g) = (url.clone(), got.clone());
    let (t, _) = run(move |t| {
        let resource = Resource::ok(bytes::Bytes::from_static(b"Background Fetch"))
            .header("Access-Control-Allow-Origin", "*")
            .header("ETag", "\"v1\"");
        t.server().add_file(path, resource);
        t.server()
            .network()
            .fault_next(&u, vec![Fault::ResetAfter(5)]);
        if changed {
            t.server()
                .network()
                .fault_next(&u, vec![Fault::ETag("\"v2\"".into())]);
        }
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            bgf.fetch("x", u, Default::default()).await.unwrap();
            let m = t.get_message_from_service_worker().await.event();
            let texts = m.results.into_iter().map(|r| r.map(|r| r.text)).collect();
            *g.lock().unwrap() = Some((m.r#type, texts));
        })
    });
    let resumed = t.server().network().requests_for(&url);
    assert_eq!(resumed.len(), 2, "one reset, one resumed request");
    assert_eq!(resumed[1].range_start, Some(5));
    assert_eq!(
        resumed[1].etag.as_deref(),
        Some("\"v1\""),
        "If-Range uses the unfiltered ETag"
    );
    let got = got.lock().unwrap().take();
    got.expect("the service worker posted a message")
}

#[test]
fn a_cross_origin_resume_keeps_its_validators_unexposed() {
    let (event, texts) = cross_origin_resume(false);
    assert_eq!(event, "backgroundfetchsuccess");
    assert_eq!(texts, vec![Some("Background Fetch".to_owned())]);
}

#[test]
fn a_cross_origin_resume_detects_a_changed_resource() {
    let (event, _) = cross_origin_resume(true);
    assert_eq!(
        event, "backgroundfetchfail",
        "bytes of two versions are never spliced"
    );
}

#[test]
fn same_origin_responses_are_basic_and_unfiltered() {
    run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            let reg = bgf
                .fetch(
                    "x",
                    ["resources/feature-name.txt", "/common/slow.py"],
                    Default::default(),
                )
                .await
                .unwrap();
            let record = reg
                .r#match("resources/feature-name.txt", Default::default())
                .await
                .unwrap()
                .unwrap();
            let response = record.response_ready().await.unwrap();
            assert_eq!(response.response_type().as_str(), "basic");
            assert_eq!(
                response.headers().get_str("content-type").as_deref(),
                Some("text/plain")
            );
            assert_eq!(response.text().await.unwrap(), "Background Fetch");
            reg.abort().await.unwrap();
        })
    });
}

#[test]
fn blocked_requests_never_reach_the_server() {
    let (_, log) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            let urls = [
                "https://example.com:587",
                "wss:127.0.0.1",
                "file:///",
                "data:text/plain,foo",
                "foobar:bazqux",
                "http://web-platform.test/",
            ];
            let reg = bgf
                .fetch(
                    "x",
                    urls.iter()
                        .map(|u| RequestInfo::from(*u))
                        .collect::<Vec<_>>(),
                    Default::default(),
                )
                .await
                .unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.results, vec![None; 6]);
            assert_eq!(reg.failure_reason().as_str(), "fetch-error");
        })
    });
    assert_eq!(log, vec![], "blocked before the network");
}

#[test]
fn csp_blocks_before_the_network() {
    let t = Test::new(
        "content-security-policy.https.window.js",
        PageSetup {
            csp: &["connect-src 'none'"],
        },
    );
    let page = t.clone();
    t.run(async move {
        let bgf = page.background_fetch_test("sw.js").await;
        bgf.fetch("x", "/", Default::default()).await.unwrap();
        let m = page.get_message_from_service_worker().await.event();
        assert_eq!(m.results, vec![None]);
    });
    assert_eq!(t.server().log(), vec![]);
}

#[test]
fn slow_py_answers_after_two_virtual_seconds() {
    let (t, _) = run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            bgf.fetch("x", "/common/slow.py", Default::default())
                .await
                .unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.r#type, "backgroundfetchsuccess");
            assert_eq!(m.results[0].clone().unwrap().text, "");
        })
    });
    assert!(t.now() >= Duration::from_secs(2), "{:?}", t.now());
    assert!(t.now() < Duration::from_secs(3), "{:?}", t.now());
}

#[test]
fn upload_py_echoes_and_needs_a_content_type() {
    run(|t| {
        Box::pin(async move {
            let bgf = t.background_fetch_test("sw.js").await;
            let typed = t.new_request(
                "resources/upload.py",
                RequestInit {
                    method: Some("POST".into()),
                    ..body(BodyInit::UrlSearchParams(vec![("a".into(), "b c".into())]))
                },
            );
            let untyped = t.new_request(
                "resources/upload.py",
                RequestInit {
                    method: Some("POST".into()),
                    ..body(BodyInit::ArrayBuffer(b"raw".to_vec()))
                },
            );
            bgf.fetch(
                "x",
                vec![RequestInfo::from(typed), untyped.into()],
                Default::default(),
            )
            .await
            .unwrap();
            let m = t.get_message_from_service_worker().await.event();
            assert_eq!(m.r#type, "backgroundfetchfail");
            let echoed = m.results[0].clone().unwrap();
            assert_eq!((echoed.status, echoed.text.as_str()), (200, "a=b+c"));
            assert_eq!(m.results[1].clone().unwrap().status, 500);
        })
    });
}

#[test]
fn a_missing_file_is_a_404_with_a_body() {
    use background_fetch::{NetworkEvent, NetworkHost, NetworkRequest};
    use futures::StreamExt;
    let t = Test::new(PAGE, PageSetup::DEFAULT);
    let url = url::Url::parse(&format!(
        "{ORIGIN}/background-fetch/resources/missing-cat.txt"
    ))
    .unwrap();
    let events: Vec<NetworkEvent> = futures::executor::block_on(
        t.server()
            .fetch(NetworkRequest {
                request: background_fetch::Request::get(url.clone()),
                body: None,
                range_start: None,
                validators: Default::default(),
                client: background_fetch::ClientSnapshot::for_url(url),
                fetch: background_fetch::FetchUid(1),
                record: 0,
            })
            .collect(),
    );
    assert!(matches!(&events[0], NetworkEvent::Response(h) if h.status == 404));
    assert_eq!(events[1], NetworkEvent::Data(NOT_FOUND_BODY.into()));
}

async fn passes(_t: Test) {}

async fn fails(_t: Test) {
    assert_equals!(1, 2);
}

async fn times_out(t: Test) {
    // No service worker ever posts: every task waits and no timer is pending.
    t.get_message_from_service_worker().await;
}

static FAKE: UpstreamFile = UpstreamFile {
    file: "fake.https.window.js",
    page: PageSetup::DEFAULT,
    expectations: "[fake.https.window.js]\n  [passes]\n    expected: PASS\n  [fails]\n    expected: FAIL\n    reason: it asserts 1 == 2\n  [times out]\n    expected: FAIL\n    reason: nothing posts\n",
    subtests: &[
        Subtest {
            name: "passes",
            function: "passes",
            run: |t| Box::pin(passes(t)),
        },
        Subtest {
            name: "fails",
            function: "fails",
            run: |t| Box::pin(fails(t)),
        },
        Subtest {
            name: "times out",
            function: "times_out",
            run: |t| Box::pin(times_out(t)),
        },
    ],
};

#[test]
fn outcomes_and_timeouts() {
    assert_eq!(run_subtest(&FAKE, &FAKE.subtests[0]), Outcome::Pass);
    let Outcome::Fail(m) = run_subtest(&FAKE, &FAKE.subtests[1]) else {
        panic!()
    };
    assert!(
        m.starts_with("assert_equals: expected 2 but got 1 (at "),
        "{m}"
    );
    let Outcome::Fail(m) = run_subtest(&FAKE, &FAKE.subtests[2]) else {
        panic!()
    };
    assert!(m.starts_with("TIMEOUT"), "{m}");
}

#[test]
fn expected_failures_pass_under_libtest_and_count_in_the_totals() {
    run_under_libtest(&FAKE, "fails");
    run_under_libtest(&FAKE, "times out");
    let totals = run_files(&[&FAKE]);
    assert_eq!(
        totals,
        Totals {
            passed: 1,
            failed: 2,
            expected_failures: 2,
            unexpected: 0,
            bad_expectation_files: 0
        }
    );
}

static WRONG: UpstreamFile = UpstreamFile {
    file: "fake.https.window.js",
    page: PageSetup::DEFAULT,
    // `passes` is expected to fail, `fails` to pass.
    expectations: "[fake.https.window.js]\n  [passes]\n    expected: FAIL\n    reason: r\n  [fails]\n    expected: PASS\n",
    subtests: &[
        Subtest {
            name: "passes",
            function: "passes",
            run: |t| Box::pin(passes(t)),
        },
        Subtest {
            name: "fails",
            function: "fails",
            run: |t| Box::pin(fails(t)),
        },
    ],
};

#[test]
fn unexpected_passes_and_failures_fail_the_run() {
    for name in ["passes", "fails"] {
        let r = std::panic::catch_unwind(|| run_under_libtest(&WRONG, name));
        assert!(r.is_err(), "{name} must fail under libtest");
    }
    assert_eq!(run_files(&[&WRONG]).unexpected, 2);
    let missing = UpstreamFile {
        expectations: "[fake.https.window.js]\n  [passes]\n    expected: PASS\n",
        ..WRONG
    };
    assert!(check_expectations(&missing).is_err());
}
