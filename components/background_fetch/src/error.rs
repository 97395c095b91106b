//! Errors that reach script, shaped like WebIDL exceptions.
//!
//! Every rejection the script-facing API produces is a [`DomError`]: a JavaScript `TypeError`
//! or a `DOMException` of a given name, with a precise message. An engine's bindings turn it
//! into the real exception object.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of exception, by the name script sees in `e.name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DomErrorKind {
    /// A JavaScript `TypeError` (not a `DOMException`).
    TypeError,
    /// `DOMException` named `NotAllowedError`.
    NotAllowedError,
    /// `DOMException` named `InvalidStateError`.
    InvalidStateError,
    /// `DOMException` named `AbortError`.
    AbortError,
    /// `QuotaExceededError`: today's WebIDL defines it as its own `DOMException`-derived
    /// interface with `quota` and `requested` attributes.
    QuotaExceededError,
    /// `DOMException` named `InvalidAccessError`.
    InvalidAccessError,
    /// `DOMException` named `NotSupportedError`.
    NotSupportedError,
}

impl DomErrorKind {
    /// The value of `e.name` in script.
    pub fn name(self) -> &'static str {
        match self {
            DomErrorKind::TypeError => "TypeError",
            DomErrorKind::NotAllowedError => "NotAllowedError",
            DomErrorKind::InvalidStateError => "InvalidStateError",
            DomErrorKind::AbortError => "AbortError",
            DomErrorKind::QuotaExceededError => "QuotaExceededError",
            DomErrorKind::InvalidAccessError => "InvalidAccessError",
            DomErrorKind::NotSupportedError => "NotSupportedError",
        }
    }
}

/// An exception for script: a `TypeError` or a `DOMException`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomError {
    /// Which exception.
    pub kind: DomErrorKind,
    /// The message (`e.message`).
    pub message: String,
    /// `QuotaExceededError.quota` (null when unknown). Only meaningful for that kind.
    pub quota: Option<f64>,
    /// `QuotaExceededError.requested` (null when unknown). Only meaningful for that kind.
    pub requested: Option<f64>,
}

impl DomError {
    fn new(kind: DomErrorKind, message: impl Into<String>) -> Self {
        DomError {
            kind,
            message: message.into(),
            quota: None,
            requested: None,
        }
    }

    /// A JavaScript `TypeError`.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(DomErrorKind::TypeError, message)
    }

    /// A `NotAllowedError` `DOMException`.
    pub fn not_allowed(message: impl Into<String>) -> Self {
        Self::new(DomErrorKind::NotAllowedError, message)
    }

    /// An `InvalidStateError` `DOMException`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(DomErrorKind::InvalidStateError, message)
    }

    /// An `AbortError` `DOMException`.
    pub fn abort(message: impl Into<String>) -> Self {
        Self::new(DomErrorKind::AbortError, message)
    }

    /// A `QuotaExceededError` with `quota` and `requested` both null, which is what WPT
    /// `fetch.https.window.js` expects from `fetch()`.
    pub fn quota_exceeded(message: impl Into<String>) -> Self {
        Self::new(DomErrorKind::QuotaExceededError, message)
    }

    /// The value of `e.name`.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

impl fmt::Display for DomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.message)
    }
}

impl std::error::Error for DomError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_name_colon_message() {
        assert_eq!(
            DomError::type_error("requests must not be empty").to_string(),
            "TypeError: requests must not be empty"
        );
        let q = DomError::quota_exceeded("no room");
        assert_eq!(q.name(), "QuotaExceededError");
        assert_eq!((q.quota, q.requested), (None, None));
    }
}
