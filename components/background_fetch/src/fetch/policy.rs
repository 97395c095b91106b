//! The Fetch checks a background fetch request needs that do not depend on the caller's live
//! environment: allowed schemes, mixed content and bad ports. CSP goes to the
//! [`crate::PolicyHost`] with the policy container captured at `fetch()` time.
//!
//! AD-HOC: the spec does not run these at `fetch()` time (spec issue 169); the current WPT
//! (`mixed-content-and-allowed-schemes`, `port-blocking`, `content-security-policy`) expects
//! `fetch()` to resolve and only the blocked record to fail, with `responseReady` rejecting with
//! a `TypeError`. Each attempt checks them; a block fails the record with `fetch-error`.

use crate::model::ClientSnapshot;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};

/// Why a policy check blocked a request. Every block fails that record with `fetch-error`
/// (its `responseReady` rejects with `TypeError`); `fetch()` itself still resolves, as the
/// current WPT expects (outline §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockReason {
    /// The scheme is not `http`/`https` (Background Fetch is limited to HTTP(S)).
    Scheme,
    /// Plain `http` to a host that is not potentially trustworthy, from a secure context.
    MixedContent,
    /// A port on Fetch's bad-port list.
    BadPort,
    /// The caller's Content Security Policy (`connect-src`).
    Csp,
    /// The CORS check (or its preflight) failed.
    Cors,
    /// The host refused it for another reason.
    Other,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::Scheme => "scheme not allowed",
            BlockReason::MixedContent => "mixed content",
            BlockReason::BadPort => "bad port",
            BlockReason::Csp => "blocked by Content Security Policy",
            BlockReason::Cors => "CORS check failed",
            BlockReason::Other => "blocked",
        })
    }
}

/// Fetch's bad ports.
///
/// <https://fetch.spec.whatwg.org/#bad-port>
pub const BAD_PORTS: [u16; 82] = [
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
    102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427,
    465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990,
    993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
    6668, 6669, 6679, 6697,
];

/// Whether `url`'s port is a bad port (for an `http(s)` URL).
///
/// <https://fetch.spec.whatwg.org/#port-blocking>
pub fn is_bad_port(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
        && url
            .port_or_known_default()
            .is_some_and(|p| BAD_PORTS.contains(&p))
}

/// Whether `url`'s origin is potentially trustworthy (https, or a loopback host).
///
/// <https://w3c.github.io/webappsec-secure-contexts/#is-origin-trustworthy>
pub fn is_potentially_trustworthy(url: &Url) -> bool {
    match url.scheme() {
        "https" | "wss" => true,
        "http" | "ws" => match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            None => false,
        },
        _ => false,
    }
}

/// The engine's own checks of a record's request, run before every attempt.
pub fn check_request_url(client: &ClientSnapshot, url: &Url) -> Result<(), BlockReason> {
    // Background fetches are limited to HTTP(S): `wss:`, `file:`, `data:` and unknown schemes
    // fail (WPT mixed-content-and-allowed-schemes).
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BlockReason::Scheme);
    }
    // Mixed content: a secure context may not fetch plain http from a host that is not
    // potentially trustworthy.
    if client.secure_context && !is_potentially_trustworthy(url) {
        return Err(BlockReason::MixedContent);
    }
    if is_bad_port(url) {
        return Err(BlockReason::BadPort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(u: &str) -> Result<(), BlockReason> {
        let client = ClientSnapshot::for_url(Url::parse("https://web-platform.test/").unwrap());
        check_request_url(&client, &Url::parse(u).unwrap())
    }

    #[test]
    fn allowed_schemes_and_mixed_content() {
        assert_eq!(check("https://example.com"), Ok(()));
        assert_eq!(check("http://127.0.0.1"), Ok(()));
        assert_eq!(check("http://[::1]"), Ok(()));
        assert_eq!(check("http://localhost"), Ok(()));
        assert_eq!(check("http://a.localhost:8080/x"), Ok(()));
        assert_eq!(check("http://example.com"), Err(BlockReason::MixedContent));
        assert_eq!(check("http://192.0.2.0"), Err(BlockReason::MixedContent));
        assert_eq!(check("wss:127.0.0.1"), Err(BlockReason::Scheme));
        assert_eq!(check("file:///"), Err(BlockReason::Scheme));
        assert_eq!(check("data:text/plain,foo"), Err(BlockReason::Scheme));
        assert_eq!(check("foobar:bazqux"), Err(BlockReason::Scheme));
    }

    #[test]
    fn ports() {
        assert_eq!(check("https://example.com:443"), Ok(()));
        assert_eq!(check("https://example.com:80"), Ok(()));
        assert_eq!(check("https://example.com:8080"), Ok(()));
        assert_eq!(check("https://example.com:587"), Err(BlockReason::BadPort));
        assert_eq!(check("http://127.0.0.1:6666/"), Err(BlockReason::BadPort));
        assert!(BAD_PORTS.windows(2).all(|w| w[0] < w[1]));
    }
}
