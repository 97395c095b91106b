//! Subresource Integrity for a streamed body: the request's integrity metadata is checked
//! against the digest of the decoded body when it ends.
//!
//! <https://w3c.github.io/webappsec-subresource-integrity/#does-response-match-metadatalist>

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use ring::digest;

/// The hash algorithms SRI knows, weakest first.
const ALGORITHMS: [(&str, &digest::Algorithm); 3] = [
    ("sha256", &digest::SHA256),
    ("sha384", &digest::SHA384),
    ("sha512", &digest::SHA512),
];

/// A digest in progress and the expected values of the strongest algorithm in the metadata.
pub struct Verifier {
    context: digest::Context,
    name: &'static str,
    expected: Vec<Vec<u8>>,
}

impl Verifier {
    /// Parses integrity metadata. `None` when there is no usable metadata (every response then
    /// matches, as SRI says).
    pub fn new(metadata: &str) -> Option<Verifier> {
        // Parse metadata: whitespace-separated `alg-value[?options]`; unknown algorithms are
        // ignored.
        let mut items: Vec<(usize, Vec<u8>)> = Vec::new();
        for token in metadata.split_ascii_whitespace() {
            let Some((alg, rest)) = token.split_once('-') else {
                continue;
            };
            let Some(strength) = ALGORITHMS
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(alg))
            else {
                continue;
            };
            let value = rest.split('?').next().unwrap_or("");
            let decoded = STANDARD_PAD_INDIFFERENT
                .decode(value)
                .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(value));
            // A value that is not base64 can never match, but it still makes its algorithm
            // count: keep it as an impossible value.
            items.push((strength, decoded.unwrap_or_default()));
        }
        // Get the strongest metadata from set.
        let strongest = items.iter().map(|(s, _)| *s).max()?;
        let (name, alg) = ALGORITHMS[strongest];
        Some(Verifier {
            context: digest::Context::new(alg),
            name,
            expected: items
                .into_iter()
                .filter(|(s, _)| *s == strongest)
                .map(|(_, v)| v)
                .collect(),
        })
    }

    /// Feeds decoded body bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }

    /// Whether the body matched.
    pub fn finish(self) -> Result<(), String> {
        let d = self.context.finish();
        if self.expected.iter().any(|e| e.as_slice() == d.as_ref()) {
            Ok(())
        } else {
            Err(format!(
                "the body does not match its integrity metadata ({} {})",
                self.name,
                STANDARD_PAD_INDIFFERENT.encode(d.as_ref())
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sri(alg: &'static digest::Algorithm, name: &str, data: &[u8]) -> String {
        format!(
            "{name}-{}",
            STANDARD_PAD_INDIFFERENT.encode(digest::digest(alg, data).as_ref())
        )
    }

    fn check(metadata: &str, data: &[u8]) -> Option<Result<(), String>> {
        let mut v = Verifier::new(metadata)?;
        v.update(data);
        Some(v.finish())
    }

    #[test]
    fn matches_the_strongest_algorithm() {
        let data = b"alert('Hello, world.');";
        let good256 = sri(&digest::SHA256, "sha256", data);
        let good384 = sri(&digest::SHA384, "sha384", data);
        assert_eq!(check(&good256, data), Some(Ok(())));
        assert!(check(&good256, b"other").unwrap().is_err());
        // A wrong sha256 does not matter when a sha384 is present and right.
        assert_eq!(
            check(&format!("sha256-AAAA {good384}?opt"), data),
            Some(Ok(()))
        );
        // A right sha256 does not help when the sha384 is wrong.
        assert!(
            check(&format!("{good256} sha384-AAAA"), data)
                .unwrap()
                .is_err()
        );
        // Two values of the same algorithm: either may match.
        assert_eq!(check(&format!("sha384-AAAA {good384}"), data), Some(Ok(())));
        assert_eq!(check("md5-xyz unknown", data), None);
        assert_eq!(check("", data), None);
    }
}
