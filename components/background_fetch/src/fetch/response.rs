//! Response heads (what crosses the network seam and the store persists) and reading a body
//! as script does.

use super::headers::HeaderList;
use crate::error::DomError;
use serde::{Deserialize, Serialize};
use url::Url;

/// A response's type.
///
/// <https://fetch.spec.whatwg.org/#concept-response-type>
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ResponseType {
    /// `"basic"`: same-origin.
    #[default]
    Basic,
    /// `"cors"`: cross-origin, CORS-filtered.
    Cors,
    /// `"default"`
    Default,
    /// `"error"`
    Error,
    /// `"opaque"`
    Opaque,
    /// `"opaqueredirect"`
    OpaqueRedirect,
}

impl ResponseType {
    /// The IDL string (`response.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::Basic => "basic",
            ResponseType::Cors => "cors",
            ResponseType::Default => "default",
            ResponseType::Error => "error",
            ResponseType::Opaque => "opaque",
            ResponseType::OpaqueRedirect => "opaqueredirect",
        }
    }
}

/// A response without its body: what the engine stores as a background fetch response's
/// *response* ("a copy of response except for its body").
///
/// <https://fetch.spec.whatwg.org/#concept-response>
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The status message.
    pub status_text: String,
    /// The header list (already filtered for a CORS response).
    pub headers: HeaderList,
    /// The URL list (the last one is the response's URL, after redirects).
    pub url_list: Vec<Url>,
    /// The type.
    pub response_type: ResponseType,
    /// For a response whose `headers` were CORS-filtered: the unfiltered `Content-Range`,
    /// `ETag`, `Last-Modified`, `Date` and `Content-Encoding`, which the engine needs to decide
    /// whether and how to resume (a content-coded response is never resumed), to validate a
    /// resumption ("validate a partial response") and to send `If-Range`. Never exposed to
    /// script. Empty when `headers` is not filtered.
    #[serde(default)]
    pub resume_headers: HeaderList,
}

/// The headers [`ResponseHead::resume_headers`] may carry.
pub const RESUME_HEADERS: [&str; 5] = [
    "content-range",
    "etag",
    "last-modified",
    "date",
    "content-encoding",
];

impl ResponseHead {
    /// The header list resumption is validated against: `headers`, with the unfiltered
    /// values of `resume_headers` taking precedence.
    pub fn validation_headers(&self) -> std::borrow::Cow<'_, HeaderList> {
        if self.resume_headers.is_empty() {
            return std::borrow::Cow::Borrowed(&self.headers);
        }
        let mut merged = self.headers.clone();
        for name in RESUME_HEADERS {
            if self.resume_headers.contains(name) {
                merged.delete(name);
                for (n, v) in self.resume_headers.iter().filter(|(n, _)| *n == name) {
                    merged.append(n, v);
                }
            }
        }
        std::borrow::Cow::Owned(merged)
    }

    /// The unfiltered resume headers of `unfiltered` that `filtered` lacks (for a network host
    /// that CORS-filters a response's headers).
    pub fn resume_headers_from(unfiltered: &HeaderList, filtered: &HeaderList) -> HeaderList {
        let mut out = HeaderList::new();
        for name in RESUME_HEADERS {
            if !filtered.contains(name) {
                for (n, v) in unfiltered
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    out.append(n, v);
                }
            }
        }
        out
    }

    /// The response's URL: the last URL of its URL list.
    pub fn url(&self) -> Option<&Url> {
        self.url_list.last()
    }

    /// `Response.url`: the response's URL, serialized with *exclude fragment* set, or the
    /// empty string when the URL list is empty.
    pub fn url_string(&self) -> String {
        self.url()
            .map(|u| {
                let mut u = u.clone();
                u.set_fragment(None);
                u.to_string()
            })
            .unwrap_or_default()
    }

    /// Whether the status is an *ok status* (200 to 299).
    pub fn is_ok(&self) -> bool {
        (200..=299).contains(&self.status)
    }

    /// Whether the response was redirected (its URL list has more than one entry).
    pub fn redirected(&self) -> bool {
        self.url_list.len() > 1
    }
}

/// The body of a response whose body was already read: reading it again rejects with a
/// `TypeError` (a disturbed body).
pub(crate) fn used_body() -> futures::stream::BoxStream<'static, Result<bytes::Bytes, DomError>> {
    use futures::StreamExt;
    futures::stream::once(futures::future::ready(Err(DomError::type_error(
        "the response body was already read",
    ))))
    .boxed()
}

/// Reads a whole body (`arrayBuffer()`).
pub(crate) async fn read_all(
    mut body: futures::stream::BoxStream<'static, Result<bytes::Bytes, DomError>>,
) -> Result<Vec<u8>, DomError> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Encoding's "UTF-8 decode" (`text()`): a leading byte order mark is removed and invalid
/// sequences become U+FFFD.
///
/// <https://encoding.spec.whatwg.org/#utf-8-decode>
pub(crate) fn utf8_decode(bytes: &[u8]) -> String {
    encoding_rs::UTF_8
        .decode_with_bom_removal(bytes)
        .0
        .into_owned()
}
