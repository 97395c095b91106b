//! Automation: the spec's WebDriver extension command, for an embedder's WebDriver
//! implementation (conformance tests drive the UI through it).
//!
//! The engine has no HTTP endpoint: the embedder's WebDriver server routes
//! [`CLICK_METHOD`] [`CLICK_URI_TEMPLATE`] to [`crate::Engine::webdriver_click`] with the
//! current top-level browsing context's page URL (or `None` when that context is closed) and
//! the service worker registrations it knows, and turns a [`WebDriverError`] into the error
//! response ([`WebDriverError::status`], [`WebDriverError::error_code`]).
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25).

use crate::model::ServiceWorkerRegistrationId;
use std::fmt;
use url::Url;

/// The method of the background fetch click extension command.
///
/// <https://wicg.github.io/background-fetch/#automation-click>
pub const CLICK_METHOD: &str = "POST";

/// The URI template of the background fetch click extension command.
///
/// <https://wicg.github.io/background-fetch/#automation-click>
pub const CLICK_URI_TEMPLATE: &str = "/session/{session id}/backgroundfetch/{id}/click";

/// A WebDriver error the command returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebDriverError {
    /// The current top-level browsing context is no longer open.
    NoSuchWindow,
    /// No service worker registration matches the page.
    InvalidServiceWorkerState,
    /// The registration has no background fetch with that id.
    BackgroundFetchNotFound,
}

impl WebDriverError {
    /// The HTTP status of the error response.
    pub fn status(self) -> u16 {
        match self {
            // WebDriver's error table: "no such window" is 404.
            WebDriverError::NoSuchWindow => 404,
            WebDriverError::InvalidServiceWorkerState => 400,
            WebDriverError::BackgroundFetchNotFound => 404,
        }
    }

    /// The JSON error code of the error response.
    pub fn error_code(self) -> &'static str {
        match self {
            WebDriverError::NoSuchWindow => "no such window",
            WebDriverError::InvalidServiceWorkerState => "invalid service worker state",
            WebDriverError::BackgroundFetchNotFound => "background fetch not found",
        }
    }
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error_code(), self.status())
    }
}

impl std::error::Error for WebDriverError {}

/// Service Workers' *Match Service Worker Registration*, over `registrations` (the registration
/// map's keys): the registration of `storage_key` whose scope is the longest prefix of
/// `client_url`.
///
/// <https://w3c.github.io/ServiceWorker/#scope-match-algorithm>
pub fn match_service_worker_registration<'a>(
    registrations: impl IntoIterator<Item = &'a ServiceWorkerRegistrationId>,
    storage_key: &str,
    client_url: &Url,
) -> Option<&'a ServiceWorkerRegistrationId> {
    // 2. Let clientURLString be serialized clientURL.
    let client_url = client_url.as_str();
    // 3. Let matchingScopeString be the empty string.
    // 4. Let scopeStringSet be an empty list.
    // 5. For each (entry storage key, entry scope) of registration map's keys: if storage key
    //    equals entry storage key, then append entry scope to the end of scopeStringSet.
    // 6. Set matchingScopeString to the longest value in scopeStringSet which the value of
    //    clientURLString starts with, if it exists.
    // NOTE: prefix-based rather than path-structural; safe because HTTP(S) URLs always
    //       serialise with a slash after the origin.
    // 7.-9. The registration of that scope, or null.
    registrations
        .into_iter()
        .filter(|r| r.storage_key == storage_key && client_url.starts_with(r.scope.as_str()))
        .max_by_key(|r| r.scope.len())
}
