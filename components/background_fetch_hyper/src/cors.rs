//! The CORS protocol as Fetch defines it: safelisted request headers, the CORS check, the
//! CORS-preflight check and its cache, and the CORS filtered response's header list.
//!
//! <https://fetch.spec.whatwg.org/#http-cors-protocol>

use background_fetch::HeaderList;
pub use background_fetch::fetch::cors::{
    cors_unsafe_request_header_names, is_cors_safelisted_request_header,
};
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::{Duration, Instant};

/// The combined value of `name` in an HTTP header map (Fetch's *get*).
pub(crate) fn get_combined(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for v in headers.get_all(name) {
        match &mut out {
            None => out = Some(v.as_bytes().to_vec()),
            Some(acc) => {
                acc.extend_from_slice(b", ");
                acc.extend_from_slice(v.as_bytes());
            }
        }
    }
    out
}

/// Fetch's *get, decode, and split* for a list-valued header, keeping non-empty items.
/// `None` when the header is absent; `Err` when an item is not a valid token.
fn get_list(headers: &HeaderMap, name: &str) -> Result<Option<Vec<String>>, String> {
    let Some(v) = get_combined(headers, name) else {
        return Ok(None);
    };
    let s = String::from_utf8_lossy(&v);
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim_matches(|c| matches!(c, ' ' | '\t'));
        if item.is_empty() {
            continue;
        }
        let ok = item == "*"
            || item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            return Err(format!("{name} has an invalid item {item:?}"));
        }
        out.push(item.to_owned());
    }
    Ok(Some(out))
}

/// The CORS check.
///
/// <https://fetch.spec.whatwg.org/#concept-cors-check>
pub fn cors_check(
    headers: &HeaderMap,
    origin: &str,
    include_credentials: bool,
) -> Result<(), String> {
    // 1. Let origin be the result of getting `Access-Control-Allow-Origin` from response's
    //    header list.
    // 2. If origin is null, then return failure.
    let Some(allow) = get_combined(headers, "access-control-allow-origin") else {
        return Err("no Access-Control-Allow-Origin header".into());
    };
    // 3. If request's credentials mode is not "include" and origin is `*`, then return success.
    if !include_credentials && allow == b"*" {
        return Ok(());
    }
    // 4. If the result of byte-serializing a request origin with request is not origin, then
    //    return failure.
    if allow != origin.as_bytes() {
        return Err(format!(
            "Access-Control-Allow-Origin {:?} does not match the origin {origin:?}{}",
            String::from_utf8_lossy(&allow),
            if allow == b"*" {
                " (a wildcard is not allowed with credentials)"
            } else {
                ""
            }
        ));
    }
    // 5. If request's credentials mode is not "include", then return success.
    if !include_credentials {
        return Ok(());
    }
    // 6. Let credentials be the result of getting `Access-Control-Allow-Credentials` from
    //    response's header list.
    // 7. If credentials is `true`, then return success.
    if get_combined(headers, "access-control-allow-credentials").as_deref() == Some(b"true") {
        return Ok(());
    }
    // 8. Return failure.
    Err("credentials mode is \"include\" and Access-Control-Allow-Credentials is not `true`".into())
}

