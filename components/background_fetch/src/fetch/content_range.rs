//! Content-Range parsing, "extract content-range values" and "validate a partial response".
//!
//! Spec revision: WICG/background-fetch `index.bs` at commit a1f0bc2 (2021-11-25). Step numbers
//! below refer to that revision.

use crate::fetch::{HeaderList, ResponseHead};

/// The parsed values of a *single byte content-range*.
///
/// <https://wicg.github.io/background-fetch/#header-syntax>
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// `first-byte-pos`
    pub first_byte_pos: u64,
    /// `last-byte-pos`
    pub last_byte_pos: u64,
    /// `complete-length`, or `None` for `*`.
    pub complete_length: Option<u64>,
}

impl ContentRange {
    /// Serialises the value as a `Content-Range` header value (`bytes F-L/C`).
    pub fn to_header_value(&self) -> String {
        match self.complete_length {
            Some(c) => format!("bytes {}-{}/{}", self.first_byte_pos, self.last_byte_pos, c),
            None => format!("bytes {}-{}/*", self.first_byte_pos, self.last_byte_pos),
        }
    }

    /// Number of bytes the range covers (`u64::MAX` for `bytes 0-18446744073709551615/*`, the
    /// one range that covers 2^64 bytes).
    pub fn len(&self) -> u64 {
        (self.last_byte_pos - self.first_byte_pos).saturating_add(1)
    }

    /// Always false: a parsed range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // "Parsing as an integer" (whatwg/infra#189): digits only, and it must fit in 64 bits.
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parses `value` as a single byte content-range.
///
/// <https://wicg.github.io/background-fetch/#header-syntax>
///
/// AD-HOC: the spec's ABNF reads `"bytes=" first-byte-pos "-" last-byte-pos "/" complete-length`,
/// but a real `Content-Range` header (RFC 9110 §14.4) separates the unit from the range with a
/// space: `bytes 0-499/1234`; `bytes=` is the *Range request* syntax. We accept `bytes` SP, with
/// the unit case-insensitive and surrounding whitespace trimmed. We also require
/// first-byte-pos <= last-byte-pos and, when the complete length is known,
/// last-byte-pos < complete-length (RFC 9110's validity rule), and refuse the unsatisfied form
/// `bytes */len`.
pub fn parse_single_byte_content_range(value: &[u8]) -> Option<ContentRange> {
    let value = value.trim_ascii();
    if value.len() < 6 || !value[..5].eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let rest = &value[5..];
    // One or more spaces between unit and range (RFC 9110: SP; tolerate extra).
    let trimmed = rest.trim_ascii_start();
    if trimmed.len() == rest.len() {
        return None;
    }
    let rest = trimmed;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    if slash < dash {
        return None;
    }
    let first = parse_digits(&rest[..dash])?;
    let last = parse_digits(&rest[dash + 1..slash])?;
    let complete_raw = &rest[slash + 1..];
    let complete = if complete_raw == b"*" {
        None
    } else {
        Some(parse_digits(complete_raw)?)
    };
    if first > last {
        return None;
    }
    if let Some(c) = complete
        && last >= c
    {
        return None;
    }
    Some(ContentRange {
        first_byte_pos: first,
        last_byte_pos: last,
        complete_length: complete,
    })
}

/// Extract content-range values.
///
/// <https://wicg.github.io/background-fetch/#extract-content-range-values-algorithm>
pub fn extract_content_range_values(headers: &HeaderList) -> Option<ContentRange> {
    // 1. If response's header list does not contain `Content-Range`, then return failure.
    // 2. Let contentRangeValue be the value of the first header whose name is a
    //    byte-case-insensitive match for `Content-Range` in response's header list.
    let content_range_value = headers.get_first("content-range")?;
    // 3. If parsing contentRangeValue per single byte content-range fails, then return failure.
    // 4. Let firstBytePos be the portion of contentRangeValue named first-byte-pos when parsed
    //    as single byte content-range, parsed as an integer.
    // 5. Let lastBytePos be the portion of contentRangeValue named last-byte-pos when parsed as
    //    single byte content-range, parsed as an integer.
    // 6. Let completeLength be the portion of contentRangeValue named complete-length when
    //    parsed as single byte content-range.
    // 7. If completeLength is "*", then set completeLength to null, otherwise set
    //    completeLength to completeLength parsed as an integer.
    // 8. Return firstBytePos, lastBytePos, and completeLength.
    parse_single_byte_content_range(content_range_value)
}

/// The complete length of an unsatisfied-range `Content-Range` value (`bytes */N`), as a 416
/// response carries it. The unit and the range are separated by whitespace, as in
/// [`parse_single_byte_content_range`].
pub fn parse_unsatisfied_content_range(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.len() < 6 || !value[..5].eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let rest = value[5..].trim_ascii_start();
    if rest.len() == value.len() - 5 {
        return None;
    }
    parse_digits(rest.strip_prefix(b"*/")?)
}

/// Whether `response`'s `ETag` and `Last-Modified` agree with `previous`'s, as step 4.1 of
/// "validate a partial response" checks them. Both are read through
/// [`ResponseHead::validation_headers`], so a CORS-filtered response is checked against its
/// unfiltered validators.
pub fn validators_match(previous: &ResponseHead, response: &ResponseHead) -> bool {
    let (previous, response) = (previous.validation_headers(), response.validation_headers());
    ["etag", "last-modified"]
        .iter()
        .all(|h| !previous.contains(h) || previous.get_combined(h) == response.get_combined(h))
}

/// Why a partial response was refused (for logs and the `fetch-error` message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartialResponseInvalid {
    /// Not a 206.
    NotPartial,
    /// `Content-Range` missing or unparseable.
    BadContentRange,
    /// first-byte-pos is not the expected range start.
    WrongStart,
    /// `ETag` or `Last-Modified` differ from the stored response's.
    ValidatorMismatch,
    /// The stored 206's `Content-Range` is unparseable.
    BadPreviousContentRange,
    /// complete-length differs from the stored 206's.
    CompleteLengthMismatch,
}

