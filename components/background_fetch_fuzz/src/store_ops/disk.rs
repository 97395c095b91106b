//! `MemDisk`: an in-memory disk for redb that loses unsynced writes in a crash and fails writes
//! on command.
//!
//! * Writes land in a **volatile image** (what a reader sees: the OS page cache) and in a log of
//!   writes since the last successful `sync_data`; a successful `sync_data` replays the log onto
//!   the **durable image** (the platter). A failed `sync_data` makes nothing durable and keeps
//!   the log, so a later successful sync persists it (the optimistic reading of a failed fsync;
//!   see the target's module docs for why the Linux "fsyncgate" reading is not modelled).
//! * A **crash** keeps the durable image plus a chosen subset of the logged writes (applied in
//!   order: a disk may persist any of the writes it was given since the last flush), and bumps
//!   the epoch: every backend made before the crash fails all further I/O, and the factory made
//!   before it refuses to open (the process that held them is gone).
//! * **Faults**: the Nth write (or sync) after arming fails with EIO, once, a few times or for
//!   good; or the disk is full past a length (ENOSPC on writes and `set_len` that grow the file
//!   past it), as the store's own `tests/common/faulty.rs` does; or bad blocks (EIO on every
//!   write past an offset, while the header still writes: the store reopens the file fine, and
//!   then every commit fails).
//!
//! Every backend the factory makes shares one [`Disk`], so the store can reopen the file after an
//! I/O error and see what it wrote.
//!
//! The same disk holds the store's **body files** ([`Disk::body_fs`]): each file has its own
//! volatile and durable image and log of writes since its last `sync_data`, as the database
//! file does; its name exists durably once the directory is synced after it was created (and a
//! removed name comes back in a crash until the directory is synced). A crash keeps, per file
//! whose name survives, its durable image plus the chosen subset of its logged writes. Writes
//! and syncs of body files (and directory syncs) count against the same EIO faults as the
//! database's; bad blocks and a full disk apply to a body file's offsets as to the database's.

use background_fetch_redb::{BackendFactory, BodyFile, BodyFs};
use redb::{BackendError, StorageBackend};
use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// EIO.
const EIO: i32 = 5;
/// ENOSPC.
const ENOSPC: i32 = 28;

/// A fault armed on the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// After `ok` successful writes, fail `fail` writes (`u32::MAX`: every one) with EIO.
    WriteEio { ok: u32, fail: u32 },
    /// After `ok` successful syncs, fail `fail` syncs (`u32::MAX`: every one) with EIO.
    SyncEio { ok: u32, fail: u32 },
    /// The disk is full: the file cannot grow past `cap` bytes (ENOSPC).
    DiskFull { cap: u64 },
    /// Bad blocks: every write reaching past `from` fails with EIO, for good (the header at the
    /// start of the file is still written, so the store can reopen the file).
    BadBlocks { from: u64 },
}

/// One write since the last successful sync.
#[derive(Debug)]
enum Logged {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

fn apply(image: &mut Vec<u8>, entry: &Logged) {
    match entry {
        Logged::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                // A write past the end of a file extends it.
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Logged::SetLen(len) => image.resize(*len as usize, 0),
    }
}

/// A body file.
#[derive(Debug, Default)]
struct MemFile {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    log: Vec<Logged>,
}

#[derive(Debug, Default)]
struct State {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    log: Vec<Logged>,
    /// Body files by name, as a reader sees them.
    files: std::collections::BTreeMap<String, MemFile>,
    /// The names a crash keeps (as of the last directory sync), with their file's durable image
    /// (kept up to date by file syncs).
    durable_names: std::collections::BTreeSet<String>,
    /// Durable images of files whose names are durable but were removed since.
    removed: std::collections::BTreeMap<String, MemFile>,
    epoch: u64,
    fault: Option<Fault>,
    /// Failures injected so far (crash-dead handles not included).
    injected: u64,
}

impl State {
    fn eio(&mut self) -> io::Error {
        self.injected += 1;
        io::Error::from_raw_os_error(EIO)
    }

