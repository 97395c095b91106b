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

use background_fetch_redb::BackendFactory;
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

#[derive(Debug, Default)]
struct State {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    log: Vec<Logged>,
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
        if let Some(Fault::DiskFull { cap }) = self.fault
            && end > cap
            && end > self.volatile.len() as u64
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
    /// survive; every backend and factory made before is dead. Returns (kept, logged).
    pub(crate) fn crash(&self, keep: impl Fn(usize) -> bool) -> (usize, usize) {
        let mut st = self.lock();
        st.epoch += 1;
        let log = std::mem::take(&mut st.log);
        let mut image = std::mem::take(&mut st.durable);
        let mut kept = 0;
        for (i, entry) in log.iter().enumerate() {
            if keep(i) {
                apply(&mut image, entry);
                kept += 1;
            }
        }
        st.volatile = image.clone();
        st.durable = image;
        (kept, log.len())
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
