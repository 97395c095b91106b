//! The [`Store`] contract as checks any implementation can run.
//!
//! Each check takes `open`, a function returning a handle to the store under test. Calling it
//! again must give a handle to the **same** data (a reopen, for a persistent store); a check
//! drops its previous handle before calling `open` again. Checks use their own uids and storage
//! keys, so they can share one store.
//!
//! [`crate::store_contract_tests!`] generates one `#[test]` per check:
//!
//! ```
//! use background_fetch::MemoryStore;
//! use std::sync::Arc;
//! let store = MemoryStore::new();
//! let open = move || Arc::new(store.clone()) as Arc<dyn background_fetch::Store>;
//! futures::executor::block_on(background_fetch::testing::store_contract::response_generations(&open));
//! ```

use crate::fetch::{HeaderList, Request, ResponseHead, ResponseType};
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchResult, ClientSnapshot, FetchUid, ImageResource,
    RecordResult, ServiceWorkerRegistrationId,
};
use crate::store::{
    ExportMode, FetchMeta, RecordState, Store, StoreErrorKind, StoredFetch, StoredFlags,
};
use bytes::Bytes;
use std::sync::Arc;
use url::Url;

/// How checks get a store handle (a reopen of the same data on every call).
pub type Open<'a> = &'a (dyn Fn() -> Arc<dyn Store> + Sync);

/// Metadata of a fetch `uid` with `records` GET requests under storage key `key`.
pub fn meta(uid: u64, key: &str, records: usize) -> FetchMeta {
    let scope = Url::parse(&format!("https://{key}/")).expect("test URL");
    FetchMeta {
        uid: FetchUid(uid),
        registration: ServiceWorkerRegistrationId {
            storage_key: key.to_owned(),
            scope: scope.to_string(),
        },
        id: format!("id-{uid}"),
        download_total: 0,
        title: format!("fetch {uid}"),
        icons: vec![],
        client: ClientSnapshot::for_url(scope.clone()),
        requests: (0..records)
            .map(|i| Request::get(scope.join(&format!("r{i}")).expect("test URL")))
            .collect(),
        embedder_data: Some(format!("data-{uid}")),
    }
}

/// A response head with `status` and an `ETag`.
pub fn head(status: u16) -> ResponseHead {
    let mut headers = HeaderList::new();
    headers.append("etag", "\"v1\"");
    ResponseHead {
        status,
        status_text: "OK".into(),
        headers,
        url_list: vec![Url::parse("https://example.com/r").expect("test URL")],
        response_type: ResponseType::Basic,
        resume_headers: Default::default(),
    }
}

async fn read_all(store: &dyn Store, uid: FetchUid, record: usize, generation: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = store
            .read_response_body(uid, record, generation, out.len() as u64, 7)
            .await
            .expect("read");
        if b.is_empty() {
            return out;
        }
        assert!(b.len() <= 7, "read returned more than max");
        out.extend_from_slice(&b);
    }
}

fn find(all: &[StoredFetch], uid: u64) -> Option<&StoredFetch> {
    all.iter().find(|f| f.meta.uid == FetchUid(uid))
}

/// A committed fetch comes back from `load` with its metadata, request bodies and flags;
/// an uncommitted one never does.
pub async fn create_commit_load(open: Open<'_>) {
    let store = open();
    let mut m = meta(101, "contract-a", 2);
    m.requests[1].method = "POST".into();
    m.requests[1].body_length = Some(11);
    store.create_fetch(m.clone()).await.expect("create");
    store
        .append_request_body(FetchUid(101), 1, Bytes::from_static(b"hello "))
        .await
        .expect("append body");
    store
        .append_request_body(FetchUid(101), 1, Bytes::from_static(b"world"))
        .await
        .expect("append body");
    let prompt = StoredFlags {
        paused: true,
        awaiting_permission: true,
        aborted: false,
    };
    store
        .commit_fetch(FetchUid(101), prompt)
        .await
        .expect("commit");
    store
        .create_fetch(meta(102, "contract-a", 1))
        .await
        .expect("create uncommitted");
    drop(store);

    let store = open();
    let all = store.load().await.expect("load");
    let f = find(&all, 101).expect("the committed fetch is loaded");
    assert_eq!(f.meta, m);
    assert_eq!(f.flags, prompt);
    assert_eq!(f.upload_total, 11);
    assert_eq!(f.settled, None);
    assert_eq!(f.records.len(), 2);
    for r in &f.records {
        assert_eq!(r.state, RecordState::Pending);
        assert_eq!(r.body_length, 0);
        assert_eq!(r.response, None);
        assert!(!r.request_sent);
    }
    assert!(
        find(&all, 102).is_none(),
        "an uncommitted fetch is never loaded"
    );
    let mut body = Vec::new();
    loop {
        let b = store
            .read_request_body(FetchUid(101), 1, body.len() as u64, 4)
            .await
            .expect("read request body");
        if b.is_empty() {
            break;
        }
        body.extend_from_slice(&b);
    }
    assert_eq!(body, b"hello world");
    store.delete_fetch(FetchUid(101)).await.expect("delete");
}

