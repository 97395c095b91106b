//! The store's own limits: [`RedbStoreConfig::quota`](crate::RedbStoreConfig::quota) per
//! storage key and [`RedbStoreConfig::max_total_bytes`](crate::RedbStoreConfig::max_total_bytes),
//! checked before anything is written, and `usage()`.

use crate::actor::Actor;
use crate::model::Fetch;
use background_fetch::store::{StoreError, StoreErrorKind};

impl Actor {
    /// Bytes stored for `key` (request and response bodies, buffered ones included).
    pub(crate) fn usage(&self, key: &str) -> u64 {
        // FIXME: this walks every record of the key's fetches; with a quota configured it runs
        // for every append (a running total per fetch would make it constant).
        self.fetches
            .values()
            .filter(|f| f.meta.registration.storage_key == key)
            .map(Fetch::bytes)
            .sum()
    }

    /// The store's own quota checks for `n` more bytes of fetch `uid`.
    pub(crate) fn check_quota(&self, uid: u64, n: u64) -> Result<(), StoreError> {
        if let Some(max) = self.config.max_total_bytes {
            let total: u64 = self.fetches.values().map(Fetch::bytes).sum();
            if total + n > max {
                return Err(StoreError::new(
                    StoreErrorKind::QuotaExceeded,
                    format!("the store is limited to {max} bytes and holds {total}"),
                ));
            }
        }
        if let Some(quota) = &self.config.quota {
            let key = &self.fetches[&uid].meta.registration.storage_key;
            if let Some(q) = quota(key) {
                let used = self.usage(key);
                if used + n > q {
                    return Err(StoreError::new(
                        StoreErrorKind::QuotaExceeded,
                        format!(
                            "storage key {key} uses {used} bytes; {n} more would exceed its \
                             quota of {q} bytes"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
