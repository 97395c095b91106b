//! `background-fetch/update-ui.https.window.js` (servo's copy), with `sw-update-ui.js`:
//! `BackgroundFetchUpdateUIEvent.updateUI()`.
//! <https://wicg.github.io/background-fetch/#backgroundfetchupdateuievent>

use background_fetch_wpt::*;

upstream_file! {
    file: "update-ui.https.window.js",
    subtests: {
        "Background Fetch updateUI resolves" => update_ui_resolves,
        "Background Fetch updateUI called twice fails" => update_ui_twice_fails,
        "Background Fetch updateUI fails when event is not active" => update_ui_when_not_active_fails,
    }
}

const SW_SCRIPT: &str = "sw-update-ui.js";

async fn update_ui_resolves(t: Test) {
    let background_fetch = t.background_fetch_test(SW_SCRIPT).await;

    let registration_id = "update-once";
    let registration = background_fetch
        .fetch(
            registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();
    assert_equals!(registration.id(), registration_id);

    let message = t.get_message_from_service_worker().await;
    assert_equals!(message.update(), "update success");
}

async fn update_ui_twice_fails(t: Test) {
    let background_fetch = t.background_fetch_test(SW_SCRIPT).await;

    let registration_id = "update-twice";
    let registration = background_fetch
        .fetch(
            registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();
    assert_equals!(registration.id(), registration_id);

    let message = t.get_message_from_service_worker().await;
    assert_equals!(message.update(), "InvalidStateError");
}

async fn update_ui_when_not_active_fails(t: Test) {
    let background_fetch = t.background_fetch_test(SW_SCRIPT).await;

    let registration_id = "update-inactive";
    let registration = background_fetch
        .fetch(
            registration_id,
            "resources/feature-name.txt",
            Default::default(),
        )
        .await
        .unwrap();
    assert_equals!(registration.id(), registration_id);

    let message = t.get_message_from_service_worker().await;
    assert_equals!(message.update(), "InvalidStateError");
}
