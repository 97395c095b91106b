//! The quota ledger: per storage key, the bytes stored and the bytes running fetches reserved
//! for their `downloadTotal` (spec issue 110, `spec-map.md` deviation 24).

use crate::core::{EngineInner, QuotaLedger};
use crate::model::FetchUid;
use crate::state::BgFetch;
use crate::store::StoreError;
use crate::sync::lock;

impl EngineInner {
    /// Makes sure the ledger of `storage_key` knows the store's usage.
    pub(crate) async fn ensure_quota_ledger(&self, storage_key: &str) -> Result<(), StoreError> {
        if lock(&self.state).quota.contains_key(storage_key) {
            return Ok(());
        }
        let usage = self.hosts.store.usage(storage_key).await?;
        lock(&self.state)
            .quota
            .entry(storage_key.to_owned())
            .or_insert_with(|| QuotaLedger {
                usage,
                ..Default::default()
            });
        Ok(())
    }

    /// Asks the quota host for `storage_key`'s quota and keeps the answer in its ledger, which
    /// the charges and reservations read (the host may answer from another process: it is
    /// asked when a fetch is made and when one starts downloading, not for every chunk).
    pub(crate) async fn refresh_quota(&self, storage_key: &str) {
        let limit = self.hosts.quota.quota(storage_key).await;
        lock(&self.state)
            .quota
            .entry(storage_key.to_owned())
            .or_default()
            .limit = limit;
    }

    /// Charges `n` bytes stored for `uid` to `storage_key`, using the fetch's own reservation
    /// first. Returns false (charging nothing) if that would exceed the quota.
    pub(crate) fn charge_quota(&self, storage_key: &str, uid: FetchUid, n: u64) -> bool {
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        let limit = ledger.limit;
        let own = ledger.reservations.get(&uid).copied().unwrap_or(0);
        let beyond = n.saturating_sub(own);
        if let Some(limit) = limit
            && ledger
                .usage
                .saturating_add(ledger.reserved())
                .saturating_add(beyond)
                > limit
        {
            return false;
        }
        if own > 0 {
            ledger.reservations.insert(uid, own - n.min(own));
        }
        ledger.usage += n;
        *ledger.stored.entry(uid).or_default() += n;
        true
    }

    /// Gives back `n` bytes of `uid` that are no longer stored (a record restarted).
    pub(crate) fn uncharge_quota(&self, storage_key: &str, uid: FetchUid, n: u64) {
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        ledger.usage = ledger.usage.saturating_sub(n);
        if let Some(s) = ledger.stored.get_mut(&uid) {
            *s = s.saturating_sub(n);
        }
    }

    /// Sets what is left of `uid`'s reservation to `remaining` (a restarted record gave its
    /// bytes back: they are the fetch's again, not the storage key's).
    pub(crate) fn refill_reservation(&self, storage_key: &str, uid: FetchUid, remaining: u64) {
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        if remaining > 0 {
            ledger.reservations.insert(uid, remaining);
        }
    }

    /// Reserves `amount` for `uid`. Returns false if it does not fit.
    ///
    /// AD-HOC: spec issue 110 ("Reject fetch() if downloadTotal cannot be reserved from
    /// quota"), as the README and WPT expect.
    pub(crate) fn reserve_quota(&self, storage_key: &str, uid: FetchUid, amount: u64) -> bool {
        let mut st = lock(&self.state);
        let ledger = st.quota.entry(storage_key.to_owned()).or_default();
        let limit = ledger.limit;
        if let Some(limit) = limit
            && ledger
                .usage
                .saturating_add(ledger.reserved())
                .saturating_add(amount)
                > limit
        {
            return false;
        }
        if amount > 0 {
            ledger.reservations.insert(uid, amount);
        }
        true
    }

    /// Releases everything `bg` holds: its reservation and its stored bytes (called when its
    /// data is dropped from the store).
    pub(crate) fn release_quota(&self, bg: &BgFetch) {
        self.release_quota_uid(&bg.registration.storage_key, bg.uid);
    }

    pub(crate) fn release_quota_uid(&self, storage_key: &str, uid: FetchUid) {
        let mut st = lock(&self.state);
        if let Some(ledger) = st.quota.get_mut(storage_key) {
            ledger.reservations.remove(&uid);
            let stored = ledger.stored.remove(&uid).unwrap_or(0);
            ledger.usage = ledger.usage.saturating_sub(stored);
        }
    }
}
