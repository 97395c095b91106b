//! # background-fetch
//!
//! The [WICG Background Fetch API](https://wicg.github.io/background-fetch/) as a
//! browser-engine component: the spec's model and algorithms, step by step, behind host traits.
//! Spec revision: `index.bs` at commit a1f0bc2 (2021-11-25); `spec-map.md` at the workspace
//! root maps every spec anchor to the Rust item that implements it.
//!
//! The crate does no I/O and has no async runtime of its own. An embedder supplies [`Hosts`]:
//! a [`Store`] (this crate ships [`MemoryStore`]; `background-fetch-redb` is a crash-safe one), a
//! [`NetworkHost`] (`background-fetch-hyper`), a [`UiHost`], a [`WorkerHost`] (functional event
//! dispatch), permission, quota and policy hosts, a [`Clock`] and a [`Spawn`]er. All futures are
//! `Send`.
//!
//! Script-facing objects mirror the IDL: [`Engine::create_environment`] gives an
//! [`Environment`] (a document or worker realm), whose [`Environment::background_fetch`] is
//! `registration.backgroundFetch` ([`BackgroundFetchManager`]): [`BackgroundFetchManager::fetch`],
//! [`BackgroundFetchManager::get`], [`BackgroundFetchManager::get_ids`], then
//! [`BackgroundFetchRegistration`] with its attributes, `progress` listeners, `abort()`,
//! `match()` and `matchAll()`, and [`BackgroundFetchRecord::response_ready`] whose body streams
//! from the store while the download is still running. Rejections are [`DomError`]s.
//!
//! ## A minimal embedding
//!
//! ```
//! use background_fetch::testing::{TestBed, Resource};
//! use background_fetch::{BackgroundFetchOptions, BackgroundFetchResult, FunctionalEventKind};
//!
//! // TestBed wires the engine to deterministic hosts: an in-memory store, a scripted network,
//! // a virtual clock and a recording service worker. A real embedder builds `Hosts` itself.
//! let bed = TestBed::new();
//! bed.network.serve("https://example.com/episode.mp3", Resource::ok(vec![7u8; 100_000]));
//! let manager = bed.page().background_fetch(&bed.registration);
//! let registration = bed
//!     .run(async move {
//!         manager
//!             .fetch("episode-1", "/episode.mp3", BackgroundFetchOptions {
//!                 title: Some("Episode 1".into()),
//!                 ..Default::default()
//!             })
//!             .await
//!     })
//!     .expect("fetch() resolves");
//! bed.run_until_idle(); // the download runs in the background, on virtual time
//! assert_eq!(registration.result(), BackgroundFetchResult::Success);
//! assert_eq!(registration.downloaded(), 100_000);
//! assert_eq!(bed.worker.events_of(FunctionalEventKind::Success).len(), 1);
//! ```
//!
//! A real embedding replaces `TestBed` by [`Engine::start`] with its own [`Hosts`]; the example
//! `examples/plain_executor.rs` does that with nothing but a thread pool from the `futures`
//! crate, to show the engine needs no particular runtime.
//!
//! ## What happens to a background fetch
//!
//! 1. `fetch()` validates the requests, stores them and their bodies (charged to the storage
//!    key's quota, with `downloadTotal` reserved), registers the fetch and starts it.
//! 2. Records are fetched in parallel under [`EngineConfig::max_parallel_per_fetch`] and
//!    [`EngineConfig::max_parallel_global`]. Bodies stream from the network into the store;
//!    `downloadTotal` is enforced per chunk; temporarily unavailable `GET` records wait for
//!    connectivity and resume with a Range request validated by "validate a partial response".
//! 3. When every record settled (or at once on `download-total-exceeded`) the fetch leaves its
//!    registration's active fetches, its result is stored, every instance gets a final
//!    `progress` and the worker host fires `backgroundfetchsuccess`, `backgroundfetchfail` or
//!    `backgroundfetchabort`. Records stay readable until the event is no longer active;
//!    then `recordsAvailable` becomes false and the stored bytes are dropped.
//!
//! Deviations from the spec text (its defects, and where the current WPT disagrees with it) are
//! marked `AD-HOC:` in the code and listed in `spec-map.md`.

#![warn(missing_docs)]

pub mod automation;
mod content_range;
pub mod cors;
mod engine;
mod error;
mod events;
mod fetch;
mod hosts;
mod manager;
mod matching;
mod memory_store;
mod model;
mod perform;
pub mod policy;
mod registration;
pub mod service;
mod state;
pub mod store;
mod sync;

#[cfg(feature = "testing")]
pub mod testing;

pub use content_range::{
    ContentRange, PartialResponseInvalid, extract_content_range_values,
    parse_single_byte_content_range, parse_unsatisfied_content_range, validate_partial_response,
    validators_match,
};
pub use engine::{
    Engine, EngineConfig, EngineDiagnostics, Environment, EnvironmentKind, EnvironmentSettings,
    FetchInfo, Hosts, RetryPolicy,
};
pub use error::{DomError, DomErrorKind};
pub use events::{
    BackgroundFetchEvent, BackgroundFetchUpdateUiEvent, FunctionalEvent, FunctionalEventKind,
};
pub use fetch::{
    CacheMode, CredentialsMode, HeaderList, RedirectMode, Request, RequestBody, RequestInfo,
    RequestInit, RequestMode, RequestObject, ResponseHead, ResponseType, construct_request,
    is_cors_safelisted_method, is_forbidden_request_header,
};
pub use hosts::{
    BlockReason, Clock, DispatchOutcome, FixedQuota, Granted, NetworkError, NetworkErrorKind,
    NetworkEvent, NetworkHost, NetworkRequest, NoPolicy, OpenRequestBody, PermissionHost,
    PolicyHost, QuotaHost, RequestBodySource, SimpleCsp, Spawn, UiHost, UiSnapshot, Unlimited,
    Validators, WorkerHost,
};
pub use manager::{Requests, parse_request_url};
pub use matching::{CacheQueryOptions, request_matches_cached_item};
pub use memory_store::MemoryStore;
pub use model::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, BackgroundFetchResult,
    BackgroundFetchUiOptions, ClientSnapshot, FetchUid, ImageResource, PermissionState,
    PolicyContainer, RecordResult, ServiceWorkerRegistrationId,
};
pub use registration::{
    BackgroundFetchManager, BackgroundFetchRecord, BackgroundFetchRegistration, ProgressListener,
    Response,
};
pub use store::Store;

/// Re-exported so embedders name the same future and stream types as the traits.
pub use futures::future::BoxFuture;
/// Re-exported so embedders name the same stream type as the traits.
pub use futures::stream::BoxStream;
