//! `background-fetch/abort.https.window.js` (servo's current copy): basic functionality of
//! `BackgroundFetchRegistration.abort()`.
//! <https://wicg.github.io/background-fetch/#background-fetch-registration-abort>

use background_fetch_wpt::*;
use futures::channel::oneshot;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

upstream_file! {
    file: "abort.https.window.js",
    subtests: {
        "Aborting the same registration twice fails" => aborting_twice_fails,
        "Calling BackgroundFetchRegistration.abort sets the correct fields and responses are still available" => abort_sets_fields_and_keeps_responses,
        "An aborted fetch throws a DOM exception when accessing an incomplete record" => incomplete_record_throws_abort_error,
    }
}

async fn aborting_twice_fails(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            ["resources/feature-name.txt", "/common/slow.py"],
            Default::default(),
        )
        .await
        .unwrap();

    assert_true!(registration.abort().await.unwrap());
    assert_false!(registration.abort().await.unwrap());
}

async fn abort_sets_fields_and_keeps_responses(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            ["resources/feature-name.txt", "/common/slow.py"],
            Default::default(),
        )
        .await
        .unwrap();

    // await new Promise(resolve => { registration.onprogress = async event => { ... } })
    let (resolve, resolved) = oneshot::channel::<()>();
    let resolve = Mutex::new(Some(resolve));
    let aborted = AtomicBool::new(false);
    let expected_result_text = "Background Fetch";

    let (page, this) = (t.clone(), registration.clone());
    registration.on_progress(move |event_target| {
        if event_target.downloaded() < expected_result_text.len() as u64 {
            return;
        }

        if aborted.swap(true, Ordering::SeqCst) {
            return;
        }

        // Abort after the first file has been downloaded and check the results.
        let (t, registration) = (page.clone(), this.clone());
        let resolve = resolve.lock().unwrap().take();
        page.spawn(async move {
            assert_true!(registration.abort().await.unwrap());

            let EventMessage {
                r#type,
                event_registration,
                results,
                ..
            } = t.get_message_from_service_worker().await.event();

            assert_equals!(event_registration.result, "failure");
            assert_equals!(event_registration.failure_reason, "aborted");
            assert_equals!(registration.result().as_str(), "failure");
            assert_equals!(registration.failure_reason().as_str(), "aborted");

            assert_equals!(r#type, "backgroundfetchabort");

            assert_equals!(results.len(), 2);

            let completed_result = results[0].clone().or(results[1].clone());
            // The abort might have gone through before the first result was persisted.
            if let Some(completed_result) = completed_result {
                assert_true!(completed_result.url.contains("resources/feature-name.txt"));
                assert_equals!(completed_result.status, 200);
                assert_equals!(completed_result.text, expected_result_text);
            }

            if let Some(resolve) = resolve {
                let _ = resolve.send(());
            }
        });
    });
    resolved.await.unwrap();
}

async fn incomplete_record_throws_abort_error(t: Test) {
    let background_fetch = t.background_fetch_test("sw-abort.js").await;

    let registration = background_fetch
        .fetch(&t.unique_id(), "/common/slow.py", Default::default())
        .await
        .unwrap();
    assert_true!(registration.abort().await.unwrap());

    let results = t.get_message_from_service_worker().await.abort_results();
    assert_equals!(results.len(), 1);
    assert_false!(results[0].response);
    assert_equals!(results[0].name.as_deref(), Some("AbortError"));
}
