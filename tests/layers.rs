//! The library's structure, checked: no import cycle between its modules (a file's `crate::`
//! and `super::` paths, comments and unit tests aside), and the generic training loop names
//! no family.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::repo_root;

/// Module path (`rl::train`) -> its source, for every file under `src`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let name = rel.to_string_lossy().replace('/', "::");
                let name = name.strip_suffix("::mod").unwrap_or(&name).to_string();
                if name != "lib" {
                    out.insert(name, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The code of a file: unit tests and comment lines removed.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module -> the other modules whose paths its code names.
fn imports(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (name, text) in mods {
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p).to_string();
        let code = code(text);
        let mut out = BTreeSet::new();
        // `super::` in module `a::b` (`a/b.rs` or `a/b/mod.rs`) names `a`.
        for (prefix, root) in [("crate::", String::new()), ("super::", parent.clone())] {
            let mut rest = code.as_str();
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let path: String = rest
                    .chars()
                    .take_while(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':'
                    })
                    .collect();
                let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
                for k in (1..=parts.len()).rev() {
                    let mut candidate: Vec<&str> = Vec::new();
                    if !root.is_empty() {
                        candidate.push(&root);
                    }
                    candidate.extend(&parts[..k]);
                    let candidate = candidate.join("::");
                    if mods.contains_key(&candidate) {
                        if &candidate != name {
                            out.insert(candidate);
                        }
                        break;
                    }
                }
            }
        }
        edges.insert(name.clone(), out);
    }
    edges
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in &s.edges[v] {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn the_library_has_no_import_cycle() {
    let src = repo_root().join("crates/bohp/src");
    let mods = modules(&src);
    let edges = imports(&mods);
    // The analysis sees real imports: the families' files import the family trait, and the
    // registry imports every family.
    assert!(
        edges["recurrent::family"].contains("family"),
        "{:?}",
        edges["recurrent::family"]
    );
    assert!(
        edges["registry"].contains("rl::family"),
        "{:?}",
        edges["registry"]
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles: {found:?}");
    // And it finds one where there is one.
    let mut looped = edges.clone();
    looped.get_mut("learner").unwrap().insert("registry".into());
    assert!(!cycles(&looped).is_empty());
}

#[test]
fn the_training_loop_names_no_family() {
    let src = repo_root().join("crates/bohp/src");
    let mods = modules(&src);
    let edges = imports(&mods);
    for generic in ["learner", "family", "family::session", "export"] {
        let named: Vec<&String> = edges[generic]
            .iter()
            .filter(|m| {
                [
                    "config",
                    "train",
                    "recurrent",
                    "rl",
                    "omniglot",
                    "single",
                    "network",
                    "layer",
                    "tasks",
                ]
                .iter()
                .any(|f| m.as_str() == *f || m.starts_with(&format!("{f}::")))
            })
            .collect();
        assert!(
            named.is_empty(),
            "{generic} imports family modules {named:?}"
        );
    }
}

/// The families import only the shared layers, never each other; the shared layers import no
/// family, except the two debts docs/architecture.md names (`engines` holds the single layer's
/// and the recurrent network's host engines, `run` the single layer's metrics row) and the
/// registry (and the prelude), whose job it is.
#[test]
fn families_import_only_the_shared_layers() {
    let src = repo_root().join("crates/bohp/src");
    let mods = modules(&src);
    let edges = imports(&mods);
    let families = ["single", "recurrent", "rl", "omniglot"];
    let family_of = |m: &str| {
        families
            .into_iter()
            .find(|f| m == *f || m.starts_with(&format!("{f}::")))
    };
    let mut wrong = Vec::new();
    for (module, imported) in &edges {
        let own = family_of(module);
        let allowed_shared =
            module == "registry" || module.starts_with("engines") || module == "run";
        for target in imported {
            match (own, family_of(target)) {
                (Some(a), Some(b)) if a != b => wrong.push(format!("{module} -> {target}")),
                (None, Some(_)) if !allowed_shared => wrong.push(format!("{module} -> {target}")),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "imports across the layers: {wrong:?}");
    // The check sees the registry's imports of every family.
    let registry_families: BTreeSet<&str> = edges["registry"]
        .iter()
        .filter_map(|t| family_of(t))
        .collect();
    assert_eq!(
        registry_families.len(),
        families.len(),
        "{:?}",
        edges["registry"]
    );
}
