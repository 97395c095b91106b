//! An export never writes through a name someone else planted: the temporary file beside the
//! destination is created with `O_EXCL` (a symlink there is skipped, not followed), for each way
//! a body leaves the store (written out from inline chunks, copied from its file, hard-linked),
//! and for the in-memory store's streaming export.
//!
//! A test binary of its own: the temporary names are `.NAME.PID-N.part` with a counter that
//! starts at 0 in each process, so the names the exports here will try are known, and every one
//! of the first 64 is planted as a symlink to a file that must not change.

mod common;

use background_fetch::FetchUid;
use background_fetch::MemoryStore;
use background_fetch::store::{ExportMode, Store};
use common::*;
use std::path::Path;

const VICTIM: &[u8] = b"a file the exporting user can write, which nobody asked to change";

/// Plants `.NAME.PID-N.part -> victim` for N in 0..64, for every destination name in `names`.
fn plant(dir: &Path, names: &[&str], victim: &Path) {
    let pid = std::process::id();
    for name in names {
        for n in 0..64 {
            let link = dir.join(format!(".{name}.{pid}-{n}.part"));
            std::os::unix::fs::symlink(victim, link).unwrap();
        }
    }
}

fn check(dir: &Path, victim: &Path, dest: &str, body: &[u8]) {
    assert!(
        std::fs::read(victim).unwrap() == VICTIM,
        "{dest}: the export wrote through a planted symlink"
    );
    let path = dir.join(dest);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.is_file(), "{dest} is a file, not a symlink");
    assert!(
        std::fs::read(&path).unwrap() == body,
        "{dest} holds the body"
    );
}

#[test]
fn exports_skip_symlinks_planted_at_their_temporary_names() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, VICTIM).unwrap();
    let names = ["inline.bin", "copied.bin", "linked.bin", "memory.bin"];
    plant(&out, &names, &victim);

    let store = open(&scratch.path().join("s.redb"));
    let small = pattern(1, 1000);
    let large = pattern(2, 300_000);
    block_on(async {
        create(&store, 1, "k", 2).await;
        download(&store, 1, 0, &small, 1000).await;
        complete(&store, 1, 0).await;
        download(&store, 1, 1, &large, 65_536).await;
        complete(&store, 1, 1).await;
        for (rec, dest, mode, body) in [
            (0, "inline.bin", ExportMode::Move, &small),
            (1, "copied.bin", ExportMode::Copy, &large),
            (1, "linked.bin", ExportMode::Move, &large),
        ] {
            store
                .export_response_body(FetchUid(1), rec, 0, out.join(dest), mode)
                .await
                .unwrap_or_else(|e| panic!("{dest}: {e:?}"));
            check(&out, &victim, dest, body);
        }
    });

    let memory = MemoryStore::new();
    block_on(async {
        create(&memory, 2, "k", 1).await;
        download(&memory, 2, 0, &small, 100).await;
        complete(&memory, 2, 0).await;
        memory
            .export_response_body(FetchUid(2), 0, 0, out.join("memory.bin"), ExportMode::Move)
            .await
            .expect("memory store export");
        check(&out, &victim, "memory.bin", &small);
    });
}
