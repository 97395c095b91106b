//! Export: handing a completed record's body to a path ([`Store::export_response_body`]).
//!
//! The storage thread finds the body (a durable, complete file, or a few inline chunks) and
//! hands the copy to a thread of its own, so that a large copy never holds up the store:
//!
//! * [`ExportMode::Move`] on the body file's own file system: a **hard link** (no byte copied;
//!   the body file is never written again once its record completed, and deleting the fetch
//!   only removes the store's name for it);
//! * else a **reflink** (`FICLONE`, on file systems that share extents: btrfs, XFS), else
//!   **`copy_file_range`** (through `std::io::copy`, which uses it between files on Linux), else
//!   a plain copy;
//! * inline bodies (and bodies on a [`BodyFs`](crate::BodyFs) that is not the host's file
//!   system) are streamed.
//!
//! In every case the bytes go to a new temporary name beside the destination (created
//! exclusively: a name that exists, a symlink planted there included, is skipped, never
//! followed), are synced (a link
//! needs no sync: its bytes were synced before the record completed), renamed into place, and
//! the directory is synced: the destination appears whole, and is durable when the reply comes.
//!
//! [`Store::export_response_body`]: background_fetch::Store::export_response_body

use crate::actor::{Actor, Reply};
use crate::files::BodyFile;
use crate::model::Place;
use crate::schema::body_file_name;
use background_fetch::store::{
    ExportMode, Exported, RecordState, StoreError, StoreErrorKind, create_export_temp, io_error,
    new_export_temp, publish_export,
};
use bytes::Bytes;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the bytes come from.
enum Source {
    /// A body file on the host's file system.
    Path(PathBuf),
    /// A body file reached through the store's [`BodyFs`](crate::BodyFs).
    File(Arc<dyn BodyFile>),
    /// An inline body, read.
    Bytes(Vec<Bytes>),
}

/// A copy to run off the storage thread.
pub(crate) struct ExportJob {
    source: Source,
    len: u64,
    destination: PathBuf,
    mode: ExportMode,
}

impl Actor {
    /// Prepares the export of a completed record's body.
    pub(crate) fn export(
        &mut self,
        uid: u64,
        rec: usize,
        generation: u32,
        destination: PathBuf,
        mode: ExportMode,
    ) -> Result<ExportJob, StoreError> {
        self.ensure_db()?;
        let r = self.record(uid, rec)?;
        if r.generation != generation {
            return Err(StoreError::gone("response data was replaced"));
        }
        if !matches!(r.state, RecordState::Completed(_)) {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("record {rec} of fetch {uid} is not completed"),
            ));
        }
        if r.body.is_dirty() {
            // Its completion did not commit (a failed write): nothing durable to hand over.
            return Err(r.poison.as_deref().cloned().unwrap_or_else(|| {
                StoreError::new(StoreErrorKind::Io, "the record's body is not durable")
            }));
        }
        let len = r.body.len();
        if r.body.place == Place::Inline && len > self.config.inline_body_max as u64 {
            // A large inline body (from a schema version 1 store): move it to its file first,
            // so that it can be linked.
            self.fetch_mut(uid)?.dirty_records.insert(rec);
            if let Err(e) = self.write_files(uid, true) {
                self.revert(uid, &e)?;
                return Err(e);
            }
            let outcome = self.flush()?;
            if let Some(e) = outcome.failed.get(&uid) {
                return Err(e.clone());
            }
        }
        let r = self.record(uid, rec)?;
        let source = match r.body.place {
            Place::Inline => {
                let mut parts = Vec::new();
                let mut at = 0;
                while at < len {
                    let b = self.read(uid, rec, Some(generation), at, usize::MAX)?;
                    if b.is_empty() {
                        break;
                    }
                    at += b.len() as u64;
                    parts.push(b);
                }
                Source::Bytes(parts)
            }
            Place::File => {
                let name = body_file_name(uid, rec as u32, Some(generation));
                match self.files.path(&name) {
                    Some(path) => Source::Path(path),
                    None => Source::File(
                        self.body_file(&name, false)
                            .map_err(|e| io_error("open body file", Path::new(&name), &e))?
                            .ok_or_else(|| {
                                crate::error::corrupt(format!("body file {name} is missing"))
                            })?,
                    ),
                }
            }
        };
        Ok(ExportJob {
            source,
            len,
            destination,
            mode,
        })
    }
}

