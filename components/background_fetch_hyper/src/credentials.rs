//! Credentials (cookies, HTTP authentication) through an embedder hook.
//!
//! The host has no cookie jar and no authentication cache of its own. Fetch's *credentials
//! flag* is computed for every request (credentials mode `"include"`, or `"same-origin"` for a
//! same-origin request) and governs the CORS check either way; when it is set and the embedder
//! supplied a [`Credentials`] hook, the hook adds its headers to the request and sees the
//! response headers (for `Set-Cookie`).

use url::Url;

/// The embedder's cookie jar and authentication store.
pub trait Credentials: Send + Sync {
    /// Headers to add to a request for `url` whose credentials flag is set (`Cookie`,
    /// `Authorization`). Called for every request, redirects included.
    fn request_headers(&self, url: &Url) -> Vec<(String, String)>;
    /// The response headers of a response to such a request (to store `Set-Cookie`).
    fn response_headers(&self, url: &Url, headers: &http::HeaderMap);
}
