//! A scripted [`NetworkHost`]: resources served from memory, with Range support, chunking,
//! virtual-time delays and faults injected per attempt.

use super::clock::VirtualClock;
use crate::fetch::policy::BlockReason;
use crate::fetch::{HeaderList, ResponseHead, ResponseType};
use crate::hosts::{
    Clock, NetworkError, NetworkErrorKind, NetworkEvent, NetworkHost, NetworkRequest,
};
use crate::sync::Watch;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A resource the scripted network serves.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Status for a full response.
    pub status: u16,
    /// Headers (besides `Content-Length` and `Content-Range`, which are computed).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// Bytes per `Data` event.
    pub chunk_size: usize,
    /// Whether a Range request gets a 206 (otherwise it gets the full 200).
    pub range_support: bool,
    /// Virtual time before the head.
    pub head_delay: Duration,
    /// Virtual time before each chunk.
    pub chunk_delay: Duration,
    /// The response type.
    pub response_type: ResponseType,
    /// Answer with the request body (and its `Content-Type`), like WPT's `upload.py`.
    pub echo: bool,
}

impl Resource {
    /// A 200 response with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Resource {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            chunk_size: 16 * 1024,
            range_support: true,
            head_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            response_type: ResponseType::Basic,
            echo: false,
        }
    }

    /// A response with `status` and `body`.
    pub fn status(status: u16, body: impl Into<Bytes>) -> Self {
        Resource {
            status,
            ..Resource::ok(body)
        }
    }

    /// An echo resource (WPT `upload.py`).
    pub fn echo() -> Self {
        Resource {
            echo: true,
            ..Resource::ok(Bytes::new())
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the chunk size.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = n.max(1);
        self
    }

    /// Ignores Range requests (answers 200).
    pub fn no_range(mut self) -> Self {
        self.range_support = false;
        self
    }

    /// Delays the head by `d` of virtual time.
    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }

    /// Delays each chunk by `d` of virtual time.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Sets the response type (for example `Cors`).
    pub fn response_type(mut self, t: ResponseType) -> Self {
        self.response_type = t;
        self
    }
}

/// A fault for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The body stream errors (temporary: a reset) after this many body bytes.
    ResetAfter(u64),
    /// The body stream errors fatally after this many body bytes.
    FatalAfter(u64),
    /// The response is a network error of this kind.
    ErrorBeforeHead(NetworkErrorKind),
    /// The request is blocked (for example a failed CORS check).
    Block(BlockReason),
    /// Answer this status, with an empty body.
    Status(u16),
    /// Hold the response head until [`ScriptedNetwork::release`] is called for the URL.
    Hold,
    /// Use this `ETag` for this attempt.
    ETag(String),
    /// Answer a Range request with the full 200.
    IgnoreRange,
    /// Send a 206 with this `Content-Range` value (and the bytes from the range start).
    ContentRange(String),
    /// Answer a non-range request with a 206 covering this many leading bytes.
    UnsolicitedPartial(u64),
    /// End the body normally after this many bytes (a short 206, or a truncated 200).
    EndAfter(u64),
    /// End the body normally after this many bytes although its `Content-Length` announced
    /// them all: a cut-off body that the host reports as a normal end (Servo's net stack does).
    CutOffAfter(u64),
}

/// A request the network received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The background fetch the attempt was for.
    pub fetch: crate::model::FetchUid,
    /// The caller of `fetch()`, as the engine handed it over.
    pub client: crate::model::ClientSnapshot,
    /// The URL.
    pub url: String,
    /// The method.
    pub method: String,
    /// The range start, when resuming.
    pub range_start: Option<u64>,
    /// The validators sent with it.
    pub etag: Option<String>,
    /// The request headers.
    pub headers: HeaderList,
    /// The uploaded body.
    pub body: Vec<u8>,
}

/// An action run once when the engine has received a resource's body up to an offset; it is
/// given the offset the engine's bytes reach then (the end of the chunk that got there).
type Trigger = (u64, Box<dyn FnOnce(u64) + Send>);

