//! Recovery: every background fetch the store holds comes back at start-up, restored as it was
//! left (flags, records, results), and resumes or fires the event a previous process did not
//! finish.

use crate::core::EngineInner;
use crate::model::RecordResult;
use crate::state::{BgFetch, BgFetchMut, Flags, Progress, Record, ResponseData, ResponseDataState};
use crate::store::{RecordState, StoredFetch};
use crate::sync::{Watch, lock};
use futures::FutureExt;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

impl EngineInner {
    /// Rebuilds a background fetch from the store and resumes it.
    pub(crate) fn restore(self: &Arc<Self>, f: StoredFetch) {
        let StoredFetch {
            meta,
            upload_total,
            flags,
            settled,
            records,
        } = f;
        let mut stored_total = 0;
        let recs: Vec<Record> = meta
            .requests
            .iter()
            .zip(
                records
                    .iter()
                    .cloned()
                    .chain(std::iter::repeat(crate::store::StoredRecord {
                        state: RecordState::Pending,
                        response: None,
                        generation: 0,
                        body_length: 0,
                        request_sent: false,
                    })),
            )
            .enumerate()
            .map(|(index, (request, sr))| {
                let result = match sr.state {
                    RecordState::Completed(r) => r,
                    // AD-HOC: a non-GET record the previous process had sent (or may have) but
                    // not finished fails: sending it again would be the retry complete a record
                    // forbids for non-GET requests ("not reissued"). One that was never sent
                    // (queued, or waiting on the permission prompt) is sent now.
                    _ if !request.is_get() && sr.request_sent => RecordResult::FetchError,
                    _ => RecordResult::Empty,
                };
                stored_total += sr.body_length;
                Record {
                    index,
                    request: request.clone(),
                    response_data: Mutex::new(ResponseData::new(
                        sr.generation,
                        ResponseDataState {
                            response: sr.response,
                            len: sr.body_length,
                            result,
                        },
                    )),
                }
            })
            .collect();
        let uploaded = meta
            .requests
            .iter()
            .zip(&recs)
            .filter(|(_, r)| r.response_data().result() != RecordResult::Empty)
            .map(|(req, _)| req.body_length.unwrap_or(0))
            .sum();
        let (result, failure_reason) = settled.unwrap_or_default();
        let all_get = meta.requests.iter().all(|r| r.is_get());
        let bg = Arc::new(BgFetch {
            uid: meta.uid,
            id: meta.id.clone(),
            registration: meta.registration.clone(),
            download_total: meta.download_total,
            upload_total,
            records: recs,
            client: meta.client.clone(),
            embedder_data: meta.embedder_data.clone(),
            all_get,
            state: Mutex::new(BgFetchMut {
                title: meta.title.clone(),
                icons: meta.icons.clone(),
                uploaded,
                result,
                failure_reason,
                records_available: true,
                stored_total,
                in_flight: 0,
                delivered: Progress {
                    downloaded: stored_total,
                    uploaded,
                    result,
                    failure_reason,
                    records_available: true,
                },
                last_update: None,
                update_scheduled: false,
                immediate_failure: false,
            }),
            flags: Watch::new(Flags::restored(flags)),
            settled: AtomicBool::new(settled.is_some()),
            readers: AtomicUsize::new(0),
            drop_pending: AtomicBool::new(false),
            finished: Watch::new(false),
            revisions: Default::default(),
        });
        {
            let mut st = lock(&self.state);
            st.fetches.insert(bg.uid, bg.clone());
            let ledger = st
                .quota
                .entry(meta.registration.storage_key.clone())
                .or_default();
            let own: u64 = stored_total
                + meta
                    .requests
                    .iter()
                    .map(|r| r.body_length.unwrap_or(0))
                    .sum::<u64>();
            ledger.stored.insert(bg.uid, own);
            if settled.is_none() && bg.download_total > 0 {
                ledger
                    .reservations
                    .insert(bg.uid, bg.download_total.saturating_sub(stored_total));
            }
        }
        tracing::info!(uid = %bg.uid, id = %bg.id, settled = settled.is_some(), "restored a background fetch");
        self.hosts.ui.show(&self.ui_snapshot(&bg));
        let engine = self.clone();
        let uid = bg.uid;
        let work = if settled.is_some() {
            // The previous process settled it but did not finish its event: fire it again
            // (functional events are delivered at least once across crashes).
            async move {
                crate::perform::fire_settle_event(&engine, &bg).await;
            }
            .boxed()
        } else {
            // AD-HOC: a fetch whose abort all flag was set is not active again: abort() took it
            //         out of the map (and the UI's abort ends it the same way); it runs only to
            //         settle as "aborted" and fire backgroundfetchabort.
            if !flags.aborted {
                lock(&self.registration(&meta.registration).active).push((meta.id, bg.clone()));
            }
            crate::perform::perform_background_fetch(engine, bg).boxed()
        };
        if self.config.resume_on_start {
            self.hosts.spawner.spawn(work);
        } else {
            lock(&self.state).deferred.insert(uid, work);
        }
    }
}
