//! `content_range`: the `Content-Range` parsers, "extract content-range values" and "validate a
//! partial response" on arbitrary bytes, against a naive reference written from the spec text
//! (and RFC 9110 where the spec's grammar is wrong; see `spec-map.md`, deviation on `bytes=`).
//!
//! Checks, for every input:
//!
//! * `parse_single_byte_content_range` and `parse_unsatisfied_content_range` agree with
//!   byte-at-a-time reference parsers on the raw value (both never panic);
//! * round trip: every value they accept, serialised with `ContentRange::to_header_value`,
//!   parses back to itself; and every valid `(first, last, complete)` the input names
//!   serialises to a value that parses back to it; `len()` is `last - first + 1` (saturating
//!   at `u64::MAX` for the one range that covers 2^64 bytes);
//! * `extract_content_range_values` reads the first `Content-Range` of a header list, whatever
//!   the case of its name;
//! * `validate_partial_response` returns what the spec's steps return, step by step (the same
//!   `PartialResponseInvalid` reason, or the same range), including for CORS-filtered responses
//!   whose unfiltered validators are in `resume_headers`.

use crate::reference::combined;
use arbitrary::{Arbitrary, Unstructured};
use background_fetch::{
    ContentRange, HeaderList, PartialResponseInvalid, ResponseHead, extract_content_range_values,
    parse_single_byte_content_range, parse_unsatisfied_content_range, validate_partial_response,
};

