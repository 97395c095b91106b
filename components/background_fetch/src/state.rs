//! The browser-side concepts of spec §2: background fetch, background fetch record and
//! background fetch response. These are the engine's shared state; script-facing objects
//! ([`crate::BackgroundFetchRegistration`], [`crate::BackgroundFetchRecord`]) hold references
//! to them.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::fetch::{Request, ResponseHead};
use crate::model::{
    BackgroundFetchFailureReason, BackgroundFetchResult, ClientSnapshot, FetchUid, ImageResource,
    RecordResult, ServiceWorkerRegistrationId,
};
use crate::store::StoredFlags;
use crate::sync::{Watch, lock};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The state of a background fetch response that changes over time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResponseDataState {
    /// <https://wicg.github.io/background-fetch/#background-fetch-response-response>
    pub response: Option<ResponseHead>,
    /// The length of <https://wicg.github.io/background-fetch/#background-fetch-response-bytes>
    /// (the bytes themselves are in the store).
    pub len: u64,
    /// <https://wicg.github.io/background-fetch/#background-fetch-response-result>
    pub result: RecordResult,
}

/// A background fetch response.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-response>
pub(crate) struct ResponseData {
    /// Which response data of its record this is (0 for the first; each restart adds one). The
    /// store keys the body bytes by it.
    pub generation: u32,
    pub state: Watch<ResponseDataState>,
}

impl ResponseData {
    pub(crate) fn new(generation: u32, state: ResponseDataState) -> Arc<Self> {
        Arc::new(ResponseData {
            generation,
            state: Watch::new(state),
        })
    }

    pub(crate) fn result(&self) -> RecordResult {
        self.state.with(|s| s.result)
    }

    pub(crate) fn len(&self) -> u64 {
        self.state.with(|s| s.len)
    }

    pub(crate) fn response(&self) -> Option<ResponseHead> {
        self.state.with(|s| s.response.clone())
    }
}

/// A background fetch record.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-record>
pub(crate) struct Record {
    pub index: usize,
    /// <https://wicg.github.io/background-fetch/#background-fetch-record-request>
    pub request: Request,
    /// <https://wicg.github.io/background-fetch/#background-fetch-record-response-data>
    pub response_data: Mutex<Arc<ResponseData>>,
}

impl Record {
    pub(crate) fn response_data(&self) -> Arc<ResponseData> {
        lock(&self.response_data).clone()
    }
}

/// The flags the UI, `abort()` and perform write, and complete a record waits on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// <https://wicg.github.io/background-fetch/#background-fetch-paused-flag>
    pub paused: bool,
    /// <https://wicg.github.io/background-fetch/#background-fetch-abort-all-flag>
    pub abort_all: bool,
    /// The permission was `"prompt"`: paused until the user decides.
    pub awaiting_permission: bool,
    /// The registration was unregistered or its storage cleared: abort without events
    /// (README "Lifecycle").
    pub silent: bool,
}

impl Flags {
    /// The flags the store keeps (`silent` is not kept: an unregistered fetch is deleted).
    pub(crate) fn stored(&self) -> StoredFlags {
        StoredFlags {
            paused: self.paused,
            awaiting_permission: self.awaiting_permission,
            aborted: self.abort_all,
        }
    }

    /// The flags of a fetch restored from the store.
    pub(crate) fn restored(stored: StoredFlags) -> Self {
        Flags {
            paused: stored.paused || stored.awaiting_permission,
            abort_all: stored.aborted,
            awaiting_permission: stored.awaiting_permission && !stored.aborted,
            silent: false,
        }
    }
}

/// What *update background fetch instances* copies (its steps 1 to 5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub downloaded: u64,
    pub uploaded: u64,
    pub result: BackgroundFetchResult,
    pub failure_reason: BackgroundFetchFailureReason,
    pub records_available: bool,
}

