//! `--out DIR`: each record's body delivered into a directory when its fetch succeeds.
//!
//! What a person can rely on:
//!
//! * While a fetch downloads, its records are written to temporary files in `DIR` named
//!   `.bgfetch-TOKEN-XXXXXX.part` (created with `O_EXCL`, never through a symlink, one per
//!   record, readable only by the owner). Nothing appears under a final name before
//!   `backgroundfetchsuccess`.
//! * On success each body gets the last segment of its URL as its name (shortened to fit the
//!   file system's 255 bytes); a name that is taken, by another record or by a file already in
//!   `DIR` (even one created while the fetch ran), gets `-1`, `-2`, ... before its extension.
//!   An existing file is never replaced: the rename into place refuses to overwrite.
//! * Every file is synced, renamed into place, and then `DIR` itself is synced; only then does
//!   the event end, the store drop its copy, and the program exit 0.
//! * Delivery is idempotent: which record went to which file (with the file's identity) is
//!   journalled in the store's data directory before the renames, so a success event fired again
//!   after a crash finds the files already in place instead of writing copies.
//! * If delivery fails (disk full, `DIR` removed...), the event stays unfinished: the fetch and
//!   every byte stay in the store, and `bgfetch run` delivers it once the cause is fixed.
//!
//! The store's own export (a later change) will replace how a temporary file is filled; the
//! steps after it stay as they are.

use crate::app::{EventHandler, Handled};
use crate::names::{self, TEMPORARY_SUFFIX};
use crate::output::Reporter;
use crate::paths;
use background_fetch::{
    BackgroundFetchRecord, BackgroundFetchRegistration, BoxFuture, CacheQueryOptions, FetchUid,
    FunctionalEvent, FunctionalEventKind,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

/// The embedder data stored with each fetch.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct FetchData {
    /// `--out DIR`, absolute.
    pub out: Option<PathBuf>,
    /// Names this fetch's temporary files and delivery journal (random, fixed at `fetch()`).
    #[serde(default)]
    pub token: Option<String>,
}

impl FetchData {
    /// The data for a new fetch delivering to `out`.
    pub fn new(out: Option<PathBuf>) -> FetchData {
        FetchData {
            out,
            token: Some(format!("{:016x}", fastrand::u64(..))),
        }
    }

    /// Reads a fetch's embedder data (anything unreadable counts as none).
    pub fn parse(data: Option<&str>) -> FetchData {
        data.and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default()
    }

    /// Serialises it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }

    /// What names fetch `uid`'s temporary files and journal: its token (a fetch stored by an
    /// earlier version has none: its uid then).
    pub fn token(&self, uid: FetchUid) -> String {
        self.token
            .clone()
            .unwrap_or_else(|| format!("uid{}", uid.0))
    }
}

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

/// Removes the temporary files that fetch `token` left in `dir` (after a crash, an abort with no
/// process running, or a failure).
pub fn remove_temporary_files(dir: &Path, token: &str) {
    let prefix = names::temporary_prefix(token);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(TEMPORARY_SUFFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn temporary_file(dir: &Path, token: &str) -> std::io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&names::temporary_prefix(token))
        .suffix(TEMPORARY_SUFFIX)
        .rand_bytes(6)
        .tempfile_in(dir)
}

/// Streams `record`'s body into a new temporary file in `dir`.
async fn write_record(
    record: &BackgroundFetchRecord,
    dir: &Path,
    token: &str,
) -> Result<NamedTempFile, String> {
    let url = &record.request().url;
    let response = record
        .response_ready()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let tmp = temporary_file(dir, token).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (file, path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("{url}: {e}"))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(NamedTempFile::from_parts(file.into_std().await, path))
}

