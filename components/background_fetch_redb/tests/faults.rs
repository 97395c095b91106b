//! Fault injection through a storage backend that fails writes: a full disk (ENOSPC) and I/O
//! errors (EIO) at chosen points. The fetch being written fails with a clear reason; the store
//! reopens consistent with everything committed before intact.

mod common;

use background_fetch::store::{RecordState, Store, StoreErrorKind};
use background_fetch::testing::store_contract::head;
use background_fetch::{FetchUid, RecordResult};
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use bytes::Bytes;
use common::faulty::{Fault, FaultControl, open_faulty_store};
use common::*;
use std::path::Path;
use std::sync::Arc;

fn open_faulty(path: &Path, ctl: &Arc<FaultControl>, config: RedbStoreConfig) -> RedbStore {
    open_faulty_store(path, ctl, config)
}

#[test]
fn a_full_disk_fails_the_fetch_being_written_and_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    let body1 = pattern(1, 3 << 20);
    let piece = 512 * 1024;
    let mut appended = 0usize;
    block_on(async {
        create(&store, 1, "a", 1).await;
        download(&store, 1, 0, &body1, 200_000).await;
        complete(&store, 1, 0).await;
        create(&store, 2, "b", 1).await;
        store
            .begin_response(FetchUid(2), 0, 0, head(200))
            .await
            .unwrap();
        let file = store.stats().await.unwrap().file_bytes;
        ctl.set(Fault::DiskFullAt(file));
        let big = pattern(2, 200 * piece);
        let err = loop {
            assert!(appended < big.len(), "the disk never filled up");
            let c = Bytes::copy_from_slice(&big[appended..appended + piece]);
            match store
                .append_response_body(FetchUid(2), 0, 0, appended as u64, c)
                .await
            {
                Ok(()) => appended += piece,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, StoreErrorKind::QuotaExceeded, "{err:?}");
        assert!(err.message.contains("disk is full"), "{}", err.message);
        assert!(ctl.failures() > 0);
        // Further appends to the failed record keep failing with the same reason.
        let again = store
            .append_response_body(FetchUid(2), 0, 0, appended as u64, Bytes::from_static(b"x"))
            .await
            .expect_err("poisoned");
        assert_eq!(again.kind, StoreErrorKind::QuotaExceeded);
        // The committed fetch is untouched and readable.
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body1);
        // The engine then marks the record failed; this small write may or may not fit.
        let r = store
            .complete_record(FetchUid(2), 0, 0, RecordResult::QuotaExceeded)
            .await;
        if let Err(e) = r {
            assert_eq!(e.kind, StoreErrorKind::QuotaExceeded);
        }
        // Space is freed: the store works again.
        ctl.set(Fault::None);
        create(&store, 3, "c", 1).await;
        download(&store, 3, 0, &pattern(3, 100_000), 30_000).await;
        complete(&store, 3, 0).await;
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        assert_consistent(&store).await;
        let all = store.load().await.unwrap();
        assert_eq!(all.len(), 3);
        let f1 = &all[0];
        assert_eq!(
            f1.records[0].state,
            RecordState::Completed(RecordResult::Success)
        );
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body1);
        let f2 = &all[1];
        let len = f2.records[0].body_length as usize;
        assert!(len <= appended, "{len} > {appended}");
        let big = pattern(2, len);
        assert!(
            read_body(&store, 2, 0, 0, 1 << 20).await == big,
            "a prefix of what was sent"
        );
        assert!(read_body(&store, 3, 0, 0, 1 << 20).await == pattern(3, 100_000));
    });
}

