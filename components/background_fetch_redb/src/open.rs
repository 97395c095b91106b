//! Opening a store, top to bottom: [`Actor::open`] opens the database file (refusing a file
//! that is not a store, or a store of a newer schema, without writing to it), creates the
//! schema in a new file or migrates an older one in place, and then runs recovery
//! ([`crate::recovery`]).

use crate::actor::Actor;
use crate::backend::{BackendFactory, DynBackend, LenTracking};
use crate::config::RedbStoreConfig;
use crate::error::OpenError;
use crate::files::BodyFs;
use crate::ingress::Ingress;
use crate::schema::*;
use background_fetch::store::StoreErrorKind;
use redb::{Database, ReadableDatabase, TableHandle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

impl Actor {
    /// Opens the store (on the storage thread).
    pub(crate) fn open(
        path: PathBuf,
        factory: BackendFactory,
        files: Arc<dyn BodyFs>,
        config: RedbStoreConfig,
        ingress: Arc<Ingress>,
    ) -> Result<Actor, OpenError> {
        // 1. The database file: refused untouched unless it is a store this build reads.
        let file_len = Arc::new(AtomicU64::new(0));
        let db = open_database(&path, &factory, &config, &file_len)?;
        // 2. The schema: created in a new file, migrated in place from an older version.
        check_schema(&db, &path)?;
        let mut actor = Actor {
            ingress,
            path,
            factory,
            files,
            config,
            db: Some(db),
            broken: None,
            file_len,
            fetches: BTreeMap::new(),
            active: BTreeSet::new(),
            deleting: BTreeMap::new(),
            reverted: HashMap::new(),
            lost: HashMap::new(),
            unlink_after_commit: Vec::new(),
            new_files: BTreeSet::new(),
            open_files: HashMap::new(),
            seq: 0,
            uid_floor: 0,
            dirty_since: None,
            last_activity: Instant::now(),
            compact_candidate: true,
        };
        // 3. Recovery: the model, consistent with the body files.
        actor.recover().map_err(|e| match e.kind {
            StoreErrorKind::Corrupt => OpenError::Corrupt {
                path: actor.path.clone(),
                reason: e.message,
            },
            _ => OpenError::Io {
                path: actor.path.clone(),
                source: std::io::Error::other(e.message),
            },
        })?;
        Ok(actor)
    }
}

/// Opens the database file: checks that it is a redb file and (read-only) that its schema is
/// one this build reads, then opens it for writing (which repairs it after a crash).
pub(crate) fn open_database(
    path: &Path,
    factory: &BackendFactory,
    config: &RedbStoreConfig,
    file_len: &Arc<AtomicU64>,
) -> Result<Database, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let backend = factory().map_err(io)?;
    let len = backend.len().map_err(io)?;
    if len > 0 {
        let mut head = vec![0u8; (len as usize).min(REDB_MAGIC.len())];
        backend.read(0, &mut head).map_err(io)?;
        if head != REDB_MAGIC {
            return Err(OpenError::NotAStore {
                path: path.to_owned(),
                reason: format!("the file ({len} bytes) is not a redb database"),
            });
        }
    }
    if len > 0 && path.is_file() {
        // Check the schema read-only first, so that a file we refuse is never written to
        // (opening a redb file for writing marks it as open in its header).
        precheck_read_only(path, config)?;
    }
    file_len.store(len, Ordering::Relaxed);
    let backend = LenTracking {
        inner: DynBackend(backend),
        len: file_len.clone(),
    };
    redb::Builder::new()
        .set_cache_size(config.cache_size)
        .create_with_backend(backend)
        .map_err(|e| OpenError::db(path, e))
}

/// Checks the schema of an existing file without writing to it.
fn precheck_read_only(path: &Path, config: &RedbStoreConfig) -> Result<(), OpenError> {
    let db = match redb::Builder::new()
        .set_cache_size(config.cache_size.min(1 << 20))
        .open_read_only(path)
    {
        Ok(db) => db,
        // A file that needs a repair (after a crash) cannot be opened read-only: the writable
        // open repairs it, and the schema is checked after that.
        Err(redb::DatabaseError::RepairAborted) => return Ok(()),
        Err(e) => return Err(OpenError::db(path, e)),
    };
    let read = db
        .begin_read()
        .map_err(|e| OpenError::db(path, redb::Error::from(e)))?;
    let tables = table_names(&read, path)?;
    if tables.is_empty() {
        // An empty database: the writable open creates the schema.
        return Ok(());
    }
    schema_version(&read, &tables, path).map(|_| ())
}

