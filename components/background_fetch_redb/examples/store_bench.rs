//! Writes N MiB through the redb store as the engine does (one record: `begin_response`, then
//! `append_response_body` in pieces, then `complete_record`), and the same bytes to a plain file
//! followed by `fsync`, in the same run; prints throughput and the process's peak RSS.
//!
//! ```text
//! cargo run --release -p background-fetch-redb --example store_bench -- 1024
//! cargo run --release -p background-fetch-redb --example store_bench -- 256 [piece KiB] [dir]
//! ```
//!
//! Run each size as its own process: peak RSS (VmHWM) is per process.

use background_fetch::store::{FetchMeta, Store};
use background_fetch::{
    ClientSnapshot, FetchUid, HeaderList, RecordResult, Request, ResponseHead, ResponseType,
    ServiceWorkerRegistrationId,
};
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use bytes::Bytes;
use std::io::Write;
use std::time::Instant;
use url::Url;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `total` bytes to a new file at `path` in pieces, then fsyncs; returns the time.
fn write_plain(path: &std::path::Path, total: u64, source: &[u8]) -> std::time::Duration {
    let started = Instant::now();
    {
        let mut f = std::fs::File::create(path).expect("create");
        let mut written = 0u64;
        while written < total {
            let chunk = Bytes::copy_from_slice(source);
            f.write_all(&chunk).expect("write");
            written += chunk.len() as u64;
        }
        f.sync_all().expect("fsync");
    }
    let t = started.elapsed();
    std::fs::remove_file(path).expect("remove");
    t
}

/// Bytes this process passed to write calls and read calls so far (`wchar`, `rchar`).
fn io_bytes() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("rchar:"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let piece_kib: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(256);
    let parent = args
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&parent).expect("temporary directory");
    let total = mib << 20;
    let piece = piece_kib << 10;
    // Bytes as a network would deliver them: a fresh buffer per piece.
    let source: Vec<u8> = (0..piece).map(|i| (i * 31 % 251) as u8).collect();

    let plain_first = write_plain(&dir.path().join("plain.bin"), total, &source);
    // The store.
    // Overrides, for exploring the settings: BENCH_CACHE_MIB, BENCH_GROUP_MIB, BENCH_QUICK_REPAIR=0.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let mut config = RedbStoreConfig::default();
    if let Some(c) = env("BENCH_CACHE_MIB") {
        config.cache_size = c << 20;
    }
    if let Some(g) = env("BENCH_GROUP_MIB") {
        config.group_commit_bytes = g << 20;
    }
    if let Some(q) = env("BENCH_QUICK_REPAIR") {
        config.quick_repair = q != 0;
    }
    let store = RedbStore::open(dir.path().join("bench.redb"), config.clone()).expect("open");
    let base = Url::parse("https://bench.example/").unwrap();
    let meta = FetchMeta {
        uid: FetchUid(1),
        registration: ServiceWorkerRegistrationId::for_scope(&base),
        id: "bench".into(),
        download_total: 0,
        title: "bench".into(),
        icons: vec![],
        client: ClientSnapshot::for_url(base.clone()),
        requests: vec![Request::get(base.join("big.bin").unwrap())],
        embedder_data: None,
    };
    let head = ResponseHead {
        status: 200,
        status_text: "OK".into(),
        headers: HeaderList::new(),
        url_list: vec![base.join("big.bin").unwrap()],
        response_type: ResponseType::Basic,
        resume_headers: Default::default(),
    };
    let io_before = io_bytes();
    let started = Instant::now();
    futures::executor::block_on(async {
        store.create_fetch(meta).await.expect("create");
        store
            .commit_fetch(FetchUid(1), Default::default())
            .await
            .expect("commit");
        store
            .begin_response(FetchUid(1), 0, 0, head)
            .await
            .expect("begin");
        let mut written = 0u64;
        let shared = Bytes::copy_from_slice(&source);
        let nocopy = std::env::var("BENCH_NOCOPY").is_ok();
        while written < total {
            let chunk = if nocopy {
                shared.clone()
            } else {
                Bytes::copy_from_slice(&source)
            };
            let n = chunk.len() as u64;
            store
                .append_response_body(FetchUid(1), 0, 0, written, chunk)
                .await
                .expect("append");
            written += n;
        }
        store
            .complete_record(FetchUid(1), 0, 0, RecordResult::Success)
            .await
            .expect("complete");
    });
    let redb = started.elapsed();
    let io_after = io_bytes();
    let stats = futures::executor::block_on(store.stats()).expect("stats");
    let peak = peak_rss_kib();
    futures::executor::block_on(store.close()).expect("close");

    // The plain file again, after the store, so that neither goes first on a cold disk.
    let plain_second = write_plain(&dir.path().join("plain.bin"), total, &source);
    let plain = plain_first.min(plain_second);
    let mibs = |d: std::time::Duration| mib as f64 / d.as_secs_f64();
    println!(
        "size {mib} MiB, pieces of {piece_kib} KiB, cache {} MiB, group commit {} MiB / {:?}, quick-repair {}",
        config.cache_size >> 20,
        config.group_commit_bytes >> 20,
        config.group_commit_interval,
        config.quick_repair
    );
    println!(
        "plain file + fsync: {:.2} s, {:.0} MiB/s (best of {:.2} s before and {:.2} s after the store)",
        plain.as_secs_f64(),
        mibs(plain),
        plain_first.as_secs_f64(),
        plain_second.as_secs_f64()
    );
    println!(
        "redb store:         {:.2} s, {:.0} MiB/s ({:.0}% of the plain file)",
        redb.as_secs_f64(),
        mibs(redb),
        100.0 * plain.as_secs_f64() / redb.as_secs_f64()
    );
    println!(
        "file {:.1} MiB for {mib} MiB of payload (written {:.1} MiB, read {:.1} MiB); peak RSS (VmHWM) {:.1} MiB",
        stats.file_bytes as f64 / (1 << 20) as f64,
        (io_after.0 - io_before.0) as f64 / (1 << 20) as f64,
        (io_after.1 - io_before.1) as f64 / (1 << 20) as f64,
        peak as f64 / 1024.0
    );
}
