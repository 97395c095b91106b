//! One fetch attempt: Fetch's *main fetch* / *HTTP fetch* / *HTTP-redirect fetch* /
//! *CORS-preflight fetch*, reduced to what a background fetch needs, over hyper-util's pooled
//! client, reporting [`NetworkEvent`]s through a bounded channel.

use crate::body::{BodyReadError, Keep, ReqBody};
use crate::config::{Config, MinRate};
use crate::connect::ConnectError;
use crate::connectivity::Connectivity;
use crate::cors::{self, PreflightCache};
use crate::decode::{self, Codings};
use crate::integrity::Verifier;
use crate::pool::{Partition, Pools};
use background_fetch::fetch::policy::{check_request_url, is_potentially_trustworthy};
use background_fetch::{
    BlockReason, CacheMode, ClientSnapshot, CredentialsMode, HeaderList, NetworkError,
    NetworkErrorCause, NetworkErrorKind, NetworkEvent, NetworkRequest, RedirectMode, Request,
    RequestBodySource, RequestMode, ResponseHead, ResponseType, Validators,
    is_cors_safelisted_method,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::{CaptureConnection, capture_connection};
use std::collections::VecDeque;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use url::Url;

/// What the host shares between fetches.
pub(crate) struct Shared {
    pub config: Config,
    pub pools: Pools,
    pub connectivity: Connectivity,
    pub preflight: PreflightCache,
}

/// What the socket task sends to the stream the engine polls.
pub(crate) enum Msg {
    Event(NetworkEvent),
    /// The attempt finished normally (the body ended, or there is none).
    End,
}

/// Why an attempt stopped early.
pub(crate) enum Stop {
    /// The engine dropped the stream: terminate quietly.
    Closed,
    /// A network error to report.
    Error(NetworkError),
    /// The server refused an HTTP/2 request with `HTTP_1_1_REQUIRED` (the attempt retries it
    /// over HTTP/1.1).
    Http11Required,
}

impl From<NetworkError> for Stop {
    fn from(e: NetworkError) -> Self {
        Stop::Error(e)
    }
}

/// The sending side of the event channel.
pub(crate) struct Tx(pub mpsc::Sender<Msg>);

impl Tx {
    async fn event(&self, e: NetworkEvent) -> Result<(), Stop> {
        self.0.send(Msg::Event(e)).await.map_err(|_| Stop::Closed)
    }
}

/// Runs one attempt and reports its outcome.
pub(crate) async fn run(shared: Arc<Shared>, request: NetworkRequest, tx: Tx) {
    let outcome = Attempt::new(&shared, request, &tx).run().await;
    match outcome {
        Ok(()) => {
            let _ = tx.0.send(Msg::End).await;
        }
        Err(Stop::Closed) => tracing::debug!("terminated by the engine"),
        Err(Stop::Error(e)) => {
            tracing::info!(error = %e, "fetch attempt failed");
            let _ = tx.0.send(Msg::Event(NetworkEvent::Error(e))).await;
        }
        Err(Stop::Http11Required) => {
            let e = NetworkError::temporary("the server requires HTTP/1.1");
            let _ = tx.0.send(Msg::Event(NetworkEvent::Error(e))).await;
        }
    }
}

fn temporary(m: impl Into<String>) -> Stop {
    Stop::Error(NetworkError::temporary(m))
}
fn fatal(m: impl Into<String>) -> Stop {
    Stop::Error(NetworkError::fatal(m))
}
fn blocked(r: BlockReason, m: impl Into<String>) -> Stop {
    Stop::Error(NetworkError::blocked(r, m))
}

/// The request body, as far as the attempt knows it.
enum BodyState {
    /// No body.
    None,
    /// Not sent yet.
    Fresh(RequestBodySource),
    /// Sent once: how to send it again for a 307/308 redirect (re-open it in the store, or,
    /// for a source that cannot be re-opened, what was kept of it in memory).
    Sent {
        reopen: Option<background_fetch::OpenRequestBody>,
        keep: Option<Arc<Mutex<Keep>>>,
        length: u64,
    },
}

/// The state of one attempt (Fetch's request, as it changes over redirects).
struct Attempt<'a> {
    shared: &'a Shared,
    /// The connection pool of the caller's partition.
    partition: Arc<Partition>,
    tx: &'a Tx,
    request: Request,
    url_list: Vec<Url>,
    body: BodyState,
    client: ClientSnapshot,
    range_start: Option<u64>,
    validators: Validators,
    /// Fetch's *tainted origin flag*.
    tainted_origin: bool,
    /// Fetch's *response tainting* is `"cors"` (otherwise `"basic"`).
    cors_tainting: bool,
    redirect_count: u32,
    /// Request body bytes reported as transmitted in this attempt (the most sent by any of its
    /// requests).
    upload_reported: u64,
    /// The request's referrer policy, once a redirect set it (else the client's).
    referrer_policy: Option<String>,
    /// A 421 was retried on a new connection already.
    retried_misdirected: bool,
    /// The server refused the request over HTTP/2 with `HTTP_1_1_REQUIRED`.
    force_http1: bool,
}

