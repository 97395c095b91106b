//! Plain fetching: status, headers, URL list, streaming, uploads, pooling, backpressure,
//! termination, HTTP/2 and TLS.

use crate::support::*;
use background_fetch::{NetworkErrorKind, NetworkEvent, NetworkHost, Request, ResponseType};
use futures::StreamExt;
use std::time::Duration;

#[tokio::test]
async fn get_same_origin_is_basic_and_streams_every_byte() {
    let data = pattern(300_000);
    let res = Resource::new(data.clone())
        .header("set-cookie", "a=b")
        .header("x-other", "1");
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let url = server.url("/file?x=1#frag");
    let o = run(&host, get(&url, &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.status(), 200);
    assert_eq!(o.head().status_text, "OK");
    assert_eq!(o.head().response_type, ResponseType::Basic);
    assert_eq!(o.head().url_list, vec![url]);
    assert_eq!(o.head().headers.get_str("x-other").as_deref(), Some("1"));
    assert!(
        !o.head().headers.contains("set-cookie"),
        "forbidden response header kept"
    );
    assert_eq!(o.body, data);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.target, "/file?x=1", "the fragment is not sent");
    assert_eq!(r.header("accept"), Some("*/*"));
    assert_eq!(r.header("accept-encoding"), Some("gzip, deflate, br, zstd"));
    assert_eq!(r.header("range"), None);
    assert_eq!(r.header("origin"), None, "no Origin on a same-origin GET");
    assert!(
        r.header("user-agent")
            .unwrap()
            .starts_with("background-fetch-hyper/")
    );
}

#[tokio::test]
async fn non_ok_status_and_reason_are_reported_as_is() {
    let server = TestServer::http(|_| {
        let mut r = Reply::new(404, "not here");
        r.reason = "Nope".into();
        r
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/missing"), &server.origin())).await;
    assert!(o.error.is_none());
    assert_eq!(o.status(), 404);
    assert_eq!(o.head().status_text, "Nope");
    assert_eq!(o.body, b"not here");
}

#[tokio::test]
async fn author_headers_referrer_and_cache_mode_are_sent() {
    let server = TestServer::http(|_| Reply::ok("x")).await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/a"));
    req.headers.append("x-author", "yes");
    req.headers.append("accept", "text/plain");
    req.referrer = Some(server.url("/page.html?q=1#f"));
    req.cache = background_fetch::CacheMode::NoStore;
    let o = run(&host, request(req, &server.origin())).await;
    assert!(o.error.is_none());
    let r = &server.requests()[0];
    assert_eq!(r.header("x-author"), Some("yes"));
    assert_eq!(r.header("accept"), Some("text/plain"));
    assert_eq!(
        r.header("referer"),
        Some(server.url("/page.html?q=1").as_str())
    );
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
}

#[tokio::test]
async fn only_if_cached_is_fatal() {
    let server = TestServer::http(|_| Reply::ok("x")).await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/a"));
    req.mode = background_fetch::RequestMode::SameOrigin;
    req.cache = background_fetch::CacheMode::OnlyIfCached;
    let o = run(&host, request(req, &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal);
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn upload_streams_the_body_with_progress_per_chunk() {
    let server =
        TestServer::http(|r| Reply::ok(r.body.clone()).header("content-type", "text/plain")).await;
    let host = host(config(None));
    let chunks: Vec<bytes::Bytes> = (0..5).map(|i| pattern(10_000 + i).slice(i..)).collect();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    let mut req = Request::get(server.url("/upload"));
    req.method = "POST".into();
    req.body_length = Some(total as u64);
    req.headers.append("content-type", "text/plain");
    let mut nr = request(req, &server.origin());
    nr.body = Some(body_source(chunks));
    let o = run(&host, nr).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        o.uploads.iter().sum::<u64>(),
        total as u64,
        "every byte reported: {:?}",
        o.uploads
    );
    assert!(!o.uploads.is_empty());
    assert_eq!(o.body, expected, "the server echoed what was sent");
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-length"), Some(total.to_string().as_str()));
    assert_eq!(
        r.header("origin"),
        Some(server.origin().as_str()),
        "Origin on a POST"
    );
}

#[tokio::test]
async fn a_store_error_in_the_request_body_is_fatal() {
    let server = TestServer::http(|r| Reply::ok(r.body.clone())).await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/upload"));
    req.method = "PUT".into();
    req.body_length = Some(10);
    let mut nr = request(req, &server.origin());
    nr.body = Some(background_fetch::RequestBodySource::once(
        10,
        futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"12345")),
            Err(background_fetch::store::StoreError::gone("disk on fire")),
        ])
        .boxed(),
    ));
    let o = run(&host, nr).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert!(
        o.error().message.contains("disk on fire"),
        "{}",
        o.error().message
    );
}

