//! With a store, an app's caches live in the same redb database as its background fetches:
//! what `caches.open('x')` and `put()` stored in one run is matched in the next run.

use std::path::Path;
use std::process::Command;

fn bgfetch_js(root: &Path, store: &Path, page: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bgfetch-js"))
        .arg("--root")
        .arg(root)
        .arg("--store")
        .arg(store)
        .arg(page)
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
fn a_cache_put_in_one_run_is_matched_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("put.js"),
        "caches.open('x')\n\
         .then(c => c.put('/greeting', new Response('hello from the first run', {headers: {'X-Run': '1'}})))\n\
         .then(() => caches.open('gone')).then(c => c.put('/gone', new Response('bye')))\n\
         .then(() => caches.delete('gone'))\n\
         .then(() => console.log('stored'));\n",
    )
    .unwrap();
    std::fs::write(
        app.join("match.js"),
        "caches.keys().then(names => console.log('names', names.join(',')))\n\
         .then(() => caches.open('x')).then(c => c.match('/greeting'))\n\
         .then(r => r.text().then(t => console.log('matched', r.headers.get('X-Run'), t)));\n",
    )
    .unwrap();
    let store = dir.path().join("store.redb");

    let first = bgfetch_js(&app, &store, "put.js");
    assert!(first.contains("console.log: stored"), "{first}");

    let second = bgfetch_js(&app, &store, "match.js");
    assert!(second.contains("console.log: names x"), "{second}");
    assert!(
        second.contains("console.log: matched 1 hello from the first run"),
        "{second}"
    );
    assert!(
        second.contains("cache x: https://web-platform.test/greeting"),
        "{second}"
    );
}

#[test]
fn without_a_store_the_next_run_starts_with_no_cache() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("put.js"),
        "caches.open('x').then(c => c.put('/a', new Response('a')));\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("keys.js"),
        "caches.keys().then(names => console.log('names', names.length));\n",
    )
    .unwrap();
    for page in ["put.js", "keys.js"] {
        let out = Command::new(env!("CARGO_BIN_EXE_bgfetch-js"))
            .arg("--root")
            .arg(dir.path())
            .arg(page)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if page == "keys.js" {
            assert!(text.contains("console.log: names 0"), "{text}");
        }
    }
}
