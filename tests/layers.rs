//! The source's shape, as README's "How it works" states it: no two files of `src/` import each
//! other (directly or round a longer loop), and no pipeline stage imports a later one
//! (input → parse → route → jail → pipeline → ban → enforce). Reads the files as text: an
//! import is a `crate::`, `super::` or child-module path outside the file's test module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const STAGES: &[&str] = &[
    "input", "parse", "route", "jail", "cluster", "pipeline", "ban", "enforce", "notify",
];

type Module = Vec<String>;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if !path.ends_with("bin") {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Module = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code that counts: no test module, no comments, no `pub(in crate::x)` visibility.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
        .replace("pub(in crate::config)", "")
}

/// Every `prefix` path in `code`, as its segments (`crate::a::b::C` → `[a, b, C]`).
fn paths<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let after = &rest[at + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        if boundary {
            out.push(after[..end].split("::").filter(|s| !s.is_empty()).collect());
        }
        rest = &after[end..];
    }
    out
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut list = Vec::new();
    files(&src, &mut list);
    let texts: BTreeMap<Module, String> = list
        .iter()
        .map(|f| {
            (
                module_of(&src, f),
                code(&std::fs::read_to_string(f).expect("read")),
            )
        })
        .collect();
    let known: BTreeSet<Module> = texts.keys().cloned().collect();
    // The longest module that `path` names.
    let resolve = |path: Vec<String>| -> Option<Module> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| known.contains(m))
    };
    let mut edges = BTreeMap::new();
    for (me, code) in &texts {
        let mut to = BTreeSet::new();
        for path in paths(code, "crate::") {
            to.extend(resolve(path.iter().map(|s| s.to_string()).collect()));
        }
        for path in paths(code, "super::") {
            let mut base: Module = me[..me.len().saturating_sub(1)].to_vec();
            let mut rest = path.as_slice();
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().map(|s| s.to_string()));
            to.extend(resolve(base));
        }
        // `use child::...` in a module file.
        for line in code.lines() {
            let line = line
                .trim_start()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            if let Some(used) = line.strip_prefix("use ") {
                let first = used
                    .trim_start_matches("self::")
                    .split("::")
                    .next()
                    .unwrap_or("");
                let mut child = me.clone();
                child.push(first.to_string());
                if known.contains(&child) {
                    to.insert(child);
                }
            }
        }
        to.remove(me);
        edges.insert(me.clone(), to);
    }
    edges
}

/// A loop through `start`, if there is one.
fn cycle_through(
    edges: &BTreeMap<Module, BTreeSet<Module>>,
    start: &Module,
) -> Option<Vec<Module>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((at, trail)) = stack.pop() {
        for next in edges.get(&at).into_iter().flatten() {
            if next == start {
                return Some(trail);
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let edges = graph();
    assert!(edges.len() > 50, "found only {} files", edges.len());
    let cycles: Vec<String> = edges
        .keys()
        .filter_map(|m| cycle_through(&edges, m))
        .map(|c| {
            c.iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn no_stage_imports_a_later_one() {
    let stage = |m: &Module| {
        STAGES
            .iter()
            .position(|s| m.first().is_some_and(|f| f == s))
    };
    let mut wrong = Vec::new();
    for (from, to) in graph() {
        for target in to {
            if let (Some(a), Some(b)) = (stage(&from), stage(&target)) {
                if b > a {
                    wrong.push(format!("{} → {}", from.join("::"), target.join("::")));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "stages importing later ones:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_imports() {
    // The test above would pass on a reader that finds nothing: it must find known edges.
    let edges = graph();
    let has = |from: &str, to: &str| {
        let split = |s: &str| s.split("::").map(String::from).collect::<Module>();
        edges
            .get(&split(from))
            .is_some_and(|t| t.contains(&split(to)))
    };
    assert!(has("parse::journal", "input::journal::export"));
    assert!(has("ban::state", "ban::record"));
    assert!(has("config", "config::compile"));
    assert!(has("input::journal::upload", "input::http"));
}
