//! The spec's model (§2 of the outline): results, failure reasons, identifiers and the
//! dictionaries script passes in.
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use serde::{Deserialize, Serialize};
use std::fmt;
use url::Url;

/// Which functional event.
///
/// <https://wicg.github.io/background-fetch/#service-worker-global-events>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FunctionalEventKind {
    /// `backgroundfetchsuccess` (`BackgroundFetchUpdateUIEvent`)
    Success,
    /// `backgroundfetchfail` (`BackgroundFetchUpdateUIEvent`)
    Fail,
    /// `backgroundfetchabort` (`BackgroundFetchEvent`)
    Abort,
    /// `backgroundfetchclick` (`BackgroundFetchEvent`)
    Click,
}

impl FunctionalEventKind {
    /// The event type.
    pub fn event_type(self) -> &'static str {
        match self {
            FunctionalEventKind::Success => "backgroundfetchsuccess",
            FunctionalEventKind::Fail => "backgroundfetchfail",
            FunctionalEventKind::Abort => "backgroundfetchabort",
            FunctionalEventKind::Click => "backgroundfetchclick",
        }
    }
}

/// Names one functional event while it is active: `updateUI()` and the event's completion
/// come back with it (functional events cross to the service worker as data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventToken(pub u64);

/// `BackgroundFetchResult`.
///
/// <https://wicg.github.io/background-fetch/#enumdef-backgroundfetchresult>
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackgroundFetchResult {
    /// `""`: the fetch has not settled.
    #[default]
    Empty,
    /// `"success"`
    Success,
    /// `"failure"`
    Failure,
}

impl BackgroundFetchResult {
    /// The IDL string.
    pub fn as_str(self) -> &'static str {
        match self {
            BackgroundFetchResult::Empty => "",
            BackgroundFetchResult::Success => "success",
            BackgroundFetchResult::Failure => "failure",
        }
    }
}

impl fmt::Display for BackgroundFetchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `BackgroundFetchFailureReason`.
///
/// <https://wicg.github.io/background-fetch/#enumdef-backgroundfetchfailurereason>
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackgroundFetchFailureReason {
    /// `""`: not completed yet, or successful.
    #[default]
    Empty,
    /// `"aborted"`: aborted by the user, or `abort()` was called.
    Aborted,
    /// `"bad-status"`: a response had a not-ok status.
    BadStatus,
    /// `"fetch-error"`: a fetch failed for another reason (CORS, mixed content, an invalid
    /// partial response, a network failure that cannot be retried).
    FetchError,
    /// `"quota-exceeded"`: storage quota was reached during the operation.
    QuotaExceeded,
    /// `"download-total-exceeded"`: the provided `downloadTotal` was exceeded.
    DownloadTotalExceeded,
}

impl BackgroundFetchFailureReason {
    /// The IDL string.
    pub fn as_str(self) -> &'static str {
        match self {
            BackgroundFetchFailureReason::Empty => "",
            BackgroundFetchFailureReason::Aborted => "aborted",
            BackgroundFetchFailureReason::BadStatus => "bad-status",
            BackgroundFetchFailureReason::FetchError => "fetch-error",
            BackgroundFetchFailureReason::QuotaExceeded => "quota-exceeded",
            BackgroundFetchFailureReason::DownloadTotalExceeded => "download-total-exceeded",
        }
    }

    /// Every value, in IDL order.
    pub const ALL: [BackgroundFetchFailureReason; 6] = [
        BackgroundFetchFailureReason::Empty,
        BackgroundFetchFailureReason::Aborted,
        BackgroundFetchFailureReason::BadStatus,
        BackgroundFetchFailureReason::FetchError,
        BackgroundFetchFailureReason::QuotaExceeded,
        BackgroundFetchFailureReason::DownloadTotalExceeded,
    ];
}

impl fmt::Display for BackgroundFetchFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A background fetch response's *result*: any failure reason, `"success"`, or `"redundant"`.
///
/// <https://wicg.github.io/background-fetch/#background-fetch-response-result>
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordResult {
    /// `""`: in progress (or interrupted and waiting to be resumed).
    #[default]
    Empty,
    /// `"success"`
    Success,
    /// `"redundant"`: superseded by a fresh (non-206) response.
    Redundant,
    /// `"aborted"`
    Aborted,
    /// `"bad-status"`
    BadStatus,
    /// `"fetch-error"`
    FetchError,
    /// `"quota-exceeded"`
    QuotaExceeded,
    /// `"download-total-exceeded"`
    DownloadTotalExceeded,
}

