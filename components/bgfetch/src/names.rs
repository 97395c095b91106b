//! File names for `--out`, derived from record URLs, that always fit the file system.

use percent_encoding::percent_decode_str;
use url::Url;

/// The longest file name, in bytes, that common file systems accept (`NAME_MAX` on Linux and
/// macOS). Every name bgfetch creates, with its collision suffix, stays within it; temporary
/// files have short names of their own (see [`temporary_prefix`]).
pub const NAME_MAX: usize = 255;

/// An extension longer than this is treated as part of the stem when a name is shortened.
const MAX_EXTENSION: usize = 16;

/// The name a record's body gets: the URL's last path segment, percent-decoded, with path
/// separators and control characters replaced by `_`; `index` when there is none.
pub fn base_name(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "index".to_owned());
    let decoded = percent_decode_str(&last).decode_utf8_lossy();
    let base: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if base.is_empty() || base == "." || base == ".." {
        "index".to_owned()
    } else {
        base
    }
}

/// `base` with collision suffix `n` (`name-n.ext`; none for 0), its stem shortened (at a
/// character boundary) so that the whole name fits [`NAME_MAX`] bytes.
pub fn candidate(base: &str, n: u32) -> String {
    let (stem, ext) = match base.rfind('.') {
        Some(i) if i > 0 && base.len() - i <= MAX_EXTENSION => (&base[..i], &base[i..]),
        _ => (base, ""),
    };
    let suffix = if n == 0 {
        String::new()
    } else {
        format!("-{n}")
    };
    let mut room = NAME_MAX - ext.len() - suffix.len();
    if room >= stem.len() {
        room = stem.len();
    }
    while !stem.is_char_boundary(room) {
        room -= 1;
    }
    format!("{}{suffix}{ext}", &stem[..room])
}

/// The start of the name of every temporary file a fetch writes into `--out`
/// (`.bgfetch-TOKEN-`), so that they can be found and removed whatever happened to the process
/// that wrote them.
pub fn temporary_prefix(token: &str) -> String {
    format!(".bgfetch-{token}-")
}

/// The end of every temporary file's name.
pub const TEMPORARY_SUFFIX: &str = ".part";

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn names_come_from_the_last_segment_decoded_and_made_safe() {
        assert_eq!(base_name(&url("http://h/a/b%20c.txt")), "b c.txt");
        assert_eq!(base_name(&url("http://h/a/")), "index");
        assert_eq!(base_name(&url("http://h/a/%2E%2E")), "index");
        assert_eq!(base_name(&url("http://h/a%2Fb%5Cc%0A")), "a_b_c_");
        assert_eq!(base_name(&url("http://h/%FF.bin")), "\u{FFFD}.bin");
    }

    #[test]
    fn every_candidate_fits_name_max_with_its_suffix() {
        let long = format!("{}.iso", "é".repeat(300));
        for n in [0, 1, 9, 10, 12345, u32::MAX] {
            let c = candidate(&long, n);
            assert!(c.len() <= NAME_MAX, "{} bytes", c.len());
            assert!(c.ends_with(".iso"), "{c}");
            if n > 0 {
                assert!(c.ends_with(&format!("-{n}.iso")));
            }
        }
        let no_ext = "x".repeat(1000);
        assert_eq!(candidate(&no_ext, 0).len(), NAME_MAX);
        let long_ext = format!("a.{}", "e".repeat(400));
        assert!(candidate(&long_ext, 3).len() <= NAME_MAX);
        assert_eq!(candidate("a.bin", 0), "a.bin");
        assert_eq!(candidate("a.bin", 2), "a-2.bin");
        assert_eq!(candidate(".bashrc", 1), ".bashrc-1");
        // A temporary name fits too.
        let tmp = format!(
            "{}XXXXXX{TEMPORARY_SUFFIX}",
            temporary_prefix("0123456789abcdef")
        );
        assert!(tmp.len() <= NAME_MAX);
    }
}
