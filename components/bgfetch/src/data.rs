//! The embedder data bgfetch stores with each fetch (`BackgroundFetchOptions::embedder_data`,
//! JSON): what the program must know about a fetch in any later process (`bgfetch run`).

use background_fetch::FetchUid;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The embedder data stored with each fetch.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct FetchData {
    /// `--out DIR`, absolute.
    pub out: Option<PathBuf>,
    /// Names this fetch's temporary files and delivery journal (random, fixed at `fetch()`).
    #[serde(default)]
    pub token: Option<String>,
    /// `--limit-rate`: bytes per second for the fetch's records together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_rate: Option<u64>,
    /// The file name each record is delivered under in `--out` (by record index; `None`: the
    /// last segment of its URL), from `--input-file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Option<String>>,
}

impl FetchData {
    /// The data for a new fetch delivering to `out`.
    pub fn new(out: Option<PathBuf>) -> FetchData {
        FetchData {
            out,
            token: Some(format!("{:016x}", fastrand::u64(..))),
            limit_rate: None,
            names: Vec::new(),
        }
    }

    /// Reads a fetch's embedder data (anything unreadable counts as none).
    pub fn parse(data: Option<&str>) -> FetchData {
        data.and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default()
    }

    /// Serialises it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }

    /// What names fetch `uid`'s temporary files and journal: its token (a fetch stored by an
    /// earlier version has none: its uid then).
    pub fn token(&self, uid: FetchUid) -> String {
        self.token
            .clone()
            .unwrap_or_else(|| format!("uid{}", uid.0))
    }
}
