//! The redb store's own behaviour: inline chunks, buffered reads, recovery, refusal of foreign
//! and newer files, purges, quotas, file growth. Body files: `tests/files.rs`.

mod common;

use background_fetch::store::{RecordState, Store, StoreErrorKind};
use background_fetch::testing::store_contract::{head, meta};
use background_fetch::{FetchUid, RecordResult, ServiceWorkerRegistrationId};
use background_fetch_redb::{CHUNK_SIZE, OpenError, RedbStore, RedbStoreConfig, SCHEMA_VERSION};
use bytes::Bytes;
use common::*;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::sync::Arc;

#[test]
fn inline_bodies_span_chunks_and_read_back_while_buffered_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let body = pattern(1, 2 * CHUNK_SIZE + 12_345);
    let store = open_inline(&path);
    block_on(async {
        create(&store, 1, "k", 2).await;
        // Odd-sized pieces, so pieces straddle chunk boundaries.
        download(&store, 1, 0, &body, 100_003).await;
        // Readable before anything forces a commit (some bytes are still buffered).
        assert!(read_body(&store, 1, 0, 0, 65_536).await == body);
        complete(&store, 1, 0).await;
        assert!(read_body(&store, 1, 0, 0, 7_777).await == body);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            stats.buffered_bytes, 0,
            "complete_record commits everything"
        );
        assert_consistent(&store).await;
    });
    drop(store);
    let store = open_inline(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all.len(), 1);
        let r = &all[0].records[0];
        assert_eq!(r.state, RecordState::Completed(RecordResult::Success));
        assert_eq!(r.body_length, body.len() as u64);
        assert_eq!(all[0].records[1].state, RecordState::Pending);
        assert!(read_body(&store, 1, 0, 0, CHUNK_SIZE + 1).await == body);
        let report = assert_consistent(&store).await;
        assert_eq!(report.chunks, 3);
        assert_eq!(report.body_bytes, body.len() as u64);
    });
}

/// Found by the `store_ops` fuzz target: a read whose `max` is near `usize::MAX` overflowed
/// `offset + max` on buffered bytes and killed the storage thread (every later call failed with
/// `Closed`).
#[test]
fn a_read_of_any_max_returns_what_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let body = pattern(3, 10_000);
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &body, 4_000).await;
        for offset in [0u64, 1, 3_999, 4_000, 9_999] {
            let b = store
                .read_response_body(FetchUid(1), 0, 0, offset, usize::MAX)
                .await
                .expect("a buffered read");
            let end = (offset as usize / 4_000 + 1) * 4_000;
            assert!(
                b[..] == body[offset as usize..end.min(body.len())],
                "at {offset}"
            );
        }
        complete(&store, 1, 0).await;
        let b = store
            .read_response_body(FetchUid(1), 0, 0, 17, usize::MAX)
            .await
            .expect("a committed read");
        assert!(b[..] == body[17..]);
        assert_consistent(&store).await;
    });
}

#[test]
fn partial_chunks_are_extended_by_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open_inline(&path);
    let body = pattern(2, CHUNK_SIZE + 50_000);
    block_on(async {
        create(&store, 7, "k", 1).await;
        store
            .begin_response(FetchUid(7), 0, 0, head(200))
            .await
            .unwrap();
        let mut off = 0;
        for c in body.chunks(333_333) {
            store
                .append_response_body(FetchUid(7), 0, 0, off, Bytes::copy_from_slice(c))
                .await
                .unwrap();
            off += c.len() as u64;
            // A durable commit after every piece: each rewrites the partial last chunk.
            store.flush().await.unwrap();
            assert_consistent(&store).await;
        }
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all[0].records[0].state, RecordState::Active);
        assert_eq!(all[0].records[0].body_length, body.len() as u64);
        assert!(read_body(&store, 7, 0, 0, 1 << 20).await == body);
    });
}

