//! "Perform a background fetch" and "complete a record".
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).
//!
//! One task per background fetch runs [`perform_background_fetch`]; inside it, one future per
//! record runs [`complete_record`] (the spec's recursion is a loop). Every wait of the spec
//! ("abort when", "wait for the paused flag") is a race against the fetch's flags and the
//! network's connectivity.

use crate::core::EngineInner;
use crate::fetch::ResponseHead;
use crate::fetch::content_range::{
    extract_content_range_values, parse_unsatisfied_content_range, range_request_start,
    validate_partial_response, validators_match,
};
use crate::fetch::policy::check_request_url;
use crate::hosts::{NetworkErrorKind, NetworkEvent, NetworkRequest, RequestBodySource, Validators};
use crate::model::FunctionalEventKind;
use crate::model::{BackgroundFetchFailureReason, BackgroundFetchResult, RecordResult};
use crate::state::{BgFetch, ResponseData, ResponseDataState};
use crate::store::{StoreError, StoreErrorKind};
use crate::sync::lock;
use futures::future::{Either, select};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::{FutureExt, pin_mut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::Instrument;

/// Perform a background fetch.
///
/// <https://wicg.github.io/background-fetch/#perform-a-background-fetch>
pub(crate) async fn perform_background_fetch(engine: Arc<EngineInner>, bg: Arc<BgFetch>) {
    let span = tracing::info_span!("perform", uid = %bg.uid, id = %bg.id);
    async move {
        // 1. Let swRegistration be bgFetch's service worker registration.
        // The quota this run's downloads are charged against (asked once, not per chunk).
        engine.refresh_quota(&bg.registration.storage_key).await;
        // 2. Let settledFetches be 0.
        let mut settled_fetches = 0usize;
        // 3. Let immediateFailure be false.
        let mut immediate_failure = false;
        // 4. Let failureReason be the empty string.
        let mut failure_reason = BackgroundFetchFailureReason::Empty;
        // 5. For each record in bgFetch's records, run the following steps in parallel:
        let mut running = FuturesUnordered::new();
        for record in &bg.records {
            let result = record.response_data().result();
            if result != RecordResult::Empty {
                // A record restored from the store already has its final result.
                note_result(result, &mut failure_reason);
                settled_fetches += 1;
                continue;
            }
            let index = record.index;
            let span = tracing::info_span!("record", index, url = %record.request.url);
            // 5.1. Complete a record for bgFetch and record.
            running.push(
                complete_record(engine.clone(), bg.clone(), index)
                    .instrument(span)
                    .map(move |()| index),
            );
        }
        // 6. Wait for settledFetches to be bgFetch's records's size, or immediateFailure to be
        //    true.
        while settled_fetches < bg.records.len() && !immediate_failure {
            let Some(index) = running.next().await else {
                break;
            };
            // 5.2. Let result be record's response data's result.
            let result = bg.records[index].response_data().result();
            // 5.3. If failureReason is not the empty string: [sic]
            note_result(result, &mut failure_reason);
            // 5.4. Increment settledFetches by 1.
            settled_fetches += 1;
            // 5.5. If result is "download-total-exceeded", then set immediateFailure to true.
            if result == RecordResult::DownloadTotalExceeded {
                immediate_failure = true;
            }
        }
        // 7. If immediateFailure is true, set bgFetch's abort all flag.
        // NOTE: complete a record set it already, the moment the limit was crossed, so every
        //       other in-flight request was cancelled at once.
        if immediate_failure {
            bg.flags.update(|f| f.abort_all = true);
            // AD-HOC: the failure reason is "download-total-exceeded" even if another record
            //         failed first (outline §6.2 research note): it is what ended the fetch.
            failure_reason = BackgroundFetchFailureReason::DownloadTotalExceeded;
            if !running.is_empty() {
                // The other records are winding down as "aborted"; let them finish.
                engine
                    .hosts
                    .spawner
                    .spawn(async move { while running.next().await.is_some() {} }.boxed());
            }
        }
        // 8. Enqueue the following steps to swRegistration's active background fetches edit
        //    queue:
        settle(&engine, &bg, failure_reason).await;
    }
    .instrument(span)
    .await
}

/// Step 5.3 of perform a background fetch, corrected.
fn note_result(result: RecordResult, failure_reason: &mut BackgroundFetchFailureReason) {
    // 5.3. If failureReason is not the empty string:
    //      1. Assert: result is not "redundant".
    //      2. Set failureReason to result.
    // AD-HOC: the condition is inverted in the spec (outline §11.C.1): as written no failure
    //         would ever be recorded. Intended: the first record result that is not "success"
    //         becomes the failure reason.
    debug_assert_ne!(result, RecordResult::Redundant);
    if *failure_reason == BackgroundFetchFailureReason::Empty
        && let Some(reason) = result.failure_reason()
    {
        *failure_reason = reason;
    }
}

/// Step 8 of perform a background fetch.
async fn settle(
    engine: &Arc<EngineInner>,
    bg: &Arc<BgFetch>,
    mut failure_reason: BackgroundFetchFailureReason,
) {
    let registration = engine.registration(&bg.registration);
    {
        let _queue = registration.edit_queue.lock().await;
        if bg.flags().silent {
            // The registration was unregistered: no events, the storage is already purged.
            bg.settled.store(true, Ordering::SeqCst);
            return;
        }
        // 8.1. Let activeBgFetches be swRegistration's active background fetches.
        // 8.2. Let id be bgFetch's id.
        // 8.3. If activeBgFetches contains background fetch bgFetch, then remove
        //      activeBgFetches[id].
        if registration.contains(bg) {
            registration.remove(&bg.id);
        } else {
            // 8.4. Otherwise, set failureReason to "aborted".
            // NOTE: This handles a race condition where abort() was successfully called but
            //       one of the fetches failed at the same time. If abort() returned true, we
            //       want to ensure we fire the related abort event.
            failure_reason = BackgroundFetchFailureReason::Aborted;
        }
        let result = if failure_reason != BackgroundFetchFailureReason::Empty {
            // 8.5. If failureReason is not the empty string, then: set bgFetch's result to
            //      "failure"; set bgFetch's failure reason to failureReason.
            BackgroundFetchResult::Failure
        } else {
            // 8.6. Otherwise, set bgFetch's result to "success".
            BackgroundFetchResult::Success
        };
        {
            let mut s = bg.lock();
            s.result = result;
            s.failure_reason = failure_reason;
        }
        bg.settled.store(true, Ordering::SeqCst);
        // The result is durable before any event fires: a crash from here on fires the event
        // again after the restart, and never loses the records.
        if let Err(e) = engine
            .hosts
            .store
            .settle(bg.uid, result, failure_reason)
            .await
        {
            tracing::warn!(uid = %bg.uid, error = %e, "could not store the result");
            engine.storage_failed(bg.uid, crate::hosts::StoredChange::Result, &e);
        }
        tracing::info!(uid = %bg.uid, result = %result, failure_reason = %failure_reason, "settled");
    }
    // 8.7. Update background fetch instances for bgFetch.
    engine.update_instances(bg, true);
    fire_settle_event(engine, bg).await;
}

/// Steps 8.8 to 8.13 of perform a background fetch (also run for a fetch restored settled).
pub(crate) async fn fire_settle_event(engine: &Arc<EngineInner>, bg: &Arc<BgFetch>) {
    let failure_reason = bg.lock().failure_reason;
    // 8.8. Let eventName be the empty string.
    // 8.9. Let eventConstructor be null.
    let kind = match failure_reason {
        // 8.10. If failureReason is "aborted", then: set eventName to "backgroundfetchabort";
        //       set eventConstructor to BackgroundFetchEvent.
        BackgroundFetchFailureReason::Aborted => FunctionalEventKind::Abort,
        // 8.12. Otherwise: set eventName to "backgroundfetchsuccess"; set eventConstructor to
        //       BackgroundFetchUpdateUIEvent.
        BackgroundFetchFailureReason::Empty => FunctionalEventKind::Success,
        // 8.11. Otherwise, if failureReason is not the empty string, then: set eventName to
        //       "backgroundfetchfail"; set eventConstructor to BackgroundFetchUpdateUIEvent.
        _ => FunctionalEventKind::Fail,
    };
    // 8.13. Fire a functional event named eventName using eventConstructor on swRegistration
    //       with the following properties: registration: the result of getting a
    //       BackgroundFetchRegistration instance for bgFetch in the event object's relevant
    //       Realm. Then run these steps with dispatchedEvent in parallel:
    // 8.13.1. Wait until dispatchedEvent is not active.
    crate::functional::fire(engine, bg, kind).await;
    // 8.13.2. Unset bgFetch's records available flag.
    bg.lock().records_available = false;
    // 8.13.3. Update background fetch instances for bgFetch.
    engine.update_instances(bg, true);
    // AD-HOC: the user agent may now drop the stored data (README: "It's removed once the
    // operation is complete"), once no Response body handed out earlier is still being read.
    // The fetch stays in memory for its UI (click).
    engine.drop_stored_records(bg);
}

/// What interrupted an attempt or a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    /// The abort all flag is set.
    Abort,
    /// The fetch is paused, or the network is offline (only `GET` records are interrupted).
    Pause,
}

