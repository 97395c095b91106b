//! Fetch's CORS protocol as a [`NetworkHost`] wrapper: what a browser's network stack does
//! before the engine sees a cross-origin response.
//!
//! In this architecture CORS is the network host's duty (the engine stores what the host hands
//! it). The real-socket host (`background-fetch-hyper`) implements it separately; this one
//! wraps any host (here the loopback [`crate::server::WptServer`]) so the WPT subtests that
//! need CORS run against the same rules. For a request whose URL's origin is not the caller's
//! origin ([`NetworkRequest::client`]) and whose mode is `"cors"`:
//!
//! 1. **Preflight** ([CORS-preflight fetch]) when the method is not a CORS-safelisted method or a
//!    header is not a CORS-safelisted request-header: an `OPTIONS` request with
//!    `Access-Control-Request-Method` and `Access-Control-Request-Headers`, never credentialed.
//!    It succeeds when its response passes the CORS check, has an ok status, and its
//!    `Access-Control-Allow-Methods` / `-Headers` cover the request (`*` only when the
//!    credentials mode is not `"include"`; `*` never covers `Authorization`).
//!    There is no preflight cache: every attempt preflights again.
//! 2. The request itself, with an `Origin` header.
//! 3. **CORS check** ([CORS check]) of the response head: `Access-Control-Allow-Origin` must be
//!    the caller's origin, or `*` when the credentials mode is not `"include"`; with
//!    `"include"`, `Access-Control-Allow-Credentials` must be `true`.
//! 4. On success the head becomes a **CORS filtered response**: type `cors`, headers limited to
//!    the CORS-safelisted response-header names and those `Access-Control-Expose-Headers`
//!    lists (`*` exposes all when not credentialed). `Content-Range` is kept as well: the
//!    engine needs it to validate a resumed `206`, and removes it before exposing a response.
//! 5. On failure the attempt ends with [`NetworkEvent::Error`] of kind
//!    [`background_fetch::NetworkErrorKind::Blocked`]`(`[`BlockReason::Cors`]`)` **before any
//!    body byte**, and
//!    the inner transfer is dropped (cancelled): nothing of the response reaches the engine, so
//!    nothing is counted (`downloaded` stays 0).
//!
//! A cross-origin request in mode `"same-origin"` is a network error (blocked) without a
//! request. Other modes pass through untouched (the engine rejects `"no-cors"` in `fetch()`).
//! Redirects are not modelled (the scripted network has none).
//!
//! [CORS-preflight fetch]: https://fetch.spec.whatwg.org/#cors-preflight-fetch
//! [CORS check]: https://fetch.spec.whatwg.org/#concept-cors-check

use background_fetch::{
    BlockReason, CredentialsMode, HeaderList, NetworkError, NetworkEvent, NetworkHost,
    NetworkRequest, Request, RequestMode, ResponseHead, ResponseType, is_cors_safelisted_method,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;

/// A [`NetworkHost`] that runs Fetch's CORS protocol in front of `inner`.
#[derive(Clone)]
pub struct CorsNetwork {
    inner: Arc<dyn NetworkHost>,
}

impl CorsNetwork {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn NetworkHost>) -> Self {
        CorsNetwork { inner }
    }
}

/// Whether a request from `client_origin` to `request` is cross-origin.
pub fn is_cross_origin(client_origin: &str, request: &Request) -> bool {
    request.url.origin().ascii_serialization() != client_origin
}

pub use background_fetch::fetch::cors::{
    cors_unsafe_request_header_names, is_cors_safelisted_request_header,
};

