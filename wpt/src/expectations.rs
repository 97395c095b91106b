//! Expectation files (`wpt/expectations/<upstream file>.ini`), in the shape of wptrunner's
//! metadata:
//!
//! ```ini
//! [fetch.https.window.js]
//!   [Background Fetch requires an activated Service Worker]
//!     expected: PASS
//!   [Some subtest]
//!     expected: FAIL
//!     reason: what is wrong, and where (an engine bug, a gap, or why it cannot apply)
//!   [Another subtest]
//!     expected: PASS
//!     note: how the port differs from upstream, if it does
//! ```
//!
//! Every subtest of the file has exactly one entry; every entry names a subtest; a FAIL has a
//! reason; a `note:` documents a difference from upstream that does not change the status. `]` and `\` in a subtest name are escaped with a backslash. Lines starting with `#`
//! are comments.

use std::collections::BTreeMap;
use std::fmt;

/// An expected status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The subtest passes.
    Pass,
    /// The subtest fails (known; the reason says why).
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
        })
    }
}

/// The expectation of one subtest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// PASS or FAIL.
    pub status: Status,
    /// Why (required for FAIL).
    pub reason: Option<String>,
    /// How the port differs from upstream, if it does.
    pub note: Option<String>,
}

/// The parsed expectations of one upstream file.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The `[file]` heading.
    pub file: String,
    /// Subtest name → expectation, in file order of insertion.
    pub subtests: BTreeMap<String, Expectation>,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes a subtest name for a heading.
pub fn escape(name: &str) -> String {
    name.replace('\\', "\\\\").replace(']', "\\]")
}

struct Entry {
    name: String,
    status: Option<Status>,
    reason: Option<String>,
    note: Option<String>,
}

fn heading(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    Some(unescape(inner))
}

impl Expectations {
    /// Parses an expectation file.
    pub fn parse(text: &str) -> Result<Expectations, String> {
        let mut out = Expectations::default();
        let mut current: Option<Entry> = None;
        let finish = |current: &mut Option<Entry>, out: &mut Expectations| -> Result<(), String> {
            if let Some(Entry {
                name,
                status,
                reason,
                note,
            }) = current.take()
            {
                let status = status.ok_or_else(|| format!("[{name}] has no `expected:`"))?;
                if status == Status::Pass && reason.is_some() {
                    return Err(format!(
                        "[{name}] is expected to PASS but has a `reason:` (use `note:`)"
                    ));
                }
                if status == Status::Fail && reason.as_deref().unwrap_or("").trim().is_empty() {
                    return Err(format!("[{name}] is expected to FAIL without a `reason:`"));
                }
                if out
                    .subtests
                    .insert(
                        name.clone(),
                        Expectation {
                            status,
                            reason,
                            note,
                        },
                    )
                    .is_some()
                {
                    return Err(format!("[{name}] is listed twice"));
                }
            }
            Ok(())
        };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let at = |m: &str| format!("line {}: {m}", n + 1);
            match indent {
                0 => {
                    let h = heading(trimmed).ok_or_else(|| at("expected a [file] heading"))?;
                    if !out.file.is_empty() {
                        return Err(at("a second [file] heading"));
                    }
                    out.file = h;
                }
                2 => {
                    finish(&mut current, &mut out)?;
                    let h = heading(trimmed).ok_or_else(|| at("expected a [subtest] heading"))?;
                    current = Some(Entry {
                        name: h,
                        status: None,
                        reason: None,
                        note: None,
                    });
                }
                4 => {
                    let Some(cur) = current.as_mut() else {
                        return Err(at("a key outside a subtest"));
                    };
                    let (key, value) = trimmed
                        .split_once(':')
                        .ok_or_else(|| at("expected `key: value`"))?;
                    let value = value.trim();
                    match key.trim() {
                        "expected" => {
                            cur.status = Some(match value {
                                "PASS" => Status::Pass,
                                "FAIL" => Status::Fail,
                                other => return Err(at(&format!("unknown status {other}"))),
                            })
                        }
                        "reason" => cur.reason = Some(value.to_owned()),
                        "note" => cur.note = Some(value.to_owned()),
                        other => return Err(at(&format!("unknown key {other}"))),
                    }
                }
                _ => return Err(at("indent must be 0, 2 or 4 spaces")),
            }
        }
        finish(&mut current, &mut out)?;
        Ok(out)
    }

    /// Checks that the file is for `file` and lists exactly `names`.
    pub fn check_covers(&self, file: &str, names: &[&str]) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.file != file {
            problems.push(format!("the heading is [{}], not [{file}]", self.file));
        }
        for n in names {
            if !self.subtests.contains_key(*n) {
                problems.push(format!("no entry for subtest [{}]", escape(n)));
            }
        }
        for n in self.subtests.keys() {
            if !names.contains(&n.as_str()) {
                problems.push(format!("entry [{}] names no subtest of {file}", escape(n)));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let e = Expectations::parse(
            "# c\n[f.js]\n  [a \\] b]\n    expected: PASS\n  [c]\n    expected: FAIL\n    reason: r\n",
        )
        .unwrap();
        assert_eq!(e.file, "f.js");
        assert_eq!(e.subtests["a ] b"].status, Status::Pass);
        assert_eq!(e.subtests["c"].reason.as_deref(), Some("r"));
        assert!(e.check_covers("f.js", &["a ] b", "c"]).is_ok());
        assert!(e.check_covers("f.js", &["a ] b"]).is_err());
        assert!(e.check_covers("f.js", &["a ] b", "c", "d"]).is_err());
        assert!(Expectations::parse("[f]\n  [x]\n    expected: FAIL\n").is_err());
        assert!(Expectations::parse("[f]\n  [x]\n    expected: PASS\n    reason: r\n").is_err());
        let n = Expectations::parse("[f]\n  [x]\n    expected: PASS\n    note: n\n").unwrap();
        assert_eq!(n.subtests["x"].note.as_deref(), Some("n"));
        assert!(
            Expectations::parse("[f]\n  [x]\n    expected: PASS\n  [x]\n    expected: PASS\n")
                .is_err()
        );
    }
}
