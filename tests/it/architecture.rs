//! The architecture test: the layers of `src/` point one way and no modules import each other in
//! a circle.
//!
//! It reads every `.rs` file under `src/`, resolves each `crate::…` and `super::…` path to the
//! module file it names, and fails, naming file:line, on
//! - an import between two top-level modules that does not point down [`LAYERS`], and
//! - a cycle among sibling modules (modules with the same parent, at every depth of the tree):
//!   a parent and its own children may use each other, siblings may not in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer order, bottom first. A top-level module may import only from modules of a lower row;
/// modules of the same row are beside each other and import nothing of each other.
const LAYERS: &[&[&str]] = &[
    // ground floor
    &["text", "yaml", "out", "tls"],
    &["redact"],
    &["error"],
    // cross-cutting
    &["config"],
    &["secrets", "progress"],
    &["host", "logging"],
    &["state"],
    // domain (plain Rust) and the stand-ins
    &["clients", "catalog", "lab"],
    // the per-run services, then the script runtime under the bindings
    &["session", "preflight"],
    &["script"],
    &["bindings"],
    &["engine"],
    // entry points
    &["serve"],
    &["commands"],
    &["cli"],
    &["app"],
];

type Module = Vec<String>;

struct Edge {
    from: Module,
    to: Module,
    file: PathBuf,
    line: usize,
}

/// Module path of a file under `src/` (`src/a/mod.rs` and `src/a.rs` are `a`; lib/main the root).
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The identifier path after `crate::` or `super::…::` at byte `i` of `line`.
fn path_at(line: &str, i: usize) -> Vec<String> {
    let rest = &line[i..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every `crate::`/`super::` path of the tree, resolved to the deepest module file it names.
fn edges(src: &Path) -> (Vec<Edge>, Vec<String>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let resolve = |path: &[String]| -> Option<Module> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for f in &files {
        let module = module_of(src, f);
        let text = std::fs::read_to_string(f).unwrap();
        // Inline modules (`mod tests { … }`) change what `super` means.
        let mut depth: i64 = 0;
        let mut inline: Vec<(String, i64)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split("//").next().unwrap_or("");
            let t = line.trim();
            let here: Module = module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(m, _)| m.clone()))
                .collect();
            if let Some(name) = inline_mod(t) {
                inline.push((name, depth));
            }
            depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            while inline.last().is_some_and(|(_, d)| depth <= *d) {
                inline.pop();
            }
            if line.contains("crate::{") {
                problems.push(format!(
                    "{}:{}: write one `use crate::…` path per module (grouped crate imports hide edges)",
                    f.display(),
                    n + 1
                ));
            }
            let mut from = 0;
            while let Some(k) = find_root(line, from) {
                let (start, ups, after) = k;
                from = after;
                if start > 0 && line.as_bytes()[start - 1] == b'$' {
                    continue; // `$crate::` in a macro
                }
                let rel = path_at(line, after);
                let path: Vec<String> = if ups == 0 {
                    rel
                } else {
                    let keep = here.len().saturating_sub(ups);
                    here[..keep].iter().cloned().chain(rel).collect()
                };
                if let Some(to) = resolve(&path) {
                    if to != module {
                        out.push(Edge {
                            from: module.clone(),
                            to,
                            file: f.clone(),
                            line: n + 1,
                        });
                    }
                }
            }
        }
    }
    (out, problems)
}