/// The values of a comma-separated header, trimmed, empty entries dropped.
fn header_list_values(headers: &HeaderList, name: &str) -> Vec<String> {
    headers
        .get_str(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The CORS check of `response` for `request` made by `client_origin`.
///
/// <https://fetch.spec.whatwg.org/#concept-cors-check>
pub fn cors_check(
    request: &Request,
    client_origin: &str,
    response: &ResponseHead,
) -> Result<(), String> {
    // 1. Let origin be the result of getting `Access-Control-Allow-Origin` from response's
    //    header list.
    let Some(origin) = response.headers.get_str("access-control-allow-origin") else {
        // 2. If origin is null, then return failure.
        return Err("the response has no Access-Control-Allow-Origin header".into());
    };
    // 3. If request's credentials mode is not "include" and origin is `*`, then return success.
    if request.credentials != CredentialsMode::Include && origin == "*" {
        return Ok(());
    }
    // 4. If the result of byte-serializing a request origin with request is not origin, then
    //    return failure.
    if origin != client_origin {
        return Err(format!(
            "Access-Control-Allow-Origin {origin:?} does not allow {client_origin:?}{}",
            if origin == "*" {
                " (a wildcard is refused for credentials mode \"include\")"
            } else {
                ""
            }
        ));
    }
    // 5. If request's credentials mode is not "include", then return success.
    if request.credentials != CredentialsMode::Include {
        return Ok(());
    }
    // 6. Let credentials be the result of getting `Access-Control-Allow-Credentials`.
    // 7. If credentials is `true`, then return success.
    if response
        .headers
        .get_str("access-control-allow-credentials")
        .as_deref()
        == Some("true")
    {
        return Ok(());
    }
    // 8. Return failure.
    Err("credentials mode \"include\" needs Access-Control-Allow-Credentials: true".into())
}

/// The checks of a CORS-preflight fetch on its response (steps 7.1 to 7.9).
pub fn check_preflight_response(
    request: &Request,
    client_origin: &str,
    response: &ResponseHead,
) -> Result<(), String> {
    // 7. If a CORS check for request and response returns success and response's status is an
    //    ok status, then:
    cors_check(request, client_origin, response)?;
    if !response.is_ok() {
        return Err(format!(
            "the preflight response's status {} is not ok",
            response.status
        ));
    }
    let include = request.credentials == CredentialsMode::Include;
    // 7.1. Let methods be the result of extracting header list values given
    //      `Access-Control-Allow-Methods`.
    let methods = header_list_values(&response.headers, "access-control-allow-methods");
    // 7.2. Let headerNames be the result of extracting header list values given
    //      `Access-Control-Allow-Headers`.
    let header_names = header_list_values(&response.headers, "access-control-allow-headers");
    // 7.5. If request's method is not in methods, request's method is not a CORS-safelisted
    //      method, and request's credentials mode is "include" or methods does not contain
    //      `*`, then return a network error.
    if !methods.contains(&request.method)
        && !is_cors_safelisted_method(&request.method)
        && (include || !methods.iter().any(|m| m == "*"))
    {
        return Err(format!(
            "the preflight does not allow method {} (Access-Control-Allow-Methods: {methods:?})",
            request.method
        ));
    }
    // 7.6. If one of request's header list's names is a CORS non-wildcard request-header name
    //      and is not a byte-case-insensitive match for an item in headerNames, then return a
    //      network error.
    // 7.7. For each unsafeName of the CORS-unsafe request-header names with request's header
    //      list: if unsafeName is not a byte-case-insensitive match for an item in headerNames
    //      and request's credentials mode is "include" or headerNames does not contain `*`,
    //      return a network error.
    let listed = |n: &str| header_names.iter().any(|h| h.eq_ignore_ascii_case(n));
    let wildcard = !include && header_names.iter().any(|h| h == "*");
    for (name, _) in request.headers.iter() {
        if name.eq_ignore_ascii_case("authorization") && !listed(name) {
            return Err("the preflight does not allow the Authorization header".into());
        }
    }
    for name in cors_unsafe_request_header_names(&request.headers) {
        if !listed(&name) && !wildcard {
            return Err(format!(
                "the preflight does not allow header {name} (Access-Control-Allow-Headers: {header_names:?})"
            ));
        }
    }
    Ok(())
}

use background_fetch::fetch::cors::CORS_SAFELISTED_RESPONSE_HEADER_NAMES as SAFELISTED_RESPONSE_HEADERS;

/// The CORS filtered response of `head` (type `cors`, headers filtered), for a request in
/// credentials mode `credentials`.
///
/// <https://fetch.spec.whatwg.org/#concept-filtered-response-cors>
pub fn cors_filtered_response(
    mut head: ResponseHead,
    credentials: CredentialsMode,
) -> ResponseHead {
    let exposed = header_list_values(&head.headers, "access-control-expose-headers");
    let expose_all = credentials != CredentialsMode::Include && exposed.iter().any(|h| h == "*");
    let keep = |name: &str| {
        if name.eq_ignore_ascii_case("set-cookie") || name.eq_ignore_ascii_case("set-cookie2") {
            return false;
        }
        expose_all
            || SAFELISTED_RESPONSE_HEADERS.contains(&name)
            || exposed.iter().any(|h| h.eq_ignore_ascii_case(name))
    };
    let filtered: HeaderList = head
        .headers
        .iter()
        .filter(|(n, _)| keep(n))
        .map(|(n, v)| (n.to_owned(), v.to_vec()))
        .collect();
    // The unfiltered validators stay with the head, unexposed, for resumption.
    head.resume_headers = ResponseHead::resume_headers_from(&head.headers, &filtered);
    head.headers = filtered;
    head.response_type = ResponseType::Cors;
    head
}

fn blocked(message: String) -> NetworkEvent {
    NetworkEvent::Error(NetworkError::blocked(BlockReason::Cors, message))
}

impl NetworkHost for CorsNetwork {
    fn fetch(&self, mut request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let origin = request.client.origin.clone();
        if !is_cross_origin(&origin, &request.request) {
            return self.inner.fetch(request);
        }
        match request.request.mode {
            RequestMode::Cors => {}
            RequestMode::SameOrigin => {
                return futures::stream::iter([NetworkEvent::Error(NetworkError::blocked(
                    BlockReason::Cors,
                    "a cross-origin request in mode \"same-origin\"",
                ))])
                .boxed();
            }
            RequestMode::NoCors | RequestMode::Navigate => return self.inner.fetch(request),
        }
        let inner = self.inner.clone();
        let needs_preflight = !is_cors_safelisted_method(&request.request.method)
            || !cors_unsafe_request_header_names(&request.request.headers).is_empty();
        let attempt = async move {
            if needs_preflight {
                let mut preflight = request.request.clone();
                let unsafe_names = cors_unsafe_request_header_names(&preflight.headers);
                preflight.method = "OPTIONS".into();
                preflight.credentials = CredentialsMode::Omit;
                preflight.body_length = None;
                preflight.body_content_type = None;
                let mut headers = HeaderList::new();
                headers.append("accept", "*/*");
                headers.append("access-control-request-method", &request.request.method);
                if !unsafe_names.is_empty() {
                    headers.append("access-control-request-headers", unsafe_names.join(","));
                }
                headers.append("origin", &origin);
                preflight.headers = headers;
                let mut events = inner.fetch(NetworkRequest {
                    request: preflight,
                    body: None,
                    range_start: None,
                    validators: Default::default(),
                    client: request.client.clone(),
                    fetch: request.fetch,
                    record: request.record,
                });
                let head = loop {
                    match events.next().await {
                        Some(NetworkEvent::Response(head)) => break Ok(head),
                        Some(NetworkEvent::UploadProgress(_)) => continue,
                        Some(NetworkEvent::Data(_)) => {
                            break Err("the preflight sent body bytes before a response".into());
                        }
                        Some(NetworkEvent::Error(e)) => break Err(format!("preflight: {e}")),
                        None => break Err("the preflight ended without a response".into()),
                    }
                };
                drop(events);
                if let Err(reason) =
                    head.and_then(|head| check_preflight_response(&request.request, &origin, &head))
                {
                    return futures::stream::iter([blocked(format!(
                        "CORS preflight failed: {reason}"
                    ))])
                    .boxed();
                }
            }
            let checked = request.request.clone();
            request.request.headers.append("origin", &origin);
            let events = inner.fetch(request);
            futures::stream::unfold(Some(events), move |state| {
                let checked = checked.clone();
                let origin = origin.clone();
                async move {
                    let mut events = state?;
                    let event = events.next().await?;
                    Some(match event {
                        NetworkEvent::Response(head) => {
                            match cors_check(&checked, &origin, &head) {
                                Ok(()) => (
                                    NetworkEvent::Response(cors_filtered_response(
                                        head,
                                        checked.credentials,
                                    )),
                                    Some(events),
                                ),
                                // Dropping `events` cancels the transfer before any body byte.
                                Err(reason) => {
                                    (blocked(format!("CORS check failed: {reason}")), None)
                                }
                            }
                        }
                        other => (other, Some(events)),
                    })
                }
            })
            .boxed()
        };
        futures::stream::once(attempt).flatten().boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn request(url: &str) -> Request {
        Request::get(Url::parse(url).unwrap())
    }

    fn head(headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status: 200,
            status_text: String::new(),
            headers: headers.iter().copied().collect(),
            url_list: vec![],
            response_type: ResponseType::Basic,
            resume_headers: Default::default(),
        }
    }

    const ME: &str = "https://web-platform.test";

    #[test]
    fn safelisted_request_headers() {
        assert!(is_cors_safelisted_request_header("Accept", b"*/*"));
        assert!(is_cors_safelisted_request_header(
            "content-type",
            b"text/plain;charset=UTF-8"
        ));
        assert!(!is_cors_safelisted_request_header(
            "content-type",
            b"text/json"
        ));
        assert!(!is_cors_safelisted_request_header("X-Custom-Header", b"x"));
        assert!(is_cors_safelisted_request_header("range", b"bytes=10-"));
        assert!(!is_cors_safelisted_request_header("range", b"bytes=10-5"));
        let mut h = HeaderList::new();
        h.append("X-B", "1");
        h.append("x-a", "1");
        h.append("Content-Type", "text/json");
        h.append("Accept", "*/*");
        assert_eq!(
            cors_unsafe_request_header_names(&h),
            vec!["content-type", "x-a", "x-b"]
        );
    }

    #[test]
    fn cors_check_wildcard_and_credentials() {
        let mut r = request("https://www1.web-platform.test/x");
        assert!(cors_check(&r, ME, &head(&[("Access-Control-Allow-Origin", "*")])).is_ok());
        assert!(cors_check(&r, ME, &head(&[])).is_err());
        assert!(cors_check(&r, ME, &head(&[("Access-Control-Allow-Origin", ME)])).is_ok());
        assert!(
            cors_check(
                &r,
                ME,
                &head(&[("Access-Control-Allow-Origin", "https://other.test")])
            )
            .is_err()
        );
        r.credentials = CredentialsMode::Include;
        assert!(cors_check(&r, ME, &head(&[("Access-Control-Allow-Origin", "*")])).is_err());
        assert!(cors_check(&r, ME, &head(&[("Access-Control-Allow-Origin", ME)])).is_err());
        assert!(
            cors_check(
                &r,
                ME,
                &head(&[
                    ("Access-Control-Allow-Origin", ME),
                    ("Access-Control-Allow-Credentials", "true")
                ])
            )
            .is_ok()
        );
    }

    #[test]
    fn preflight_methods_and_headers() {
        let mut put = request("https://www1.web-platform.test/x");
        put.method = "PUT".into();
        let allow = |h: &[(&str, &str)]| check_preflight_response(&put, ME, &head(h));
        assert!(allow(&[("Access-Control-Allow-Origin", "*")]).is_err());
        assert!(
            allow(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "GET, PUT")
            ])
            .is_ok()
        );
        assert!(
            allow(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "*")
            ])
            .is_ok()
        );
        let mut custom = request("https://www1.web-platform.test/x");
        custom.headers.append("X-Custom-Header", "SecretValue");
        let allow = |h: &[(&str, &str)]| check_preflight_response(&custom, ME, &head(h));
        assert!(allow(&[("Access-Control-Allow-Origin", "*")]).is_err());
        assert!(
            allow(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "x-custom-header")
            ])
            .is_ok()
        );
        assert!(
            allow(&[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "*")
            ])
            .is_ok()
        );
        custom.credentials = CredentialsMode::Include;
        assert!(
            check_preflight_response(
                &custom,
                ME,
                &head(&[
                    ("Access-Control-Allow-Origin", ME),
                    ("Access-Control-Allow-Credentials", "true"),
                    ("Access-Control-Allow-Headers", "*")
                ])
            )
            .is_err(),
            "a wildcard does not cover credentialed requests"
        );
        let mut bad_status = head(&[
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Headers", "*"),
        ]);
        bad_status.status = 404;
        assert!(check_preflight_response(&custom, ME, &bad_status).is_err());
    }

    #[test]
    fn filtered_responses_keep_safelisted_and_exposed_headers() {
        let h = head(&[
            ("Content-Type", "text/plain"),
            ("X-Secret-Header", "SuperSecretValue"),
            ("X-Exposed", "1"),
            ("Access-Control-Expose-Headers", "x-exposed"),
            ("Set-Cookie", "a=b"),
        ]);
        let f = cors_filtered_response(h.clone(), CredentialsMode::SameOrigin);
        assert_eq!(f.response_type, ResponseType::Cors);
        assert!(f.headers.contains("content-type"));
        assert!(f.headers.contains("x-exposed"));
        assert!(!f.headers.contains("x-secret-header"));
        assert!(!f.headers.contains("set-cookie"));
        let mut all = h;
        all.headers.set("access-control-expose-headers", "*");
        let f = cors_filtered_response(all.clone(), CredentialsMode::Omit);
        assert!(f.headers.contains("x-secret-header"));
        assert!(!f.headers.contains("set-cookie"));
        let f = cors_filtered_response(all, CredentialsMode::Include);
        assert!(!f.headers.contains("x-secret-header"));
    }
}
