//! The store's own integrity check, on top of redb's page checksums: every table agrees with
//! every other, inline chunk sequences are contiguous and add up to the recorded lengths, every
//! body file a row names holds its bytes, no file is left that no row names, and the model
//! agrees with the disk.

use crate::actor::Actor;
use crate::error::store_error;
use crate::files::BodyFs;
use crate::reports::IntegrityReport;
use crate::rows::read_all_fetches;
use crate::schema::*;
use background_fetch::ResponseHead;
use background_fetch::store::{FetchMeta, RecordState, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};

type Rows = BTreeMap<(u64, u32), RecordRow>;

/// The bytes of a body the row says are inline chunks.
fn inline_len(r: &RecordRow, response: bool) -> u64 {
    match (response, r.body_in_file, r.request_in_file) {
        (true, false, _) => r.body_len,
        (false, _, false) => r.request_len,
        _ => 0,
    }
}

/// Checks the body files against the rows: each file a row names exists and holds at least the
/// row's length (exactly, for a completed record's response and for request bodies), and no
/// file is left that no row names.
fn check_files(
    files: &dyn BodyFs,
    rows: &Rows,
    report: &mut IntegrityReport,
) -> Result<(), StoreError> {
    let io = |e: std::io::Error| {
        StoreError::new(
            background_fetch::store::StoreErrorKind::Io,
            format!("integrity check: body files: {e}"),
        )
    };
    let mut named = BTreeSet::new();
    for ((uid, i), r) in rows {
        for (request, in_file, len) in [
            (false, r.body_in_file, r.body_len),
            (true, r.request_in_file, r.request_len),
        ] {
            if !in_file {
                continue;
            }
            let name = body_file_name(*uid, *i, (!request).then_some(r.generation));
            named.insert(name.clone());
            let found = match files.open_existing(&name).map_err(io)? {
                Some(f) => f.len().map_err(io)?,
                None => {
                    report.problems.push(format!(
                        "fetch {uid} record {i}: body file {name} is missing"
                    ));
                    continue;
                }
            };
            let exact = request || matches!(r.state, RecordState::Completed(_));
            if found < len || (exact && found != len) {
                report.problems.push(format!(
                    "fetch {uid} record {i}: body file {name} has {found} bytes, the row says {len}"
                ));
            }
        }
    }
    for name in files.list().map_err(io)? {
        if parse_body_file_name(&name).is_none() {
            continue;
        }
        report.body_files += 1;
        if !named.contains(&name) {
            report
                .problems
                .push(format!("body file {name} is named by no record"));
        }
    }
    Ok(())
}

