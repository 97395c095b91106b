//! The process running fetches answers queries on its control socket: each connection is one
//! more connection of the engine's service, with bgfetch's extension queries beside it (see
//! [`wire`]).

use crate::app::App;
use crate::control::wire::{self, Control, ControlAnswer, FromRunner, LsRow, ToRunner};
use crate::data::FetchData;
use crate::paths;
use background_fetch::service::ConnectionId;
use background_fetch::service::protocol::{Call, ToScript, ToService};
use background_fetch::service::server::ScriptSink;
use background_fetch::{DomError, FetchInfo, OperationError};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite};

/// What the server allows a client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time a client has to ask something while nothing it asked is waiting for an answer
    /// (its first message, or its next call).
    pub read_timeout: Duration,
    /// Time a client has to take each frame of an answer (a client that stops reading is
    /// dropped, so it cannot keep the process alive).
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The defaults, with both timeouts replaced by `$BGFETCH_CONTROL_TIMEOUT_MS` when it is
    /// set (for tests).
    pub fn from_env() -> Limits {
        let mut l = Limits::default();
        if let Some(ms) = std::env::var("BGFETCH_CONTROL_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            l.read_timeout = Duration::from_millis(ms);
            l.write_timeout = Duration::from_millis(ms);
        }
        l
    }
}

/// The state `ls` shows: `succeeded`, `failed`, `aborted` (settled), `paused`, `waiting`
/// (for permission), `offline`, `running`, or `stopped` (no process downloads it: `bgfetch run`
/// continues it).
fn state(f: &FetchInfo, downloading: bool) -> &'static str {
    use background_fetch::{BackgroundFetchFailureReason as R, BackgroundFetchResult as B};
    match (f.ui.result, f.ui.failure_reason) {
        (B::Success, _) => "succeeded",
        (B::Failure, R::Aborted) => "aborted",
        (B::Failure, _) => "failed",
        _ if f.ui.paused => "paused",
        _ if f.ui.awaiting_permission => "waiting",
        _ if !downloading => "stopped",
        _ if !f.ui.online => "offline",
        _ => "running",
    }
}

/// Every fetch in the store, as `ls` shows them.
pub fn ls_rows(app: &App, downloading: bool) -> Vec<LsRow> {
    let mut fetches = app.engine.fetches();
    fetches.sort_by_key(|f| f.uid.0);
    fetches
        .iter()
        .map(|f| {
            let (done, records) = app.records.done(f.uid).unwrap_or((0, 0));
            LsRow {
                id: f.id.clone(),
                title: f.ui.title.clone(),
                origin: f.ui.origin.clone(),
                state: state(f, downloading).to_owned(),
                downloaded: f.ui.downloaded,
                download_total: f.ui.download_total,
                rate: if downloading {
                    app.reporter.rate(f.uid)
                } else {
                    0
                },
                records_done: done as u64,
                records: records as u64,
                failure_reason: f.ui.failure_reason.as_str().to_owned(),
                limit_rate: FetchData::parse(f.embedder_data.as_deref()).limit_rate,
            }
        })
        .collect()
}

/// Answers an extension query from `app`. `downloading` says whether this process downloads
/// the fetches (`ls` shows the others as stopped).
pub async fn control(app: &App, query: Control, downloading: bool) -> ControlAnswer {
    let pause = matches!(query, Control::Pause { .. });
    match query {
        Control::Ids => ControlAnswer::Ids(
            app.engine
                .fetches()
                .into_iter()
                .filter(|f| f.active)
                .map(|f| f.id)
                .collect(),
        ),
        Control::Ls => ControlAnswer::Ls(ls_rows(app, downloading)),
        Control::Find { id } => ControlAnswer::Found(app.find(&id).map(|f| f.registration)),
        Control::Pause { id } | Control::Resume { id } => {
            let Some(f) = app.find(&id) else {
                return ControlAnswer::NotFound(format!(
                    "no active background fetch with id {id:?}"
                ));
            };
            if pause && !f.ui.can_pause {
                return ControlAnswer::Error(format!(
                    "{id} cannot be paused: only a fetch whose requests are all GET can \
                     (an upload cannot be resumed)"
                ));
            }
            let done = if pause {
                app.engine.pause(f.uid).await
            } else {
                app.engine.resume(f.uid).await
            };
            match done {
                Ok(()) => ControlAnswer::Changed(true),
                // Paused already, not paused, or settled meanwhile: nothing changed.
                Err(
                    OperationError::AlreadyPaused
                    | OperationError::NotPaused
                    | OperationError::Settled
                    | OperationError::UnknownFetch
                    | OperationError::NotAwaitingPermission,
                ) => ControlAnswer::Changed(false),
                Err(e @ (OperationError::NotOffered | OperationError::NotDurable(_))) => {
                    ControlAnswer::Error(format!("{id}: {e}"))
                }
            }
        }
    }
}