    /// Counts one write (or sync) against an EIO fault; `Err` if this one fails.
    fn count(&mut self, sync: bool) -> io::Result<()> {
        let (ok, fail) = match &mut self.fault {
            Some(Fault::WriteEio { ok, fail }) if !sync => (ok, fail),
            Some(Fault::SyncEio { ok, fail }) if sync => (ok, fail),
            _ => return Ok(()),
        };
        if *ok > 0 {
            *ok -= 1;
            return Ok(());
        }
        if *fail == 0 {
            return Ok(());
        }
        if *fail != u32::MAX {
            *fail -= 1;
        }
        Err(self.eio())
    }

    fn check_blocks(&mut self, end: u64) -> io::Result<()> {
        if let Some(Fault::BadBlocks { from }) = self.fault
            && end > from
        {
            return Err(self.eio());
        }
        Ok(())
    }

    fn check_len(&mut self, end: u64) -> io::Result<()> {
        let current = self.volatile.len() as u64;
        self.check_len_of(end, current)
    }

    fn check_len_of(&mut self, end: u64, current: u64) -> io::Result<()> {
        if let Some(Fault::DiskFull { cap }) = self.fault
            && end > cap
            && end > current
        {
            self.injected += 1;
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}

/// The disk: shared by the harness and every backend.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    state: Mutex<State>,
}

impl Disk {
    pub(crate) fn new() -> Arc<Disk> {
        Arc::new(Disk::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A factory for the current epoch: it refuses to open once the disk crashed.
    pub(crate) fn factory(self: &Arc<Disk>) -> BackendFactory {
        let disk = self.clone();
        let epoch = disk.lock().epoch;
        Arc::new(move || {
            if disk.lock().epoch != epoch {
                return Err(dead());
            }
            Ok(Box::new(MemBackend {
                disk: disk.clone(),
                epoch,
            }) as Box<dyn StorageBackend>)
        })
    }

    /// Failures injected so far.
    pub(crate) fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Length of what a reader sees.
    pub(crate) fn len(&self) -> u64 {
        self.lock().volatile.len() as u64
    }

    pub(crate) fn arm(&self, fault: Fault) {
        self.lock().fault = Some(fault);
    }

    pub(crate) fn disarm(&self) {
        self.lock().fault = None;
    }

    /// The machine crashes: the durable image plus the logged writes `keep` chooses (by index)
    /// survive, in the database and in every body file whose name survives; every backend and
    /// factory made before is dead. Returns (kept, logged).
    pub(crate) fn crash(&self, keep: impl Fn(usize) -> bool) -> (usize, usize) {
        let mut st = self.lock();
        st.epoch += 1;
        let log = std::mem::take(&mut st.log);
        let mut image = std::mem::take(&mut st.durable);
        let mut kept = 0;
        let mut logged = log.len();
        for (i, entry) in log.iter().enumerate() {
            if keep(i) {
                apply(&mut image, entry);
                kept += 1;
            }
        }
        st.volatile = image.clone();
        st.durable = image;
        // Body files: the names the directory holds durably, with their durable images plus
        // chosen writes (indices go on after the database's).
        let mut files = std::mem::take(&mut st.files);
        files.append(&mut std::mem::take(&mut st.removed));
        let names = st.durable_names.clone();
        let mut next = logged;
        for name in names {
            let Some(f) = files.remove(&name) else {
                continue;
            };
            let mut image = f.durable.clone();
            for entry in &f.log {
                if keep(next) {
                    apply(&mut image, entry);
                    kept += 1;
                }
                next += 1;
            }
            logged += f.log.len();
            st.files.insert(
                name,
                MemFile {
                    volatile: image.clone(),
                    durable: image,
                    log: Vec::new(),
                },
            );
        }
        (kept, logged)
    }

    /// The body files of the current epoch (dead after a crash, as the process is).
    pub(crate) fn body_fs(self: &Arc<Disk>) -> Arc<dyn BodyFs> {
        Arc::new(MemFs {
            disk: self.clone(),
            epoch: self.lock().epoch,
        })
    }
}

fn dead() -> io::Error {
    io::Error::other("the machine crashed: this handle belongs to a process that is gone")
}

/// A handle on the disk, valid until the next crash.
struct MemBackend {
    disk: Arc<Disk>,
    epoch: u64,
}

impl std::fmt::Debug for MemBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemBackend")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl MemBackend {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.disk.lock();
        if st.epoch != self.epoch {
            return Err(dead());
        }
        Ok(st)
    }
}

impl StorageBackend for MemBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state()?.volatile.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let st = self.state()?;
        let start = offset as usize;
        let end = start + out.len();
        if end > st.volatile.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {start}..{end} past the end ({})",
                    st.volatile.len()
                ),
            ));
        }
        out.copy_from_slice(&st.volatile[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state()?;
        st.check_len(len)?;
        st.volatile.resize(len as usize, 0);
        st.log.push(Logged::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state()?;
        st.count(true)?;
        let log = std::mem::take(&mut st.log);
        let mut durable = std::mem::take(&mut st.durable);
        for entry in &log {
            apply(&mut durable, entry);
        }
        st.durable = durable;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.state()?;
        st.count(false)?;
        st.check_blocks(offset + data.len() as u64)?;
        st.check_len(offset + data.len() as u64)?;
        let entry = Logged::Write {
            offset,
            data: data.to_vec(),
        };
        apply(&mut st.volatile, &entry);
        st.log.push(entry);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        Ok(())
    }

    // One process, one store at a time: every lock is granted.
    fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }
    fn try_lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }
    fn lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
    fn lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
    fn unlock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
    fn query_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(false)
    }
}

