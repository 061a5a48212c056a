//! ARCHITECTURE.md's invariant on modules: within each crate (the binary's
//! `src/` included), the top-level modules import each other without cycles.
//! A type two modules both need lives in a module both import (as
//! `lpo_train::request` holds the run request that `run`, `rounds` and
//! `eval` share), so each file can be read after the files it uses.
//!
//! Imports are read from the source text: every `crate::NAME` path and
//! every name inside `use crate::{...}`, outside comments and `#[cfg(test)]`
//! code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("failed to read `{}`: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src` belongs to (`lib` for lib.rs and
/// main.rs).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => "lib".to_string(),
        Some(name) => name.to_string(),
        None => first.to_string(),
    }
}

/// The code of `text` a build without tests compiles: up to its first
/// `#[cfg(test)]`, without comment lines.
fn non_test_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The names `code` reaches through `crate::`: `crate::NAME` and each name
/// of `crate::{A, b::C}`'s first level.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| is_ident(c)) {
            continue; // `lpo_crate::` or the like
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item.trim().chars().take_while(|&c| is_ident(c)).collect();
                names.insert(name);
            }
        } else {
            names.insert(rest.chars().take_while(|&c| is_ident(c)).collect());
        }
    }
    names
}

/// Each top-level module of the crate at `src` and the modules it imports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let uses: Vec<String> = crate_paths(&non_test_code(&text))
            .into_iter()
            .filter(|m| modules.contains(m) && *m != module && m != "lib")
            .collect();
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

/// A cycle of `graph` as a path `a -> b -> ... -> a`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![root.join("src")];
    let crates = std::fs::read_dir(root.join("crates")).unwrap();
    sources.extend(crates.map(|c| c.unwrap().path().join("src")));
    sources.sort();
    let cycles: Vec<String> = sources
        .iter()
        .filter_map(|src| {
            let cycle = find_cycle(&module_graph(src))?;
            Some(format!("{}: {}", src.display(), cycle.join(" -> ")))
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "modules import each other in a cycle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_finds_imports_and_cycles() {
    let code = non_test_code(
        "use crate::run::Baseline;\n// crate::ignored\nuse crate::{lists, sources::Window};\n\
         fn f() { crate::eval::x(); lpo_crate::no(); }\n#[cfg(test)]\nmod tests { use crate::t; }",
    );
    let found: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(found, ["eval", "lists", "run", "sources"]);
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[
            ("eval", "run"),
            ("run", "rounds"),
            ("rounds", "eval")
        ])),
        Some(vec![
            "eval".into(),
            "run".into(),
            "rounds".into(),
            "eval".into()
        ])
    );
    assert_eq!(
        find_cycle(&graph(&[
            ("eval", "request"),
            ("run", "request"),
            ("run", "eval")
        ])),
        None
    );
}