/// Checks the tables of `db` and the body files. Reads every chunk: its cost is that of reading
/// the whole database.
pub(crate) fn check_tables(
    db: &Database,
    files: &dyn BodyFs,
) -> Result<IntegrityReport, StoreError> {
    let e = |x: redb::Error| store_error("integrity check", x);
    let read = db.begin_read().map_err(|x| e(x.into()))?;
    let mut report = IntegrityReport::default();
    let p = &mut report.problems;

    let schema = read.open_table(SCHEMA).map_err(|x| e(x.into()))?;
    match schema.get(VERSION_KEY).map_err(|x| e(x.into()))? {
        Some(v) if v.value() == SCHEMA_VERSION => {}
        other => p.push(format!(
            "schema version is {:?}, expected {SCHEMA_VERSION}",
            other.map(|v| v.value())
        )),
    }

    // Requests (version 2: one row each, numbered from 0).
    let mut request_rows: BTreeMap<u64, usize> = BTreeMap::new();
    let requests = read.open_table(REQUESTS).map_err(|x| e(x.into()))?;
    for entry in requests.iter().map_err(|x| e(x.into()))? {
        let (k, v) = entry.map_err(|x| e(x.into()))?;
        let (uid, i) = k.value();
        let n = request_rows.entry(uid).or_insert(0);
        if i as usize != *n {
            p.push(format!("fetch {uid}: request row {i} after {n} rows"));
        }
        *n += 1;
        if serde_json::from_slice::<background_fetch::Request>(v.value()).is_err() {
            p.push(format!("fetch {uid} record {i}: unreadable request"));
        }
    }

    // Fetches and their per-fetch rows.
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut index_expected: BTreeSet<(String, String, String, u64)> = BTreeSet::new();
    let fetches = read.open_table(FETCHES).map_err(|x| e(x.into()))?;
    for entry in fetches.iter().map_err(|x| e(x.into()))? {
        let (k, v) = entry.map_err(|x| e(x.into()))?;
        let uid = k.value();
        match serde_json::from_slice::<FetchMeta>(v.value()) {
            Ok(meta) => {
                if meta.uid.0 != uid {
                    p.push(format!("fetch {uid}: metadata names uid {}", meta.uid.0));
                }
                let rows = request_rows.remove(&uid).unwrap_or(0);
                let n = match (meta.requests.len(), rows) {
                    (0, rows) => rows,
                    (n, 0) => n,
                    (n, rows) => {
                        p.push(format!(
                            "fetch {uid}: {n} requests in its metadata and {rows} request rows"
                        ));
                        n
                    }
                };
                if n == 0 {
                    p.push(format!("fetch {uid} has no requests"));
                }
                counts.insert(uid, n);
                index_expected.insert((
                    meta.registration.storage_key,
                    meta.registration.scope,
                    meta.id,
                    uid,
                ));
            }
            Err(x) => p.push(format!("fetch {uid}: unreadable metadata: {x}")),
        }
    }
    for uid in request_rows.keys() {
        p.push(format!("orphan request rows of fetch {uid}"));
    }
    report.fetches = counts.len();
    let state = read.open_table(FETCH_STATE).map_err(|x| e(x.into()))?;
    let mut with_state = BTreeSet::new();
    // A fetch being created may have written its requests in pieces before its record rows.
    let mut uncommitted_uids = BTreeSet::new();
    for entry in state.iter().map_err(|x| e(x.into()))? {
        let (k, v) = entry.map_err(|x| e(x.into()))?;
        let uid = k.value();
        with_state.insert(uid);
        match serde_json::from_slice::<FetchStateRow>(v.value()) {
            Ok(s) => {
                if !s.committed {
                    report.uncommitted += 1;
                    uncommitted_uids.insert(uid);
                }
            }
            Err(x) => p.push(format!("fetch {uid}: unreadable state: {x}")),
        }
        if !counts.contains_key(&uid) {
            p.push(format!("orphan state row for fetch {uid}"));
        }
    }
    for uid in counts.keys() {
        if !with_state.contains(uid) {
            p.push(format!("fetch {uid} has no state row"));
        }
    }
    let ui = read.open_table(FETCH_UI).map_err(|x| e(x.into()))?;
    for entry in ui.iter().map_err(|x| e(x.into()))? {
        let (k, v) = entry.map_err(|x| e(x.into()))?;
        let uid = k.value();
        if serde_json::from_slice::<UiRow>(v.value()).is_err() {
            p.push(format!("fetch {uid}: unreadable title and icons"));
        }
        if !counts.contains_key(&uid) {
            p.push(format!("orphan title and icons for fetch {uid}"));
        }
    }
    let index = read.open_table(FETCH_INDEX).map_err(|x| e(x.into()))?;
    let mut index_found = BTreeSet::new();
    for entry in index.iter().map_err(|x| e(x.into()))? {
        let (k, _) = entry.map_err(|x| e(x.into()))?;
        let (a, b, c, d) = k.value();
        index_found.insert((a.to_owned(), b.to_owned(), c.to_owned(), d));
    }
    for missing in index_expected.difference(&index_found) {
        p.push(format!("fetch {} is missing from the index", missing.3));
    }
    for extra in index_found.difference(&index_expected) {
        p.push(format!("stale index entry for fetch {}", extra.3));
    }

    // Records.
    let mut rows: Rows = BTreeMap::new();
    let records = read.open_table(RECORDS).map_err(|x| e(x.into()))?;
    for entry in records.iter().map_err(|x| e(x.into()))? {
        let (k, v) = entry.map_err(|x| e(x.into()))?;
        let (uid, i) = k.value();
        match RecordRow::decode(v.value()) {
            Some(r) => {
                rows.insert((uid, i), r);
            }
            None => p.push(format!("fetch {uid} record {i}: unreadable row")),
        }
        match counts.get(&uid) {
            None => p.push(format!("orphan record row ({uid}, {i})")),
            Some(n) if i as usize >= *n => p.push(format!(
                "fetch {uid} has a row for record {i} but {n} requests"
            )),
            _ => {}
        }
    }
    for (uid, n) in &counts {
        for i in 0..*n as u32 {
            if !rows.contains_key(&(*uid, i)) && !uncommitted_uids.contains(uid) {
                p.push(format!("fetch {uid} record {i} has no row"));
            }
        }
    }
    report.records = rows.len();
    let heads = read.open_table(RESPONSE_HEADS).map_err(|x| e(x.into()))?;
    for entry in heads.iter().map_err(|x| e(x.into()))? {
        let (k, v) = entry.map_err(|x| e(x.into()))?;
        let key = k.value();
        if serde_json::from_slice::<ResponseHead>(v.value()).is_err() {
            p.push(format!(
                "fetch {} record {}: unreadable response head",
                key.0, key.1
            ));
        }
        if !rows.contains_key(&key) {
            p.push(format!("orphan response head ({}, {})", key.0, key.1));
        }
    }
    for (key, r) in &rows {
        if r.state == RecordState::Pending && r.body_len > 0 {
            p.push(format!(
                "fetch {} record {}: pending with {} body bytes",
                key.0, key.1, r.body_len
            ));
        }
    }

    // Chunks.
    for (table, what, response) in [
        (BODY_CHUNKS, "response", true),
        (REQUEST_CHUNKS, "request", false),
    ] {
        let t = read.open_table(table).map_err(|x| e(x.into()))?;
        let mut lens: BTreeMap<(u64, u32), (u32, u64, bool)> = BTreeMap::new();
        for entry in t.iter().map_err(|x| e(x.into()))? {
            let (k, v) = entry.map_err(|x| e(x.into()))?;
            let (uid, i, idx) = k.value();
            let n = v.value().len();
            report.chunks += 1;
            let slot = lens.entry((uid, i)).or_insert((0, 0, false));
            if idx != slot.0 {
                p.push(format!(
                    "fetch {uid} record {i}: {what} chunk {idx} where chunk {} was expected",
                    slot.0
                ));
            }
            if slot.2 {
                p.push(format!(
                    "fetch {uid} record {i}: {what} chunk {idx} follows a short chunk"
                ));
            }
            if n == 0 || n > CHUNK_SIZE {
                p.push(format!(
                    "fetch {uid} record {i}: {what} chunk {idx} has {n} bytes"
                ));
            }
            slot.0 = idx + 1;
            slot.1 += n as u64;
            slot.2 = n < CHUNK_SIZE;
        }
        for ((uid, i), (_, total, _)) in &lens {
            match rows.get(&(*uid, *i)) {
                None => p.push(format!("orphan {what} chunks of ({uid}, {i})")),
                Some(r) => {
                    let expected = inline_len(r, response);
                    if *total != expected {
                        p.push(format!(
                            "fetch {uid} record {i}: {what} chunks hold {total} bytes, the row says {expected}"
                        ));
                    }
                }
            }
        }
        for ((uid, i), r) in &rows {
            let expected = inline_len(r, response);
            if expected > 0 && !lens.contains_key(&(*uid, *i)) {
                p.push(format!(
                    "fetch {uid} record {i}: the row says {expected} {what} bytes but there are no chunks"
                ));
            }
            if response {
                report.body_bytes += r.body_len;
            } else {
                report.request_bytes += r.request_len;
            }
        }
    }
    check_files(files, &rows, &mut report)?;
    Ok(report)
}

