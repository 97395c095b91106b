//! Rows: reading the model from the database and the row-level writes a commit or a recovery
//! makes (inline body chunks, a fetch's deletion).

use crate::error::{corrupt, store_error};
use crate::model::{Fetch, IndexKey, Rec};
use crate::schema::*;
use background_fetch::ResponseHead;
use background_fetch::store::{FetchMeta, StoreError};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Reads every fetch from the database.
pub(crate) fn read_all_fetches(db: &Database) -> Result<BTreeMap<u64, Fetch>, StoreError> {
    let read = db
        .begin_read()
        .map_err(|e| store_error("begin a read", e))?;
    let fetches = read
        .open_table(FETCHES)
        .map_err(|e| store_error("open fetches", e))?;
    let mut uids = Vec::new();
    for entry in fetches.iter().map_err(|e| store_error("read fetches", e))? {
        let (k, _) = entry.map_err(|e| store_error("read fetches", e))?;
        uids.push(k.value());
    }
    drop(fetches);
    let mut out = BTreeMap::new();
    for uid in uids {
        if let Some(f) = read_fetch(&read, uid)? {
            out.insert(uid, f);
        }
    }
    Ok(out)
}

/// Reads one fetch (as the last commit left it).
pub(crate) fn read_fetch(
    read: &redb::ReadTransaction,
    uid: u64,
) -> Result<Option<Fetch>, StoreError> {
    let e = |what: &'static str| move |e: redb::Error| store_error(what, e);
    let fetches = read
        .open_table(FETCHES)
        .map_err(|x| e("open fetches")(x.into()))?;
    let Some(meta) = fetches.get(uid).map_err(|x| e("read a fetch")(x.into()))? else {
        return Ok(None);
    };
    let mut meta: FetchMeta = serde_json::from_slice(meta.value())
        .map_err(|x| corrupt(format!("fetch {uid}: unreadable metadata: {x}")))?;
    let state_t = read
        .open_table(FETCH_STATE)
        .map_err(|x| e("open fetch_state")(x.into()))?;
    let state: FetchStateRow = match state_t
        .get(uid)
        .map_err(|x| e("read a fetch state")(x.into()))?
    {
        Some(v) => serde_json::from_slice(v.value())
            .map_err(|x| corrupt(format!("fetch {uid}: unreadable state: {x}")))?,
        None => return Err(corrupt(format!("fetch {uid} has no state row"))),
    };
    let ui_t = read
        .open_table(FETCH_UI)
        .map_err(|x| e("open fetch_ui")(x.into()))?;
    let mut ui_set = false;
    if let Some(v) = ui_t.get(uid).map_err(|x| e("read a fetch ui")(x.into()))? {
        let ui: UiRow = serde_json::from_slice(v.value())
            .map_err(|x| corrupt(format!("fetch {uid}: unreadable title and icons: {x}")))?;
        meta.title = ui.title;
        meta.icons = ui.icons;
        ui_set = true;
    }
    let records_t = read
        .open_table(RECORDS)
        .map_err(|x| e("open records")(x.into()))?;
    // A version 1 row holds the requests (one per record); a version 2 row none, and the
    // records are the rows (uid, 0..n) of the records table. The model keeps no requests.
    let n_v1 = std::mem::take(&mut meta.requests).len();
    let mut records = Vec::with_capacity(n_v1);
    for entry in records_t
        .range((uid, 0)..=(uid, u32::MAX))
        .map_err(|x| e("read records")(x.into()))?
    {
        let (k, v) = entry.map_err(|x| e("read records")(x.into()))?;
        let i = k.value().1 as usize;
        if i != records.len() {
            return Err(corrupt(format!(
                "fetch {uid} has a row for record {i} after {} records",
                records.len()
            )));
        }
        let row = RecordRow::decode(v.value())
            .ok_or_else(|| corrupt(format!("fetch {uid} record {i}: unreadable row")))?;
        records.push(Rec::from_row(&row));
    }
    let committed_state = state.committed;
    if n_v1 > 0 && records.len() != n_v1 {
        return Err(corrupt(format!(
            "fetch {uid} has {n_v1} requests but {} record rows",
            records.len()
        )));
    }
    if records.is_empty() && committed_state {
        return Err(corrupt(format!("fetch {uid} has no record rows")));
    }
    Ok(Some(Fetch {
        meta,
        committed: state.committed,
        flags: state.flags(),
        settled: state.settled,
        ui_set,
        records,
        dirty_records: BTreeSet::new(),
        requests_written: 0,
        meta_dirty: false,
        state_dirty: false,
        ui_dirty: false,
    }))
}

pub(crate) type ChunkTable<'t> = Table<'t, (u64, u32, u32), &'static [u8]>;

