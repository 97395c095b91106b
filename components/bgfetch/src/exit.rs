//! Exit codes: a contract scripts rely on.

/// The fetch succeeded (and with `--out` its files are in place and durable), or the query
/// answered.
pub const SUCCESS: i32 = 0;
/// The fetch settled as a failure or abort (or nothing matched, or a matched body ended short).
pub const FAILED: i32 = 1;
/// `fetch()` rejected (including a URL argument that is not an absolute http(s) URL).
pub const REJECTED: i32 = 2;
/// Usage, store or I/O error (a failed `--out` delivery keeps the download in the store).
pub const ERROR: i32 = 3;
/// Interrupted by SIGINT (128 + 2): the fetch is left paused in the store.
pub const INTERRUPTED: i32 = 130;
/// Hung up (SIGHUP, 128 + 1): as for SIGINT.
pub const HANGUP: i32 = 129;
/// Terminated (SIGTERM, 128 + 15): as for SIGINT.
pub const TERMINATED: i32 = 143;
