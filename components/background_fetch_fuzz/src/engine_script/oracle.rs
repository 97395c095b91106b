//! The reference model: which fault set each attempt of a record took, what those faults can
//! do to the record, and what a fetch's failure reason must be.

use super::FaultSpec;
use super::resources::{Kind, RecordSpec};
use background_fetch::testing::{Fault, LoggedRequest};
use background_fetch::{
    BackgroundFetchFailureReason as Reason, BlockReason, NetworkErrorKind, RecordResult,
};

/// The wrong `Content-Range` values of [`FaultSpec::BogusContentRange`].
pub(crate) const BOGUS_CONTENT_RANGES: [&str; 6] = [
    "bytes 0-4/5",
    "bytes 0-0/*",
    "bytes 3-1/10",
    "bytes */16",
    "bytes=0-1/2",
    "bytes 0-99999/100000",
];

/// A byte offset `p / 255` of the way through `size + 1` bytes.
fn offset(p: u8, size: u64) -> u64 {
    u64::from(p) * (size + 1) / 255
}

/// The scripted network's fault for a spec, on a record whose full response has `size` bytes.
pub(crate) fn resolve(spec: FaultSpec, size: u64) -> Fault {
    match spec {
        FaultSpec::ResetAfter(p) => Fault::ResetAfter(offset(p, size)),
        FaultSpec::FatalAfter(p) => Fault::FatalAfter(offset(p, size)),
        FaultSpec::TemporaryError => Fault::ErrorBeforeHead(NetworkErrorKind::Temporary),
        FaultSpec::FatalError => Fault::ErrorBeforeHead(NetworkErrorKind::Fatal),
        FaultSpec::AbortedError => Fault::ErrorBeforeHead(NetworkErrorKind::Aborted),
        FaultSpec::Blocked => Fault::Block(BlockReason::Cors),
        FaultSpec::ServerError(p) => Fault::Status([500, 502, 503, 504][usize::from(p % 4)]),
        FaultSpec::Hold => Fault::Hold,
        FaultSpec::ChangedETag => Fault::ETag("\"changed\"".into()),
        FaultSpec::IgnoreRange => Fault::IgnoreRange,
        FaultSpec::BogusContentRange(p) => Fault::ContentRange(
            BOGUS_CONTENT_RANGES[usize::from(p) % BOGUS_CONTENT_RANGES.len()].into(),
        ),
        FaultSpec::UnsolicitedPartial(p) => Fault::UnsolicitedPartial(offset(p, size)),
        FaultSpec::EndAfter(p) => Fault::EndAfter(offset(p, size)),
    }
}

/// A fault set queued for a record: the number of attempts the network had logged for the
/// record's URL when it was queued, and the faults.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub logged_before: usize,
    pub faults: Vec<Fault>,
}

/// A change of a record's resource on the server: the number of attempts the network had
/// logged for the record's URL when it changed, and the new version.
#[derive(Clone, Debug)]
pub(crate) struct Changed {
    pub logged_before: usize,
    pub version: u32,
}

/// The version of the resource attempt `k` was served.
fn version_of(changes: &[Changed], k: usize) -> u32 {
    changes
        .iter()
        .filter(|c| c.logged_before <= k)
        .map(|c| c.version)
        .next_back()
        .unwrap_or(0)
}

/// The fault sets attempts took, as (attempt, its logged request, faults): the scripted network
/// pops one queued set (if any is queued) for every attempt it logs, in order.
pub(crate) fn consumed<'a>(
    queued: &'a [Queued],
    attempts: &'a [LoggedRequest],
) -> Vec<(usize, &'a LoggedRequest, &'a [Fault])> {
    let mut out = Vec::new();
    let mut next = 0;
    for (k, attempt) in attempts.iter().enumerate() {
        if next < queued.len() && queued[next].logged_before <= k {
            out.push((k, attempt, queued[next].faults.as_slice()));
            next += 1;
        }
    }
    out
}

