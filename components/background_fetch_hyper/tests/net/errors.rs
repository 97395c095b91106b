//! Error classification: every kind of failure, temporary versus fatal versus blocked, and the
//! timeouts (on paused time: nothing sleeps for real).

use crate::support::*;
use background_fetch::{BlockReason, NetworkErrorKind, Request};
use background_fetch_hyper::{ConnectRetry, Resolve, ResolveError, ResolveErrorKind};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A resolver whose answers the test scripts, call by call (the last answer repeats).
/// Answers scripted per call.
pub struct ScriptedResolver {
    answers: Vec<Result<Vec<SocketAddr>, ResolveErrorKind>>,
    /// How many times it was asked.
    pub calls: AtomicUsize,
}

impl ScriptedResolver {
    /// A resolver giving `answers` in turn (the last one repeats).
    pub fn new(answers: Vec<Result<Vec<SocketAddr>, ResolveErrorKind>>) -> Arc<Self> {
        Arc::new(ScriptedResolver {
            answers,
            calls: AtomicUsize::new(0),
        })
    }
}

impl Resolve for ScriptedResolver {
    fn resolve(
        &self,
        host: &str,
        _port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let a = self.answers[n.min(self.answers.len() - 1)].clone();
        let host = host.to_owned();
        async move {
            a.map_err(|kind| ResolveError {
                kind,
                message: format!("{host}: scripted failure"),
            })
        }
        .boxed()
    }
}

/// A port with nothing listening on it.
async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn connection_refused_is_temporary() {
    let addr = dead_addr().await;
    let host = host(config(None));
    let url = url::Url::parse(&format!("http://127.0.0.1:{}/x", addr.port())).unwrap();
    let o = run(&host, get(&url, "https://app.test")).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(o.head.is_none());
    assert!(
        host.connectivity().is_online(),
        "a refused connection says nothing about the network"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connect_failure_is_retried_with_backoff_inside_the_attempt() {
    let res = Resource::new(pattern(1000));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let dead = dead_addr().await;
    let resolver =
        ScriptedResolver::new(vec![Ok(vec![dead]), Ok(vec![dead]), Ok(vec![server.addr])]);
    let mut c = config(None);
    c.resolver = Some(resolver.clone());
    c.connect_retry = ConnectRetry {
        max_retries: 2,
        initial_delay: Duration::from_millis(100),
        ..ConnectRetry::default()
    };
    let host = host(c);
    let url = server.url_as("a.localhost", "/f");
    let start = tokio::time::Instant::now();
    let o = run(
        &host,
        get(&url, &format!("http://a.localhost:{}", server.port())),
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(1000));
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 3);
    // Two backoff delays: about 100 ms and 300 ms, less up to 30 % jitter.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited <= Duration::from_millis(400),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connect_retries_give_up_as_temporary() {
    let dead = dead_addr().await;
    let resolver = ScriptedResolver::new(vec![Ok(vec![dead])]);
    let mut c = config(None);
    c.resolver = Some(resolver.clone());
    c.connect_retry.max_retries = 3;
    let host = host(c);
    let url = url::Url::parse(&format!("http://a.localhost:{}/f", dead.port())).unwrap();
    let o = run(&host, get(&url, "https://app.test")).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary);
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_name_that_does_not_exist_is_temporary_and_keeps_the_network_online() {
    let resolver = ScriptedResolver::new(vec![Err(ResolveErrorKind::NotFound)]);
    let mut c = config(None);
    c.resolver = Some(resolver);
    let host = host(c);
    let o = run(
        &host,
        get(
            &url::Url::parse("http://nowhere.localhost/x").unwrap(),
            "https://app.test",
        ),
    )
    .await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary);
    assert!(o.error().message.contains("dns"), "{}", o.error().message);
    assert!(host.connectivity().is_online());
}

#[tokio::test]
async fn a_reset_before_the_head_is_temporary() {
    let server = TestServer::http(|_| Reply::ok("x").fault(Fault::ResetBeforeHead)).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(o.head.is_none());
}