/// Validate a partial response.
///
/// <https://wicg.github.io/background-fetch/#validate-partial-response-algorithm>
pub fn validate_partial_response(
    expected_range_start: u64,
    partial_response: &ResponseHead,
    previous_response: Option<&ResponseHead>,
) -> Result<ContentRange, PartialResponseInvalid> {
    // 1. Assert: partialResponse's status is 206.
    if partial_response.status != 206 {
        return Err(PartialResponseInvalid::NotPartial);
    }
    // 2. Let responseFirstBytePos, responseLastBytePos, and responseCompleteLength be the
    //    result of extracting content-range values from partialResponse. If this fails, then
    //    return invalid.
    let range = extract_content_range_values(&partial_response.validation_headers())
        .ok_or(PartialResponseInvalid::BadContentRange)?;
    // 3. If responseFirstBytePos does not equal expectedRangeStart, then return invalid.
    if range.first_byte_pos != expected_range_start {
        return Err(PartialResponseInvalid::WrongStart);
    }
    // 4. If previousResponse is not null, then:
    if let Some(previous) = previous_response {
        // 4.1. For each headerName of « `ETag`, `Last-Modified` »:
        //      1. If previousResponse's header list contains headerName and the combined
        //         value of headerName in previousResponse's header list does not equal the
        //         combined value of headerName in partialResponse's header list, then return
        //         invalid.
        if !validators_match(previous, partial_response) {
            return Err(PartialResponseInvalid::ValidatorMismatch);
        }
        // 4.2. If previousResponse's status is 206, then:
        if previous.status == 206 {
            // 4.2.1. Let previousResponseFirstBytePos, previousResponseLastBytePos, and
            //        previousResponseCompleteLength be the result of extracting content-range
            //        values from previousResponse. If this fails, then return invalid.
            let prev = extract_content_range_values(&previous.validation_headers())
                .ok_or(PartialResponseInvalid::BadPreviousContentRange)?;
            // 4.2.2. If previousResponseCompleteLength is not null, and
            //        responseCompleteLength does not equal previousResponseCompleteLength,
            //        then return invalid.
            if prev.complete_length.is_some() && range.complete_length != prev.complete_length {
                return Err(PartialResponseInvalid::CompleteLengthMismatch);
            }
        }
    }
    // 5. Return valid.
    Ok(range)
}