#[test]
fn group_commits_bound_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let config = RedbStoreConfig {
        group_commit_bytes: 3 << 20,
        ..common::config()
    };
    let store = RedbStore::open(&path, config).unwrap();
    block_on(async {
        create(&store, 1, "k", 2).await;
        for rec in 0..2 {
            store
                .begin_response(FetchUid(1), rec, 0, head(200))
                .await
                .unwrap();
        }
        let piece = pattern(3, 256 * 1024);
        let mut max_buffered = 0;
        for i in 0..40u64 {
            for rec in 0..2 {
                store
                    .append_response_body(
                        FetchUid(1),
                        rec,
                        0,
                        i * piece.len() as u64,
                        Bytes::from(piece.clone()),
                    )
                    .await
                    .unwrap();
            }
            max_buffered = max_buffered.max(store.stats().await.unwrap().buffered_bytes);
        }
        assert!(
            max_buffered <= (3 << 20) + piece.len() as u64,
            "buffered {max_buffered} bytes"
        );
        assert!(max_buffered > 0, "appends are buffered");
        assert_consistent(&store).await;
    });
}

#[test]
fn reopening_discards_uncommitted_fetches_and_keeps_active_records_at_their_durable_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    let body = pattern(4, 300_000);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &body, 65_536).await;
        store.flush().await.unwrap();
        // A fetch being created, with a request body, when the "crash" comes.
        let mut m = meta(2, "k", 1);
        m.requests[0].method = "PUT".into();
        store.create_fetch(m).await.unwrap();
        store
            .append_request_body(FetchUid(2), 0, Bytes::from(pattern(5, 3 << 20)))
            .await
            .unwrap();
        // Forces the uncommitted fetch and its request body into the file.
        store.flush().await.unwrap();
        assert_eq!(store.stats().await.unwrap().fetches, 2);
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all.len(), 1, "the uncommitted fetch is gone");
        assert_eq!(all[0].meta.uid, FetchUid(1));
        assert_eq!(all[0].records[0].state, RecordState::Active);
        assert_eq!(all[0].records[0].body_length, body.len() as u64);
        let report = assert_consistent(&store).await;
        assert_eq!(report.request_bytes, 0);
        assert_eq!(store.usage("k").await.unwrap(), body.len() as u64);
    });
}

const CHUNKS: TableDefinition<(u64, u32, u32), &[u8]> = TableDefinition::new("body_chunks");
const RECORDS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("records");
const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("bgfetch_schema");

#[test]
fn recovery_trims_chunks_past_the_durable_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let body = pattern(6, CHUNK_SIZE + 1000);
    let store = open_inline(&path);
    block_on(async {
        create(&store, 3, "k", 1).await;
        download(&store, 3, 0, &body, 1 << 20).await;
        store.flush().await.unwrap();
    });
    drop(store);
    // Damage the file the way a store that wrote chunks before their length would: an extra
    // chunk and a last chunk longer than the recorded length.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(CHUNKS).unwrap();
            let mut longer = t.get((3, 0, 1)).unwrap().unwrap().value().to_vec();
            assert_eq!(longer.len(), 1000);
            longer.extend_from_slice(&[9u8; 4000]);
            t.insert((3, 0, 1), longer.as_slice()).unwrap();
            t.insert((3, 0, 2), vec![9u8; 10].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open_inline(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all[0].records[0].body_length, body.len() as u64);
        assert!(read_body(&store, 3, 0, 0, 1 << 20).await == body);
        assert_consistent(&store).await;
        // And appends continue at the durable length.
        store
            .append_response_body(
                FetchUid(3),
                0,
                0,
                body.len() as u64,
                Bytes::from_static(b"xyz"),
            )
            .await
            .unwrap();
        complete(&store, 3, 0).await;
        assert_consistent(&store).await;
    });
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = b"these are not the bytes you are looking for".repeat(100);
    std::fs::write(&path, &content).unwrap();
    let err = RedbStore::open(&path, config()).expect_err("refused");
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err:?}");
    assert_eq!(err.path(), path);
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        content,
        "nothing was written"
    );

    // A redb database of something else.
    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, &str>::new("bookmarks"))
            .unwrap()
            .insert("a", "b")
            .unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(&other).unwrap();
    let err = RedbStore::open(&other, config()).expect_err("refused");
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("other.redb"), "{err}");
    assert!(err.to_string().contains("bookmarks"), "{err}");
    assert!(
        std::fs::read(&other).unwrap() == before,
        "nothing was written"
    );
}

