//! The embedder's own rows: written durably beside the fetches, read back after a reopen, by
//! namespace and key prefix.

use background_fetch_redb::{RedbStore, RedbStoreConfig};
use futures::executor::block_on;

fn rows(store: &RedbStore, ns: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    block_on(store.rows(ns, prefix)).unwrap()
}

#[test]
fn a_store_that_never_had_rows_reads_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb"), RedbStoreConfig::default()).unwrap();
    assert!(rows(&store, "caches", "").is_empty());
}

#[test]
fn rows_survive_a_reopen_and_are_read_by_namespace_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let store = RedbStore::open(&path, RedbStoreConfig::default()).unwrap();
        block_on(store.write_rows(
            "caches",
            vec![
                ("body:1".into(), Some(b"one".to_vec())),
                ("body:2".into(), Some(b"two".to_vec())),
                ("names".into(), Some(b"[\"x\"]".to_vec())),
            ],
        ))
        .unwrap();
        block_on(store.write_rows("other", vec![("body:3".into(), Some(b"3".to_vec()))])).unwrap();
        block_on(store.write_rows("caches", vec![("body:2".into(), None)])).unwrap();
    }
    let store = RedbStore::open(&path, RedbStoreConfig::default()).unwrap();
    assert_eq!(
        rows(&store, "caches", "body:"),
        vec![("body:1".to_owned(), b"one".to_vec())]
    );
    assert_eq!(rows(&store, "caches", "").len(), 2);
    assert_eq!(
        rows(&store, "other", ""),
        vec![("body:3".to_owned(), b"3".to_vec())]
    );
    let report = block_on(store.check_integrity()).unwrap();
    assert!(report.is_ok(), "{report:?}");
}