/// Completes when the abort all flag is set, or (for a `GET` record) when the fetch is paused
/// or the network goes offline.
async fn interruption(engine: &EngineInner, bg: &BgFetch, is_get: bool) -> Interrupt {
    loop {
        let flags_version = bg.flags.version();
        let online_version = engine.online.version();
        let flags = bg.flags();
        if flags.abort_all {
            return Interrupt::Abort;
        }
        if is_get && (flags.paused || !engine.online.get()) {
            return Interrupt::Pause;
        }
        let a = bg.flags.changed_since(flags_version);
        let b = engine.online.changed_since(online_version);
        pin_mut!(a, b);
        select(a, b).await;
    }
}

/// Step 3 of complete a record: waits until the fetch is neither paused nor offline. Returns
/// false if the abort all flag was set instead.
async fn wait_until_runnable(engine: &EngineInner, bg: &BgFetch) -> bool {
    loop {
        let flags_version = bg.flags.version();
        let online_version = engine.online.version();
        let flags = bg.flags();
        if flags.abort_all {
            return false;
        }
        if !flags.paused && engine.online.get() {
            return true;
        }
        let a = bg.flags.changed_since(flags_version);
        let b = engine.online.changed_since(online_version);
        pin_mut!(a, b);
        select(a, b).await;
    }
}

