//! Request bodies as script gives them (`BodyInit`), and Fetch's *extract a body*, which the
//! bindings run before the engine sees a body (the engine takes bytes and a `Content-Type`).

use background_fetch::{RequestBody, RequestInit};
use bytes::Bytes;

/// A `FormData` entry value.
#[derive(Clone, Debug)]
pub enum FormDataValue {
    /// A string.
    String(String),
    /// A file: its bytes, name and type.
    File {
        /// The bytes.
        bits: Vec<u8>,
        /// The file name.
        name: String,
        /// The MIME type (may be empty).
        r#type: String,
    },
}

/// `BodyInit`: what `new Request(url, {body})` accepts (streams excepted).
#[derive(Clone, Debug)]
pub enum BodyInit {
    /// A string.
    String(String),
    /// An `ArrayBuffer`.
    ArrayBuffer(Vec<u8>),
    /// A typed array view (for example a `Uint8Array`).
    TypedArray(Vec<u8>),
    /// A `DataView`.
    DataView(Vec<u8>),
    /// A `Blob`: its bytes and type.
    Blob {
        /// The bytes.
        bits: Vec<u8>,
        /// The MIME type (empty when none was given).
        r#type: String,
    },
    /// A `File`: a blob with a name.
    File {
        /// The bytes.
        bits: Vec<u8>,
        /// The file name.
        name: String,
        /// The MIME type (empty when none was given).
        r#type: String,
    },
    /// `URLSearchParams`: name/value pairs.
    UrlSearchParams(Vec<(String, String)>),
    /// `FormData`: name/value entries.
    FormData(Vec<(String, FormDataValue)>),
}

impl From<&str> for BodyInit {
    fn from(s: &str) -> Self {
        BodyInit::String(s.to_owned())
    }
}

/// The boundary used for `multipart/form-data` bodies (browsers pick a random one).
pub const FORM_DATA_BOUNDARY: &str = "----background-fetch-wpt-7e3a1c";

impl BodyInit {
    /// *Extract a body*: the bytes and the `Content-Type` it implies, if any.
    ///
    /// <https://fetch.spec.whatwg.org/#concept-bodyinit-extract>
    pub fn extract(&self) -> (Bytes, Option<String>) {
        match self {
            BodyInit::String(s) => (
                Bytes::from(s.clone().into_bytes()),
                Some("text/plain;charset=UTF-8".into()),
            ),
            BodyInit::ArrayBuffer(b) | BodyInit::TypedArray(b) | BodyInit::DataView(b) => {
                (Bytes::from(b.clone()), None)
            }
            BodyInit::Blob { bits, r#type } | BodyInit::File { bits, r#type, .. } => (
                Bytes::from(bits.clone()),
                (!r#type.is_empty()).then(|| r#type.clone()),
            ),
            BodyInit::UrlSearchParams(pairs) => {
                let mut s = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    s.append_pair(k, v);
                }
                (
                    Bytes::from(s.finish().into_bytes()),
                    Some("application/x-www-form-urlencoded;charset=UTF-8".into()),
                )
            }
            BodyInit::FormData(entries) => {
                let escape = |s: &str| {
                    s.replace('\n', "%0A")
                        .replace('\r', "%0D")
                        .replace('"', "%22")
                };
                let mut out = Vec::new();
                for (name, value) in entries {
                    out.extend_from_slice(format!("--{FORM_DATA_BOUNDARY}\r\n").as_bytes());
                    match value {
                        FormDataValue::String(v) => {
                            out.extend_from_slice(
                                format!(
                                    "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                                    escape(name)
                                )
                                .as_bytes(),
                            );
                            out.extend_from_slice(
                                v.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes(),
                            );
                        }
                        FormDataValue::File {
                            bits,
                            name: file,
                            r#type,
                        } => {
                            let ty = if r#type.is_empty() {
                                "application/octet-stream"
                            } else {
                                r#type
                            };
                            out.extend_from_slice(
                                format!(
                                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {ty}\r\n\r\n",
                                    escape(name),
                                    escape(file)
                                )
                                .as_bytes(),
                            );
                            out.extend_from_slice(bits);
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(format!("--{FORM_DATA_BOUNDARY}--\r\n").as_bytes());
                (
                    Bytes::from(out),
                    Some(format!(
                        "multipart/form-data; boundary={FORM_DATA_BOUNDARY}"
                    )),
                )
            }
        }
    }
}

/// A `RequestInit` whose `body` is `body` (extracted), for `RequestInit { method, ..body(b) }`.
pub fn body(body: impl Into<BodyInit>) -> RequestInit {
    let (bytes, content_type) = body.into().extract();
    RequestInit {
        body: Some(RequestBody::Bytes(bytes)),
        content_type,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction() {
        let (b, t) = BodyInit::from("Background Fetch!").extract();
        assert_eq!(
            (b.len(), t.as_deref()),
            (17, Some("text/plain;charset=UTF-8"))
        );
        let (b, t) = BodyInit::UrlSearchParams(vec![("body".into(), "a b&c".into())]).extract();
        assert_eq!(&b[..], b"body=a+b%26c");
        assert!(t.unwrap().starts_with("application/x-www-form-urlencoded"));
        let (b, t) = BodyInit::Blob {
            bits: b"x".to_vec(),
            r#type: String::new(),
        }
        .extract();
        assert_eq!((&b[..], t), (&b"x"[..], None));
        let (b, t) =
            BodyInit::FormData(vec![("body".into(), FormDataValue::String("v".into()))]).extract();
        let text = String::from_utf8(b.to_vec()).unwrap();
        assert!(text.contains("name=\"body\"\r\n\r\nv\r\n"), "{text}");
        assert!(t.unwrap().starts_with("multipart/form-data; boundary="));
    }
}