/// What the faults a record's attempts took can do to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Results the record may end with besides the one the truth gives.
    pub results: Vec<RecordResult>,
    /// A fault lied about the resource (its bytes, or its length): a success may store other
    /// bytes than the resource's, and a 404 may store its error page.
    pub lying: bool,
    /// Some fault touched the record (even one that cannot change its outcome).
    pub any: bool,
    /// The versions of the resource its attempts were served (version 0 when none was made).
    pub versions: Vec<u32>,
}

/// The effects of the fault sets a record's attempts took, and of the changes of its resource
/// between them.
pub(crate) fn effects(
    record: &RecordSpec,
    queued: &[Queued],
    changes: &[Changed],
    attempts: &[LoggedRequest],
) -> Effects {
    let mut e = Effects::default();
    for k in 0..attempts.len() {
        insert(&mut e.versions, version_of(changes, k));
    }
    if e.versions.is_empty() {
        e.versions.push(0);
    }
    if e.versions.len() > 1 {
        if record.change_detectable() {
            // A resumption across the change is refused (an invalid partial response, or a 416
            // that does not match the stored response), or restarts from a 200.
            insert(&mut e.results, RecordResult::FetchError);
            insert(&mut e.results, RecordResult::BadStatus);
        } else {
            // Nothing tells the engine: the record may join the bytes of two versions.
            e.lying = true;
        }
    }
    let (range_support, not_found) = match record.kind() {
        Kind::Ok { range, .. } => (range, false),
        Kind::NotFound => (true, true),
        Kind::Echo => (true, false),
    };
    let is_get = record.is_get();
    for (_, attempt, faults) in consumed(queued, attempts) {
        e.any = true;
        let has = |f: &dyn Fn(&Fault) -> bool| faults.iter().any(f);
        let partial_answer = attempt.range_start.is_some()
            && range_support
            && !not_found
            && !has(&|f| matches!(f, Fault::IgnoreRange));
        let unsolicited =
            attempt.range_start.is_none() && has(&|f| matches!(f, Fault::UnsolicitedPartial(_)));
        let status = has(&|f| matches!(f, Fault::Status(_)));
        let content_range = has(&|f| matches!(f, Fault::ContentRange(_)));
        for f in faults {
            match f {
                // A GET record retries a temporary failure; anything else fails.
                // (A body cut off before its Content-Length is a temporary failure too.)
                Fault::ResetAfter(_)
                | Fault::CutOffAfter(_)
                | Fault::ErrorBeforeHead(NetworkErrorKind::Temporary) => {
                    if !is_get {
                        insert(&mut e.results, RecordResult::FetchError);
                    }
                }
                Fault::FatalAfter(_)
                | Fault::ErrorBeforeHead(NetworkErrorKind::Fatal)
                | Fault::ErrorBeforeHead(NetworkErrorKind::Blocked(_))
                | Fault::Block(_) => {
                    insert(&mut e.results, RecordResult::FetchError);
                }
                Fault::ErrorBeforeHead(NetworkErrorKind::Aborted) => {
                    insert(&mut e.results, RecordResult::Aborted);
                }
                Fault::Status(_) => {
                    insert(&mut e.results, RecordResult::BadStatus);
                }
                Fault::Hold | Fault::IgnoreRange => {}
                // A resumption against a changed validator is an invalid partial response, or,
                // when every byte was stored, a 416 that does not match the stored response.
                Fault::ETag(_) => {
                    insert(&mut e.results, RecordResult::FetchError);
                    insert(&mut e.results, RecordResult::BadStatus);
                }
                // The record may end as the lie says, or the next Range request gets a 416.
                Fault::ContentRange(_) => {
                    insert(&mut e.results, RecordResult::FetchError);
                    insert(&mut e.results, RecordResult::Success);
                    insert(&mut e.results, RecordResult::BadStatus);
                    e.lying = true;
                }
                Fault::UnsolicitedPartial(_) => {
                    if attempt.range_start.is_none() && !status && !content_range {
                        if not_found {
                            // A 206 with the first bytes of the error page: the server claims
                            // the 404 is a resource.
                            insert(&mut e.results, RecordResult::Success);
                            insert(&mut e.results, RecordResult::FetchError);
                            e.lying = true;
                        } else if record.served_size() == 0 {
                            // `bytes 0-0/0` is not a valid Content-Range.
                            insert(&mut e.results, RecordResult::FetchError);
                        }
                    }
                }
                Fault::EndAfter(_) => {
                    // A short 206 is resumed; a short 200 with a matching Content-Length is
                    // a shorter resource as far as anyone can tell.
                    if !partial_answer && !unsolicited && !status && !not_found {
                        e.lying = true;
                    }
                }
            }
        }
    }
    e
}

