//! A query's side of the control socket: a connection of the engine's protocol whose transport
//! is the socket (see [`wire`]), and bgfetch's extension queries beside it.

use crate::app::TokioSpawn;
use crate::control::wire::{self, Control, ControlAnswer, FromRunner, ToRunner};
use crate::paths;
use background_fetch::DomError;
use background_fetch::PolicyContainer;
use background_fetch::service::Connection;
use background_fetch::service::client::{ServiceSink, WeakConnection};
use background_fetch::service::protocol::{
    CallId, EnvironmentData, EnvironmentKindData, ToScript, ToService,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Why a query could not be forwarded.
#[derive(Debug)]
pub enum AskError {
    /// No process listens: open the store directly.
    NotRunning,
    /// The process closed the connection before it said welcome (it may have exited): the
    /// store can answer instead.
    Gone(String),
    /// The process refused this bgfetch (another build, speaking another protocol version).
    Refused(String),
    /// Something is there but cannot be used (what, in words).
    Unusable(String),
}

/// How a control connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Closed or reset: the process went away (its fetches ended and it exited, for example).
    Gone(String),
    /// The process dropped the connection, and said why.
    Refused(String),
    /// The process sent what this bgfetch cannot read.
    Bad(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Gone(m) | Ended::Bad(m) => f.write_str(m),
            Ended::Refused(m) => write!(f, "the process running fetches refused the query: {m}"),
        }
    }
}

/// The window environment a query's connection has: no document of its own (`about:blank`);
/// a query names a registration and absolute URLs.
pub fn query_environment() -> EnvironmentData {
    EnvironmentData {
        kind: EnvironmentKindData::Window,
        base_url: url::Url::parse("about:blank").expect("a URL"),
        secure_context: true,
        policy: PolicyContainer::default(),
        embedder: None,
    }
}

/// What both halves of a control connection share.
struct Link {
    out: mpsc::UnboundedSender<ToRunner>,
    conn: Mutex<Option<WeakConnection>>,
    /// The engine's calls sent and not answered.
    calls: Mutex<HashSet<CallId>>,
    controls: Mutex<HashMap<u64, oneshot::Sender<ControlAnswer>>>,
    next_control: AtomicU64,
    welcome: Mutex<Option<oneshot::Sender<Result<u32, DomError>>>>,
    ended: Mutex<Option<Ended>>,
}

impl Link {
    /// The connection ended: every call waiting for an answer fails with the reason.
    fn end(&self, why: Ended) {
        self.ended.lock().unwrap().get_or_insert(why.clone());
        let calls: Vec<CallId> = self.calls.lock().unwrap().drain().collect();
        self.controls.lock().unwrap().clear();
        self.welcome.lock().unwrap().take();
        let conn = self.conn.lock().unwrap().clone();
        if let Some(conn) = conn.as_ref().and_then(Connection::upgrade) {
            for call in calls {
                conn.receive(ToScript::Reply {
                    call,
                    result: Err(DomError::invalid_state(why.to_string())),
                });
            }
        }
    }

    fn receive(&self, frame: FromRunner) {
        match frame {
            FromRunner::Script(m) => {
                match &m {
                    ToScript::Welcome(w) => {
                        if let Some(tx) = self.welcome.lock().unwrap().take() {
                            let _ = tx.send(w.clone());
                        }
                    }
                    ToScript::Reply { call, .. } => {
                        self.calls.lock().unwrap().remove(call);
                    }
                    _ => {}
                }
                let conn = self.conn.lock().unwrap().clone();
                if let Some(conn) = conn.as_ref().and_then(Connection::upgrade) {
                    conn.receive(m);
                }
            }
            FromRunner::Control { call, answer } => {
                if let Some(tx) = self.controls.lock().unwrap().remove(&call) {
                    let _ = tx.send(answer);
                }
            }
            FromRunner::Refused(why) => self.end(Ended::Refused(why)),
        }
    }
}

/// The connection's sending end, for the engine's protocol.
struct Sink(Arc<Link>);

