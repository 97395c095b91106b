//! A background fetch outlives the program that started it: `bgfetch-js --store` stops (its
//! `--timeout`) while MDN's example is still downloading; the next run on the same store, whose
//! page only registers the service worker again, resumes the fetch and fires
//! `backgroundfetchsuccess` at the new worker, which copies the records into its cache.

use std::path::Path;
use std::process::Command;

fn bgfetch_js(root: &Path, store: &Path, timeout: &str, page: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bgfetch-js"))
        .arg("--root")
        .arg(root)
        .arg("--store")
        .arg(store)
        .args(["--register", "/sw.js", "--timeout", timeout, page])
        .output()
        .expect("bgfetch-js runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_fetch_cut_off_by_the_end_of_the_program_resumes_in_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    let mdn = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/mdn");
    std::fs::copy(mdn.join("index.js"), app.join("index.js")).unwrap();
    std::fs::copy(mdn.join("sw-intended.js"), app.join("sw.js")).unwrap();
    std::fs::write(
        app.join("again.js"),
        "// The worker is registered by the embedder.\n",
    )
    .unwrap();
    std::fs::write(app.join("ep-5.mp3"), vec![0x49u8; 48 << 20]).unwrap();
    std::fs::write(app.join("ep-5-artwork.jpg"), vec![0xffu8; 30 * 1024]).unwrap();
    let store = dir.path().join("store.redb");

    let first = bgfetch_js(&app, &store, "0.05", "index.js");
    assert!(
        first.contains("ui: Episode 5: Interesting things."),
        "{first}"
    );
    assert!(
        !first.contains("Movie download complete!"),
        "the first run finished: {first}"
    );

    let second = bgfetch_js(&app, &store, "60", "again.js");
    assert!(second.contains("ui: Movie download complete!"), "{second}");
    assert!(
        second.contains(
            "cache movies: https://web-platform.test/ep-5-artwork.jpg https://web-platform.test/ep-5.mp3"
        ) || second.contains(
            "cache movies: https://web-platform.test/ep-5.mp3 https://web-platform.test/ep-5-artwork.jpg"
        ),
        "{second}"
    );
}