/// What a record can end with, given its effects, and whether the user aborted or a restart
/// found its upload unfinished.
pub(crate) fn possible_results(
    record: &RecordSpec,
    effects: &Effects,
    user_aborted: bool,
    restarted_unsettled: bool,
) -> Vec<RecordResult> {
    let mut s = vec![match record.kind() {
        Kind::NotFound => RecordResult::BadStatus,
        _ => RecordResult::Success,
    }];
    for r in effects.results.iter().copied() {
        insert(&mut s, r);
    }
    if user_aborted {
        insert(&mut s, RecordResult::Aborted);
    }
    // An unfinished upload fails after a restart rather than be sent again (deviation 33).
    if restarted_unsettled && !record.is_get() {
        insert(&mut s, RecordResult::FetchError);
    }
    s
}

/// The most body bytes a record can store.
pub(crate) fn max_stored(record: &RecordSpec, effects: &Effects) -> u64 {
    match record.kind() {
        Kind::NotFound if effects.lying => record.served_size(),
        _ => record.download_size(),
    }
}

/// What a fetch's failure reason must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expectation {
    /// Exactly this.
    Exact(Reason),
    /// One of these (which record finishes first decides).
    OneOf(Vec<Reason>),
}

/// The failure reason a fetch must end with.
pub(crate) fn expected_reason(
    records: &[(RecordSpec, Effects)],
    download_total: u64,
    abort_returned_true: bool,
    user_aborted: bool,
    restarted_unsettled: bool,
) -> Expectation {
    // abort() removed it from the active fetches: settle step 8.4 makes it "aborted".
    if abort_returned_true {
        return Expectation::Exact(Reason::Aborted);
    }
    let sets: Vec<Vec<RecordResult>> = records
        .iter()
        .map(|(r, e)| possible_results(r, e, user_aborted, restarted_unsettled))
        .collect();
    let max_total: u64 = records.iter().map(|(r, e)| max_stored(r, e)).sum();
    let exceeded_possible = download_total > 0 && max_total > download_total;
    if sets.iter().all(|s| s.len() == 1) && records.iter().all(|(_, e)| !e.lying) {
        // Nothing can change any record's outcome: every record downloads in parallel (at
        // most 3 records, 4 slots per fetch), so crossing downloadTotal ends the fetch with
        // download-total-exceeded even if a 404 settled first (deviation 5).
        let total: u64 = records.iter().map(|(r, _)| r.download_size()).sum();
        return Expectation::Exact(if download_total > 0 && total > download_total {
            Reason::DownloadTotalExceeded
        } else if let Some(reason) = sets
            .iter()
            .filter_map(|s| s.iter().next().and_then(|r| r.failure_reason()))
            .next()
        {
            reason
        } else {
            Reason::Empty
        });
    }
    let mut reasons: Vec<Reason> = Vec::new();
    for r in sets
        .iter()
        .flat_map(|s| s.iter().filter_map(|r| r.failure_reason()))
    {
        insert(&mut reasons, r);
    }
    if sets.iter().all(|s| s.contains(&RecordResult::Success)) {
        insert(&mut reasons, Reason::Empty);
    }
    if exceeded_possible {
        insert(&mut reasons, Reason::DownloadTotalExceeded);
    }
    Expectation::OneOf(reasons)
}

/// Adds `v` to the small set `set` (a list without duplicates).
pub(crate) fn insert<T: PartialEq>(set: &mut Vec<T>, v: T) {
    if !set.contains(&v) {
        set.push(v);
    }
}

impl Expectation {
    pub(crate) fn allows(&self, reason: Reason) -> bool {
        match self {
            Expectation::Exact(r) => *r == reason,
            Expectation::OneOf(s) => s.contains(&reason),
        }
    }
}