#[test]
fn a_store_from_a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.redb");
    let store = open(&path);
    block_on(create(&store, 1, "k", 1));
    drop(store);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SCHEMA)
            .unwrap()
            .insert("version", SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = RedbStore::open(&path, config()).expect_err("refused");
    match &err {
        OpenError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("future.redb"), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "nothing was written"
    );
    // The fetch is still there for a newer build.
    let db = redb::Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    assert!(
        read.open_table(RECORDS)
            .unwrap()
            .get((1, 0))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _store = open(&path);
    let err = RedbStore::open(&path, config()).expect_err("locked");
    assert!(err.to_string().contains("s.redb"), "{err}");
}

#[test]
fn registrations_are_purged_only_on_the_hosts_word() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    block_on(async {
        create(&store, 1, "a.test", 1).await;
        create(&store, 2, "b.test", 1).await;
        create(&store, 3, "c.test", 1).await;
        download(&store, 2, 0, &pattern(7, 10_000), 4096).await;
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        let regs = store.registrations().await.unwrap();
        assert_eq!(regs.len(), 3, "reopening deletes nothing");
        let b = regs
            .iter()
            .find(|r| r.storage_key == "b.test")
            .unwrap()
            .clone();
        let purged = store.purge_registration(&b).await.unwrap();
        assert_eq!(purged, vec![FetchUid(2)]);
        assert_eq!(store.usage("b.test").await.unwrap(), 0);
        let keep: Vec<ServiceWorkerRegistrationId> = regs
            .into_iter()
            .filter(|r| r.storage_key == "a.test")
            .collect();
        let purged = store.retain_registrations(keep).await.unwrap();
        assert_eq!(purged, vec![FetchUid(3)]);
        assert_consistent(&store).await;
    });
    drop(store);
    let store = open(&path);
    let all = block_on(store.load()).unwrap();
    assert_eq!(
        all.iter().map(|f| f.meta.uid).collect::<Vec<_>>(),
        vec![FetchUid(1)]
    );
}

#[test]
fn quota_exceeded_fails_the_write_and_keeps_the_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let config = RedbStoreConfig {
        quota: Some(Arc::new(|_key: &str| Some(1_000_000))),
        ..common::config()
    };
    let store = RedbStore::open(&path, config).unwrap();
    block_on(async {
        create(&store, 1, "k", 1).await;
        store
            .begin_response(FetchUid(1), 0, 0, head(200))
            .await
            .unwrap();
        let mut off = 0u64;
        let err = loop {
            match store
                .append_response_body(FetchUid(1), 0, 0, off, Bytes::from(vec![1u8; 300_000]))
                .await
            {
                Ok(()) => off += 300_000,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, StoreErrorKind::QuotaExceeded);
        assert!(err.message.contains("quota"), "{}", err.message);
        assert_eq!(off, 900_000);
        assert_eq!(store.usage("k").await.unwrap(), 900_000);
        store
            .complete_record(FetchUid(1), 0, 0, RecordResult::QuotaExceeded)
            .await
            .unwrap();
        let report = assert_consistent(&store).await;
        assert_eq!(report.body_bytes, 900_000);
        // Other storage keys have their own quota.
        create(&store, 2, "other", 1).await;
        download(&store, 2, 0, &[5u8; 999_999], 100_000).await;
    });
}

