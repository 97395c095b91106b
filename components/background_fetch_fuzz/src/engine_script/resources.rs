//! The resources a script's records fetch. Each record is served at a URL of its own, with a
//! body made from its fetch, record and resource numbers, so that bytes of one record (or one
//! offset) showing up in another are caught.

use background_fetch::testing::Resource;
use std::time::Duration;

/// What a resource is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A 200 with `size` bytes.
    Ok {
        size: usize,
        /// Bytes per network chunk.
        chunk: usize,
        /// Virtual time before each chunk.
        chunk_delay_ms: u64,
        /// Virtual time before the head.
        head_delay_ms: u64,
        /// Whether a Range request gets a 206.
        range: bool,
        /// Its validator, if any.
        validator: Validator,
    },
    /// A 404 with an error page (which the engine does not download).
    NotFound,
    /// `POST` with a body, answered with that body (WPT's `upload.py`).
    Echo,
}

/// A resource's validator, which changes with its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Validator {
    None,
    /// `ETag: "<tag>-v<version>"`
    Strong(&'static str),
    /// `ETag: W/"<tag>-v<version>"`
    Weak(&'static str),
    /// `Last-Modified`, a day later each version.
    LastModified,
}

/// A resource of the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResourceSpec {
    pub name: &'static str,
    pub kind: Kind,
}

/// The table.
pub(crate) const RESOURCES: [ResourceSpec; 8] = [
    ResourceSpec {
        name: "small.txt",
        kind: Kind::Ok {
            size: 16,
            chunk: 16,
            chunk_delay_ms: 0,
            head_delay_ms: 0,
            range: true,
            validator: Validator::None,
        },
    },
    ResourceSpec {
        name: "empty.txt",
        kind: Kind::Ok {
            size: 0,
            chunk: 1,
            chunk_delay_ms: 0,
            head_delay_ms: 0,
            range: true,
            validator: Validator::None,
        },
    },
    ResourceSpec {
        name: "episode.mp3",
        kind: Kind::Ok {
            size: 20_000,
            chunk: 3000,
            chunk_delay_ms: 100,
            head_delay_ms: 0,
            range: true,
            validator: Validator::Strong("episode"),
        },
    },
    ResourceSpec {
        name: "bytewise.bin",
        kind: Kind::Ok {
            size: 40,
            chunk: 1,
            chunk_delay_ms: 10,
            head_delay_ms: 0,
            range: true,
            validator: Validator::LastModified,
        },
    },
    ResourceSpec {
        name: "norange.bin",
        kind: Kind::Ok {
            size: 9000,
            chunk: 2048,
            chunk_delay_ms: 50,
            head_delay_ms: 0,
            range: false,
            validator: Validator::None,
        },
    },
    ResourceSpec {
        name: "missing.txt",
        kind: Kind::NotFound,
    },
    ResourceSpec {
        name: "slowhead.bin",
        kind: Kind::Ok {
            size: 5000,
            chunk: 1000,
            chunk_delay_ms: 200,
            head_delay_ms: 2000,
            range: true,
            validator: Validator::Weak("slow"),
        },
    },
    ResourceSpec {
        name: "upload",
        kind: Kind::Echo,
    },
];

/// The body of a 404.
pub(crate) const ERROR_PAGE: &[u8] = b"<h1>404 Not Found</h1>";

/// One record of a fetch the script made.
#[derive(Clone, Debug)]
pub(crate) struct RecordSpec {
    /// Index in [`RESOURCES`].
    pub resource: usize,
    /// The URL it is served at.
    pub url: String,
    /// The bytes the server has for it first: the body of a 200, the request body of an upload,
    /// the error page of a 404.
    pub body: Vec<u8>,
    /// Bytes per network chunk, if not the resource's own.
    pub chunk: Option<usize>,
}

impl RecordSpec {
    pub(crate) fn new(fetch: usize, record: usize, resource: usize, chunk: Option<usize>) -> Self {
        let spec = RESOURCES[resource];
        let body = match spec.kind {
            Kind::Ok { size, .. } => (0..size)
                .map(|i| {
                    let v = (i as u64).wrapping_mul(31)
                        ^ (i as u64 >> 8).wrapping_mul(7)
                        ^ (fetch as u64).wrapping_mul(13)
                        ^ (record as u64).wrapping_mul(101)
                        ^ (resource as u64).wrapping_mul(59);
                    v as u8
                })
                .collect(),
            Kind::NotFound => ERROR_PAGE.to_vec(),
            Kind::Echo => format!("Background Fetch! fetch {fetch} record {record}").into_bytes(),
        };
        RecordSpec {
            resource,
            url: format!("https://example.com/f{fetch}/r{record}/{}", spec.name),
            chunk: chunk.map(|c| c.max(body.len().div_ceil(64))),
            body,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        RESOURCES[self.resource].kind
    }

    /// Whether [`super::Op::Change`] changes it (a 200; not an error page or an echo).
    pub(crate) fn can_change(&self) -> bool {
        matches!(self.kind(), Kind::Ok { .. })
    }

    /// Whether the engine can tell a change when it resumes: the resource has a validator, or
    /// answers every Range request with the whole (new) resource.
    pub(crate) fn change_detectable(&self) -> bool {
        match self.kind() {
            Kind::Ok {
                range, validator, ..
            } => !range || validator != Validator::None,
            _ => true,
        }
    }

    /// The body of `version` of the resource (every byte differs from other versions').
    pub(crate) fn body_of(&self, version: u32) -> Vec<u8> {
        let x = (version as u8).wrapping_mul(0x5b);
        self.body.iter().map(|b| b ^ x).collect()
    }

    pub(crate) fn is_get(&self) -> bool {
        !matches!(self.kind(), Kind::Echo)
    }

    /// The body bytes a download of it stores when the server tells the truth.
    pub(crate) fn download_size(&self) -> u64 {
        match self.kind() {
            Kind::NotFound => 0,
            _ => self.body.len() as u64,
        }
    }

    /// The bytes the server sends in a full response (for placing fault offsets).
    pub(crate) fn served_size(&self) -> u64 {
        self.body.len() as u64
    }

    /// The request body of an upload.
    pub(crate) fn upload_size(&self) -> u64 {
        match self.kind() {
            Kind::Echo => self.body.len() as u64,
            _ => 0,
        }
    }

    /// What the scripted network serves at its URL, at `version`.
    pub(crate) fn resource(&self, version: u32) -> Resource {
        match self.kind() {
            Kind::Ok {
                chunk,
                chunk_delay_ms,
                head_delay_ms,
                range,
                validator,
                ..
            } => {
                let mut r = Resource::ok(self.body_of(version))
                    .chunk_size(self.chunk.unwrap_or(chunk))
                    .chunk_delay(Duration::from_millis(chunk_delay_ms))
                    .head_delay(Duration::from_millis(head_delay_ms));
                if !range {
                    r = r.no_range();
                }
                match validator {
                    Validator::None => r,
                    Validator::Strong(t) => r.header("etag", &format!("\"{t}-v{version}\"")),
                    Validator::Weak(t) => r.header("etag", &format!("W/\"{t}-v{version}\"")),
                    Validator::LastModified => r.header(
                        "last-modified",
                        &format!("Mon, {:02} Jan 2030 00:00:00 GMT", 1 + version % 28),
                    ),
                }
            }
            Kind::NotFound => Resource::status(404, ERROR_PAGE).header("content-type", "text/html"),
            Kind::Echo => match self.chunk {
                Some(c) => Resource::echo().chunk_size(c),
                None => Resource::echo(),
            },
        }
    }
}