/// Removes the socket file when the server goes.
pub struct ServerGuard {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves queries on `path` (in a private directory, the socket itself 0600) for as long as the
/// guard lives, to processes of this user only.
pub fn serve(app: Arc<App>, path: &Path, limits: Limits) -> Result<ServerGuard, String> {
    let dir = path.parent().expect("a socket path has a directory");
    paths::ensure_private_dir(dir)?;
    // We hold the store, so a socket file left here belongs to a process that is gone.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let listener = Arc::new(listener);
    let me = paths::uid();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let task = tokio::spawn(accept_loop(
        move || {
            let listener = listener.clone();
            async move { listener.accept().await.map(|(conn, _)| conn) }
        },
        move |conn: UnixStream| {
            if !conn.peer_cred().is_ok_and(|c| c.uid() == me) {
                return;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                refuse_busy(&conn, limits.max_connections);
                return;
            };
            let app = app.clone();
            tokio::spawn(async move {
                handle(app, conn, limits).await;
                drop(permit);
            });
        },
    ));
    Ok(ServerGuard {
        path: path.to_owned(),
        task,
    })
}

/// How long to wait before accepting again after `failures` failed accepts in a row (out of
/// file descriptors, for example): 10 ms doubling to 1 s, never a busy loop.
pub fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1))
}

/// Accepts connections for ever, handing each to `serve`; a failed accept waits
/// [`accept_backoff`] before the next.
pub async fn accept_loop<C, A, F>(mut accept: A, mut serve: impl FnMut(C))
where
    A: FnMut() -> F,
    F: std::future::Future<Output = std::io::Result<C>>,
{
    let mut failures = 0;
    loop {
        match accept().await {
            Ok(conn) => {
                failures = 0;
                serve(conn);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a control connection");
                tokio::time::sleep(accept_backoff(failures)).await;
                failures += 1;
            }
        }
    }
}

/// Tells a client over the limit why it is closed, if that can be written without waiting.
fn refuse_busy(conn: &UnixStream, max: usize) {
    use tokio_util::codec::Encoder;
    let message = format!("busy: {max} control connections are open already");
    let mut buf = bytes::BytesMut::new();
    if wire::codec()
        .encode(wire::encode(&FromRunner::Refused(message)), &mut buf)
        .is_ok()
    {
        let _ = conn.try_write(&buf);
    }
}

/// The service's end of a control connection: the engine's messages go to the socket's writer.
struct ToSocket {
    out: mpsc::UnboundedSender<FromRunner>,
    outstanding: Arc<watch::Sender<u64>>,
}

impl ScriptSink for ToSocket {
    fn send(&self, message: ToScript) {
        if matches!(message, ToScript::Reply { .. }) {
            self.outstanding.send_modify(|n| *n = n.saturating_sub(1));
        }
        let _ = self.out.send(FromRunner::Script(message));
    }
}

/// Writes the connection's frames, each taken within `limit` (a client that stops reading is
/// dropped); ends after a refusal, or when a write fails.
async fn write_frames(
    w: tokio::net::unix::OwnedWriteHalf,
    mut messages: mpsc::UnboundedReceiver<FromRunner>,
    limit: Duration,
) {
    let mut out = FramedWrite::new(w, wire::codec());
    while let Some(m) = messages.recv().await {
        let last = matches!(m, FromRunner::Refused(_));
        match tokio::time::timeout(limit, out.send(wire::encode(&m))).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        if last {
            let _ = SinkExt::<Bytes>::close(&mut out).await;
            return;
        }
    }
}

