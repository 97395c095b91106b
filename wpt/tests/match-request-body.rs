//! `background-fetch/match-request-body.https.window.js` (Chromium's copy only): records keep
//! their request body, readable from the page while the fetch is active, for every kind of
//! body. Upstream generates the eight subtests from a table of body types; here each is a
//! small function over the same helper.

use background_fetch::{CacheQueryOptions, RequestBody, RequestInfo, RequestInit};
use background_fetch_wpt::*;
use futures::StreamExt;

upstream_file! {
    file: "match-request-body.https.window.js",
    subtests: {
        "Match returns the request body for string." => string,
        "Match returns the request body for ArrayBuffer." => array_buffer,
        "Match returns the request body for TypedArray." => typed_array,
        "Match returns the request body for DataView." => data_view,
        "Match returns the request body for Blob." => blob,
        "Match returns the request body for File." => file,
        "Match returns the request body for URLSearchParams." => url_search_params,
        "Match returns the request body for FormData." => form_data,
    }
}

const BODY_TEXT: &str = "Background Fetch request body";

/// `new TextEncoder().encode(bodyText)`
fn encoded_body() -> Vec<u8> {
    BODY_TEXT.as_bytes().to_vec()
}

async fn string(t: Test) {
    match_returns_the_request_body(t, BodyInit::String(BODY_TEXT.into())).await
}

async fn array_buffer(t: Test) {
    match_returns_the_request_body(t, BodyInit::ArrayBuffer(encoded_body())).await
}

async fn typed_array(t: Test) {
    match_returns_the_request_body(t, BodyInit::TypedArray(encoded_body())).await
}

async fn data_view(t: Test) {
    match_returns_the_request_body(t, BodyInit::DataView(encoded_body())).await
}

async fn blob(t: Test) {
    let body = BodyInit::Blob {
        bits: BODY_TEXT.into(),
        r#type: String::new(),
    };
    match_returns_the_request_body(t, body).await
}

async fn file(t: Test) {
    let body = BodyInit::File {
        bits: BODY_TEXT.into(),
        name: "body.txt".into(),
        r#type: String::new(),
    };
    match_returns_the_request_body(t, body).await
}

async fn url_search_params(t: Test) {
    let body = BodyInit::UrlSearchParams(vec![("body".into(), BODY_TEXT.into())]);
    match_returns_the_request_body(t, body).await
}

async fn form_data(t: Test) {
    let body = BodyInit::FormData(vec![(
        "body".into(),
        FormDataValue::String(BODY_TEXT.into()),
    )]);
    match_returns_the_request_body(t, body).await
}

async fn match_returns_the_request_body(t: Test, body_init: BodyInit) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let request = t.new_request(
        "resources/upload.py",
        RequestInit {
            method: Some("POST".into()),
            ..body(body_init)
        },
    );
    // new Uint8Array(await request.clone().arrayBuffer())
    let expected_body = match &request.body {
        Some(RequestBody::Bytes(bytes)) => bytes.to_vec(),
        other => panic!("an extracted body, not {other:?}"),
    };
    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            vec![RequestInfo::from(request), "/common/slow.py".into()],
            Default::default(),
        )
        .await
        .unwrap();
    {
        let registration = registration.clone();
        t.add_cleanup(async move {
            let _ = registration.abort().await;
        });
    }

    let record = registration
        .r#match(
            "resources/upload.py",
            CacheQueryOptions {
                ignore_method: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_true!(record.is_some(), "record is not undefined");
    let record = record.unwrap();
    assert_equals!(record.request().method, "POST");
    // new Uint8Array(await record.request.arrayBuffer())
    let mut array_buffer = Vec::new();
    if let Some(mut stream) = record.request_body() {
        while let Some(chunk) = stream.next().await {
            array_buffer.extend_from_slice(&chunk.unwrap());
        }
    }
    assert_array_equals!(array_buffer, expected_body);
}
