//! The store contract, run against the in-memory store.

use background_fetch::{MemoryStore, Store};
use std::sync::Arc;

background_fetch::store_contract_tests!({
    let store = MemoryStore::new();
    move || Arc::new(store.clone()) as Arc<dyn Store>
});
