//! Keeps `spec-map.md` true:
//!
//! * every anchor of the pinned spec (its section ids and the ids Bikeshed gives its `<dfn>`s and
//!   IDL definitions) has exactly one row;
//! * every row names a real anchor, with a known status;
//! * every anchor the code cites (`/// <https://wicg.github.io/background-fetch/#...>`) has a row;
//! * every test a row names exists;
//! * no algorithm of spec §5 (API) or §6 (internal algorithms) is `missing`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SPEC: &str = include_str!("data/background-fetch.bs");
const STATUSES: [&str; 5] = ["done", "partial", "missing", "ad-hoc", "informative"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn slug(text: &str) -> String {
    let text = match text.find('(') {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::new();
    for c in text.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = attrs.find(&key)? + key.len();
    Some(&attrs[start..start + attrs[start..].find('"')?])
}

/// The anchors Bikeshed generates for the spec: explicit section ids, `<dfn>` ids (scoped by the
/// enclosing `dfn-for`), and the ids of the IDL block's interfaces, dictionaries, dictionary
/// members and enums.
fn spec_anchors() -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    // (dfn-for, dfn-type) of the enclosing <div>/<tbody>s.
    let mut stack: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut in_idl = false;
    let mut idl_scope: Option<(String, &str)> = None;
    for line in SPEC.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("{#") {
            let end = rest[i..].find('}').unwrap() + i;
            anchors.insert(rest[i + 2..end].to_owned());
            rest = &rest[end..];
        }
        if line.trim_start().starts_with("<script type=\"idl\">") {
            in_idl = true;
            continue;
        }
        if in_idl {
            if line.contains("</script>") {
                in_idl = false;
                continue;
            }
            let t = line.trim();
            let words: Vec<&str> = t.split_whitespace().collect();
            let name_after = |kw: &str| {
                words
                    .iter()
                    .position(|w| *w == kw)
                    .and_then(|i| words.get(i + 1))
                    .map(|w| w.trim_end_matches(['{', ':']).to_owned())
            };
            if let Some(n) = name_after("interface") {
                if !t.starts_with("partial") {
                    anchors.insert(n.to_lowercase());
                }
                idl_scope = Some((n, "interface"));
            } else if let Some(n) = name_after("dictionary") {
                anchors.insert(format!("dictdef-{}", n.to_lowercase()));
                idl_scope = Some((n, "dictionary"));
            } else if let Some(n) = name_after("enum") {
                anchors.insert(format!("enumdef-{}", n.to_lowercase()));
                idl_scope = Some((n, "enum"));
            } else if t.starts_with("};") {
                idl_scope = None;
            } else if let Some((scope, "dictionary")) = &idl_scope
                && let Some(member) = t
                    .trim_end_matches(';')
                    .split('=')
                    .next()
                    .and_then(|d| d.split_whitespace().last())
            {
                anchors.insert(format!(
                    "dom-{}-{}",
                    scope.to_lowercase(),
                    member.to_lowercase()
                ));
            }
            continue;
        }
        let mut pos = 0;
        loop {
            let open = line[pos..]
                .find("<div")
                .or_else(|| line[pos..].find("<tbody"))
                .map(|i| i + pos);
            let dfn = line[pos..].find("<dfn").map(|i| i + pos);
            match (open, dfn) {
                (Some(o), d) if d.is_none_or(|d| o < d) => {
                    let end = line[o..].find('>').unwrap() + o;
                    let attrs = &line[o..end];
                    let parent = stack.last().cloned().unwrap_or((None, None));
                    stack.push((
                        attr(attrs, "dfn-for").map(str::to_owned).or(parent.0),
                        attr(attrs, "dfn-type").map(str::to_owned).or(parent.1),
                    ));
                    pos = end;
                }
                (_, Some(d)) => {
                    let close = line[d..].find('>').unwrap() + d;
                    let attrs = &line[d + 4..close];
                    let end = line[close..].find("</dfn>").unwrap() + close;
                    let text = attr(attrs, "lt")
                        .or(attr(attrs, "data-lt"))
                        .map(|s| s.split('|').next().unwrap())
                        .unwrap_or(&line[close + 1..end]);
                    let (scope, ty) = stack.last().cloned().unwrap_or((None, None));
                    let kind = ["method", "attribute", "event"]
                        .into_iter()
                        .find(|k| attrs.split_whitespace().any(|w| w == *k))
                        .map(str::to_owned)
                        .or(ty);
                    let id = match (kind.as_deref(), &scope) {
                        (Some("method" | "attribute"), Some(s)) => {
                            format!("dom-{}-{}", slug(s), slug(text).replace('-', ""))
                        }
                        (Some("event"), Some(s)) => {
                            format!("eventdef-{}-{}", slug(s).replace('-', ""), slug(text))
                        }
                        (_, Some(s)) => format!("{}-{}", slug(s), slug(text)),
                        (_, None) => slug(text),
                    };
                    anchors.insert(id);
                    pos = end;
                }
                _ => break,
            }
        }
        for _ in 0..(line.matches("</div>").count() + line.matches("</tbody>").count()) {
            stack.pop();
        }
    }
    anchors
}