fn table_names(read: &redb::ReadTransaction, path: &Path) -> Result<Vec<String>, OpenError> {
    Ok(read
        .list_tables()
        .map_err(|e| OpenError::db(path, redb::Error::from(e)))?
        .map(|t| t.name().to_owned())
        .collect())
}

/// The schema version the file says, if this build reads it (it may need a migration). Errors
/// name `path`.
fn schema_version(
    read: &redb::ReadTransaction,
    tables: &[String],
    path: &Path,
) -> Result<u64, OpenError> {
    let err = |e: redb::Error| OpenError::db(path, e);
    if !tables.iter().any(|t| t == SCHEMA.name()) {
        return Err(OpenError::NotAStore {
            path: path.to_owned(),
            reason: format!(
                "a redb database without a bgfetch_schema table (it has {})",
                tables.join(", ")
            ),
        });
    }
    let t = read.open_table(SCHEMA).map_err(|e| err(e.into()))?;
    let version = t
        .get(VERSION_KEY)
        .map_err(|e| err(e.into()))?
        .map(|v| v.value());
    match version {
        None => Err(OpenError::Corrupt {
            path: path.to_owned(),
            reason: "the schema table has no version".into(),
        }),
        Some(v) if v > SCHEMA_VERSION => Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Some(v) if v < OLDEST_MIGRATED_VERSION => Err(OpenError::Corrupt {
            path: path.to_owned(),
            reason: format!("invalid schema version {v}"),
        }),
        Some(v) => Ok(v),
    }
}

/// Checks the schema table: creates the schema in a new file, migrates an older version in
/// place. Errors name `path`.
fn check_schema(db: &Database, path: &Path) -> Result<(), OpenError> {
    let err = |e: redb::Error| OpenError::db(path, e);
    let read = db.begin_read().map_err(|e| err(e.into()))?;
    let tables = table_names(&read, path)?;
    let found = if tables.is_empty() {
        None
    } else {
        Some(schema_version(&read, &tables, path)?)
    };
    drop(read);
    if found == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut schema = txn.open_table(SCHEMA).map_err(|e| err(e.into()))?;
        match found {
            None => {
                schema
                    .insert(COMMIT_SEQ_KEY, 0)
                    .map_err(|e| err(e.into()))?;
            }
            // Version 1 → 2: every version 1 body is a chunk sequence, which is exactly a
            // version 2 inline body, format 1 record rows read as inline bodies, and a
            // metadata row that holds its requests is read as such: writing the new version
            // (and creating the requests table) is the whole migration (body files appear as
            // bodies grow).
            Some(1) => {
                tracing::info!(path = %path.display(), "migrating the store from schema version 1 to 2");
            }
            Some(v) => unreachable!("schema_version refuses version {v}"),
        }
        schema
            .insert(VERSION_KEY, SCHEMA_VERSION)
            .map_err(|e| err(e.into()))?;
        drop(schema);
        txn.open_table(FETCHES).map_err(|e| err(e.into()))?;
        txn.open_table(REQUESTS).map_err(|e| err(e.into()))?;
        txn.open_table(FETCH_STATE).map_err(|e| err(e.into()))?;
        txn.open_table(FETCH_UI).map_err(|e| err(e.into()))?;
        txn.open_table(FETCH_INDEX).map_err(|e| err(e.into()))?;
        txn.open_table(RECORDS).map_err(|e| err(e.into()))?;
        txn.open_table(RESPONSE_HEADS).map_err(|e| err(e.into()))?;
        txn.open_table(REQUEST_CHUNKS).map_err(|e| err(e.into()))?;
        txn.open_table(BODY_CHUNKS).map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))?;
    match found {
        None => {
            tracing::info!(path = %path.display(), version = SCHEMA_VERSION, "created a new store")
        }
        Some(v) => {
            tracing::info!(path = %path.display(), from = v, to = SCHEMA_VERSION, "migrated the store")
        }
    }
    Ok(())
}