#[test]
fn a_transient_io_error_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    // Less than a group commit: every byte is still buffered when the error comes.
    let body = pattern(4, 500_000);
    block_on(async {
        create(&store, 1, "a", 1).await;
        download(&store, 1, 0, &body, 100_000).await;
        assert_eq!(store.stats().await.unwrap().buffered_bytes, 500_000);
        ctl.set(Fault::IoErrorAfter { ok: 2, fail: 1 });
        complete(&store, 1, 0).await;
        assert_eq!(ctl.failures(), 1, "the fault fired");
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body);
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        assert_consistent(&store).await;
        let all = store.load().await.unwrap();
        assert_eq!(
            all[0].records[0].state,
            RecordState::Completed(RecordResult::Success)
        );
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body);
    });
}

/// A spill writes a large body's buffered bytes to its file without syncing them; a sync that
/// keeps failing afterwards fails the record (never reported complete), poisons its later
/// appends, and leaves it at its durable length.
#[test]
fn a_failing_sync_after_a_spill_fails_the_record_it_cost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    let body = pattern(4, 3_000_000);
    block_on(async {
        create(&store, 1, "a", 1).await;
        download(&store, 1, 0, &body, 100_000).await;
        // A spill runs after a batch of operations, and a loaded machine can let every append
        // and the first `stats()` land in one batch: the second `stats()` comes after it.
        store.stats().await.unwrap();
        let stats = store.stats().await.unwrap();
        assert!(
            stats.buffered_bytes < 3_000_000,
            "a spill wrote to the file"
        );
        assert_eq!(stats.body_files, 1);
        ctl.set(Fault::IoErrorAfter {
            ok: 0,
            fail: u64::MAX,
        });
        let e = store
            .complete_record(FetchUid(1), 0, 0, RecordResult::Success)
            .await
            .expect_err("the record lost bytes");
        assert_eq!(e.kind, StoreErrorKind::Io);
        ctl.set(Fault::None);
        let e = store
            .append_response_body(FetchUid(1), 0, 0, 3_000_000, Bytes::from_static(b"x"))
            .await
            .expect_err("poisoned");
        assert_eq!(e.kind, StoreErrorKind::Io);
        assert_consistent(&store).await;
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        assert_consistent(&store).await;
        let all = store.load().await.unwrap();
        let r = &all[0].records[0];
        assert_ne!(r.state, RecordState::Completed(RecordResult::Success));
        let len = r.body_length as usize;
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body[..len]);
    });
}

#[test]
fn a_lasting_io_error_fails_the_write_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    let done = pattern(5, 700_000);
    let body = pattern(6, 900_000);
    block_on(async {
        create(&store, 1, "a", 2).await;
        download(&store, 1, 0, &done, 100_000).await;
        complete(&store, 1, 0).await;
        download(&store, 1, 1, &body, 100_000).await;
        ctl.set(Fault::IoErrorAfter {
            ok: 0,
            fail: u64::MAX,
        });
        let e = store
            .complete_record(FetchUid(1), 1, 0, RecordResult::Success)
            .await
            .expect_err("the disk fails");
        assert_eq!(e.kind, StoreErrorKind::Io, "{e:?}");
        ctl.set(Fault::None);
        // The record's buffered bytes were lost with the failed commit: it does not complete.
        let e = store
            .complete_record(FetchUid(1), 1, 0, RecordResult::Success)
            .await
            .expect_err("its bytes were lost");
        assert_eq!(e.kind, StoreErrorKind::Io, "{e:?}");
        // What was committed before is intact.
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == done);
        assert_consistent(&store).await;
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        assert_consistent(&store).await;
        let all = store.load().await.unwrap();
        assert_eq!(
            all[0].records[0].state,
            RecordState::Completed(RecordResult::Success)
        );
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == done);
        // The interrupted record resumes from its durable length (nothing of it may have been
        // committed: its bytes were all buffered).
        let r = &all[0].records[1];
        let len = r.body_length as usize;
        if r.state == RecordState::Pending {
            assert_eq!(len, 0);
            store
                .begin_response(FetchUid(1), 1, 0, head(200))
                .await
                .unwrap();
        } else {
            assert_eq!(r.state, RecordState::Active);
        }
        assert!(read_body(&store, 1, 1, 0, 1 << 20).await == body[..len]);
        store
            .append_response_body(
                FetchUid(1),
                1,
                0,
                len as u64,
                Bytes::copy_from_slice(&body[len..]),
            )
            .await
            .unwrap();
        complete(&store, 1, 1).await;
        assert!(read_body(&store, 1, 1, 0, 1 << 20).await == body);
    });
}

