//! A store written by schema version 1 (every body as chunks in redb) is migrated in place: the
//! test writes one with a small writer of the version 1 layout (as the code of commit 0942b28
//! wrote it), opens it with this build, and checks every byte and every state, the migrated
//! version number (which version 1 code refuses), an interrupted record resuming from its
//! durable length, and a large inline body moving to its file.

mod common;

use background_fetch::store::{ExportMode, Exported, RecordState, Store, StoredFlags};
use background_fetch::testing::store_contract::{head, meta};
use background_fetch::{FetchUid, RecordResult};
use background_fetch_redb::{OLDEST_MIGRATED_VERSION, SCHEMA_VERSION, body_dir};
use bytes::Bytes;
use common::*;
use redb::{ReadableDatabase, TableDefinition};
use std::path::Path;

/// The version 1 layout.
mod v1 {
    use super::*;
    pub const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("bgfetch_schema");
    pub const FETCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("fetches");
    pub const FETCH_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("fetch_state");
    pub const FETCH_UI: TableDefinition<u64, &[u8]> = TableDefinition::new("fetch_ui");
    pub const FETCH_INDEX: TableDefinition<(&str, &str, &str, u64), ()> =
        TableDefinition::new("fetch_index");
    pub const RECORDS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("records");
    pub const RESPONSE_HEADS: TableDefinition<(u64, u32), &[u8]> =
        TableDefinition::new("response_heads");
    pub const REQUEST_CHUNKS: TableDefinition<(u64, u32, u32), &[u8]> =
        TableDefinition::new("request_chunks");
    pub const BODY_CHUNKS: TableDefinition<(u64, u32, u32), &[u8]> =
        TableDefinition::new("body_chunks");
    /// Version 1 chunks: 1 MiB − 4 KiB.
    pub const CHUNK: usize = 1024 * 1024 - 4096;

    /// A format 1 record row: format, state, result, sent flag, generation, body length,
    /// request length.
    pub fn row(
        state: u8,
        result: u8,
        sent: bool,
        generation: u32,
        body: u64,
        request: u64,
    ) -> Vec<u8> {
        let mut out = vec![1, state, result, u8::from(sent)];
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&body.to_le_bytes());
        out.extend_from_slice(&request.to_le_bytes());
        out
    }

    pub struct Record<'a> {
        pub row: Vec<u8>,
        pub head: bool,
        pub body: &'a [u8],
        pub request: &'a [u8],
    }

    /// Writes fetch `uid` (committed, with `records`) as version 1 code did.
    pub fn write(path: &Path, uid: u64, records: &[Record<'_>], method0: &str) {
        let db = redb::Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut schema = txn.open_table(SCHEMA).unwrap();
            schema.insert("version", 1).unwrap();
            schema.insert("commit_seq", 7).unwrap();
            schema.insert("uid_floor", uid + 1).unwrap();
            let mut m = meta(uid, "migrated", records.len());
            m.requests[0].method = method0.into();
            txn.open_table(FETCHES)
                .unwrap()
                .insert(uid, serde_json::to_vec(&m).unwrap().as_slice())
                .unwrap();
            txn.open_table(FETCH_STATE)
                .unwrap()
                .insert(
                    uid,
                    br#"{"committed":true,"paused":true,"awaiting_permission":false,"aborted":false,"settled":null}"#
                        .as_slice(),
                )
                .unwrap();
            txn.open_table(FETCH_UI).unwrap();
            txn.open_table(FETCH_INDEX)
                .unwrap()
                .insert(
                    (
                        m.registration.storage_key.as_str(),
                        m.registration.scope.as_str(),
                        m.id.as_str(),
                        uid,
                    ),
                    (),
                )
                .unwrap();
            let mut rows = txn.open_table(RECORDS).unwrap();
            let mut heads = txn.open_table(RESPONSE_HEADS).unwrap();
            let mut bodies = txn.open_table(BODY_CHUNKS).unwrap();
            let mut requests = txn.open_table(REQUEST_CHUNKS).unwrap();
            for (i, r) in records.iter().enumerate() {
                let i = i as u32;
                rows.insert((uid, i), r.row.as_slice()).unwrap();
                if r.head {
                    heads
                        .insert((uid, i), serde_json::to_vec(&head(200)).unwrap().as_slice())
                        .unwrap();
                }
                for (n, c) in r.body.chunks(CHUNK).enumerate() {
                    bodies.insert((uid, i, n as u32), c).unwrap();
                }
                for (n, c) in r.request.chunks(CHUNK).enumerate() {
                    requests.insert((uid, i, n as u32), c).unwrap();
                }
            }
        }
        txn.commit().unwrap();
    }

    pub fn version(path: &Path) -> u64 {
        let db = redb::Database::open(path).unwrap();
        let read = db.begin_read().unwrap();
        read.open_table(SCHEMA)
            .unwrap()
            .get("version")
            .unwrap()
            .unwrap()
            .value()
    }
}

