//! Queries (`ids`, `get`, `abort`, `match`, `pause`, `resume`, `ls`) and the control socket
//! that forwards them to the process running fetches on a store (redb allows one process per
//! store).
//!
//! The socket lives in a private runtime directory ([`crate::paths::socket_path`]); both ends
//! check that the other runs as the same user. It speaks the engine's service protocol, with
//! bgfetch's extension messages beside it: [`wire`] is the framing and the messages, [`server`]
//! the side of the process running fetches (each connection one more connection of its
//! `Service`, with limits on frames, connections and time), [`client`] the side of a query (a
//! `client::Connection` whose transport is the socket).

pub mod client;
pub mod server;
pub mod wire;
