//! A crate's module graph, read from its sources, for tests that keep its layers: no import
//! circle, and no module reaching up to a layer above its own.
//!
//! A module is a file under `src/` (`control/wire.rs` is `control::wire`, `service/mod.rs` is
//! `service`); it uses the modules its `crate::` paths name (the longest prefix that is a
//! module). Comments, doc links included, are not uses; a module naming its own parent is not
//! counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it uses.
pub type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

fn module_name(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("a file under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module graph of the crate whose sources are in `src`.
pub fn module_graph(src: &Path) -> ModuleGraph {
    let mut all = Vec::new();
    files(src, &mut all);
    let names: BTreeSet<String> = all.iter().map(|f| module_name(src, f)).collect();
    let mut g = BTreeMap::new();
    for f in &all {
        let me = module_name(src, f);
        let text: String = std::fs::read_to_string(f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut uses = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| names.contains(m));
            if let Some(t) = target
                && t != me
                && !me.starts_with(&format!("{t}::"))
            {
                uses.insert(t);
            }
        }
        g.insert(me, uses);
    }
    g
}

/// A circle of modules, each using the next, if there is one.
pub fn import_circle(g: &ModuleGraph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &ModuleGraph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

/// Panics, naming the circle, if the crate in `src` has an import circle.
pub fn assert_no_import_circle(src: &Path) -> ModuleGraph {
    let g = module_graph(src);
    if let Some(cycle) = import_circle(&g) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circle_is_found_and_a_tree_is_not() {
        let g: ModuleGraph = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let c = import_circle(&g).expect("a circle");
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
        let tree: ModuleGraph = [("a", vec!["b", "c"]), ("b", vec!["c"]), ("c", vec![])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
        assert_eq!(import_circle(&tree), None);
    }
}
