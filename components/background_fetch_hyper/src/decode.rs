//! Streaming content decoding (`gzip`, `x-gzip`, `deflate`) with bounded output: each call to
//! [`Decoder::next_chunk`] produces at most `max_chunk` decoded bytes, so a highly compressed
//! body never expands in memory beyond one chunk.
//!
//! <https://fetch.spec.whatwg.org/#handle-content-codings>

use bytes::{Bytes, BytesMut};
use flate2::{Crc, Decompress, FlushDecompress, Status};

/// A decoding failure (the body is corrupt: a fatal error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content decoding failed: {}", self.0)
    }
}

/// The content codings this host decodes, as sent in `Accept-Encoding`.
pub const ACCEPT_ENCODING: &str = "gzip, deflate";

/// What to do with a body given its `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No coding (or `identity`).
    Identity,
    /// `gzip` / `x-gzip`.
    Gzip,
    /// `deflate` (zlib; raw deflate is accepted too, as browsers do).
    Deflate,
    /// A coding this host does not decode (or several): the bytes pass through unchanged, as
    /// Fetch's *handle content codings* does with unsupported codings.
    Unsupported,
}

impl Coding {
    /// The coding of a `Content-Encoding` value.
    pub fn from_header(value: Option<&[u8]>) -> Coding {
        let Some(v) = value else {
            return Coding::Identity;
        };
        let s = String::from_utf8_lossy(v).to_ascii_lowercase();
        let codings: Vec<&str> = s
            .split(',')
            .map(|c| c.trim())
            .filter(|c| !c.is_empty() && *c != "identity")
            .collect();
        match codings.as_slice() {
            [] => Coding::Identity,
            ["gzip" | "x-gzip"] => Coding::Gzip,
            ["deflate"] => Coding::Deflate,
            _ => Coding::Unsupported,
        }
    }
}

enum State {
    /// Pass input through.
    Identity,
    /// Gathering a gzip member header.
    GzipHeader,
    /// Inflating (gzip member body, or the whole deflate body).
    Inflate,
    /// Gathering the 8-byte gzip trailer.
    GzipTrailer,
    /// Between gzip members: the next bytes, if any, must start a new member.
    GzipBetween,
    /// A deflate body that has not shown whether it has a zlib header yet.
    DeflateStart,
    /// The deflate stream ended.
    DeflateDone,
}

/// A push decoder: [`Decoder::push`] input, then drain [`Decoder::next_chunk`] until `None`;
/// [`Decoder::finish`] at the end of the body.
pub struct Decoder {
    state: State,
    gzip: bool,
    input: BytesMut,
    inflate: Decompress,
    crc: Crc,
    max_chunk: usize,
    output_pending: bool,
}

impl Decoder {
    /// A decoder for `coding`. `Unsupported` passes through, like `Identity`.
    pub fn new(coding: Coding, max_chunk: usize) -> Self {
        let (state, gzip) = match coding {
            Coding::Identity | Coding::Unsupported => (State::Identity, false),
            Coding::Gzip => (State::GzipHeader, true),
            Coding::Deflate => (State::DeflateStart, false),
        };
        Decoder {
            state,
            gzip,
            input: BytesMut::new(),
            inflate: Decompress::new(false),
            crc: Crc::new(),
            max_chunk: max_chunk.max(512),
            output_pending: false,
        }
    }

    /// Whether the decoder passes bytes through unchanged.
    pub fn is_identity(&self) -> bool {
        matches!(self.state, State::Identity)
    }