#[test]
fn a_new_generation_discards_the_old_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open_inline(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &pattern(8, 2 * CHUNK_SIZE), 1 << 20).await;
        store.flush().await.unwrap();
        store
            .begin_response(FetchUid(1), 0, 1, head(200))
            .await
            .unwrap();
        assert_eq!(store.usage("k").await.unwrap(), 0);
        let fresh = pattern(9, 1234);
        store
            .append_response_body(FetchUid(1), 0, 1, 0, Bytes::from(fresh.clone()))
            .await
            .unwrap();
        store
            .complete_record(FetchUid(1), 0, 1, RecordResult::Success)
            .await
            .unwrap();
        let report = assert_consistent(&store).await;
        assert_eq!(report.chunks, 1);
        assert!(read_body(&store, 1, 0, 1, 100).await == fresh);
    });
}

#[test]
fn updated_title_and_icons_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        store
            .set_ui(FetchUid(1), "Downloading episode 4".into(), vec![])
            .await
            .unwrap();
    });
    drop(store);
    let store = open(&path);
    let all = block_on(store.load()).unwrap();
    assert_eq!(all[0].meta.title, "Downloading episode 4");
    assert_eq!(all[0].meta.id, "id-1");
}

/// Repeated create / fill / delete cycles: freed pages are reused, so the file stops growing;
/// compaction gives the free space back.
#[test]
fn the_file_does_not_grow_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open_inline(&path);
    let body = pattern(10, 4 * CHUNK_SIZE);
    let mut sizes = Vec::new();
    block_on(async {
        for cycle in 0..12u64 {
            create(&store, 100 + cycle, "k", 1).await;
            download(&store, 100 + cycle, 0, &body, 256 * 1024).await;
            complete(&store, 100 + cycle, 0).await;
            store.delete_fetch(FetchUid(100 + cycle)).await.unwrap();
            sizes.push(store.stats().await.unwrap().file_bytes);
        }
        let payload = body.len() as u64;
        let first = sizes[2];
        let last = *sizes.last().unwrap();
        assert!(
            last <= first + payload,
            "the file keeps growing: {sizes:?} (payload {payload})"
        );
        assert!(
            last < 6 * payload,
            "file {last} for a payload of {payload}: {sizes:?}"
        );
        let report = store.compact().await.unwrap();
        assert!(report.bytes_after < report.bytes_before, "{report:?}");
        assert!(report.bytes_after < payload / 2, "{report:?}");
        assert_consistent(&store).await;
    });
}

/// The file holds little more than the payload, thanks to chunks just under 1 MiB.
#[test]
fn chunks_just_under_a_power_of_two_keep_the_file_close_to_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open_inline(&path);
    let body = pattern(11, 24 << 20);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &body, 1 << 20).await;
        complete(&store, 1, 0).await;
        store.compact().await.unwrap();
        let stats = store.stats().await.unwrap();
        let ratio = stats.file_bytes as f64 / body.len() as f64;
        assert!(ratio < 1.25, "file/payload = {ratio:.2} ({stats:?})");
    });
}

#[test]
fn closed_store_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        store.close().await.unwrap();
        let e = store.load().await.expect_err("closed");
        assert_eq!(e.kind, StoreErrorKind::Closed);
    });
    // The file is released: another store opens it.
    drop(open(&path));
}

/// After deletions, an idle store compacts its file on its own.
#[test]
fn an_idle_store_compacts_after_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let config = RedbStoreConfig {
        compact_when_idle: Some(std::time::Duration::from_millis(50)),
        compact_min_free_bytes: 1 << 20,
        ..common::inline_config()
    };
    let store = RedbStore::open(&path, config).unwrap();
    let body = pattern(12, 6 * CHUNK_SIZE);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &body, 1 << 20).await;
        complete(&store, 1, 0).await;
        let full = store.stats().await.unwrap().file_bytes;
        store.delete_fetch(FetchUid(1)).await.unwrap();
        // Polls the file length (without touching the store, which would reset its idle clock).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let len = std::fs::metadata(&path).unwrap().len();
            if len < full / 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no idle compaction: {len} bytes of {full}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_consistent(&store).await;
    });
}
