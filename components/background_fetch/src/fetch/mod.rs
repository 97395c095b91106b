//! The pieces of the Fetch standard (and the specs around it) that the engine carries, in one
//! place, as plain serialisable data and pure functions. The engine never opens a socket: a
//! [`crate::NetworkHost`] turns a [`Request`] into network events; these types are what
//! crosses that seam and what the store persists.
//!
//! An engine with its own Fetch (Servo's `net`, Chromium's network service) maps these to its
//! own types at the seams and keeps its own implementations; which piece is what:
//!
//! | module | what | an engine with its own Fetch |
//! |---|---|---|
//! | [`headers`] | [`HeaderList`], forbidden request headers, header name and value rules | maps its header list to [`HeaderList`] (the store and the protocol carry it) |
//! | [`request`] | [`Request`] as the engine keeps it (no body: the store holds it), [`RequestInit`], [`RequestInfo`], the `Request` constructor ([`construct_request`]) | its bindings may construct the `Request` themselves and hand over a [`RequestObject`]; the constructor here is what our script side (the protocol's client) runs |
//! | [`response`] | [`ResponseHead`] (status, headers, URL list, type), reading a body as script does (Encoding's UTF-8 decode) | maps its response head to [`ResponseHead`] in its `NetworkHost` |
//! | [`cors`] | CORS-safelisted request headers, the response headers a CORS filtered response keeps | ignores: its network stack runs the CORS protocol (our hyper host uses these) |
//! | [`content_range`] | `Content-Range` parsing, "extract content-range values", "validate a partial response" (the background fetch spec's resume checks) | ignores: the engine runs them on what its network host reports |
//! | [`policy`] | allowed schemes, mixed content, bad ports, potentially trustworthy URLs, [`policy::BlockReason`] | may answer from its own checks; CSP goes to its `PolicyHost` either way |
//!
//! Everything here is also reachable from the crate root (`background_fetch::HeaderList`, ...).

pub mod content_range;
pub mod cors;
pub mod headers;
pub mod policy;
pub mod request;
pub mod response;

pub use headers::{HeaderList, is_forbidden_request_header};
pub use request::{
    CacheMode, CredentialsMode, RedirectMode, Request, RequestBody, RequestInfo, RequestInit,
    RequestMode, RequestObject, construct_request, is_cors_safelisted_method,
};
pub use response::{RESUME_HEADERS, ResponseHead, ResponseType};
pub(crate) use response::{read_all, used_body, utf8_decode};