/// What a successful preflight allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightResult {
    /// `Access-Control-Allow-Methods` (as given; `*` kept).
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Headers`, lowercased (`*` kept).
    pub headers: Vec<String>,
    /// `Access-Control-Max-Age` in seconds (default 5).
    pub max_age: u64,
}

/// Steps 7.2 to 7.9 of CORS-preflight fetch: checks a preflight response (which already passed
/// the CORS check and has an ok status) against the request's method and unsafe header names.
///
/// <https://fetch.spec.whatwg.org/#cors-preflight-fetch-0>
pub fn check_preflight(
    headers: &HeaderMap,
    method: &str,
    unsafe_names: &[String],
    include_credentials: bool,
) -> Result<PreflightResult, String> {
    // 7.1. Let methods be the result of extracting header list values given
    //      `Access-Control-Allow-Methods` and response's header list.
    // 7.2. Let headerNames be the result of extracting header list values given
    //      `Access-Control-Allow-Headers` and response's header list.
    // 7.3. If either methods or headerNames is failure, return a network error.
    let methods = get_list(headers, "access-control-allow-methods")?.unwrap_or_default();
    let header_names: Vec<String> = get_list(headers, "access-control-allow-headers")?
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    // 7.4. If methods is null and request's use-CORS-preflight flag is set, then set methods to
    //      a new list containing request's method. (The flag is never set here.)
    // 7.5. If request's method is not in methods, request's method is not a CORS-safelisted
    //      method, and request's credentials mode is "include" or methods does not contain
    //      `*`, then return a network error.
    let method_ok = methods.iter().any(|m| m == method)
        || background_fetch::is_cors_safelisted_method(method)
        || (!include_credentials && methods.iter().any(|m| m == "*"));
    if !method_ok {
        return Err(format!(
            "the preflight does not allow the method {method} (Access-Control-Allow-Methods: {methods:?})"
        ));
    }
    // 7.6. If one of request's header list's names is a CORS non-wildcard request-header name
    //      and is not a byte-case-insensitive match for an item in headerNames, then return a
    //      network error.
    for name in unsafe_names {
        if name == "authorization" && !header_names.iter().any(|h| h == name) {
            return Err("the preflight does not allow the Authorization header (a wildcard does not cover it)".into());
        }
    }
    // 7.7. For each unsafeName of the CORS-unsafe request-header names with request's header
    //      list: if unsafeName is not a byte-case-insensitive match for an item in headerNames
    //      and request's credentials mode is "include" or headerNames does not contain `*`,
    //      return a network error.
    for name in unsafe_names {
        let ok = header_names.iter().any(|h| h == name)
            || (!include_credentials && header_names.iter().any(|h| h == "*"));
        if !ok {
            return Err(format!(
                "the preflight does not allow the header {name} (Access-Control-Allow-Headers: {header_names:?})"
            ));
        }
    }
    // 7.8. Let max-age be the result of extracting header list values given
    //      `Access-Control-Max-Age` and response's header list.
    // 7.9. If max-age is failure or null, then set max-age to 5.
    let max_age = get_combined(headers, "access-control-max-age")
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok())
        .unwrap_or(5);
    Ok(PreflightResult {
        methods,
        headers: header_names,
        max_age,
    })
}

use background_fetch::fetch::cors::CORS_SAFELISTED_RESPONSE_HEADER_NAMES as SAFELISTED_RESPONSE_HEADERS;

/// Headers the engine needs to resume a download ("validate a partial response" and
/// `If-Range`), kept in a CORS filtered response even when not exposed.
///
/// The header list of a CORS filtered response (and, for any response, without the forbidden
/// response-header names).
///
/// <https://fetch.spec.whatwg.org/#concept-filtered-response-cors>
pub fn cors_filter(
    headers: &HeaderList,
    expose: &HeaderMap,
    include_credentials: bool,
) -> HeaderList {
    let exposed: Vec<String> = match get_list(expose, "access-control-expose-headers") {
        Ok(Some(v)) => v.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        _ => Vec::new(),
    };
    // A wildcard exposes every name when credentials are not included.
    let all = !include_credentials && exposed.iter().any(|h| h == "*");
    headers
        .iter()
        .filter(|(name, _)| {
            !is_forbidden_response_header(name)
                && (all
                    || SAFELISTED_RESPONSE_HEADERS.contains(name)
                    || exposed.iter().any(|h| h == name))
        })
        .collect()
}

/// <https://fetch.spec.whatwg.org/#forbidden-response-header-name>
pub fn is_forbidden_response_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("set-cookie") || name.eq_ignore_ascii_case("set-cookie2")
}

/// The CORS-preflight cache: one entry per approved method and per approved header name, each
/// with its own expiry, so that a later preflight adds to what earlier ones approved.
///
/// <https://fetch.spec.whatwg.org/#concept-cache>
#[derive(Default)]
pub(crate) struct PreflightCache {
    entries: Mutex<HashMap<(String, String, bool), Approvals>>,
}

/// What preflights approved for one (origin, URL, credentials): method and header-name cache
/// entries with their expiry.
#[derive(Default)]
struct Approvals {
    methods: HashMap<String, Instant>,
    headers: HashMap<String, Instant>,
}

/// Most (origin, URL, credentials) keys the cache keeps before it drops expired entries (and
/// then everything).
const MAX_CACHE_ENTRIES: usize = 1024;

impl PreflightCache {
    /// Whether fresh entries for (origin, url, credentials) allow `method` and every name of
    /// `unsafe_names` (Fetch's method and header-name cache entry match, a wildcard counting
    /// only without credentials, and never for `Authorization`).
    pub fn allows(
        &self,
        origin: &str,
        url: &str,
        include_credentials: bool,
        method: &str,
        unsafe_names: &[String],
    ) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(a) = entries.get(&(origin.to_owned(), url.to_owned(), include_credentials)) else {
            return false;
        };
        let now = Instant::now();
        let fresh = |m: &HashMap<String, Instant>, k: &str| m.get(k).is_some_and(|e| *e > now);
        let method_ok = background_fetch::is_cors_safelisted_method(method)
            || fresh(&a.methods, method)
            || (!include_credentials && fresh(&a.methods, "*"));
        let headers_ok = unsafe_names.iter().all(|n| {
            fresh(&a.headers, n)
                || (n != "authorization" && !include_credentials && fresh(&a.headers, "*"))
        });
        method_ok && headers_ok
    }

    /// Steps 7.10 and 7.11 of CORS-preflight fetch: for each method and header name the
    /// preflight approved, sets the max-age of its cache entry, or creates one (max-age capped
    /// at 2 hours, as Chromium does).
    pub fn store(
        &self,
        origin: &str,
        url: &str,
        include_credentials: bool,
        result: PreflightResult,
    ) {
        let age = Duration::from_secs(result.max_age.min(7200));
        if age.is_zero() {
            return;
        }
        let now = Instant::now();
        let expires = now + age;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHE_ENTRIES {
            entries.retain(|_, a| {
                a.methods.retain(|_, e| *e > now);
                a.headers.retain(|_, e| *e > now);
                !a.methods.is_empty() || !a.headers.is_empty()
            });
            if entries.len() >= MAX_CACHE_ENTRIES {
                entries.clear();
            }
        }
        let a = entries
            .entry((origin.to_owned(), url.to_owned(), include_credentials))
            .or_default();
        for m in result.methods {
            a.methods.insert(m, expires);
        }
        for h in result.headers {
            a.headers.insert(h, expires);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(*n, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn safelisted_request_headers() {
        assert!(is_cors_safelisted_request_header("Accept", b"*/*"));
        assert!(!is_cors_safelisted_request_header("accept", b"a\"b"));
        assert!(is_cors_safelisted_request_header(
            "content-type",
            b"text/plain;charset=UTF-8"
        ));
        assert!(!is_cors_safelisted_request_header(
            "content-type",
            b"text/json"
        ));
        assert!(!is_cors_safelisted_request_header(
            "content-type",
            b"application/json"
        ));
        assert!(is_cors_safelisted_request_header(
            "accept-language",
            b"en-GB,en;q=0.9"
        ));
        assert!(!is_cors_safelisted_request_header(
            "content-language",
            b"en/GB"
        ));
        assert!(is_cors_safelisted_request_header("range", b"bytes=100-"));
        assert!(is_cors_safelisted_request_header("range", b"bytes=0-99"));
        assert!(!is_cors_safelisted_request_header("range", b"bytes=-100"));
        assert!(!is_cors_safelisted_request_header("range", b"bytes=9-1"));
        assert!(!is_cors_safelisted_request_header(
            "range",
            b"bytes=0-1,5-6"
        ));
        assert!(!is_cors_safelisted_request_header("x-custom", b"1"));
        assert!(!is_cors_safelisted_request_header("accept", &[b'a'; 129]));
    }

    #[test]
    fn unsafe_names_sorted_lowercase_and_size_rule() {
        let h: HeaderList = [("X-B", "1"), ("x-a", "2"), ("Accept", "*/*"), ("X-A", "3")]
            .into_iter()
            .collect();
        assert_eq!(cors_unsafe_request_header_names(&h), vec!["x-a", "x-b"]);
        let long = "a".repeat(120);
        let h: HeaderList = (0..9).map(|_| ("accept", long.as_str())).collect();
        assert_eq!(cors_unsafe_request_header_names(&h), vec!["accept"]);
    }

    #[test]
    fn cors_check_cases() {
        let o = "https://a.test";
        assert!(cors_check(&map(&[]), o, false).is_err());
        assert!(cors_check(&map(&[("access-control-allow-origin", "*")]), o, false).is_ok());
        assert!(cors_check(&map(&[("access-control-allow-origin", "*")]), o, true).is_err());
        assert!(
            cors_check(
                &map(&[("access-control-allow-origin", "https://a.test")]),
                o,
                false
            )
            .is_ok()
        );
        assert!(
            cors_check(
                &map(&[("access-control-allow-origin", "https://b.test")]),
                o,
                false
            )
            .is_err()
        );
        assert!(
            cors_check(
                &map(&[("access-control-allow-origin", "https://a.test")]),
                o,
                true
            )
            .is_err()
        );
        assert!(
            cors_check(
                &map(&[
                    ("access-control-allow-origin", "https://a.test"),
                    ("access-control-allow-credentials", "true")
                ]),
                o,
                true
            )
            .is_ok()
        );
        // Two values combine to "a, b", which matches nothing.
        assert!(
            cors_check(
                &map(&[
                    ("access-control-allow-origin", "*"),
                    ("access-control-allow-origin", "*")
                ]),
                o,
                false
            )
            .is_err()
        );
        assert!(
            cors_check(
                &map(&[("access-control-allow-origin", "null")]),
                "null",
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn preflight_checks() {
        let h = map(&[("access-control-allow-methods", "PUT, DELETE")]);
        assert!(check_preflight(&h, "PUT", &[], false).is_ok());
        assert!(check_preflight(&h, "PATCH", &[], false).is_err());
        assert!(check_preflight(&h, "POST", &[], false).is_ok());
        let h = map(&[
            ("access-control-allow-methods", "*"),
            ("access-control-allow-headers", "*"),
        ]);
        assert!(check_preflight(&h, "PATCH", &["x-a".into()], false).is_ok());
        assert!(check_preflight(&h, "PATCH", &[], true).is_err());
        assert!(check_preflight(&h, "GET", &["x-a".into()], true).is_err());
        assert!(check_preflight(&h, "GET", &["authorization".into()], false).is_err());
        let h = map(&[
            ("access-control-allow-headers", "X-A, content-type"),
            ("access-control-max-age", "600"),
        ]);
        let r = check_preflight(&h, "POST", &["content-type".into(), "x-a".into()], true).unwrap();
        assert_eq!(r.max_age, 600);
        assert!(check_preflight(&h, "POST", &["x-b".into()], false).is_err());
        let bad = map(&[("access-control-allow-methods", "PU T")]);
        assert!(check_preflight(&bad, "PUT", &[], false).is_err());
    }

    #[test]
    fn filter_keeps_safelisted_and_exposed_headers_and_resume_headers_travel_apart() {
        let h: HeaderList = [
            ("content-type", "text/plain"),
            ("x-secret-header", "SuperSecretValue"),
            ("x-exposed", "1"),
            ("set-cookie", "a=b"),
            ("etag", "\"v1\""),
            ("content-range", "bytes 0-1/2"),
        ]
        .into_iter()
        .collect();
        let f = cors_filter(
            &h,
            &map(&[("access-control-expose-headers", "X-Exposed")]),
            false,
        );
        let names: Vec<&str> = f.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type", "x-exposed"]);
        // The validators the engine resumes with travel unexposed beside the filtered list.
        let resume = background_fetch::ResponseHead::resume_headers_from(&h, &f);
        let names: Vec<&str> = resume.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-range", "etag"]);
        let f = cors_filter(&h, &map(&[("access-control-expose-headers", "*")]), false);
        assert_eq!(f.len(), 5);
        // With credentials, `*` exposes nothing: only the safelisted content-type remains.
        let f = cors_filter(&h, &map(&[("access-control-expose-headers", "*")]), true);
        assert_eq!(f.len(), 1);
    }
}