/// The statuses Fetch treats as redirects.
fn is_redirect_status(s: u16) -> bool {
    matches!(s, 301 | 302 | 303 | 307 | 308)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

impl<'a> Attempt<'a> {
    fn new(shared: &'a Shared, r: NetworkRequest, tx: &'a Tx) -> Self {
        let body = match r.body {
            Some(b) => BodyState::Fresh(b),
            None => BodyState::None,
        };
        let mut range_start = r.range_start.filter(|&n| n > 0);
        if range_start.is_some() && Verifier::new(&r.request.integrity).is_some() {
            // AD-HOC: integrity metadata covers the whole body, and this attempt could not hash
            //         the part already stored; so a request with integrity is never resumed: it
            //         asks for everything again, and the engine restarts the record on the 200.
            tracing::debug!("integrity metadata: fetching the whole body instead of resuming");
            range_start = None;
        }
        if range_start.is_some() && r.request.headers.contains("range") {
            // The author's Range is the request: ours would replace it and fetch other bytes.
            // (The engine does not resume such a request; this host refuses to, too.)
            tracing::debug!("an author Range header: not resuming");
            range_start = None;
        }
        Attempt {
            partition: shared.pools.get(&r.client.origin),
            shared,
            tx,
            url_list: vec![r.request.url.clone()],
            request: r.request,
            body,
            client: r.client,
            range_start,
            validators: r.validators,
            tainted_origin: false,
            cors_tainting: false,
            redirect_count: 0,
            upload_reported: 0,
            referrer_policy: None,
            retried_misdirected: false,
            force_http1: false,
        }
    }

    fn current_url(&self) -> &Url {
        self.url_list.last().expect("the URL list is never empty")
    }

    /// The serialised request origin (Fetch's *byte-serializing a request origin*).
    fn serialized_origin(&self) -> String {
        if self.tainted_origin {
            "null".into()
        } else {
            self.client.origin.clone()
        }
    }

    fn origin_is_same_as(&self, url: &Url) -> bool {
        url.origin().ascii_serialization() == self.client.origin
    }

    /// Fetch's *include credentials*.
    fn include_credentials(&self) -> bool {
        match self.request.credentials {
            CredentialsMode::Include => true,
            CredentialsMode::SameOrigin => !self.cors_tainting && !self.tainted_origin,
            CredentialsMode::Omit => false,
        }
    }

    async fn run(mut self) -> Result<(), Stop> {
        // 4.1 (HTTP-network-or-cache fetch): with no HTTP cache, "only-if-cached" can never be
        //     answered.
        if self.request.cache == CacheMode::OnlyIfCached {
            return Err(fatal(
                "cache mode \"only-if-cached\": this host has no HTTP cache",
            ));
        }
        loop {
            self.main_fetch_checks()?;
            let include_credentials = self.include_credentials();
            let origin = self.serialized_origin();
            // CORS-preflight fetch, when the method or a header is not safelisted.
            if self.cors_tainting {
                let unsafe_names = cors::cors_unsafe_request_header_names(&self.request.headers);
                if !is_cors_safelisted_method(&self.request.method) || !unsafe_names.is_empty() {
                    let url = self.current_url().as_str().to_owned();
                    let cached = self.shared.config.preflight_cache
                        && self.shared.preflight.allows(
                            &origin,
                            &url,
                            include_credentials,
                            &self.request.method,
                            &unsafe_names,
                        );
                    if !cached {
                        self.preflight(&origin, &unsafe_names, include_credentials)
                            .await?;
                    }
                }
            }
            let (response, connection) = match self.send(&origin, include_credentials).await {
                Err(Stop::Http11Required) if !self.force_http1 => {
                    // RFC 9113 §8.7 (RFC 7540 §13): HTTP_1_1_REQUIRED, "the endpoint requires
                    // that HTTP/1.1 be used instead of HTTP/2": send the request again on an
                    // HTTP/1.1 connection, as browsers do.
                    tracing::debug!(url = %self.current_url(), "HTTP/1.1 required: retrying");
                    self.force_http1 = true;
                    continue;
                }
                Err(Stop::Http11Required) => {
                    return Err(temporary(format!(
                        "{} refused the request over HTTP/2 and HTTP/1.1",
                        self.current_url()
                    )));
                }
                r => r?,
            };
            if include_credentials && let Some(c) = &self.shared.config.credentials {
                c.response_headers(self.current_url(), response.headers());
            }
            let status = response.status().as_u16();
            // RFC 9110 §15.5.20: "The client MAY retry the request over a different
            // connection." Once, as browsers do.
            if status == 421 && !self.retried_misdirected {
                tracing::debug!(url = %self.current_url(), "421: retrying on a new connection");
                self.retried_misdirected = true;
                poison(&connection);
                drop(response);
                continue;
            }
            // HTTP fetch 4.4: if response tainting is "cors" and a CORS check for request and
            // response returns failure, return a network error. (For redirects too: before
            // any byte of the body is read, so nothing of a refused response is counted.)
            if self.cors_tainting
                && let Err(why) = cors::cors_check(response.headers(), &origin, include_credentials)
            {
                return Err(blocked(
                    BlockReason::Cors,
                    format!("CORS check failed for {}: {why}", self.current_url()),
                ));
            }
            // HTTP fetch 9: if internalResponse's status is a redirect status:
            if is_redirect_status(status) {
                // 9.2. Switch on request's redirect mode:
                match self.request.redirect {
                    // "error": set response to a network error.
                    RedirectMode::Error => {
                        return Err(fatal(format!(
                            "a {status} redirect from {} with redirect mode \"error\"",
                            self.current_url()
                        )));
                    }
                    // "manual": set response to an opaque-redirect filtered response whose
                    // internal response is internalResponse (status 0, no headers, no body).
                    RedirectMode::Manual => {
                        let head = ResponseHead {
                            status: 0,
                            status_text: String::new(),
                            headers: HeaderList::new(),
                            url_list: self.url_list.clone(),
                            response_type: ResponseType::OpaqueRedirect,
                            resume_headers: Default::default(),
                        };
                        self.tx.event(NetworkEvent::Response(head)).await?;
                        return Ok(());
                    }
                    // "follow": set response to the result of running HTTP-redirect fetch.
                    RedirectMode::Follow => {
                        // HTTP-redirect fetch 3. Let locationURL be internalResponse's location
                        //    URL given request's current URL's fragment.
                        // 4. If locationURL is null, then return response.
                        // 5. If locationURL is failure, then return a network error.
                        if let Some(next) = self.location_url(response.headers())? {
                            let policy = referrer_policy_from(response.headers());
                            drop(response);
                            self.follow_redirect(status, next, policy)?;
                            continue;
                        }
                    }
                }
            }
            return self
                .deliver(response, connection, include_credentials)
                .await;
        }
    }

    /// A response's location URL.
    ///
    /// <https://fetch.spec.whatwg.org/#concept-response-location-url>
    fn location_url(&self, headers: &HeaderMap) -> Result<Option<Url>, Stop> {
        // 2. Let location be the result of extracting header list values given `Location` and
        //    response's header list. (`Location` is a single field: more than one value is a
        //    failure.)
        let mut values = headers.get_all(http::header::LOCATION).iter();
        let Some(location) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(fatal(format!(
                "a redirect from {} with several Location headers",
                self.current_url()
            )));
        }
        // 3. If location is a header value, then set location to the result of parsing
        //    location with response's URL.
        let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
        let mut next = self
            .current_url()
            .join(&location)
            .map_err(|e| fatal(format!("redirect to an invalid URL {location:?}: {e}")))?;
        // 4. If location is a URL whose fragment is null, then set location's fragment to
        //    requestFragment.
        if next.fragment().is_none() {
            next.set_fragment(self.current_url().fragment());
        }
        Ok(Some(next))
    }

    /// The checks main fetch runs on every request, redirects included: scheme, mixed content
    /// and bad port (the engine runs them before the first request too), then the mode and
    /// response tainting decision.
    fn main_fetch_checks(&mut self) -> Result<(), Stop> {
        let url = self.current_url().clone();
        if let Err(reason) = check_request_url(&self.client, &url) {
            return Err(blocked(reason, format!("{url}: {reason}")));
        }
        // Main fetch 7: if should request be blocked by Content Security Policy returns
        // blocked, then set response to a network error. (For every request, redirects
        // included; the engine checks the first URL too, with the same policy.)
        let mut hop = self.request.clone();
        hop.url = url.clone();
        if let Err(reason) = self.shared.config.policy.check(&self.client, &hop) {
            return Err(blocked(reason, format!("{url}: {reason}")));
        }
        // Main fetch 12: request's current URL's origin is same origin with request's origin,
        // and request's response tainting is "basic" → scheme fetch.
        if self.origin_is_same_as(&url) && !self.cors_tainting && !self.tainted_origin {
            return Ok(());
        }
        match self.request.mode {
            // request's mode is "same-origin" → a network error.
            RequestMode::SameOrigin => Err(blocked(
                BlockReason::Cors,
                format!(
                    "mode \"same-origin\" but {url} is cross-origin to {}",
                    self.client.origin
                ),
            )),
            // AD-HOC: background fetch refuses no-cors requests at fetch() time; should one
            //         arrive here, refuse it instead of producing an opaque response whose
            //         size would leak.
            RequestMode::NoCors => Err(blocked(
                BlockReason::Other,
                "no-cors requests are not supported by background fetch",
            )),
            // request's mode is "navigate" → scheme fetch (no CORS).
            RequestMode::Navigate => Ok(()),
            RequestMode::Cors => {
                // Otherwise: set request's response tainting to "cors" and run an HTTP fetch.
                self.cors_tainting = true;
                Ok(())
            }
        }
    }

    /// CORS-preflight fetch.
    ///
    /// <https://fetch.spec.whatwg.org/#cors-preflight-fetch-0>
    async fn preflight(
        &mut self,
        origin: &str,
        unsafe_names: &[String],
        include_credentials: bool,
    ) -> Result<(), Stop> {
        let url = self.current_url().clone();
        // 1. Let preflight be a new request whose method is `OPTIONS`, URL list is a clone of
        //    request's URL list, ... origin, referrer, referrer policy, mode "cors", and
        //    response tainting "cors".
        // 2. Append (`Accept`, `*/*`) to preflight's header list.
        // 3. Append (`Access-Control-Request-Method`, request's method).
        // 4. Let headers be the CORS-unsafe request-header names with request's header list.
        // 5. If headers is not empty: append `Access-Control-Request-Headers` with the
        //    names separated by `,`.
        let mut req = http::Request::builder()
            .method(http::Method::OPTIONS)
            .uri(request_target(&url))
            .header(http::header::ACCEPT, "*/*")
            .header(
                "access-control-request-method",
                self.request.method.as_str(),
            )
            .header(http::header::ORIGIN, origin);
        if !unsafe_names.is_empty() {
            req = req.header("access-control-request-headers", unsafe_names.join(","));
        }
        if let Some(r) = self.referrer_for(&url) {
            req = req.header(http::header::REFERER, r);
        }
        if let Some(ua) = &self.shared.config.user_agent {
            req = req.header(http::header::USER_AGENT, ua.as_str());
        }
        let req = req
            .body(ReqBody::empty())
            .map_err(|e| fatal(format!("cannot build the preflight request: {e}")))?;
        // 6. Let response be the result of running HTTP-network-or-cache fetch given
        //    preflight.
        let timeout = self.shared.config.response_head_timeout + self.connect_budget();
        let response = match tokio::time::timeout(timeout, self.partition.client.request(req)).await
        {
            Err(_) => {
                return Err(Stop::Error(
                    NetworkError::temporary(format!(
                        "no preflight response from {url} within {timeout:?}"
                    ))
                    .with_cause(NetworkErrorCause::Timeout),
                ));
            }
            Ok(Err(e)) => return Err(Stop::Error(classify_request_error(&e))),
            Ok(Ok(r)) => r,
        };
        // 7. If a CORS check for request and response returns success and response's status is
        //    an ok status, then: [checks below]
        if let Err(why) = cors::cors_check(response.headers(), origin, include_credentials) {
            return Err(blocked(
                BlockReason::Cors,
                format!("CORS preflight for {url} failed: {why}"),
            ));
        }
        if !response.status().is_success() {
            return Err(blocked(
                BlockReason::Cors,
                format!(
                    "CORS preflight for {url} failed: status {}",
                    response.status()
                ),
            ));
        }
        let result = cors::check_preflight(
            response.headers(),
            &self.request.method,
            unsafe_names,
            include_credentials,
        )
        .map_err(|why| {
            blocked(
                BlockReason::Cors,
                format!("CORS preflight for {url} failed: {why}"),
            )
        })?;
        // 7.10-7.11: the CORS-preflight cache.
        if self.shared.config.preflight_cache {
            self.shared
                .preflight
                .store(origin, url.as_str(), include_credentials, result);
        }
        // Drain a small body so the connection can be reused; give up on a large one.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let mut body = response.into_body();
            let mut n = 0usize;
            while let Some(Ok(f)) = body.frame().await {
                n += f.data_ref().map_or(0, |d| d.len());
                if n > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }

    /// The longest connection establishment can take (timeouts and backoff included).
    fn connect_budget(&self) -> std::time::Duration {
        let c = &self.shared.config;
        let r = &c.connect_retry;
        let mut total = c.connect_timeout * (r.max_retries + 1);
        for i in 1..=r.max_retries {
            total += r.delay(i, 0.0);
        }
        total
    }

    /// The `Referer` value for a request to `target`, by the client's referrer policy.
    fn referrer_for(&self, target: &Url) -> Option<String> {
        referrer_value(
            self.request.referrer.as_ref(),
            self.referrer_policy
                .as_deref()
                .unwrap_or(&self.client.policy.referrer_policy),
            target,
        )
    }

    /// HTTP-network-or-cache fetch + HTTP-network fetch for the current URL: builds the
    /// request, sends it with its body, and waits for the response head under the timeouts.
    async fn send(
        &mut self,
        origin: &str,
        include_credentials: bool,
    ) -> Result<(http::Response<hyper::body::Incoming>, CaptureConnection), Stop> {
        let url = self.current_url().clone();
        let config = &self.shared.config;
        let mut headers = HeaderMap::new();
        for (name, value) in self.request.headers.iter() {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) else {
                tracing::warn!(name, "dropping a header that is not valid in HTTP");
                continue;
            };
            headers.append(n, v);
        }
        // Fetch: the default `Accept` for the empty destination is `*/*`.
        if !headers.contains_key(http::header::ACCEPT) {
            headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        // Append a request `Origin` header: for CORS requests, and for other methods than GET
        // and HEAD.
        let method = self.request.method.clone();
        if (self.cors_tainting || (method != "GET" && method != "HEAD"))
            && let Ok(v) = HeaderValue::from_str(origin)
        {
            headers.insert(http::header::ORIGIN, v);
        }
        if let Some(r) = self.referrer_for(&url)
            && let Ok(v) = HeaderValue::from_str(&r)
        {
            headers.insert(http::header::REFERER, v);
        }
        if let Some(ua) = &config.user_agent
            && !headers.contains_key(http::header::USER_AGENT)
            && let Ok(v) = HeaderValue::from_str(ua)
        {
            headers.insert(http::header::USER_AGENT, v);
        }
        // HTTP-network-or-cache fetch: cache modes "no-store" and "reload" add `Pragma` and
        // `Cache-Control: no-cache`; "no-cache" adds `Cache-Control: max-age=0`.
        match self.request.cache {
            CacheMode::NoStore | CacheMode::Reload => {
                if !headers.contains_key(http::header::PRAGMA) {
                    headers.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
                }
                if !headers.contains_key(http::header::CACHE_CONTROL) {
                    headers.insert(
                        http::header::CACHE_CONTROL,
                        HeaderValue::from_static("no-cache"),
                    );
                }
            }
            CacheMode::NoCache if !headers.contains_key(http::header::CACHE_CONTROL) => {
                headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=0"),
                );
            }
            _ => {}
        }
        // "Add a range header" (complete a record, step 8): `Range: bytes=N-`, and then Fetch
        // sets `Accept-Encoding: identity`, so the bytes line up with what is stored.
        if let Some(start) = self.range_start {
            headers.insert(
                http::header::RANGE,
                HeaderValue::from_str(&format!("bytes={start}-")).expect("a valid header value"),
            );
            headers.insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            // AD-HOC: the spec has no If-Range (it validates after the fact). We add one as a
            //         user-agent header, outside the author's header list (so it does not make
            //         a CORS request need a preflight): a strong ETag, else a strong
            //         Last-Modified (RFC 9110 §13.1.5; none with a weak ETag). A server whose
            //         resource changed then answers 200 and the record restarts, instead of a
            //         206 that validation would reject.
            if let Some(v) = if_range_value(&self.validators)
                && let Ok(v) = HeaderValue::from_str(&v)
            {
                headers.insert(http::header::IF_RANGE, v);
            }
        } else if !headers.contains_key(http::header::RANGE) {
            headers.insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static(decode::ACCEPT_ENCODING),
            );
        } else {
            // An author Range request: byte positions refer to the identity representation.
            headers.insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if include_credentials && let Some(c) = &config.credentials {
            // HTTP-network-or-cache fetch 14 (and its cookie step): the user agent's
            // `Authorization` only "if httpRequest's header list does not contain
            // `Authorization`"; the author's header wins over the hook's.
            let author: Vec<HeaderName> = headers.keys().cloned().collect();
            for (n, v) in c.request_headers(&url) {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(n.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    if n == http::header::AUTHORIZATION && author.contains(&n) {
                        continue;
                    }
                    headers.append(n, v);
                }
            }
        }
        // The body: streamed from the store the first time, replayed from memory after a
        // 307/308 redirect.
        // The body: streamed from the store; after a 307/308 redirect, re-opened in the store
        // (or, for a source that cannot be re-opened, replayed from what was kept in memory).
        let (progress_tx, mut progress_rx) = watch::channel(0u64);
        let (body, body_len) = match std::mem::replace(&mut self.body, BodyState::None) {
            BodyState::None => (ReqBody::empty(), None),
            BodyState::Fresh(source) => {
                let length = source.length;
                let keep = source.reopen.is_none().then(|| {
                    Arc::new(Mutex::new(Keep {
                        chunks: Vec::new(),
                        len: 0,
                        limit: config.max_replay_body,
                        overflow: false,
                        complete: length == 0,
                    }))
                });
                self.body = BodyState::Sent {
                    reopen: source.reopen.clone(),
                    keep: keep.clone(),
                    length,
                };
                let body = ReqBody {
                    source: Some(source.stream),
                    replay: VecDeque::new(),
                    remaining: length,
                    pending: 0,
                    sent: 0,
                    progress: Some(progress_tx),
                    keep,
                };
                (body, Some(length))
            }
            BodyState::Sent {
                reopen,
                keep,
                length,
            } => {
                let (source, replay) = match (&reopen, &keep) {
                    (Some(open), _) => (Some(open(0)), VecDeque::new()),
                    (None, Some(keep)) => {
                        let k = keep.lock().unwrap_or_else(|e| e.into_inner());
                        if k.overflow || !k.complete {
                            return Err(fatal(format!(
                                "a redirect needs the request body again, which cannot be re-opened and was not kept whole in memory ({}; at most {} bytes are kept)",
                                if k.overflow {
                                    "it is larger"
                                } else {
                                    "the server answered before it was all sent"
                                },
                                config.max_replay_body
                            )));
                        }
                        (None, k.chunks.clone().into())
                    }
                    (None, None) => unreachable!("a body that cannot be re-opened is kept"),
                };
                self.body = BodyState::Sent {
                    reopen,
                    keep,
                    length,
                };
                let body = ReqBody {
                    source,
                    replay,
                    remaining: length,
                    pending: 0,
                    sent: 0,
                    progress: Some(progress_tx),
                    keep: None,
                };
                (body, Some(length))
            }
        };
        match body_len {
            Some(len) => {
                headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            // Fetch, HTTP-network-or-cache fetch: "If httpRequest's body is null and
            // httpRequest's method is `POST` or `PUT`, then set contentLengthHeaderValue to
            // `0`."
            None if matches!(self.request.method.as_str(), "POST" | "PUT") => {
                headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0u64));
            }
            None => {}
        }
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|e| fatal(format!("invalid method {method:?}: {e}")))?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(request_target(&url))
            .body(body)
            .map_err(|e| fatal(format!("cannot build the request for {url}: {e}")))?;
        *req.headers_mut() = headers;
        // Plain http through a proxy: the proxy's credentials go with every request (https
        // sends them once, on the CONNECT of its tunnel).
        if url.scheme() == "http"
            && let Some(proxy) = config.proxy.as_ref().and_then(|p| p.intercept(req.uri()))
            && let Some(auth) = proxy.auth
        {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        let mut capture = capture_connection(&mut req);
        tracing::debug!(%url, range_start = ?self.range_start, "sending request");
        let client = if self.force_http1 {
            &self.partition.http1
        } else {
            &self.partition.client
        };
        let response = client.request(req);
        tokio::pin!(response);
        // Timeouts: connecting is bounded by the connector; then the upload may not stall for
        // the idle timeout; then the head must arrive within the head timeout.
        let body_len = body_len.unwrap_or(0);
        let mut upload_done = body_len == 0;
        let mut connected = false;
        let mut deadline: Option<Instant> =
            Some(Instant::now() + self.connect_budget() + config.response_head_timeout);
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = &mut response => {
                    // The head may come in the same poll as the last of the upload: report
                    // what was sent before the head (UploadProgress never follows it).
                    let total = *progress_rx.borrow_and_update();
                    if total > self.upload_reported {
                        self.tx
                            .event(NetworkEvent::UploadProgress(total - self.upload_reported))
                            .await?;
                        self.upload_reported = total;
                    }
                    return match r {
                        Ok(r) => Ok((r, capture)),
                        Err(e) if requires_http1(&e) => Err(Stop::Http11Required),
                        Err(e) => Err(Stop::Error(classify_request_error(&e))),
                    };
                }
                r = progress_rx.changed(), if !upload_done => {
                    // The body may be sent again after a 307/308 redirect: report only bytes
                    // beyond what this attempt already reported, so that each byte of the body
                    // counts once in the fetch's `uploaded`.
                    let total = *progress_rx.borrow_and_update();
                    if total > self.upload_reported {
                        self.tx
                            .event(NetworkEvent::UploadProgress(total - self.upload_reported))
                            .await?;
                        self.upload_reported = total;
                    }
                    if total >= body_len || r.is_err() {
                        upload_done = true;
                        deadline = Some(Instant::now() + config.response_head_timeout);
                    } else {
                        deadline = Some(Instant::now() + config.idle_timeout);
                    }
                }
                _ = async { capture.wait_for_connection_metadata().await.is_some() }, if !connected => {
                    connected = true;
                    deadline = Some(Instant::now() + if upload_done { config.response_head_timeout } else { config.idle_timeout });
                }
                _ = sleep => {
                    // The connection may be dead (a NAT mapping that timed out): never reuse
                    // it.
                    poison(&capture);
                    return Err(Stop::Error(NetworkError::temporary(if !connected {
                        format!("could not connect to {url}")
                    } else if upload_done {
                        format!("no response head from {url} within {:?}", config.response_head_timeout)
                    } else {
                        format!("the upload to {url} made no progress for {:?}", config.idle_timeout)
                    }).with_cause(NetworkErrorCause::Timeout)));
                }
            }
        }
    }

    /// HTTP-redirect fetch, from step 4 (the location URL is known and mode is "follow").
    ///
    /// <https://fetch.spec.whatwg.org/#http-redirect-fetch>
    fn follow_redirect(
        &mut self,
        status: u16,
        location: Url,
        referrer_policy: Option<String>,
    ) -> Result<(), Stop> {
        let current = self.current_url().clone();
        // 4. If locationURL's scheme is not an HTTP(S) scheme, then return a network error.
        if !matches!(location.scheme(), "http" | "https") {
            return Err(blocked(
                BlockReason::Scheme,
                format!("redirect from {current} to a {} URL", location.scheme()),
            ));
        }
        // 5. If request's redirect count is 20, then return a network error.
        if self.redirect_count >= self.shared.config.max_redirects {
            return Err(fatal(format!(
                "too many redirects ({}), last from {current} to {location}",
                self.redirect_count + 1
            )));
        }
        // 6. Increase request's redirect count by 1.
        self.redirect_count += 1;
        let has_credentials = !location.username().is_empty() || location.password().is_some();
        // 7. If request's mode is "cors", locationURL includes credentials, and request's
        //    origin is not same origin with locationURL's origin, then return a network error.
        if self.request.mode == RequestMode::Cors
            && has_credentials
            && !self.origin_is_same_as(&location)
        {
            return Err(blocked(
                BlockReason::Cors,
                "a CORS redirect to a URL with credentials",
            ));
        }
        // 8. If request's response tainting is "cors" and locationURL includes credentials, then
        //    return a network error.
        if self.cors_tainting && has_credentials {
            return Err(blocked(
                BlockReason::Cors,
                "a CORS redirect to a URL with credentials",
            ));
        }
        // 9. If internalResponse's status is not 303, request's body is non-null, and
        //    request's body's source is null, then return a network error.
        //    (Our body can be sent again while it was kept in memory: see `send`.)
        // 10. If locationURL's origin is not same origin with request's current URL's origin
        //     and request's origin is not same origin with request's current URL's origin, then
        //     set request's tainted origin flag.
        if !same_origin(&location, &current) && !self.origin_is_same_as(&current) {
            self.tainted_origin = true;
        }
        // 11. If one of the following is true: internalResponse's status is 301 or 302 and
        //     request's method is `POST`; internalResponse's status is 303 and request's method
        //     is not `GET` or `HEAD`; then:
        let method = self.request.method.as_str();
        if ((status == 301 || status == 302) && method == "POST")
            || (status == 303 && method != "GET" && method != "HEAD")
        {
            // 11.1. Set request's method to `GET` and request's body to null.
            self.request.method = "GET".into();
            self.body = BodyState::None;
            self.request.body_length = None;
            // 11.2. For each headerName of request-body-header name, delete headerName from
            //       request's header list.
            for name in [
                "content-encoding",
                "content-language",
                "content-location",
                "content-type",
            ] {
                self.request.headers.delete(name);
            }
        }
        // 12. If request's current URL's origin is not same origin with locationURL's origin,
        //     then for each headerName of CORS non-wildcard request-header name, delete
        //     headerName from request's header list.
        if !same_origin(&current, &location) {
            self.request.headers.delete("authorization");
        }
        // 13. If request's body is non-null, then set request's body to the first return value
        //     of safely extracting request's body's source. (`send` replays the kept copy.)
        // 15. Append locationURL to request's URL list.
        tracing::debug!(from = %current, to = %location, status, "following a redirect");
        self.url_list.push(location);
        // 16. Invoke set request's referrer policy on redirect on request and internalResponse:
        //     2. If policy is not the empty string, then set request's referrer policy to
        //        policy.
        if let Some(policy) = referrer_policy {
            self.referrer_policy = Some(policy);
        }
        Ok(())
    }

    /// Reports the final response and streams its body.
    async fn deliver(
        self,
        response: http::Response<hyper::body::Incoming>,
        connection: CaptureConnection,
        include_credentials: bool,
    ) -> Result<(), Stop> {
        let config = &self.shared.config;
        let status = response.status().as_u16();
        let status_text = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
            Some(r) => String::from_utf8_lossy(r.as_bytes()).into_owned(),
            None if response.version() < http::Version::HTTP_2 => response
                .status()
                .canonical_reason()
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        };
        let raw: HeaderList = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        // Every `Content-Encoding` line counts (RFC 9110 §5.3).
        let codings = Codings::from_headers(
            response
                .headers()
                .get_all(http::header::CONTENT_ENCODING)
                .iter()
                .map(|v| v.as_bytes()),
        );
        // A 206 is a slice of the identity representation the engine appends to what it has:
        // a content-coded one cannot line up with the stored bytes.
        if status == 206 && !codings.is_identity() {
            return Err(fatal(format!(
                "a 206 response with Content-Encoding {:?}: its bytes cannot be appended",
                String::from_utf8_lossy(
                    &cors::get_combined(response.headers(), "content-encoding").unwrap_or_default()
                )
            )));
        }
        // Whether the end of the body is only the end of the connection (HTTP/1.1 without a
        // length): then a coded stream cut short there was cut by the network.
        let close_delimited = response.version() < http::Version::HTTP_2
            && !response
                .headers()
                .contains_key(http::header::CONTENT_LENGTH)
            && !response
                .headers()
                .contains_key(http::header::TRANSFER_ENCODING);
        let (headers, response_type) = if self.cors_tainting {
            (
                cors::cors_filter(&raw, response.headers(), include_credentials),
                ResponseType::Cors,
            )
        } else {
            (
                raw.iter()
                    .filter(|(n, _)| !cors::is_forbidden_response_header(n))
                    .collect(),
                ResponseType::Basic,
            )
        };
        // A filtered response keeps its unfiltered validators for the engine's resumption,
        // unexposed (`ResponseHead::resume_headers`).
        let resume_headers = if self.cors_tainting {
            ResponseHead::resume_headers_from(&raw, &headers)
        } else {
            HeaderList::new()
        };
        let head = ResponseHead {
            status,
            status_text,
            headers,
            url_list: self.url_list.clone(),
            response_type,
            resume_headers,
        };
        tracing::debug!(status, url = %self.current_url(), ?codings, "response");
        self.tx.event(NetworkEvent::Response(head)).await?;
        let mut body = RawBody {
            body: response.into_body(),
            pace: Pace::new(config.idle_timeout, config.min_rate),
            url: self.current_url().clone(),
            received: 0,
            connection,
        };
        // Subresource Integrity over the decoded body, checked at its end.
        let mut integrity = Verifier::new(&self.request.integrity);
        match codings {
            Codings::Identity | Codings::Unsupported => {
                while let Some(data) = body.next().await? {
                    if let Some(v) = &mut integrity {
                        v.update(&data);
                    }
                    body.pace.handing();
                    self.tx.event(NetworkEvent::Data(data)).await?;
                    body.pace.engine_took_it();
                }
            }
            Codings::Decode(codings) => {
                let received = Arc::new(AtomicU64::new(0));
                let pace = body.pace.clone();
                let source = raw_source(body, received.clone());
                let mut decoded = decode::decoder(&codings, Box::pin(source));
                let mut buf = vec![0u8; config.max_decoded_chunk.max(512)];
                loop {
                    let n = match decoded.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            let got = received.load(Ordering::Relaxed);
                            return Err(decode_error(e, close_delimited, got, self.current_url()));
                        }
                    };
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if let Some(v) = &mut integrity {
                        v.update(&chunk);
                    }
                    pace.handing();
                    self.tx.event(NetworkEvent::Data(chunk)).await?;
                    pace.engine_took_it();
                }
            }
        }
        if let Some(v) = integrity {
            v.finish().map_err(fatal)?;
        }
        tracing::debug!("body complete");
        Ok(())
    }
}

