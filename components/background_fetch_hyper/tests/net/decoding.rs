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
        TestServer::http(|_| Reply::ok("opaque bytes").header("content-encoding", "compress"))
            .await;
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

async fn brotli(data: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    async_compression::tokio::bufread::BrotliEncoder::new(data)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

async fn zstd(data: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    async_compression::tokio::bufread::ZstdEncoder::new(data)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

async fn serve_coded(body: Vec<u8>, codings: &'static [&'static str]) -> TestServer {
    TestServer::http(move |_| {
        let mut r = Reply::ok(body.clone());
        for c in codings {
            r = r.header("content-encoding", c);
        }
        r
    })
    .await
}

#[tokio::test]
async fn br_is_decoded() {
    let data = pattern(300_000);
    let server = serve_coded(brotli(&data).await, &["br"]).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.body == data, "decoded");
    let accept = server.requests()[0]
        .header("accept-encoding")
        .unwrap()
        .to_owned();
    assert!(accept.contains("br") && accept.contains("zstd"), "{accept}");
}

#[tokio::test]
async fn zstd_is_decoded() {
    let data = pattern(300_000);
    let server = serve_coded(zstd(&data).await, &["zstd"]).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.body == data, "decoded");
}

#[tokio::test]
async fn chained_codings_are_decoded_in_reverse_order() {
    // `Content-Encoding: gzip, br`: gzip was applied first, so br is undone first.
    let data = pattern(200_000);
    let server = serve_coded(brotli(&gzip(&data)).await, &["gzip, br"]).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.body == data, "decoded");
    let server = serve_coded(gzip(&gzip(&data)), &["gzip, gzip"]).await;
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.body == data, "decoded twice");
}

#[tokio::test]
async fn every_content_encoding_line_counts() {
    // The same list split over two header lines (RFC 9110 §5.3).
    let data = pattern(200_000);
    let server = serve_coded(brotli(&gzip(&data)).await, &["gzip", "br"]).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.body == data, "decoded");
}

#[tokio::test]
async fn a_206_whose_second_content_encoding_line_is_gzip_is_refused() {
    let server = TestServer::http(|_| {
        Reply::new(206, gzip(&pattern(100)))
            .header("content-encoding", "identity")
            .header("content-encoding", "gzip")
            .header("content-range", "bytes 10-99/100")
    })
    .await;
    let host = host(config(None));
    let mut r = get(&server.url("/z"), &server.origin());
    r.range_start = Some(10);
    let o = run(&host, r).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert!(o.head.is_none());
}

#[tokio::test]
async fn bytes_after_the_end_of_a_gzip_stream_are_ignored() {
    // Some servers pad or append junk after the gzip trailer; browsers ignore it, and every
    // byte of the data has arrived by then.
    let data = pattern(100_000);
    let mut z = gzip(&data);
    z.extend_from_slice(b"\r\n\0\0junk after the trailer");
    let server =
        TestServer::http(move |_| Reply::ok(z.clone()).header("content-encoding", "gzip")).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.body == data);
}

#[tokio::test]
async fn a_coded_body_whose_connection_ends_cleanly_mid_stream_is_temporary() {
    // A close-delimited gzip body cut by a clean FIN: the transfer broke off, the data is not
    // corrupt; the engine retries.
    let z = gzip(&pattern(400_000));
    let half = z.len() / 2;
    let server = TestServer::http(move |_| {
        Reply::ok(z.clone())
            .header("content-encoding", "gzip")
            .close_delimited()
            .fault(Fault::CloseAt(half))
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/z"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary, "{:?}", o.error);
}
