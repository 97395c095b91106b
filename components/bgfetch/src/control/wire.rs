//! The control protocol.
//!
//! The client writes one line: a JSON [`Query`] (at most [`MAX_QUERY_LINE`] bytes). The server
//! answers with length-delimited frames (`tokio_util`'s codec: a 4-byte big-endian length, then
//! the frame). A frame that starts with `{` is a JSON [`Message`]; any other frame is a data
//! frame: a 0 byte, then body bytes. Answers: any number of `waiting` messages, then one of
//! `json`, `notfound`, `error`, or `body` followed by data frames and one `end` (the whole body
//! was sent; its length) or `bodyerror` (the body failed after the bytes sent). A connection
//! that closes before `end` is a truncated body, never a complete one.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::codec::LengthDelimitedCodec;

/// The longest query line the server reads.
pub const MAX_QUERY_LINE: usize = 64 * 1024;

/// The longest frame either side accepts.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A query.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
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
    /// `match()`.
    Match {
        /// The id.
        id: String,
        /// The URL to match.
        url: String,
        /// `ignoreSearch`
        #[serde(default)]
        ignore_search: bool,
        /// `ignoreMethod`
        #[serde(default)]
        ignore_method: bool,
        /// `ignoreVary`
        #[serde(default)]
        ignore_vary: bool,
    },
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Message {
    /// Not answered yet, and why (a record that has not started, for example).
    Waiting {
        /// For the person waiting.
        reason: String,
    },
    /// A JSON value to print.
    Json {
        /// The value.
        value: Value,
    },
    /// A matched record's body follows.
    Body {
        /// The response status.
        status: u16,
    },
    /// Nothing matched (exit 1).
    NotFound {
        /// Why.
        message: String,
    },
    /// The query failed (exit 1).
    Error {
        /// Why.
        message: String,
    },
    /// The body is complete.
    End {
        /// Its length.
        bytes: u64,
    },
    /// The body failed after the bytes already sent.
    BodyError {
        /// Why.
        message: String,
    },
}

/// A frame decoded.
#[derive(Debug)]
pub enum Frame {
    /// A message.
    Message(Message),
    /// Body bytes.
    Data(Bytes),
}

/// The frame codec, with the frame limit.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Encodes a message frame.
pub fn message(m: &Message) -> Bytes {
    Bytes::from(serde_json::to_vec(m).expect("serialisable"))
}

/// Encodes a data frame.
pub fn data(chunk: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(chunk.len() + 1);
    b.extend_from_slice(&[0]);
    b.extend_from_slice(chunk);
    b.freeze()
}

/// Decodes a frame.
pub fn decode(mut frame: BytesMut) -> Result<Frame, String> {
    match frame.first() {
        Some(0) => {
            let _ = frame.split_to(1);
            Ok(Frame::Data(frame.freeze()))
        }
        Some(b'{') => serde_json::from_slice(&frame)
            .map(Frame::Message)
            .map_err(|e| format!("bad message: {e}")),
        _ => Err("bad frame".to_owned()),
    }
}