#[tokio::test]
async fn connections_are_pooled_across_fetches() {
    let res = Resource::new(pattern(10_000));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    for i in 0..3 {
        let mut nr = get(&server.url("/f"), &server.origin());
        nr.record = i;
        let o = run(&host, nr).await;
        assert_eq!(o.body.len(), 10_000);
    }
    let conns: Vec<usize> = server.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, vec![0, 0, 0], "one connection for every record");
}

#[tokio::test]
async fn backpressure_the_socket_is_not_read_while_the_engine_is_busy() {
    // 64 MiB that the engine does not read yet: the host must stop reading the socket once
    // the channel and the socket buffers are full, so the server cannot get far ahead.
    const TOTAL: usize = 64 << 20;
    let data = bytes::Bytes::from(vec![7u8; TOTAL]);
    let server = TestServer::http(move |_| {
        Reply::ok(data.clone()).fault(Fault::Trickle {
            chunk: 256 * 1024,
            every: Duration::ZERO,
        })
    })
    .await;
    let host = host(config(None));
    let mut events = host.fetch(get(&server.url("/big"), &server.origin()));
    let Some(NetworkEvent::Response(_)) = events.next().await else {
        panic!("no head")
    };
    // Give the transfer every chance to run ahead while nobody reads the events.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ahead = server.written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        ahead < 24 << 20,
        "the server wrote {ahead} bytes ahead of the engine"
    );
    let mut total = 0;
    while let Some(e) = events.next().await {
        match e {
            NetworkEvent::Data(b) => total += b.len(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(total, TOTAL);
}

#[tokio::test]
async fn dropping_the_stream_terminates_the_connection() {
    let data = bytes::Bytes::from(vec![1u8; 8 << 20]);
    let server = TestServer::http(move |_| Reply::ok(data.clone())).await;
    let host = host(config(None));
    let mut events = host.fetch(get(&server.url("/big"), &server.origin()));
    assert!(matches!(
        events.next().await,
        Some(NetworkEvent::Response(_))
    ));
    assert!(matches!(events.next().await, Some(NetworkEvent::Data(_))));
    drop(events);
    // The next fetch cannot reuse the aborted connection: it opens a new one.
    let o = run(&host, get(&server.url("/big"), &server.origin())).await;
    assert_eq!(o.body.len(), 8 << 20);
    let conns: Vec<usize> = server.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, vec![0, 1]);
}

#[tokio::test]
async fn https_with_an_embedder_root_and_alpn_http1() {
    let ca = TestCa::new();
    let res = Resource::new(pattern(100_000));
    let server = TestServer::https(&ca, move |r| res.reply(r)).await;
    let host = host(config(Some(&ca)));
    let url = server.url_as("localhost", "/s");
    let o = run(
        &host,
        get(&url, &format!("https://localhost:{}", server.port())),
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(100_000));
    // By IP address too (the certificate has an IP SAN).
    let o = run(&host, get(&server.url("/s"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
}

#[tokio::test]
async fn an_untrusted_certificate_is_fatal() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let server = TestServer::https(&ca, |_| Reply::ok("x")).await;
    let host = host(config(Some(&other)));
    let o = run(&host, get(&server.url("/s"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert!(
        o.error().message.contains("certificate"),
        "{}",
        o.error().message
    );
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_shared() {
    let ca = TestCa::new();
    let server = H2Server::start(&ca, pattern(200_000)).await;
    let host = host(config(Some(&ca)));
    let origin = format!("https://localhost:{}", server.addr.port());
    let first = run(&host, get(&server.url("/first"), &origin)).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.head().status_text, "", "HTTP/2 has no reason phrase");
    // Two records at once share the HTTP/2 connection the first one opened.
    let a = host.fetch(get(&server.url("/a"), &origin));
    let b = host.fetch(get(&server.url("/b"), &origin));
    let (a, b) = futures::join!(collect(a), collect(b));
    assert!(
        a.error.is_none() && b.error.is_none(),
        "{:?} {:?}",
        a.error,
        b.error
    );
    assert_eq!(a.body, pattern(200_000));
    assert_eq!(b.body, pattern(200_000));
    assert_eq!(
        *server.versions.lock().unwrap(),
        vec![http::Version::HTTP_2; 3]
    );
    assert_eq!(server.conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http2_can_be_turned_off() {
    let ca = TestCa::new();
    let server = H2Server::start(&ca, pattern(1000)).await;
    let mut c = config(Some(&ca));
    c.http2 = false;
    let host = host(c);
    let origin = format!("https://localhost:{}", server.addr.port());
    let o = run(&host, get(&server.url("/a"), &origin)).await;
    assert_eq!(o.body.len(), 1000);
    assert_eq!(
        *server.versions.lock().unwrap(),
        vec![http::Version::HTTP_11]
    );
}

#[test]
fn an_internal_runtime_serves_streams_polled_from_another_executor() {
    // The engine polls from whatever executor the embedder uses: here a plain futures
    // executor, with the host on its own runtime.
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(async {
        let res = Resource::new(pattern(500_000));
        TestServer::http(move |r| res.reply(r)).await
    });
    let host = background_fetch_hyper::HyperNetwork::new(config(None)).unwrap();
    let o = futures::executor::block_on(collect(
        host.fetch(get(&server.url("/x"), &server.origin())),
    ));
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(500_000));
    drop(host);
    drop(server);
}

#[tokio::test]
async fn integrity_is_checked_at_the_end_of_the_body_and_requests_with_it_are_not_resumed() {
    use base64::Engine as _;
    let data = pattern(50_000);
    let digest = ring::digest::digest(&ring::digest::SHA384, &data);
    let good = format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    );
    let res = Resource::new(data.clone()).gzip();
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/f"));
    req.integrity = good.clone();
    let o = run(&host, request(req.clone(), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, data, "checked over the decoded body");
    req.integrity = "sha256-AAAA".into();
    let o = run(&host, request(req.clone(), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal);
    assert!(
        o.error().message.contains("integrity"),
        "{}",
        o.error().message
    );
    // A resumed attempt fetches the whole body again.
    req.integrity = good;
    let mut nr = request(req, &server.origin());
    nr.range_start = Some(1000);
    let o = run(&host, nr).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.status(), 200);
    assert_eq!(server.requests()[2].header("range"), None);
}

#[tokio::test]
async fn a_post_without_a_body_says_content_length_0() {
    // Some servers answer 411 Length Required otherwise; browsers send it.
    let server = TestServer::http(|_| Reply::ok("x")).await;
    let host = host(config(None));
    for method in ["POST", "PUT"] {
        let mut req = Request::get(server.url("/x"));
        req.method = method.into();
        let o = run(&host, request(req, &server.origin())).await;
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    for r in server.requests() {
        assert_eq!(r.header("content-length"), Some("0"), "{}", r.method);
    }
}

struct Hook;
impl background_fetch_hyper::Credentials for Hook {
    fn request_headers(&self, _url: &url::Url) -> Vec<(String, String)> {
        vec![
            ("authorization".into(), "Bearer from-the-hook".into()),
            ("cookie".into(), "a=1".into()),
        ]
    }
    fn response_headers(&self, _url: &url::Url, _headers: &http::HeaderMap) {}
}

#[tokio::test]
async fn the_credentials_hook_does_not_add_a_second_authorization() {
    // Fetch, HTTP-network-or-cache fetch: the user agent adds `Authorization` only when the
    // request's header list does not contain one.
    let server = TestServer::http(|_| Reply::ok("x")).await;
    let mut c = config(None);
    c.credentials = Some(std::sync::Arc::new(Hook));
    let host = host(c);
    let mut req = Request::get(server.url("/x"));
    req.headers.append("authorization", "Basic from-the-author");
    let o = run(&host, request(req, &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    let r = &server.requests()[0];
    let auth: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, ["Basic from-the-author"]);
    assert_eq!(r.header("cookie"), Some("a=1"));
}

#[tokio::test]
async fn a_421_is_retried_on_a_new_connection() {
    // 421 Misdirected Request (RFC 9110 §15.5.20): the client may retry on another connection,
    // as browsers do once.
    let server = TestServer::http(|r| {
        if r.conn == 0 {
            Reply::new(421, "")
        } else {
            Reply::ok("right server")
        }
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/x"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.status(), 200);
    assert_eq!(o.body, b"right server");
}

#[tokio::test]
async fn a_tls_alert_from_the_server_is_temporary() {
    // A server that aborts the handshake with a fatal internal_error alert (overloaded, being
    // restarted): nothing says the certificate or the configuration is wrong.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            // TLS record: alert (21), TLS 1.2 (3, 3), length 2, fatal (2) internal_error (80).
            let _ = s.write_all(&[21, 3, 3, 0, 2, 2, 80]).await;
            let _ = s.shutdown().await;
        }
    });
    let ca = TestCa::new();
    let host = host(config(Some(&ca)));
    let url = url::Url::parse(&format!("https://localhost:{}/x", addr.port())).unwrap();
    let o = run(&host, get(&url, "https://app.test")).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
}

#[tokio::test]
async fn connection_pools_are_partitioned_by_the_caller_s_site() {
    // A tracker embedded on two sites must not link their background fetches through one
    // connection (or one TLS session): Chromium partitions by network anonymization key.
    let res = Resource::new(pattern(1000)).header("access-control-allow-origin", "*");
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    for origin in ["https://one.test", "https://two.test", "https://one.test"] {
        let o = run(&host, get(&server.url("/f"), origin)).await;
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    let conns: Vec<usize> = server.requests().iter().map(|r| r.conn).collect();
    assert_eq!(conns, vec![0, 1, 0], "one pool per site");
}

#[tokio::test]
async fn an_http2_stream_refused_with_http_1_1_required_is_retried_over_http_1_1() {
    // RFC 9113 §8.7 / RFC 7540 HTTP_1_1_REQUIRED (0xd): retry the request over HTTP/1.1, as
    // browsers do.
    let ca = TestCa::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"h2", b"http/1.1"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        respond.send_reset(h2::Reason::HTTP_1_1_REQUIRED);
                    }
                } else {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(response(200, &[], "over http/1.1"))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    let host = host(config(Some(&ca)));
    let url = url::Url::parse(&format!("https://localhost:{}/x", addr.port())).unwrap();
    let o = run(&host, get(&url, &url.origin().ascii_serialization())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"over http/1.1");
}

#[tokio::test]
async fn tls_sessions_are_resumed_only_within_the_caller_s_site() {
    // A TLS session ticket is as good a tracker as a connection: each partition keeps its own.
    let ca = TestCa::new();
    let res = Resource::new(pattern(1000)).header("access-control-allow-origin", "*");
    let server = TestServer::https(&ca, move |r| res.reply(r)).await;
    let mut c = config(Some(&ca));
    c.pool_max_idle_per_host = 0; // a new connection (and handshake) for every fetch
    let host = host(c);
    for origin in ["https://one.test", "https://one.test", "https://two.test"] {
        let o = run(&host, get(&server.url("/f"), origin)).await;
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    assert_eq!(
        *server.resumed.lock().unwrap(),
        vec![false, true, false],
        "one.test resumes its own session; two.test does not get it"
    );
}
