//! Queries (`ids`, `get`, `abort`, `match`) and the control socket that forwards them to the
//! process running fetches on a store (redb allows one process per store).
//!
//! The socket lives in a private runtime directory ([`crate::paths::socket_path`]); both ends
//! check that the other runs as the same user. [`wire`] is the protocol, [`server`] the side of
//! the process running fetches (with limits on lines, connections and time), [`client`] the side
//! of a query.

pub mod client;
pub mod server;
pub mod wire;
