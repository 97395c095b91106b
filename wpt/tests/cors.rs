//! `background-fetch/cors.https.window.js` (Chromium's copy only), with `sw-cors.js`: Background
//! Fetch enforces the standard CORS rules (preflights, exposed headers, response types and
//! credentials mode). Here the rules are the network host's (`background_fetch_wpt::cors`).

use background_fetch::{CredentialsMode, RequestInit};
use background_fetch_wpt::*;

upstream_file! {
    file: "cors.https.window.js",
    subtests: {
        "Cross-origin response type is cors and non-CORS-exposed headers are filtered" => response_type_is_cors_and_headers_are_filtered,
        "Cross-origin Background Fetch fails without CORS headers" => fails_without_cors_headers,
        "Cross-origin Background Fetch with custom headers fails without preflight approval" => custom_headers_fail_without_preflight_approval,
        "Cross-origin Background Fetch with credentials mode include fails against wildcard Origin" => credentials_include_fails_against_wildcard,
        "Cross-origin Background Fetch with credentials mode omit succeeds against wildcard Origin" => credentials_omit_succeeds_against_wildcard,
    }
}

fn k_cors_resource() -> String {
    format!(
        "{}/background-fetch/resources/cors-resource.txt",
        get_host_info().https_remote_origin
    )
}

fn k_no_cors_resource() -> String {
    format!(
        "{}/background-fetch/resources/feature-name.txt",
        get_host_info().https_remote_origin
    )
}

const SW_SCRIPT: &str = "sw-cors.js";

async fn response_type_is_cors_and_headers_are_filtered(t: Test) {
    let bg_fetch = t.background_fetch_test(SW_SCRIPT).await;

    bg_fetch
        .fetch(&t.unique_id(), k_cors_resource(), Default::default())
        .await
        .unwrap();
    let event = t.get_message_from_service_worker().await.event();

    assert_equals!(event.r#type, "backgroundfetchsuccess");
    assert_equals!(event.results.len(), 1);
    let result = event.results[0].clone().unwrap();
    assert_equals!(result.r#type.as_deref(), Some("cors"));
    assert_equals!(result.secret_header, None);
}

async fn fails_without_cors_headers(t: Test) {
    let bg_fetch = t.background_fetch_test(SW_SCRIPT).await;

    bg_fetch
        .fetch(&t.unique_id(), k_no_cors_resource(), Default::default())
        .await
        .unwrap();
    let event = t.get_message_from_service_worker().await.event();

    assert_equals!(event.r#type, "backgroundfetchfail");
}

async fn custom_headers_fail_without_preflight_approval(t: Test) {
    let bg_fetch = t.background_fetch_test(SW_SCRIPT).await;

    let request = t.new_request(
        k_cors_resource(),
        RequestInit {
            headers: Some(vec![("X-Custom-Header".into(), "SecretValue".into())]),
            ..Default::default()
        },
    );
    bg_fetch
        .fetch(&t.unique_id(), request, Default::default())
        .await
        .unwrap();
    let event = t.get_message_from_service_worker().await.event();

    assert_equals!(event.r#type, "backgroundfetchfail");
}

async fn credentials_include_fails_against_wildcard(t: Test) {
    let bg_fetch = t.background_fetch_test(SW_SCRIPT).await;

    let request = t.new_request(
        k_cors_resource(),
        RequestInit {
            credentials: Some(CredentialsMode::Include),
            ..Default::default()
        },
    );
    bg_fetch
        .fetch(&t.unique_id(), request, Default::default())
        .await
        .unwrap();
    let event = t.get_message_from_service_worker().await.event();

    assert_equals!(event.r#type, "backgroundfetchfail");
}

async fn credentials_omit_succeeds_against_wildcard(t: Test) {
    let bg_fetch = t.background_fetch_test(SW_SCRIPT).await;

    let request = t.new_request(
        k_cors_resource(),
        RequestInit {
            credentials: Some(CredentialsMode::Omit),
            ..Default::default()
        },
    );
    bg_fetch
        .fetch(&t.unique_id(), request, Default::default())
        .await
        .unwrap();
    let event = t.get_message_from_service_worker().await.event();

    assert_equals!(event.r#type, "backgroundfetchsuccess");
}