/// Races `fut` against an interruption. The interruption is polled first, so it wins whenever
/// both are ready: a network that always has data ready (a full channel, a store slower than
/// the network) must not keep a record downloading once its fetch is paused or aborted
/// (complete a record step 13, "abort when").
async fn or_interrupt<F: std::future::Future>(
    engine: &EngineInner,
    bg: &BgFetch,
    is_get: bool,
    fut: F,
) -> Result<F::Output, Interrupt> {
    let interrupt = interruption(engine, bg, is_get);
    pin_mut!(fut, interrupt);
    match select(interrupt, fut).await {
        Either::Left((i, _)) => Err(i),
        Either::Right((out, _)) => Ok(out),
    }
}

/// The `Content-Length` of a full response whose body is not content-coded (so the host's
/// decoded bytes are the bytes it counts): one length, however many times it is repeated
/// (Fetch's "extract a length"), or `None`.
fn identity_content_length(head: &ResponseHead) -> Option<u64> {
    let coded = head.headers.get_str("content-encoding").is_some_and(|v| {
        v.split(',')
            .map(|c| c.trim_matches([' ', '\t']))
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
    });
    if coded {
        return None;
    }
    let values = head.headers.get_str("content-length")?;
    let mut lengths = values.split(',').map(|v| v.trim_matches([' ', '\t']));
    let first = lengths.next()?;
    if lengths.any(|v| v != first) || first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    first.parse().ok()
}

/// How one fetch attempt ended.
enum Attempt {
    /// The record has a final result.
    Done(RecordResult),
    /// The resource was temporarily unavailable, or a 206 ended before the whole resource:
    /// try again (with Range from the stored length).
    Retry,
    /// Paused or offline mid-flight: wait, then resume with Range.
    Interrupted,
}

/// The record result for a failed store write.
fn store_failure(e: &StoreError) -> RecordResult {
    match e.kind {
        StoreErrorKind::QuotaExceeded => RecordResult::QuotaExceeded,
        _ => RecordResult::FetchError,
    }
}