/// A record being written to a temporary file while it downloads.
struct Prefetch {
    /// Completes with the temporary file once it holds the record's whole body.
    task: tokio::task::JoinHandle<Option<NamedTempFile>>,
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

fn identity(file: &NamedTempFile) -> std::io::Result<(u64, u64)> {
    let meta = file.as_file().metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// The program's service worker role for `fetch` and `run`: delivers to `--out` on success.
pub struct OutDelivery {
    reporter: Arc<Reporter>,
    store: PathBuf,
    prefetches: Mutex<HashMap<FetchUid, Vec<Prefetch>>>,
}

impl OutDelivery {
    /// Delivery for the fetches of the store at `store`, reporting to `reporter`.
    pub fn new(reporter: Arc<Reporter>, store: &Path) -> Arc<OutDelivery> {
        Arc::new(OutDelivery {
            reporter,
            store: store.to_owned(),
            prefetches: Mutex::default(),
        })
    }

    /// For a fetch with `--out` (per its `embedder_data`): starts writing each record to a
    /// temporary file in the directory while it downloads, so that the success event only has
    /// to sync and rename them. Temporary files an earlier process left for it are removed.
    pub fn start(&self, reg: &BackgroundFetchRegistration, embedder_data: Option<&str>) {
        let data = FetchData::parse(embedder_data);
        let Some(dir) = data.out.clone() else { return };
        let token = data.token(reg.uid());
        remove_temporary_files(&dir, &token);
        // Holding the map's lock while the records are listed keeps the entry in place before
        // any event can take it.
        let mut map = self.prefetches.lock().unwrap();
        let Some(records) =
            futures::FutureExt::now_or_never(reg.match_all(None, CacheQueryOptions::default()))
                .and_then(Result::ok)
        else {
            return;
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(16));
        let list = records
            .into_iter()
            .map(|record| {
                let (dir, token, slots) = (dir.clone(), token.clone(), slots.clone());
                let task = tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await.ok()?;
                    // A failed write (the record failed or restarted) is written again from the
                    // store at the success event.
                    write_record(&record, &dir, &token).await.ok()
                });
                Prefetch { task }
            })
            .collect();
        map.insert(reg.uid(), list);
    }

    fn take(&self, uid: FetchUid) -> Vec<Prefetch> {
        self.prefetches
            .lock()
            .unwrap()
            .remove(&uid)
            .unwrap_or_default()
    }

    /// Writes every record's body into `dir` (see the module docs for the steps).
    async fn deliver(
        &self,
        reg: &BackgroundFetchRegistration,
        dir: &Path,
        token: &str,
    ) -> Result<(), String> {
        let prefetched = self.take(reg.uid());
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
        let mut prefetched: Vec<Option<Prefetch>> = prefetched.into_iter().map(Some).collect();
        prefetched.resize_with(records.len(), || None);
        for (index, (record, pre)) in records.into_iter().zip(prefetched).enumerate() {
            if let Some(name) = journal.delivered(dir, index) {
                // Delivered before a crash: the success event fired again.
                taken.insert(name.to_owned());
                done.push((record.request().url.to_string(), dir.join(name)));
                if let Some(p) = pre {
                    p.task.abort();
                }
            } else {
                to_write.push((index, record, pre));
            }
        }
        // 1. Every body complete in a temporary file, synced.
        let mut writes = futures::stream::iter(to_write)
            .map(|(index, record, pre)| async move {
                let prefetched = match pre {
                    Some(p) => p.task.await.ok().flatten(),
                    None => None,
                };
                let tmp = match prefetched {
                    Some(t) => t,
                    None => write_record(&record, dir, token).await?,
                };
                let tmp =
                    tokio::task::spawn_blocking(move || tmp.as_file().sync_all().map(|()| tmp))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("{}: {e}", dir.display()))?;
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
            let base = names::base_name(&record.request().url);
            let name = name_for(&base, &taken, 0);
            taken.insert(name.clone());
            let (dev, ino) = identity(&tmp).map_err(|e| e.to_string())?;
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
                        tmp = e.file;
                        taken.insert(name.clone());
                        name = name_for(&base, &taken, 1);
                        taken.insert(name.clone());
                        let (dev, ino) = identity(&tmp).map_err(|e| e.to_string())?;
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
            self.reporter.saved(reg.id(), &url, &path);
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
                FunctionalEventKind::Success => match this.deliver(&reg, dir, &token).await {
                    Ok(()) => Handled::Done,
                    Err(e) => {
                        remove_temporary_files(dir, &token);
                        Handled::Keep(format!(
                            "could not write the files to {}: {e}",
                            dir.display()
                        ))
                    }
                },
                FunctionalEventKind::Click => Handled::Done,
                _ => {
                    for p in this.take(reg.uid()) {
                        p.task.abort();
                        let _ = p.task.await;
                    }
                    remove_temporary_files(dir, &token);
                    Handled::Done
                }
            }
        })
    }
}