impl RecordResult {
    /// The spec string.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordResult::Empty => "",
            RecordResult::Success => "success",
            RecordResult::Redundant => "redundant",
            RecordResult::Aborted => "aborted",
            RecordResult::BadStatus => "bad-status",
            RecordResult::FetchError => "fetch-error",
            RecordResult::QuotaExceeded => "quota-exceeded",
            RecordResult::DownloadTotalExceeded => "download-total-exceeded",
        }
    }

    /// A background fetch response *can be exposed* if its result is the empty string,
    /// `"success"`, or `"bad-status"`.
    ///
    /// <https://wicg.github.io/background-fetch/#background-fetch-response-exposed>
    pub fn exposed(self) -> bool {
        matches!(
            self,
            RecordResult::Empty | RecordResult::Success | RecordResult::BadStatus
        )
    }

    /// The failure reason this record result contributes to its background fetch, or `None`
    /// for `""`, `"success"` and `"redundant"`.
    pub fn failure_reason(self) -> Option<BackgroundFetchFailureReason> {
        Some(match self {
            RecordResult::Empty | RecordResult::Success | RecordResult::Redundant => return None,
            RecordResult::Aborted => BackgroundFetchFailureReason::Aborted,
            RecordResult::BadStatus => BackgroundFetchFailureReason::BadStatus,
            RecordResult::FetchError => BackgroundFetchFailureReason::FetchError,
            RecordResult::QuotaExceeded => BackgroundFetchFailureReason::QuotaExceeded,
            RecordResult::DownloadTotalExceeded => {
                BackgroundFetchFailureReason::DownloadTotalExceeded
            }
        })
    }
}

impl fmt::Display for RecordResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a service worker registration: its storage key and scope URL.
///
/// <https://w3c.github.io/ServiceWorker/#dfn-service-worker-registration>
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceWorkerRegistrationId {
    /// The storage key (quota is charged to it). For an unpartitioned profile this is the
    /// serialised origin of the scope.
    pub storage_key: String,
    /// The scope URL, serialised.
    pub scope: String,
}

impl ServiceWorkerRegistrationId {
    /// A registration for `scope`, keyed by the scope's origin.
    pub fn for_scope(scope: &Url) -> Self {
        ServiceWorkerRegistrationId {
            storage_key: scope.origin().ascii_serialization(),
            scope: scope.as_str().to_owned(),
        }
    }

    /// The serialised origin of the scope URL (what the UI must display, and which
    /// environments see progress).
    pub fn origin(&self) -> String {
        Url::parse(&self.scope)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "null".into())
    }
}

/// Identifies one background fetch for its whole life, across restarts. Ids given by script are
/// reusable once a fetch settles; this is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FetchUid(pub u64);

impl fmt::Display for FetchUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// `ImageResource` (Image Resource spec), as given in `BackgroundFetchUIOptions.icons`.
///
/// <https://w3c.github.io/image-resource/#dom-imageresource>
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageResource {
    /// `src` (resolved against the caller's base URL when the fetch was created).
    pub src: String,
    /// `sizes`
    pub sizes: Option<String>,
    /// `type`
    pub r#type: Option<String>,
    /// `label`
    pub label: Option<String>,
}

impl ImageResource {
    /// Process an `ImageResource` from an API: the image resource with its `src` resolved
    /// against `base`, the caller's API base URL (`fetch()`'s and `updateUI()`'s callers).
    ///
    /// <https://w3c.github.io/image-resource/#process-an-imageresource-from-an-api>
    pub fn process(&self, base: &Url) -> Result<ImageResource, crate::DomError> {
        // 1. Let image be a new image resource.
        // 2. Let url be the result of parsing input["src"] with the API base URL. If url is
        //    failure, throw a TypeError.
        let url = base.join(&self.src).map_err(|e| {
            crate::DomError::type_error(format!("icon src {:?} is not a URL: {e}", self.src))
        })?;
        // 3. Set image's src to url.
        // 4. If input["sizes"] exists, set image's sizes to it.
        // FIXME: the sizes are not parsed and checked (image-resource's "sizes" processing);
        //        they are kept as given, for the UI to interpret.
        // 5. If input["type"] exists, set image's type to it.
        // 6. If input["label"] exists, set image's label to it.
        // 7. Return image.
        Ok(ImageResource {
            src: url.to_string(),
            ..self.clone()
        })
    }
}

