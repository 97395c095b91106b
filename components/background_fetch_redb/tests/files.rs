//! Body files: large request and response bodies live in files beside the database, written
//! once; recovery cuts them to their durable length and removes files no record names; deleting
//! a fetch or starting a new generation removes them; small bodies share commits; export links,
//! reflinks or copies them.

mod common;

use background_fetch::FetchUid;
use background_fetch::store::{ExportMode, Exported, RecordState, Store, StoreErrorKind};
use background_fetch::testing::store_contract::{head, meta};
use background_fetch_redb::{RedbStore, RedbStoreConfig, body_dir};
use bytes::Bytes;
use common::faulty::{FaultControl, open_faulty_store};
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn body_files(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(body_dir(path)) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn a_large_body_is_written_once_to_its_file_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let body = pattern(1, 5_000_000);
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &body, 100_003).await;
        assert!(read_body(&store, 1, 0, 0, 65_536).await == body);
        complete(&store, 1, 0).await;
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.body_files, stats.body_file_bytes), (1, 5_000_000));
        let report = assert_consistent(&store).await;
        assert_eq!((report.chunks, report.body_files), (0, 1));
        assert_eq!(report.body_bytes, 5_000_000);
    });
    drop(store);
    let names = body_files(&path);
    assert_eq!(names, ["0000000000000001-00000000-00000000.response"]);
    let file = body_dir(&path).join(&names[0]);
    assert!(
        std::fs::read(&file).unwrap() == body,
        "the file is the body"
    );
    // The database holds rows, not the body.
    let db_len = std::fs::metadata(&path).unwrap().len();
    assert!(db_len < 5_000_000 / 2, "database of {db_len} bytes");
    let store = open(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(
            all[0].records[0].state,
            RecordState::Completed(background_fetch::RecordResult::Success)
        );
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body);
        assert_consistent(&store).await;
    });
}

#[test]
fn a_body_that_grows_past_the_inline_limit_moves_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    let body = pattern(2, 200_000);
    block_on(async {
        create(&store, 1, "k", 1).await;
        store
            .begin_response(FetchUid(1), 0, 0, head(200))
            .await
            .unwrap();
        // Committed inline first (below the limit), then moved with the bytes after it.
        let mut off = 0usize;
        for piece in body.chunks(30_000) {
            store
                .append_response_body(FetchUid(1), 0, 0, off as u64, Bytes::copy_from_slice(piece))
                .await
                .unwrap();
            off += piece.len();
            store.flush().await.unwrap();
            assert_consistent(&store).await;
        }
        let report = assert_consistent(&store).await;
        assert_eq!((report.chunks, report.body_files), (0, 1));
        assert!(read_body(&store, 1, 0, 0, 7_000).await == body);
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body);
        complete(&store, 1, 0).await;
        assert_consistent(&store).await;
    });
}

#[test]
fn large_request_bodies_are_stored_once_in_files_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    let upload = pattern(3, 300_000);
    block_on(async {
        let mut m = meta(1, "k", 2);
        m.requests[0].method = "PUT".into();
        store.create_fetch(m).await.unwrap();
        for piece in upload.chunks(64 * 1024) {
            store
                .append_request_body(FetchUid(1), 0, Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
        store
            .commit_fetch(FetchUid(1), Default::default())
            .await
            .unwrap();
        assert_eq!(store.stats().await.unwrap().body_files, 1);
    });
    drop(store);
    assert_eq!(body_files(&path), ["0000000000000001-00000000.request"]);
    let store = open(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all[0].upload_total, 300_000);
        let mut got = Vec::new();
        loop {
            let b = store
                .read_request_body(FetchUid(1), 0, got.len() as u64, 100_000)
                .await
                .unwrap();
            if b.is_empty() {
                break;
            }
            got.extend_from_slice(&b);
        }
        assert!(got == upload);
        assert_consistent(&store).await;
        store.delete_fetch(FetchUid(1)).await.unwrap();
    });
    assert!(body_files(&path).is_empty(), "{:?}", body_files(&path));
}