fn inline_mod(t: &str) -> Option<String> {
    let t = t
        .strip_prefix("pub(crate) ")
        .or_else(|| t.strip_prefix("pub(super) "))
        .or_else(|| t.strip_prefix("pub "))
        .unwrap_or(t);
    let rest = t.strip_prefix("mod ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    rest[name.len()..]
        .trim_start()
        .starts_with('{')
        .then_some(name)
}

/// The next `crate::` or `super::(super::)*` at or after `from`: (start, number of supers, end).
fn find_root(line: &str, from: usize) -> Option<(usize, usize, usize)> {
    let b = line.as_bytes();
    let mut i = from;
    while i < line.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && line[i..].starts_with("crate::") {
            return Some((i, 0, i + "crate::".len()));
        }
        if word_start && line[i..].starts_with("super::") {
            let mut j = i;
            let mut ups = 0;
            while line[j..].starts_with("super::") {
                ups += 1;
                j += "super::".len();
            }
            return Some((i, ups, j));
        }
        i += line[i..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

fn rank(top: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&top))
}

/// Every problem with the tree at `src`, as `file:line: what` lines.
fn check(src: &Path) -> Vec<String> {
    let (edges, mut problems) = edges(src);
    let tops: BTreeSet<&str> = edges
        .iter()
        .flat_map(|e| [e.from.first(), e.to.first()])
        .flatten()
        .map(String::as_str)
        .collect();
    for t in tops {
        if rank(t).is_none() {
            problems.push(format!("src/{t}: a top-level module missing from LAYERS"));
        }
    }
    // 1. Layers.
    for e in &edges {
        let (Some(a), Some(b)) = (e.from.first(), e.to.first()) else {
            continue; // the crate root declares every module
        };
        if a == b {
            continue;
        }
        if let (Some(ra), Some(rb)) = (rank(a), rank(b)) {
            if rb >= ra {
                let dir = if rb == ra { "sideways" } else { "up" };
                problems.push(format!(
                    "{}:{}: {} imports {} ({dir} the layer order in tests/architecture.rs)",
                    e.file.display(),
                    e.line,
                    e.from.join("::"),
                    e.to.join("::")
                ));
            }
        }
    }
    // 2. Cycles among siblings.
    let mut graph: BTreeMap<Module, BTreeMap<Module, (PathBuf, usize)>> = BTreeMap::new();
    for e in &edges {
        let common = e.from.iter().zip(&e.to).take_while(|(a, b)| a == b).count();
        if common == e.from.len() || common == e.to.len() {
            continue; // a module and its own ancestor or descendant
        }
        let a = e.from[..=common].to_vec();
        let b = e.to[..=common].to_vec();
        graph
            .entry(a)
            .or_default()
            .entry(b)
            .or_insert((e.file.clone(), e.line));
    }
    for cycle in cycles(&graph) {
        let mut lines = Vec::new();
        for (i, m) in cycle.iter().enumerate() {
            let next = &cycle[(i + 1) % cycle.len()];
            let (f, l) = &graph[m][next];
            lines.push(format!(
                "{}:{}: {} -> {}",
                f.display(),
                l,
                m.join("::"),
                next.join("::")
            ));
        }
        problems.push(format!("module cycle:\n  {}", lines.join("\n  ")));
    }
    problems
}

/// One cycle per strongly connected component of more than one module, in edge order.
fn cycles(g: &BTreeMap<Module, BTreeMap<Module, (PathBuf, usize)>>) -> Vec<Vec<Module>> {
    let mut out = Vec::new();
    let mut done: BTreeSet<Module> = BTreeSet::new();
    for start in g.keys() {
        if done.contains(start) {
            continue;
        }
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(Module, Vec<Module>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen: BTreeSet<Module> = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in g.get(&node).map(|m| m.keys()).into_iter().flatten() {
                if next == start {
                    out.push(path.clone());
                    done.extend(path.iter().cloned());
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
        done.insert(start.clone());
    }
    out
}

#[test]
fn layers_point_down_and_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = check(&src);
    assert!(
        problems.is_empty(),
        "{} architecture problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself: a small tree with an upward import and a sibling cycle is refused, with
/// file:line, and the same tree without them passes.
#[test]
fn the_checker_finds_an_upward_import_and_a_cycle() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path();
    let w = |p: &str, s: &str| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w(
        "lib.rs",
        "pub mod error;\npub mod engine;\npub mod clients;\n",
    );
    w("error.rs", "pub struct E;\n");
    w(
        "engine/mod.rs",
        "use crate::error::E;\npub mod a;\npub mod b;\n",
    );
    w("engine/a.rs", "use super::b::B;\npub struct A;\n");
    w("engine/b.rs", "pub struct B;\n");
    w("clients/mod.rs", "use crate::error::E;\n");
    assert_eq!(check(src), Vec::<String>::new());

    // An upward import (error -> engine) and a cycle between engine::a and engine::b.
    w(
        "error.rs",
        "pub struct E;\nfn f() { let _ = crate::engine::X; }\n",
    );
    w(
        "engine/b.rs",
        "pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::super::a::A;\n}\n",
    );
    // The upward import also closes a circle between the top-level modules error and engine.
    let p = check(src);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].ends_with(
            "error.rs:2: error imports engine (up the layer order in tests/architecture.rs)"
        ),
        "{}",
        p[0]
    );
    let cycles = p[1..].join("\n");
    assert!(
        cycles.contains("engine.rs") || cycles.contains("error.rs:2: error -> engine"),
        "{cycles}"
    );
    assert!(
        cycles.contains("a.rs:1: engine::a -> engine::b"),
        "{cycles}"
    );
    assert!(
        cycles.contains("b.rs:4: engine::b -> engine::a"),
        "{cycles}"
    );
}
