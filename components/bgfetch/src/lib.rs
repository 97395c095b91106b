//! # bgfetch
//!
//! The reference embedder of the `background-fetch` engine, and a program people use: a
//! resumable, crash-safe multi-file downloader that follows the Background Fetch spec.
//!
//! It is the example to read to learn the seams: the store is `background-fetch-redb`
//! ([`app::open_store`]), the network is `background-fetch-hyper`, the UI host draws progress
//! bars or prints JSON lines ([`output::Reporter`]), and the program itself plays the service
//! worker ([`app::ProgramWorker`]): it receives the functional events and, with `--out`, writes
//! each record's body into a directory during `backgroundfetchsuccess`.
//!
//! ```text
//! bgfetch [--store PATH] [--json] <command>
//!   fetch ID URL... [--title T] [--download-total BYTES] [--icon URL] [--origin ORIGIN]
//!                   [--upload METHOD URL FILE]... [--out DIR] [--detach]
//!   run
//!   ids
//!   get ID
//!   abort ID
//!   match ID URL [--ignore-search] [--ignore-method] [--ignore-vary] [-o FILE]
//!   demo
//! ```
//!
//! With `--json`, stdout carries one JSON object per line, each with `event` (`registered`,
//! `progress`, `paused`, `resumed`, `backgroundfetchsuccess`, `backgroundfetchfail`,
//! `backgroundfetchabort`), `id`, `downloaded`, `downloadTotal`, `uploaded`, `uploadTotal`,
//! `result` and `failureReason`. A settle event's line is printed when the event fires (every
//! record is durable in the store); with `--out`, the files are in place when the process exits
//! with status 0.
//!
//! Exit codes: 0 success, 1 the fetch failed or was aborted (or nothing matched), 2 `fetch()`
//! rejected, 3 usage, store or I/O error, 130 interrupted (the fetch is left paused; `run`
//! continues it).

pub mod app;
pub mod cli;
pub mod control;
mod demo;
pub mod output;
pub mod server;
