//! The engine as a service: a serialisable protocol between script and the engine.
//!
//! Engines that embed us run script in other processes than their network and storage (Servo's
//! content processes and service worker processes, Chromium's renderers). The layers:
//!
//! ```text
//!  script side   client::{Connection, BackgroundFetchManager, BackgroundFetchRegistration,
//!   (any process)         BackgroundFetchRecord, Response, FunctionalEvent}: data + ids only
//!        │ protocol   protocol::{ToService, ToScript}: serde, versioned (PROTOCOL_VERSION)
//!        │ transport  in_process::connect (same process), ipc (feature "ipc": ipc-channel)
//!  service       server::Service: owns the engine, answers many connections;
//!                server::WorkerBridge: functional events as data (event tokens)
//!  algorithms    the engine (crate root)
//! ```
//!
//! A transport only moves messages: it gives the service's messages to
//! [`client::Connection::receive`] and the script's to [`server::Service::receive`].

pub mod client;
pub mod in_process;
#[cfg(feature = "ipc")]
pub mod ipc;
pub mod protocol;
pub mod server;

pub use client::Connection;
pub use server::{ConnectionId, Service, ServiceWorkerHost, WeakService, WorkerBridge};
