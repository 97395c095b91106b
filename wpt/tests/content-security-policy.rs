//! `background-fetch/content-security-policy.https.window.js` (the post-2023 version): a
//! request the page's CSP blocks fails its record, not `fetch()`.
//!
//! Upstream the file adds `<meta http-equiv="Content-Security-Policy" content="connect-src
//! 'none'">` to the page when it loads; here the page is created with that policy in its policy
//! container, which `fetch()` captures and the policy host (`SimpleCsp`) enforces per record.

use background_fetch_wpt::*;

upstream_file! {
    file: "content-security-policy.https.window.js",
    page: PageSetup { csp: &["connect-src 'none'"] },
    subtests: {
        "fetch blocked by CSP should reject" => fetch_blocked_by_csp,
    }
}

async fn fetch_blocked_by_csp(t: Test) {
    let bg_fetch = t.background_fetch_test("sw.js").await;

    let fetch = bg_fetch
        .fetch(&t.unique_id(), "/", Default::default())
        .await
        .unwrap();

    let record = fetch
        .r#match("/", Default::default())
        .await
        .unwrap()
        .unwrap();
    promise_rejects_js!(TypeError, record.response_ready());
}
