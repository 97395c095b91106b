//! `bgfetch demo`: the explainer's podcast example, end to end, with no network but loopback.

use crate::app::{App, EventHandler, Handled, StoreOpen, open_store};
use crate::exit;
use crate::output::{Mode, Reporter, human};
use crate::server::{Body, Route, Server, fill_generated};
use background_fetch::service::client::FunctionalEvent;
use background_fetch::{
    BackgroundFetchOptions, BackgroundFetchUiOptions, BoxFuture, CacheQueryOptions,
    FunctionalEventKind, ImageResource, RequestInfo,
};
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

const EPISODE_LEN: u64 = 60 * 1024 * 1024;
const ARTWORK_LEN: usize = 180 * 1024;
const EPISODE_SEED: u64 = 5;

fn say(reporter: &Reporter, text: &str) {
    reporter.note(text);
}

/// FNV-1a, to show the bytes read back are the bytes served.
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn artwork() -> Vec<u8> {
    (0..ARTWORK_LEN).map(|i| (i * 31 % 251) as u8).collect()
}

/// The demo's service worker role.
struct DemoWorker(Arc<Reporter>);

impl EventHandler for DemoWorker {
    fn handle(
        self: Arc<Self>,
        event: FunctionalEvent,
        _embedder_data: Option<String>,
    ) -> BoxFuture<'static, Handled> {
        Box::pin(async move {
            if event.kind() != FunctionalEventKind::Click {
                service_worker(&self.0, &event).await;
            }
            self.0.functional(event.kind(), event.registration());
            Handled::Done
        })
    }

    fn reports_events(&self) -> bool {
        true
    }
}

/// The demo's service worker: in `backgroundfetchsuccess` it reads every record (as it would
/// copy them into a cache) and updates the UI.
async fn service_worker(reporter: &Reporter, event: &FunctionalEvent) {
    let reg = event.registration().clone();
    say(
        reporter,
        &format!(
            "\n4. The service worker receives `{}`. The registration it gets says result {:?}, downloaded {}.",
            event.event_type(),
            reg.result().as_str(),
            human(reg.downloaded())
        ),
    );
    say(
        reporter,
        "   While the event is active its records are available: it calls matchAll() and reads each response.",
    );
    let Ok(records) = reg.match_all(None, CacheQueryOptions::default()).await else {
        say(reporter, "   (matchAll() rejected)");
        return;
    };
    for record in records {
        let url = record.request().url.clone();
        match record.response_ready().await {
            Ok(response) => {
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                let expected = if url.path().ends_with(".mp3") {
                    let mut all = FNV_START;
                    let mut buf = Vec::new();
                    let mut at = 0u64;
                    while at < EPISODE_LEN {
                        let n = (EPISODE_LEN - at).min(1 << 20) as usize;
                        fill_generated(EPISODE_SEED, at, &mut buf, n);
                        all = fnv(&buf, all);
                        at += n as u64;
                    }
                    all
                } else {
                    fnv(&artwork(), FNV_START)
                };
                let got = fnv(&bytes, FNV_START);
                say(
                    reporter,
                    &format!(
                        "   match({:?}): status {status}, {} read, checksum {got:016x} ({})",
                        url.path(),
                        human(bytes.len() as u64),
                        if got == expected {
                            "the bytes the server sent"
                        } else {
                            "DIFFERENT from what the server sent!"
                        }
                    ),
                );
            }
            Err(e) => say(reporter, &format!("   match({:?}): {e}", url.path())),
        }
    }
    if matches!(
        event.kind(),
        FunctionalEventKind::Success | FunctionalEventKind::Fail
    ) {
        let title = "Episode 5 ready to listen!".to_owned();
        match event
            .update_ui(BackgroundFetchUiOptions {
                title: Some(title.clone()),
                icons: None,
            })
            .await
        {
            Ok(()) => say(
                reporter,
                &format!("   It calls event.updateUI({{title: {title:?}}}): the UI now shows it."),
            ),
            Err(e) => say(reporter, &format!("   updateUI() rejected: {e}")),
        }
    }
}

