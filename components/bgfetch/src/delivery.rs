//! `--out DIR`: each record's body delivered into a directory when its fetch succeeds.
//!
//! What a person can rely on:
//!
//! * Nothing is written to `DIR` while a fetch downloads: the bodies are in the store. At
//!   `backgroundfetchsuccess` the store hands each body to a temporary file in `DIR` named
//!   `.bgfetch-TOKEN-XXXXXX.part` (reserved with `O_EXCL`, never through a symlink, one per
//!   record) through its export: a **hard link** to the store's own body file when `DIR` is on
//!   the store's file system (no byte copied or written again), else a reflink or a kernel copy
//!   (`copy_file_range`); small bodies, kept inside the database, are written out. Either way the
//!   temporary file is whole and synced when the export returns, and readable only by the owner.
//! * On success each body gets the last segment of its URL as its name (shortened to fit the
//!   file system's 255 bytes); a name that is taken, by another record or by a file already in
//!   `DIR` (even one created while the fetch ran), gets `-1`, `-2`, ... before its extension.
//!   An existing file is never replaced: the rename into place refuses to overwrite.
//! * Every file is synced, renamed into place, and then `DIR` itself is synced; only then does
//!   the event end, the store drop its copy (its name for a linked file), and the program exit 0.
//! * Delivery is idempotent: which record went to which file (with the file's identity) is
//!   journalled in the store's data directory before the renames, so a success event fired again
//!   after a crash finds the files already in place instead of writing copies.
//! * If delivery fails (disk full, `DIR` removed...), the event stays unfinished: the fetch and
//!   every byte stay in the store, and `bgfetch run` delivers it once the cause is fixed.

use crate::app::{EventHandler, Handled};
pub use crate::data::FetchData;
use crate::names::{self, TEMPORARY_SUFFIX};
use crate::output::Reporter;
use crate::paths;
use background_fetch::service::client::{
    BackgroundFetchRecord, BackgroundFetchRegistration, FunctionalEvent,
};
use background_fetch::{BoxFuture, CacheQueryOptions, ExportMode, FetchUid, FunctionalEventKind};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempPath;

/// Checks `--out` before a fetch is registered: makes it (and its parents) if it is missing, and
/// makes sure it is a directory this user can create files in. Returns it absolute.
pub fn prepare_out_dir(dir: &Path) -> Result<PathBuf, String> {
    let abs = std::path::absolute(dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
    if let Ok(meta) = std::fs::metadata(&abs)
        && !meta.is_dir()
    {
        return Err(format!("--out {} is not a directory", abs.display()));
    }
    std::fs::create_dir_all(&abs)
        .map_err(|e| format!("--out {}: cannot create it: {e}", abs.display()))?;
    tempfile::Builder::new()
        .prefix(".bgfetch-probe-")
        .tempfile_in(&abs)
        .map_err(|e| format!("--out {}: cannot write in it: {e}", abs.display()))?;
    Ok(abs)
}

/// Whether `name` is one of fetch `token`'s temporary files: bgfetch's own
/// (`.bgfetch-TOKEN-XXXXXX.part`) or the one the store's export fills beside it before renaming
/// it over bgfetch's (`..bgfetch-TOKEN-XXXXXX.part.PID-N.part`).
fn is_temporary(name: &str, token: &str) -> bool {
    let prefix = names::temporary_prefix(token);
    let ours = name.starts_with(&prefix)
        || name
            .strip_prefix('.')
            .is_some_and(|n| n.starts_with(&prefix));
    ours && name.ends_with(TEMPORARY_SUFFIX)
}

/// Removes the temporary files that fetch `token` left in `dir` (after a crash while delivering,
/// or a failed delivery).
pub fn remove_temporary_files(dir: &Path, token: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if is_temporary(&e.file_name().to_string_lossy(), token) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Hands `record`'s body to a new temporary file in `dir` through the store's export
/// ([`ExportMode::Move`]: the fetch is deleted once its files are delivered, so the store may
/// give away its own file). The name is random and unused; the export makes the file there
/// whole and synced (created new or linked under a name of its own, then renamed: never through
/// a symlink), and syncs `dir`.
///
/// The name is not reserved by creating an empty file first: the export's rename would replace
/// it, so every record would make two inodes and free one, and ext4 scans the inodes it freed
/// recently each time it makes a file (1,000 small records took 2.3 s to deliver instead of
/// about 1; tests/delivery.rs::a_small_body_is_delivered_with_one_new_file).
async fn export_record(
    record: &BackgroundFetchRecord,
    dir: &Path,
    token: &str,
) -> Result<TempPath, String> {
    let url = &record.request().url;
    let prefix = names::temporary_prefix(token);
    let unused = loop {
        let name: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(6)
            .collect();
        let path = dir.join(format!("{prefix}{name}{TEMPORARY_SUFFIX}"));
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break path,
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(_) => continue,
        }
    };
    record
        .export_response_body(unused.clone(), ExportMode::Move)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    // From here on the file is ours to remove if delivery stops short.
    let exported = TempPath::try_from_path(&unused).map_err(|e| {
        let _ = std::fs::remove_file(&unused);
        format!("{}: {e}", unused.display())
    })?;
    make_private(&exported).map_err(|e| format!("{}: {e}", exported.display()))?;
    Ok(exported)
}

/// Delivered files are the owner's only, whatever the umask. The store's export makes them so
/// (0600 from the moment they exist); checked here with `lstat`, which costs no open and no lock
/// of the directory, and changed through a descriptor opened without following a symlink when
/// a store did not.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_file() && meta.permissions().mode() & 0o777 == 0o600 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

/// One line of a delivery journal: record `index` is (to be) at `name` in the directory, as the
/// file with identity `dev`/`ino`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Entry {
    index: usize,
    name: String,
    dev: u64,
    ino: u64,
}

