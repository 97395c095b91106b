//! Content codings (`gzip`, `deflate`, `br`, `zstd`, and chains of them), decoded as the body
//! streams by async-compression's decoders. Output is pulled a bounded chunk at a time, so a
//! highly compressed body never expands in memory beyond one chunk.
//!
//! <https://fetch.spec.whatwg.org/#handle-content-codings>

use async_compression::tokio::bufread::{
    BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, ReadBuf};

/// The content codings this host decodes, as sent in `Accept-Encoding`.
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// A content coding this host decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` / `x-gzip` (RFC 9110 §8.4.1.3), members concatenated or not.
    Gzip,
    /// `deflate`: the zlib format (RFC 9110 §8.4.1.2); raw deflate is accepted too, as
    /// browsers do.
    Deflate,
    /// `br` (RFC 7932).
    Br,
    /// `zstd` (RFC 8878).
    Zstd,
}

/// What a response's `Content-Encoding` says to do with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codings {
    /// No coding (or only `identity`).
    Identity,
    /// These codings, in the order the server applied them (decoded in reverse).
    Decode(Vec<Coding>),
    /// A coding this host does not decode is among them: the bytes pass through unchanged,
    /// as Fetch's *handle content codings* does with unsupported codings.
    Unsupported,
}

impl Codings {
    /// The codings of a response given every `Content-Encoding` field line it has (RFC 9110
    /// §5.3: several lines are one comma-separated list).
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Codings {
        let mut codings = Vec::new();
        let mut unsupported = false;
        for value in values {
            for c in String::from_utf8_lossy(value).split(',') {
                let c = c.trim_matches([' ', '\t']).to_ascii_lowercase();
                match c.as_str() {
                    "" | "identity" => {}
                    "gzip" | "x-gzip" => codings.push(Coding::Gzip),
                    "deflate" => codings.push(Coding::Deflate),
                    "br" => codings.push(Coding::Br),
                    "zstd" => codings.push(Coding::Zstd),
                    _ => unsupported = true,
                }
            }
        }
        if unsupported {
            Codings::Unsupported
        } else if codings.is_empty() {
            Codings::Identity
        } else {
            Codings::Decode(codings)
        }
    }

    /// Whether the body's bytes are the identity representation's.
    pub fn is_identity(&self) -> bool {
        *self == Codings::Identity
    }
}

/// A coded body as a byte source.
pub type Source = Pin<Box<dyn AsyncBufRead + Send>>;
/// Decoded bytes.
pub type Decoded = Pin<Box<dyn AsyncRead + Send>>;

/// The decoded bytes of `source`, coded with `codings` (in the order applied). A corrupt
/// stream reads as an error of kind `InvalidData` (or another decoder error); a stream that
/// ends before its coded data does reads as `UnexpectedEof`; errors of `source` come through
/// as they are.
pub fn decoder(codings: &[Coding], source: Source) -> Decoded {
    let mut reader: Source = source;
    let mut decoded: Option<Decoded> = None;
    for (i, coding) in codings.iter().rev().enumerate() {
        if i > 0 {
            let inner = decoded.take().expect("the previous decoder");
            reader = Box::pin(tokio::io::BufReader::new(inner));
        }
        let r = std::mem::replace(&mut reader, Box::pin(tokio::io::empty()));
        decoded = Some(match coding {
            Coding::Gzip => Box::pin(GzipMembers::new(r)),
            Coding::Deflate => Box::pin(DeflateAuto::new(r)),
            Coding::Br => Box::pin(BrotliDecoder::new(r)),
            Coding::Zstd => {
                let mut d = ZstdDecoder::new(r);
                // RFC 8878 §3: a zstd stream may have several frames.
                d.multiple_members(true);
                Box::pin(d)
            }
        });
    }
    decoded.unwrap_or_else(|| Box::pin(reader))
}

/// A gzip body: one member or several concatenated (RFC 1952 §2.2), then possibly junk.
///
/// AD-HOC: bytes after the last member that do not start another one are read and ignored,
/// as browsers do (some servers pad the body); every byte of the data has arrived by then.
struct GzipMembers {
    member: Option<GzipDecoder<Source>>,
    between: Option<Source>,
}

impl GzipMembers {
    fn new(source: Source) -> Self {
        GzipMembers {
            member: Some(GzipDecoder::new(source)),
            between: None,
        }
    }
}

impl AsyncRead for GzipMembers {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(member) = this.member.as_mut() {
                let before = buf.filled().len();
                ready!(Pin::new(member).poll_read(cx, buf))?;
                if buf.filled().len() > before || buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                // The member ended (its trailer checked).
                let member = this.member.take().expect("a member");
                this.between = Some(member.into_inner());
            }
            let Some(source) = this.between.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let available = ready!(source.as_mut().poll_fill_buf(cx))?;
            if available.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if available[0] == 0x1f && available.get(1).is_none_or(|&b| b == 0x8b) {
                let source = this.between.take().expect("a source");
                this.member = Some(GzipDecoder::new(source));
            } else {
                let n = available.len();
                source.as_mut().consume(n);
            }
        }
    }
}