/// `BackgroundFetchUIOptions`.
///
/// <https://wicg.github.io/background-fetch/#dictdef-backgroundfetchuioptions>
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackgroundFetchUiOptions {
    /// `icons`
    pub icons: Option<Vec<ImageResource>>,
    /// `title`
    pub title: Option<String>,
}

/// `BackgroundFetchOptions`.
///
/// <https://wicg.github.io/background-fetch/#dictdef-backgroundfetchoptions>
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackgroundFetchOptions {
    /// `icons` (from `BackgroundFetchUIOptions`)
    pub icons: Option<Vec<ImageResource>>,
    /// `title` (from `BackgroundFetchUIOptions`)
    pub title: Option<String>,
    /// `downloadTotal` (default 0, meaning no limit).
    pub download_total: u64,
    /// Not part of the IDL: opaque data an embedder stores with the fetch and gets back after
    /// a restart (the `bgfetch` program keeps its `--out` directory here). Script cannot set it.
    pub embedder_data: Option<String>,
}

/// A permission state for the `"background-fetch"` powerful feature.
///
/// <https://w3c.github.io/permissions/#dom-permissionstate>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PermissionState {
    /// `"granted"`
    Granted,
    /// `"prompt"`: the fetch starts paused until the user accepts.
    Prompt,
    /// `"denied"`: `fetch()` rejects with `NotAllowedError`.
    Denied,
}

/// A policy container captured from the caller when `fetch()` ran. The spec nulls each record
/// request's client, so the caller's policies must be snapshotted then (outline §9.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyContainer {
    /// The caller's enforced Content Security Policies, serialised (for example
    /// `connect-src 'none'`). The [`crate::PolicyHost`] interprets them.
    pub csp: Vec<String>,
    /// The referrer policy, serialised (empty = default).
    pub referrer_policy: String,
    /// The caller's report-only policies (`Content-Security-Policy-Report-Only`): a
    /// [`crate::PolicyHost`] reports what they would block and never blocks for them.
    #[serde(default)]
    pub csp_report_only: Vec<String>,
}

/// What the engine remembers of the environment that called `fetch()`: enough to run Fetch's
/// client-dependent checks later, with the client gone (outline §9.6, §11.D.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSnapshot {
    /// The caller's origin, serialised (becomes each request's origin).
    pub origin: String,
    /// The caller's API base URL.
    pub base_url: Url,
    /// Whether the caller was a secure context (service workers always are).
    pub secure_context: bool,
    /// The caller's policy container.
    pub policy: PolicyContainer,
    /// Opaque data the embedder keeps about the caller (given in
    /// [`crate::EnvironmentSettings::embedder`]), stored with the fetch and handed back in every
    /// [`crate::NetworkRequest::client`], also after a restart: Servo would keep its serialised
    /// request client and policy container here, to rebuild them for its own Fetch.
    #[serde(default)]
    pub embedder: Option<Vec<u8>>,
}

impl ClientSnapshot {
    /// A snapshot for a secure-context caller at `base_url`, with no CSP.
    pub fn for_url(base_url: Url) -> Self {
        ClientSnapshot {
            origin: base_url.origin().ascii_serialization(),
            secure_context: true,
            base_url,
            policy: PolicyContainer::default(),
            embedder: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_results() {
        use RecordResult::*;
        let exposed: Vec<_> = [
            Empty,
            Success,
            Redundant,
            Aborted,
            BadStatus,
            FetchError,
            QuotaExceeded,
            DownloadTotalExceeded,
        ]
        .into_iter()
        .filter(|r| r.exposed())
        .collect();
        assert_eq!(exposed, vec![Empty, Success, BadStatus]);
    }

    #[test]
    fn failure_reason_strings_are_the_idl_values() {
        let s: Vec<_> = BackgroundFetchFailureReason::ALL
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            s,
            [
                "",
                "aborted",
                "bad-status",
                "fetch-error",
                "quota-exceeded",
                "download-total-exceeded"
            ]
        );
        assert_eq!(RecordResult::Redundant.failure_reason(), None);
        assert_eq!(
            RecordResult::BadStatus.failure_reason(),
            Some(BackgroundFetchFailureReason::BadStatus)
        );
    }

    #[test]
    fn registration_origin_comes_from_scope() {
        let r = ServiceWorkerRegistrationId::for_scope(
            &Url::parse("https://a.example:8443/app/").unwrap(),
        );
        assert_eq!(r.origin(), "https://a.example:8443");
        assert_eq!(r.storage_key, "https://a.example:8443");
    }
}
