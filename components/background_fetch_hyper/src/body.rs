//! The request body handed to hyper: streamed from the store (or replayed from memory), with
//! the transmitted byte count published for `UploadProgress`.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::watch;

/// A copy of the request body kept while sending it, up to a limit.
pub(crate) struct Keep {
    pub chunks: Vec<Bytes>,
    pub len: usize,
    pub limit: usize,
    pub overflow: bool,
    pub complete: bool,
}

/// A store error while reading the request body.
#[derive(Debug)]
pub(crate) struct BodyReadError(String);
impl std::fmt::Display for BodyReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body could not be read: {}", self.0)
    }
}
impl StdError for BodyReadError {}

/// The request body handed to hyper: streamed from the store (or replayed from memory), with
/// the transmitted byte count published for `UploadProgress`.
pub(crate) struct ReqBody {
    pub source: Option<BoxStream<'static, Result<Bytes, background_fetch::store::StoreError>>>,
    pub replay: VecDeque<Bytes>,
    pub remaining: u64,
    pub pending: u64,
    pub sent: u64,
    pub progress: Option<watch::Sender<u64>>,
    pub keep: Option<Arc<Mutex<Keep>>>,
}

impl ReqBody {
    pub fn empty() -> Self {
        ReqBody {
            source: None,
            replay: VecDeque::new(),
            remaining: 0,
            pending: 0,
            sent: 0,
            progress: None,
            keep: None,
        }
    }

    fn report_pending(&mut self) {
        if self.pending > 0 {
            self.sent += self.pending;
            self.pending = 0;
            if let Some(p) = &self.progress {
                p.send_replace(self.sent);
            }
        }
    }

    fn yielded(&mut self, b: &Bytes) {
        let n = b.len() as u64;
        self.remaining = self.remaining.saturating_sub(n);
        self.pending = n;
        if let Some(k) = &self.keep {
            let mut k = k.lock().unwrap_or_else(|e| e.into_inner());
            if !k.overflow {
                if k.len + b.len() > k.limit {
                    k.overflow = true;
                    k.chunks.clear();
                } else {
                    k.len += b.len();
                    k.chunks.push(b.clone());
                }
            }
            if self.remaining == 0 {
                k.complete = true;
            }
        }
        if self.remaining == 0 {
            // No further poll may come: the last chunk counts as transmitted now.
            self.report_pending();
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        // hyper asks for more: the previous chunk went to the connection.
        this.report_pending();
        if let Some(b) = this.replay.pop_front() {
            this.yielded(&b);
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let Some(source) = this.source.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            return match source.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(b))) if b.is_empty() => continue,
                Poll::Ready(Some(Ok(b))) => {
                    this.yielded(&b);
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(Some(Err(e))) => {
                    this.source = None;
                    Poll::Ready(Some(Err(Box::new(BodyReadError(e.to_string())))))
                }
                Poll::Ready(None) => {
                    this.source = None;
                    if this.remaining > 0 {
                        return Poll::Ready(Some(Err(Box::new(BodyReadError(
                            "the stored body is shorter than its length".into(),
                        )))));
                    }
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.replay.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(
            self.remaining + self.replay.iter().map(|b| b.len() as u64).sum::<u64>(),
        )
    }
}