/// Serves one control connection: a connection of the engine's service, plus bgfetch's
/// [`Control`] queries (see [`wire`]).
async fn handle(app: Arc<App>, conn: UnixStream, limits: Limits) {
    let (r, w) = conn.into_split();
    let mut frames = FramedRead::new(r, wire::codec());
    let (out, messages) = mpsc::unbounded_channel();
    // Calls and queries not answered yet: while there are none, the client has `read_timeout`
    // to say hello, then `write_timeout` for each next call (an idle client, or one that
    // stopped reading a body, is dropped, and the body with it).
    let outstanding = Arc::new(watch::Sender::new(0u64));
    let mut writer = tokio::spawn(write_frames(w, messages, limits.write_timeout));
    let service = app.service().clone();
    let mut id: Option<ConnectionId> = None;
    let refusal = loop {
        let limit = match id {
            None => limits.read_timeout,
            Some(_) => limits.write_timeout,
        };
        let idle = async {
            let mut n = outstanding.subscribe();
            let _ = n.wait_for(|n| *n == 0).await;
            tokio::time::sleep(limit).await;
        };
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = idle => break Some(format!("nothing asked within {} ms", limit.as_millis())),
            // The client stopped taking what is written to it.
            _ = &mut writer => break None,
        };
        let message = match frame {
            None => break None,
            Some(Err(e)) => break Some(format!("bad frame: {}", wire::frame_error(&e))),
            Some(Ok(bytes)) => match wire::decode::<ToRunner>(&bytes) {
                Ok(m) => m,
                Err(e) => break Some(format!("bad frame: {e}")),
            },
        };
        match message {
            ToRunner::Script(m) => {
                let m = *m;
                let connection = match id {
                    Some(c) => c,
                    None if matches!(m, ToService::Hello { .. }) => {
                        let c = service.connect(Arc::new(ToSocket {
                            out: out.clone(),
                            outstanding: outstanding.clone(),
                        }));
                        id = Some(c);
                        c
                    }
                    None => break Some("the first message must be Hello".to_owned()),
                };
                if let ToService::Call { call, call_data } = &m {
                    // A query reads and aborts; it does not make fetches or act as a service
                    // worker (those are the page's and the worker's, in this process).
                    if matches!(call_data, Call::Fetch { .. } | Call::UpdateUi { .. }) {
                        let _ = out.send(FromRunner::Script(ToScript::Reply {
                            call: *call,
                            result: Err(DomError::not_allowed(
                                "a query on the control socket may not call fetch() or updateUI()",
                            )),
                        }));
                        continue;
                    }
                    outstanding.send_modify(|n| *n += 1);
                }
                service.receive(connection, m);
            }
            ToRunner::Control { call, query } => {
                if id.is_none() {
                    break Some("the first message must be Hello".to_owned());
                }
                outstanding.send_modify(|n| *n += 1);
                let (app, out, outstanding) = (app.clone(), out.clone(), outstanding.clone());
                tokio::spawn(async move {
                    let answer = control(&app, query, true).await;
                    let _ = out.send(FromRunner::Control { call, answer });
                    outstanding.send_modify(|n| *n = n.saturating_sub(1));
                });
            }
        }
    };
    // The service releases what the connection held (its records, the bodies it read).
    if let Some(c) = id {
        service.disconnect(c);
    }
    match refusal {
        Some(why) => {
            tracing::debug!(%why, "dropping a control connection");
            let _ = out.send(FromRunner::Refused(why));
            let _ = tokio::time::timeout(limits.write_timeout, writer).await;
        }
        None => writer.abort(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Issue 17 item 9: a failing `accept` (no file descriptors left) made the loop spin at
    /// 100 % CPU. On virtual time: ten seconds of failures cost a handful of attempts.
    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_backs_off_instead_of_spinning() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(accept_loop(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(std::io::Error::other("EMFILE")) }
            },
            |()| {},
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((2..=20).contains(&n), "{n} accepts in 10 s");
        task.abort();
        assert_eq!(accept_backoff(0), Duration::from_millis(10));
        assert_eq!(accept_backoff(50), Duration::from_secs(1));
    }
}
