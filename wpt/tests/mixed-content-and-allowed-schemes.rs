//! `background-fetch/mixed-content-and-allowed-schemes.https.window.js` (servo's current
//! copy): mixed content is blocked, and only `https:` and loopback `http:` are allowed.
//! <https://w3c.github.io/webappsec-mixed-content/#should-block-fetch>
//! <https://github.com/WICG/background-fetch/issues/44>

use background_fetch::DomError;
use background_fetch::service::client::{BackgroundFetchManager, Response};
use background_fetch_wpt::*;

upstream_file! {
    file: "mixed-content-and-allowed-schemes.https.window.js",
    subtests: {
        "https: fetch should register ok" => https_registers_ok,
        "loopback IPv4 http: fetch should register ok" => loopback_ipv4_http_registers_ok,
        "loopback IPv6 http: fetch should register ok" => loopback_ipv6_http_registers_ok,
        "localhost http: fetch should register ok" => localhost_http_registers_ok,
        "wss: fetch should reject" => wss_rejects,
        "file: fetch should reject" => file_rejects,
        "data: fetch should reject" => data_rejects,
        "unknown scheme fetch should reject" => unknown_scheme_rejects,
    }
}

async fn https_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "https://example.com", Default::default())
        .await
        .unwrap();
}

async fn loopback_ipv4_http_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "http://127.0.0.1", Default::default())
        .await
        .unwrap();
}

async fn loopback_ipv6_http_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "http://[::1]", Default::default())
        .await
        .unwrap();
}

async fn localhost_http_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "http://localhost", Default::default())
        .await
        .unwrap();
}

/// `testBgFetch(bgFetch, url)`: `fetch()`, then `match(url)`, then `responseReady`, as one
/// promise chain (any rejection rejects the chain; reading `responseReady` of `undefined`
/// throws a TypeError).
async fn test_bg_fetch(
    t: &Test,
    bg_fetch: &BackgroundFetchManager,
    url: &str,
) -> Result<Response, DomError> {
    let fetch = bg_fetch
        .fetch(&t.unique_id(), url, Default::default())
        .await?;
    let record = fetch.r#match(url, Default::default()).await?;
    let record = record.ok_or_else(|| DomError::type_error("match() resolved undefined"))?;
    record.response_ready().await
}

async fn wss_rejects(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    promise_rejects_js!(TypeError, test_bg_fetch(&t, &bg_fetch, "wss:127.0.0.1"));
}

async fn file_rejects(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    promise_rejects_js!(TypeError, test_bg_fetch(&t, &bg_fetch, "file:///"));
}

async fn data_rejects(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    promise_rejects_js!(
        TypeError,
        test_bg_fetch(&t, &bg_fetch, "data:text/plain,foo")
    );
}

async fn unknown_scheme_rejects(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    promise_rejects_js!(TypeError, test_bg_fetch(&t, &bg_fetch, "foobar:bazqux"));
}