/// Response bodies append at contiguous offsets, read back in slices (also while active), and a
/// new generation discards the previous bytes.
pub async fn response_generations(open: Open<'_>) {
    let store = open();
    let uid = FetchUid(201);
    store
        .create_fetch(meta(201, "contract-b", 1))
        .await
        .expect("create");
    store
        .commit_fetch(uid, StoredFlags::default())
        .await
        .expect("commit");
    store
        .begin_response(uid, 0, 0, head(200))
        .await
        .expect("begin");
    store
        .append_response_body(uid, 0, 0, 0, Bytes::from_static(b"0123456789"))
        .await
        .expect("append");
    store
        .append_response_body(uid, 0, 0, 10, Bytes::from_static(b"abcdef"))
        .await
        .expect("append");
    assert_eq!(read_all(&*store, uid, 0, 0).await, b"0123456789abcdef");
    let wrong = store
        .append_response_body(uid, 0, 0, 3, Bytes::from_static(b"x"))
        .await;
    assert_eq!(
        wrong.expect_err("a gap or overlap is refused").kind,
        StoreErrorKind::Corrupt
    );
    // A restart of the record: generation 1 discards generation 0's bytes.
    store
        .begin_response(uid, 0, 1, head(200))
        .await
        .expect("begin generation 1");
    let old = store.read_response_body(uid, 0, 0, 0, 100).await;
    assert_eq!(
        old.expect_err("the old generation is gone").kind,
        StoreErrorKind::Gone
    );
    let old_append = store
        .append_response_body(uid, 0, 0, 16, Bytes::from_static(b"x"))
        .await;
    assert_eq!(
        old_append.expect_err("the old generation is gone").kind,
        StoreErrorKind::Gone
    );
    store
        .append_response_body(uid, 0, 1, 0, Bytes::from_static(b"new"))
        .await
        .expect("append gen 1");
    assert_eq!(read_all(&*store, uid, 0, 1).await, b"new");
    store
        .complete_record(uid, 0, 1, RecordResult::Success)
        .await
        .expect("complete");
    drop(store);

    let store = open();
    let all = store.load().await.expect("load");
    let f = find(&all, 201).expect("loaded");
    assert_eq!(
        f.records[0].state,
        RecordState::Completed(RecordResult::Success)
    );
    assert_eq!(f.records[0].generation, 1);
    assert_eq!(f.records[0].body_length, 3);
    assert_eq!(f.records[0].response.as_ref().map(|h| h.status), Some(200));
    assert_eq!(read_all(&*store, uid, 0, 1).await, b"new");
    store.delete_fetch(uid).await.expect("delete");
}