/// The mutable part of a background fetch.
#[derive(Debug)]
pub(crate) struct BgFetchMut {
    /// <https://wicg.github.io/background-fetch/#background-fetch-title>
    pub title: String,
    /// <https://wicg.github.io/background-fetch/#background-fetch-icons>
    pub icons: Vec<ImageResource>,
    /// <https://wicg.github.io/background-fetch/#background-fetch-uploaded>
    pub uploaded: u64,
    /// <https://wicg.github.io/background-fetch/#background-fetch-result>
    pub result: BackgroundFetchResult,
    /// <https://wicg.github.io/background-fetch/#background-fetch-failure-reason>
    pub failure_reason: BackgroundFetchFailureReason,
    /// <https://wicg.github.io/background-fetch/#background-fetch-records-available-flag>
    pub records_available: bool,
    /// <https://wicg.github.io/background-fetch/#background-fetch-stored-body-bytes-total>,
    /// kept as a running sum of every record's current response data length.
    pub stored_total: u64,
    /// Bytes that passed the downloadTotal check and are being written.
    pub in_flight: u64,
    /// The values instances last received (new instances copy these, so two instances never
    /// disagree: the update handling queue's guarantee).
    pub delivered: Progress,
    /// When instances were last updated, for throttling.
    pub last_update: Option<Duration>,
    /// A throttled update is scheduled.
    pub update_scheduled: bool,
    /// A `download-total-exceeded` record set immediateFailure.
    pub immediate_failure: bool,
}

/// A background fetch.
///
/// <https://wicg.github.io/background-fetch/#background-fetch>
pub(crate) struct BgFetch {
    pub uid: FetchUid,
    /// <https://wicg.github.io/background-fetch/#background-fetch-id>
    pub id: String,
    /// <https://wicg.github.io/background-fetch/#background-fetch-service-worker-registration>
    pub registration: ServiceWorkerRegistrationId,
    /// <https://wicg.github.io/background-fetch/#background-fetch-download-total>
    pub download_total: u64,
    /// <https://wicg.github.io/background-fetch/#background-fetch-upload-total>
    pub upload_total: u64,
    /// <https://wicg.github.io/background-fetch/#background-fetch-records>
    pub records: Vec<Record>,
    /// The caller of `fetch()`, captured then.
    pub client: ClientSnapshot,
    /// Opaque embedder data.
    pub embedder_data: Option<String>,
    /// Every record's method is `GET`, so the UI may offer pause.
    pub all_get: bool,
    pub state: Mutex<BgFetchMut>,
    pub flags: Watch<Flags>,
    /// The settle step (perform step 8) has run.
    pub settled: AtomicBool,
    /// Body streams (response or request) reading this fetch's stored bytes right now.
    pub readers: AtomicUsize,
    /// The stored records are to be dropped once no reader is left.
    pub drop_pending: AtomicBool,
    /// Everything is over: the settle event finished and the stored records are dropped (or
    /// the registration was purged).
    pub finished: Watch<bool>,
    /// Counts changes of this fetch's instances' slots, over all its instances: an instance's
    /// revision is this count at its last change, so the values of any two instances of the
    /// fetch compare by it (a service connection may hold data of two: the event's and its
    /// environment's).
    pub revisions: AtomicU64,
}

impl BgFetch {
    /// A new change count for a change of one of its instances' slots.
    pub(crate) fn next_revision(&self) -> u64 {
        self.revisions.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BgFetchMut> {
        lock(&self.state)
    }

    pub(crate) fn flags(&self) -> Flags {
        self.flags.get()
    }

    pub(crate) fn is_settled(&self) -> bool {
        self.settled.load(Ordering::SeqCst)
    }

    /// Steps 1 to 5 of update background fetch instances; the copy is also remembered as
    /// what instances last received.
    pub(crate) fn take_progress(&self) -> Progress {
        let mut s = self.lock();
        let p = Progress {
            // 1. Let downloaded be bgFetch's stored body bytes total.
            downloaded: s.stored_total,
            // 2. Let uploaded be bgFetch's uploaded.
            uploaded: s.uploaded,
            // 3. Let result be bgFetch's result.
            result: s.result,
            // 4. Let failureReason be bgFetch's failure reason.
            failure_reason: s.failure_reason,
            // 5. Let recordsAvailable be true if bgFetch's records available flag is set,
            //    otherwise false.
            records_available: s.records_available,
        };
        s.delivered = p.clone();
        p
    }
}

/// The state of a functional event that `updateUI()` needs.
pub(crate) struct UpdateUiState {
    /// <https://wicg.github.io/background-fetch/#backgroundfetchupdateuievent-ui-updated-flag>
    pub ui_updated: AtomicBool,
    /// ExtendableEvent's "active": dispatching, or with pending `waitUntil` promises.
    pub active: AtomicBool,
}

impl UpdateUiState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(UpdateUiState {
            ui_updated: AtomicBool::new(false),
            active: AtomicBool::new(true),
        })
    }
}

/// A functional event the engine fired, while it is active (its token names it).
#[derive(Clone)]
pub(crate) struct ActiveEvent {
    pub fetch: Arc<BgFetch>,
    pub kind: crate::model::FunctionalEventKind,
    pub state: Arc<UpdateUiState>,
}