/// Deletes chunks of (uid, record) from chunk index `from` on.
pub(crate) fn delete_chunks_from(
    t: &mut ChunkTable<'_>,
    uid: u64,
    rec: u32,
    from: u32,
) -> Result<u64, redb::Error> {
    let mut n = 0;
    t.retain_in((uid, rec, from)..=(uid, rec, u32::MAX), |_, _| {
        n += 1;
        false
    })?;
    Ok(n)
}

/// Writes bytes [start, start + n) of a body, taking them from the front of `buf`. A chunk that
/// is partly stored already is rewritten with its stored prefix.
pub(crate) fn write_chunks(
    t: &mut ChunkTable<'_>,
    uid: u64,
    rec: u32,
    start: u64,
    buf: &VecDeque<Bytes>,
    n: u64,
) -> Result<(), redb::Error> {
    let chunk = CHUNK_SIZE as u64;
    let end = start + n;
    let mut pos = start;
    let mut seg = 0usize;
    let mut seg_off = 0usize;
    while pos < end {
        let idx = (pos / chunk) as u32;
        let within = (pos % chunk) as usize;
        let chunk_end = ((idx as u64 + 1) * chunk).min(end);
        let take = (chunk_end - pos) as usize;
        let prefix = if within > 0 {
            let old = t.get((uid, rec, idx))?.ok_or_else(|| {
                redb::Error::Corrupted(format!(
                    "fetch {uid} record {rec}: chunk {idx} is missing below the stored length"
                ))
            })?;
            let old = old.value();
            if old.len() < within {
                return Err(redb::Error::Corrupted(format!(
                    "fetch {uid} record {rec}: chunk {idx} is shorter than the stored length"
                )));
            }
            Some(old[..within].to_vec())
        } else {
            None
        };
        let mut guard = t.insert_reserve((uid, rec, idx), within + take)?;
        let out: &mut [u8] = guard.as_mut();
        if let Some(p) = prefix {
            out[..within].copy_from_slice(&p);
        }
        let mut filled = within;
        while filled < within + take {
            let s = &buf[seg];
            let avail = s.len() - seg_off;
            let want = within + take - filled;
            let k = avail.min(want);
            out[filled..filled + k].copy_from_slice(&s[seg_off..seg_off + k]);
            filled += k;
            seg_off += k;
            if seg_off == s.len() {
                seg += 1;
                seg_off = 0;
            }
        }
        pos = chunk_end;
    }
    Ok(())
}

/// What recovery found for one body.
pub(crate) struct Trim {
    /// Chunks were deleted or rewritten.
    pub changed: bool,
    /// The length actually stored (normally the durable length).
    pub len: u64,
}

/// Makes the chunks of one body match its durable length `len`: chunks past it are deleted and
/// a last chunk longer than it is cut. Only the chunks at the end are read, so this is cheap
/// whatever the size of the body.
pub(crate) fn trim_chunks(
    t: &mut ChunkTable<'_>,
    uid: u64,
    rec: u32,
    len: u64,
) -> Result<Trim, redb::Error> {
    let count = chunk_count(len);
    let deleted = delete_chunks_from(t, uid, rec, count)?;
    let mut changed = deleted > 0;
    if deleted > 0 {
        tracing::info!(
            uid,
            record = rec,
            chunks = deleted,
            "trimmed chunks past the durable length"
        );
    }
    if count == 0 {
        return Ok(Trim { changed, len });
    }
    let last = count - 1;
    let expected = (len - last as u64 * CHUNK_SIZE as u64) as usize;
    let found = t.get((uid, rec, last))?.map(|v| v.value().len());
    match found {
        Some(n) if n == expected => Ok(Trim { changed, len }),
        Some(n) if n > expected => {
            let cut = t.get((uid, rec, last))?.expect("just read").value()[..expected].to_vec();
            t.insert((uid, rec, last), cut.as_slice())?;
            changed = true;
            Ok(Trim { changed, len })
        }
        _ => {
            // Bytes below the durable length are missing (this never happens with redb's atomic
            // commits; it would mean the file was damaged). Keep the contiguous prefix.
            let mut kept = 0u64;
            for idx in 0..count {
                let found = t.get((uid, rec, idx))?.map(|v| v.value().len());
                match found {
                    Some(n) if n == CHUNK_SIZE => kept += n as u64,
                    Some(n) => {
                        kept += n as u64;
                        delete_chunks_from(t, uid, rec, idx + 1)?;
                        break;
                    }
                    None => {
                        delete_chunks_from(t, uid, rec, idx)?;
                        break;
                    }
                }
            }
            Ok(Trim {
                changed: true,
                len: kept.min(len),
            })
        }
    }
}