/// The first-byte-pos of a `Range` request header asking for one range of bytes from a given
/// position (`bytes=100-199`, `bytes=100-`), or `None` for a suffix range (`bytes=-500`),
/// several ranges, another unit or a value that does not parse (RFC 9110 §14.1.2).
pub fn range_request_start(value: &str) -> Option<u64> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return None;
    }
    let (first, last) = set.trim().split_once('-')?;
    let first = first.trim();
    let last = last.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    first.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_of_a_range_request() {
        assert_eq!(range_request_start("bytes=100-199"), Some(100));
        assert_eq!(range_request_start("bytes=0-"), Some(0));
        assert_eq!(range_request_start(" Bytes = 7-9 "), Some(7));
        assert_eq!(range_request_start("bytes=-500"), None);
        assert_eq!(range_request_start("bytes=1-2, 4-5"), None);
        assert_eq!(range_request_start("items=1-2"), None);
        assert_eq!(range_request_start("bytes=x-2"), None);
        assert_eq!(range_request_start("bytes=1-y"), None);
        assert_eq!(range_request_start("bytes=99999999999999999999999-"), None);
    }
    use proptest::prelude::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            status_text: String::new(),
            headers: headers.iter().copied().collect(),
            url_list: vec![],
            response_type: Default::default(),
            resume_headers: Default::default(),
        }
    }

    #[test]
    fn parses_the_rfc_form() {
        let r = parse_single_byte_content_range(b"bytes 0-499/1234").unwrap();
        assert_eq!(
            (r.first_byte_pos, r.last_byte_pos, r.complete_length),
            (0, 499, Some(1234))
        );
        let r = parse_single_byte_content_range(b"  BYTES 10-19/*  ").unwrap();
        assert_eq!(r.complete_length, None);
    }

    #[test]
    fn refuses_the_spec_typo_and_malformed_values() {
        for bad in [
            &b"bytes=0-499/1234"[..],
            b"bytes */1234",
            b"bytes 5-4/10",
            b"bytes 0-10/10",
            b"bytes 0-/10",
            b"bytes -1/10",
            b"bytes 0-1",
            b"items 0-1/2",
            b"bytes0-1/2",
            b"bytes 0-1/2x",
            b"bytes +1-2/3",
            b"bytes 0-99999999999999999999/*",
            b"",
        ] {
            assert_eq!(
                parse_single_byte_content_range(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn extract_uses_the_first_content_range_header() {
        let h: HeaderList = [
            ("Content-Range", "bytes 1-1/3"),
            ("content-range", "bytes 0-0/3"),
        ]
        .into_iter()
        .collect();
        assert_eq!(extract_content_range_values(&h).unwrap().first_byte_pos, 1);
        assert_eq!(extract_content_range_values(&HeaderList::new()), None);
    }

    #[test]
    fn validate_checks_start() {
        let p = head(206, &[("content-range", "bytes 10-19/20")]);
        assert!(validate_partial_response(10, &p, None).is_ok());
        assert_eq!(
            validate_partial_response(11, &p, None),
            Err(PartialResponseInvalid::WrongStart)
        );
        assert_eq!(
            validate_partial_response(10, &head(200, &[]), None),
            Err(PartialResponseInvalid::NotPartial)
        );
        assert_eq!(
            validate_partial_response(10, &head(206, &[]), None),
            Err(PartialResponseInvalid::BadContentRange)
        );
    }

    #[test]
    fn validate_checks_validators_of_the_previous_response() {
        let prev = head(
            200,
            &[
                ("etag", "\"v1\""),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
        );
        let same = head(
            206,
            &[
                ("content-range", "bytes 5-9/10"),
                ("etag", "\"v1\""),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
        );
        assert!(validate_partial_response(5, &same, Some(&prev)).is_ok());
        let changed = head(
            206,
            &[("content-range", "bytes 5-9/10"), ("etag", "\"v2\"")],
        );
        assert_eq!(
            validate_partial_response(5, &changed, Some(&prev)),
            Err(PartialResponseInvalid::ValidatorMismatch)
        );
        // The new response lacks the header: the combined value is null, which differs.
        let missing = head(206, &[("content-range", "bytes 5-9/10")]);
        assert_eq!(
            validate_partial_response(5, &missing, Some(&prev)),
            Err(PartialResponseInvalid::ValidatorMismatch)
        );
        // A previous response without validators accepts anything.
        assert!(validate_partial_response(5, &missing, Some(&head(200, &[]))).is_ok());
    }

    #[test]
    fn validate_checks_complete_length_against_a_previous_206() {
        let prev = head(206, &[("content-range", "bytes 0-4/10")]);
        assert!(
            validate_partial_response(
                5,
                &head(206, &[("content-range", "bytes 5-9/10")]),
                Some(&prev)
            )
            .is_ok()
        );
        assert_eq!(
            validate_partial_response(
                5,
                &head(206, &[("content-range", "bytes 5-9/11")]),
                Some(&prev)
            ),
            Err(PartialResponseInvalid::CompleteLengthMismatch)
        );
        assert_eq!(
            validate_partial_response(
                5,
                &head(206, &[("content-range", "bytes 5-9/*")]),
                Some(&prev)
            ),
            Err(PartialResponseInvalid::CompleteLengthMismatch)
        );
        let prev_star = head(206, &[("content-range", "bytes 0-4/*")]);
        assert!(
            validate_partial_response(
                5,
                &head(206, &[("content-range", "bytes 5-9/11")]),
                Some(&prev_star)
            )
            .is_ok()
        );
        let prev_bad = head(206, &[("content-range", "nonsense")]);
        assert_eq!(
            validate_partial_response(
                5,
                &head(206, &[("content-range", "bytes 5-9/10")]),
                Some(&prev_bad)
            ),
            Err(PartialResponseInvalid::BadPreviousContentRange)
        );
    }

    #[test]
    fn validation_reads_the_unfiltered_resume_headers() {
        // A CORS-filtered head: ETag and Content-Range only in `resume_headers`.
        let filtered = |etag: &str, range: Option<&str>| {
            let mut h = head(
                if range.is_some() { 206 } else { 200 },
                &[("content-type", "text/plain")],
            );
            h.resume_headers.append("etag", etag);
            if let Some(r) = range {
                h.resume_headers.append("content-range", r);
            }
            h
        };
        let first = filtered("\"v1\"", None);
        assert!(
            validate_partial_response(5, &filtered("\"v1\"", Some("bytes 5-9/10")), Some(&first))
                .is_ok()
        );
        assert_eq!(
            validate_partial_response(5, &filtered("\"v2\"", Some("bytes 5-9/10")), Some(&first)),
            Err(PartialResponseInvalid::ValidatorMismatch)
        );
        assert!(!first.validation_headers().is_empty() && !first.headers.contains("etag"));
        assert_eq!(
            ResponseHead::resume_headers_from(
                &[
                    ("ETag", "x"),
                    ("Content-Type", "t"),
                    ("content-range", "bytes 0-0/1")
                ]
                .into_iter()
                .collect(),
                &[("content-type", "t")].into_iter().collect()
            )
            .len(),
            2
        );
    }

    #[test]
    fn unsatisfied_ranges() {
        assert_eq!(parse_unsatisfied_content_range(b"bytes */1234"), Some(1234));
        assert_eq!(parse_unsatisfied_content_range(b" Bytes */0 "), Some(0));
        assert_eq!(parse_unsatisfied_content_range(b"bytes 0-1/2"), None);
        assert_eq!(parse_unsatisfied_content_range(b"bytes */"), None);
        // The unit and the range are separated by whitespace, as in a satisfied range.
        assert_eq!(parse_unsatisfied_content_range(b"bytes*/5"), None);
    }

    #[test]
    fn the_range_that_covers_every_byte_has_a_length() {
        let r = parse_single_byte_content_range(b"bytes 0-18446744073709551615/*").unwrap();
        assert_eq!(r.len(), u64::MAX);
    }

    proptest! {
        #[test]
        fn round_trip(first in 0u64..1 << 60, len in 1u64..1 << 20, extra in proptest::option::of(0u64..1 << 20)) {
            let last = first + len - 1;
            let r = ContentRange { first_byte_pos: first, last_byte_pos: last, complete_length: extra.map(|e| last + 1 + e) };
            prop_assert_eq!(parse_single_byte_content_range(r.to_header_value().as_bytes()), Some(r));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_single_byte_content_range(&bytes);
        }
    }
}