/// A completed record's bytes and state survive a reopen; so do the flags, a request marked
/// sent, the title and icons, and the result.
pub async fn durable_state(open: Open<'_>) {
    let store = open();
    let uid = FetchUid(301);
    store
        .create_fetch(meta(301, "contract-c", 2))
        .await
        .expect("create");
    store
        .commit_fetch(uid, StoredFlags::default())
        .await
        .expect("commit");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    store
        .begin_response(uid, 0, 0, head(200))
        .await
        .expect("begin");
    for (i, chunk) in body.chunks(4096).enumerate() {
        store
            .append_response_body(uid, 0, 0, (i * 4096) as u64, Bytes::copy_from_slice(chunk))
            .await
            .expect("append");
    }
    store
        .complete_record(uid, 0, 0, RecordResult::Success)
        .await
        .expect("complete");
    store
        .begin_response(uid, 1, 0, head(404))
        .await
        .expect("begin");
    store
        .complete_record(uid, 1, 0, RecordResult::BadStatus)
        .await
        .expect("complete");
    store
        .mark_request_sent(uid, 1)
        .await
        .expect("mark the request sent");
    let flags = StoredFlags {
        paused: true,
        awaiting_permission: false,
        aborted: true,
    };
    store.set_flags(uid, flags).await.expect("set flags");
    let icons = vec![ImageResource {
        src: "https://contract-c/icon.png".into(),
        sizes: Some("64x64".into()),
        r#type: Some("image/png".into()),
        label: None,
    }];
    store
        .set_ui(uid, "New title".into(), icons.clone())
        .await
        .expect("set_ui");
    store
        .settle(
            uid,
            BackgroundFetchResult::Failure,
            BackgroundFetchFailureReason::BadStatus,
        )
        .await
        .expect("settle");
    drop(store);

    let store = open();
    let all = store.load().await.expect("load");
    let f = find(&all, 301).expect("loaded");
    assert_eq!(f.flags, flags);
    assert!(!f.records[0].request_sent);
    assert!(f.records[1].request_sent);
    assert_eq!(f.meta.title, "New title");
    assert_eq!(f.meta.icons, icons);
    assert_eq!(
        f.settled,
        Some((
            BackgroundFetchResult::Failure,
            BackgroundFetchFailureReason::BadStatus
        ))
    );
    assert_eq!(
        f.records[0].state,
        RecordState::Completed(RecordResult::Success)
    );
    assert_eq!(f.records[0].body_length, body.len() as u64);
    assert_eq!(
        f.records[1].state,
        RecordState::Completed(RecordResult::BadStatus)
    );
    assert_eq!(f.records[1].response.as_ref().map(|h| h.status), Some(404));
    let mut read = Vec::new();
    loop {
        let b = store
            .read_response_body(uid, 0, 0, read.len() as u64, 65536)
            .await
            .expect("read");
        if b.is_empty() {
            break;
        }
        read.extend_from_slice(&b);
    }
    assert!(read == body, "a completed record reads back byte for byte");
    // `max` is a limit, whatever its size (a read of usize::MAX once killed the redb store's
    // storage thread; found by the store_ops fuzz target).
    let all = store
        .read_response_body(uid, 0, 0, 1, usize::MAX)
        .await
        .expect("a read with the largest max");
    assert!(!all.is_empty() && body[1..].starts_with(&all));
    store.delete_fetch(uid).await.expect("delete");
}

/// An active record keeps its head and state; its durable length never exceeds what was
/// appended, and appends resume at that length.
pub async fn active_record_resumes(open: Open<'_>) {
    let store = open();
    let uid = FetchUid(401);
    store
        .create_fetch(meta(401, "contract-d", 1))
        .await
        .expect("create");
    store
        .commit_fetch(uid, StoredFlags::default())
        .await
        .expect("commit");
    store
        .begin_response(uid, 0, 0, head(200))
        .await
        .expect("begin");
    store
        .append_response_body(uid, 0, 0, 0, Bytes::from_static(b"abc"))
        .await
        .expect("append");
    drop(store);

    let store = open();
    let all = store.load().await.expect("load");
    let r = &find(&all, 401).expect("loaded").records[0];
    assert_eq!(r.state, RecordState::Active);
    assert_eq!(r.response.as_ref().map(|h| h.status), Some(200));
    assert!(r.body_length <= 3);
    let len = r.body_length;
    store
        .append_response_body(
            uid,
            0,
            0,
            len,
            Bytes::copy_from_slice(&b"abcdef"[len as usize..]),
        )
        .await
        .expect("resume appending at the durable length");
    store
        .complete_record(uid, 0, 0, RecordResult::Success)
        .await
        .expect("complete");
    assert_eq!(read_all(&*store, uid, 0, 0).await, b"abcdef");
    store.delete_fetch(uid).await.expect("delete");
}

