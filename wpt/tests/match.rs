//! `background-fetch/match.https.window.js` (servo's copy): basic functionality of
//! `BackgroundFetchRegistration.match(All)?` (the service worker side is `sw.js`, which
//! chooses what to match from the registration's id).
//! <https://wicg.github.io/background-fetch/#dom-backgroundfetchregistration-match>

use background_fetch::{CacheQueryOptions, RequestInfo, RequestInit};
use background_fetch_wpt::*;

upstream_file! {
    file: "match.https.window.js",
    subtests: {
        "Matching to a single request should work" => matching_a_single_request,
        "Matching to a non-existing request should work" => matching_a_non_existing_request,
        "Matching multiple times on the same request works as expected." => matching_twice,
        "Access to active fetches is supported." => access_to_active_fetches,
        "Match with query options." => match_with_query_options,
    }
}

async fn matching_a_single_request(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = "matchexistingrequest";
    let registration = background_fetch
        .fetch(
            registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);

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

async fn matching_a_non_existing_request(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = "matchmissingrequest";
    let registration = background_fetch
        .fetch(
            registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);

    let EventMessage {
        r#type,
        event_registration,
        results,
        ..
    } = t.get_message_from_service_worker().await.event();
    assert_equals!("backgroundfetchsuccess", r#type);
    assert_equals!(results.len(), 0);

    assert_equals!(event_registration.id, registration.id());
    assert_equals!(event_registration.result, "success");
    assert_equals!(event_registration.failure_reason, "");
}

async fn matching_twice(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = "matchexistingrequesttwice";
    let registration = background_fetch
        .fetch(
            registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);

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

    let first = results[0].clone().unwrap();
    assert_true!(first.url.contains("resources/feature-name.txt"));
    assert_equals!(first.status, 200);
    assert_equals!(first.text, "Background Fetch");

    let second = results[1].clone().unwrap();
    assert_true!(second.url.contains("resources/feature-name.txt"));
    assert_equals!(second.status, 200);
    assert_equals!(second.text, "Background Fetch");
}

async fn access_to_active_fetches(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            ["resources/feature-name.txt", "/common/slow.py"],
            Default::default(),
        )
        .await
        .unwrap();

    let record = registration
        .r#match("resources/feature-name.txt", Default::default())
        .await
        .unwrap()
        .unwrap();
    let response = record.response_ready().await.unwrap();
    assert_true!(response.url().contains("resources/feature-name.txt"));
    let completed_response_text = response.text().await.unwrap();
    assert_equals!(completed_response_text, "Background Fetch");
}

async fn match_with_query_options(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration = background_fetch
        .fetch(
            &t.unique_id(),
            vec![
                RequestInfo::from("resources/feature-name.txt"),
                "resources/feature-name.txt".into(),
                "resources/feature-name.txt?id=3".into(),
                t.new_request(
                    "resources/feature-name.txt",
                    RequestInit {
                        method: Some("PUT".into()),
                        ..Default::default()
                    },
                )
                .into(),
                "/common/slow.py".into(),
            ],
            Default::default(),
        )
        .await
        .unwrap();

    let match_all = |options: CacheQueryOptions| {
        registration.match_all(Some("resources/feature-name.txt".into()), options)
    };

    // We should match all the duplicates.
    let matched_records = match_all(Default::default()).await.unwrap();
    assert_equals!(matched_records.len(), 2);

    // We should match the request with the query param as well.
    let matched_records = match_all(CacheQueryOptions {
        ignore_search: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_equals!(matched_records.len(), 3);

    // We should match the PUT request as well.
    let matched_records = match_all(CacheQueryOptions {
        ignore_method: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_equals!(matched_records.len(), 3);

    // We should match all requests.
    let matched_records = match_all(CacheQueryOptions {
        ignore_search: true,
        ignore_method: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_equals!(matched_records.len(), 4);
}