impl ServiceSink for Sink {
    fn send(&self, message: ToService) {
        if let ToService::Call { call, .. } = &message {
            self.0.calls.lock().unwrap().insert(*call);
            // A call after the end is answered with it too (not from within this send).
            let ended = self.0.ended.lock().unwrap().clone();
            if let Some(why) = ended {
                let link = self.0.clone();
                tokio::spawn(async move { link.end(why) });
            }
        }
        let _ = self.0.out.send(ToRunner::Script(Box::new(message)));
    }
}

/// A control connection to the process running fetches: [`Remote::connection`] is a client of
/// its engine's service, [`Remote::control`] asks bgfetch's extension queries.
pub struct Remote {
    conn: Connection,
    link: Arc<Link>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Remote {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Remote {
    /// Connects to the process listening on `path`, if it runs as this user, and says hello.
    pub async fn connect(path: &Path) -> Result<Remote, AskError> {
        let stream =
            match tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(path)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    return Err(AskError::NotRunning);
                }
                Ok(Err(e)) => {
                    return Err(AskError::Unusable(format!(
                        "cannot connect to {}: {e}",
                        path.display()
                    )));
                }
                Err(_) => {
                    return Err(AskError::Unusable(format!(
                        "{} does not accept connections (its process is stuck or overloaded)",
                        path.display()
                    )));
                }
            };
        match stream.peer_cred() {
            Ok(c) if c.uid() == paths::uid() => {}
            Ok(c) => {
                return Err(AskError::Unusable(format!(
                    "{} is served by another user (uid {}): not trusted",
                    path.display(),
                    c.uid()
                )));
            }
            Err(e) => {
                return Err(AskError::Unusable(format!(
                    "cannot tell who serves {}: {e}",
                    path.display()
                )));
            }
        }
        let (r, w) = stream.into_split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<ToRunner>();
        let (welcome_tx, welcome) = oneshot::channel();
        let link = Arc::new(Link {
            out,
            conn: Mutex::new(None),
            calls: Mutex::new(HashSet::new()),
            controls: Mutex::new(HashMap::new()),
            next_control: AtomicU64::new(1),
            welcome: Mutex::new(Some(welcome_tx)),
            ended: Mutex::new(None),
        });
        let writing = link.clone();
        let writer = tokio::spawn(async move {
            let mut frames = FramedWrite::new(w, wire::codec());
            while let Some(m) = outgoing.recv().await {
                if let Err(e) = frames.send(wire::encode(&m)).await {
                    writing.end(Ended::Gone(format!(
                        "the process running fetches went away: {e}"
                    )));
                    return;
                }
            }
        });
        let reading = link.clone();
        let reader = tokio::spawn(async move {
            use std::io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
            };
            let mut frames = FramedRead::new(r, wire::codec());
            loop {
                let why = match frames.next().await {
                    None => Ended::Gone(
                        "the process running fetches closed the connection (it may have exited)"
                            .into(),
                    ),
                    Some(Err(e))
                        if matches!(
                            e.kind(),
                            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                        ) =>
                    {
                        Ended::Gone(format!("the process running fetches went away: {e}"))
                    }
                    Some(Err(e)) => Ended::Bad(format!(
                        "the process running fetches sent {}",
                        wire::frame_error(&e)
                    )),
                    Some(Ok(bytes)) => match wire::decode::<FromRunner>(&bytes) {
                        Ok(frame) => {
                            reading.receive(frame);
                            if reading.ended.lock().unwrap().is_some() {
                                return;
                            }
                            continue;
                        }
                        Err(e) => Ended::Bad(format!("the process running fetches sent {e}")),
                    },
                };
                reading.end(why);
                return;
            }
        });
        let conn = Connection::new(
            Arc::new(Sink(link.clone())),
            query_environment(),
            Arc::new(TokioSpawn(tokio::runtime::Handle::current())),
        );
        *link.conn.lock().unwrap() = Some(conn.downgrade());
        let remote = Remote {
            conn,
            link,
            tasks: [writer, reader],
        };
        remote.conn.hello();
        match tokio::time::timeout(Duration::from_secs(5), welcome).await {
            Ok(Ok(Ok(_))) => Ok(remote),
            Ok(Ok(Err(refused))) => Err(AskError::Refused(refused.to_string())),
            Ok(Err(_)) => Err(match remote.ended() {
                Some(Ended::Gone(m)) => AskError::Gone(m),
                None => AskError::Gone("the connection ended".into()),
                Some(other) => AskError::Unusable(other.to_string()),
            }),
            Err(_) => Err(AskError::Unusable(format!(
                "{} does not answer (its process is stuck or overloaded)",
                path.display()
            ))),
        }
    }

    /// The engine's service, as a window of no document of its own.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// How the connection ended, if it did.
    pub fn ended(&self) -> Option<Ended> {
        self.link.ended.lock().unwrap().clone()
    }

    /// Asks an extension query.
    pub async fn control(&self, query: Control) -> Result<ControlAnswer, Ended> {
        let call = self.link.next_control.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.link.controls.lock().unwrap().insert(call, tx);
        if let Some(ended) = self.ended() {
            return Err(ended);
        }
        let _ = self.link.out.send(ToRunner::Control { call, query });
        rx.await.map_err(|_| {
            self.ended()
                .unwrap_or_else(|| Ended::Gone("the connection ended".into()))
        })
    }
}

