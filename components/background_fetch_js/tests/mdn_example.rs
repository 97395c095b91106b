//! MDN's Background Fetch example, page and service worker, served from loopback and run in
//! the host: the verbatim text (whose `waitUntil(async () => ...)` passes a function, so a
//! correct host runs nothing in it) and the intended version (records copied into a cache,
//! the UI updated).

use background_fetch_js::runner::{AppRun, Runner};
use std::path::Path;

fn run(worker: &'static str) -> AppRun {
    // Boa's interpreter wants a larger stack than a test thread's 2 MiB.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || run_on_this_thread(worker))
        .expect("a thread")
        .join()
        .expect("the app ran")
}

fn run_on_this_thread(worker: &str) -> AppRun {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/mdn");
    std::fs::copy(apps.join("index.js"), dir.path().join("index.js")).unwrap();
    std::fs::copy(apps.join(worker), dir.path().join("sw.js")).unwrap();
    std::fs::write(dir.path().join("ep-5.mp3"), vec![0x49u8; 200 * 1024]).unwrap();
    std::fs::write(dir.path().join("ep-5-artwork.jpg"), vec![0xffu8; 30 * 1024]).unwrap();
    let runner = Runner::new(dir.path()).expect("the loopback server starts");
    // What the embedder does before the page runs: the app's service worker is registered
    // (MDN leaves that step out) and the user granted background fetches.
    runner.run_app(
        "test_driver.set_permission({name: 'background-fetch'}, 'granted'); navigator.serviceWorker.register('/sw.js');",
        "index.js",
    )
}

#[test]
fn the_verbatim_example_runs_and_its_function_given_to_wait_until_is_never_called() {
    let run = run("sw.js");
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert!(
        run.console
            .iter()
            .any(|l| l.starts_with("log: Download progress: ")),
        "{:?}",
        run.console
    );
    assert_eq!(
        run.ui_titles.first().map(String::as_str),
        Some("Episode 5: Interesting things.")
    );
    assert!(
        !run.ui_titles
            .iter()
            .any(|t| t == "Movie download complete!"),
        "{:?}",
        run.ui_titles
    );
    assert!(run.caches.is_empty(), "{:?}", run.caches);
}

#[test]
fn the_intended_example_copies_the_records_into_a_cache_and_updates_the_ui() {
    let run = run("sw-intended.js");
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert!(
        run.ui_titles
            .iter()
            .any(|t| t == "Movie download complete!"),
        "{:?}",
        run.ui_titles
    );
    // The copies finish in any order (each waits for its own body).
    let mut caches = run.caches.clone();
    for (_, urls) in &mut caches {
        urls.sort();
    }
    assert_eq!(
        caches,
        vec![(
            "movies".to_owned(),
            vec![
                "https://web-platform.test/ep-5-artwork.jpg".to_owned(),
                "https://web-platform.test/ep-5.mp3".to_owned(),
            ]
        )]
    );
}
