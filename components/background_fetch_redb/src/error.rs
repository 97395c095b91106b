//! Errors: [`OpenError`] for opening a store, and the mapping of redb and I/O errors to the
//! engine's [`StoreError`].

use background_fetch::store::{StoreError, StoreErrorKind};
use std::io;
use std::path::PathBuf;

/// Why a store could not be opened. Every variant names the file; nothing is deleted or
/// rewritten when opening fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file exists but is not a background-fetch store (not a redb database, or a redb
    /// database without this crate's schema table).
    #[error("{path}: not a background-fetch store ({reason})")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The store was written by a newer version of this crate.
    #[error(
        "{path}: the store has schema version {found}, newer than the versions this build \
         supports (up to {supported}); refusing to open it"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// The store is a valid store, but its contents are inconsistent beyond what recovery
    /// repairs (an unreadable row).
    #[error("{path}: the store is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process (or another store in this process) has the file open.
    #[error("{path}: the store is already open elsewhere")]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// redb refused the file (for example an older redb file format, or a failed repair).
    #[error("{path}: {source}")]
    Database {
        /// The file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl OpenError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            OpenError::NotAStore { path, .. }
            | OpenError::NewerSchema { path, .. }
            | OpenError::Corrupt { path, .. }
            | OpenError::AlreadyOpen { path }
            | OpenError::Database { path, .. }
            | OpenError::Io { path, .. } => path,
        }
    }

    pub(crate) fn db(path: &std::path::Path, e: impl Into<redb::Error>) -> OpenError {
        let e: redb::Error = e.into();
        match e {
            redb::Error::DatabaseAlreadyOpen => OpenError::AlreadyOpen {
                path: path.to_owned(),
            },
            redb::Error::Io(source) => OpenError::Io {
                path: path.to_owned(),
                source,
            },
            source => OpenError::Database {
                path: path.to_owned(),
                source,
            },
        }
    }
}

/// Whether an I/O error means the disk (or a disk quota) is full.
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    ) || matches!(
        e.raw_os_error(),
        Some(28 /* ENOSPC */) | Some(122 /* EDQUOT */)
    )
}

/// Maps a redb error to a [`StoreError`]: a full disk is `QuotaExceeded`, other I/O is `Io`.
pub(crate) fn store_error(context: &str, e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    let kind = match &e {
        redb::Error::Io(io) if is_disk_full(io) => StoreErrorKind::QuotaExceeded,
        redb::Error::Io(_) | redb::Error::PreviousIo => StoreErrorKind::Io,
        redb::Error::DatabaseClosed => StoreErrorKind::Closed,
        _ => StoreErrorKind::Corrupt,
    };
    let message = match kind {
        StoreErrorKind::QuotaExceeded => format!("{context}: the disk is full ({e})"),
        _ => format!("{context}: {e}"),
    };
    StoreError::new(kind, message)
}

pub(crate) fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}
