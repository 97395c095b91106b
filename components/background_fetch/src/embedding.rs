//! # Embedding the engine in a browser
//!
//! A guide for an engine integrator, seam by seam and message by message. It names, for each
//! seam, the component of Servo 0.7.0 that would take it (from our reading of Servo's released
//! crates; `research/servo-embedding.md` in the workspace has the line references), and ends
//! with the order of the changes an integration needs on Servo's side. Nothing here is code:
//! the module only documents.
//!
//! ## Where the engine runs
//!
//! The engine owns every background fetch of a profile: the store, the network transfers, the
//! scheduler and the functional events. It belongs where storage and network live: Servo's
//! privileged main process (beside `ResourceThreads` and the storage threads), Chromium's
//! browser process. There is one engine per store (the redb store locks its file); a private
//! browsing profile gets a second engine on a [`crate::MemoryStore`].
//!
//! Script never holds engine objects. Each environment whose script can use the API (a
//! document, a dedicated or shared worker, a service worker global) opens a
//! [`crate::service::Connection`] to the engine's [`crate::service::Service`], and the objects
//! script sees ([`crate::service::client`]) are data plus ids over it.
//!
//! ```text
//!  content process (a page)             main process
//!  ─────────────────────────            ───────────────────────────────────────────────
//!  WebIDL bindings                      Service ── Engine ── hosts: Store, NetworkHost,
//!    └ client::BackgroundFetchManager      ▲                UiHost, WorkerHost, Permission,
//!        fetch / get / getIds              │                Quota, Policy, Clock, Spawn
//!    └ client::BackgroundFetchRegistration │
//!        abort / match / matchAll ─────────┤ protocol::ToService   (ipc-channel, postcard)
//!        progress ◀────────────────────────┤ protocol::ToScript
//!  service worker process                  │
//!    └ client::FunctionalEvent ◀───────────┘ (ToScript::Event, answered by EventDone)
//! ```
//!
//! ## The protocol, message by message
//!
//! Every message is in [`crate::service::protocol`], versioned by
//! [`crate::service::protocol::PROTOCOL_VERSION`], and round-trips through postcard (what
//! ipc-channel uses). A connection's first message is `Hello` with its environment
//! ([`crate::service::protocol::EnvironmentData`]: kind, API base URL, secure context, policy
//! container, and opaque embedder data); the service answers `Welcome`.
//!
//! | script does | message | the service answers |
//! |---|---|---|
//! | `registration.backgroundFetch.fetch(id, requests, options)` | `Call::Fetch` with the requests after the `Request` constructor (run in the caller's realm), their bodies (bytes, or `Streamed` followed by `UploadChunk`s), the options and whether the registration has an active worker | `Reply::Registration` (the instance's values) or the exception |
//! | `get(id)`, `getIds()` | `Call::Get`, `Call::GetIds` | `Reply::MaybeRegistration`, `Reply::Ids` |
//! | `registration.abort()` | `Call::Abort` (by the fetch's uid) | `Reply::Aborted` |
//! | `match()`, `matchAll()` | `Call::MatchAll` (the query after the `Request` constructor) | `Reply::Records`: a `RecordId` per record object |
//! | `record.responseReady` | `Call::ResponseReady` | `Reply::Response`: the head and a `BodyId` |
//! | reading a body | `Call::ReadBody` (in order, by offset); `Call::ReadRequestBody` for `record.request`'s | `Reply::Chunk` until `None` |
//! | dropping objects | `Release` | — |
//! | `event.updateUI()` | `Call::UpdateUi` with the event's token | `Reply::Done` or the exception |
//! | the event handler finished (waitUntil settled) | `EventDone` | — |
//!
//! Unasked, the service sends `ToScript::Update` (an instance's new values, and whether a
//! `progress` event fires: update background fetch instances) and, to a service worker
//! global's connection, `ToScript::Event` (kind, the registration's values, a token).
//!
//! A service worker global's `Hello` carries its own environment (its script's URL as base
//! URL, its policy container, the embedder's data): the engine creates its functional events
//! in it, and its calls use it, as a page's do.
//!
//! Lifetimes: the embedder owns the [`crate::service::Service`] (and through it the engine).
//! [`crate::service::ServiceWorkerHost`], which the engine holds as its worker host, holds the
//! service weakly, and so does an event waiting for a service worker to connect: when the
//! embedder drops its last handle, the engine, its store and its hosts are freed, and waiting
//! events fail. An in-process connection made with [`crate::service::in_process::connect`]
//! keeps the service alive; one made with
//! [`crate::service::in_process::connect_unowned`] does not, as script in another process
//! cannot.
//!
//! Transports: [`crate::service::in_process`] (direct hand-over, for a same-process embedder,
//! `bgfetch`, tests) and `service::ipc` (feature `ipc`, over `ipc-channel`: a one-shot server
//! in the engine's process, whose name the content process connects to).
//!
//! ## Seam by seam
//!
//! * **Script bindings** ([`crate::service::client`]). Servo: DOM classes in
//!   `components/script/dom/backgroundfetch/`, generated from the spec's WebIDL
//!   (`partial interface ServiceWorkerRegistration { [SameObject] readonly attribute
//!   BackgroundFetchManager backgroundFetch; }`, following its `CookieStoreManager`
//!   precedent), each method calling the client object and settling its promise in a task.
//! * **Functional events** ([`crate::service::WorkerBridge`], [`crate::WorkerHost`]). The
//!   engine fires an event as data plus a token to the connection of the registration's service
//!   worker global and waits for `EventDone`; `updateUI()` comes back with the token. Whether a
//!   registration has an active worker is pushed ([`crate::service::WorkerBridge::set_active_worker`])
//!   and also sent by script with `fetch()`. Servo needs extendable-event lifetimes (its
//!   `waitUntil` does nothing today) and a message from the constellation to a service worker
//!   manager that fires an event and reports when it is done.
//! * **Network** ([`crate::NetworkHost`], contract on the trait). Servo: `net`'s `fetch_async`
//!   with `cancel_async_fetch`; the adapter sets the origin and policy container explicitly,
//!   never keepalive, serves uploads through `BodyChunkRequest` (re-opening the body with
//!   [`crate::RequestBodySource::open_at`] for a 307/308), classifies `NetworkError`s, and
//!   reports a body that broke off as an error (Servo reports `Done`; the engine catches the
//!   identity-coded case by `Content-Length`). Servo's net keeps whole bodies in memory today: a
//!   streaming mode is a prerequisite for large downloads.
//! * **Storage** ([`crate::Store`], contract in [`crate::store`]). Our redb store runs as one
//!   more storage thread of the main process, or the embedder implements the trait on its own
//!   database (Servo vendors sqlite). Clearing site data calls
//!   [`crate::Engine::clear_storage_key`]; unregistering a service worker,
//!   [`crate::Engine::unregister`].
//! * **Caller data** ([`crate::ClientSnapshot`]). Captured at `fetch()` and persisted: origin,
//!   base URL, secure context, policy container, and `embedder`, opaque bytes the embedder puts
//!   in [`crate::EnvironmentSettings::embedder`] (Servo: its serialised request client and
//!   policy container), handed back in every [`crate::NetworkRequest::client`].
//! * **UI and the user** ([`crate::UiHost`]). Snapshots out; pause, resume, abort, click and
//!   the permission answer in, through [`crate::Engine`], each answering `Ok(())` or an
//!   [`crate::OperationError`] that says why nothing changed, or that the change holds only
//!   until a restart (the store refused it). A change the store refuses (a pause, an abort,
//!   `updateUI()`'s title, the result) also reaches [`crate::UiHost::storage_failed`], so the
//!   user hears of it whoever made it. Servo needs an embedder delegate for
//!   a background-fetch UI (its notification API is one-way) and a permission prompt outside a
//!   web view.
//! * **Policy** ([`crate::PolicyHost`]): CSP on the first URL by the engine, on every redirect
//!   hop by the network host, with the same policy.
//! * **Time and tasks** ([`crate::Clock`], [`crate::Spawn`]): Servo's `net::async_runtime`
//!   spawns and times; the engine has no runtime of its own and every future is `Send`.
//! * **Fetch itself** ([`crate::fetch`]). The Fetch pieces the engine carries (header list,
//!   request and response head, the `Request` constructor, CORS safelists, `Content-Range`,
//!   scheme, mixed-content and bad-port checks) are in that one module, with a table of what an
//!   engine with its own Fetch maps at the seams (header lists, requests, response heads: the
//!   store and the protocol carry them) and what it ignores (its own network stack runs CORS).
//!
//! ## The order of the changes on Servo's side
//!
//! 1. Extendable-event lifetime in service workers (waitUntil), and a "dispatch a functional
//!    event and report completion" message to the service worker manager: without them no
//!    event can fire.
//! 2. A streaming mode in `net` that does not accumulate response bodies, and an error instead of
//!    a normal end when a body breaks off.
//! 3. The engine in the main process: a `NetworkHost` over `net`, a `Store` (redb or sqlite),
//!    and the [`crate::service::Service`] behind an ipc-channel endpoint.
//! 4. An embedder delegate for the background-fetch UI and the permission, answered through the
//!    engine's pause / resume / abort / click / permission calls.
//! 5. DOM bindings over [`crate::service::client`].
//! 6. A storage type for clear-site-data that reaches [`crate::Engine::clear_storage_key`], and
//!    persistent service worker registrations (without them, fetches restored after a restart
//!    find no worker to fire their events at).
//!
//! ## What is still same-process
//!
//! The engine's own script-facing objects ([`crate::Environment`],
//! [`crate::BackgroundFetchManager`], ...) remain as the service's implementation and for
//! same-process embedders; the `WorkerHost` trait receives each event as data
//! ([`crate::FunctionalEventData`]: the kind, the registration and a token), which
//! [`crate::service::WorkerBridge`] sends to the service worker global's connection, asking the
//! embedder to start the worker first ([`crate::service::WorkerBridge::on_start_worker`]) when
//! it is active but not running. Host calls that another process may
//! answer are asynchronous: the permission state (asked for the caller's environment, its
//! [`crate::ClientSnapshot`]), the quota (asked when a fetch is made and when it starts
//! downloading, kept in the engine's ledger, never asked per chunk) and whether a registration
//! has an active worker (which the service's worker bridge knows from the script side's
//! pushes).
