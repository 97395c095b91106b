//! # bgfetch
//!
//! The reference embedder of the `background-fetch` engine, and a program people use: a
//! resumable, crash-safe multi-file downloader that follows the Background Fetch spec.
//!
//! It is the example to read to learn the seams: the store is `background-fetch-redb`
//! ([`app::open_store`]), the network is `background-fetch-hyper`, the UI host draws progress
//! bars or prints JSON lines ([`output::Reporter`]), quota is the disk's free space
//! ([`quota::DiskQuota`]), and the program itself plays the service worker
//! ([`app::ProgramWorker`]): it receives the functional events and, with `--out`, delivers each
//! record's body into a directory during `backgroundfetchsuccess` ([`delivery`]). Script
//! reaches the engine only through its service protocol: the page's `fetch()`, the service
//! worker's events, and the queries of other bgfetch processes, whose control socket carries
//! the same protocol ([`control::wire`]).
//!
//! ```text
//! bgfetch [--store PATH] [--json] <command>
//!   fetch ID URL... [-i FILE] [-H 'NAME: VALUE']... [--integrity URL METADATA]...
//!                   [--title T] [--download-total BYTES] [--icon URL] [--origin ORIGIN]
//!                   [--upload METHOD URL FILE]... [--out DIR] [--detach] [--limit-rate RATE]
//!                   [--cacert FILE] [--proxy URL] [--parallel N] [--retry N]
//!   run [--cacert FILE] [--proxy URL] [--parallel N] [--retry N]
//!   ls | pause ID | resume ID | ids | get ID | abort ID
//!   match ID URL [--ignore-search] [--ignore-method] [--ignore-vary] [-o FILE]
//!   demo | completions SHELL | man [COMMAND]
//! ```
//!
//! With `--json`, stdout carries one JSON object per line, each with `event` (`registered`,
//! `progress`, `paused`, `resumed`, `backgroundfetchsuccess`, `backgroundfetchfail`,
//! `backgroundfetchabort`), `id`, `downloaded`, `downloadTotal`, `uploaded`, `uploadTotal`,
//! `result` and `failureReason`. A settle event's line is printed when the event fires (every
//! record is durable in the store); with `--out`, a `saved` event (`id`, `url`, `path`) follows
//! for each file, and the files are in place and durable when the process exits with status 0
//! (see [`delivery`] for what happens on a name clash, after a crash and when delivery fails).
//! A `record` event (`id`, `index`, `url`, `result`, `status`, `bytes`, `cause`, `error`) is
//! printed as each record settles ([`records`]).
//!
//! The network is set up as a system tool's ([`network`]): the platform's trust store,
//! curl's proxy variables, `--limit-rate` per fetch.
//!
//! Exit codes ([`exit`]): 0 success, 1 the fetch failed or was aborted (or nothing matched, or a
//! matched body ended short), 2 `fetch()` rejected, 3 usage, store or I/O error, 130 / 143 / 129
//! interrupted by SIGINT / SIGTERM / SIGHUP (the fetch is left paused; `run` continues it).
//!
//! Modules, each depending only on those listed before it: [`exit`], [`names`], [`paths`],
//! [`data`], [`output`], [`records`], [`network`], [`quota`], [`signals`], [`server`], [`app`],
//! [`delivery`], [`control`], [`commands`], the demo, and [`cli`].

pub mod app;
pub mod cli;
pub mod commands;
pub mod control;
pub mod data;
pub mod delivery;
mod demo;
pub mod exit;
pub mod names;
pub mod network;
pub mod output;
pub mod paths;
pub mod quota;
pub mod records;
pub mod server;
pub mod signals;
