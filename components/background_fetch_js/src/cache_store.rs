//! The Cache API's storage: per origin (a page and its service workers share one), the named
//! caches in creation order, each a list of (request, response) entries as the bindings' data,
//! and their bodies.
//!
//! <https://w3c.github.io/ServiceWorker/#cache-objects>
//!
//! Two places to keep them: in memory (the WPT runner: every file starts with no cache), or in
//! the same redb database as the engine's background fetches ([`CacheStore::on_store`]), so
//! that an app's caches survive the program as its fetches do. There they are the store's
//! embedder rows ([`RedbStore::write_rows`]) of namespace `cache-storage <origin>`:
//!
//! * `names`: the cache names in creation order (JSON);
//! * `cache:<name>`: the entries of a cache (JSON: `{id, request, response}` each);
//! * `body:<id>`: an entry's body (bytes; the id in 16 hexadecimal digits).
//!
//! Every change is written through at once, in one durable transaction (the entries and the
//! bodies they no longer need together). A change whose write fails (a full disk) is not made:
//! the operation fails (the bindings reject its promise with an `UnknownError`, as Chromium's
//! storage errors do) and the caches stay as they were.
//!
//! AD-HOC: a cached body is one value in the database, read and written whole (the engine's
//! records stream theirs through body files): apps cache what fits in memory anyway, since
//! `Cache.put` here takes the whole body first.

use background_fetch_redb::{RedbStore, RowWrite};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The name-to-cache map and the bodies.
#[derive(Default)]
pub struct CacheStore {
    /// The caches, in creation order: name and entries (`{id, request, response}`).
    caches: Vec<(String, Vec<Value>)>,
    /// Bodies by entry id (in memory; with a store, only those not yet written).
    bodies: HashMap<u64, Vec<u8>>,
    next: u64,
    /// The store and the namespace of the origin's rows, when the caches persist.
    store: Option<(RedbStore, String)>,
}

fn cache_key(name: &str) -> String {
    format!("cache:{name}")
}

fn body_key(id: u64) -> String {
    format!("body:{id:016x}")
}

fn entry_ids(entries: &[Value]) -> impl Iterator<Item = u64> + '_ {
    entries.iter().filter_map(|v| v["id"].as_u64())
}

impl CacheStore {
    /// The caches of `origin` kept in `store` (read now; every change is written through).
    /// Bodies that no entry refers to (a `put` cut off between its body and its entry) are
    /// removed.
    pub fn on_store(store: RedbStore, origin: &str) -> Result<CacheStore, String> {
        let ns = format!("cache-storage {origin}");
        let rows = futures::executor::block_on(store.rows(&ns, ""))
            .map_err(|e| format!("reading the caches of {origin}: {e}"))?;
        let mut names: Vec<String> = Vec::new();
        let mut entries: HashMap<String, Vec<Value>> = HashMap::new();
        let mut body_ids = Vec::new();
        for (key, value) in &rows {
            if key == "names" {
                names = serde_json::from_slice(value).unwrap_or_default();
            } else if let Some(name) = key.strip_prefix("cache:") {
                entries.insert(
                    name.to_owned(),
                    serde_json::from_slice(value).unwrap_or_default(),
                );
            } else if let Some(id) = key
                .strip_prefix("body:")
                .and_then(|i| u64::from_str_radix(i, 16).ok())
            {
                body_ids.push(id);
            }
        }
        let caches: Vec<(String, Vec<Value>)> = names
            .into_iter()
            .map(|n| {
                let e = entries.remove(&n).unwrap_or_default();
                (n, e)
            })
            .collect();
        let live: HashSet<u64> = caches.iter().flat_map(|(_, e)| entry_ids(e)).collect();
        let orphans: Vec<RowWrite> = body_ids
            .iter()
            .filter(|id| !live.contains(id))
            .map(|id| (body_key(*id), None))
            .collect();
        if !orphans.is_empty() {
            futures::executor::block_on(store.write_rows(&ns, orphans))
                .map_err(|e| format!("writing the caches of {origin}: {e}"))?;
        }
        let next = body_ids
            .iter()
            .chain(live.iter())
            .copied()
            .max()
            .unwrap_or(0);
        Ok(CacheStore {
            caches,
            bodies: HashMap::new(),
            next,
            store: Some((store, ns)),
        })
    }

    /// Writes `writes` through to the store, if the caches persist.
    fn persist(&self, writes: Vec<RowWrite>) -> Result<(), String> {
        match &self.store {
            Some((store, ns)) => futures::executor::block_on(store.write_rows(ns, writes))
                .map_err(|e| format!("writing the caches: {e}")),
            None => Ok(()),
        }
    }

    fn names_row(&self) -> RowWrite {
        (
            "names".to_owned(),
            Some(serde_json::to_vec(&self.names()).unwrap_or_default()),
        )
    }

