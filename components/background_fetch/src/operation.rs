//! Why an operation the embedder asks of the engine on the user's behalf (pause, resume,
//! abort, click, the permission answer: [`crate::Engine`]) did nothing, or did not last.

use crate::store::StoreError;
use std::fmt;

/// Why an embedder's operation on a fetch did nothing, or holds only until a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationError {
    /// No fetch has this uid in the engine (never had, or settled and forgotten).
    UnknownFetch,
    /// The fetch has settled (or its abort all flag is set): nothing about it changes now.
    Settled,
    /// The display algorithm offers pause only when every record's request is `GET`.
    NotOffered,
    /// Pause of a fetch already paused.
    AlreadyPaused,
    /// Resume of a fetch not paused.
    NotPaused,
    /// A permission answer for a fetch that is not waiting for one.
    NotAwaitingPermission,
    /// The change was made and holds in this process, but the store refused it: a restart
    /// would forget it. The UI host hears of it too ([`crate::UiHost::storage_failed`]).
    NotDurable(StoreError),
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperationError::UnknownFetch => f.write_str("no such background fetch"),
            OperationError::Settled => f.write_str("the background fetch has settled"),
            OperationError::NotOffered => {
                f.write_str("pause is offered only when every request is GET")
            }
            OperationError::AlreadyPaused => f.write_str("the background fetch is paused already"),
            OperationError::NotPaused => f.write_str("the background fetch is not paused"),
            OperationError::NotAwaitingPermission => {
                f.write_str("the background fetch is not waiting for permission")
            }
            OperationError::NotDurable(e) => {
                write!(f, "done, but not stored (a restart would forget it): {e}")
            }
        }
    }
}

impl std::error::Error for OperationError {}
