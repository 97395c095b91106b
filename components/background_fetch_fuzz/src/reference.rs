//! Pieces the naive references share.

use background_fetch::HeaderList;

/// Fetch's combined value of `name` in `headers` ("get"), computed from the raw list: every
/// value whose name matches byte-case-insensitively, joined with `", "`.
pub(crate) fn combined(headers: &HeaderList, name: &str) -> Option<Vec<u8>> {
    let values: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect();
    (!values.is_empty()).then(|| values.join(&b", "[..]))
}
