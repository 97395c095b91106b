//! `background-fetch/get.https.window.js` (servo's copy): `BackgroundFetchManager.get()`.
//! <https://wicg.github.io/background-fetch/#background-fetch-manager-get>

use background_fetch::BackgroundFetchOptions;
use background_fetch_wpt::*;

upstream_file! {
    file: "get.https.window.js",
    subtests: {
        "BackgroundFetchManager.get() does not require an activated worker" => get_without_an_active_worker,
        "Getting non-existing registrations yields `undefined`" => non_existing_registrations_yield_undefined,
        "Getting an existing registration has the expected values" => existing_registration_values,
    }
}

async fn get_without_an_active_worker(t: Test) {
    let script = "service_workers/sw.js";
    let scope = format!("service_workers/{}", t.location().path());

    let service_worker_registration = t
        .service_worker_unregister_and_register(script, &scope)
        .await;

    assert_true!(
        service_worker_registration.active.is_none(),
        "There must not be an activated worker"
    );

    let registration = service_worker_registration
        .background_fetch
        .get("x")
        .await
        .unwrap();
    assert_equals!(registration, None);
}

async fn non_existing_registrations_yield_undefined(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    // The |id| parameter to the BackgroundFetchManager.get() method is required.
    // `get()` without an argument cannot be written in Rust: the signature requires `id`.
    // WebIDL bindings throw that TypeError before the engine is reached, and the IDL check
    // (idlharness.rs) pins `get(id)`'s argument as required.
    promise_rejects_js!(TypeError, background_fetch.get(""));

    let registration = background_fetch.get("my-id").await.unwrap();
    assert_equals!(registration, None);
}

async fn existing_registration_values(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    let registration_id = t.unique_id();
    let registration = background_fetch
        .fetch(
            &registration_id,
            "resources/feature-name.txt",
            BackgroundFetchOptions {
                download_total: 1234,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    assert_equals!(registration.id(), registration_id);
    assert_equals!(registration.upload_total(), 0);
    assert_equals!(registration.uploaded(), 0);
    assert_equals!(registration.download_total(), 1234);
    assert_equals!(registration.result().as_str(), "");
    assert_equals!(registration.failure_reason().as_str(), "");
    assert_true!(registration.records_available());
    // Skip `downloaded`, as the transfer may have started already.

    let second_registration = background_fetch.get(&registration_id).await.unwrap();
    assert_not_equals!(second_registration, None);
    let second_registration = second_registration.unwrap();

    // While the transfer might have started, both BackgroundFetchRegistration objects should
    // have the latest progress values.
    assert_equals!(second_registration.id(), registration.id());
    assert_equals!(
        second_registration.upload_total(),
        registration.upload_total()
    );
    assert_equals!(second_registration.uploaded(), registration.uploaded());
    assert_equals!(
        second_registration.download_total(),
        registration.download_total()
    );
    assert_equals!(
        second_registration.failure_reason(),
        registration.failure_reason()
    );
    assert_equals!(second_registration.downloaded(), registration.downloaded());
    assert_equals!(
        second_registration.records_available(),
        registration.records_available()
    );
}