/// Why a body could not be received whole.
#[derive(Debug)]
pub enum BodyError {
    /// The record's body failed (aborted, failed...) after `bytes` bytes.
    Failed {
        /// Bytes received.
        bytes: u64,
        /// Why.
        message: String,
    },
    /// The connection ended after `bytes` bytes, before the end of the body.
    Truncated {
        /// Bytes received.
        bytes: u64,
    },
    /// Writing it failed.
    Io(String),
}

/// Writes `body` (a response body read through the engine's protocol) to stdout, or to `file`
/// through a temporary file beside it that is renamed into place only when the whole body has
/// arrived. `gone` says whether an error of the body is the connection's end (a truncated body)
/// rather than the body's own failure.
pub async fn receive_body(
    mut body: BoxStream<'static, Result<Bytes, DomError>>,
    file: Option<&Path>,
    gone: impl Fn() -> bool,
) -> Result<u64, BodyError> {
    let mut sink: Box<dyn Write + Send> = Box::new(std::io::BufWriter::with_capacity(
        256 * 1024,
        std::io::stdout(),
    ));
    let mut tmp = None;
    if let Some(p) = file {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => std::path::PathBuf::from("."),
        };
        let t = tempfile::Builder::new()
            .prefix(".bgfetch-match-")
            .suffix(crate::names::TEMPORARY_SUFFIX)
            .tempfile_in(&dir)
            .map_err(|e| BodyError::Io(format!("{}: {e}", dir.display())))?;
        sink = Box::new(
            t.as_file()
                .try_clone()
                .map_err(|e| BodyError::Io(e.to_string()))?,
        );
        tmp = Some(t);
    }
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(d) => {
                received += d.len() as u64;
                sink.write_all(&d)
                    .map_err(|e| BodyError::Io(e.to_string()))?;
            }
            Err(_) if gone() => return Err(BodyError::Truncated { bytes: received }),
            Err(e) => {
                return Err(BodyError::Failed {
                    bytes: received,
                    message: e.to_string(),
                });
            }
        }
    }
    sink.flush().map_err(|e| BodyError::Io(e.to_string()))?;
    drop(sink);
    if let (Some(t), Some(p)) = (tmp, file) {
        t.as_file()
            .sync_all()
            .map_err(|e| BodyError::Io(e.to_string()))?;
        t.persist(p)
            .map_err(|e| BodyError::Io(format!("{}: {}", p.display(), e.error)))?;
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(d).and_then(|f| f.sync_all());
        }
    }
    Ok(received)
}
