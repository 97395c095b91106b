//! Limits of a response: its header list, and how slowly its body may arrive.

use crate::support::*;
use background_fetch::NetworkErrorKind;
use bytes::Bytes;
use std::time::Duration;

#[tokio::test]
async fn a_response_with_150_headers_over_http1_is_accepted() {
    let server = TestServer::http(|_| {
        let mut r = Reply::ok("fine");
        for i in 0..150 {
            r = r.header(&format!("x-h{i}"), "v");
        }
        r
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/x"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"fine");
}

#[tokio::test]
async fn a_32_kib_header_list_over_http2_is_accepted() {
    let ca = TestCa::new();
    let big = "v".repeat(32 * 1024);
    let server = FnServer::start(&ca, move |_| response(200, &[("x-big", &big)], "fine")).await;
    let host = host(config(Some(&ca)));
    let url = server.url("/x");
    let o = run(&host, get(&url, &url.origin().ascii_serialization())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"fine");
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_a_final_error_that_says_so() {
    // Browsers allow about 256 KiB of response headers; past that, retrying cannot help.
    let ca = TestCa::new();
    let big = "v".repeat(300 * 1024);
    let server = FnServer::start(&ca, move |_| response(200, &[("x-big", &big)], "fine")).await;
    let host = host(config(Some(&ca)));
    let url = server.url("/x");
    let o = run(&host, get(&url, &url.origin().ascii_serialization())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert!(
        o.error().message.contains("header"),
        "{}",
        o.error().message
    );
}

#[tokio::test]
async fn a_head_over_the_limit_over_http1_is_a_final_error_that_says_so() {
    // Over HTTP/1.1 the head is bounded by hyper's read buffer (about 400 KiB) and by 1,024
    // fields (src/pool.rs): past either, the answer is a final error naming the headers, not a
    // temporary one retried 20 times.
    for (what, reply) in [
        (
            "a 1 MiB field",
            Reply::ok("fine").header("x-big", &"v".repeat(1 << 20)),
        ),
        ("2,000 fields", {
            let mut r = Reply::ok("fine");
            for i in 0..2000 {
                r = r.header(&format!("x-h{i}"), "v");
            }
            r
        }),
    ] {
        let server = TestServer::http(move |_| reply.clone()).await;
        let host = host(config(None));
        let o = run(&host, get(&server.url("/x"), &server.origin())).await;
        assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{what}: {:?}", o.error);
        assert!(
            o.error().message.contains("header"),
            "{what}: {}",
            o.error().message
        );
    }
}

/// An HTTP/2 server (the h2 crate, to control frames) that answers every request with a
/// head, `prefix`, and then an empty DATA frame every `every` for ever.
async fn empty_frames_server(
    ca: &TestCa,
    prefix: &'static [u8],
    every: Duration,
) -> std::net::SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"h2"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let head = http::Response::builder().status(200).body(()).unwrap();
                        let mut send = respond.send_response(head, false).unwrap();
                        send.send_data(Bytes::from_static(prefix), false).unwrap();
                        loop {
                            tokio::time::sleep(every).await;
                            if send.send_data(Bytes::new(), false).is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
    });
    addr
}

// AD-HOC: real time (a fraction of a second): on paused time this HTTP/2 exchange over TLS
//         did not progress past the request.
#[tokio::test]
async fn empty_http2_data_frames_do_not_keep_a_stalled_body_alive() {
    let ca = TestCa::new();
    let addr = empty_frames_server(&ca, b"0123456789", Duration::from_millis(50)).await;
    let mut c = config(Some(&ca));
    c.idle_timeout = Duration::from_secs(1);
    let host = host(c);
    let url = url::Url::parse(&format!("https://localhost:{}/x", addr.port())).unwrap();
    let o = tokio::time::timeout(
        Duration::from_secs(30),
        run(&host, get(&url, &url.origin().ascii_serialization())),
    )
    .await
    .expect("the stall is noticed");
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(b"0123456789".starts_with(&o.body), "{:?}", o.body);
    assert!(
        o.error().message.contains("stalled"),
        "{}",
        o.error().message
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_minimum_rate_is_given_up() {
    // One byte every 5 s never trips a 10 s idle timeout; a minimum rate of 100 bytes per 30 s
    // gives it up (and the engine resumes it, perhaps over a better path).
    let server = TestServer::http(|_| {
        Reply::ok(pattern(1000)).fault(Fault::Trickle {
            chunk: 1,
            every: Duration::from_secs(5),
        })
    })
    .await;
    let mut c = config(None);
    c.idle_timeout = Duration::from_secs(10);
    c.min_rate = Some(background_fetch_hyper::MinRate {
        bytes: 100,
        window: Duration::from_secs(30),
    });
    let host = host(c);
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
    assert!(
        o.error().message.contains("minimum rate"),
        "{}",
        o.error().message
    );
    assert!(!o.body.is_empty() && o.body.len() < 100);
}