/// Found by the `store_ops` fuzz target: a compaction that failed with an I/O error left redb's
/// failed handle in place, and with nothing to commit nothing reopened it, so
/// `check_integrity()` and `compact()` kept failing ("Previous I/O error") after the disk
/// recovered.
#[test]
fn a_failed_compaction_does_not_leave_the_store_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    block_on(async {
        for uid in 1..=3 {
            create(&store, uid, "k", 1).await;
            download(&store, uid, 0, &pattern(uid, 300_000), 100_000).await;
            complete(&store, uid, 0).await;
        }
        for uid in [1, 2] {
            store.delete_fetch(FetchUid(uid)).await.unwrap();
        }
        ctl.set(Fault::IoErrorAfter { ok: 0, fail: 1 });
        let e = store.compact().await.expect_err("the disk fails");
        assert_eq!(e.kind, StoreErrorKind::Io, "{e:?}");
        assert!(ctl.failures() > 0);
        ctl.set(Fault::None);
        assert_consistent(&store).await;
        store.compact().await.expect("the disk works again");
        assert!(read_body(&store, 3, 0, 0, 1 << 20).await == pattern(3, 300_000));
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        assert_consistent(&store).await;
        assert!(read_body(&store, 3, 0, 0, 1 << 20).await == pattern(3, 300_000));
    });
}

/// Found by the `store_ops` fuzz target: an I/O error made the store return a fetch that was
/// being created to its durable state, losing the request bytes it had buffered, and
/// `commit_fetch` then succeeded: the fetch existed, durably, with truncated request bodies.
#[test]
fn a_fetch_whose_request_bytes_were_lost_does_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    let (a, b) = (pattern(1, 100), pattern(2, 100));
    block_on(async {
        // Fetch 1 is being created: the first part of its request body reaches the disk with
        // fetch 2's commit, the second is buffered.
        let meta = background_fetch::testing::store_contract::meta(1, "k", 1);
        store.create_fetch(meta).await.unwrap();
        let uid = FetchUid(1);
        store
            .append_request_body(uid, 0, Bytes::from(a.clone()))
            .await
            .unwrap();
        create(&store, 2, "k", 1).await;
        store
            .append_request_body(uid, 0, Bytes::from(b.clone()))
            .await
            .unwrap();
        // Fetch 2 downloads past a (non-durable) group commit, then a write fails: the store
        // reopens the file and returns both fetches to their durable state.
        download(&store, 2, 0, &pattern(3, 1_500_000), 100_000).await;
        ctl.set(Fault::IoErrorAfter { ok: 0, fail: 1 });
        let _ = store
            .complete_record(FetchUid(2), 0, 0, RecordResult::Success)
            .await;
        ctl.set(Fault::None);
        assert!(ctl.failures() > 0);
        match store.commit_fetch(uid, Default::default()).await {
            Err(e) => assert!(
                matches!(e.kind, StoreErrorKind::Io | StoreErrorKind::QuotaExceeded),
                "{e:?}"
            ),
            Ok(()) => {
                let mut body = Vec::new();
                loop {
                    let more = store
                        .read_request_body(uid, 0, body.len() as u64, 1 << 20)
                        .await
                        .unwrap();
                    if more.is_empty() {
                        break;
                    }
                    body.extend_from_slice(&more);
                }
                assert!(
                    body == [a.clone(), b.clone()].concat(),
                    "committed with {} of the 200 request bytes appended",
                    body.len()
                );
            }
        }
        assert_consistent(&store).await;
    });
}

