//! The service worker role goes through the engine's protocol: a registration's worker is a
//! service worker connection of the app's `Service`, the program's own unless another (a
//! JavaScript service worker, for example) is set for its registration.

use background_fetch::service::client::FunctionalEvent;
use background_fetch::service::in_process;
use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::{
    BackgroundFetchOptions, BoxFuture, DispatchOutcome, FunctionalEventKind, PolicyContainer,
    ServiceWorkerRegistrationId,
};
use bgfetch::app::{App, EventHandler, Handled, TokioSpawn, open_store};
use bgfetch::network::NetSetup;
use bgfetch::output::{Mode, Reporter};
use bgfetch::server::{Route, Server};
use futures::FutureExt;
use std::sync::{Arc, Mutex};
use url::Url;

/// The program's worker, which must not be asked here.
struct NotAsked;

impl EventHandler for NotAsked {
    fn handle(
        self: Arc<Self>,
        event: FunctionalEvent,
        _embedder_data: Option<String>,
    ) -> BoxFuture<'static, Handled> {
        panic!("the program's worker got {}", event.event_type());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_set_for_a_registration_gets_its_events_through_the_protocol() {
    let server = Server::start([("/a.bin".to_owned(), Route::bytes(vec![7u8; 5000]))])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Ok(store) = open_store(&dir.path().join("store.redb")) else {
        panic!("the store opens");
    };
    let reporter = Arc::new(Reporter::new(Mode::Quiet));
    let app = App::start(
        store,
        reporter,
        Arc::new(NotAsked),
        false,
        NetSetup::offline(),
    )
    .await
    .unwrap();
    let origin = Url::parse(&server.url("/")).unwrap();
    let registration = ServiceWorkerRegistrationId::for_scope(&origin);
    // Another service worker global of the registration, connected to the app's service.
    let worker = in_process::connect(
        app.service(),
        EnvironmentData {
            kind: EnvironmentKindData::ServiceWorker(registration.clone()),
            base_url: origin.clone(),
            secure_context: true,
            policy: PolicyContainer::default(),
            embedder: None,
        },
        Arc::new(TokioSpawn(tokio::runtime::Handle::current())),
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    worker.on_functional_event(move |event: FunctionalEvent| {
        let tx = tx.clone();
        async move {
            // Its records, read as a service worker reads them.
            let records = event
                .registration()
                .match_all(None, Default::default())
                .await
                .unwrap();
            let body = records[0]
                .response_ready()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send((event.kind(), body));
            }
            DispatchOutcome::Completed
        }
        .boxed()
    });
    app.set_worker(&registration, worker);
    let (manager, _) = app.manager(&origin);
    let reg = manager
        .fetch("w", "/a.bin", BackgroundFetchOptions::default())
        .await
        .unwrap();
    let (kind, body) = rx.await.unwrap();
    assert_eq!(kind, FunctionalEventKind::Success);
    assert_eq!(body, vec![7u8; 5000]);
    assert!(app.engine.finished(reg.uid()).await);
    app.close().await;
}