/// What a crash leaves: bytes in a body file past the length its row counts (written after the
/// last commit), a file of a generation that never committed, a file of a fetch whose deletion
/// committed. Recovery cuts and removes them, and leaves files it never makes alone.
#[test]
fn recovery_cuts_body_files_to_their_durable_length_and_removes_unnamed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let body = pattern(4, 1_000_000);
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &body, 100_000).await;
        store.flush().await.unwrap();
    });
    drop(store);
    let bodies = body_dir(&path);
    let name = "0000000000000001-00000000-00000000.response";
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(bodies.join(name))
            .unwrap();
        f.write_all(&[7u8; 12_345]).unwrap();
    }
    std::fs::write(
        bodies.join("0000000000000001-00000000-00000001.response"),
        b"never committed",
    )
    .unwrap();
    std::fs::write(bodies.join("0000000000000009-00000000.request"), b"deleted").unwrap();
    std::fs::write(bodies.join("README"), b"not ours").unwrap();
    let store = open(&path);
    assert_eq!(
        body_files(&path),
        ["0000000000000001-00000000-00000000.response", "README"]
    );
    assert_eq!(
        std::fs::metadata(bodies.join(name)).unwrap().len(),
        1_000_000
    );
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all[0].records[0].state, RecordState::Active);
        assert_eq!(all[0].records[0].body_length, 1_000_000);
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == body);
        // Appends continue at the durable length.
        store
            .append_response_body(FetchUid(1), 0, 0, 1_000_000, Bytes::from_static(b"xyz"))
            .await
            .unwrap();
        complete(&store, 1, 0).await;
        let mut expected = body.clone();
        expected.extend_from_slice(b"xyz");
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == expected);
        assert_consistent(&store).await;
    });
}

#[test]
fn a_new_generation_and_a_delete_remove_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 2).await;
        download(&store, 1, 0, &pattern(5, 500_000), 100_000).await;
        download(&store, 1, 1, &pattern(6, 500_000), 100_000).await;
        store.flush().await.unwrap();
        assert_eq!(body_files(&path).len(), 2);
        // A 200 answered a Range request: generation 1 starts over.
        store
            .begin_response(FetchUid(1), 0, 1, head(200))
            .await
            .unwrap();
        let fresh = pattern(7, 300_000);
        store
            .append_response_body(FetchUid(1), 0, 1, 0, Bytes::from(fresh.clone()))
            .await
            .unwrap();
        store
            .complete_record(FetchUid(1), 0, 1, background_fetch::RecordResult::Success)
            .await
            .unwrap();
        assert_eq!(
            body_files(&path),
            [
                "0000000000000001-00000000-00000001.response",
                "0000000000000001-00000001-00000000.response"
            ]
        );
        assert!(read_body(&store, 1, 0, 1, 1 << 20).await == fresh);
        assert_consistent(&store).await;
        store.delete_fetch(FetchUid(1)).await.unwrap();
        assert!(body_files(&path).is_empty());
        assert_consistent(&store).await;
    });
}

/// Records completing together share one commit: 200 small records, completed at once, cost
/// far fewer syncs than 200.
#[test]
fn small_records_completing_together_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let store = open_faulty_store(&path, &ctl, config());
    let n = 200;
    block_on(async {
        create(&store, 1, "k", n).await;
        for rec in 0..n {
            download(&store, 1, rec, &pattern(rec as u64, 4096), 4096).await;
        }
        let before = ctl.syncs();
        // Every completion is sent before any is answered, as parallel downloads do.
        let completions: Vec<_> = (0..n)
            .map(|rec| {
                store.complete_record(FetchUid(1), rec, 0, background_fetch::RecordResult::Success)
            })
            .collect();
        for r in futures::future::join_all(completions).await {
            r.unwrap();
        }
        let syncs = ctl.syncs() - before;
        assert!(syncs <= 40, "{syncs} syncs for {n} completions");
        assert_eq!(
            store.stats().await.unwrap().body_files,
            0,
            "small bodies stay inline"
        );
        for rec in [0, 57, n - 1] {
            assert!(read_body(&store, 1, rec, 0, 1 << 20).await == pattern(rec as u64, 4096));
        }
        assert_consistent(&store).await;
    });
}

fn same_file(a: &Path, b: &Path) -> bool {
    let (a, b) = (std::fs::metadata(a).unwrap(), std::fs::metadata(b).unwrap());
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[test]
fn export_links_a_body_file_when_the_store_no_longer_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let store = open(&path);
    let big = pattern(8, 2_000_000);
    let small = pattern(9, 1000);
    block_on(async {
        create(&store, 1, "k", 2).await;
        download(&store, 1, 0, &big, 100_000).await;
        complete(&store, 1, 0).await;
        download(&store, 1, 1, &small, 100_000).await;
        complete(&store, 1, 1).await;
        let file = body_dir(&path).join("0000000000000001-00000000-00000000.response");
        let how = store
            .export_response_body(FetchUid(1), 0, 0, out.join("copy.bin"), ExportMode::Copy)
            .await
            .unwrap();
        assert!(
            matches!(how, Exported::Reflinked | Exported::Copied),
            "{how:?}"
        );
        assert!(!same_file(&file, &out.join("copy.bin")));
        let how = store
            .export_response_body(FetchUid(1), 0, 0, out.join("big.bin"), ExportMode::Move)
            .await
            .unwrap();
        assert_eq!(how, Exported::Linked);
        assert!(same_file(&file, &out.join("big.bin")), "no byte copied");
        let how = store
            .export_response_body(FetchUid(1), 1, 0, out.join("small.bin"), ExportMode::Move)
            .await
            .unwrap();
        assert_eq!(how, Exported::Streamed, "an inline body is written out");
        store.delete_fetch(FetchUid(1)).await.unwrap();
        assert_consistent(&store).await;
    });
    assert!(std::fs::read(out.join("big.bin")).unwrap() == big);
    assert!(std::fs::read(out.join("copy.bin")).unwrap() == big);
    assert!(std::fs::read(out.join("small.bin")).unwrap() == small);
    assert!(body_files(&path).is_empty());
}

