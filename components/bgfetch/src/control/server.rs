//! The process running fetches answers queries on its control socket.

use crate::app::App;
use crate::control::wire::{self, Message, Query};
use crate::data::FetchData;
use crate::paths;
use background_fetch::service::client::{BackgroundFetchRecord, BackgroundFetchRegistration};
use background_fetch::{CacheQueryOptions, FetchInfo, OperationError, RecordResult};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec, LinesCodec};

/// What the server allows a client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time a client has to send its query line.
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

/// An answer before it is sent.
pub enum Reply {
    /// A JSON value to print.
    Json(Value),
    /// A matched record, whose body is sent as it becomes available.
    Record(BackgroundFetchRecord),
    /// Nothing matched (exit 1).
    NotFound(String),
    /// The query failed (exit 1).
    Error(String),
}

fn record_state(result: RecordResult, has_head: bool) -> &'static str {
    match (result, has_head) {
        (RecordResult::Empty, false) => "pending",
        (RecordResult::Empty, true) => "active",
        (r, _) => r.as_str(),
    }
}

/// The registration as `get` prints it.
pub async fn registration_json(reg: &BackgroundFetchRegistration) -> Value {
    let mut records = Vec::new();
    if let Ok(all) = reg.match_all(None, CacheQueryOptions::default()).await {
        for r in all {
            let Ok(state) = r.state().await else {
                continue;
            };
            let head = state.response_head;
            records.push(json!({
                "url": r.request().url.as_str(),
                "method": r.request().method,
                "status": head.as_ref().map(|h| h.status),
                "bytes": state.stored_bytes,
                "state": record_state(state.result, head.is_some()),
            }));
        }
    }
    json!({
        "id": reg.id(),
        "uploadTotal": reg.upload_total(),
        "uploaded": reg.uploaded(),
        "downloadTotal": reg.download_total(),
        "downloaded": reg.downloaded(),
        "result": reg.result().as_str(),
        "failureReason": reg.failure_reason().as_str(),
        "recordsAvailable": reg.records_available(),
        "records": records,
    })
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
pub fn ls_json(app: &App, downloading: bool) -> Value {
    let mut fetches = app.engine.fetches();
    fetches.sort_by_key(|f| f.uid.0);
    let rows: Vec<Value> = fetches
        .iter()
        .map(|f| {
            let (done, records) = app.records.done(f.uid).unwrap_or((0, 0));
            json!({
                "id": f.id,
                "title": f.ui.title,
                "origin": f.ui.origin,
                "state": state(f, downloading),
                "downloaded": f.ui.downloaded,
                "downloadTotal": f.ui.download_total,
                "rate": if downloading { app.reporter.rate(f.uid) } else { 0 },
                "recordsDone": done,
                "records": records,
                "failureReason": f.ui.failure_reason.as_str(),
                "limitRate": FetchData::parse(f.embedder_data.as_deref()).limit_rate,
            })
        })
        .collect();
    Value::Array(rows)
}

/// Answers `query` from `app`'s engine. `downloading` says whether this process downloads the
/// fetches (a record that is not complete then gets its body as it arrives); otherwise such a
/// record is answered at once as incomplete.
pub async fn answer(app: &App, query: Query, downloading: bool) -> Reply {
    let pause = matches!(query, Query::Pause { .. });
    match query {
        Query::Ids => {
            let ids: Vec<String> = app
                .engine
                .fetches()
                .into_iter()
                .filter(|f| f.active)
                .map(|f| f.id)
                .collect();
            Reply::Json(json!(ids))
        }
        Query::Ls => Reply::Json(ls_json(app, downloading)),
        Query::Pause { id } | Query::Resume { id } => {
            let Some(f) = app.find(&id) else {
                return Reply::NotFound(format!("no active background fetch with id {id:?}"));
            };
            if pause && !f.ui.can_pause {
                return Reply::Error(format!(
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
                Ok(()) => Reply::Json(json!(true)),
                // Paused already, not paused, or settled meanwhile: nothing changed.
                Err(
                    OperationError::AlreadyPaused
                    | OperationError::NotPaused
                    | OperationError::Settled
                    | OperationError::UnknownFetch
                    | OperationError::NotAwaitingPermission,
                ) => Reply::Json(json!(false)),
                Err(e @ (OperationError::NotOffered | OperationError::NotDurable(_))) => {
                    Reply::Error(format!("{id}: {e}"))
                }
            }
        }
        Query::Get { id } => match app.registration(&id).await {
            Some(reg) => Reply::Json(registration_json(&reg).await),
            None => Reply::NotFound(format!("no active background fetch with id {id:?}")),
        },
        Query::Abort { id } => match app.registration(&id).await {
            Some(reg) => match reg.abort().await {
                Ok(b) => Reply::Json(json!(b)),
                Err(e) => Reply::Error(e.to_string()),
            },
            None => Reply::Json(json!(false)),
        },
        Query::Match {
            id,
            url,
            ignore_search,
            ignore_method,
            ignore_vary,
        } => {
            let Some(reg) = app.registration(&id).await else {
                return Reply::NotFound(format!("no active background fetch with id {id:?}"));
            };
            let options = CacheQueryOptions {
                ignore_search,
                ignore_method,
                ignore_vary,
            };
            match reg.r#match(url.as_str(), options).await {
                Ok(Some(record)) if !downloading => match record.state().await {
                    Ok(state) if state.result == RecordResult::Empty => Reply::Error(format!(
                        "the record for {url} is incomplete ({} bytes stored) and no bgfetch \
                         process is downloading it: `bgfetch run` continues it",
                        state.stored_bytes
                    )),
                    Ok(_) => Reply::Record(record),
                    Err(e) => Reply::Error(e.to_string()),
                },
                Ok(Some(record)) => Reply::Record(record),
                Ok(None) => Reply::NotFound(format!("no record of {id:?} matches {url}")),
                Err(e) => Reply::Error(e.to_string()),
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(
    out: &mut FramedWrite<W, LengthDelimitedCodec>,
    frame: Bytes,
    limit: Option<Duration>,
) -> std::io::Result<()> {
    match limit {
        Some(d) => tokio::time::timeout(d, out.send(frame))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client stalled"))?,
        None => out.send(frame).await,
    }
}

/// Writes `reply` as the protocol says; each frame must be taken within `limit`.
pub async fn send<W: AsyncWrite + Unpin>(
    reply: Reply,
    out: &mut FramedWrite<W, LengthDelimitedCodec>,
    limit: Option<Duration>,
) -> std::io::Result<()> {
    let msg = match reply {
        Reply::Json(value) => Message::Json { value },
        Reply::NotFound(message) => Message::NotFound { message },
        Reply::Error(message) => Message::Error { message },
        Reply::Record(record) => {
            let url = record.request().url.clone();
            let mut ready = record.response_ready();
            let response = match futures::poll!(&mut ready) {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    let reason = format!(
                        "the record for {url} has no response yet (it waits for its turn or for \
                         the server): waiting for it"
                    );
                    write(out, wire::message(&Message::Waiting { reason }), limit).await?;
                    ready.await
                }
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    let message = format!("the record for {url} has no response: {e}");
                    write(out, wire::message(&Message::Error { message }), limit).await?;
                    return SinkExt::<Bytes>::close(out).await;
                }
            };
            let status = response.status();
            write(out, wire::message(&Message::Body { status }), limit).await?;
            let mut body = response.into_body();
            let mut bytes = 0u64;
            loop {
                match body.next().await {
                    Some(Ok(c)) => {
                        bytes += c.len() as u64;
                        write(out, wire::data(&c), limit).await?;
                    }
                    Some(Err(e)) => {
                        break Message::BodyError {
                            message: e.to_string(),
                        };
                    }
                    None => break Message::End { bytes },
                }
            }
        }
    };
    write(out, wire::message(&msg), limit).await?;
    SinkExt::<Bytes>::close(out).await
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
                let _ = handle(&app, conn, limits).await;
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
        .encode(wire::message(&Message::Error { message }), &mut buf)
        .is_ok()
    {
        let _ = conn.try_write(&buf);
    }
}

async fn handle(app: &App, conn: UnixStream, limits: Limits) -> std::io::Result<()> {
    let (r, w) = conn.into_split();
    let mut lines = FramedRead::new(r, LinesCodec::new_with_max_length(wire::MAX_QUERY_LINE));
    let mut out = FramedWrite::new(w, wire::codec());
    let reply = match tokio::time::timeout(limits.read_timeout, lines.next()).await {
        Ok(Some(Ok(line))) => match serde_json::from_str::<Query>(&line) {
            Ok(q) => answer(app, q, true).await,
            Err(e) => Reply::Error(format!("bad query: {e}")),
        },
        Ok(Some(Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded))) => Reply::Error(
            format!("bad query: longer than {} bytes", wire::MAX_QUERY_LINE),
        ),
        Ok(Some(Err(e))) => Reply::Error(format!("bad query: {e}")),
        Ok(None) => return Ok(()),
        Err(_) => Reply::Error(format!(
            "no query within {} ms",
            limits.read_timeout.as_millis()
        )),
    };
    if !matches!(reply, Reply::Record(_)) {
        return send(reply, &mut out, Some(limits.write_timeout)).await;
    }
    // A client that goes away (closes its side) while a record's body is awaited (a record that
    // has not started, for example) frees its connection at once.
    let gone = async { while let Some(Ok(_)) = lines.next().await {} };
    tokio::select! {
        biased;
        sent = send(reply, &mut out, Some(limits.write_timeout)) => sent,
        () = gone => Ok(()),
    }
}

/// An answer given in this process (no process runs fetches on the store), as frames to read
/// the way a forwarded answer is read.
pub fn local(reply: Reply) -> FramedRead<tokio::io::DuplexStream, LengthDelimitedCodec> {
    let (a, b) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let mut out = FramedWrite::new(a, wire::codec());
        let _ = send(reply, &mut out, None).await;
    });
    FramedRead::new(b, wire::codec())
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
