//! The Cache API's storage: per origin (the runner has one), the named caches in creation order,
//! each a list of (request, response) entries as the bindings' data, and their bodies.
//!
//! <https://w3c.github.io/ServiceWorker/#cache-objects>
//!
//! AD-HOC: the caches live in memory beside the engine's store, not in it (the engine's
//! `Store` has no request-response cache), so they do not survive a restart.
//! FIXME: keep them in the store with the background fetches.

use serde_json::Value;
use std::collections::HashMap;

/// The name-to-cache map and the bodies.
#[derive(Default)]
pub struct CacheStore {
    /// The caches, in creation order: name and entries (`{id, request, response}`).
    caches: Vec<(String, Vec<Value>)>,
    /// Bodies by entry id.
    bodies: HashMap<u64, Vec<u8>>,
    next: u64,
}

impl CacheStore {
    /// The cache names, in creation order.
    pub fn names(&self) -> Vec<String> {
        self.caches.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Creates cache `name` if it does not exist.
    pub fn open(&mut self, name: &str) {
        if !self.caches.iter().any(|(n, _)| n == name) {
            self.caches.push((name.to_owned(), Vec::new()));
        }
    }

    /// Deletes cache `name`; whether it existed.
    pub fn delete(&mut self, name: &str) -> bool {
        let before = self.caches.len();
        self.caches.retain(|(n, _)| n != name);
        self.collect_bodies();
        before != self.caches.len()
    }

    /// The entries of cache `name`.
    pub fn entries(&self, name: &str) -> Option<Vec<Value>> {
        self.caches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
    }

    /// Replaces the entries of cache `name` (the bindings computed the new list).
    pub fn write(&mut self, name: &str, entries: Vec<Value>) {
        if let Some((_, e)) = self.caches.iter_mut().find(|(n, _)| n == name) {
            *e = entries;
        }
        self.collect_bodies();
    }

    /// Keeps a body for an entry to come; returns its id.
    pub fn add_body(&mut self, body: Vec<u8>) -> u64 {
        self.next += 1;
        self.bodies.insert(self.next, body);
        self.next
    }

    /// The body of entry `id`.
    pub fn body(&self, id: u64) -> Option<Vec<u8>> {
        self.bodies.get(&id).cloned()
    }

    /// Drops the bodies no entry refers to (a body added but not yet written is kept while
    /// its id is the newest).
    fn collect_bodies(&mut self) {
        let live: std::collections::HashSet<u64> = self
            .caches
            .iter()
            .flat_map(|(_, e)| e.iter().filter_map(|v| v["id"].as_u64()))
            .collect();
        let newest = self.next;
        self.bodies
            .retain(|id, _| live.contains(id) || *id == newest);
    }
}