/// Which record went to which file, for one fetch: JSON lines in the store's data directory,
/// synced before the renames they describe.
struct Journal {
    path: PathBuf,
    entries: HashMap<usize, Entry>,
}

impl Journal {
    fn open(store: &Path, token: &str) -> Journal {
        let path = paths::deliveries_dir(store).join(format!("{token}.jsonl"));
        let mut entries = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            // A torn last line (a crash while appending) is skipped: its rename never ran.
            for e in text
                .lines()
                .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            {
                entries.insert(e.index, e);
            }
        }
        Journal { path, entries }
    }

    /// The name record `index` was delivered to, if that file is still the one delivered.
    fn delivered(&self, dir: &Path, index: usize) -> Option<&str> {
        let e = self.entries.get(&index)?;
        let meta = std::fs::symlink_metadata(dir.join(&e.name)).ok()?;
        (meta.dev() == e.dev && meta.ino() == e.ino).then_some(e.name.as_str())
    }

    /// Appends `entries` and syncs them.
    fn record(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let parent = self.path.parent().expect("a journal has a directory");
        let new_dir = !parent.exists();
        paths::create_private_dir_all(parent)?;
        let new_file = !self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut text = String::new();
        for e in entries {
            text.push_str(&serde_json::to_string(e).expect("serialisable"));
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if new_file {
            sync_dir(parent)?;
        }
        if new_dir && let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
        for e in entries {
            self.entries.insert(e.index, e.clone());
        }
        Ok(())
    }
}

/// Removes fetch `token`'s delivery journal (its records are no longer in the store).
pub fn remove_journal(store: &Path, token: &str) {
    let dir = paths::deliveries_dir(store);
    let _ = std::fs::remove_file(dir.join(format!("{token}.jsonl")));
    // The directory goes too once no journal is left in it.
    let _ = std::fs::remove_dir(&dir);
}