/// On another file system (`/dev/shm`, a tmpfs, when there is one) a `Move` cannot link: the
/// kernel copies (or the bytes are streamed) instead.
#[test]
fn export_to_another_file_system_copies() {
    let shm = Path::new("/dev/shm");
    let Ok(out) = tempfile::tempdir_in(shm) else {
        eprintln!("no /dev/shm: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    if std::fs::metadata(dir.path()).unwrap().dev() == std::fs::metadata(out.path()).unwrap().dev()
    {
        eprintln!("/dev/shm is the same file system: skipped");
        return;
    }
    let path = dir.path().join("s.redb");
    let store = open(&path);
    let big = pattern(10, 700_000);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &big, 100_000).await;
        complete(&store, 1, 0).await;
        let how = store
            .export_response_body(FetchUid(1), 0, 0, out.path().join("b"), ExportMode::Move)
            .await
            .unwrap();
        assert!(
            matches!(how, Exported::Copied | Exported::Reflinked),
            "{how:?}"
        );
    });
    assert!(std::fs::read(out.path().join("b")).unwrap() == big);
}

/// A version 1 store's large inline body is moved to its file when it is exported, so that it
/// can be linked.
#[test]
fn export_moves_a_large_inline_body_to_its_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let big = pattern(11, 1_500_000);
    let store = open_inline(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &big, 100_000).await;
        complete(&store, 1, 0).await;
    });
    drop(store);
    assert!(body_files(&path).is_empty());
    let store = open(&path);
    block_on(async {
        let how = store
            .export_response_body(FetchUid(1), 0, 0, dir.path().join("b"), ExportMode::Move)
            .await
            .unwrap();
        assert_eq!(how, Exported::Linked);
        let report = assert_consistent(&store).await;
        assert_eq!((report.chunks, report.body_files), (0, 1));
        assert!(read_body(&store, 1, 0, 0, 1 << 20).await == big);
    });
    assert!(std::fs::read(dir.path().join("b")).unwrap() == big);
}

#[test]
fn a_full_disk_inside_a_body_file_fails_only_that_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ctl = FaultControl::new();
    let config = RedbStoreConfig {
        group_commit_bytes: 256 * 1024,
        ..config()
    };
    let store = open_faulty_store(&path, &ctl, config);
    block_on(async {
        create(&store, 1, "a", 1).await;
        create(&store, 2, "b", 1).await;
        download(&store, 2, 0, &pattern(12, 10_000), 10_000).await;
        // Body files cannot grow past 600,000 bytes.
        ctl.set(common::faulty::Fault::DiskFullAt(600_000));
        store
            .begin_response(FetchUid(1), 0, 0, head(200))
            .await
            .unwrap();
        let big = pattern(13, 2_000_000);
        let mut off = 0usize;
        let err = loop {
            assert!(off < big.len(), "the disk never filled up");
            match store
                .append_response_body(
                    FetchUid(1),
                    0,
                    0,
                    off as u64,
                    Bytes::copy_from_slice(&big[off..off + 100_000]),
                )
                .await
            {
                Ok(()) => off += 100_000,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, StoreErrorKind::QuotaExceeded, "{err:?}");
        assert!(err.message.contains("disk is full"), "{}", err.message);
        // The other fetch commits.
        complete(&store, 2, 0).await;
        ctl.set(common::faulty::Fault::None);
        assert_consistent(&store).await;
    });
    drop(store);
    let store = RedbStore::open(&path, common::config()).unwrap();
    block_on(async {
        assert_consistent(&store).await;
        let all = store.load().await.unwrap();
        let r = &all[0].records[0];
        assert!(
            read_body(&store, 1, 0, 0, 1 << 20).await
                == pattern(13, 2_000_000)[..r.body_length as usize]
        );
        assert!(read_body(&store, 2, 0, 0, 1 << 20).await == pattern(12, 10_000));
    });
}