    /// Adds body bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// The next decoded chunk, or `None` when more input is needed.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>, DecodeError> {
        loop {
            match self.state {
                State::Identity => {
                    if self.input.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(self.input.split().freeze()));
                }
                State::DeflateStart => {
                    if self.input.len() < 2 {
                        return Ok(None);
                    }
                    let (a, b) = (self.input[0], self.input[1]);
                    let zlib = a & 0x0f == 8 && (u16::from(a) << 8 | u16::from(b)) % 31 == 0;
                    self.inflate = Decompress::new(zlib);
                    self.state = State::Inflate;
                }
                State::GzipHeader => match parse_gzip_header(&self.input)? {
                    None => return Ok(None),
                    Some(len) => {
                        let _ = self.input.split_to(len);
                        self.inflate = Decompress::new(false);
                        self.crc = Crc::new();
                        self.output_pending = false;
                        self.state = State::Inflate;
                    }
                },
                State::Inflate => {
                    if self.input.is_empty() && !self.output_pending {
                        return Ok(None);
                    }
                    let mut out = vec![0u8; self.max_chunk];
                    let before_in = self.inflate.total_in();
                    let before_out = self.inflate.total_out();
                    let status = self
                        .inflate
                        .decompress(&self.input, &mut out, FlushDecompress::None)
                        .map_err(|e| DecodeError(e.to_string()))?;
                    let consumed = (self.inflate.total_in() - before_in) as usize;
                    let produced = (self.inflate.total_out() - before_out) as usize;
                    let _ = self.input.split_to(consumed);
                    // A full output buffer may leave more output inside the inflater.
                    self.output_pending = produced == out.len();
                    out.truncate(produced);
                    if self.gzip {
                        self.crc.update(&out);
                    }
                    if status == Status::StreamEnd {
                        self.state = if self.gzip {
                            State::GzipTrailer
                        } else {
                            State::DeflateDone
                        };
                    } else if consumed == 0 && produced == 0 {
                        // Needs more input than is available (a partial block).
                        return Ok(None);
                    }
                    if produced > 0 {
                        return Ok(Some(Bytes::from(out)));
                    }
                }
                State::GzipTrailer => {
                    if self.input.len() < 8 {
                        return Ok(None);
                    }
                    let t = self.input.split_to(8);
                    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                    let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                    if crc != self.crc.sum() || size != self.crc.amount() {
                        return Err(DecodeError(
                            "gzip trailer does not match the data (CRC or length)".into(),
                        ));
                    }
                    self.state = State::GzipBetween;
                }
                State::GzipBetween => {
                    if self.input.is_empty() {
                        return Ok(None);
                    }
                    // Another member follows (concatenated gzip).
                    self.state = State::GzipHeader;
                }
                State::DeflateDone => {
                    if !self.input.is_empty() {
                        // Trailing bytes after the deflate stream: ignored.
                        self.input.clear();
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The body ended: checks that the coded stream ended too.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        match self.state {
            State::Identity | State::GzipBetween | State::DeflateDone => Ok(()),
            State::DeflateStart if self.input.is_empty() => Ok(()),
            State::GzipHeader if self.input.is_empty() && self.crc.amount() == 0 => {
                // An empty body labelled gzip: nothing to decode.
                Ok(())
            }
            _ => Err(DecodeError(
                "the body ended inside the compressed stream".into(),
            )),
        }
    }
}

/// The length of a complete gzip member header at the start of `b`, `None` if more bytes are
/// needed.
fn parse_gzip_header(b: &[u8]) -> Result<Option<usize>, DecodeError> {
    if b.len() < 10 {
        if b.first().is_some_and(|&x| x != 0x1f) || b.get(1).is_some_and(|&x| x != 0x8b) {
            return Err(DecodeError("not a gzip stream".into()));
        }
        return Ok(None);
    }
    if b[0] != 0x1f || b[1] != 0x8b {
        return Err(DecodeError("not a gzip stream".into()));
    }
    if b[2] != 8 {
        return Err(DecodeError("unknown gzip compression method".into()));
    }
    let flags = b[3];
    let mut pos = 10;
    if flags & 0x04 != 0 {
        // FEXTRA
        if b.len() < pos + 2 {
            return Ok(None);
        }
        let xlen = usize::from(u16::from_le_bytes([b[pos], b[pos + 1]]));
        pos += 2 + xlen;
        if b.len() < pos {
            return Ok(None);
        }
    }
    for flag in [0x08, 0x10] {
        // FNAME, FCOMMENT: zero-terminated.
        if flags & flag != 0 {
            match b[pos..].iter().position(|&x| x == 0) {
                Some(z) => pos += z + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 0x02 != 0 {
        // FHCRC
        pos += 2;
        if b.len() < pos {
            return Ok(None);
        }
    }
    Ok(Some(pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_in_pieces(
        coding: Coding,
        data: &[u8],
        piece: usize,
        max_chunk: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut d = Decoder::new(coding, max_chunk);
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            d.push(p);
            while let Some(c) = d.next_chunk()? {
                assert!(c.len() <= max_chunk.max(512));
                out.extend_from_slice(&c);
            }
        }
        d.finish()?;
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn gzip_any_split() {
        let data = sample();
        let z = gzip(&data);
        for piece in [1, 7, 100, 4096, z.len()] {
            assert_eq!(
                decode_in_pieces(Coding::Gzip, &z, piece, 1024).unwrap(),
                data,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn gzip_concatenated_members_and_header_fields() {
        let mut z = gzip(b"hello ");
        let mut b = flate2::GzBuilder::new()
            .filename("x.txt")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::fast());
        b.write_all(b"world").unwrap();
        z.extend(b.finish().unwrap());
        assert_eq!(
            decode_in_pieces(Coding::Gzip, &z, 3, 512).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn deflate_zlib_and_raw() {
        let data = sample();
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(
            decode_in_pieces(Coding::Deflate, &z, 999, 4096).unwrap(),
            data
        );
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(
            decode_in_pieces(Coding::Deflate, &z, 999, 4096).unwrap(),
            data
        );
    }

    #[test]
    fn output_is_bounded_for_a_bomb() {
        let data = vec![0u8; 8 << 20];
        let z = gzip(&data);
        assert!(z.len() < 20_000);
        let mut d = Decoder::new(Coding::Gzip, 64 * 1024);
        d.push(&z);
        let mut n = 0;
        while let Some(c) = d.next_chunk().unwrap() {
            assert!(c.len() <= 64 * 1024);
            n += c.len();
        }
        d.finish().unwrap();
        assert_eq!(n, data.len());
    }

    #[test]
    fn corrupt_and_truncated() {
        let z = gzip(&sample());
        assert!(decode_in_pieces(Coding::Gzip, &z[..z.len() / 2], 100, 1024).is_err());
        let mut bad = z.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff; // the CRC
        assert!(decode_in_pieces(Coding::Gzip, &bad, 100, 1024).is_err());
        assert!(decode_in_pieces(Coding::Gzip, b"plain text, not gzip", 100, 1024).is_err());
    }

    #[test]
    fn coding_names() {
        assert_eq!(Coding::from_header(None), Coding::Identity);
        assert_eq!(Coding::from_header(Some(b"identity")), Coding::Identity);
        assert_eq!(Coding::from_header(Some(b"GZIP")), Coding::Gzip);
        assert_eq!(Coding::from_header(Some(b"x-gzip")), Coding::Gzip);
        assert_eq!(Coding::from_header(Some(b"deflate")), Coding::Deflate);
        assert_eq!(Coding::from_header(Some(b"br")), Coding::Unsupported);
        assert_eq!(
            Coding::from_header(Some(b"gzip, gzip")),
            Coding::Unsupported
        );
    }
}