/// Removes the journals of fetches the store no longer holds.
pub fn remove_stale_journals(store: &Path, live_tokens: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(paths::deliveries_dir(store)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(token) = name.strip_suffix(".jsonl")
            && !live_tokens.contains(token)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn identity(file: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::symlink_metadata(file)?;
    Ok((meta.dev(), meta.ino()))
}

/// The program's service worker role for `fetch` and `run`: delivers to `--out` on success.
pub struct OutDelivery {
    reporter: Arc<Reporter>,
    store: PathBuf,
}

impl OutDelivery {
    /// Delivery for the fetches of the store at `store`, reporting to `reporter`.
    pub fn new(reporter: Arc<Reporter>, store: &Path) -> Arc<OutDelivery> {
        Arc::new(OutDelivery {
            reporter,
            store: store.to_owned(),
        })
    }

    /// For a fetch with `--out` (per its `embedder_data`), as its process starts: removes the
    /// temporary files an earlier process left for it (one killed while delivering).
    pub fn start(&self, uid: FetchUid, embedder_data: Option<&str>) {
        let data = FetchData::parse(embedder_data);
        if let Some(dir) = &data.out {
            remove_temporary_files(dir, &data.token(uid));
        }
    }

    /// Writes every record's body into `dir` (see the module docs for the steps).
    async fn deliver(
        &self,
        reg: &BackgroundFetchRegistration,
        dir: &Path,
        token: &str,
        names: &[Option<String>],
    ) -> Result<(), String> {
        // A directory removed since the fetch started is made again.
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let records = reg
            .match_all(None, CacheQueryOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut journal = Journal::open(&self.store, token);
        let mut taken: HashSet<String> = HashSet::new();
        let mut done: Vec<(String, PathBuf)> = Vec::new();
        let mut to_write = Vec::new();
        for (index, record) in records.into_iter().enumerate() {
            if let Some(name) = journal.delivered(dir, index) {
                // Delivered before a crash: the success event fired again.
                taken.insert(name.to_owned());
                done.push((record.request().url.to_string(), dir.join(name)));
            } else {
                to_write.push((index, record));
            }
        }
        // 1. Every body whole in a temporary file, synced (the store's export; 16 at a time, so
        // that the syncs of small bodies overlap).
        let mut writes = futures::stream::iter(to_write)
            .map(|(index, record)| async move {
                let tmp = export_record(&record, dir, token).await?;
                Ok::<_, String>((index, record, tmp))
            })
            .buffer_unordered(16);
        let mut written = Vec::new();
        while let Some(w) = writes.next().await {
            written.push(w?);
        }
        drop(writes);
        written.sort_by_key(|(i, _, _)| *i);
        // 2. Names, in request order, journalled (synced) before any rename.
        let name_for = |base: &str, taken: &HashSet<String>, from: u32| {
            (from..)
                .map(|n| names::candidate(base, n))
                .find(|c| !taken.contains(c) && std::fs::symlink_metadata(dir.join(c)).is_err())
                .expect("some suffix is free")
        };
        let mut planned = Vec::new();
        let mut entries = Vec::new();
        for (index, record, tmp) in written {
            // The name the input file gave, else the URL's last segment.
            let base = match names.get(index).cloned().flatten() {
                Some(n) => n,
                None => names::base_name(&record.request().url),
            };
            let name = name_for(&base, &taken, 0);
            taken.insert(name.clone());
            let (dev, ino) = identity(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            entries.push(Entry {
                index,
                name: name.clone(),
                dev,
                ino,
            });
            planned.push((index, record.request().url.to_string(), base, name, tmp));
        }
        journal
            .record(&entries)
            .map_err(|e| format!("{}: {e}", journal.path.display()))?;
        // 3. Renames that never overwrite: a name taken since (by anyone) gets the next suffix.
        for (index, url, base, mut name, mut tmp) in planned {
            loop {
                let target = dir.join(&name);
                match tmp.persist_noclobber(&target) {
                    Ok(_) => {
                        done.push((url, target));
                        break;
                    }
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                        tmp = e.path;
                        taken.insert(name.clone());
                        name = name_for(&base, &taken, 1);
                        taken.insert(name.clone());
                        let (dev, ino) =
                            identity(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
                        journal
                            .record(&[Entry {
                                index,
                                name: name.clone(),
                                dev,
                                ino,
                            }])
                            .map_err(|e| format!("{}: {e}", journal.path.display()))?;
                    }
                    Err(e) => return Err(format!("{}: {}", target.display(), e.error)),
                }
            }
        }
        // 4. The directory synced: the renames are durable before the event ends.
        sync_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Every temporary file of this fetch still here was left by an earlier process (one
        // that died while delivering, for example).
        remove_temporary_files(dir, token);
        for (url, path) in done {
            self.reporter.saved(&reg.id(), &url, &path);
        }
        Ok(())
    }
}

impl EventHandler for OutDelivery {
    fn handle(
        self: Arc<Self>,
        event: FunctionalEvent,
        embedder_data: Option<String>,
    ) -> BoxFuture<'static, Handled> {
        let this = self;
        Box::pin(async move {
            let reg = event.registration().clone();
            let data = FetchData::parse(embedder_data.as_deref());
            let Some(dir) = &data.out else {
                return Handled::Done;
            };
            let token = data.token(reg.uid());
            match event.kind() {
                FunctionalEventKind::Success => {
                    match this.deliver(&reg, dir, &token, &data.names).await {
                        Ok(()) => Handled::Done,
                        Err(e) => {
                            remove_temporary_files(dir, &token);
                            Handled::Keep(format!(
                                "could not write the files to {}: {e}",
                                dir.display()
                            ))
                        }
                    }
                }
                FunctionalEventKind::Click => Handled::Done,
                _ => {
                    remove_temporary_files(dir, &token);
                    Handled::Done
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process killed while the store exported a body leaves the export's own temporary file
    /// (`..bgfetch-TOKEN-XXXXXX.part.PID-N.part`) beside bgfetch's: both are the fetch's, and
    /// removed; another fetch's and the user's files stay.
    #[test]
    fn temporary_files_of_a_fetch_include_the_exports_own() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".bgfetch-0123-abcdef.part",
            "..bgfetch-0123-abcdef.part.4242-7.part",
            ".bgfetch-9999-abcdef.part",
            "..bgfetch-9999-abcdef.part.4242-8.part",
            "bgfetch-0123-abcdef.part",
            "notes.part",
            ".bgfetch-0123-abcdef.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_temporary_files(dir.path(), "0123");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "..bgfetch-9999-abcdef.part.4242-8.part",
                ".bgfetch-0123-abcdef.txt",
                ".bgfetch-9999-abcdef.part",
                "bgfetch-0123-abcdef.part",
                "notes.part",
            ]
        );
    }
}