/// The body files of one epoch.
#[derive(Debug)]
struct MemFs {
    disk: Arc<Disk>,
    epoch: u64,
}

impl MemFs {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.disk.lock();
        if st.epoch != self.epoch {
            return Err(dead());
        }
        Ok(st)
    }

    fn handle(&self, name: &str) -> Arc<dyn BodyFile> {
        Arc::new(MemBodyFile {
            disk: self.disk.clone(),
            epoch: self.epoch,
            name: name.to_owned(),
        })
    }
}

impl BodyFs for MemFs {
    fn open(&self, name: &str) -> io::Result<Arc<dyn BodyFile>> {
        let mut st = self.state()?;
        if !st.files.contains_key(name) {
            st.files.insert(name.to_owned(), MemFile::default());
        }
        Ok(self.handle(name))
    }

    fn open_existing(&self, name: &str) -> io::Result<Option<Arc<dyn BodyFile>>> {
        let st = self.state()?;
        Ok(st.files.contains_key(name).then(|| self.handle(name)))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut st = self.state()?;
        if let Some(f) = st.files.remove(name)
            && st.durable_names.contains(name)
        {
            // Until the directory is synced, a crash brings the name back with its durable
            // bytes.
            st.removed.insert(name.to_owned(), f);
        }
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state()?.files.keys().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut st = self.state()?;
        st.count(true)?;
        st.durable_names = st.files.keys().cloned().collect();
        st.removed.clear();
        Ok(())
    }

    fn path(&self, _name: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// A handle on a body file, valid until the next crash (and while the file exists).
#[derive(Debug)]
struct MemBodyFile {
    disk: Arc<Disk>,
    epoch: u64,
    name: String,
}

impl MemBodyFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, &str) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.disk.lock();
        if st.epoch != self.epoch {
            return Err(dead());
        }
        if !st.files.contains_key(&self.name) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("body file {} was removed", self.name),
            ));
        }
        f(&mut st, &self.name)
    }
}

impl BodyFile for MemBodyFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|st, name| Ok(st.files[name].volatile.len() as u64))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|st, name| {
            let v = &st.files[name].volatile;
            let start = (offset as usize).min(v.len());
            let n = buf.len().min(v.len() - start);
            buf[..n].copy_from_slice(&v[start..start + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|st, name| {
            st.count(false)?;
            let end = offset + data.len() as u64;
            st.check_blocks(end)?;
            let current = st.files[name].volatile.len() as u64;
            st.check_len_of(end, current)?;
            let entry = Logged::Write {
                offset,
                data: data.to_vec(),
            };
            let f = st.files.get_mut(name).expect("exists");
            apply(&mut f.volatile, &entry);
            f.log.push(entry);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, name| {
            let current = st.files[name].volatile.len() as u64;
            st.check_len_of(len, current)?;
            let f = st.files.get_mut(name).expect("exists");
            f.volatile.resize(len as usize, 0);
            f.log.push(Logged::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, name| {
            st.count(true)?;
            let f = st.files.get_mut(name).expect("exists");
            let log = std::mem::take(&mut f.log);
            for entry in &log {
                apply(&mut f.durable, entry);
            }
            Ok(())
        })
    }
}