    /// The cache names, in creation order.
    pub fn names(&self) -> Vec<String> {
        self.caches.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Creates cache `name` if it does not exist.
    pub fn open(&mut self, name: &str) -> Result<(), String> {
        if !self.caches.iter().any(|(n, _)| n == name) {
            self.caches.push((name.to_owned(), Vec::new()));
            let writes = vec![self.names_row(), (cache_key(name), Some(b"[]".to_vec()))];
            if let Err(e) = self.persist(writes) {
                self.caches.pop();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes cache `name`; whether it existed.
    pub fn delete(&mut self, name: &str) -> Result<bool, String> {
        let Some(at) = self.caches.iter().position(|(n, _)| n == name) else {
            return Ok(false);
        };
        let (name, gone) = self.caches.remove(at);
        let mut writes = vec![self.names_row(), (cache_key(&name), None)];
        writes.extend(self.dead_bodies(entry_ids(&gone).collect()));
        if let Err(e) = self.persist(writes) {
            self.caches.insert(at, (name, gone));
            return Err(e);
        }
        self.drop_unused_bodies();
        Ok(true)
    }

    /// The entries of cache `name`.
    pub fn entries(&self, name: &str) -> Option<Vec<Value>> {
        self.caches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
    }

    /// Replaces the entries of cache `name` (the bindings computed the new list).
    pub fn write(&mut self, name: &str, entries: Vec<Value>) -> Result<(), String> {
        let Some(at) = self.caches.iter().position(|(n, _)| n == name) else {
            return Ok(());
        };
        let before: Vec<u64> = entry_ids(&self.caches[at].1).collect();
        let added: Vec<u64> = entry_ids(&entries)
            .filter(|id| !before.contains(id))
            .collect();
        let mut writes = Vec::new();
        // The new entries' bodies, with the entries that refer to them.
        if self.store.is_some() {
            for id in &added {
                if let Some(body) = self.bodies.get(id) {
                    writes.push((body_key(*id), Some(body.clone())));
                }
            }
        }
        writes.push((
            cache_key(name),
            Some(serde_json::to_vec(&entries).unwrap_or_default()),
        ));
        let previous = std::mem::replace(&mut self.caches[at].1, entries);
        writes.extend(self.dead_bodies(before));
        if let Err(e) = self.persist(writes) {
            self.caches[at].1 = previous;
            return Err(e);
        }
        if self.store.is_some() {
            for id in &added {
                self.bodies.remove(id);
            }
        }
        self.drop_unused_bodies();
        Ok(())
    }

    /// Keeps a body for an entry to come; returns its id.
    pub fn add_body(&mut self, body: Vec<u8>) -> u64 {
        self.next += 1;
        self.bodies.insert(self.next, body);
        self.next
    }

    /// The body of entry `id`.
    pub fn body(&self, id: u64) -> Option<Vec<u8>> {
        if let Some(b) = self.bodies.get(&id) {
            return Some(b.clone());
        }
        let (store, ns) = self.store.as_ref()?;
        let key = body_key(id);
        futures::executor::block_on(store.rows(ns, &key))
            .ok()?
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    fn live_ids(&self) -> HashSet<u64> {
        self.caches.iter().flat_map(|(_, e)| entry_ids(e)).collect()
    }

    /// The removals of stored bodies no entry refers to; `candidates` are the ids that may
    /// have lost their last entry.
    fn dead_bodies(&self, candidates: Vec<u64>) -> Vec<RowWrite> {
        if self.store.is_none() {
            return Vec::new();
        }
        let live = self.live_ids();
        candidates
            .into_iter()
            .filter(|id| !live.contains(id))
            .map(|id| (body_key(id), None))
            .collect()
    }

    /// Drops the bodies in memory no entry refers to (a body added but not yet written is
    /// kept while its id is the newest).
    fn drop_unused_bodies(&mut self) {
        let live = self.live_ids();
        let newest = self.next;
        self.bodies
            .retain(|id, _| live.contains(id) || *id == newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use background_fetch_redb::RedbStoreConfig;
    use serde_json::json;

    fn entry(id: u64, url: &str) -> Value {
        json!({"id": id, "request": {"url": url}, "response": {"status": 200}})
    }

    /// A change whose write to the store fails is an error and is not made: the caches in
    /// memory stay what the store holds (they kept the change, and the failure was a line on
    /// stderr).
    #[test]
    fn a_change_the_store_cannot_write_fails_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("s.redb"), RedbStoreConfig::default()).unwrap();
        let mut caches = CacheStore::on_store(store.clone(), "https://a.test").unwrap();
        caches.open("x").unwrap();
        let id = caches.add_body(b"kept".to_vec());
        caches.write("x", vec![entry(id, "/kept")]).unwrap();
        // The store goes away (as a full disk fails every write).
        futures::executor::block_on(store.close()).unwrap();

        let id2 = caches.add_body(b"lost".to_vec());
        let put = caches.write("x", vec![entry(id, "/kept"), entry(id2, "/lost")]);
        assert!(put.is_err(), "{put:?}");
        assert_eq!(caches.entries("x"), Some(vec![entry(id, "/kept")]));
        let cleared = caches.write("x", Vec::new());
        assert!(cleared.is_err());
        assert_eq!(caches.entries("x").map(|e| e.len()), Some(1));
        assert!(caches.open("y").is_err());
        assert_eq!(caches.names(), vec!["x".to_owned()]);
        assert!(caches.delete("x").is_err());
        assert_eq!(caches.names(), vec!["x".to_owned()]);
        assert_eq!(caches.entries("x").map(|e| e.len()), Some(1));
    }

    /// In memory (no store) nothing can fail.
    #[test]
    fn in_memory_changes_succeed() {
        let mut caches = CacheStore::default();
        caches.open("x").unwrap();
        let id = caches.add_body(b"a".to_vec());
        caches.write("x", vec![entry(id, "/a")]).unwrap();
        assert_eq!(caches.body(id), Some(b"a".to_vec()));
        assert_eq!(caches.delete("x"), Ok(true));
        assert_eq!(caches.delete("x"), Ok(false));
    }
}
