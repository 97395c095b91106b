//! Service worker registrations kept with the background fetches: an app run on a store
//! records each registration its page makes (scope, script URL, and where the app's origin
//! comes from), in the store's embedder rows of namespace [`NAMESPACE`], so that a later
//! process that finds the registration's fetches in the store (`bgfetch run`) can start the
//! same worker again and fire their events at it.
//!
//! AD-HOC: what is kept is where the worker's script is (the app's directory, served again on
//! loopback, or its live origin, fetched again), not the script's text: the worker that
//! handles the events is the one the origin serves then, as a browser's update check would
//! find it. FIXME: keep the script and its `importScripts` sources, for an origin that is gone.

use background_fetch_redb::RedbStore;
use serde_json::{Value, json};
use std::path::PathBuf;
use url::Url;

/// The namespace of the rows (key: the registration's scope URL).
pub const NAMESPACE: &str = "service-worker-registrations";

/// Where an app's origin comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppOrigin {
    /// A directory served on loopback as `https://web-platform.test`.
    Root(PathBuf),
    /// A live origin, reached through the embedder's network.
    Live(Url),
}

impl AppOrigin {
    /// The origin's URL (`https://web-platform.test/` for a directory).
    pub fn url(&self) -> Url {
        match self {
            AppOrigin::Root(_) => Url::parse(crate::server::ORIGIN)
                .expect("a URL")
                .join("/")
                .expect("a URL"),
            AppOrigin::Live(u) => u.join("/").unwrap_or_else(|_| u.clone()),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            AppOrigin::Root(p) => json!({"root": p.to_string_lossy()}),
            AppOrigin::Live(u) => json!({"origin": u.as_str()}),
        }
    }

    fn from_json(v: &Value) -> Option<AppOrigin> {
        if let Some(root) = v["root"].as_str() {
            return Some(AppOrigin::Root(PathBuf::from(root)));
        }
        Url::parse(v["origin"].as_str()?).ok().map(AppOrigin::Live)
    }
}

/// A registration as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRegistration {
    /// Its scope URL.
    pub scope: Url,
    /// Its worker's script URL.
    pub script_url: Url,
    /// Where the app's origin comes from.
    pub origin: AppOrigin,
}

/// The rows an app run writes.
pub struct RegistrationRows {
    store: RedbStore,
    origin: AppOrigin,
}

impl RegistrationRows {
    /// Rows of the app whose origin is `origin` in `store`.
    pub fn new(store: RedbStore, origin: AppOrigin) -> Self {
        RegistrationRows { store, origin }
    }

    /// Records that `scope`'s worker is `script_url`.
    pub fn register(&self, scope: &str, script_url: &str) -> Result<(), String> {
        let row = json!({"script": script_url, "app": self.origin.to_json()});
        futures::executor::block_on(self.store.write_rows(
            NAMESPACE,
            vec![(scope.to_owned(), Some(row.to_string().into_bytes()))],
        ))
        .map_err(|e| format!("storing the registration of {scope}: {e}"))
    }

    /// Forgets `scope`'s registration.
    pub fn unregister(&self, scope: &str) -> Result<(), String> {
        futures::executor::block_on(
            self.store
                .write_rows(NAMESPACE, vec![(scope.to_owned(), None)]),
        )
        .map_err(|e| format!("removing the registration of {scope}: {e}"))
    }
}

/// The registrations stored in `store`.
pub fn stored(store: &RedbStore) -> Result<Vec<StoredRegistration>, String> {
    let rows = futures::executor::block_on(store.rows(NAMESPACE, ""))
        .map_err(|e| format!("reading the service worker registrations: {e}"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(scope, value)| {
            let v: Value = serde_json::from_slice(&value).ok()?;
            Some(StoredRegistration {
                scope: Url::parse(&scope).ok()?,
                script_url: Url::parse(v["script"].as_str()?).ok()?,
                origin: AppOrigin::from_json(&v["app"])?,
            })
        })
        .collect())
}
