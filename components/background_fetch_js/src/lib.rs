//! # background-fetch-js
//!
//! Real JavaScript against the Background Fetch engine: a host on [Boa](https://boajs.dev)
//! with a page realm and service-worker realms on one event loop, the Background Fetch WebIDL
//! surface written in JavaScript (`src/js/`) over a few native functions that talk to the
//! engine through its script-side service client, and a runner of the upstream WPT
//! `background-fetch/` files, unmodified, in testharness.js's own harness.
//!
//! ```text
//!  src/js/*.js          WebIDL kit, DOM events, Fetch primitives, Background Fetch, Service
//!        │              Workers, globals: one bootstrap function per realm
//!  natives.rs           native.* functions: tasks, timers, text, scripts, engine operations
//!  event_loop.rs        tasks, timers on the engine's clock, microtask checkpoints
//!  engine_host.rs       the engine, its protocol service and one connection per environment
//!  network.rs/server.rs the loopback WPT server and the engine's network to it
//!  runner.rs            one page per upstream file; expectations.rs: the expected failures
//! ```
//!
//! Run the upstream files: `cargo run -p background-fetch-js --bin wpt -- --root
//! ../shared/wpt-upstream` (from the workspace root).

pub mod bootstrap;
pub mod cache_store;
pub mod engine_host;
pub mod event_loop;
pub mod expectations;
pub mod natives;
pub mod network;
pub mod rejections;
pub mod runner;
pub mod server;
pub mod state;