/// Runs the demo. Its store is a temporary directory unless `--store` names one.
pub async fn run(store: Option<PathBuf>, mode: Mode) -> i32 {
    let reporter_for_notes = Reporter::new(if mode == Mode::Json {
        Mode::Json
    } else {
        Mode::Plain
    });
    let say_ = |t: &str| reporter_for_notes.note(t);
    let artwork = artwork();
    let routes = [
        (
            "/podcast/ep-5.mp3".to_owned(),
            Route::ok(Body::Generated {
                len: EPISODE_LEN,
                seed: EPISODE_SEED,
            })
            .rate(40 * 1024 * 1024),
        ),
        (
            "/podcast/ep-5-artwork.jpg".to_owned(),
            Route::bytes(artwork).header("Content-Type", "image/jpeg"),
        ),
        (
            "/podcast/ep-5-icon.png".to_owned(),
            Route::bytes(vec![0u8; 64]).header("Content-Type", "image/png"),
        ),
    ];
    let server = match Server::start(routes).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the local server: {e}");
            return exit::ERROR;
        }
    };
    let tmp;
    let path = match store {
        Some(p) => p,
        None => {
            tmp = tempfile::Builder::new().prefix("bgfetch-demo-").tempdir();
            match &tmp {
                Ok(t) => t.path().join("store.redb"),
                Err(e) => {
                    eprintln!("error: cannot create a temporary store: {e}");
                    return exit::ERROR;
                }
            }
        }
    };
    say_(&format!(
        "bgfetch demo: the podcast example from the Background Fetch explainer, on this machine only.\n\n\
         1. A local server at http://{} serves a podcast episode ({}) and its artwork ({}).\n   The store is {}.",
        server.addr(),
        human(EPISODE_LEN),
        human(ARTWORK_LEN as u64),
        path.display()
    ));
    let store = match open_store(&path) {
        Ok(s) => s,
        Err(StoreOpen::Locked) => {
            eprintln!(
                "error: the store {} is in use by another process",
                path.display()
            );
            return exit::ERROR;
        }
        Err(StoreOpen::Failed(m)) => {
            eprintln!("error: {m}");
            return exit::ERROR;
        }
    };
    let reporter = Arc::new(Reporter::new(mode));
    let worker = Arc::new(DemoWorker(reporter.clone()));
    let app = match App::start(
        store,
        reporter,
        worker,
        false,
        crate::network::NetSetup::offline(),
    )
    .await
    {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let origin = Url::parse(&server.url("/")).expect("a URL");
    let (manager, _) = app.manager(&origin);
    say_(&format!(
        "\n2. The page (origin {}) calls:\n   registration.backgroundFetch.fetch('episode-5', ['/podcast/ep-5.mp3', '/podcast/ep-5-artwork.jpg'],\n     {{title: 'Episode 5: Interesting things.', icons: [{{src: '/podcast/ep-5-icon.png', sizes: '300x300'}}], downloadTotal: {}}})",
        origin.origin().ascii_serialization(),
        EPISODE_LEN + ARTWORK_LEN as u64
    ));
    let options = BackgroundFetchOptions {
        title: Some("Episode 5: Interesting things.".into()),
        icons: Some(vec![ImageResource {
            src: "/podcast/ep-5-icon.png".into(),
            sizes: Some("300x300".into()),
            r#type: Some("image/png".into()),
            label: None,
        }]),
        download_total: EPISODE_LEN + ARTWORK_LEN as u64,
        embedder_data: None,
    };
    let requests = vec![
        RequestInfo::from("/podcast/ep-5.mp3"),
        "/podcast/ep-5-artwork.jpg".into(),
    ];
    let reg = match manager.fetch("episode-5", requests, options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fetch() rejected: {e}");
            return exit::REJECTED;
        }
    };
    say_(&format!(
        "   fetch() resolved once the requests were stored: id {:?}, downloadTotal {}, result {:?}, recordsAvailable {}.\n\n\
         3. The browser downloads in the background (the progress below is what the browser UI shows; the page's\n   registration gets `progress` events). Killing the process now would lose nothing: `bgfetch run` resumes with Range.",
        reg.id(),
        human(reg.download_total()),
        reg.result().as_str(),
        reg.records_available()
    ));
    let uid = reg.uid();
    app.wait_settled(uid).await;
    app.engine.finished(uid).await;
    // The page's object hears of it through the protocol, as a task of the page's event loop
    // (the update was sent when the event ended): give that task its turn.
    for _ in 0..100 {
        if !reg.records_available() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    say_(&format!(
        "\n5. The event is over: the page's registration now says result {:?}, recordsAvailable {}; the stored\n   bodies were dropped, get('episode-5') resolves undefined, and the id can be used again.",
        reg.result().as_str(),
        reg.records_available()
    ));
    let requests = server.log().len();
    app.close().await;
    say_(&format!(
        "\nDone: {requests} requests to the local server, and the episode verified byte for byte."
    ));
    exit::SUCCESS
}
