//! Requests as the engine keeps them, the `RequestInit` and `RequestInfo` script passes, and
//! the `Request` constructor.

use super::headers::{HeaderList, is_forbidden_request_header, is_header_value, is_token};
use crate::error::DomError;
use serde::{Deserialize, Serialize};
use url::Url;

/// A request's mode.
///
/// <https://fetch.spec.whatwg.org/#concept-request-mode>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RequestMode {
    /// `"same-origin"`
    SameOrigin,
    /// `"cors"` (the default for a URL string)
    #[default]
    Cors,
    /// `"no-cors"` (rejected by `BackgroundFetchManager.fetch()`)
    NoCors,
    /// `"navigate"`
    Navigate,
}

/// A request's credentials mode.
///
/// <https://fetch.spec.whatwg.org/#concept-request-credentials-mode>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum CredentialsMode {
    /// `"omit"`
    Omit,
    /// `"same-origin"` (the default)
    #[default]
    SameOrigin,
    /// `"include"`
    Include,
}

/// A request's redirect mode.
///
/// <https://fetch.spec.whatwg.org/#concept-request-redirect-mode>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RedirectMode {
    /// `"follow"` (the default)
    #[default]
    Follow,
    /// `"error"`
    Error,
    /// `"manual"`
    Manual,
}

/// A request's cache mode (kept so the network host can honour it).
///
/// <https://fetch.spec.whatwg.org/#concept-request-cache-mode>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum CacheMode {
    /// `"default"`
    #[default]
    Default,
    /// `"no-store"`
    NoStore,
    /// `"reload"`
    Reload,
    /// `"no-cache"`
    NoCache,
    /// `"force-cache"`
    ForceCache,
    /// `"only-if-cached"`
    OnlyIfCached,
}

/// A Fetch *request* as the engine keeps it: everything but the body, which the store holds.
/// This is the record's request after `fetch()` step 6 (client set to null; the caller's
/// origin and policy are captured separately in [`crate::ClientSnapshot`]).
///
/// <https://fetch.spec.whatwg.org/#concept-request>
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The request URL.
    pub url: Url,
    /// The method, normalised (`GET`, `POST`, ...).
    pub method: String,
    /// The header list.
    pub headers: HeaderList,
    /// The mode.
    pub mode: RequestMode,
    /// The credentials mode.
    pub credentials: CredentialsMode,
    /// The redirect mode.
    pub redirect: RedirectMode,
    /// The cache mode.
    pub cache: CacheMode,
    /// The referrer, resolved at `fetch()` time (`None` = `"no-referrer"`).
    pub referrer: Option<Url>,
    /// The integrity metadata (empty when none).
    pub integrity: String,
    /// Whether the request has a body, and its length in bytes when it has one. The bytes
    /// themselves are in the store (`fetch()` reads them in full before resolving).
    pub body_length: Option<u64>,
    /// The body's `Content-Type` as the Request constructor extracted it, if any.
    pub body_content_type: Option<String>,
}

impl Request {
    /// A plain `GET` request for `url` with the defaults a URL string gets from the
    /// `Request` constructor.
    pub fn get(url: Url) -> Self {
        Request {
            url,
            method: "GET".into(),
            headers: HeaderList::new(),
            mode: RequestMode::Cors,
            credentials: CredentialsMode::SameOrigin,
            redirect: RedirectMode::Follow,
            cache: CacheMode::Default,
            referrer: None,
            integrity: String::new(),
            body_length: None,
            body_content_type: None,
        }
    }

    /// Whether the method is `GET` (only `GET` records are retried and paused).
    pub fn is_get(&self) -> bool {
        self.method == "GET"
    }
}

/// A request body given to `fetch()`: bytes in hand, or a stream that is read in full into the
/// store before `fetch()` resolves.
pub enum RequestBody {
    /// Bytes in hand (string, `ArrayBuffer`, `Blob`, ... already extracted by the bindings).
    Bytes(bytes::Bytes),
    /// A `ReadableStream` body. An `Err` item means the stream errored (`fetch()` then rejects
    /// with a `TypeError`).
    Stream(futures::stream::BoxStream<'static, Result<bytes::Bytes, DomError>>),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Bytes(b) => write!(f, "RequestBody::Bytes({} bytes)", b.len()),
            RequestBody::Stream(_) => f.write_str("RequestBody::Stream(..)"),
        }
    }
}