impl Actor {
    pub(crate) fn check_integrity(&mut self) -> Result<IntegrityReport, StoreError> {
        self.flush()?;
        let db = self.db.as_mut().expect("open");
        let redb_ok = match db.check_integrity() {
            Ok(ok) => ok,
            Err(e) => {
                // As in `compact`: the next operation reopens the file.
                self.db = None;
                return Err(store_error("redb integrity check", e));
            }
        };
        let mut report = check_tables(self.db(), &*self.files)?;
        if !redb_ok {
            report
                .problems
                .push("redb's integrity check had to repair the file".into());
        }
        // The mirror must match the disk.
        let disk = read_all_fetches(self.db())?;
        for (uid, f) in &self.fetches {
            match disk.get(uid) {
                None => report
                    .problems
                    .push(format!("fetch {uid} is in memory but not in the file")),
                Some(d) => {
                    for (i, (a, b)) in f.records.iter().zip(&d.records).enumerate() {
                        if a.body.len() != b.body.durable
                            || a.body.place != b.body.place
                            || a.request.len() != b.request.durable
                            || a.state != b.state
                            || a.generation != b.generation
                        {
                            report.problems.push(format!(
                                "fetch {uid} record {i}: memory has {:?}/{}/{} bytes, the file {:?}/{}/{}",
                                a.state,
                                a.generation,
                                a.body.len(),
                                b.state,
                                b.generation,
                                b.body.durable
                            ));
                        }
                    }
                }
            }
        }
        for uid in disk.keys() {
            // A delete that could not be written yet is pending, not lost.
            if !self.fetches.contains_key(uid) && !self.deleting.contains_key(uid) {
                report
                    .problems
                    .push(format!("fetch {uid} is in the file but not in memory"));
            }
        }
        Ok(report)
    }
}