#[derive(Default)]
struct Inner {
    resources: HashMap<String, Resource>,
    faults: HashMap<String, VecDeque<Vec<Fault>>>,
    log: Vec<LoggedRequest>,
    offline: bool,
    in_flight: usize,
    max_in_flight: usize,
    always_ready: bool,
    /// Body bytes handed to the engine, per URL, over every attempt.
    delivered: HashMap<String, u64>,
    triggers: HashMap<String, Vec<Trigger>>,
}

/// A scripted network. Cloning gives another handle to the same network.
#[derive(Clone)]
pub struct ScriptedNetwork {
    inner: Arc<Mutex<Inner>>,
    released: Arc<Watch<HashSet<String>>>,
    clock: VirtualClock,
}

impl ScriptedNetwork {
    /// A network with no resources (every URL answers 404 with an empty body).
    pub fn new(clock: VirtualClock) -> Self {
        ScriptedNetwork {
            inner: Arc::default(),
            released: Arc::new(Watch::new(HashSet::new())),
            clock,
        }
    }

    /// Serves `resource` at `url` (an absolute URL, compared as serialised by `url::Url`).
    pub fn serve(&self, url: &str, resource: Resource) {
        let url = url::Url::parse(url)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| url.to_owned());
        self.inner.lock().unwrap().resources.insert(url, resource);
    }

    /// Queues faults for the next attempt at `url` (call again for later attempts).
    pub fn fault_next(&self, url: &str, faults: Vec<Fault>) {
        let url = url::Url::parse(url)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| url.to_owned());
        self.inner
            .lock()
            .unwrap()
            .faults
            .entry(url)
            .or_default()
            .push_back(faults);
    }

    /// Releases held responses for `url` (and every later hold of it).
    pub fn release(&self, url: &str) {
        let url = url::Url::parse(url)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| url.to_owned());
        self.released.update(|r| {
            r.insert(url);
        });
    }

    /// Makes every new attempt fail as temporarily unavailable (the engine should also be told
    /// with `Engine::set_online`).
    pub fn set_offline(&self, offline: bool) {
        self.inner.lock().unwrap().offline = offline;
    }

    /// Every request received so far.
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.inner.lock().unwrap().log.clone()
    }

    /// Requests received for `url`.
    pub fn requests_for(&self, url: &str) -> Vec<LoggedRequest> {
        let url = url::Url::parse(url)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| url.to_owned());
        self.log().into_iter().filter(|r| r.url == url).collect()
    }

    /// Makes the network *always ready*: every attempt's events are produced before the engine
    /// first polls the stream, so the stream never returns `Pending` (a network faster than
    /// the store: hyper's full channel, `stream::iter`). Resources' delays are skipped; an
    /// attempt that must wait (a hold) produces what it can at once and the rest when it may.
    pub fn set_always_ready(&self, always_ready: bool) {
        self.inner.lock().unwrap().always_ready = always_ready;
    }

    /// Runs `action` once, synchronously, at the moment the engine receives the body chunk of
    /// `url` that reaches `offset` bytes of the resource (counted from the start of the
    /// resource, so a resumed 206 counts from its range start), with the offset that chunk
    /// reaches. With an always-ready network it runs inside the engine's own poll: nothing else
    /// gets a turn in between.
    pub fn when_delivered(
        &self,
        url: &str,
        offset: u64,
        action: impl FnOnce(u64) + Send + 'static,
    ) {
        let url = url::Url::parse(url)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| url.to_owned());
        self.inner
            .lock()
            .unwrap()
            .triggers
            .entry(url)
            .or_default()
            .push((offset, Box::new(action)));
    }

    /// Body bytes of `url` handed to the engine so far, over every attempt.
    pub fn delivered(&self, url: &str) -> u64 {
        let url = url::Url::parse(url)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| url.to_owned());
        self.inner
            .lock()
            .unwrap()
            .delivered
            .get(&url)
            .copied()
            .unwrap_or(0)
    }

    /// Counts a chunk the engine received and runs the triggers it reached.
    fn note_delivered(&self, url: &str, reached: u64, n: u64) {
        let due: Vec<Trigger> = {
            let mut inner = self.inner.lock().unwrap();
            *inner.delivered.entry(url.to_owned()).or_default() += n;
            match inner.triggers.get_mut(url) {
                Some(list) => {
                    let (due, keep) = std::mem::take(list)
                        .into_iter()
                        .partition(|(offset, _)| *offset <= reached);
                    *list = keep;
                    due
                }
                None => Vec::new(),
            }
        };
        for (_, action) in due {
            action(reached);
        }
    }

    /// Attempts running now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().unwrap().in_flight
    }

    /// The most attempts that ran at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    async fn serve_attempt<S: Sink<NetworkEvent> + Unpin>(
        self,
        mut req: NetworkRequest,
        tx: &mut S,
    ) {
        let url = req.request.url.to_string();
        let mut uploaded = Vec::new();
        if let Some(mut body) = req.body.take() {
            while let Some(chunk) = body.stream.next().await {
                match chunk {
                    Ok(c) => {
                        uploaded.extend_from_slice(&c);
                        if tx
                            .send(NetworkEvent::UploadProgress(c.len() as u64))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(NetworkEvent::Error(NetworkError::fatal(format!(
                                "request body: {e}"
                            ))))
                            .await;
                        return;
                    }
                }
            }
        }
        let (resource, faults, offline, always_ready) = {
            let mut inner = self.inner.lock().unwrap();
            inner.log.push(LoggedRequest {
                fetch: req.fetch,
                client: req.client.clone(),
                url: url.clone(),
                method: req.request.method.clone(),
                range_start: req.range_start,
                etag: req.validators.etag.clone(),
                headers: req.request.headers.clone(),
                body: uploaded.clone(),
            });
            let faults = inner
                .faults
                .get_mut(&url)
                .and_then(|q| q.pop_front())
                .unwrap_or_default();
            (
                inner.resources.get(&url).cloned(),
                faults,
                inner.offline,
                inner.always_ready,
            )
        };
        if offline {
            let _ = tx
                .send(NetworkEvent::Error(NetworkError::temporary("offline")))
                .await;
            return;
        }
        for f in &faults {
            match f {
                Fault::ErrorBeforeHead(kind) => {
                    let _ = tx
                        .send(NetworkEvent::Error(NetworkError {
                            kind: *kind,
                            message: "scripted network error".into(),
                            cause: None,
                        }))
                        .await;
                    return;
                }
                Fault::Block(reason) => {
                    let _ = tx
                        .send(NetworkEvent::Error(NetworkError::blocked(
                            *reason,
                            "scripted block",
                        )))
                        .await;
                    return;
                }
                _ => {}
            }
        }
        let resource = resource.unwrap_or_else(|| Resource::status(404, Bytes::new()));
        if !resource.head_delay.is_zero() && !always_ready {
            self.clock.sleep(resource.head_delay).await;
        }
        if faults.contains(&Fault::Hold) {
            let url2 = url.clone();
            self.released.wait_until(move |r| r.contains(&url2)).await;
        }
        let full = if resource.echo {
            Bytes::from(uploaded)
        } else {
            resource.body.clone()
        };
        let len = full.len() as u64;
        let mut headers: HeaderList = resource
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if resource.echo
            && let Some(ct) = req.request.headers.get_combined("content-type")
        {
            headers.set("content-type", ct);
        }
        for f in &faults {
            if let Fault::ETag(e) = f {
                headers.set("etag", e);
            }
        }
        let ignore_range = faults.contains(&Fault::IgnoreRange) || !resource.range_support;
        let (status, mut body) = if let Some(s) = faults.iter().find_map(|f| match f {
            Fault::Status(s) => Some(*s),
            _ => None,
        }) {
            (s, Bytes::new())
        } else if let Some(cr) = faults.iter().find_map(|f| match f {
            Fault::ContentRange(v) => Some(v.clone()),
            _ => None,
        }) {
            headers.set("content-range", cr);
            let start = req.range_start.unwrap_or(0).min(len) as usize;
            (206, full.slice(start..))
        } else if let (Some(start), false, 200) = (req.range_start, ignore_range, resource.status) {
            if start >= len {
                headers.set("content-range", format!("bytes */{len}"));
                (416, Bytes::new())
            } else {
                headers.set("content-range", format!("bytes {start}-{}/{len}", len - 1));
                (206, full.slice(start as usize..))
            }
        } else if let (None, Some(n)) = (
            req.range_start,
            faults.iter().find_map(|f| match f {
                Fault::UnsolicitedPartial(n) => Some(*n),
                _ => None,
            }),
        ) {
            let n = n.clamp(1, len.max(1)).min(len);
            headers.set(
                "content-range",
                format!("bytes 0-{}/{len}", n.saturating_sub(1)),
            );
            (206, full.slice(..n as usize))
        } else {
            (resource.status, full)
        };
        for f in &faults {
            if let Fault::EndAfter(n) = f {
                body = body.slice(..(*n as usize).min(body.len()));
            }
        }
        headers.set("content-length", body.len().to_string());
        for f in &faults {
            if let Fault::CutOffAfter(n) = f {
                body = body.slice(..(*n as usize).min(body.len()));
            }
        }
        let head = ResponseHead {
            status,
            status_text: String::new(),
            headers,
            url_list: vec![req.request.url.clone()],
            response_type: resource.response_type,
            resume_headers: Default::default(),
        };
        if tx.send(NetworkEvent::Response(head)).await.is_err() {
            return;
        }
        let reset_after = faults.iter().find_map(|f| match f {
            Fault::ResetAfter(n) => Some((*n, NetworkErrorKind::Temporary)),
            Fault::FatalAfter(n) => Some((*n, NetworkErrorKind::Fatal)),
            _ => None,
        });
        let mut sent: u64 = 0;
        let mut rest = body;
        loop {
            if let Some((limit, kind)) = reset_after
                && sent >= limit
            {
                let _ = tx
                    .send(NetworkEvent::Error(NetworkError {
                        kind,
                        message: format!("connection reset after {sent} bytes"),
                        cause: Some(crate::hosts::NetworkErrorCause::Reset),
                    }))
                    .await;
                return;
            }
            if rest.is_empty() {
                return;
            }
            let mut take = resource.chunk_size.min(rest.len());
            if let Some((limit, _)) = reset_after {
                take = take.min((limit - sent) as usize).max(1);
            }
            let chunk = rest.split_to(take);
            if !resource.chunk_delay.is_zero() && !always_ready {
                self.clock.sleep(resource.chunk_delay).await;
            }
            sent += chunk.len() as u64;
            if tx.send(NetworkEvent::Data(chunk)).await.is_err() {
                return;
            }
        }
    }
}

