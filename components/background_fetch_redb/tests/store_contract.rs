//! The core crate's store contract, run against the redb store (each check reopens the same
//! file).

use background_fetch::Store;
use background_fetch_redb::{RedbStore, RedbStoreConfig};
use std::sync::Arc;

background_fetch::store_contract_tests!({
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("contract.redb");
    move || {
        // Keep the directory alive as long as the closure.
        let _ = &dir;
        Arc::new(RedbStore::open(&path, RedbStoreConfig::default()).expect("open the store"))
            as Arc<dyn Store>
    }
});
