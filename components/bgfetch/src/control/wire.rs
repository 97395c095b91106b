//! The control protocol: the engine's own service protocol, with bgfetch's extension messages.
//!
//! A query (`ids`, `get`, `abort`, `match`, `pause`, `resume`, `ls` from another bgfetch
//! process) is a script connection to the running process's engine
//! (`background_fetch::service`): its side is a `client::Connection` whose transport is the
//! control socket, served by the running process's `Service` as one more connection. What the
//! engine's protocol does not carry (the program's own, UI-level operations: the user's pause
//! and resume, the list of every fetch in the store, which registration a fetch id belongs to)
//! travels as [`Control`] messages beside it.
//!
//! Framing: each message is one frame, a 4-byte big-endian length then the message encoded with
//! postcard (the format the engine's protocol round-trips through); a frame is at most
//! [`MAX_FRAME`] bytes. The query side sends [`ToRunner`], the running process [`FromRunner`]:
//!
//! * [`ToRunner::Script`]`(ToService)`: the engine's protocol. The first frame of a connection
//!   is `Script(Hello)` with the query's protocol version; the answer is
//!   `Script(Welcome(Ok(version)))`, or `Script(Welcome(Err(..)))` from a build that speaks
//!   another version, which then closes the connection. Calls (`get`, `abort`, `matchAll`,
//!   `responseReady`, body reads chunk by chunk, a record's state) and their replies follow as
//!   the engine's protocol says. A query does not make fetches nor act as a service worker:
//!   `fetch()` and `updateUI()` calls are rejected with a `NotAllowedError`.
//! * [`ToRunner::Control`]`{ call, query }`: a [`Control`] query, answered by one
//!   [`FromRunner::Control`] with the same `call`.
//! * [`FromRunner::Refused`]: the running process drops the connection, and why: too many
//!   connections (`busy`), a frame longer than [`MAX_FRAME`], a frame that does not decode, a
//!   connection that says nothing first, or one idle (no call awaiting an answer) for the read
//!   timeout. Nothing else is affected: its fetches and their stored bytes go on.
//!
//! A connection that closes before a call's answer leaves the call unanswered: the query side
//! takes it for a process that went away (its fetches ended and it exited), and asks the store.

use background_fetch::ServiceWorkerRegistrationId;
use background_fetch::service::protocol::{ToScript, ToService};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// The longest frame either side accepts (a body chunk is at most the engine's read chunk, 1 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// What a person asks of the fetches on a store (the command line's queries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The active ids.
    Ids,
    /// One registration.
    Get {
        /// The id.
        id: String,
    },
    /// `abort()`.
    Abort {
        /// The id.
        id: String,
    },
    /// The user's pause.
    Pause {
        /// The id.
        id: String,
    },
    /// The user's resume.
    Resume {
        /// The id.
        id: String,
    },
    /// Every fetch in the store, as `ls` shows them.
    Ls,
    /// `match()`.
    Match {
        /// The id.
        id: String,
        /// The URL to match.
        url: String,
        /// `ignoreSearch`
        ignore_search: bool,
        /// `ignoreMethod`
        ignore_method: bool,
        /// `ignoreVary`
        ignore_vary: bool,
    },
}

/// bgfetch's extension messages: what the engine's protocol does not carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// The active ids, over every registration.
    Ids,
    /// Every fetch in the store, as `ls` shows them.
    Ls,
    /// The user's pause of the active fetch `id`.
    Pause {
        /// The id.
        id: String,
    },
    /// The user's resume of the active fetch `id`.
    Resume {
        /// The id.
        id: String,
    },
    /// The service worker registration of the active fetch `id` (the first, if several
    /// registrations use the id): the query then calls `get(id)` through the engine's protocol.
    Find {
        /// The id.
        id: String,
    },
}

/// The answer to a [`Control`] query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlAnswer {
    /// [`Control::Ids`].
    Ids(Vec<String>),
    /// [`Control::Ls`].
    Ls(Vec<LsRow>),
    /// [`Control::Pause`], [`Control::Resume`]: whether it changed anything.
    Changed(bool),
    /// [`Control::Find`].
    Found(Option<ServiceWorkerRegistrationId>),
    /// No such fetch (exit 1).
    NotFound(String),
    /// The query failed (exit 1).
    Error(String),
}

/// One fetch as `ls` shows it (its JSON names are `ls --json`'s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LsRow {
    /// `id`
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its origin.
    pub origin: String,
    /// `succeeded`, `failed`, `aborted`, `paused`, `waiting`, `offline`, `running` or
    /// `stopped`.
    pub state: String,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// `downloadTotal` (0: unknown).
    pub download_total: u64,
    /// Bytes per second (0 when no process downloads it).
    pub rate: u64,
    /// Records settled.
    pub records_done: u64,
    /// Records.
    pub records: u64,
    /// `failureReason`
    pub failure_reason: String,
    /// Its `--limit-rate`, bytes per second.
    pub limit_rate: Option<u64>,
}

/// A frame from the query side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToRunner {
    /// The engine's protocol (boxed: a message is much larger than a control query).
    Script(Box<ToService>),
    /// An extension query.
    Control {
        /// Names the query within the connection.
        call: u64,
        /// What it asks.
        query: Control,
    },
}

/// A frame from the running process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromRunner {
    /// The engine's protocol.
    Script(ToScript),
    /// The answer to [`ToRunner::Control`] `call`.
    Control {
        /// The query.
        call: u64,
        /// Its answer.
        answer: ControlAnswer,
    },
    /// The connection is dropped, and why.
    Refused(String),
}

/// The frame codec, with the frame limit.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Encodes a message as a frame's bytes.
pub fn encode<T: Serialize>(message: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(message).expect("the messages are serialisable"))
}

/// Decodes a frame's bytes, or says why they are not a message.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(frame).map_err(|e| format!("a frame that is not a message ({e})"))
}

/// What a frame error means, in words: a frame over the limit, or the I/O error.
pub fn frame_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidData {
        format!("a frame longer than {MAX_FRAME} bytes")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every extension message round-trips through postcard.
    #[test]
    fn extension_messages_round_trip_through_postcard() {
        let row = LsRow {
            id: "a".into(),
            title: "t".into(),
            origin: "http://127.0.0.1".into(),
            state: "running".into(),
            downloaded: 1,
            download_total: 2,
            rate: 3,
            records_done: 4,
            records: 5,
            failure_reason: String::new(),
            limit_rate: Some(6),
        };
        let frames = [
            FromRunner::Control {
                call: 1,
                answer: ControlAnswer::Ls(vec![row]),
            },
            FromRunner::Control {
                call: 2,
                answer: ControlAnswer::Found(None),
            },
            FromRunner::Refused("busy".into()),
        ];
        for f in frames {
            assert_eq!(decode::<FromRunner>(&encode(&f)).unwrap(), f);
        }
        for q in [
            Control::Ids,
            Control::Ls,
            Control::Pause { id: "p".into() },
            Control::Resume { id: "r".into() },
            Control::Find { id: "f".into() },
        ] {
            let m = ToRunner::Control { call: 9, query: q };
            assert_eq!(decode::<ToRunner>(&encode(&m)).unwrap(), m);
        }
        assert!(decode::<ToRunner>(b"\xff\xff\xff").is_err());
    }
}
