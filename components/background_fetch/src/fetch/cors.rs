//! Fetch's CORS rules that need no network: which request headers are CORS-safelisted (so a
//! request needs no preflight) and which response headers a CORS filtered response keeps. A
//! network host runs the CORS protocol itself; these are the shared pieces.
//!
//! <https://fetch.spec.whatwg.org/#http-cors-protocol>

use crate::fetch::HeaderList;

/// <https://fetch.spec.whatwg.org/#cors-unsafe-request-header-byte>
fn is_cors_unsafe_request_header_byte(b: u8) -> bool {
    (b < 0x20 && b != 0x09)
        || matches!(
            b,
            b'"' | b'('
                | b')'
                | b':'
                | b'<'
                | b'>'
                | b'?'
                | b'@'
                | b'['
                | b'\\'
                | b']'
                | b'{'
                | b'}'
                | 0x7f
        )
}

/// The essence of a MIME type (`type/subtype`, lowercased), or `None` if it does not parse.
fn mime_essence(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?;
    let essence = s
        .split(';')
        .next()?
        .trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    let (ty, sub) = essence.split_once('/')?;
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(ty) || !token(sub) {
        return None;
    }
    Some(essence.to_ascii_lowercase())
}

/// Whether `value` is a *simple range header value* with a first position (`bytes=N-` or
/// `bytes=N-M`, no whitespace).
///
/// <https://fetch.spec.whatwg.org/#simple-range-header-value>
fn is_safelisted_range(value: &[u8]) -> bool {
    let Some(rest) = value.strip_prefix(b"bytes=") else {
        return false;
    };
    let Some(dash) = rest.iter().position(|&b| b == b'-') else {
        return false;
    };
    let (first, last) = (&rest[..dash], &rest[dash + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(first) {
        // A suffix range (`bytes=-N`) is not safelisted.
        return false;
    }
    if last.is_empty() {
        return true;
    }
    if !digits(last) {
        return false;
    }
    let parse = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<u64>().ok();
    matches!((parse(first), parse(last)), (Some(a), Some(b)) if a <= b)
}

/// <https://fetch.spec.whatwg.org/#cors-safelisted-request-header>
pub fn is_cors_safelisted_request_header(name: &str, value: &[u8]) -> bool {
    // 1. If value's length is greater than 128, then return false.
    if value.len() > 128 {
        return false;
    }
    // 2. Byte-lowercase name and switch on the result:
    match name.to_ascii_lowercase().as_str() {
        "accept" => !value.iter().any(|&b| is_cors_unsafe_request_header_byte(b)),
        "accept-language" | "content-language" => value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b" *,-.;=".contains(&b)),
        "content-type" => {
            if value.iter().any(|&b| is_cors_unsafe_request_header_byte(b)) {
                return false;
            }
            matches!(
                mime_essence(value).as_deref(),
                Some("application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain")
            )
        }
        "range" => is_safelisted_range(value),
        _ => false,
    }
}

/// The sorted, lowercased names of `headers` that are not CORS-safelisted.
///
/// <https://fetch.spec.whatwg.org/#cors-unsafe-request-header-names>
pub fn cors_unsafe_request_header_names(headers: &HeaderList) -> Vec<String> {
    // 1. Let unsafeNames be a new list.
    let mut unsafe_names = Vec::new();
    // 2. Let potentiallyUnsafeNames be a new list.
    let mut potentially = Vec::new();
    // 3. Let safelistValueSize be 0.
    let mut size = 0usize;
    // 4. For each header of headers:
    for (name, value) in headers.iter() {
        if !is_cors_safelisted_request_header(name, value) {
            unsafe_names.push(name.to_ascii_lowercase());
        } else {
            potentially.push(name.to_ascii_lowercase());
            size += value.len();
        }
    }
    // 5. If safelistValueSize is greater than 1024, then for each name of
    //    potentiallyUnsafeNames, append name to unsafeNames.
    if size > 1024 {
        unsafe_names.extend(potentially);
    }
    // 6. Return the result of convert header names to a sorted-lowercase set with unsafeNames.
    unsafe_names.sort();
    unsafe_names.dedup();
    unsafe_names
}

/// The CORS-safelisted response-header names: what a CORS filtered response keeps besides the
/// names in `Access-Control-Expose-Headers`.
///
/// <https://fetch.spec.whatwg.org/#cors-safelisted-response-header-name>
pub const CORS_SAFELISTED_RESPONSE_HEADER_NAMES: [&str; 7] = [
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];
