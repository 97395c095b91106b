//! One listener for SIGINT, SIGTERM and SIGHUP for the whole run, so that a signal is seen
//! whatever the program is waiting for.

use crate::exit;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A signal that asks the program to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (the terminal went away).
    HangUp,
}

impl Stop {
    /// How the program says it.
    pub fn describe(self) -> &'static str {
        match self {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated",
            Stop::HangUp => "hung up",
        }
    }

    /// The exit code: 128 + the signal's number, as shells report it.
    pub fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupt => exit::INTERRUPTED,
            Stop::Terminate => exit::TERMINATED,
            Stop::HangUp => exit::HANGUP,
        }
    }
}

/// The stop signals, listened to from [`Signals::install`] on.
#[derive(Clone)]
pub struct Signals(watch::Receiver<Option<Stop>>);

impl Signals {
    /// Starts listening (on the current tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let stop = tokio::select! {
                _ = int.recv() => Stop::Interrupt,
                _ = term.recv() => Stop::Terminate,
                _ = hup.recv() => Stop::HangUp,
            };
            let _ = tx.send(Some(stop));
            // Keep the handlers installed (a second signal does not kill the process while it
            // pauses its fetches and closes the store).
            std::future::pending::<()>().await;
        });
        Ok(Signals(rx))
    }

    /// Completes when a stop signal has arrived (at once if one already has).
    pub async fn stopped(&self) -> Stop {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(s) => s.expect("checked"),
            Err(_) => std::future::pending().await,
        }
    }
}
