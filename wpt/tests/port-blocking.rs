//! `background-fetch/port-blocking.https.window.js` (the post-2023 version): requests to bad
//! ports are blocked (their record fails; `fetch()` resolves). Not a comprehensive test of the
//! bad-port list, only that blocking is enabled.
//! <https://fetch.spec.whatwg.org/#port-blocking>

use background_fetch_wpt::*;

upstream_file! {
    file: "port-blocking.https.window.js",
    subtests: {
        "fetch to default https port should register ok" => default_https_port_registers_ok,
        "fetch to default http port should register ok" => default_http_port_registers_ok,
        "fetch to port 443 should register ok" => port_443_registers_ok,
        "fetch to port 80 should register ok, even over https" => port_80_registers_ok,
        "fetch to non-default non-bad port (8080) should register ok" => port_8080_registers_ok,
        "fetch to bad port (SMTP) should reject" => bad_port_rejects,
    }
}

async fn default_https_port_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "https://example.com", Default::default())
        .await
        .unwrap();
}

async fn default_http_port_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "http://127.0.0.1", Default::default())
        .await
        .unwrap();
}

async fn port_443_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(
            &t.unique_id(),
            "https://example.com:443",
            Default::default(),
        )
        .await
        .unwrap();
}

async fn port_80_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(&t.unique_id(), "https://example.com:80", Default::default())
        .await
        .unwrap();
}

async fn port_8080_registers_ok(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    bg_fetch
        .fetch(
            &t.unique_id(),
            "https://example.com:8080",
            Default::default(),
        )
        .await
        .unwrap();
}

async fn bad_port_rejects(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;
    let promise = async {
        let fetch = bg_fetch
            .fetch(
                &t.unique_id(),
                "https://example.com:587",
                Default::default(),
            )
            .await?;
        let record = fetch
            .r#match("https://example.com:587", Default::default())
            .await?
            .ok_or_else(|| background_fetch::DomError::type_error("match() resolved undefined"))?;
        record.response_ready().await
    };

    promise_rejects_js!(TypeError, promise);
}
