//! `background-fetch/fetch-uploads.https.window.js` (servo's copy): `fetch()` with request
//! uploads.
//! <https://wicg.github.io/background-fetch/#background-fetch-manager-fetch>

use background_fetch::{RequestInfo, RequestInit};
use background_fetch_wpt::*;
use futures::channel::oneshot;
use std::sync::Mutex;

upstream_file! {
    file: "fetch-uploads.https.window.js",
    subtests: {
        "Fetch with an upload should work" => fetch_with_an_upload,
        "Progress event includes uploaded bytes" => progress_includes_uploaded_bytes,
        "Duplicate upload requests work and can be distinguished." => duplicate_uploads,
    }
}

fn post() -> Option<String> {
    Some("POST".into())
}

async fn fetch_with_an_upload(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let upload_data = "Background Fetch!";
    let request = t.new_request(
        "resources/upload.py",
        RequestInit {
            method: post(),
            ..body(upload_data)
        },
    );

    let registration = background_fetch
        .fetch(&t.unique_id(), request, Default::default())
        .await
        .unwrap();
    assert_equals!(registration.upload_total(), upload_data.len() as u64);

    let EventMessage {
        r#type,
        event_registration,
        results,
        ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!(r#type, "backgroundfetchsuccess");
    assert_equals!(results.len(), 1);
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");
    assert_equals!(event_registration.uploaded, upload_data.len() as u64);
    assert_equals!(results[0].clone().unwrap().text, upload_data);
}

async fn progress_includes_uploaded_bytes(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let upload_data = "Background Fetch!";
    let upload_request = t.new_request(
        "resources/upload.py",
        RequestInit {
            method: post(),
            ..body(upload_data)
        },
    );

    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            vec![RequestInfo::from(upload_request), "/common/slow.py".into()],
            Default::default(),
        )
        .await
        .unwrap();

    let (resolve, uploaded) = oneshot::channel::<u64>();
    let resolve = Mutex::new(Some(resolve));
    registration.on_progress(move |event_target| {
        if event_target.downloaded() == 0 {
            return;
        }
        // If a progress event with downloaded bytes was received, then everything was
        // uploaded.
        if let Some(resolve) = resolve.lock().unwrap().take() {
            let _ = resolve.send(event_target.uploaded());
        }
    });
    let uploaded = uploaded.await.unwrap();

    assert_equals!(uploaded, upload_data.len() as u64);
}

async fn duplicate_uploads(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let upload_request1 = t.new_request(
        "resources/upload.py",
        RequestInit {
            method: post(),
            ..body("upload1")
        },
    );
    let upload_request2 = t.new_request(
        "resources/upload.py",
        RequestInit {
            method: post(),
            ..body("upload2")
        },
    );

    background_fetch
        .fetch(
            &t.unique_id(),
            vec![RequestInfo::from(upload_request1), upload_request2.into()],
            Default::default(),
        )
        .await
        .unwrap();

    let EventMessage {
        r#type,
        event_registration,
        results,
        ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!(r#type, "backgroundfetchsuccess");
    assert_equals!(results.len(), 2);
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");

    let mut texts = vec![
        results[0].clone().unwrap().text,
        results[1].clone().unwrap().text,
    ];
    texts.sort();
    assert_array_equals!(texts, ["upload1", "upload2"]);
}