/// Never reuses the connection of `capture` (it timed out, or the server said it was the
/// wrong one).
fn poison(capture: &CaptureConnection) {
    if let Some(c) = capture.connection_metadata().as_ref() {
        c.poison();
    }
}

/// Whether an HTTP/2 request was refused with `HTTP_1_1_REQUIRED`.
fn requires_http1(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(h2) = s.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::HTTP_1_1_REQUIRED)
        {
            return true;
        }
        src = s.source();
    }
    false
}

/// The pace of a response body: the idle timeout runs from the last real bytes (empty HTTP/2
/// DATA frames do not count) or from when the engine took the last chunk (time the engine
/// spends storing does not count); the optional minimum rate is checked over windows that
/// likewise leave out the engine's time.
#[derive(Clone)]
struct Pace(Arc<Mutex<PaceState>>);

struct PaceState {
    idle: std::time::Duration,
    min_rate: Option<MinRate>,
    /// Last real bytes, or the engine taking the last chunk.
    last: Instant,
    window_start: Instant,
    window_bytes: u64,
    /// When the engine was handed a chunk it has not taken yet.
    handed: Option<Instant>,
}

impl Pace {
    fn new(idle: std::time::Duration, min_rate: Option<MinRate>) -> Self {
        let now = Instant::now();
        Pace(Arc::new(Mutex::new(PaceState {
            idle,
            min_rate,
            last: now,
            window_start: now,
            window_bytes: 0,
            handed: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` real bytes arrived.
    fn got(&self, n: usize) {
        let mut p = self.lock();
        p.last = Instant::now();
        p.window_bytes += n as u64;
    }

    /// A chunk is handed to the engine (which may take its time storing it).
    fn handing(&self) {
        self.lock().handed = Some(Instant::now());
    }

    /// The engine took what it was handed: its time does not count.
    fn engine_took_it(&self) {
        let mut p = self.lock();
        let now = Instant::now();
        if let Some(since) = p.handed.take() {
            p.window_start += now - since;
        }
        p.last = now;
    }

    /// When the next check is due.
    fn deadline(&self) -> Instant {
        let p = self.lock();
        let idle = p.last + p.idle;
        match p.min_rate {
            Some(r) => idle.min(p.window_start + r.window),
            None => idle,
        }
    }

    /// At the deadline: the error, if the body is too slow, else `None` (a new window).
    fn check(&self) -> Option<String> {
        let mut p = self.lock();
        let now = Instant::now();
        if now >= p.last + p.idle {
            return Some(format!("no bytes for {:?}", p.idle));
        }
        if let Some(r) = p.min_rate
            && now >= p.window_start + r.window
        {
            if p.window_bytes < r.bytes {
                return Some(format!(
                    "{} bytes in {:?}, less than the minimum rate of {} bytes per {:?}",
                    p.window_bytes, r.window, r.bytes, r.window
                ));
            }
            p.window_start = now;
            p.window_bytes = 0;
        }
        None
    }
}

/// A response body read under its [`Pace`].
struct RawBody {
    body: hyper::body::Incoming,
    pace: Pace,
    url: Url,
    received: u64,
    connection: CaptureConnection,
}

impl RawBody {
    /// The next real bytes (never empty), `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Bytes>, Stop> {
        loop {
            let deadline = self.pace.deadline();
            tokio::select! {
                frame = self.body.frame() => match frame {
                    None => return Ok(None),
                    Some(Err(e)) => {
                        return Err(Stop::Error(NetworkError::temporary(format!(
                            "the body of {} stopped after {} bytes: {}",
                            self.url,
                            self.received,
                            error_chain(&e)
                        )).with_cause(NetworkErrorCause::Reset)));
                    }
                    Some(Ok(frame)) => {
                        // Trailers and empty DATA frames are no progress.
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            self.received += data.len() as u64;
                            self.pace.got(data.len());
                            return Ok(Some(data));
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if let Some(why) = self.pace.check() {
                        // The connection may be dead: never reuse it.
                        poison(&self.connection);
                        return Err(Stop::Error(NetworkError::temporary(format!(
                            "the body of {} stalled: {why} (after {} bytes)",
                            self.url, self.received
                        )).with_cause(NetworkErrorCause::Timeout)));
                    }
                }
            }
        }
    }
}

/// A network failure of the raw body, carried through the decoders.
#[derive(Debug)]
struct RawBodyError(NetworkError);

impl std::fmt::Display for RawBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.message.fmt(f)
    }
}

impl StdError for RawBodyError {}

/// The raw body as the decoders' byte source; `received` counts its bytes.
fn raw_source(
    body: RawBody,
    received: Arc<AtomicU64>,
) -> tokio_util::io::StreamReader<BoxStream<'static, std::io::Result<Bytes>>, Bytes> {
    let stream = futures::stream::unfold(Some(body), move |body| {
        let received = received.clone();
        async move {
            let mut body = body?;
            match body.next().await {
                Ok(Some(b)) => {
                    received.fetch_add(b.len() as u64, Ordering::Relaxed);
                    Some((Ok(b), Some(body)))
                }
                Ok(None) => None,
                Err(Stop::Error(e)) => Some((Err(std::io::Error::other(RawBodyError(e))), None)),
                Err(_) => Some((
                    Err(std::io::Error::other(RawBodyError(
                        NetworkError::temporary("the body stopped"),
                    ))),
                    None,
                )),
            }
        }
    })
    .boxed();
    tokio_util::io::StreamReader::new(stream)
}

/// Classifies a failure of a coded body.
fn decode_error(e: std::io::Error, close_delimited: bool, received: u64, url: &Url) -> Stop {
    if let Some(raw) = e.get_ref().and_then(|i| i.downcast_ref::<RawBodyError>()) {
        return Stop::Error(raw.0.clone());
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        if close_delimited {
            // The connection ended cleanly inside the coded stream: with no length to say
            // otherwise, the transfer broke off (temporary), the data is not corrupt.
            return temporary(format!(
                "the body of {url} ended inside its content coding after {received} bytes"
            ));
        }
        return fatal(format!(
            "content decoding failed: the complete body of {url} ends inside its content coding"
        ));
    }
    fatal(format!("content decoding failed for {url}: {e}"))
}

/// The request target: the URL without its fragment.
fn request_target(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    u.to_string()
}

/// The `If-Range` value for resuming, if the stored response has a strong validator.
///
/// <https://www.rfc-editor.org/rfc/rfc9110#section-13.1.5>
pub(crate) fn if_range_value(v: &Validators) -> Option<String> {
    if let Some(etag) = &v.etag {
        let etag = etag.trim();
        // "A client MUST NOT generate an If-Range header field containing an entity tag that
        // is marked as weak." A strong entity tag is a quoted string without the W/ prefix; a
        // combined value of several ETag headers ("a", "b") is not usable either.
        let strong = etag.len() >= 2
            && etag.starts_with('"')
            && etag.ends_with('"')
            && !etag[1..etag.len() - 1].contains('"');
        // "A client MUST NOT generate an If-Range header field containing an HTTP-date unless
        // the client has no entity tag for the corresponding representation and the date is a
        // strong validator in the sense defined by Section 8.8.2.2."
        return strong.then(|| etag.to_owned());
    }
    let last_modified = v.last_modified.as_deref()?.trim();
    let date = v.date.as_deref()?.trim();
    // RFC 9110 §8.8.2.2: a Last-Modified is strong for a client when "the entry has a Date
    // value, the date is at least 60 seconds before the Date value" (the cache entry here
    // is the stored response).
    let (lm, d) = (
        httpdate::parse_http_date(last_modified).ok()?,
        httpdate::parse_http_date(date).ok()?,
    );
    (d.duration_since(lm).ok()? >= std::time::Duration::from_secs(60))
        .then(|| last_modified.to_owned())
}

/// Parse a referrer policy from a `Referrer-Policy` header (`None` for the empty string).
///
/// <https://w3c.github.io/webappsec-referrer-policy/#parse-referrer-policy-from-header>
fn referrer_policy_from(headers: &HeaderMap) -> Option<String> {
    const POLICIES: [&str; 8] = [
        "no-referrer",
        "no-referrer-when-downgrade",
        "same-origin",
        "origin",
        "strict-origin",
        "origin-when-cross-origin",
        "strict-origin-when-cross-origin",
        "unsafe-url",
    ];
    // 1. Let policy-tokens be the result of extracting header list values given
    //    `Referrer-Policy` and response's header list.
    let value = cors::get_combined(headers, "referrer-policy")?;
    // 2. Let policy be the empty string.
    let mut policy = None;
    // 3. For each token in policy-tokens, if token is a referrer policy and token is not the
    //    empty string, then set policy to token.
    for token in String::from_utf8_lossy(&value).split(',') {
        let token = token.trim_matches([' ', '\t']).to_ascii_lowercase();
        if POLICIES.contains(&token.as_str()) {
            policy = Some(token);
        }
    }
    // 4. Return policy.
    policy
}

/// Determine request's referrer, for a referrer already resolved at `fetch()` time.
///
/// <https://w3c.github.io/webappsec-referrer-policy/#determine-requests-referrer>
pub(crate) fn referrer_value(referrer: Option<&Url>, policy: &str, target: &Url) -> Option<String> {
    let referrer = referrer?;
    // 3-5. Let referrerURL be the result of stripping referrerSource for use as a referrer,
    //      and referrerOrigin the same with the origin-only flag.
    let mut full = referrer.clone();
    let _ = full.set_username("");
    let _ = full.set_password(None);
    full.set_fragment(None);
    let origin_only = format!("{}/", referrer.origin().ascii_serialization());
    // 6. If the result of serializing referrerURL is a string whose length is greater than
    //    4096, set referrerURL to referrerOrigin.
    let full = if full.as_str().len() > 4096 {
        origin_only.clone()
    } else {
        full.to_string()
    };
    let same = same_origin(referrer, target);
    let downgrade = is_potentially_trustworthy(referrer) && !is_potentially_trustworthy(target);
    match policy {
        "no-referrer" => None,
        "no-referrer-when-downgrade" => (!downgrade).then_some(full),
        "same-origin" => same.then_some(full),
        "origin" => Some(origin_only),
        "strict-origin" => (!downgrade).then_some(origin_only),
        "origin-when-cross-origin" => Some(if same { full } else { origin_only }),
        "unsafe-url" => Some(full),
        // "strict-origin-when-cross-origin", the default.
        _ => {
            if same {
                Some(full)
            } else if downgrade {
                None
            } else {
                Some(origin_only)
            }
        }
    }
}

/// The error and its sources, for messages.
fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// Classifies an error from sending a request (before the response head).
pub(crate) fn classify_request_error(e: &hyper_util::client::legacy::Error) -> NetworkError {
    let message = error_chain(e);
    let mut src: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return NetworkError {
                kind: if c.is_temporary() {
                    NetworkErrorKind::Temporary
                } else {
                    NetworkErrorKind::Fatal
                },
                message,
                cause: c.cause,
            };
        }
        if s.downcast_ref::<BodyReadError>().is_some() {
            return NetworkError::fatal(message);
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            // HTTP/1.1: a head over hyper's limits (its read buffer, about 400 KiB, or
            // MAX_HTTP1_HEADERS fields). Retrying gets the same; say which limit.
            // AD-HOC: hyper tells this parse error apart (`is_parse_too_large`) only with its
            // server feature, which a client does not build; its message is fixed text.
            if h.is_parse() && h.to_string().contains("too large") {
                return NetworkError::fatal(format!(
                    "the response's headers are larger than this host accepts (about 400 KiB or \
                     1,024 header fields over HTTP/1.1): {message}"
                ))
                .with_cause(NetworkErrorCause::Protocol);
            }
            if h.is_parse() || h.is_parse_status() || h.is_parse_version_h2() {
                return NetworkError::fatal(format!("bad response: {message}"))
                    .with_cause(NetworkErrorCause::Protocol);
            }
            if h.is_user() && !h.is_body_write_aborted() {
                // A body error is found further down the chain; anything else the user (this
                // host) did wrong will not improve by retrying.
                let mut inner = s.source();
                while let Some(i) = inner {
                    if i.downcast_ref::<BodyReadError>().is_some() {
                        return NetworkError::fatal(message);
                    }
                    inner = i.source();
                }
            }
        }
        // HTTP/2: a response this host refused itself (PROTOCOL_ERROR raised here, not by the
        // server): a malformed one, or one whose header list is larger than
        // SETTINGS_MAX_HEADER_LIST_SIZE. Retrying gets the same.
        if let Some(h2) = s.downcast_ref::<h2::Error>()
            && h2.is_library()
            && h2.reason() == Some(h2::Reason::PROTOCOL_ERROR)
        {
            return NetworkError::fatal(format!(
                "a malformed HTTP/2 response, or a header list larger than this host accepts: {message}"
            ))
            .with_cause(NetworkErrorCause::Protocol);
        }
        src = s.source();
    }
    // Connection closed or reset before the head, canceled, HTTP/2 stream errors: temporary.
    NetworkError::temporary(message).with_cause(NetworkErrorCause::Reset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_range_uses_only_strong_validators() {
        let v = |e: Option<&str>, l: Option<&str>, d: Option<&str>| Validators {
            etag: e.map(Into::into),
            last_modified: l.map(Into::into),
            date: d.map(Into::into),
        };
        const LM: &str = "Tue, 15 Nov 1994 12:45:26 GMT";
        const LATER: &str = "Tue, 15 Nov 1994 12:46:26 GMT";
        const SOON: &str = "Tue, 15 Nov 1994 12:46:25 GMT";
        assert_eq!(
            if_range_value(&v(Some("\"abc\""), Some(LM), Some(LATER))).as_deref(),
            Some("\"abc\"")
        );
        // A weak ETag: neither it nor the date.
        assert_eq!(
            if_range_value(&v(Some("W/\"abc\""), Some(LM), Some(LATER))),
            None
        );
        assert_eq!(if_range_value(&v(Some("\"a\", \"b\""), None, None)), None);
        // No ETag: a Last-Modified at least 60 s before the Date.
        assert_eq!(
            if_range_value(&v(None, Some(LM), Some(LATER))).as_deref(),
            Some(LM)
        );
        assert_eq!(if_range_value(&v(None, Some(LM), Some(SOON))), None);
        assert_eq!(if_range_value(&v(None, Some(LM), None)), None);
        assert_eq!(if_range_value(&v(None, None, None)), None);
    }

    #[test]
    fn referrer_policies() {
        let r = Url::parse("https://a.test/page?q#frag").unwrap();
        let same = Url::parse("https://a.test/x").unwrap();
        let cross = Url::parse("https://b.test/x").unwrap();
        let down = Url::parse("http://b.test/x").unwrap();
        let rv = |p: &str, t: &Url| referrer_value(Some(&r), p, t);
        assert_eq!(rv("", &same).as_deref(), Some("https://a.test/page?q"));
        assert_eq!(rv("", &cross).as_deref(), Some("https://a.test/"));
        assert_eq!(rv("", &down), None);
        assert_eq!(rv("no-referrer", &same), None);
        assert_eq!(
            rv("unsafe-url", &down).as_deref(),
            Some("https://a.test/page?q")
        );
        assert_eq!(rv("same-origin", &cross), None);
        assert_eq!(rv("origin", &same).as_deref(), Some("https://a.test/"));
        assert_eq!(referrer_value(None, "", &same), None);
    }
}