/// Complete a record.
///
/// <https://wicg.github.io/background-fetch/#complete-a-record>
pub(crate) async fn complete_record(engine: Arc<EngineInner>, bg: Arc<BgFetch>, index: usize) {
    let record = &bg.records[index];
    let is_get = record.request.is_get();
    // Consecutive attempts that made no progress (for the retry policy). Progress is the
    // record's response reaching further than it ever did: a server that ignores Range and
    // cuts every response short stores bytes at each attempt, but never more than before, and
    // must not keep the record retrying for ever.
    let mut failures: u32 = 0;
    let mut furthest = record.response_data().len();
    let result = loop {
        // 1. Let responseData be record's response data.
        let response_data = record.response_data();
        // 2. Let downloadTotal be bgFetch's download total if it is not 0, otherwise infinity.
        //    (see `attempt`)
        // 3. Wait for bgFetch's paused flag to be unset.
        // AD-HOC: the abort all flag also ends the wait, or aborting a paused fetch would hang
        //         (outline §11.C.8); and nothing starts while the network is offline.
        if !wait_until_runnable(&engine, &bg).await {
            break RecordResult::Aborted;
        }
        if failures > 0 {
            // AD-HOC: the spec retries at once and forever; we back off and may give up
            //         (RetryPolicy; spec issue 26).
            if engine
                .config
                .retry
                .max_attempts
                .is_some_and(|max| failures >= max)
            {
                tracing::warn!(failures, "giving up on a temporarily unavailable resource");
                break RecordResult::FetchError;
            }
            let delay = engine.config.retry.delay(failures, engine.random());
            tracing::debug!(?delay, failures, "waiting before retrying");
            match or_interrupt(&engine, &bg, is_get, engine.hosts.clock.sleep(delay)).await {
                Ok(()) => {}
                Err(Interrupt::Abort) => break RecordResult::Aborted,
                Err(Interrupt::Pause) => continue,
            }
        }
        // The scheduler: a slot of this fetch, then a global one.
        let per_fetch = engine.per_fetch_slots(bg.uid);
        let permits = or_interrupt(&engine, &bg, is_get, async {
            let a = per_fetch.acquire().await;
            let b = engine.global_slots.acquire().await;
            (a, b)
        })
        .await;
        let _permits = match permits {
            Ok(p) => p,
            Err(Interrupt::Abort) => break RecordResult::Aborted,
            Err(Interrupt::Pause) => continue,
        };
        // 4. Let request be a copy of record's request.
        // NOTE: At this point the request is entirely held in storage, even if it started as a
        //       stream.
        let request = record.request.clone();
        // 5. Set request's keepalive to true.
        // 6. Set request's service-workers mode to "none".
        // NOTE: both are part of the NetworkHost contract for every NetworkRequest.
        // 7. Let rangeStart be the length of responseData's bytes.
        let mut range_start = response_data.len();
        // AD-HOC: two kinds of stored bytes cannot be continued by `Range: bytes=rangeStart-`,
        //         which asks for the identity representation (step 8): those of a response
        //         stored with a content coding (decoded or not, they belong to the coded
        //         representation, whose validators, nginx's W/"x" or Apache's "x-gzip", say
        //         nothing about the identity one: a splice could be corrupt or fail for good),
        //         and those of a request whose author set a `Range` header (ours would replace
        //         it). The record restarts instead, as Chromium's cache refuses truncated coded
        //         entries.
        let response_data =
            if range_start > 0 && !can_resume(&request, response_data.response().as_ref()) {
                tracing::info!(
                    range_start,
                    "the stored bytes cannot be resumed: restarting"
                );
                let fresh = replace_response_data(&engine, &bg, index);
                engine.update_instances(&bg, false);
                range_start = 0;
                fresh
            } else {
                response_data
            };
        // 8. If rangeStart is not 0, then add a range header to request with rangeStart.
        // NOTE: When rangeStart is 0, a normal request is made. This allows the initial request
        //       to make use of content encoding, since Accept-Encoding: identity is added to
        //       requests with a range header.
        let range = (range_start > 0).then_some(range_start);
        // AD-HOC: scheme, mixed content, bad port and CSP checks fail this record only, as the
        //         current WPT expects (outline §9.6, spec issue 169).
        if let Err(reason) = check_request_url(&bg.client, &request.url)
            .and_then(|()| engine.hosts.policy.check(&bg.client, &request))
        {
            tracing::info!(%reason, "request blocked");
            break RecordResult::FetchError;
        }
        let validators = response_data
            .response()
            .map(|h| {
                let v = h.validation_headers();
                Validators {
                    etag: v.get_str("etag"),
                    last_modified: v.get_str("last-modified"),
                    date: v.get_str("date"),
                }
            })
            .unwrap_or_default();
        let body = request.body_length.map(|length| {
            let weak = Arc::downgrade(&engine);
            let uid = bg.uid;
            RequestBodySource::reopenable(length, move |offset| {
                stored_request_body_from(weak.clone(), uid, index, offset, length)
            })
        });
        // AD-HOC: a request that must not be sent twice (any non-GET: complete a record never
        //         reissues it) is durably marked as sent first, so that after a crash the
        //         engine knows whether it may send it (never sent) or must fail it.
        if !is_get && let Err(e) = engine.hosts.store.mark_request_sent(bg.uid, index).await {
            tracing::warn!(error = %e, "could not record that the request is being sent");
            break store_failure(&e);
        }
        tracing::debug!(range_start, "fetch attempt");
        // 9. Let fetchAttemptComplete be false.
        // 10. Let lastTransmittedSize be 0.
        // 11. Fetch request.
        let net = NetworkRequest {
            request,
            body,
            range_start: range,
            validators,
            client: bg.client.clone(),
            fetch: bg.uid,
            record: index,
        };
        // 12. Let result be the empty string.
        // 13. Run these steps, but abort when bgFetch's paused flag or abort all flag is set:
        //     1. Wait for fetchAttemptComplete to be true.
        //     2. Set result to responseData's result.
        match attempt(&engine, &bg, index, net, range_start, is_get).await {
            Attempt::Done(result) => break result,
            Attempt::Retry => {
                // The result is still the empty string:
                // 15. If result is the empty string, then complete a record for bgFetch and
                //     record.
                let reached = record.response_data().len();
                if reached > furthest {
                    furthest = reached;
                    failures = 0;
                } else {
                    failures += 1;
                }
            }
            Attempt::Interrupted => {
                let reached = record.response_data().len();
                if reached > furthest {
                    furthest = reached;
                    failures = 0;
                }
            }
        }
    };
    finish_record(&engine, &bg, index, result).await;
}

