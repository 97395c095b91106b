//! Queries (`ids`, `get`, `abort`, `match`) and the control socket that forwards them to the
//! process running fetches on a store (redb allows one process per store).
//!
//! Protocol, over a Unix socket beside the store (`<store>.sock`): the client writes one JSON
//! line (a [`Query`]); the server answers one JSON line (an [`Answer`] header), followed for a
//! matched body by the body's bytes until the connection closes.

use crate::app::App;
use background_fetch::{BackgroundFetchRegistration, CacheQueryOptions, RecordResult, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// A query.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Query {
    /// The active ids.
    Ids,
    /// One registration.
    Get {
        /// The id.
        id: String,
    },
    /// `abort()`.
    Abort {
        /// The id.
        id: String,
    },
    /// `match()`.
    Match {
        /// The id.
        id: String,
        /// The URL to match.
        url: String,
        /// `ignoreSearch`
        #[serde(default)]
        ignore_search: bool,
        /// `ignoreMethod`
        #[serde(default)]
        ignore_method: bool,
        /// `ignoreVary`
        #[serde(default)]
        ignore_vary: bool,
    },
}

/// The answer's header line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answer {
    /// `json`, `body`, `notfound` or `error`.
    pub kind: String,
    /// The JSON value (`json`), or the message (`notfound`, `error`).
    #[serde(default)]
    pub value: Value,
}

/// An answer before it is sent.
pub enum Reply {
    /// A JSON value to print.
    Json(Value),
    /// A matched record's response.
    Body(Response),
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
            let head = r.response_head();
            records.push(json!({
                "url": r.request().url.as_str(),
                "method": r.request().method,
                "status": head.as_ref().map(|h| h.status),
                "bytes": r.stored_bytes(),
                "state": record_state(r.result(), head.is_some()),
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

/// Answers `query` from `app`'s engine.
pub async fn answer(app: &App, query: Query) -> Reply {
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
                Ok(Some(record)) => match record.response_ready().await {
                    Ok(response) => Reply::Body(response),
                    Err(e) => Reply::Error(format!("the record for {url} has no response: {e}")),
                },
                Ok(None) => Reply::NotFound(format!("no record of {id:?} matches {url}")),
                Err(e) => Reply::Error(e.to_string()),
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

/// Serves queries on `path` for as long as the guard lives.
pub fn serve(app: Arc<App>, path: &Path) -> Option<ServerGuard> {
    // We hold the store, so a socket file left here belongs to a process that is gone.
    let _ = std::fs::remove_file(path);
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no control socket: other processes cannot reach this one");
            return None;
        }
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            tokio::spawn(async move {
                let _ = handle(app, conn).await;
            });
        }
    });
    Some(ServerGuard {
        path: path.to_owned(),
        task,
    })
}

async fn handle(app: Arc<App>, conn: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Query>(&line) {
        Ok(q) => answer(&app, q).await,
        Err(e) => Reply::Error(format!("bad query: {e}")),
    };
    send(reply, &mut w).await
}

/// Writes `reply` as the protocol says.
async fn send(reply: Reply, w: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
    let (header, body) = match reply {
        Reply::Json(v) => (
            Answer {
                kind: "json".into(),
                value: v,
            },
            None,
        ),
        Reply::Body(r) => (
            Answer {
                kind: "body".into(),
                value: json!(r.status()),
            },
            Some(r),
        ),
        Reply::NotFound(m) => (
            Answer {
                kind: "notfound".into(),
                value: json!(m),
            },
            None,
        ),
        Reply::Error(m) => (
            Answer {
                kind: "error".into(),
                value: json!(m),
            },
            None,
        ),
    };
    let mut text = serde_json::to_string(&header).expect("serialisable");
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    if let Some(r) = body {
        let mut body = r.into_body();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => w.write_all(&c).await?,
                Err(_) => return Ok(()), // closing early tells the client the body failed
            }
        }
    }
    w.shutdown().await
}

/// Why a query could not be forwarded.
pub enum AskError {
    /// No process listens: open the store directly.
    NotRunning,
    /// A process holds the socket but does not answer.
    Unresponsive(String),
}

/// Sends `query` to the process listening on `path`; returns the header and the connection
/// (positioned at the body).
pub async fn ask(path: &Path, query: &Query) -> Result<(Answer, impl AsyncRead + Unpin), AskError> {
    let conn = match tokio::time::timeout(Duration::from_secs(3), UnixStream::connect(path)).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) => return Err(AskError::NotRunning),
        Err(_) => {
            return Err(AskError::Unresponsive(format!(
                "{} did not accept a connection within 3 s",
                path.display()
            )));
        }
    };
    let (r, mut w) = conn.into_split();
    let mut line = serde_json::to_string(query).expect("serialisable");
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| AskError::Unresponsive(e.to_string()))?;
    let mut reader = BufReader::new(r);
    let mut header = String::new();
    match tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut header)).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => {
            return Err(AskError::Unresponsive(format!(
                "{} closed without answering",
                path.display()
            )));
        }
        Err(_) => {
            return Err(AskError::Unresponsive(format!(
                "{} did not answer within 30 s",
                path.display()
            )));
        }
    }
    let answer: Answer = serde_json::from_str(&header)
        .map_err(|e| AskError::Unresponsive(format!("bad answer: {e}")))?;
    Ok((answer, reader))
}

/// Copies the rest of `from` to stdout or `file`.
pub async fn copy_body(
    mut from: impl AsyncRead + Unpin,
    file: Option<&Path>,
) -> std::io::Result<u64> {
    match file {
        Some(p) => {
            let mut f = tokio::fs::File::create(p).await?;
            let n = tokio::io::copy(&mut from, &mut f).await?;
            f.sync_all().await?;
            Ok(n)
        }
        None => {
            let mut out = tokio::io::stdout();
            let n = tokio::io::copy(&mut from, &mut out).await?;
            out.flush().await?;
            Ok(n)
        }
    }
}

/// Writes a local reply (no forwarding) the way the client would print a forwarded one.
pub async fn local(reply: Reply) -> (Answer, Box<dyn AsyncRead + Unpin + Send>) {
    let (mut a, b) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let _ = send(reply, &mut a).await;
    });
    let mut reader = BufReader::new(b);
    let mut header = String::new();
    let _ = reader.read_line(&mut header).await;
    let answer = serde_json::from_str(&header).unwrap_or(Answer {
        kind: "error".into(),
        value: json!("internal error"),
    });
    (answer, Box::new(reader))
}