struct InFlight(Arc<Mutex<Inner>>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

impl NetworkHost for ScriptedNetwork {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let always_ready = {
            let mut inner = self.inner.lock().unwrap();
            inner.in_flight += 1;
            inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
            inner.always_ready
        };
        let guard = InFlight(self.inner.clone());
        let url = request.request.url.to_string();
        let events = if always_ready {
            // Everything the attempt can produce at once is produced now; an attempt that must
            // wait (a hold) goes on, as usual, while the engine polls.
            let (mut tx, rx) = mpsc::unbounded::<NetworkEvent>();
            let this = self.clone();
            let mut producer = async move {
                this.serve_attempt(request, &mut tx).await;
            }
            .boxed();
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            if producer.as_mut().poll(&mut cx).is_ready() {
                rx.boxed()
            } else {
                let producer = producer
                    .into_stream()
                    .filter_map(|()| futures::future::ready(None::<NetworkEvent>));
                futures::stream::select(rx, producer).boxed()
            }
        } else {
            let (mut tx, rx) = mpsc::channel::<NetworkEvent>(0);
            let this = self.clone();
            let producer = async move {
                this.serve_attempt(request, &mut tx).await;
            };
            // The producer runs only while the consumer polls, and is dropped with the stream.
            let producer = producer
                .into_stream()
                .filter_map(|()| futures::future::ready(None::<NetworkEvent>));
            futures::stream::select(rx, producer).boxed()
        };
        let this = self.clone();
        // Where the next body byte sits in the resource.
        let mut offset = 0u64;
        events
            .map(move |e| {
                let _ = &guard;
                match &e {
                    NetworkEvent::Response(h) => {
                        offset = match h.status {
                            206 => crate::fetch::content_range::extract_content_range_values(
                                &h.validation_headers(),
                            )
                            .map_or(0, |r| r.first_byte_pos),
                            _ => 0,
                        };
                    }
                    NetworkEvent::Data(b) => {
                        offset += b.len() as u64;
                        this.note_delivered(&url, offset, b.len() as u64);
                    }
                    _ => {}
                }
                e
            })
            .boxed()
    }
}