/// Found by the `store_ops` fuzz target: a delete that could not be written (the disk refuses
/// every commit, but the store reopens the file fine) returned `Ok`, so a crash brought the
/// deleted fetch back; and `check_integrity` reported the pending delete as a problem.
#[test]
fn a_delete_that_cannot_be_written_fails_and_stays_pending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty(&path, &ctl, config());
    block_on(async {
        create(&store, 1, "k", 1).await;
        create(&store, 2, "k", 1).await;
        // Writes past the header fail: commits fail, reopening works.
        ctl.set(Fault::DiskFullAt(4096));
        let e = store
            .delete_fetch(FetchUid(1))
            .await
            .expect_err("the delete cannot be written");
        assert_eq!(e.kind, StoreErrorKind::QuotaExceeded, "{e:?}");
        // The fetch is gone for the engine; the delete is pending, which is no inconsistency.
        let all = store.load().await.unwrap();
        assert_eq!(
            all.iter().map(|f| f.meta.uid).collect::<Vec<_>>(),
            [FetchUid(2)]
        );
        assert_consistent(&store).await;
    });
    // A crash now: the delete never reached the disk, so the fetch is still there (it was not
    // reported deleted).
    drop(store);
    ctl.set(Fault::None);
    let store = open(&path);
    block_on(async {
        assert_eq!(store.load().await.unwrap().len(), 2);
        // Deleting again works once the disk does.
        store.delete_fetch(FetchUid(1)).await.unwrap();
        assert_consistent(&store).await;
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(
            all.iter().map(|f| f.meta.uid).collect::<Vec<_>>(),
            [FetchUid(2)]
        );
    });
}

/// What the scenario of [`failures_at_every_point`] saw succeed.
#[derive(Default, Debug)]
struct Seen {
    /// (uid, record, body) whose complete_record returned Ok.
    completed: Vec<(u64, usize, Vec<u8>)>,
    /// Fetches whose commit_fetch returned Ok.
    committed: Vec<u64>,
    /// Fetches whose delete_fetch returned Ok.
    deleted: Vec<u64>,
    /// Fetches whose delete_fetch failed: the delete may or may not have reached the disk.
    delete_failed: Vec<u64>,
}

/// Two fetches downloading concurrently-interleaved, with completions, a delete and updates;
/// errors are tolerated and what succeeded is recorded.
async fn scenario(store: &RedbStore) -> Seen {
    let mut seen = Seen::default();
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|i| pattern(100 + i, 300_000 + i as usize * 400_000))
        .collect();
    for uid in [1u64, 2] {
        let m = background_fetch::testing::store_contract::meta(uid, "k", 2);
        if store.create_fetch(m).await.is_ok()
            && store
                .commit_fetch(FetchUid(uid), Default::default())
                .await
                .is_ok()
        {
            seen.committed.push(uid);
        }
    }
    for (uid, rec) in [(1u64, 0usize), (1, 1), (2, 0), (2, 1)] {
        let _ = store.begin_response(FetchUid(uid), rec, 0, head(200)).await;
    }
    let piece = 200_000;
    let mut offsets = [0usize; 4];
    let mut failed = [false; 4];
    loop {
        let mut progressed = false;
        for (i, (uid, rec)) in [(1u64, 0usize), (1, 1), (2, 0), (2, 1)]
            .into_iter()
            .enumerate()
        {
            let body = &bodies[i];
            if failed[i] || offsets[i] >= body.len() {
                continue;
            }
            progressed = true;
            let end = (offsets[i] + piece).min(body.len());
            match store
                .append_response_body(
                    FetchUid(uid),
                    rec,
                    0,
                    offsets[i] as u64,
                    Bytes::copy_from_slice(&body[offsets[i]..end]),
                )
                .await
            {
                Ok(()) => offsets[i] = end,
                Err(_) => failed[i] = true,
            }
            if offsets[i] == body.len()
                && store
                    .complete_record(FetchUid(uid), rec, 0, RecordResult::Success)
                    .await
                    .is_ok()
            {
                seen.completed.push((uid, rec, body.clone()));
            }
        }
        if !progressed {
            break;
        }
    }
    let _ = store.set_ui(FetchUid(2), "t".into(), vec![]).await;
    let _ = store
        .settle(
            FetchUid(1),
            background_fetch::BackgroundFetchResult::Success,
            background_fetch::BackgroundFetchFailureReason::Empty,
        )
        .await;
    if store.delete_fetch(FetchUid(1)).await.is_ok() {
        seen.deleted.push(1);
    } else {
        seen.delete_failed.push(1);
    }
    seen
}

