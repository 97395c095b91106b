//! Content codings on the first request; identity on resumed ones.

use crate::support::*;
use background_fetch::NetworkErrorKind;
use std::io::Write;

#[tokio::test]
async fn gzip_is_decoded_in_bounded_chunks() {
    let data = bytes::Bytes::from(vec![42u8; 4 << 20]);
    let res = Resource::new(data.clone()).gzip();
    let server = TestServer::http(move |r| res.reply(r)).await;
    let mut c = config(None);
    c.max_decoded_chunk = 32 * 1024;
    let host = host(c);
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        o.head().headers.get_str("content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(o.body.len(), data.len());
    assert!(o.body == data);
    assert!(o.chunks >= (4 << 20) / (32 * 1024), "{} chunks", o.chunks);
}

#[tokio::test]
async fn deflate_is_decoded() {
    let data = pattern(100_000);
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&data).unwrap();
    let z = e.finish().unwrap();
    let server =
        TestServer::http(move |_| Reply::ok(z.clone()).header("content-encoding", "deflate")).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, data);
}

#[tokio::test]
async fn a_corrupt_gzip_body_is_fatal() {
    let mut z = gzip(&pattern(100_000));
    let n = z.len();
    z[n / 2] ^= 0x55;
    z[n - 5] ^= 0x55;
    let server =
        TestServer::http(move |_| Reply::ok(z.clone()).header("content-encoding", "gzip")).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
}

#[tokio::test]
async fn an_unknown_coding_passes_through() {
    let server =
        TestServer::http(|_| Reply::ok("opaque bytes").header("content-encoding", "br")).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none());
    assert_eq!(o.body, b"opaque bytes");
}

#[tokio::test]
async fn gzip_first_then_an_identity_resume_lines_up_byte_for_byte() {
    // The first response is gzip and breaks off; the engine stored decoded bytes, so the
    // resumed request asks for identity from the decoded length.
    let data = pattern(2_000_000);
    let res = Resource::new(data.clone()).gzip();
    let server = TestServer::http(move |r| {
        let reply = res.reply(r);
        if r.index == 0 {
            let n = reply.body.len() / 2;
            reply.fault(Fault::ResetAt(n))
        } else {
            reply
        }
    })
    .await;
    let host = host(config(None));
    let first = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert_eq!(
        first.kind(),
        NetworkErrorKind::Temporary,
        "{:?}",
        first.error
    );
    let n = first.body.len();
    assert!(n > 0 && n < data.len());
    assert_eq!(first.body, data[..n]);
    let mut r = get(&server.url("/z"), &server.origin());
    r.range_start = Some(n as u64);
    r.validators.etag = first.head().headers.get_str("etag");
    let second = run(&host, r).await;
    assert_eq!(second.status(), 206);
    assert_eq!(
        server.requests()[1].header("accept-encoding"),
        Some("identity")
    );
    assert_eq!([first.body, second.body].concat(), data);
}
