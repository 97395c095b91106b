//! Resumed requests: the headers sent, and every answer a server can give, byte for byte.

use crate::support::*;
use background_fetch::{NetworkErrorKind, Validators};

fn resumed(
    server: &TestServer,
    path: &str,
    start: u64,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> background_fetch::NetworkRequest {
    let mut r = get(&server.url(path), &server.origin());
    r.range_start = Some(start);
    r.validators = Validators {
        etag: etag.map(Into::into),
        last_modified: last_modified.map(Into::into),
        date: None,
    };
    r
}

const LM: &str = "Tue, 15 Nov 1994 12:45:26 GMT";

#[tokio::test]
async fn a_resumed_request_asks_for_the_rest_with_if_range_and_identity() {
    let data = pattern(100_000);
    let res = Resource::new(data.clone());
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let o = run(
        &host,
        resumed(&server, "/f", 40_000, Some("\"v1\""), Some(LM)),
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.status(), 206);
    assert_eq!(
        o.head().headers.get_str("content-range").as_deref(),
        Some("bytes 40000-99999/100000")
    );
    assert_eq!(o.body, data[40_000..]);
    let r = &server.requests()[0];
    assert_eq!(r.header("range"), Some("bytes=40000-"));
    assert_eq!(
        r.header("if-range"),
        Some("\"v1\""),
        "a strong ETag is preferred"
    );
    assert_eq!(r.header("accept-encoding"), Some("identity"));
}

#[tokio::test]
async fn if_range_never_carries_a_weak_etag_nor_a_date_beside_an_etag() {
    // RFC 9110 §13.1.5: a client MUST NOT generate an If-Range with a weak entity tag, nor with
    // a date unless it has no entity tag for the representation.
    let res = Resource::new(pattern(1000)).etag(Some("W/\"weak\""));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let o = run(
        &host,
        resumed(&server, "/f", 10, Some("W/\"weak\""), Some(LM)),
    )
    .await;
    assert_eq!(o.status(), 206);
    assert_eq!(o.body, pattern(1000)[10..]);
    let o = run(&host, resumed(&server, "/f", 10, None, None)).await;
    assert_eq!(o.status(), 206);
    let reqs = server.requests();
    assert_eq!(reqs[0].header("if-range"), None);
    assert_eq!(reqs[0].header("range"), Some("bytes=10-"));
    assert_eq!(reqs[1].header("if-range"), None);
    assert_eq!(reqs[1].header("range"), Some("bytes=10-"));
}

#[tokio::test]
async fn a_changed_etag_gets_the_whole_new_resource_as_a_200() {
    let new = pattern(5000).slice(1..);
    let res = Resource::new(new.clone()).etag(Some("\"v2\""));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let o = run(&host, resumed(&server, "/f", 2000, Some("\"v1\""), None)).await;
    assert!(o.error.is_none());
    assert_eq!(o.status(), 200, "the engine restarts the record on a 200");
    assert_eq!(o.body, new);
    assert_eq!(o.head().headers.get_str("etag").as_deref(), Some("\"v2\""));
}

#[tokio::test]
async fn a_server_without_range_support_answers_200_in_full() {
    let data = pattern(3000);
    let res = Resource::new(data.clone()).no_ranges();
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let o = run(&host, resumed(&server, "/f", 1000, Some("\"v1\""), None)).await;
    assert_eq!(o.status(), 200);
    assert_eq!(o.body, data);
}

#[tokio::test]
async fn a_416_is_reported_as_is() {
    let res = Resource::new(pattern(3000));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let o = run(&host, resumed(&server, "/f", 3000, Some("\"v1\""), None)).await;
    assert!(o.error.is_none());
    assert_eq!(o.status(), 416);
    assert_eq!(
        o.head().headers.get_str("content-range").as_deref(),
        Some("bytes */3000")
    );
}

#[tokio::test]
async fn a_content_coded_206_is_fatal_before_any_byte() {
    let server = TestServer::http(|_| {
        Reply::new(206, gzip(&pattern(100)))
            .header("content-encoding", "gzip")
            .header("content-range", "bytes 10-99/100")
    })
    .await;
    let host = host(config(None));
    let o = run(&host, resumed(&server, "/f", 10, None, None)).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal);
    assert!(o.head.is_none(), "no head, no bytes");
    assert!(o.body.is_empty());
}

#[tokio::test]
async fn reset_at_byte_n_then_resume_gives_the_bytes_byte_for_byte() {
    let data = pattern(1_000_000);
    let res = Resource::new(data.clone());
    let server = TestServer::http(move |r| {
        let reply = res.reply(r);
        if r.index == 0 {
            reply.fault(Fault::ResetAt(333_333))
        } else {
            reply
        }
    })
    .await;
    let host = host(config(None));
    let first = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(
        first.kind(),
        NetworkErrorKind::Temporary,
        "{:?}",
        first.error
    );
    assert_eq!(first.status(), 200);
    let n = first.body.len();
    assert!(n <= 333_333, "{n}");
    assert_eq!(first.body, data[..n]);
    let etag = first.head().headers.get_str("etag");
    let second = run(
        &host,
        resumed(&server, "/f", n as u64, etag.as_deref(), None),
    )
    .await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(second.status(), 206);
    let mut all = first.body.clone();
    all.extend_from_slice(&second.body);
    assert_eq!(all, data);
}

#[tokio::test]
async fn resume_over_tls_byte_for_byte() {
    let ca = TestCa::new();
    let data = pattern(400_000);
    let res = Resource::new(data.clone());
    let server = TestServer::https(&ca, move |r| {
        let reply = res.reply(r);
        if r.index == 0 {
            reply.fault(Fault::CloseAt(123_457))
        } else {
            reply
        }
    })
    .await;
    let host = host(config(Some(&ca)));
    let first = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(
        first.kind(),
        NetworkErrorKind::Temporary,
        "{:?}",
        first.error
    );
    let n = first.body.len();
    assert_eq!(first.body, data[..n]);
    let mut r = get(&server.url("/f"), &server.origin());
    r.range_start = Some(n as u64);
    r.validators.etag = Some("\"v1\"".into());
    let second = run(&host, r).await;
    assert_eq!(second.status(), 206);
    assert_eq!([first.body, second.body].concat(), data);
}

#[tokio::test]
async fn an_author_range_is_never_replaced_by_a_resumption_range() {
    let res = Resource::new(pattern(1000));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let mut r = resumed(&server, "/f", 5, Some("\"v1\""), None);
    r.request.headers.append("range", "bytes=0-");
    let o = run(&host, r).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(server.requests()[0].header("range"), Some("bytes=0-"));
    assert_eq!(o.body, pattern(1000));
}