/// An I/O error at the n-th write (of the database or of a body file, counted together), for n
/// over the whole scenario (sampled at 28 points), lasting or transient: whatever failed, the
/// store reopens consistent and every record whose completion was reported is there byte for
/// byte. Some of the points fall inside body files (the test says how many).
#[test]
fn failures_at_every_point() {
    let config = RedbStoreConfig {
        group_commit_bytes: 256 * 1024,
        ..common::config()
    };
    // A clean run counts the writes.
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let ctl = FaultControl::new();
        let store = open_faulty(&path, &ctl, config.clone());
        let before = ctl.writes();
        let seen = block_on(scenario(&store));
        assert_eq!(seen.completed.len(), 4);
        ctl.writes() - before
    };
    assert!(total > 10, "{total} writes");
    let points = 28u64;
    let mut failed_ops = 0;
    let mut in_files = 0;
    for i in 0..points {
        let at = i * total / points;
        for fail in [1, u64::MAX] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.redb");
            let ctl = FaultControl::new();
            let store = open_faulty(&path, &ctl, config.clone());
            ctl.set(Fault::IoErrorAfter { ok: at, fail });
            let seen = block_on(scenario(&store));
            if seen.completed.len() < 4 {
                failed_ops += 1;
            }
            in_files += ctl.file_failures();
            ctl.set(Fault::None);
            drop(store);
            let store = open(&path);
            block_on(async {
                assert_consistent(&store).await;
                let all = store.load().await.unwrap();
                for uid in &seen.committed {
                    let present = all.iter().any(|f| f.meta.uid == FetchUid(*uid));
                    let deleted = seen.deleted.contains(uid);
                    if !seen.delete_failed.contains(uid) {
                        assert!(
                            present != deleted,
                            "fetch {uid}: at {at}/{fail}: present {present}, deleted {deleted}"
                        );
                    }
                }
                for (uid, rec, body) in &seen.completed {
                    let Some(f) = all.iter().find(|f| f.meta.uid == FetchUid(*uid)) else {
                        assert!(seen.deleted.contains(uid) || seen.delete_failed.contains(uid));
                        continue;
                    };
                    assert_eq!(
                        f.records[*rec].state,
                        RecordState::Completed(RecordResult::Success)
                    );
                    assert!(
                        read_body(&store, *uid, *rec, 0, 1 << 20).await == *body,
                        "fault at write {at}"
                    );
                }
                for f in &all {
                    for (rec, r) in f.records.iter().enumerate() {
                        let i = (f.meta.uid.0 as usize - 1) * 2 + rec;
                        let expect = pattern(100 + i as u64, 300_000 + i * 400_000);
                        let got = read_body(&store, f.meta.uid.0, rec, 0, 1 << 20).await;
                        assert_eq!(got.len() as u64, r.body_length);
                        assert!(got == expect[..got.len()], "a prefix of what was appended");
                    }
                }
            });
        }
    }
    assert!(failed_ops > 0, "some faults made operations fail");
    assert!(in_files > 0, "some faults hit body files");
    eprintln!(
        "{points} write points × 2: {failed_ops} runs with failed operations, {in_files} failures inside body files"
    );
}
