//! A query's side of the control socket.

use crate::control::wire::{self, Frame, Message, Query};
use crate::paths;
use futures::StreamExt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// Why a query could not be forwarded.
#[derive(Debug)]
pub enum AskError {
    /// No process listens: open the store directly.
    NotRunning,
    /// Something is there but cannot be used (what, in words).
    Unusable(String),
}

/// An answer being read.
pub type Frames<R> = FramedRead<R, LengthDelimitedCodec>;

/// A query sent: its answer is read from `frames`. The connection stays open both ways until
/// this is dropped (the server takes a closed connection for a client that went away).
pub struct Asked {
    /// The answer.
    pub frames: Frames<tokio::net::unix::OwnedReadHalf>,
    _write: tokio::net::unix::OwnedWriteHalf,
}

/// Sends `query` to the process listening on `path`, if it runs as this user.
pub async fn ask(path: &Path, query: &Query) -> Result<Asked, AskError> {
    let conn = match tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(path)).await {
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
    match conn.peer_cred() {
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
    let (r, mut w) = conn.into_split();
    let mut line = serde_json::to_string(query).expect("serialisable");
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| AskError::Unusable(format!("{}: {e}", path.display())))?;
    Ok(Asked {
        frames: FramedRead::new(r, wire::codec()),
        _write: w,
    })
}

/// The next frame, or an error in words (`None`: the connection ended).
pub async fn next<R: AsyncRead + Unpin>(frames: &mut Frames<R>) -> Result<Option<Frame>, String> {
    match frames.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(f)) => wire::decode(f).map(Some),
    }
}

/// Why no answer came.
#[derive(Debug)]
pub enum AnswerError {
    /// The connection ended (closed or reset) before an answer: the process went away, for
    /// example because its fetches ended and it exited. The store can answer instead.
    Gone(String),
    /// Anything else (in words).
    Bad(String),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Gone(m) | AnswerError::Bad(m) => f.write_str(m),
        }
    }
}

/// The answer's first message other than `waiting` (each reason is passed to `waiting`).
pub async fn answer<R: AsyncRead + Unpin>(
    frames: &mut Frames<R>,
    mut waiting: impl FnMut(&str),
) -> Result<Message, AnswerError> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    loop {
        let frame = match frames.next().await {
            None => {
                return Err(AnswerError::Gone(
                    "the process running fetches closed the connection without an answer (it may have exited)".into(),
                ));
            }
            Some(Err(e))
                if matches!(
                    e.kind(),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                ) =>
            {
                return Err(AnswerError::Gone(format!(
                    "the process running fetches went away before answering: {e}"
                )));
            }
            Some(Err(e)) => return Err(AnswerError::Bad(e.to_string())),
            Some(Ok(f)) => wire::decode(f).map_err(AnswerError::Bad)?,
        };
        match frame {
            Frame::Message(Message::Waiting { reason }) => waiting(&reason),
            Frame::Message(m) => return Ok(m),
            Frame::Data(_) => return Err(AnswerError::Bad("body bytes before an answer".into())),
        }
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

/// Writes the body that follows a `body` message to stdout, or to `file` through a temporary
/// file beside it that is renamed into place only when the whole body has arrived.
pub async fn receive_body<R: AsyncRead + Unpin>(
    frames: &mut Frames<R>,
    file: Option<&Path>,
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
    loop {
        let frame = next(frames)
            .await
            .map_err(|_| BodyError::Truncated { bytes: received })?;
        match frame {
            Some(Frame::Data(d)) => {
                received += d.len() as u64;
                sink.write_all(&d)
                    .map_err(|e| BodyError::Io(e.to_string()))?;
            }
            Some(Frame::Message(Message::End { bytes })) if bytes == received => break,
            Some(Frame::Message(Message::BodyError { message })) => {
                return Err(BodyError::Failed {
                    bytes: received,
                    message,
                });
            }
            _ => return Err(BodyError::Truncated { bytes: received }),
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
