//! The expected failures of the upstream run (`expectations/upstream.txt`): one line per
//! subtest that does not pass, `file | subtest | STATUS | reason`. A failure must have a
//! reason; a subtest that passes although it is listed fails the run (an unexpected pass), as
//! does a failure that is not listed.

use crate::runner::FileResult;

/// The expectations file, compiled in.
pub const EXPECTATIONS: &str = include_str!("../expectations/upstream.txt");

/// One expected failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The file.
    pub file: String,
    /// The subtest.
    pub name: String,
    /// The expected status.
    pub status: String,
    /// Why.
    pub reason: String,
}

/// Parses the expectations (`#` comments and blank lines skipped).
pub fn parse(text: &str) -> Result<Vec<Expectation>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split(" | ").collect();
        if parts.len() != 4 || parts[3].trim().is_empty() {
            return Err(format!(
                "line {}: want `file | subtest | STATUS | reason`",
                i + 1
            ));
        }
        out.push(Expectation {
            file: parts[0].trim().into(),
            name: parts[1].trim().into(),
            status: parts[2].trim().into(),
            reason: parts[3].trim().into(),
        });
    }
    Ok(out)
}

/// The differences between `results` and the expectations: unexpected failures and passes.
pub fn check(results: &[FileResult], expectations: &[Expectation]) -> Vec<String> {
    let mut problems = Vec::new();
    for f in results {
        for s in &f.subtests {
            let e = expectations
                .iter()
                .find(|e| e.file == f.file && e.name == s.name);
            match (s.status.as_str(), e) {
                ("PASS", Some(_)) => {
                    problems.push(format!("UNEXPECTED PASS {} | {}", f.file, s.name))
                }
                ("PASS", None) => {}
                (status, Some(e)) if e.status == status => {}
                (status, _) => problems.push(format!(
                    "UNEXPECTED {status} {} | {}: {}",
                    f.file, s.name, s.message
                )),
            }
        }
        if f.harness.0 != "OK" {
            let e = expectations
                .iter()
                .find(|e| e.file == f.file && e.name == "(harness)");
            if e.is_none_or(|e| e.status != f.harness.0) {
                problems.push(format!(
                    "UNEXPECTED HARNESS {} {}: {}",
                    f.harness.0, f.file, f.harness.1
                ));
            }
        }
    }
    problems
}
