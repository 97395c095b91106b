//! The embedder's own rows ([`EMBEDDER_ROWS`]): small values an embedder keeps beside the
//! background fetches, in the same file and the same crash safety (each write is one redb
//! transaction with `Durability::Immediate`, after every change the store had buffered).

use crate::actor::Actor;
use crate::error::store_error;
use crate::schema::EMBEDDER_ROWS;
use background_fetch::store::StoreError;
use redb::{ReadableDatabase, TableError};

/// One write: the key and its new value (`None` removes the row).
pub type RowWrite = (String, Option<Vec<u8>>);

/// A row read: its key and value.
pub type Row = (String, Vec<u8>);

impl Actor {
    /// Writes `writes` in namespace `ns` in one transaction.
    pub(crate) fn write_rows(&mut self, ns: &str, writes: Vec<RowWrite>) -> Result<(), StoreError> {
        // The fetches' buffered changes go first, so that the rows never get ahead of them.
        self.flush()?;
        self.usable()?;
        let txn = self
            .db()
            .begin_write()
            .map_err(|e| store_error("begin a write", e))?;
        {
            let mut t = txn
                .open_table(EMBEDDER_ROWS)
                .map_err(|e| store_error("open the embedder rows", e))?;
            for (key, value) in &writes {
                match value {
                    Some(v) => {
                        t.insert((ns, key.as_str()), v.as_slice())
                            .map_err(|e| store_error("write an embedder row", e))?;
                    }
                    None => {
                        t.remove((ns, key.as_str()))
                            .map_err(|e| store_error("remove an embedder row", e))?;
                    }
                }
            }
        }
        txn.commit()
            .map_err(|e| store_error("commit the embedder rows", e))
    }

    /// The rows of namespace `ns` whose key starts with `prefix`, in key order.
    pub(crate) fn rows(&mut self, ns: &str, prefix: &str) -> Result<Vec<Row>, StoreError> {
        self.usable()?;
        let read = self
            .db()
            .begin_read()
            .map_err(|e| store_error("begin a read", e))?;
        let t = match read.open_table(EMBEDDER_ROWS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(store_error("open the embedder rows", e)),
        };
        let mut out = Vec::new();
        for row in t
            .range((ns, prefix)..)
            .map_err(|e| store_error("read the embedder rows", e))?
        {
            let (k, v) = row.map_err(|e| store_error("read an embedder row", e))?;
            let (row_ns, key) = k.value();
            if row_ns != ns || !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The database is open (a failed commit that could not reopen it leaves it closed).
    fn usable(&self) -> Result<(), StoreError> {
        match (&self.db, &self.broken) {
            (Some(_), _) => Ok(()),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(StoreError::new(
                background_fetch::store::StoreErrorKind::Closed,
                "the store is closed",
            )),
        }
    }
}
