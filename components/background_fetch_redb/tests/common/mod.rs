//! Test support: store helpers and a fault-injecting storage backend.

#![allow(dead_code)]

pub mod faulty;
pub mod hosts;
pub mod http;
pub mod script;

use background_fetch::store::{FetchMeta, Store};
use background_fetch::testing::store_contract;
use background_fetch::{FetchUid, RecordResult};
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use bytes::Bytes;
use std::path::Path;

/// Deterministic test bytes: a simple LCG stream, different per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// A config for tests: small buffers, no timers firing during a test.
pub fn config() -> RedbStoreConfig {
    RedbStoreConfig {
        cache_size: 4 << 20,
        group_commit_bytes: 2 << 20,
        group_commit_interval: std::time::Duration::from_secs(3600),
        compact_when_idle: None,
        ..RedbStoreConfig::default()
    }
}

pub fn open(path: &Path) -> RedbStore {
    RedbStore::open(path, config()).expect("open the store")
}

/// [`config`] with every body inline in redb (as every body was in schema version 1), for the
/// tests of inline chunks.
pub fn inline_config() -> RedbStoreConfig {
    RedbStoreConfig {
        inline_body_max: usize::MAX,
        ..config()
    }
}

pub fn open_inline(path: &Path) -> RedbStore {
    RedbStore::open(path, inline_config()).expect("open the store")
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Creates and commits fetch `uid` with `records` GET records under storage key `key`.
pub async fn create(store: &dyn Store, uid: u64, key: &str, records: usize) -> FetchMeta {
    let meta = store_contract::meta(uid, key, records);
    store.create_fetch(meta.clone()).await.expect("create");
    store
        .commit_fetch(FetchUid(uid), Default::default())
        .await
        .expect("commit");
    meta
}

/// Begins record `rec` (generation 0) and appends `body` in pieces of `piece` bytes.
pub async fn download(store: &dyn Store, uid: u64, rec: usize, body: &[u8], piece: usize) {
    let uid = FetchUid(uid);
    store
        .begin_response(uid, rec, 0, store_contract::head(200))
        .await
        .expect("begin");
    let mut off = 0;
    for c in body.chunks(piece) {
        store
            .append_response_body(uid, rec, 0, off as u64, Bytes::copy_from_slice(c))
            .await
            .expect("append");
        off += c.len();
    }
}

pub async fn complete(store: &dyn Store, uid: u64, rec: usize) {
    store
        .complete_record(FetchUid(uid), rec, 0, RecordResult::Success)
        .await
        .expect("complete");
}

/// Reads a whole response body in slices of `slice` bytes.
pub async fn read_body(
    store: &dyn Store,
    uid: u64,
    rec: usize,
    gen_: u32,
    slice: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = store
            .read_response_body(FetchUid(uid), rec, gen_, out.len() as u64, slice)
            .await
            .expect("read");
        if b.is_empty() {
            return out;
        }
        assert!(b.len() <= slice);
        out.extend_from_slice(&b);
    }
}

pub async fn assert_consistent(store: &RedbStore) -> background_fetch_redb::IntegrityReport {
    let report = store.check_integrity().await.expect("integrity check runs");
    assert!(report.is_ok(), "integrity problems: {:#?}", report.problems);
    report
}