/// A fetch of many records writes its requests in pieces (no transaction holds them all, so
/// memory stays bounded); it exists only once `commit_fetch` wrote the last piece with its
/// record rows.
#[test]
fn a_fetch_of_many_records_is_created_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    let m = meta(1, "k", 20_000);
    block_on(async {
        store.create_fetch(m.clone()).await.unwrap();
        store
            .commit_fetch(FetchUid(1), Default::default())
            .await
            .unwrap();
        download(&store, 1, 19_999, b"last", 4).await;
        complete(&store, 1, 19_999).await;
        let report = assert_consistent(&store).await;
        assert_eq!(report.records, 20_000);
    });
    drop(store);
    let store = open(&path);
    block_on(async {
        let all = store.load().await.unwrap();
        assert_eq!(all[0].meta, m, "every request, in order");
        assert_eq!(all[0].records.len(), 20_000);
        assert!(read_body(&store, 1, 19_999, 0, 10).await == b"last");
        assert_consistent(&store).await;
    });
}

/// If the pieces of a creation cannot all be written, the fetch never comes to exist: its
/// `commit_fetch` fails, and what its pieces wrote is removed (also after a crash, when the
/// store discards the uncommitted fetch).
#[test]
fn a_creation_in_pieces_that_fails_leaves_nothing() {
    // A clean run counts the writes of the creation (4 transactions of requests and rows).
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let ctl = FaultControl::new();
        let store = open_faulty_store(&path, &ctl, config());
        block_on(async {
            create(&store, 7, "k", 1).await;
            store.create_fetch(meta(8, "k", 30_000)).await.unwrap();
            let before = ctl.writes();
            store
                .commit_fetch(FetchUid(8), Default::default())
                .await
                .unwrap();
            ctl.writes() - before
        })
    };
    assert!(total > 8, "{total} writes");
    let mut points = Vec::new();
    for k in 0..6 {
        points.push((k * total / 6, if k % 2 == 0 { 1 } else { u64::MAX }));
    }
    let mut failed = 0;
    for (ok, fail) in points {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let ctl = FaultControl::new();
        let store = open_faulty_store(&path, &ctl, config());
        let created = block_on(async {
            create(&store, 7, "k", 1).await;
            store.create_fetch(meta(8, "k", 30_000)).await.unwrap();
            ctl.set(common::faulty::Fault::IoErrorAfter { ok, fail });
            let r = store.commit_fetch(FetchUid(8), Default::default()).await;
            assert!(ctl.failures() > 0, "at {ok}/{fail}");
            match &r {
                Ok(()) => assert_eq!(fail, 1, "only a transient error is absorbed"),
                Err(e) => assert!(
                    matches!(e.kind, StoreErrorKind::Io | StoreErrorKind::QuotaExceeded),
                    "{e:?}"
                ),
            }
            if fail == 1 {
                // The disk works again: the leftovers of a failed creation go with the next
                // commit.
                assert_consistent(&store).await;
            }
            r.is_ok()
        });
        failed += usize::from(!created);
        // A crash (the store is dropped while the disk still fails, or after), then a clean
        // disk.
        drop(store);
        ctl.set(common::faulty::Fault::None);
        let store = open(&path);
        block_on(async {
            assert_consistent(&store).await;
            let all = store.load().await.unwrap();
            let uids: Vec<_> = all.iter().map(|f| f.meta.uid).collect();
            if created {
                assert_eq!(uids, [FetchUid(7), FetchUid(8)], "at {ok}/{fail}");
                assert_eq!(all[1].meta.requests.len(), 30_000);
            } else {
                assert_eq!(uids, [FetchUid(7)], "at {ok}/{fail}");
            }
        });
    }
    assert!(failed >= 3, "{failed} creations failed");
}

/// Bodies may carry anything a site sends (tokens, personal files): the body directory and
/// every body file are the owner's only, whatever the umask (the test process's is usually 022,
/// which would give 0755 and 0644).
#[test]
fn body_files_and_their_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    block_on(async {
        create(&store, 1, "k", 1).await;
        download(&store, 1, 0, &pattern(3, 200_000), 50_000).await;
        complete(&store, 1, 0).await;
    });
    drop(store);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&body_dir(&path)), 0o700, "the body directory");
    let names = body_files(&path);
    assert_eq!(names.len(), 1);
    assert_eq!(
        mode(&body_dir(&path).join(&names[0])),
        0o600,
        "{}",
        names[0]
    );
}