impl ExportJob {
    /// Runs the copy on a thread of its own, which replies.
    pub(crate) fn spawn(self, reply: Reply<Exported>) {
        let spawned = std::thread::Builder::new()
            .name("bgfetch-export".into())
            .spawn(move || {
                let _ = reply.send(self.run());
            });
        if let Err(e) = spawned {
            // The reply was dropped with the closure: the caller gets `Closed`.
            tracing::error!(error = %e, "could not start an export thread");
        }
    }

    fn run(self) -> Result<Exported, StoreError> {
        let dest = &self.destination;
        if let (Source::Path(src), ExportMode::Move) = (&self.source, self.mode) {
            // A link at a new name only (link(2) never replaces): a name someone planted is
            // skipped.
            match new_export_temp(dest, |temp| std::fs::hard_link(src, temp)) {
                Ok(((), temp)) => {
                    let linked_len = std::fs::metadata(&temp).map(|m| m.len());
                    if matches!(linked_len, Ok(n) if n == self.len) {
                        publish_export(&temp, dest)?;
                        return Ok(Exported::Linked);
                    }
                    // The file holds more than the record (it never does once the record
                    // completed): copy exactly the record's bytes instead.
                    let _ = std::fs::remove_file(&temp);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no hard link (another file system?): copying");
                }
            }
        }
        let (mut out, temp) = create_export_temp(dest)?;
        let copied = self.copy_into(&mut out, &temp).and_then(|how| {
            out.sync_all().map_err(|e| io_error("sync", &temp, &e))?;
            Ok(how)
        });
        drop(out);
        match copied {
            Ok(how) => {
                publish_export(&temp, dest)?;
                Ok(how)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    fn copy_into(&self, out: &mut File, temp: &Path) -> Result<Exported, StoreError> {
        let werr = |e: std::io::Error| io_error("write", temp, &e);
        match &self.source {
            Source::Path(src) => {
                let from = File::open(src).map_err(|e| io_error("open", src, &e))?;
                let src_len = from
                    .metadata()
                    .map_err(|e| io_error("read the length of", src, &e))?
                    .len();
                if rustix::fs::ioctl_ficlone(&*out, &from).is_ok() {
                    if src_len != self.len {
                        out.set_len(self.len).map_err(werr)?;
                    }
                    return Ok(Exported::Reflinked);
                }
                // std's copy uses copy_file_range between files (the kernel copies, or shares
                // extents where the file system can), with a fallback to read and write.
                let n = std::io::copy(&mut (&from).take(self.len), out).map_err(werr)?;
                if n != self.len {
                    return Err(crate::error::corrupt(format!(
                        "body file {} holds {n} of its {} bytes",
                        src.display(),
                        self.len
                    )));
                }
                Ok(Exported::Copied)
            }
            Source::File(file) => {
                let mut buf = vec![0u8; (1 << 20).min(self.len as usize)];
                let mut at = 0u64;
                while at < self.len {
                    let want = (self.len - at).min(buf.len() as u64) as usize;
                    let got = file
                        .read_at(at, &mut buf[..want])
                        .map_err(|e| io_error("read", temp, &e))?;
                    if got == 0 {
                        return Err(crate::error::corrupt("a body file ends early"));
                    }
                    out.write_all(&buf[..got]).map_err(werr)?;
                    at += got as u64;
                }
                Ok(Exported::Streamed)
            }
            Source::Bytes(parts) => {
                for p in parts {
                    out.write_all(p).map_err(werr)?;
                }
                Ok(Exported::Streamed)
            }
        }
    }
}