impl From<&'static str> for RequestBody {
    fn from(s: &'static str) -> Self {
        RequestBody::Bytes(bytes::Bytes::from_static(s.as_bytes()))
    }
}
impl From<String> for RequestBody {
    fn from(s: String) -> Self {
        RequestBody::Bytes(bytes::Bytes::from(s))
    }
}
impl From<Vec<u8>> for RequestBody {
    fn from(v: Vec<u8>) -> Self {
        RequestBody::Bytes(bytes::Bytes::from(v))
    }
}

/// `RequestInit`: the second argument of the `Request` constructor.
///
/// <https://fetch.spec.whatwg.org/#requestinit>
#[derive(Debug, Default)]
pub struct RequestInit {
    /// `method`
    pub method: Option<String>,
    /// `headers` (replaces the input request's headers when present)
    pub headers: Option<Vec<(String, String)>>,
    /// `body`
    pub body: Option<RequestBody>,
    /// `body` as given has this `Content-Type` (what "extract a body" produced), if any.
    pub content_type: Option<String>,
    /// `mode`
    pub mode: Option<RequestMode>,
    /// `credentials`
    pub credentials: Option<CredentialsMode>,
    /// `redirect`
    pub redirect: Option<RedirectMode>,
    /// `cache`
    pub cache: Option<CacheMode>,
    /// `integrity`
    pub integrity: Option<String>,
}

impl RequestInit {
    fn is_empty(&self) -> bool {
        self.method.is_none()
            && self.headers.is_none()
            && self.body.is_none()
            && self.mode.is_none()
            && self.credentials.is_none()
            && self.redirect.is_none()
            && self.cache.is_none()
            && self.integrity.is_none()
    }
}

/// A script-side `Request` object: a request plus its (not yet stored) body.
#[derive(Debug)]
pub struct RequestObject {
    /// The internal request.
    pub request: Request,
    /// The body, if any.
    pub body: Option<RequestBody>,
}

/// `RequestInfo`: a URL string or a `Request` object.
///
/// <https://fetch.spec.whatwg.org/#requestinfo>
#[derive(Debug)]
pub enum RequestInfo {
    /// A URL string, resolved against the caller's API base URL.
    Url(String),
    /// A `Request` object (already constructed, possibly with a body).
    Request(Box<RequestObject>),
}

impl From<&str> for RequestInfo {
    fn from(s: &str) -> Self {
        RequestInfo::Url(s.to_owned())
    }
}
impl From<String> for RequestInfo {
    fn from(s: String) -> Self {
        RequestInfo::Url(s)
    }
}
impl From<RequestObject> for RequestInfo {
    fn from(r: RequestObject) -> Self {
        RequestInfo::Request(Box::new(r))
    }
}

/// Methods the `Request` constructor refuses.
///
/// <https://fetch.spec.whatwg.org/#forbidden-method>
const FORBIDDEN_METHODS: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];

/// <https://fetch.spec.whatwg.org/#cors-safelisted-method>
pub fn is_cors_safelisted_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "POST")
}