/// Usage counts request and response bytes per storage key, and drops with `delete_fetch`.
pub async fn usage_per_storage_key(open: Open<'_>) {
    let store = open();
    let before_e = store.usage("contract-e").await.expect("usage");
    let before_f = store.usage("contract-f").await.expect("usage");
    let mut m = meta(501, "contract-e", 2);
    m.requests[0].method = "PUT".into();
    store.create_fetch(m).await.expect("create");
    store
        .append_request_body(FetchUid(501), 0, Bytes::from(vec![1u8; 1000]))
        .await
        .expect("append");
    store
        .commit_fetch(FetchUid(501), StoredFlags::default())
        .await
        .expect("commit");
    store
        .begin_response(FetchUid(501), 1, 0, head(200))
        .await
        .expect("begin");
    store
        .append_response_body(FetchUid(501), 1, 0, 0, Bytes::from(vec![2u8; 5000]))
        .await
        .expect("append");
    store
        .complete_record(FetchUid(501), 1, 0, RecordResult::Success)
        .await
        .expect("complete");
    let used = store.usage("contract-e").await.expect("usage") - before_e;
    assert!(
        (6000..6000 + 4096).contains(&used),
        "usage counts stored bytes: {used}"
    );
    assert_eq!(store.usage("contract-f").await.expect("usage"), before_f);
    store.delete_fetch(FetchUid(501)).await.expect("delete");
    assert_eq!(store.usage("contract-e").await.expect("usage"), before_e);
    // Deleting what does not exist succeeds.
    store
        .delete_fetch(FetchUid(501))
        .await
        .expect("delete again");
}

/// Operations on a fetch that does not exist fail with `Gone`.
pub async fn unknown_fetch_is_gone(open: Open<'_>) {
    let store = open();
    let uid = FetchUid(601);
    let e = store
        .begin_response(uid, 0, 0, head(200))
        .await
        .expect_err("no such fetch");
    assert_eq!(e.kind, StoreErrorKind::Gone);
    let e = store
        .read_response_body(uid, 0, 0, 0, 10)
        .await
        .expect_err("no such fetch");
    assert_eq!(e.kind, StoreErrorKind::Gone);
    let e = store
        .commit_fetch(uid, StoredFlags::default())
        .await
        .expect_err("no such fetch");
    assert_eq!(e.kind, StoreErrorKind::Gone);
    let e = store
        .set_flags(uid, StoredFlags::default())
        .await
        .expect_err("no such fetch");
    assert_eq!(e.kind, StoreErrorKind::Gone);
    let e = store
        .mark_request_sent(uid, 0)
        .await
        .expect_err("no such fetch");
    assert_eq!(e.kind, StoreErrorKind::Gone);
}

/// The uid floor stays above every uid ever created, deleted ones included, across reopens.
pub async fn uids_are_never_reused(open: Open<'_>) {
    let store = open();
    let before = store.uid_floor().await.expect("uid_floor");
    store
        .create_fetch(meta(before.max(700) + 5, "contract-g", 1))
        .await
        .expect("create");
    store
        .delete_fetch(FetchUid(before.max(700) + 5))
        .await
        .expect("delete");
    drop(store);
    let store = open();
    assert_eq!(
        store.uid_floor().await.expect("uid_floor"),
        before.max(700) + 6
    );
}