#[tokio::test]
async fn a_reset_mid_body_is_temporary_after_the_bytes_received() {
    let data = pattern(200_000);
    let server =
        TestServer::http(move |_| Reply::ok(data.clone()).fault(Fault::ResetAt(50_000))).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert_eq!(o.status(), 200);
    assert!(o.body.len() <= 50_000);
    assert_eq!(o.body, pattern(200_000)[..o.body.len()]);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_temporary() {
    let server = TestServer::http(|_| Reply::ok(pattern(1000)).content_length(5000)).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert_eq!(o.body, pattern(1000));
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_is_cut_at_the_length() {
    let server = TestServer::http(|_| Reply::ok(pattern(1000)).content_length(600)).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(1000)[..600]);
}

#[tokio::test]
async fn a_truncated_chunked_body_is_temporary() {
    let server = TestServer::http(|_| {
        Reply::ok(pattern(10_000))
            .chunked()
            .fault(Fault::CloseAt(4000))
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_complete() {
    let server = TestServer::http(|r| {
        if r.path() == "/chunked" {
            Reply::ok(pattern(10_000)).chunked()
        } else {
            Reply::ok(pattern(10_000)).close_delimited()
        }
    })
    .await;
    let host = host(config(None));
    for path in ["/chunked", "/close"] {
        let o = run(&host, get(&server.url(path), &server.origin())).await;
        assert!(o.error.is_none(), "{path}: {:?}", o.error);
        assert_eq!(o.body, pattern(10_000), "{path}");
    }
}

#[tokio::test]
async fn a_malformed_response_is_fatal() {
    let server = TestServer::http(|_| {
        Reply::ok("").fault(Fault::Raw(b"HTTP/1.1 abc Nope\r\n\r\n".to_vec()))
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert!(
        o.error().message.contains("bad response"),
        "{}",
        o.error().message
    );
}

#[tokio::test]
async fn a_5xx_is_a_response_not_an_error() {
    let server = TestServer::http(|_| Reply::new(503, "busy").header("retry-after", "1")).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert!(o.error.is_none());
    assert_eq!(
        o.status(),
        503,
        "the engine turns a non-ok status into bad-status"
    );
}

#[tokio::test(start_paused = true)]
async fn no_response_head_times_out_as_temporary() {
    let server = TestServer::http(|_| Reply::ok("x").fault(Fault::NoResponse)).await;
    let mut c = config(None);
    c.response_head_timeout = Duration::from_secs(7);
    let host = host(c);
    let start = tokio::time::Instant::now();
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(
        o.error().message.contains("no response head"),
        "{}",
        o.error().message
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out_as_temporary_after_its_bytes() {
    let server = TestServer::http(|_| Reply::ok(pattern(10_000)).fault(Fault::StallAt(2500))).await;
    let mut c = config(None);
    c.idle_timeout = Duration::from_secs(3);
    let host = host(c);
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(
        o.error().message.contains("stalled"),
        "{}",
        o.error().message
    );
    assert_eq!(o.body, pattern(10_000)[..2500]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_trickle_within_the_idle_timeout_completes() {
    let server = TestServer::http(|_| {
        Reply::ok(pattern(2000)).fault(Fault::Trickle {
            chunk: 100,
            every: Duration::from_secs(2),
        })
    })
    .await;
    let mut c = config(None);
    c.idle_timeout = Duration::from_secs(3);
    let host = host(c);
    let start = tokio::time::Instant::now();
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(2000));
    assert!(
        start.elapsed() >= Duration::from_secs(38),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_tls_handshake_that_never_completes_hits_the_connect_timeout() {
    // Accepts TCP, then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let ca = TestCa::new();
    let mut c = config(Some(&ca));
    c.connect_timeout = Duration::from_secs(4);
    let host = host(c);
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/x", addr.port())).unwrap();
    let start = tokio::time::Instant::now();
    let o = run(&host, get(&url, "https://app.test")).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(
        o.error().message.contains("took more than"),
        "{}",
        o.error().message
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_upload_times_out() {
    let server = TestServer::http(|r| Reply::ok(r.body.clone())).await;
    let mut c = config(None);
    c.idle_timeout = Duration::from_secs(5);
    let host = host(c);
    let mut req = Request::get(server.url("/up"));
    req.method = "POST".into();
    req.body_length = Some(2000);
    let mut nr = request(req, &server.origin());
    // 1000 bytes, then the store never produces the rest.
    let stream = futures::stream::iter(vec![Ok(bytes::Bytes::from(vec![1u8; 1000]))])
        .chain(futures::stream::pending())
        .boxed();
    nr.body = Some(background_fetch::RequestBodySource::once(2000, stream));
    let o = run(&host, nr).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(
        o.error().message.contains("upload"),
        "{}",
        o.error().message
    );
    assert_eq!(o.uploads.iter().sum::<u64>(), 1000);
}

#[tokio::test]
async fn policy_blocks_come_before_any_connection() {
    let server = TestServer::http(|_| Reply::ok("x")).await;
    let host = host(config(None));
    let cases = [
        ("ftp://127.0.0.1/x", BlockReason::Scheme),
        ("data:text/plain,hi", BlockReason::Scheme),
        ("http://example.com/x", BlockReason::MixedContent),
        ("http://127.0.0.1:6666/x", BlockReason::BadPort),
        ("https://127.0.0.1:587/x", BlockReason::BadPort),
    ];
    for (u, reason) in cases {
        let o = run(&host, get(&url::Url::parse(u).unwrap(), "https://app.test")).await;
        assert_eq!(o.kind(), NetworkErrorKind::Blocked(reason), "{u}");
    }
    assert_eq!(server.count(), 0);
}

use futures::StreamExt;