/// The `Request` constructor (`new Request(input, init)`), reduced to what a browser-side
/// component can check without a JS realm: URL parsing against the API base URL, credentials in
/// the URL, method validation and normalisation, mode/body consistency, header validity.
/// Forbidden request headers are dropped silently, as the `"request"` headers guard does.
///
/// <https://fetch.spec.whatwg.org/#dom-request>
pub fn construct_request(
    input: RequestInfo,
    init: RequestInit,
    base_url: &Url,
) -> Result<RequestObject, DomError> {
    let init_empty = init.is_empty();
    let (mut request, mut body) = match input {
        RequestInfo::Url(s) => {
            // 5.1. Let parsedURL be the result of parsing input with baseURL.
            // 5.2. If parsedURL is failure, then throw a TypeError.
            let parsed = base_url.join(&s).map_err(|e| {
                DomError::type_error(format!("Failed to parse URL from {s:?}: {e}"))
            })?;
            // 5.3. If parsedURL includes credentials, then throw a TypeError.
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(DomError::type_error(format!(
                    "Request cannot be constructed from a URL that includes credentials: {s:?}"
                )));
            }
            (Request::get(parsed), None)
        }
        RequestInfo::Request(obj) => {
            let obj = *obj;
            (obj.request, obj.body)
        }
    };
    // 12. If init is not empty, then: if request's mode is "navigate", set it to "same-origin".
    if !init_empty && request.mode == RequestMode::Navigate {
        request.mode = RequestMode::SameOrigin;
    }
    // 23. If init["mode"] exists: if mode is "navigate", throw a TypeError.
    if let Some(mode) = init.mode {
        if mode == RequestMode::Navigate {
            return Err(DomError::type_error(
                "Request constructor: mode \"navigate\" cannot be set from script",
            ));
        }
        request.mode = mode;
    }
    if let Some(c) = init.credentials {
        request.credentials = c;
    }
    if let Some(c) = init.cache {
        if c == CacheMode::OnlyIfCached && request.mode != RequestMode::SameOrigin {
            return Err(DomError::type_error(
                "Request constructor: cache \"only-if-cached\" requires mode \"same-origin\"",
            ));
        }
        request.cache = c;
    }
    if let Some(r) = init.redirect {
        request.redirect = r;
    }
    if let Some(i) = init.integrity {
        request.integrity = i;
    }
    // 25. If init["method"] exists: validate and normalise it.
    if let Some(method) = init.method {
        if !is_token(&method) {
            return Err(DomError::type_error(format!(
                "Request constructor: {method:?} is not a valid HTTP method"
            )));
        }
        let upper = method.to_ascii_uppercase();
        if FORBIDDEN_METHODS.contains(&upper.as_str()) {
            return Err(DomError::type_error(format!(
                "Request constructor: {method:?} is a forbidden method"
            )));
        }
        // Normalize: byte-uppercase DELETE, GET, HEAD, OPTIONS, POST, PUT.
        request.method = if matches!(
            upper.as_str(),
            "DELETE" | "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT"
        ) {
            upper
        } else {
            method
        };
    }
    // 31-32. Headers: a new header list from init["headers"], under the "request" guard.
    if let Some(headers) = init.headers {
        let mut list = HeaderList::new();
        for (name, value) in headers {
            let value = value.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
            if !is_token(&name) || !is_header_value(value) {
                return Err(DomError::type_error(format!(
                    "Request constructor: invalid header {name:?}"
                )));
            }
            if is_forbidden_request_header(&name) {
                continue;
            }
            list.append(&name, value);
        }
        request.headers = list;
    }
    // 30. If this's request's mode is "no-cors": if method is not CORS-safelisted, throw.
    if request.mode == RequestMode::NoCors && !is_cors_safelisted_method(&request.method) {
        return Err(DomError::type_error(format!(
            "Request constructor: method {} is not allowed in no-cors mode",
            request.method
        )));
    }
    // 34-35. If init["body"] exists and is non-null, or inputBody is non-null, and request's
    // method is GET or HEAD, then throw a TypeError.
    if let Some(b) = init.body {
        body = Some(b);
        if let Some(ct) = init.content_type {
            request.body_content_type = Some(ct.clone());
            if !request.headers.contains("content-type") {
                request.headers.append("content-type", ct);
            }
        }
    }
    if body.is_some() && (request.method == "GET" || request.method == "HEAD") {
        return Err(DomError::type_error(
            "Request constructor: a request with a GET or HEAD method cannot have a body",
        ));
    }
    request.body_length = match &body {
        Some(RequestBody::Bytes(b)) => Some(b.len() as u64),
        Some(RequestBody::Stream(_)) => Some(0),
        None => None,
    };
    Ok(RequestObject { request, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://example.com/background-fetch/page.html").unwrap()
    }

    #[test]
    fn url_string_resolves_against_base() {
        let r =
            construct_request("resources/a.txt".into(), RequestInit::default(), &base()).unwrap();
        assert_eq!(
            r.request.url.as_str(),
            "https://example.com/background-fetch/resources/a.txt"
        );
        assert_eq!(r.request.mode, RequestMode::Cors);
        assert_eq!(r.request.credentials, CredentialsMode::SameOrigin);
    }

    #[test]
    fn empty_url_is_the_base() {
        let r = construct_request("".into(), RequestInit::default(), &base()).unwrap();
        assert_eq!(r.request.url, base());
    }

    #[test]
    fn credentials_in_url_throw_type_error() {
        for u in [
            "https://user:pass@domain/secret.txt",
            "https://username:@example.com",
            "https://:password@example.com",
        ] {
            let e = construct_request(u.into(), RequestInit::default(), &base()).unwrap_err();
            assert_eq!(e.name(), "TypeError", "{u}");
        }
    }

    #[test]
    fn invalid_url_throws_type_error() {
        let e =
            construct_request("http://[::1".into(), RequestInit::default(), &base()).unwrap_err();
        assert_eq!(e.name(), "TypeError");
    }

    #[test]
    fn methods_are_validated_and_normalised() {
        let mk = |m: &str| {
            construct_request(
                "x".into(),
                RequestInit {
                    method: Some(m.into()),
                    ..Default::default()
                },
                &base(),
            )
        };
        assert_eq!(mk("put").unwrap().request.method, "PUT");
        assert_eq!(mk("patch").unwrap().request.method, "patch");
        assert_eq!(mk("TRACE").unwrap_err().name(), "TypeError");
        assert_eq!(mk("bad method").unwrap_err().name(), "TypeError");
    }

    #[test]
    fn get_with_body_throws() {
        let e = construct_request(
            "x".into(),
            RequestInit {
                body: Some("abc".into()),
                ..Default::default()
            },
            &base(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "TypeError");
    }

    #[test]
    fn no_cors_with_put_throws_but_get_is_constructible() {
        let e = construct_request(
            "x".into(),
            RequestInit {
                method: Some("PUT".into()),
                mode: Some(RequestMode::NoCors),
                ..Default::default()
            },
            &base(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "TypeError");
        let ok = construct_request(
            "x".into(),
            RequestInit {
                mode: Some(RequestMode::NoCors),
                ..Default::default()
            },
            &base(),
        )
        .unwrap();
        assert_eq!(ok.request.mode, RequestMode::NoCors);
    }

    #[test]
    fn forbidden_headers_are_dropped_and_invalid_ones_throw() {
        let r = construct_request(
            "x".into(),
            RequestInit {
                headers: Some(vec![
                    ("X-Custom".into(), "1".into()),
                    ("Cookie".into(), "a=b".into()),
                    ("Sec-Foo".into(), "x".into()),
                ]),
                ..Default::default()
            },
            &base(),
        )
        .unwrap();
        assert_eq!(r.request.headers.len(), 1);
        assert_eq!(r.request.headers.get_str("x-custom").as_deref(), Some("1"));
        let e = construct_request(
            "x".into(),
            RequestInit {
                headers: Some(vec![("X-A".into(), "a\nb".into())]),
                ..Default::default()
            },
            &base(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "TypeError");
    }

    #[test]
    fn body_sets_length_and_content_type() {
        let r = construct_request(
            "upload".into(),
            RequestInit {
                method: Some("POST".into()),
                body: Some("Background Fetch!".into()),
                content_type: Some("text/plain;charset=UTF-8".into()),
                ..Default::default()
            },
            &base(),
        )
        .unwrap();
        assert_eq!(r.request.body_length, Some(17));
        assert_eq!(
            r.request.headers.get_str("content-type").as_deref(),
            Some("text/plain;charset=UTF-8")
        );
    }

    #[test]
    fn combined_header_values_join_with_comma_space() {
        let mut h = HeaderList::new();
        h.append("Vary", "a");
        h.append("vary", "b");
        assert_eq!(h.get_combined("VARY").unwrap(), b"a, b");
        assert_eq!(h.get_combined("etag"), None);
        h.set("Vary", "c");
        assert_eq!(h.get_str("vary").as_deref(), Some("c"));
    }

    #[test]
    fn navigate_mode_input_becomes_same_origin_when_init_is_not_empty() {
        let mut req = Request::get(base());
        req.mode = RequestMode::Navigate;
        let obj = RequestObject {
            request: req,
            body: None,
        };
        let kept = construct_request(
            RequestObject {
                request: obj.request.clone(),
                body: None,
            }
            .into(),
            RequestInit::default(),
            &base(),
        )
        .unwrap();
        assert_eq!(kept.request.mode, RequestMode::Navigate);
        let changed = construct_request(
            obj.into(),
            RequestInit {
                credentials: Some(CredentialsMode::Omit),
                ..Default::default()
            },
            &base(),
        )
        .unwrap();
        assert_eq!(changed.request.mode, RequestMode::SameOrigin);
    }
}