/// A directory for a check's files, removed when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(what: &str) -> ScratchDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "bgfetch-contract-{what}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Test bytes: `len` bytes that differ per `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// An exported body is its owner's only from the moment it exists (a body holds whatever a site
/// sent; under a umask of 022 a file made with the default mode is readable by everyone).
fn assert_owner_only(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .expect("exported")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// `export_response_body` hands a completed record's body to a path, readable by its owner
/// only, whole and replacing what
/// was there, in both modes, for a small and a large body (a store may keep them differently),
/// also after a reopen; the store's copy still reads back after a `Copy`; an active record, an
/// old generation and an unknown record are refused and leave nothing at the destination.
pub async fn export_response_body(open: Open<'_>) {
    let scratch = ScratchDir::new("export");
    let store = open();
    let uid = FetchUid(801);
    store
        .create_fetch(meta(801, "contract-h", 3))
        .await
        .expect("create");
    store
        .commit_fetch(uid, StoredFlags::default())
        .await
        .expect("commit");
    let bodies = [pattern(1, 100), pattern(2, 300_000), pattern(3, 5000)];
    for (i, body) in bodies.iter().enumerate() {
        store
            .begin_response(uid, i, 0, head(200))
            .await
            .expect("begin");
        let mut off = 0;
        for piece in body.chunks(40_000) {
            store
                .append_response_body(uid, i, 0, off, Bytes::copy_from_slice(piece))
                .await
                .expect("append");
            off += piece.len() as u64;
        }
    }
    for i in 0..2 {
        store
            .complete_record(uid, i, 0, RecordResult::Success)
            .await
            .expect("complete");
    }
    // Record 2 is still active: refused, nothing left at the destination.
    let active = scratch.0.join("active.bin");
    let e = store
        .export_response_body(uid, 2, 0, active.clone(), ExportMode::Copy)
        .await
        .expect_err("an active record is not exported");
    assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e:?}");
    assert!(!active.exists());
    let e = store
        .export_response_body(uid, 0, 1, scratch.0.join("x"), ExportMode::Copy)
        .await
        .expect_err("not the current generation");
    assert_eq!(e.kind, StoreErrorKind::Gone, "{e:?}");
    let e = store
        .export_response_body(uid, 9, 0, scratch.0.join("x"), ExportMode::Copy)
        .await
        .expect_err("no such record");
    assert_eq!(e.kind, StoreErrorKind::Gone, "{e:?}");
    assert!(!scratch.0.join("x").exists());
    for (i, body) in bodies.iter().enumerate().take(2) {
        let dest = scratch.0.join(format!("copy-{i}.bin"));
        std::fs::write(&dest, b"an older file").expect("an existing destination");
        store
            .export_response_body(uid, i, 0, dest.clone(), ExportMode::Copy)
            .await
            .expect("export a copy");
        assert!(
            std::fs::read(&dest).expect("exported") == *body,
            "record {i}"
        );
        assert_owner_only(&dest);
        // The store's copy is unchanged by writes to the destination.
        std::fs::write(&dest, b"changed").expect("overwrite the copy");
        assert!(read_all(&*store, uid, i, 0).await == *body);
    }
    drop(store);
    let store = open();
    for (i, body) in bodies.iter().enumerate().take(2) {
        let dest = scratch.0.join(format!("move-{i}.bin"));
        store
            .export_response_body(uid, i, 0, dest.clone(), ExportMode::Move)
            .await
            .expect("export after a reopen");
        assert_owner_only(&dest);
        assert!(
            std::fs::read(&dest).expect("exported") == *body,
            "record {i}"
        );
    }
    store.delete_fetch(uid).await.expect("delete");
    // The destination outlives the fetch.
    for (i, body) in bodies.iter().enumerate().take(2) {
        let dest = scratch.0.join(format!("move-{i}.bin"));
        assert!(std::fs::read(&dest).expect("kept") == *body, "record {i}");
    }
    // Only the destinations are in the directory: no temporary file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(&scratch.0)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["copy-0.bin", "copy-1.bin", "move-0.bin", "move-1.bin"]
    );
}

/// Generates one `#[test]` per store contract check for the store `open` opens (an expression
/// of type `impl Fn() -> Arc<dyn Store> + Sync`, evaluated once per test).
#[macro_export]
macro_rules! store_contract_tests {
    ($open:expr) => {
        $crate::store_contract_tests!(@one $open, contract_create_commit_load, create_commit_load);
        $crate::store_contract_tests!(@one $open, contract_response_generations, response_generations);
        $crate::store_contract_tests!(@one $open, contract_durable_state, durable_state);
        $crate::store_contract_tests!(@one $open, contract_active_record_resumes, active_record_resumes);
        $crate::store_contract_tests!(@one $open, contract_usage_per_storage_key, usage_per_storage_key);
        $crate::store_contract_tests!(@one $open, contract_unknown_fetch_is_gone, unknown_fetch_is_gone);
        $crate::store_contract_tests!(@one $open, contract_uids_are_never_reused, uids_are_never_reused);
        $crate::store_contract_tests!(@one $open, contract_export_response_body, export_response_body);
    };
    (@one $open:expr, $name:ident, $check:ident) => {
        #[test]
        fn $name() {
            let open = $open;
            futures::executor::block_on($crate::testing::store_contract::$check(&open));
        }
    };
}
