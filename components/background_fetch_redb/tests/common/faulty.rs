//! A redb storage backend that fails writes on command: a disk that is full past a given file
//! length (ENOSPC), or I/O errors (EIO) after a number of successful writes.

use background_fetch_redb::{BackendFactory, BodyFile, BodyFs, DirFs, body_dir};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the backend does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a plain file.
    None,
    /// The disk is full: the file cannot grow past this many bytes.
    DiskFullAt(u64),
    /// After `ok` more successful writes, fail `fail` writes (and syncs) with EIO.
    IoErrorAfter { ok: u64, fail: u64 },
}

/// Shared between the test and every backend the factory makes.
#[derive(Debug)]
pub struct FaultControl {
    fault: Mutex<Fault>,
    writes: Mutex<u64>,
    syncs: Mutex<u64>,
    failures: Mutex<u64>,
    file_failures: Mutex<u64>,
}

impl FaultControl {
    pub fn new() -> Arc<FaultControl> {
        Arc::new(FaultControl {
            fault: Mutex::new(Fault::None),
            writes: Mutex::new(0),
            syncs: Mutex::new(0),
            file_failures: Mutex::new(0),
            failures: Mutex::new(0),
        })
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Writes so far.
    pub fn writes(&self) -> u64 {
        *self.writes.lock().unwrap()
    }

    /// Syncs so far (of the database, body files and the body directory).
    pub fn syncs(&self) -> u64 {
        *self.syncs.lock().unwrap()
    }

    /// Failures injected so far into body files (writes, syncs, growth).
    pub fn file_failures(&self) -> u64 {
        *self.file_failures.lock().unwrap()
    }

    /// Counts a failure of a body file operation.
    fn on_file<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if r.is_err() {
            *self.file_failures.lock().unwrap() += 1;
        }
        r
    }

    /// Failures injected so far.
    pub fn failures(&self) -> u64 {
        *self.failures.lock().unwrap()
    }

    fn check_write(&self, offset: u64, len: u64) -> io::Result<()> {
        *self.writes.lock().unwrap() += 1;
        let mut fault = self.fault.lock().unwrap();
        match *fault {
            Fault::None => Ok(()),
            Fault::DiskFullAt(cap) if offset + len > cap => {
                *self.failures.lock().unwrap() += 1;
                Err(io::Error::from_raw_os_error(28)) // ENOSPC
            }
            Fault::DiskFullAt(_) => Ok(()),
            Fault::IoErrorAfter { ok, fail } => {
                if ok > 0 {
                    *fault = Fault::IoErrorAfter { ok: ok - 1, fail };
                    Ok(())
                } else if fail > 0 {
                    *fault = if fail > 1 {
                        Fault::IoErrorAfter {
                            ok: 0,
                            fail: fail - 1,
                        }
                    } else {
                        Fault::None
                    };
                    *self.failures.lock().unwrap() += 1;
                    Err(io::Error::from_raw_os_error(5)) // EIO
                } else {
                    Ok(())
                }
            }
        }
    }

    fn check_sync(&self) -> io::Result<()> {
        *self.syncs.lock().unwrap() += 1;
        match *self.fault.lock().unwrap() {
            Fault::IoErrorAfter { ok: 0, fail } if fail > 0 => {
                *self.failures.lock().unwrap() += 1;
                Err(io::Error::from_raw_os_error(5))
            }
            _ => Ok(()),
        }
    }

    fn check_len(&self, len: u64) -> io::Result<()> {
        match *self.fault.lock().unwrap() {
            Fault::DiskFullAt(cap) if len > cap => {
                *self.failures.lock().unwrap() += 1;
                Err(io::Error::from_raw_os_error(28))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    ctl: Arc<FaultControl>,
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.ctl.check_len(len)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.ctl.check_sync()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.ctl.check_write(offset, data.len() as u64)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

/// A factory for a faulty backend on the file at `path`.
pub fn factory(path: &Path, ctl: Arc<FaultControl>) -> BackendFactory {
    let path: PathBuf = path.to_owned();
    Arc::new(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let inner = FileBackend::new(file).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(FaultyBackend {
            inner,
            ctl: ctl.clone(),
        }) as Box<dyn StorageBackend>)
    })
}

/// Body files in a real directory whose writes, syncs and growth go through the same
/// [`FaultControl`] as the database's: a write or sync of a body file counts as one write point
/// (so `IoErrorAfter` can fail it), and a body file cannot grow past the `DiskFullAt` length.
#[derive(Debug)]
pub struct FaultyFs {
    inner: DirFs,
    ctl: Arc<FaultControl>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn BodyFile>,
    ctl: Arc<FaultControl>,
}

impl BodyFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.ctl
            .on_file(self.ctl.check_write(offset, data.len() as u64))?;
        self.inner.write_all_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.ctl.on_file(self.ctl.check_len(len))?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.ctl.on_file(self.ctl.check_sync())?;
        self.inner.sync_data()
    }
}

impl BodyFs for FaultyFs {
    fn open(&self, name: &str) -> io::Result<Arc<dyn BodyFile>> {
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open(name)?,
            ctl: self.ctl.clone(),
        }))
    }
    fn open_existing(&self, name: &str) -> io::Result<Option<Arc<dyn BodyFile>>> {
        Ok(self.inner.open_existing(name)?.map(|inner| {
            Arc::new(FaultyFile {
                inner,
                ctl: self.ctl.clone(),
            }) as Arc<dyn BodyFile>
        }))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.ctl.check_sync()?;
        self.inner.sync_dir()
    }
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.inner.path(name)
    }
}

/// Body files for the store at `path` (in its usual directory) that fail on command.
pub fn faulty_fs(path: &Path, ctl: Arc<FaultControl>) -> Arc<dyn BodyFs> {
    Arc::new(FaultyFs {
        inner: DirFs::new(body_dir(path)),
        ctl,
    })
}

/// Opens the store at `path` with its database and its body files failing on command.
pub fn open_faulty_store(
    path: &Path,
    ctl: &Arc<FaultControl>,
    config: background_fetch_redb::RedbStoreConfig,
) -> background_fetch_redb::RedbStore {
    background_fetch_redb::RedbStore::open_with_backends(
        path,
        factory(path, ctl.clone()),
        faulty_fs(path, ctl.clone()),
        config,
    )
    .expect("open")
}
