//! `bgfetch run`: resume every unsettled fetch in the store and run them until they settle
//! (and deliver the ones whose success event had not finished).

use crate::commands::running::{outcome, start_running};
use crate::delivery::{FetchData, OutDelivery, remove_journal, remove_stale_journals};
use crate::exit;
use crate::network::NetArgs;
use crate::output::Reporter;
use crate::signals::Signals;
use background_fetch::{FetchUid, OperationError};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Runs `run`: first the fetches of web apps run by `bgfetch js` (their service workers
/// handle their events, see [`crate::commands::js::resume_apps`]), then the program's own.
pub async fn run_all(path: &Path, reporter: Arc<Reporter>, net: &NetArgs) -> i32 {
    let apps = crate::commands::js::resume_apps(path, net, APP_TIMEOUT).await;
    if matches!(apps, exit::INTERRUPTED | exit::TERMINATED | exit::HANGUP) {
        // Stopped by a signal while an app ran: the rest waits for the next run.
        return apps;
    }
    let code = run_program_fetches(path, reporter, net).await;
    if code == exit::SUCCESS { apps } else { code }
}

/// How long `run` lets an app's service worker run its fetches.
const APP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Runs the fetches the program handles itself (`bgfetch fetch`'s).
async fn run_program_fetches(path: &Path, reporter: Arc<Reporter>, net: &NetArgs) -> i32 {
    let net = match net.setup(|k| std::env::var(k).ok()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            return exit::ERROR;
        }
    };
    let delivery = OutDelivery::new(reporter.clone(), path);
    let (app, _server) = match start_running(path, reporter, delivery.clone(), net).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let fetches = app.engine.fetches();
    let tokens: HashMap<FetchUid, String> = fetches
        .iter()
        .map(|f| {
            (
                f.uid,
                FetchData::parse(f.embedder_data.as_deref()).token(f.uid),
            )
        })
        .collect();
    remove_stale_journals(path, &tokens.values().cloned().collect::<HashSet<_>>());
    if fetches.is_empty() {
        app.reporter
            .note("nothing to run: the store holds no unsettled fetch");
        app.close().await;
        return exit::SUCCESS;
    }
    // A fetch left paused by an interrupted `fetch` or `run` continues.
    for f in &fetches {
        if f.ui.paused
            && let Err(OperationError::NotDurable(e)) = app.engine.resume(f.uid).await
        {
            app.reporter
                .error(&format!("{}: the resume could not be stored: {e}", f.id));
        }
    }
    for f in fetches.iter().filter(|f| f.active) {
        delivery.start(f.uid, f.embedder_data.as_deref());
    }
    app.engine.resume_restored(None);
    let mut pending: HashMap<_, _> = fetches.iter().map(|f| (f.uid, f.id.clone())).collect();
    let mut code = exit::SUCCESS;
    while !pending.is_empty() {
        let next = async {
            let mut rx = app.settled.lock().await;
            rx.recv().await
        };
        tokio::select! {
            s = next => {
                let Some(s) = s else { break };
                let Some(id) = pending.remove(&s.uid) else { continue };
                let c = outcome(&app, &id, &s);
                if s.handler_error.is_none() {
                    tokio::select! {
                        _ = app.engine.finished(s.uid) => {
                            if let Some(token) = tokens.get(&s.uid) {
                                remove_journal(path, token);
                            }
                        }
                        stop = signals.stopped() => {
                            app.close().await;
                            app.reporter.error(&format!("{}: stopped", stop.describe()));
                            return stop.exit_code();
                        }
                    }
                }
                if c != exit::SUCCESS && code == exit::SUCCESS {
                    code = c;
                }
            }
            stop = signals.stopped() => {
                for uid in pending.keys() {
                    if let Err(OperationError::NotDurable(e)) = app.engine.pause(*uid).await {
                        app.reporter
                            .error(&format!("{uid}: the pause could not be stored: {e}"));
                    }
                }
                app.close().await;
                app.reporter.error(&format!(
                    "{}: {} fetch(es) paused in the store; `bgfetch run` continues them",
                    stop.describe(),
                    pending.len()
                ));
                return stop.exit_code();
            }
        }
    }
    app.close().await;
    code
}
