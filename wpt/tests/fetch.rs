//! `background-fetch/fetch.https.window.js` (Chromium's copy, the newest): basic functionality
//! of `BackgroundFetchManager.fetch()`.
//! <https://wicg.github.io/background-fetch/#background-fetch-manager-fetch>

use background_fetch::{BackgroundFetchOptions, RequestInfo, RequestInit, RequestMode};
use background_fetch_wpt::*;

upstream_file! {
    file: "fetch.https.window.js",
    subtests: {
        "Background Fetch requires an activated Service Worker" => requires_an_activated_service_worker,
        "Argument verification is done for BackgroundFetchManager.fetch()" => argument_verification,
        "IDs must be unique among active Background Fetch registrations" => ids_must_be_unique,
        "Empty URL is OK." => empty_url_is_ok,
        "Requests with PUT method require CORS Preflight and succeed." => put_requires_a_preflight,
        "Requests with text/json content type require CORS Preflight and succeed." => text_json_requires_a_preflight,
        "Using Background Fetch to successfully fetch a single resource" => fetch_a_single_resource,
        "Registration object gets updated values when a background fetch completes." => registration_gets_updated_values,
        "Background Fetch that exceeds the quota throws a QuotaExceededError" => exceeding_the_quota_throws,
        "Fetches can have requests with duplicate URLs" => duplicate_urls,
        "recordsAvailable is false after onbackgroundfetchsuccess finishes execution." => records_unavailable_after_the_event,
        "Using Background Fetch to fetch a non-existent resource should fail." => non_existent_resource_fails,
        "Fetches with mixed content should fail." => mixed_content_fails,
        "Responses failing CORS checks are not leaked" => cors_failures_are_not_leaked,
    }
}

/// `Number.MAX_SAFE_INTEGER`
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

async fn requires_an_activated_service_worker(t: Test) {
    // 6.3.1.9.2: If |registration|'s active worker is null, then reject promise with a
    //            TypeError and abort these steps.
    let script = "service_workers/sw.js";
    let scope = format!("service_workers/{}", t.location().path());

    let service_worker_registration = t
        .service_worker_unregister_and_register(script, &scope)
        .await;

    assert_true!(
        service_worker_registration.active.is_none(),
        "There must not be an activated worker"
    );

    promise_rejects_js!(
        TypeError,
        service_worker_registration.background_fetch.fetch(
            &t.unique_id(),
            ["resources/feature-name.txt"],
            Default::default()
        ),
        "fetch() must reject on pending and installing workers"
    );
}

async fn argument_verification(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    // 6.3.1.6: If |requests| is empty, then return a promise rejected with a TypeError.
    promise_rejects_js!(
        TypeError,
        background_fetch.fetch(
            &t.unique_id(),
            Vec::<RequestInfo>::new(),
            Default::default()
        ),
        "Empty sequences are treated as NULL"
    );

    // 6.3.1.7.1: Let |internalRequest| be the request of the result of invoking the Request
    //            constructor with |request|. If this throws an exception, return a promise
    //            rejected with the exception.
    promise_rejects_js!(
        TypeError,
        background_fetch.fetch(
            &t.unique_id(),
            "https://user:pass@domain/secret.txt",
            Default::default()
        ),
        "Exceptions thrown in the Request constructor are rethrown"
    );

    // 6.3.1.7.2: If |internalRequest|'s mode is "no-cors", then return a promise rejected
    //            with a TypeError.
    {
        let request = t.new_request(
            "resources/feature-name.txt",
            RequestInit {
                mode: Some(RequestMode::NoCors),
                ..Default::default()
            },
        );

        promise_rejects_js!(
            TypeError,
            background_fetch.fetch(&t.unique_id(), request, Default::default()),
            "Requests must not be in no-cors mode"
        );
    }
}

async fn ids_must_be_unique(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    // 6.3.1.9.2: If |bgFetchMap[id]| exists, reject |promise| with a TypeError and abort these
    //            steps.
    promise_rejects_js!(
        TypeError,
        futures::future::try_join(
            background_fetch.fetch("my-id", "resources/feature-name.txt?1", Default::default()),
            background_fetch.fetch("my-id", "resources/feature-name.txt?2", Default::default()),
        )
    );
}

async fn empty_url_is_ok(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(&registration_id, "", Default::default())
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);

    let EventMessage {
        r#type,
        event_registration,
        ..
    } = t.get_message_from_service_worker().await.event();

    assert_equals!("backgroundfetchsuccess", r#type);
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");
}

async fn put_requires_a_preflight(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let file_path = "/background-fetch/resources/feature-name.txt";
    let cross_origin_url = format!(
        "{}{file_path}?pipe=header(Access-Control-Allow-Origin, *)|header(Access-Control-Allow-Methods, PUT)",
        get_host_info().https_remote_origin
    );

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            t.new_request(
                cross_origin_url,
                RequestInit {
                    method: Some("PUT".into()),
                    ..Default::default()
                },
            ),
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);

    let EventMessage {
        r#type,
        event_registration,
        ..
    } = t.get_message_from_service_worker().await.event();

    assert_equals!(r#type, "backgroundfetchsuccess");
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");
}