struct Row {
    status: String,
    tests: Vec<String>,
}

fn spec_map() -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(workspace_root().join("spec-map.md")).expect("spec-map.md");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `anchor` | status | item | tests |
        if cells.len() < 6 || !cells[1].starts_with('`') || !cells[1].ends_with('`') {
            continue;
        }
        let anchor = cells[1]
            .trim_matches('`')
            .trim_start_matches('#')
            .to_owned();
        let tests = cells[4]
            .split(',')
            .map(|t| t.trim().trim_matches('`').to_owned())
            .filter(|t| !t.is_empty() && t != "—" && t != "-")
            .collect();
        let previous = rows.insert(
            anchor.clone(),
            Row {
                status: cells[2].to_owned(),
                tests,
            },
        );
        assert!(
            previous.is_none(),
            "spec-map.md has two rows for `{anchor}`"
        );
    }
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_spec_anchor_has_one_row_and_every_row_a_real_anchor() {
    let anchors = spec_anchors();
    assert!(
        anchors.len() > 120,
        "the anchor parser found only {} anchors",
        anchors.len()
    );
    let rows = spec_map();
    let missing: Vec<_> = anchors.iter().filter(|a| !rows.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "spec anchors without a row in spec-map.md: {missing:?}"
    );
    let unknown: Vec<_> = rows.keys().filter(|a| !anchors.contains(*a)).collect();
    assert!(
        unknown.is_empty(),
        "rows in spec-map.md for anchors the spec does not have: {unknown:?}"
    );
    for (anchor, row) in &rows {
        assert!(
            STATUSES.contains(&row.status.as_str()),
            "`{anchor}` has status {:?}",
            row.status
        );
    }
}

#[test]
fn every_anchor_cited_in_code_has_a_row() {
    let rows = spec_map();
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("components"), &mut files);
    let marker = "https://wicg.github.io/background-fetch/#";
    let mut cited = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len());
            if end > 0 {
                cited.insert((
                    rest[..end].to_owned(),
                    f.strip_prefix(&root).unwrap().display().to_string(),
                ));
            }
        }
    }
    assert!(cited.len() > 50, "only {} citations found", cited.len());
    let missing: Vec<_> = cited
        .iter()
        .filter(|(a, _)| !rows.contains_key(a))
        .collect();
    assert!(
        missing.is_empty(),
        "anchors cited in code without a row in spec-map.md: {missing:?}"
    );
}

#[test]
fn every_test_named_in_spec_map_exists() {
    let root = workspace_root();
    let mut missing = Vec::new();
    let mut count = 0;
    for (anchor, row) in spec_map() {
        for t in row.tests {
            count += 1;
            // `path/to/file.rs::function`, relative to the workspace root.
            let Some((file, func)) = t.rsplit_once("::") else {
                missing.push(format!("{anchor}: {t:?} is not `file.rs::function`"));
                continue;
            };
            let Ok(text) = std::fs::read_to_string(root.join(file)) else {
                missing.push(format!("{anchor}: no file {file}"));
                continue;
            };
            if !text.contains(&format!("fn {func}(")) {
                missing.push(format!("{anchor}: no fn {func} in {file}"));
            }
        }
    }
    assert!(count > 50, "spec-map.md names only {count} tests");
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn no_algorithm_of_the_api_or_internal_algorithms_is_missing() {
    // Outline §5 (API algorithms) and §6 (internal algorithms).
    let algorithms = [
        "dom-serviceworkerregistration-backgroundfetch",
        "background-fetch-manager-fetch",
        "background-fetch-manager-get",
        "background-fetch-manager-get-ids",
        "background-fetch-registration",
        "background-fetch-registration-events",
        "background-fetch-registration-abort",
        "background-fetch-registration-match",
        "background-fetch-registration-match-all",
        "background-fetch-record-interface",
        "background-fetch-event",
        "background-fetch-update-ui-event-update-ui",
        "extensions-to-service-worker-global",
        "background-fetch-display-algorithm",
        "perform-a-background-fetch-algorithm",
        "complete-a-record-algorithm",
        "update-background-fetch-instance-algorithm",
        "fire-a-background-fetch-click-event-algorithm",
        "get-a-backgroundfetchregistration-instance-algorithm",
        "validate-partial-response-algorithm",
        "extract-content-range-values-algorithm",
        "header-syntax",
        "create-settled-fetches-algorithm",
        "contains-background-fetch-algorithm",
    ];
    let rows = spec_map();
    for a in algorithms {
        let row = rows.get(a).unwrap_or_else(|| panic!("no row for {a}"));
        assert_ne!(row.status, "missing", "{a} is missing");
        assert_ne!(row.status, "informative", "{a} is an algorithm");
    }
}
