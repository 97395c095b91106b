//! Header lists and the header rules of Fetch (forbidden request headers, tokens, values).

use serde::{Deserialize, Serialize};

/// A Fetch *header list*: an ordered list of (name, value) pairs. Names compare
/// byte-case-insensitively; values are bytes.
///
/// <https://fetch.spec.whatwg.org/#concept-header-list>
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderList {
    entries: Vec<(String, Vec<u8>)>,
}

impl HeaderList {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a header (names are stored lowercased).
    pub fn append(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.entries
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
    }

    /// Removes every header named `name`, then appends it with `value`.
    pub fn set(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.delete(name);
        self.append(name, value);
    }

    /// Removes every header named `name`.
    pub fn delete(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Whether a header named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The value of the first header named `name`.
    pub fn get_first(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Fetch's *get* (the combined value): every value of `name` joined with `", "`, or
    /// `None` when the header is absent.
    ///
    /// <https://fetch.spec.whatwg.org/#concept-header-list-get>
    pub fn get_combined(&self, name: &str) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for (n, v) in &self.entries {
            if n.eq_ignore_ascii_case(name) {
                match &mut out {
                    None => out = Some(v.clone()),
                    Some(acc) => {
                        acc.extend_from_slice(b", ");
                        acc.extend_from_slice(v);
                    }
                }
            }
        }
        out
    }

    /// The combined value as a string (lossy for non-UTF-8 bytes).
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get_combined(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Iterates over (lowercased name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut h = HeaderList::new();
        for (n, v) in iter {
            h.append(n.as_ref(), v);
        }
        h
    }
}

/// <https://fetch.spec.whatwg.org/#forbidden-request-header>
pub fn is_forbidden_request_header(name: &str) -> bool {
    const FORBIDDEN: [&str; 21] = [
        "accept-charset",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "connection",
        "content-length",
        "cookie",
        "cookie2",
        "date",
        "dnt",
        "expect",
        "host",
        "keep-alive",
        "origin",
        "referer",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "via",
    ];
    let lower = name.to_ascii_lowercase();
    FORBIDDEN.contains(&lower.as_str()) || lower.starts_with("proxy-") || lower.starts_with("sec-")
}

/// An HTTP token (RFC 9110 `tchar`s), as Fetch requires for methods and header names.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A header value as Fetch allows it: no leading/trailing whitespace after normalisation,
/// no NUL, CR or LF.
pub(crate) fn is_header_value(v: &str) -> bool {
    !v.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n'))
}