async fn text_json_requires_a_preflight(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let file_path = "/background-fetch/resources/feature-name.txt";
    let cross_origin_url = format!(
        "{}{file_path}?pipe=header(Access-Control-Allow-Origin, *)|header(Access-Control-Allow-Headers, content-type)",
        get_host_info().https_remote_origin
    );

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            t.new_request(
                cross_origin_url,
                RequestInit {
                    method: Some("POST".into()),
                    headers: Some(vec![("Content-Type".into(), "text/json".into())]),
                    ..Default::default()
                },
            ),
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);

    let EventMessage {
        r#type,
        event_registration,
        ..
    } = t.get_message_from_service_worker().await.event();

    assert_equals!(r#type, "backgroundfetchsuccess");
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");
}

async fn fetch_a_single_resource(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);
    assert_equals!(registration.upload_total(), 0);
    assert_equals!(registration.uploaded(), 0);
    assert_equals!(registration.download_total(), 0);
    assert_equals!(registration.result().as_str(), "");
    assert_equals!(registration.failure_reason().as_str(), "");
    assert_true!(registration.records_available());
    // Skip `downloaded`, as the transfer may have started already.

    let EventMessage {
        r#type,
        event_registration,
        results,
        ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!("backgroundfetchsuccess", r#type);
    assert_equals!(results.len(), 1);

    assert_equals!(event_registration.id, registration.id());
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");

    let result = results[0].clone().unwrap();
    assert_true!(result.url.contains("resources/feature-name.txt"));
    assert_equals!(result.status, 200);
    assert_equals!(result.text, "Background Fetch");
}

async fn registration_gets_updated_values(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.result().as_str(), "");
    assert_equals!(registration.failure_reason().as_str(), "");

    let EventMessage {
        r#type,
        event_registration,
        ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!("backgroundfetchsuccess", r#type);

    assert_equals!(event_registration.id, registration.id());
    assert_equals!(registration.result().as_str(), "success");
    assert_equals!(registration.failure_reason().as_str(), "");
}

async fn exceeding_the_quota_throws(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();

    // Very large download total that will definitely exceed the quota.
    let options = BackgroundFetchOptions {
        download_total: MAX_SAFE_INTEGER,
        ..Default::default()
    };
    promise_rejects_quotaexceedederror!(
        background_fetch.fetch(&registration_id, "resources/feature-name.txt", options),
        None::<f64>,
        None::<f64>
    );
}

async fn duplicate_urls(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration = background_fetch
        .fetch(
            "my-id",
            ["resources/feature-name.txt", "resources/feature-name.txt"],
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
    assert_equals!("backgroundfetchsuccess", r#type);
    assert_equals!(results.len(), 2);

    assert_equals!(event_registration.id, registration.id());
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");

    for result in results {
        let result = result.unwrap();
        assert_true!(result.url.contains("resources/feature-name.txt"));
        assert_equals!(result.status, 200);
        assert_equals!(result.text, "Background Fetch");
    }
}

async fn records_unavailable_after_the_event(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();
    assert_true!(registration.records_available());

    let EventMessage {
        r#type, results, ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!("backgroundfetchsuccess", r#type);
    assert_equals!(results.len(), 1);

    // Wait for up to 5 seconds for the |eventRegistration|'s recordsAvailable flag to be set
    // to false, which happens after the successful invocation of the ServiceWorker event has
    // finished.
    for _ in 0..50 {
        if !registration.records_available() {
            break;
        }
        t.wait(100).await;
    }

    assert_false!(registration.records_available());
}

async fn non_existent_resource_fails(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            "resources/missing-cat.txt",
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);
    assert_equals!(registration.result().as_str(), "");
    assert_equals!(registration.failure_reason().as_str(), "");

    let EventMessage {
        r#type,
        event_registration,
        results,
        ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!(r#type, "backgroundfetchfail");
    assert_equals!(results.len(), 1);
    let result = results[0].clone().unwrap();
    assert_true!(result.url.contains("resources/missing-cat.txt"));
    assert_equals!(result.status, 404);
    assert_equals!(result.text, "");

    assert_equals!(event_registration.id, registration.id());
    assert_equals!(event_registration.result, "failure");
    assert_equals!(event_registration.failure_reason, "bad-status");

    assert_equals!(registration.result().as_str(), "failure");
    assert_equals!(registration.failure_reason().as_str(), "bad-status");
}

async fn mixed_content_fails(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let origin = t.location_origin();
    let _registration = background_fetch
        .fetch(
            "my-id",
            vec![
                RequestInfo::from(origin.clone()),
                RequestInfo::from(origin.replacen("https", "http", 1)),
            ],
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

    assert_equals!("backgroundfetchfail", r#type);
    assert_equals!(event_registration.failure_reason, "fetch-error");

    assert_equals!(results.len(), 2);

    let valid_response = if results[0].is_some() {
        &results[0]
    } else {
        &results[1]
    };
    let null_response = if results[0].is_none() {
        &results[0]
    } else {
        &results[1]
    };

    assert_true!(valid_response.clone().unwrap().url.contains(&origin));
    assert_equals!(*null_response, None);
}

async fn cors_failures_are_not_leaked(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let file_path = "/background-fetch/resources/feature-name.txt";
    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            format!("https://{}{file_path}", get_host_info().remote_host),
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
    assert_equals!(r#type, "backgroundfetchfail");
    assert_equals!(results.len(), 1);

    assert_equals!(results[0], None);
    assert_equals!(event_registration.id, registration.id());
    assert_equals!(event_registration.downloaded, 0);
}
