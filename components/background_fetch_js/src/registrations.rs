//! Service worker registrations kept with the background fetches: an app run on a store
//! records each registration its page makes (scope, script URL, and where the app's origin
//! comes from), in the store's embedder rows of namespace [`NAMESPACE`], so that a later
//! process that finds the registration's fetches in the store (`bgfetch run`) can start the
//! same worker again and fire their events at it.
//!
//! The worker's scripts are kept too, as the service worker spec's registration keeps its
//! worker's "script resource map": the main script and every script it imported, each by URL,
//! as they were when the worker ran. A later process runs the worker from them, not from the
//! origin, so the handler that runs is the one that was installed, also when the origin is
//! gone or serves another version (a browser updates a worker by its update check, which this
//! host does not do).

use background_fetch_redb::RedbStore;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
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
    /// Its worker's scripts as they were when it ran (URL -> text): the main script and what
    /// it imported.
    pub sources: BTreeMap<String, String>,
}

/// The rows an app run writes.
pub struct RegistrationRows {
    store: RedbStore,
    origin: AppOrigin,
    /// The scripts of the stored worker a resumed run starts (URL -> text).
    stored_sources: BTreeMap<String, String>,
}

impl RegistrationRows {
    /// Rows of the app whose origin is `origin` in `store`.
    pub fn new(store: RedbStore, origin: AppOrigin) -> Self {
        RegistrationRows {
            store,
            origin,
            stored_sources: BTreeMap::new(),
        }
    }

    /// The same, for a run that starts `registration`'s stored worker: its scripts come from
    /// [`RegistrationRows::stored_source`] rather than the origin.
    pub fn resuming(store: RedbStore, registration: &StoredRegistration) -> Self {
        RegistrationRows {
            store,
            origin: registration.origin.clone(),
            stored_sources: registration.sources.clone(),
        }
    }

    /// The text of the stored worker's script at `url`, if it has one.
    pub fn stored_source(&self, url: &str) -> Option<&str> {
        self.stored_sources.get(url).map(String::as_str)
    }

    /// Records that `scope`'s worker is `script_url`, a new worker whose scripts are kept as
    /// it loads them ([`RegistrationRows::keep_source`]).
    pub fn register(&self, scope: &str, script_url: &str) -> Result<(), String> {
        let row = json!({"script": script_url, "app": self.origin.to_json(), "sources": {}});
        self.write(scope, &row)
    }

    /// Keeps `text` as the script at `url` of `scope`'s worker.
    pub fn keep_source(&self, scope: &str, url: &str, text: &str) -> Result<(), String> {
        let rows = futures::executor::block_on(self.store.rows(NAMESPACE, scope))
            .map_err(|e| format!("reading the registration of {scope}: {e}"))?;
        let Some((_, value)) = rows.into_iter().find(|(key, _)| key == scope) else {
            return Err(format!("no registration of {scope} to keep {url} in"));
        };
        let mut row: Value = serde_json::from_slice(&value)
            .map_err(|e| format!("the registration of {scope} is not readable: {e}"))?;
        if !row["sources"].is_object() {
            row["sources"] = Value::Object(Map::new());
        }
        row["sources"][url] = Value::String(text.to_owned());
        self.write(scope, &row)
    }

    fn write(&self, scope: &str, row: &Value) -> Result<(), String> {
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
                sources: v["sources"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(url, text)| {
                                Some((url.clone(), text.as_str()?.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}
