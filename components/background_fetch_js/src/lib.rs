//! # background-fetch-js
//!
//! Real JavaScript against the Background Fetch engine: a host on [Boa](https://boajs.dev)
//! 0.22 with a page realm and service-worker, dedicated-worker and shared-worker realms on one
//! event loop, the Background Fetch
//! WebIDL surface written in JavaScript (`src/js/`) over a few native functions that call the
//! engine through its script-side service client ([`background_fetch::service::client`]), and
//! a runner of the upstream WPT `background-fetch/` files, unmodified, in testharness.js's own
//! harness.
//!
//! ```text
//!  src/js/*.js           WebIDL kit, DOM events, streams, Fetch primitives, Background Fetch,
//!        │               workers and channel messaging, Service Workers, Cache API, globals:
//!        │               one bootstrap function per realm
//!  natives.rs            native.* functions: tasks, timers, text, scripts, engine operations
//!  event_loop.rs         tasks, timers on the engine's clock, microtask checkpoints,
//!  rejections.rs         unhandledrejection
//!  state.rs              what natives reach: queues, environments, reports, caches
//!  engine_host.rs        the engine, its protocol service, one connection per environment
//!  workers.rs            the connections of dedicated and shared worker globals
//!  network.rs, server.rs the loopback WPT server and the engine's network to it
//!  cache_store.rs        the Cache API's storage (memory, or the redb store's rows)
//!  registrations.rs      service worker registrations kept with the fetches
//!  app.rs                web apps on an embedder's hosts (`bgfetch js`, `bgfetch run`)
//!  runner.rs             one page per upstream file (and apps); expectations.rs
//! ```
//!
//! ## What it supports, and what not
//!
//! * The Background Fetch IDL exactly (`BackgroundFetchManager`, `BackgroundFetchRegistration`
//!   with `onprogress`, `BackgroundFetchRecord`, `BackgroundFetchEvent`,
//!   `BackgroundFetchUpdateUIEvent`, the `ServiceWorkerRegistration.backgroundFetch` and
//!   `ServiceWorkerGlobalScope` partials), with WebIDL's descriptors (enumerable members,
//!   `[Global]` members on the global, `@@toStringTag`, illegal constructors), brand checks,
//!   exceptions created in the caller's realm, `DOMException` with its legacy codes and
//!   `QuotaExceededError`.
//! * Around it: `EventTarget`/`Event`/`ExtendableEvent` (`waitUntil` extends the dispatch),
//!   `postMessage` with structured clone both ways, `navigator.serviceWorker` (`register` with
//!   install and activate as later tasks, `ready`, `getRegistration`, `unregister`), the
//!   worker's `skipWaiting()`, `clients` (`matchAll`, `get`, `claim`, `openWindow`, which
//!   resolves with null as a browser without a window does), `importScripts`, `console`,
//!   timers, `URL`/`URLSearchParams`, `TextEncoder`/`TextDecoder` (UTF-8 through encoding_rs),
//!   `Blob`/`File`/`FormData`, `Headers`/`Request`/`Response` (bodies as text, arrayBuffer,
//!   bytes, json, blob, and a `ReadableStream` that follows a record still downloading), the
//!   page's `fetch()` (policy checks and CORS), the Cache API (in memory for the WPT runner; in
//!   the same redb database as the fetches for an app run on a store, see [`cache_store`]),
//!   `unhandledrejection`.
//! * Workers: `Worker` and `SharedWorker` (one realm per worker global, its script run in a
//!   later task; a shared worker's global is shared by the page's objects of one URL and
//!   name), `DedicatedWorkerGlobalScope` (`postMessage`, `onmessage`, `close`, `name`) and
//!   `SharedWorkerGlobalScope` (`connect` events with a `MessagePort`), `WorkerLocation`,
//!   `WorkerNavigator` whose `serviceWorker` (`getRegistration`, `getRegistrations`, `ready`)
//!   gives the worker its own `ServiceWorkerRegistration` objects over the page's
//!   registrations, so that its Background Fetch objects reach the engine through the
//!   worker's own connection (a `Worker` environment); an uncaught exception and a script
//!   that does not load fire `error` at the worker object. `MessageChannel` and `MessagePort`
//!   (entangled across realms, port message queues enabled by `start()` or `onmessage`,
//!   `close()`, ports transferred in `postMessage`). Every interface is exposed exactly where
//!   its `[Exposed]` says (the Background Fetch events in service workers only).
//!   `.any.js` files run in all four of wptserve's variants (window, dedicated, shared and
//!   service worker), the worker ones through testharness.js's `fetch_tests_from_worker`.
//! * Not: IndexedDB, notifications, `tee()` and piping of streams, byte streams, the service
//!   worker update algorithm (a second `register()` makes a new registration), fetch
//!   interception (pages are never controlled); in workers: module workers,
//!   `navigator.serviceWorker.register()` (rejects), timers after `close()` (they still run),
//!   transferring anything but ports, `MessagePort`'s `close` event, `BroadcastChannel`, and
//!   a service worker's `navigator`.
//!
//! ## Running
//!
//! The upstream files, from the workspace root (the WPT root is read, never copied):
//!
//! ```text
//! cargo run -p background-fetch-js --bin wpt -- --root ../shared/wpt-upstream
//! ```
//!
//! An app on the `bgfetch` program's hosts (redb store, hyper network; a fetch cut off by a
//! kill is finished by `bgfetch run` in the app's own worker): `bgfetch js --root DIR
//! --register /sw.js index.js` ([`app::run_page`], [`app::resume_stored`]). For the host's
//! tests: `cargo run -p background-fetch-js --bin bgfetch-js -- --root DIR [--store PATH]
//! --register /sw.js index.js` (with `--store`, fetches survive the program and resume in the
//! next run). In Rust, [`runner::Runner::run_app`]:
//!
//! ```no_run
//! use background_fetch_js::runner::Runner;
//!
//! // DIR holds index.js and sw.js; it is served as https://web-platform.test/ on loopback.
//! let runner = Runner::new(std::path::Path::new("DIR")).expect("a loopback server");
//! let run = runner.run_app(
//!     "test_driver.set_permission({name: 'background-fetch'}, 'granted');\
//!      navigator.serviceWorker.register('/sw.js');",
//!     "index.js",
//! );
//! for line in &run.console {
//!     println!("{line}");
//! }
//! ```

pub mod app;
pub mod bootstrap;
pub mod cache_store;
pub mod engine_host;
pub mod event_loop;
pub mod expectations;
pub mod natives;
pub mod network;
pub mod registrations;
pub mod rejections;
pub mod runner;
pub mod server;
pub mod state;
pub mod workers;
