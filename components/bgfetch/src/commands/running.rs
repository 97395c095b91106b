//! What `fetch` and `run` share: opening the store for a process that runs fetches, serving the
//! control socket, and telling how a fetch ended.

use crate::app::{App, EventHandler, Settled, StoreOpen, open_store};
use crate::control::client::{AskError, Remote};
use crate::control::server::{self, Limits, ServerGuard};
use crate::control::wire::Control;
use crate::exit;
use crate::network::NetSetup;
use crate::output::Reporter;
use crate::paths;
use background_fetch::FunctionalEventKind;
use background_fetch_redb::RedbStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a command waits for a store that another bgfetch command (a query answered from
/// the store) holds, before it gives up.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Whether a process running fetches answers on the store's control socket.
async fn runner_answers(store: &Path) -> Result<bool, String> {
    let Ok(sock) = paths::socket_path(store) else {
        return Ok(false);
    };
    let asked = async {
        let remote = Remote::connect(&sock).await?;
        remote
            .control(Control::Ids)
            .await
            .map_err(|e| AskError::Unusable(e.to_string()))
    };
    match tokio::time::timeout(Duration::from_secs(5), asked).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(AskError::NotRunning | AskError::Gone(_))) => Ok(false),
        Ok(Err(AskError::Unusable(m) | AskError::Refused(m))) => Err(m),
        Err(_) => Err(format!(
            "the process on {} does not answer within 5 s",
            sock.display()
        )),
    }
}

/// Why [`open_waiting`] gives no store.
pub enum NotOpened {
    /// A process running fetches has it (and answers on its control socket).
    Running,
    /// Anything else: the reason is printed; the exit code.
    Exit(i32),
}

/// Opens the store; while it is locked by a process that has no control socket (a query
/// answered from the store takes it for a moment), waits up to [`LOCK_WAIT`].
pub async fn open_waiting(path: &Path) -> Result<RedbStore, NotOpened> {
    let mut waited = Duration::ZERO;
    let mut delay = Duration::from_millis(20);
    let mut told = false;
    loop {
        match open_store(path) {
            Ok(s) => return Ok(s),
            Err(StoreOpen::Failed(m)) => {
                eprintln!("error: {m}");
                return Err(NotOpened::Exit(exit::ERROR));
            }
            Err(StoreOpen::Locked) => {}
        }
        match runner_answers(path).await {
            Ok(true) => return Err(NotOpened::Running),
            Ok(false) => {}
            Err(m) => {
                eprintln!(
                    "error: the store {} is locked, and its control socket cannot be used: {m}",
                    path.display()
                );
                return Err(NotOpened::Exit(exit::ERROR));
            }
        }
        if waited >= LOCK_WAIT {
            eprintln!(
                "error: the store {} has been locked for more than {} s by another process, and \
                 no bgfetch process answers on its control socket {} (one still starting up \
                 answers soon: try again; otherwise another program holds the file)",
                path.display(),
                LOCK_WAIT.as_secs(),
                paths::socket_path(path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            return Err(NotOpened::Exit(exit::ERROR));
        }
        if !told {
            eprintln!(
                "waiting for the store {}: another process is using it",
                path.display()
            );
            told = true;
        }
        tokio::time::sleep(delay).await;
        waited += delay;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Opens the store, starts the engine (restored fetches idle until resumed) and serves the
/// control socket, for a process that runs fetches.
pub async fn start_running(
    path: &Path,
    reporter: Arc<Reporter>,
    handler: Arc<dyn EventHandler>,
    net: NetSetup,
) -> Result<(Arc<App>, Option<ServerGuard>), i32> {
    let store = match open_waiting(path).await {
        Ok(s) => s,
        Err(NotOpened::Running) => {
            eprintln!(
                "error: cannot use the store {}: another bgfetch process is running fetches on it (use `bgfetch ids`, `get`, `abort`, `match`, or wait for it)",
                path.display()
            );
            return Err(exit::ERROR);
        }
        Err(NotOpened::Exit(code)) => return Err(code),
    };
    let app = match App::start(store, reporter, handler, false, net).await {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            return Err(exit::ERROR);
        }
    };
    let served = paths::socket_path(path)
        .map_err(|e| e.to_string())
        .and_then(|sock| server::serve(app.clone(), &sock, Limits::from_env()));
    let server = match served {
        Ok(s) => Some(s),
        Err(e) => {
            app.reporter.error(&format!(
                "warning: no control socket ({e}): `bgfetch ids`, `get`, `abort` and `match` cannot reach this process while it runs"
            ));
            None
        }
    };
    Ok((app, server))
}

/// The exit code for a settled fetch, its failure explained on stderr.
pub fn outcome(app: &App, id: &str, s: &Settled) -> i32 {
    if let Some(e) = &s.handler_error {
        app.reporter.error(&format!(
            "error: {id}: {e}\n  every byte is kept in the store: fix that, then `bgfetch run` delivers it"
        ));
        return exit::ERROR;
    }
    match s.kind {
        FunctionalEventKind::Success => exit::SUCCESS,
        _ => {
            // On stderr in every display (with --json, stdout has the `record` events).
            let mut text = format!("{id} failed: {}", s.failure_reason);
            for r in &s.failed_records {
                text.push_str(&format!("\n  {r}"));
            }
            app.reporter.error(&text);
            exit::FAILED
        }
    }
}