/// Deletes every row of fetch `uid`.
pub(crate) fn delete_fetch_rows(
    txn: &WriteTransaction,
    uid: u64,
    key: &IndexKey,
) -> Result<(), redb::Error> {
    txn.open_table(FETCHES)?.remove(uid)?;
    txn.open_table(REQUESTS)?
        .retain_in((uid, 0)..=(uid, u32::MAX), |_, _| false)?;
    txn.open_table(FETCH_STATE)?.remove(uid)?;
    txn.open_table(FETCH_UI)?.remove(uid)?;
    txn.open_table(FETCH_INDEX)?.remove((
        key.storage_key.as_str(),
        key.scope.as_str(),
        key.id.as_str(),
        uid,
    ))?;
    let mut records_t = txn.open_table(RECORDS)?;
    let mut heads_t = txn.open_table(RESPONSE_HEADS)?;
    let mut body_t = txn.open_table(BODY_CHUNKS)?;
    let mut req_t = txn.open_table(REQUEST_CHUNKS)?;
    // Rows of every record index, also any past the count (defensive).
    records_t.retain_in((uid, 0)..=(uid, u32::MAX), |_, _| false)?;
    heads_t.retain_in((uid, 0)..=(uid, u32::MAX), |_, _| false)?;
    body_t.retain_in((uid, 0, 0)..=(uid, u32::MAX, u32::MAX), |_, _| false)?;
    req_t.retain_in((uid, 0, 0)..=(uid, u32::MAX, u32::MAX), |_, _| false)?;
    Ok(())
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store rows serialise")
}

/// The committed response head of (uid, record).
pub(crate) fn read_head(
    read: &redb::ReadTransaction,
    uid: u64,
    rec: usize,
) -> Result<Option<ResponseHead>, StoreError> {
    let t = read
        .open_table(RESPONSE_HEADS)
        .map_err(|x| store_error("open response_heads", x))?;
    match t
        .get((uid, rec as u32))
        .map_err(|x| store_error("read a response head", x))?
    {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(|x| {
            corrupt(format!(
                "fetch {uid} record {rec}: unreadable response head: {x}"
            ))
        })?)),
        None => Ok(None),
    }
}

/// Reads up to `max` bytes of an inline body from `offset` (below its stored length `len`):
/// the rest of the chunk holding `offset`.
pub(crate) fn read_inline(
    db: &Database,
    request: bool,
    uid: u64,
    rec: usize,
    offset: u64,
    len: u64,
    max: usize,
) -> Result<Bytes, StoreError> {
    let table = if request { REQUEST_CHUNKS } else { BODY_CHUNKS };
    let read = db
        .begin_read()
        .map_err(|e| store_error("begin a read", e))?;
    let t = read
        .open_table(table)
        .map_err(|e| store_error("open a chunk table", e))?;
    let chunk = CHUNK_SIZE as u64;
    let idx = (offset / chunk) as u32;
    let within = (offset % chunk) as usize;
    let v = t
        .get((uid, rec as u32, idx))
        .map_err(|e| store_error("read a chunk", e))?
        .ok_or_else(|| corrupt(format!("fetch {uid} record {rec}: chunk {idx} is missing")))?;
    let data = v.value();
    let limit = (len - offset).min(max as u64) as usize;
    if data.len() <= within {
        return Err(corrupt(format!(
            "fetch {uid} record {rec}: chunk {idx} is shorter than the stored length"
        )));
    }
    let end = data.len().min(within + limit);
    Ok(Bytes::copy_from_slice(&data[within..end]))
}

/// Fetch `uid`'s requests: its rows of the requests table, or (a version 1 store) the ones its
/// metadata row holds.
pub(crate) fn read_requests(
    read: &redb::ReadTransaction,
    uid: u64,
) -> Result<Vec<background_fetch::Request>, StoreError> {
    let t = read
        .open_table(REQUESTS)
        .map_err(|x| store_error("open requests", x))?;
    let mut out = Vec::new();
    for entry in t
        .range((uid, 0)..=(uid, u32::MAX))
        .map_err(|x| store_error("read requests", x))?
    {
        let (k, v) = entry.map_err(|x| store_error("read requests", x))?;
        let i = k.value().1;
        out.push(
            serde_json::from_slice(v.value())
                .map_err(|x| corrupt(format!("fetch {uid} record {i}: unreadable request: {x}")))?,
        );
    }
    if out.is_empty() {
        let fetches = read
            .open_table(FETCHES)
            .map_err(|x| store_error("open fetches", x))?;
        if let Some(v) = fetches
            .get(uid)
            .map_err(|x| store_error("read a fetch", x))?
        {
            let meta: FetchMeta = serde_json::from_slice(v.value())
                .map_err(|x| corrupt(format!("fetch {uid}: unreadable metadata: {x}")))?;
            out = meta.requests;
        }
    }
    Ok(out)
}
