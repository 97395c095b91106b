//! `background-fetch/get-ids.https.window.js` (servo's copy): `BackgroundFetchManager.getIds()`.
//! <https://wicg.github.io/background-fetch/#background-fetch-manager-getIds>

use background_fetch_wpt::*;

upstream_file! {
    file: "get-ids.https.window.js",
    subtests: {
        "BackgroundFetchManager.getIds() does not require an activated worker" => get_ids_without_an_active_worker,
        "The BackgroundFetchManager exposes active fetches" => exposes_active_fetches,
    }
}

async fn get_ids_without_an_active_worker(t: Test) {
    let script = "service_workers/sw.js";
    let scope = format!("service_workers/{}", t.location().path());

    let service_worker_registration = t
        .service_worker_unregister_and_register(script, &scope)
        .await;

    assert_true!(
        service_worker_registration.active.is_none(),
        "There must not be an activated worker"
    );

    let ids = service_worker_registration
        .background_fetch
        .get_ids()
        .await
        .unwrap();
    assert_equals!(ids.len(), 0);
}

async fn exposes_active_fetches(t: Test) {
    let background_fetch = t.background_fetch_test("sw.js").await;

    // There should not be any active background fetches at this point.
    {
        let ids = background_fetch.get_ids().await.unwrap();
        assert_equals!(ids.len(), 0);
    }

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

    // The |registrationId| should be active, and thus be included in getIds().
    {
        let ids = background_fetch.get_ids().await.unwrap();
        assert_equals!(ids.len(), 1);
        assert_equals!(ids[0], registration_id);
    }
}