#[test]
fn a_version_1_store_is_migrated_in_place_and_nothing_is_misread() {
    assert_eq!((OLDEST_MIGRATED_VERSION, SCHEMA_VERSION), (1, 2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    let done = pattern(1, 2_500_000);
    let partial = pattern(2, 1_500_000);
    let upload = pattern(3, 70_000);
    v1::write(
        &path,
        5,
        &[
            // Completed (success), 3 chunks; its PUT request body, 1 chunk; the request was sent.
            v1::Record {
                row: v1::row(2, 1, true, 0, done.len() as u64, upload.len() as u64),
                head: true,
                body: &done,
                request: &upload,
            },
            // Active, generation 3: 1,100,000 durable bytes (and a chunk past them, as a crash
            // between writing and counting would have left, which recovery trims).
            v1::Record {
                row: v1::row(1, 0, false, 3, 1_100_000, 0),
                head: true,
                body: &partial[..1_200_000],
                request: &[],
            },
            // Pending.
            v1::Record {
                row: v1::row(0, 0, false, 0, 0, 0),
                head: false,
                body: &[],
                request: &[],
            },
        ],
        "PUT",
    );
    assert_eq!(v1::version(&path), 1);
    let store = open(&path);
    block_on(async {
        let report = assert_consistent(&store).await;
        assert_eq!(report.body_files, 0, "bodies stay inline until they grow");
        let all = store.load().await.unwrap();
        assert_eq!(all.len(), 1);
        let f = &all[0];
        assert_eq!(f.meta.uid, FetchUid(5));
        assert_eq!(f.meta.requests[0].method, "PUT");
        assert_eq!(
            f.flags,
            StoredFlags {
                paused: true,
                ..StoredFlags::default()
            }
        );
        assert_eq!(f.upload_total, upload.len() as u64);
        let r = &f.records;
        assert_eq!(r[0].state, RecordState::Completed(RecordResult::Success));
        assert!(r[0].request_sent);
        assert_eq!(r[0].body_length, done.len() as u64);
        assert_eq!(r[0].response, Some(head(200)));
        assert_eq!((r[1].state, r[1].generation), (RecordState::Active, 3));
        assert_eq!(r[1].body_length, 1_100_000);
        assert!(!r[1].request_sent);
        assert_eq!((r[2].state, r[2].body_length), (RecordState::Pending, 0));
        assert!(read_body(&store, 5, 0, 0, 333_333).await == done);
        assert!(read_body(&store, 5, 1, 3, 1 << 20).await == partial[..1_100_000]);
        let mut got = Vec::new();
        loop {
            let b = store
                .read_request_body(FetchUid(5), 0, got.len() as u64, 1 << 20)
                .await
                .unwrap();
            if b.is_empty() {
                break;
            }
            got.extend_from_slice(&b);
        }
        assert!(got == upload);
        // The interrupted record resumes from its durable length and completes: its body moves
        // to its file.
        store
            .append_response_body(
                FetchUid(5),
                1,
                3,
                1_100_000,
                Bytes::copy_from_slice(&partial[1_100_000..]),
            )
            .await
            .unwrap();
        store
            .complete_record(FetchUid(5), 1, 3, RecordResult::Success)
            .await
            .unwrap();
        assert!(read_body(&store, 5, 1, 3, 1 << 20).await == partial);
        // The completed version 1 body is linked out after moving to its file.
        let how = store
            .export_response_body(
                FetchUid(5),
                0,
                0,
                dir.path().join("done.bin"),
                ExportMode::Move,
            )
            .await
            .unwrap();
        assert_eq!(how, Exported::Linked);
        // Two response bodies, and the request body of record 0 (70,000 bytes, past the inline
        // limit) moved with its record's.
        let report = assert_consistent(&store).await;
        assert_eq!(report.body_files, 3);
    });
    drop(store);
    assert!(std::fs::read(dir.path().join("done.bin")).unwrap() == done);
    assert_eq!(
        v1::version(&path),
        2,
        "migrated: version 1 code refuses a version it does not know"
    );
    assert_eq!(std::fs::read_dir(body_dir(&path)).unwrap().count(), 3);
    // And it reopens as a version 2 store.
    let store = open(&path);
    block_on(async {
        assert_consistent(&store).await;
        assert!(read_body(&store, 5, 0, 0, 1 << 20).await == done);
        assert!(read_body(&store, 5, 1, 3, 1 << 20).await == partial);
    });
}