/// A `deflate` body: zlib, or raw deflate (told apart by the zlib header, RFC 1950 §2.2).
enum DeflateAuto {
    Sniffing {
        source: Option<Source>,
        prefix: Vec<u8>,
    },
    Decoding(Decoded),
}

impl DeflateAuto {
    fn new(source: Source) -> Self {
        DeflateAuto::Sniffing {
            source: Some(source),
            prefix: Vec::new(),
        }
    }
}

impl AsyncRead for DeflateAuto {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut *self {
                DeflateAuto::Decoding(d) => return d.as_mut().poll_read(cx, buf),
                DeflateAuto::Sniffing { source, prefix } => {
                    let s = source.as_mut().expect("a source");
                    let available = ready!(s.as_mut().poll_fill_buf(cx))?;
                    let ended = available.is_empty();
                    let take = available.len().min(2 - prefix.len());
                    prefix.extend_from_slice(&available[..take]);
                    s.as_mut().consume(take);
                    if prefix.len() < 2 && !ended {
                        continue;
                    }
                    if prefix.is_empty() {
                        // An empty body: nothing to decode.
                        return Poll::Ready(Ok(()));
                    }
                    let zlib = prefix.len() == 2
                        && prefix[0] & 0x0f == 8
                        && (u16::from(prefix[0]) << 8 | u16::from(prefix[1])) % 31 == 0;
                    let rest = source.take().expect("a source");
                    let chained: Source = Box::pin(Cursor::new(std::mem::take(prefix)).chain(rest));
                    let d: Decoded = if zlib {
                        Box::pin(ZlibDecoder::new(chained))
                    } else {
                        Box::pin(DeflateDecoder::new(chained))
                    };
                    *self = DeflateAuto::Decoding(d);
                }
            }
        }
    }
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

    /// Decodes `data` fed `piece` bytes at a time, reading at most `max_chunk` at once.
    fn decode_in_pieces(
        codings: &[Coding],
        data: &[u8],
        piece: usize,
        max_chunk: usize,
    ) -> io::Result<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let pieces: Vec<io::Result<bytes::Bytes>> = data
                .chunks(piece.max(1))
                .map(|p| Ok(bytes::Bytes::copy_from_slice(p)))
                .collect();
            let source: Source = Box::pin(tokio_util::io::StreamReader::new(
                futures::stream::iter(pieces),
            ));
            let mut d = decoder(codings, source);
            let mut out = Vec::new();
            let mut buf = vec![0u8; max_chunk];
            loop {
                let n = d.read(&mut buf).await?;
                if n == 0 {
                    return Ok(out);
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
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
                decode_in_pieces(&[Coding::Gzip], &z, piece, 1024).unwrap(),
                data,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn gzip_concatenated_members_and_header_fields_then_junk() {
        let mut z = gzip(b"hello ");
        let mut b = flate2::GzBuilder::new()
            .filename("x.txt")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::fast());
        b.write_all(b"world").unwrap();
        z.extend(b.finish().unwrap());
        assert_eq!(
            decode_in_pieces(&[Coding::Gzip], &z, 3, 512).unwrap(),
            b"hello world"
        );
        z.extend_from_slice(b"\0\0 trailing junk");
        assert_eq!(
            decode_in_pieces(&[Coding::Gzip], &z, 5, 512).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn deflate_zlib_and_raw() {
        let data = sample();
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        for piece in [1, 999] {
            assert_eq!(
                decode_in_pieces(&[Coding::Deflate], &z, piece, 4096).unwrap(),
                data
            );
        }
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(
            decode_in_pieces(&[Coding::Deflate], &z, 999, 4096).unwrap(),
            data
        );
        assert_eq!(
            decode_in_pieces(&[Coding::Deflate], b"", 1, 4096).unwrap(),
            b""
        );
    }

    #[test]
    fn corrupt_and_truncated() {
        let z = gzip(&sample());
        let cut = decode_in_pieces(&[Coding::Gzip], &z[..z.len() / 2], 100, 1024).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof, "{cut}");
        let mut bad = z.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff; // the CRC
        let e = decode_in_pieces(&[Coding::Gzip], &bad, 100, 1024).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(decode_in_pieces(&[Coding::Gzip], b"plain text, not gzip", 100, 1024).is_err());
    }

    #[test]
    fn coding_lists() {
        let c = |v: &[&str]| Codings::from_headers(v.iter().map(|s| s.as_bytes()));
        assert_eq!(c(&[]), Codings::Identity);
        assert_eq!(c(&["identity"]), Codings::Identity);
        assert_eq!(c(&["GZIP"]), Codings::Decode(vec![Coding::Gzip]));
        assert_eq!(c(&["x-gzip"]), Codings::Decode(vec![Coding::Gzip]));
        assert_eq!(
            c(&["gzip, br"]),
            Codings::Decode(vec![Coding::Gzip, Coding::Br])
        );
        assert_eq!(
            c(&["gzip", "zstd"]),
            Codings::Decode(vec![Coding::Gzip, Coding::Zstd])
        );
        assert_eq!(
            c(&["identity", "gzip"]),
            Codings::Decode(vec![Coding::Gzip])
        );
        assert_eq!(c(&["gzip, compress"]), Codings::Unsupported);
    }
}