/// How a header value is made: raw bytes, or a near-valid `Content-Range` spelt one of several
/// ways (so that the fuzzer reaches the validation steps past parsing).
#[derive(Arbitrary, Debug, Clone)]
enum Value {
    Raw(Vec<u8>),
    Range {
        unit_upper: bool,
        spaces: u8,
        first: u16,
        last: u16,
        complete: Option<u16>,
        trailing_space: bool,
    },
    Unsatisfied(u16),
    Token(u8),
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Raw(v) => v.clone(),
            Value::Range {
                unit_upper,
                spaces,
                first,
                last,
                complete,
                trailing_space,
            } => {
                let unit = if *unit_upper { "BYTES" } else { "bytes" };
                let spaces = " ".repeat(usize::from(*spaces % 3));
                let complete = complete.map_or("*".to_string(), |c| c.to_string());
                let tail = if *trailing_space { " " } else { "" };
                format!("{unit}{spaces}{first}-{last}/{complete}{tail}").into_bytes()
            }
            Value::Unsatisfied(n) => format!("bytes */{n}").into_bytes(),
            Value::Token(n) => format!("\"v{}\"", n % 3).into_bytes(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Name {
    ContentRange,
    ContentRangeUpper,
    ETag,
    LastModified,
    Other,
}

impl Name {
    fn as_str(&self) -> &'static str {
        match self {
            Name::ContentRange => "content-range",
            Name::ContentRangeUpper => "Content-Range",
            Name::ETag => "ETag",
            Name::LastModified => "last-modified",
            Name::Other => "x-other",
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct Head {
    status_206: bool,
    other_status: u16,
    headers: Vec<(Name, Value)>,
    resume_headers: Vec<(Name, Value)>,
}

impl Head {
    fn build(&self) -> ResponseHead {
        let list = |v: &[(Name, Value)]| {
            let mut h = HeaderList::new();
            for (n, v) in v {
                h.append(n.as_str(), v.bytes());
            }
            h
        };
        ResponseHead {
            status: if self.status_206 {
                206
            } else {
                self.other_status
            },
            status_text: String::new(),
            headers: list(&self.headers),
            url_list: Vec::new(),
            response_type: Default::default(),
            resume_headers: list(&self.resume_headers),
        }
    }
}

/// One input.
#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    triple: (u64, u64, Option<u64>),
    expected_start: u16,
    partial: Head,
    previous: Option<Head>,
}

/// Runs the target on `data`.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    check_parsers(&input.raw);
    for (_, v) in input
        .partial
        .headers
        .iter()
        .chain(input.partial.resume_headers.iter())
    {
        check_parsers(&v.bytes());
    }
    check_round_trip(input.triple);
    check_validate(&input);
}

fn check_parsers(raw: &[u8]) {
    let got = parse_single_byte_content_range(raw).map(triple);
    let want = reference_parse(raw);
    assert_eq!(
        got,
        want,
        "parse_single_byte_content_range({:?})",
        String::from_utf8_lossy(raw)
    );
    if let Some(range) = parse_single_byte_content_range(raw) {
        let again = parse_single_byte_content_range(range.to_header_value().as_bytes());
        assert_eq!(again, Some(range), "round trip of {:?}", range);
        let expected_len = u128::from(range.last_byte_pos) - u128::from(range.first_byte_pos) + 1;
        assert_eq!(
            u128::from(range.len()),
            expected_len.min(u128::from(u64::MAX)),
            "len() of {range:?}"
        );
    }
    assert_eq!(
        parse_unsatisfied_content_range(raw),
        reference_unsatisfied(raw),
        "parse_unsatisfied_content_range({:?})",
        String::from_utf8_lossy(raw)
    );
}

fn check_round_trip((first, last, complete): (u64, u64, Option<u64>)) {
    let (first, last) = (first.min(last), first.max(last));
    let complete = complete.map(|c| c.max(last.saturating_add(1)));
    if complete == Some(last) {
        return; // last = u64::MAX with a complete length: not representable
    }
    let range = ContentRange {
        first_byte_pos: first,
        last_byte_pos: last,
        complete_length: complete,
    };
    assert_eq!(
        parse_single_byte_content_range(range.to_header_value().as_bytes()),
        Some(range),
        "a valid range must round-trip: {}",
        range.to_header_value()
    );
}

fn check_validate(input: &Input) {
    let partial = input.partial.build();
    let previous = input.previous.as_ref().map(Head::build);
    let expected_start = u64::from(input.expected_start);
    let got = validate_partial_response(expected_start, &partial, previous.as_ref()).map(triple);
    let want = reference_validate(expected_start, &partial, previous.as_ref());
    assert_eq!(
        got, want,
        "validate_partial_response({expected_start}, {partial:?}, {previous:?})"
    );
    // "Extract content-range values" reads the first Content-Range header.
    let first = partial
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-range"))
        .and_then(|(_, v)| reference_parse(v));
    assert_eq!(
        extract_content_range_values(&partial.headers).map(triple),
        first
    );
}

type Triple = (u64, u64, Option<u64>);

fn triple(r: ContentRange) -> Triple {
    (r.first_byte_pos, r.last_byte_pos, r.complete_length)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

/// Strips leading and trailing ASCII whitespace.
fn strip(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_ws(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Reads `1*DIGIT` at `*i` as a u64 (failure if there is no digit or it overflows).
fn number(s: &[u8], i: &mut usize) -> Option<u64> {
    let start = *i;
    let mut n: u64 = 0;
    while *i < s.len() && s[*i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add(u64::from(s[*i] - b'0'))?;
        *i += 1;
    }
    (*i > start).then_some(n)
}

/// `"bytes" 1*WS`: the index after the unit and its whitespace.
fn unit(s: &[u8]) -> Option<usize> {
    if s.len() < 5 || !s[..5].eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut i = 5;
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    (i > 5).then_some(i)
}

/// The reference for `bytes first-last/complete` (RFC 9110 §14.4's single byte range).
fn reference_parse(raw: &[u8]) -> Option<Triple> {
    let s = strip(raw);
    let mut i = unit(s)?;
    let first = number(s, &mut i)?;
    if s.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let last = number(s, &mut i)?;
    if s.get(i) != Some(&b'/') {
        return None;
    }
    i += 1;
    let complete = if &s[i..] == b"*" {
        None
    } else {
        let c = number(s, &mut i)?;
        if i != s.len() {
            return None;
        }
        Some(c)
    };
    if first > last || complete.is_some_and(|c| last >= c) {
        return None;
    }
    Some((first, last, complete))
}

/// The reference for `bytes */complete`.
fn reference_unsatisfied(raw: &[u8]) -> Option<u64> {
    let s = strip(raw);
    let mut i = unit(s)?;
    if !s[i..].starts_with(b"*/") {
        return None;
    }
    i += 2;
    let n = number(s, &mut i)?;
    (i == s.len()).then_some(n)
}

/// The header list a resumption is validated against: the unfiltered `Content-Range`, `ETag`
/// and `Last-Modified` (from `resume_headers`) replace the filtered ones.
fn validation(head: &ResponseHead) -> HeaderList {
    let mut out = HeaderList::new();
    let resumed = |name: &str| {
        ["content-range", "etag", "last-modified"].contains(&name)
            && head.resume_headers.iter().any(|(n, _)| n == name)
    };
    for (n, v) in head.headers.iter() {
        if !resumed(n) {
            out.append(n, v);
        }
    }
    for name in ["content-range", "etag", "last-modified"] {
        if resumed(name) {
            for (n, v) in head.resume_headers.iter().filter(|(n, _)| *n == name) {
                out.append(n, v);
            }
        }
    }
    out
}

fn first_content_range(headers: &HeaderList) -> Option<Triple> {
    let (_, v) = headers.iter().find(|(n, _)| *n == "content-range")?;
    reference_parse(v)
}

/// "Validate a partial response", step by step.
fn reference_validate(
    expected_start: u64,
    partial: &ResponseHead,
    previous: Option<&ResponseHead>,
) -> Result<Triple, PartialResponseInvalid> {
    // 1. Assert: partialResponse's status is 206.
    if partial.status != 206 {
        return Err(PartialResponseInvalid::NotPartial);
    }
    let headers = validation(partial);
    // 2. Extract content-range values; failure → invalid.
    let (first, last, complete) =
        first_content_range(&headers).ok_or(PartialResponseInvalid::BadContentRange)?;
    // 3. responseFirstBytePos must equal expectedRangeStart.
    if first != expected_start {
        return Err(PartialResponseInvalid::WrongStart);
    }
    // 4. If previousResponse is not null:
    if let Some(previous) = previous {
        let prev_headers = validation(previous);
        // 4.1. ETag and Last-Modified must agree where previousResponse has them.
        for name in ["etag", "last-modified"] {
            if let Some(p) = combined(&prev_headers, name)
                && Some(p) != combined(&headers, name)
            {
                return Err(PartialResponseInvalid::ValidatorMismatch);
            }
        }
        // 4.2. If previousResponse's status is 206, the complete lengths must agree.
        if previous.status == 206 {
            let (_, _, prev_complete) = first_content_range(&prev_headers)
                .ok_or(PartialResponseInvalid::BadPreviousContentRange)?;
            if prev_complete.is_some() && complete != prev_complete {
                return Err(PartialResponseInvalid::CompleteLengthMismatch);
            }
        }
    }
    // 5. Return valid.
    Ok((first, last, complete))
}
