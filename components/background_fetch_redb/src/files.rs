//! Body files: where large request and response bodies live, beside the redb database.
//!
//! The store reaches them through a [`BodyFs`], so that tests and the fuzz target can put them
//! on a disk that fails writes or crashes, as they do with redb's
//! [`StorageBackend`](redb::StorageBackend). [`DirFs`] is the real one: a directory of plain
//! files (by default `<database>.bodies` next to the database, [`body_dir`]).
//!
//! FIXME: [`DirFs`] uses `std::os::unix::fs::FileExt` (positioned reads and writes) and export
//! uses `FICLONE`: the crate builds on Unix only, as the workspace does today.
//!
//! A body file is append-only while its record downloads: bytes are written at the end, synced
//! (`fdatasync`) before the record row that counts them commits, and the file is cut back to the
//! row's length by recovery. The store never rewrites bytes below a durable length.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One open body file.
#[allow(clippy::len_without_is_empty)] // A file, not a collection.
pub trait BodyFile: Send + Sync + fmt::Debug {
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`.
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's bytes and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

/// A directory of body files.
pub trait BodyFs: Send + Sync + fmt::Debug {
    /// Opens file `name`, creating it (empty) if it does not exist.
    fn open(&self, name: &str) -> io::Result<Arc<dyn BodyFile>>;
    /// Opens file `name` if it exists.
    fn open_existing(&self, name: &str) -> io::Result<Option<Arc<dyn BodyFile>>>;
    /// Removes file `name`; a file that does not exist is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// The names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Makes the directory's entries durable (files created or removed since the last call).
    fn sync_dir(&self) -> io::Result<()>;
    /// The path of file `name` on the host's file system, if the files are real files (then
    /// export may link, reflink or `copy_file_range` them; else it streams).
    fn path(&self, name: &str) -> Option<PathBuf>;
}

/// The directory of body files of the store whose database is at `db_path`:
/// `<db_path>.bodies`.
pub fn body_dir(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push(".bodies");
    PathBuf::from(s)
}

/// Body files in a directory of the host's file system (created on first use).
#[derive(Debug, Clone)]
pub struct DirFs {
    dir: PathBuf,
}

impl DirFs {
    /// Body files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DirFs {
        DirFs { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[derive(Debug)]
struct StdBodyFile(File);

impl BodyFile for StdBodyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl BodyFs for DirFs {
    fn open(&self, name: &str) -> io::Result<Arc<dyn BodyFile>> {
        let path = self.dir.join(name);
        // Bodies are the owner's only, whatever the umask: they hold whatever sites sent.
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)?;
                open()?
            }
            other => other?,
        };
        Ok(Arc::new(StdBodyFile(file)))
    }

    fn open_existing(&self, name: &str) -> io::Result<Option<Arc<dyn BodyFile>>> {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(name))
        {
            Ok(f) => Ok(Some(Arc::new(StdBodyFile(f)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn sync_dir(&self) -> io::Result<()> {
        match File::open(&self.dir) {
            Ok(d) => d.sync_all(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        Some(self.dir.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_fs_creates_its_directory_on_first_use() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = DirFs::new(tmp.path().join("store.redb.bodies"));
        assert_eq!(fs.list().unwrap(), Vec::<String>::new());
        assert!(fs.open_existing("a").unwrap().is_none());
        let f = fs.open("a").unwrap();
        f.write_all_at(0, b"hello").unwrap();
        f.write_all_at(5, b" world").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir().unwrap();
        let mut buf = [0u8; 20];
        assert_eq!(f.read_at(6, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"world");
        f.set_len(5).unwrap();
        assert_eq!(f.len().unwrap(), 5);
        assert_eq!(fs.list().unwrap(), ["a"]);
        fs.remove("a").unwrap();
        fs.remove("a").unwrap();
        assert!(fs.list().unwrap().is_empty());
        assert_eq!(
            body_dir(Path::new("/x/store.redb")),
            Path::new("/x/store.redb.bodies")
        );
    }
}