/// Whether a record whose response data holds `stored`'s bytes can be resumed with a Range
/// request (see the AD-HOC note in `complete_record`).
fn can_resume(request: &crate::fetch::Request, stored: Option<&ResponseHead>) -> bool {
    if request.headers.contains("range") {
        return false;
    }
    let Some(stored) = stored else {
        return true;
    };
    // Every `Content-Encoding` line counts (their combined value), and `identity` is no coding.
    match stored.validation_headers().get_combined("content-encoding") {
        None => true,
        Some(v) => String::from_utf8_lossy(&v)
            .split(',')
            .map(|c| c.trim_matches(|c| c == ' ' || c == '\t'))
            .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity")),
    }
}

/// Streams record `index`'s request body of fetch `uid` from the store (for the upload, and for
/// `BackgroundFetchRecord.request`'s body). Ends early with `Gone` if the engine shut down.
pub(crate) fn stored_request_body(
    engine: std::sync::Weak<EngineInner>,
    uid: crate::model::FetchUid,
    index: usize,
    length: u64,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, StoreError>> {
    stored_request_body_from(engine, uid, index, 0, length)
}

/// [`stored_request_body`] from byte `start` on (the network host re-opens the body there).
fn stored_request_body_from(
    engine: std::sync::Weak<EngineInner>,
    uid: crate::model::FetchUid,
    index: usize,
    start: u64,
    length: u64,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, StoreError>> {
    futures::stream::unfold(start, move |offset| {
        let engine = engine.clone();
        async move {
            if offset >= length {
                return None;
            }
            let Some(engine) = engine.upgrade() else {
                return Some((Err(StoreError::gone("the engine has shut down")), length));
            };
            match engine
                .hosts
                .store
                .read_request_body(uid, index, offset, engine.config.read_chunk_size)
                .await
            {
                Ok(b) if b.is_empty() => Some((
                    Err(StoreError::gone(
                        "the stored request body is shorter than its length",
                    )),
                    length,
                )),
                Ok(b) => {
                    let next = offset + b.len() as u64;
                    Some((Ok(b), next))
                }
                Err(e) => Some((Err(e), length)),
            }
        }
    })
    .boxed()
}

/// Makes the record's result final: durable in the store first, then visible.
async fn finish_record(
    engine: &Arc<EngineInner>,
    bg: &Arc<BgFetch>,
    index: usize,
    mut result: RecordResult,
) {
    let data = bg.records[index].response_data();
    if !bg.flags().silent
        && let Err(e) = engine
            .hosts
            .store
            .complete_record(bg.uid, index, data.generation, result)
            .await
    {
        tracing::warn!(error = %e, "could not store the record's result");
        if result == RecordResult::Success {
            // The bytes may not be durable: do not report a success we could lose.
            result = store_failure(&e);
        }
    }
    tracing::info!(%result, bytes = data.len(), "record complete");
    data.state.update(|s| s.result = result);
    engine.update_instances(bg, false);
}

/// Replaces record `index`'s response data with a new one (process response, step 3).
fn replace_response_data(
    engine: &Arc<EngineInner>,
    bg: &Arc<BgFetch>,
    index: usize,
) -> Arc<ResponseData> {
    let record = &bg.records[index];
    let mut current = lock(&record.response_data);
    let old = current.clone();
    // 3.1. Set responseData's result to "redundant".
    let old_len = old.state.update(|s| {
        s.result = RecordResult::Redundant;
        s.len
    });
    // 3.2. Set responseData to a new background fetch response.
    let new = ResponseData::new(old.generation + 1, ResponseDataState::default());
    // 3.3. Set record's response data to responseData.
    // NOTE: Create record objects may hold a reference to the previous response data.
    *current = new.clone();
    drop(current);
    // The old bytes leave the stored body bytes total: `downloaded` may go down.
    let stored_total = {
        let mut s = bg.lock();
        s.stored_total -= old_len;
        s.stored_total + s.in_flight
    };
    // They leave the quota, and go back to the fetch's downloadTotal reservation (spec issue
    // 110's reservation is the downloadTotal less what the fetch stores), so that the
    // re-download is covered by it and no other fetch can take them meanwhile.
    engine.uncharge_quota(&bg.registration.storage_key, bg.uid, old_len);
    if bg.download_total > 0 {
        engine.refill_reservation(
            &bg.registration.storage_key,
            bg.uid,
            bg.download_total.saturating_sub(stored_total),
        );
    }
    tracing::info!(
        old_len,
        generation = new.generation,
        "the record restarts from scratch"
    );
    new
}

/// One fetch attempt: step 11's callbacks, raced against step 13's "abort when".
async fn attempt(
    engine: &Arc<EngineInner>,
    bg: &Arc<BgFetch>,
    index: usize,
    request: NetworkRequest,
    range_start: u64,
    is_get: bool,
) -> Attempt {
    let mut response_data = bg.records[index].response_data();
    let download_total = if bg.download_total == 0 {
        u64::MAX
    } else {
        bg.download_total
    };
    let storage_key = bg.registration.storage_key.clone();
    let author_range = request.request.headers.contains("range");
    // AD-HOC (deviation 41): a request whose author set `Range` is never resumed, and the 206
    // it gets starts where the author asked, not at 0: that start is the expected range start
    // of "validate a partial response" (`None` for a suffix range: the start is the server's).
    let author_start = author_range
        .then(|| {
            request
                .request
                .headers
                .get_str("range")
                .and_then(|v| range_request_start(&v))
        })
        .flatten();
    let mut events = engine.hosts.network.fetch(request);
    let mut head: Option<ResponseHead> = None;
    loop {
        let event = match or_interrupt(engine, bg, is_get, events.next()).await {
            Ok(event) => event,
            // 14. If aborted, then:
            //     1. If bgFetch's paused flag is set, then assert: request's method is `GET`.
            //     2. If bgFetch's abort all flag is set, then set responseData's result to
            //        "aborted".
            //     3. Set result to responseData's result.
            //     4. Terminate the ongoing fetch. (Dropping `events` terminates it.)
            Err(Interrupt::Abort) => return Attempt::Done(RecordResult::Aborted),
            Err(Interrupt::Pause) => {
                debug_assert!(is_get);
                tracing::debug!("interrupted (paused or offline)");
                return Attempt::Interrupted;
            }
        };
        match event {
            // process request body:
            Some(NetworkEvent::UploadProgress(n)) => {
                // 1. Let transmittedSize be request's body's transmitted bytes.
                // 2. Increment bgFetch's uploaded by transmittedSize minus lastTransmittedSize.
                // 3. Set lastTransmittedSize to transmittedSize.
                // NOTE: the host reports increments (processRequestBodyChunkLength).
                bg.lock().uploaded += n;
                // 4. Update background fetch instances for bgFetch.
                engine.update_instances(bg, false);
            }
            // process response, 1. If response is a network error, then:
            Some(NetworkEvent::Error(e)) if head.is_none() => {
                tracing::info!(error = %e, "network error");
                // 1.1. If the resource is temporarily unavailable and request's method is
                //      `GET`, then wait until the resource is not temporarily unavailable, then
                //      set fetchAttemptComplete to true and abort these steps.
                // NOTE: complete_record waits for connectivity and backs off before retrying.
                if e.kind == NetworkErrorKind::Temporary && is_get {
                    return Attempt::Retry;
                }
                // 1.2. If response is an aborted network error, then set responseData's result
                //      to "aborted", otherwise "fetch-error".
                // 1.3. Set fetchAttemptComplete to true, and abort these steps.
                return Attempt::Done(if e.kind == NetworkErrorKind::Aborted {
                    RecordResult::Aborted
                } else {
                    RecordResult::FetchError
                });
            }
            // 8. If at any point the stream becomes errored, then:
            Some(NetworkEvent::Error(e)) => {
                tracing::info!(error = %e, bytes = response_data.len(), "body stream errored");
                // 8.1. If the resource is temporarily unavailable and request's method is
                //      `GET`, then wait until the resource is not temporarily unavailable, then
                //      set fetchAttemptComplete to true.
                if e.kind == NetworkErrorKind::Temporary && is_get {
                    return Attempt::Retry;
                }
                // 8.2. Otherwise, set responseData's result to "fetch-error" and
                //      fetchAttemptComplete to true.
                return Attempt::Done(RecordResult::FetchError);
            }
            Some(NetworkEvent::Response(h)) => {
                if head.is_some() {
                    tracing::warn!("the network host sent a second response head");
                    return Attempt::Done(RecordResult::FetchError);
                }
                // AD-HOC: a 416 to a Range request whose `Content-Range: bytes */N` says the
                //         resource is exactly the stored length (with the same validators)
                //         means every byte was already stored: the previous attempt's stream
                //         failed after its last byte. As written, the 416 would discard the
                //         bytes and end "bad-status" (compare outline §11.C.17).
                if h.status == 416
                    && range_start > 0
                    && let Some(previous) = response_data.response()
                    && h.validation_headers()
                        .get_first("content-range")
                        .and_then(parse_unsatisfied_content_range)
                        == Some(range_start)
                    && validators_match(&previous, &h)
                {
                    tracing::info!(range_start, "416: every byte was already stored");
                    return Attempt::Done(RecordResult::Success);
                }
                // 2. If response's status is 206, then:
                if h.status == 206 {
                    // 2.1. If validate a partial response for rangeStart, response, and
                    //      responseData's response returns invalid, then:
                    //      1. Set responseData's result to "fetch-error".
                    //      2. Set fetchAttemptComplete to true.
                    //      3. Terminate the ongoing fetch, and abort these steps.
                    let expected_start = if author_range {
                        author_start
                            .or_else(|| {
                                extract_content_range_values(&h.validation_headers())
                                    .map(|r| r.first_byte_pos)
                            })
                            .unwrap_or(range_start)
                    } else {
                        range_start
                    };
                    if let Err(why) = validate_partial_response(
                        expected_start,
                        &h,
                        response_data.response().as_ref(),
                    ) {
                        tracing::warn!(?why, "invalid partial response");
                        return Attempt::Done(RecordResult::FetchError);
                    }
                } else {
                    // 3. Otherwise:
                    //    1. Set responseData's result to "redundant".
                    //    2. Set responseData to a new background fetch response.
                    //    3. Set record's response data to responseData.
                    //    4. Update background fetch instances for bgFetch.
                    // AD-HOC: only when the current response data already has a response or
                    //         bytes. As written, the very first response would make the initial
                    //         response data redundant, and record objects created before it
                    //         (match() right after fetch()) would never resolve (outline
                    //         §11.C.7; WPT "Access to active fetches is supported").
                    let used = response_data
                        .state
                        .with(|s| s.response.is_some() || s.len > 0);
                    if used {
                        response_data = replace_response_data(engine, bg, index);
                        engine.update_instances(bg, false);
                    }
                }
                // 4. If rangeStart is 0 or response's status is not 206, then set responseData's
                //    response to a copy of response except for its body.
                if range_start == 0 || h.status != 206 {
                    if let Err(e) = engine
                        .hosts
                        .store
                        .begin_response(bg.uid, index, response_data.generation, h.clone())
                        .await
                    {
                        tracing::warn!(error = %e, "could not store the response head");
                        return Attempt::Done(store_failure(&e));
                    }
                    response_data.state.update(|s| s.response = Some(h.clone()));
                }
                // AD-HOC: the body of a response whose status is not ok is not downloaded: the
                //         record ends "bad-status" with an empty body at once (WPT
                //         fetch.https.window.js expects the text of a 404 record to be ''), which
                //         spends no bandwidth or quota on error pages.
                if h.status != 206 && !h.is_ok() {
                    return Attempt::Done(RecordResult::BadStatus);
                }
                head = Some(h);
            }
            // 6. Whenever one or more bytes are transmitted from stream, let bytes be the
            //    transmitted bytes and run these steps:
            Some(NetworkEvent::Data(bytes)) => {
                if head.is_none() {
                    tracing::warn!("the network host sent body bytes before a response head");
                    return Attempt::Done(RecordResult::FetchError);
                }
                if bytes.is_empty() {
                    continue;
                }
                let n = bytes.len() as u64;
                {
                    let mut s = bg.lock();
                    // 6.1. If bgFetch's stored body bytes total plus the size of bytes is
                    //      greater than downloadTotal, then:
                    if s.stored_total + s.in_flight + n > download_total {
                        // 6.1.1. Cancel stream. (Returning drops it.)
                        // 6.1.2. Set responseData's result to "download-total-exceeded" and
                        //        fetchAttemptComplete to true, and abort these steps.
                        // AD-HOC: immediateFailure and the abort all flag are set now, so every
                        //         other in-flight request is cancelled at once.
                        s.immediate_failure = true;
                        drop(s);
                        tracing::info!(download_total, "downloadTotal exceeded");
                        bg.flags.update(|f| f.abort_all = true);
                        return Attempt::Done(RecordResult::DownloadTotalExceeded);
                    }
                    s.in_flight += n;
                }
                // 6.3. If the previous step fails due to exceeding a quota limit, set
                //      responseData's result to "quota-exceeded", and fetchAttemptComplete to
                //      true, and abort these steps.
                if !engine.charge_quota(&storage_key, bg.uid, n) {
                    bg.lock().in_flight -= n;
                    tracing::info!("storage quota exceeded");
                    return Attempt::Done(RecordResult::QuotaExceeded);
                }
                // 6.2. Append bytes to responseData's bytes.
                let offset = response_data.len();
                if let Err(e) = engine
                    .hosts
                    .store
                    .append_response_body(bg.uid, index, response_data.generation, offset, bytes)
                    .await
                {
                    bg.lock().in_flight -= n;
                    engine.uncharge_quota(&storage_key, bg.uid, n);
                    tracing::warn!(error = %e, "could not store body bytes");
                    return Attempt::Done(store_failure(&e));
                }
                {
                    let mut s = bg.lock();
                    s.in_flight -= n;
                    s.stored_total += n;
                }
                response_data.state.update(|s| s.len += n);
                // 6.4. Update background fetch instances for bgFetch.
                engine.update_instances(bg, false);
                // AD-HOC: the transfer lets the executor's other tasks run after each chunk.
                //         With a network that always has the next chunk ready and a store that
                //         never waits, every await of this loop is ready at once: without it,
                //         script's calls (get(), abort(), match() through the service) and
                //         other fetches were answered only once the whole body had arrived.
                crate::sync::yield_now().await;
            }
            // 7. If at any point the bytes transmission for stream is done normally, then:
            None => {
                let Some(h) = head else {
                    tracing::warn!("the network host ended without a response");
                    return Attempt::Done(RecordResult::FetchError);
                };
                // 7.1. If response's status is 206, then:
                if h.status == 206 {
                    // 7.1.1. Let firstBytePos, lastBytePos, and completeLength be the result of
                    //        extracting content-range values from response.
                    let range = extract_content_range_values(&h.validation_headers());
                    let len = response_data.len();
                    // 7.1.2. If completeLength is not null and equal to the length of
                    //        responseData's bytes, set responseData's result to "success".
                    // NOTE: The server might not have returned the rest of the resource, in
                    //       which case another request is made.
                    return match range {
                        Some(r) if r.complete_length == Some(len) => {
                            Attempt::Done(RecordResult::Success)
                        }
                        // AD-HOC: with complete-length "*" the spec never reaches "success" and
                        //         the next Range request gets a 416 that discards everything
                        //         (outline §11.C.17). A 206 whose last-byte-pos + 1 is the
                        //         stored length at the end of its stream completed the resource.
                        Some(r) if r.complete_length.is_none() && r.last_byte_pos + 1 == len => {
                            Attempt::Done(RecordResult::Success)
                        }
                        // AD-HOC: a request whose author set a `Range` header asked for that
                        //         range, never resumed (see `can_resume`): a 206 whose whole
                        //         range was stored completed it. As written, the spec asks for
                        //         the rest of the resource with its own Range instead.
                        Some(r)
                            if author_range
                                && r.last_byte_pos.checked_sub(r.first_byte_pos)
                                    == Some(len.wrapping_sub(1)) =>
                        {
                            Attempt::Done(RecordResult::Success)
                        }
                        _ => Attempt::Retry,
                    };
                }
                // AD-HOC: a body that ended with fewer bytes than its identity-coded
                //         Content-Length was cut off ("the recipient MUST consider the message
                //         to be incomplete", RFC 9112 §6.3), whatever the host reported: it is
                //         the resource being temporarily unavailable (8.1), not a success. Some
                //         hosts (Servo's net stack) report a cut-off as a normal end.
                if let Some(announced) = identity_content_length(&h)
                    && response_data.len() < announced
                {
                    tracing::info!(
                        announced,
                        stored = response_data.len(),
                        "the body ended before its Content-Length"
                    );
                    return if is_get {
                        Attempt::Retry
                    } else {
                        Attempt::Done(RecordResult::FetchError)
                    };
                }
                // 7.2. Otherwise, if response's status is not an ok status, set responseData's
                //      result to "bad-status". (Handled when the head arrived.)
                // 7.3. Otherwise, set responseData's result to "success".
                // 7.4. Set fetchAttemptComplete to true.
                return Attempt::Done(RecordResult::Success);
            }
        }
    }
}
