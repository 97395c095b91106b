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
//! The engine on [`Hosts`], reached by script through the [`service`] protocol (here its
//! in-process transport; between processes, `ipc-channel`). The store, network, clock and
//! executor below are this crate's deterministic ones from `testing` (feature `testing`);
//! a browser gives its own (`background-fetch-redb`, `background-fetch-hyper`, its runtime).
//! The [`embedding`] module walks through each seam.
//!
//! ```
//! use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
//! use background_fetch::service::{client, in_process, Service, ServiceWorkerHost, WorkerBridge};
//! use background_fetch::testing::{Executor, Resource, ScriptedNetwork, VirtualClock};
//! use background_fetch::{
//!     BackgroundFetchOptions, BackgroundFetchResult, DispatchOutcome, Engine, EngineConfig,
//!     Hosts, MemoryStore, PolicyContainer, ServiceWorkerRegistrationId, Spawn,
//! };
//! use futures::FutureExt;
//! use std::sync::Arc;
//! use url::Url;
//!
//! let (executor, clock) = (Executor::new(), VirtualClock::new());
//! let network = ScriptedNetwork::new(clock.clone());
//! network.serve("https://example.com/episode.mp3", Resource::ok(vec![7u8; 100_000]));
//! let bridge = WorkerBridge::new();
//! let scope = Url::parse("https://example.com/").unwrap();
//! let registration = ServiceWorkerRegistrationId::for_scope(&scope);
//! bridge.set_active_worker(&registration, true); // the service worker system says so
//! let worker_host = ServiceWorkerHost::new(bridge.clone());
//! let hosts = Hosts::new(
//!     Arc::new(MemoryStore::new()),
//!     Arc::new(network),
//!     Arc::new(worker_host.clone()),
//!     Arc::new(clock.clone()),
//!     Arc::new(executor.clone()),
//! );
//! let engine = executor
//!     .block_on(&clock, Engine::start(hosts, EngineConfig::default()))
//!     .expect("the store loads");
//! let service = Service::new(engine, bridge);
//! worker_host.serve(&service);
//!
//! // The service worker global and a page, each a connection (another process in a browser).
//! let spawner: Arc<dyn Spawn> = Arc::new(executor.clone());
//! let environment = |kind, url: &str| EnvironmentData {
//!     kind,
//!     base_url: Url::parse(url).unwrap(),
//!     secure_context: true,
//!     policy: PolicyContainer::default(),
//!     embedder: None,
//! };
//! let sw = in_process::connect(
//!     &service,
//!     environment(EnvironmentKindData::ServiceWorker(registration.clone()), "https://example.com/sw.js"),
//!     spawner.clone(),
//! );
//! sw.on_functional_event(|event: client::FunctionalEvent| {
//!     async move {
//!         // backgroundfetchsuccess: read the records, as a service worker would.
//!         let records = event.registration().match_all(None, Default::default()).await.unwrap();
//!         let body = records[0].response_ready().await.unwrap().bytes().await.unwrap();
//!         assert_eq!(body.len(), 100_000);
//!         DispatchOutcome::Completed
//!     }
//!     .boxed()
//! });
//! let page = in_process::connect(
//!     &service,
//!     environment(EnvironmentKindData::Window, "https://example.com/podcasts/"),
//!     spawner,
//! );
//! let manager = page.background_fetch(&registration);
//! let fetch = executor
//!     .block_on(&clock, async move {
//!         manager
//!             .fetch("episode-1", "/episode.mp3", BackgroundFetchOptions {
//!                 title: Some("Episode 1".into()),
//!                 ..Default::default()
//!             })
//!             .await
//!     })
//!     .expect("fetch() resolves");
//! executor.run_until_idle(&clock); // the download runs in the background, on virtual time
//! assert_eq!(fetch.result(), BackgroundFetchResult::Success);
//! assert_eq!(fetch.downloaded(), 100_000);
//! ```
//!
//! The engine's own script-facing objects ([`Engine::create_environment`],
//! [`BackgroundFetchManager`], ...) are what the service calls; a same-process embedder may
//! call them directly. `examples/plain_executor.rs` embeds the engine, behind the service, with
//! nothing but a thread pool from the `futures` crate, to show it needs no particular runtime.
//! The deterministic test bed (`testing::TestBed`, feature `testing`) puts its engine behind a
//! service too: the crate's tests reach the engine through the protocol, as a page and a
//! service worker global.
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

// The layers, top to bottom; a module uses only modules of its layer or below
// (tests/layering.rs keeps it so).
//
// The service and the protocol (script in any process reaches the engine through them).
pub mod service;
// The script side in this process: the objects script sees, and the embedder's handle.
pub mod automation;
mod engine;
mod events;
mod manager;
mod registration;
// The algorithms and the state they share.
mod core;
mod functional;
mod operation;
mod perform;
mod quota;
mod recovery;
mod state;
// The host seams.
mod hosts;
mod memory_store;
pub mod store;
// Plain data, and the Fetch pieces the engine carries (one module: what an engine with its own
// Fetch maps, and what it ignores).
mod config;
mod error;
pub mod fetch;
mod matching;
mod model;
mod sync;
// Documentation only.
pub mod embedding;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{EngineConfig, RetryPolicy};
pub use engine::{Engine, EngineDiagnostics, FetchInfo, WeakEngine};
pub use error::{DomError, DomErrorKind};
pub use events::{
    BackgroundFetchEvent, BackgroundFetchUpdateUiEvent, EventObjects, FunctionalEvent,
};
pub use fetch::content_range::{
    ContentRange, PartialResponseInvalid, extract_content_range_values,
    parse_single_byte_content_range, parse_unsatisfied_content_range, range_request_start,
    validate_partial_response, validators_match,
};
pub use fetch::policy::BlockReason;
pub use fetch::{
    CacheMode, CredentialsMode, HeaderList, RedirectMode, Request, RequestBody, RequestInfo,
    RequestInit, RequestMode, RequestObject, ResponseHead, ResponseType, construct_request,
    is_cors_safelisted_method, is_forbidden_request_header,
};
pub use hosts::{
    Clock, DispatchOutcome, FixedQuota, FunctionalEventData, Granted, Hosts, NetworkError,
    NetworkErrorCause, NetworkErrorKind, NetworkEvent, NetworkHost, NetworkRequest, NoPolicy, NoUi,
    OpenRequestBody, PermissionHost, PolicyHost, QuotaHost, RequestBodySource, SimpleCsp, Spawn,
    StorageFailure, StoredChange, UiHost, UiSnapshot, Unlimited, Validators, WorkerHost,
};
pub use manager::{
    BackgroundFetchManager, Environment, EnvironmentKind, EnvironmentSettings, Requests,
    parse_request_url,
};
pub use matching::{CacheQueryOptions, request_matches_cached_item};
pub use memory_store::MemoryStore;
pub use model::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, BackgroundFetchResult,
    BackgroundFetchUiOptions, ClientSnapshot, EventToken, FetchUid, FunctionalEventKind,
    ImageResource, PermissionState, PolicyContainer, RecordResult, ServiceWorkerRegistrationId,
};
pub use operation::OperationError;
pub use registration::{
    BackgroundFetchRecord, BackgroundFetchRegistration, ProgressListener, Response,
};
pub use store::{
    ExportMode, Exported, FetchMeta, RecordState, Store, StoreError, StoreErrorKind, StoredFetch,
    StoredFlags, StoredRecord,
};

/// Re-exported so embedders name the same future and stream types as the traits.
pub use futures::future::BoxFuture;
/// Re-exported so embedders name the same stream type as the traits.
pub use futures::stream::BoxStream;
