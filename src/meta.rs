//! Function metadata from the engine itself: the single source for REPL completion, `:help`,
//! `ralf-sh docs` and `ralf-sh check`.

use rhai::Engine;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct FnDoc {
    /// "" for global functions, else the namespace ("semaphore", "json").
    pub namespace: String,
    pub name: String,
    pub params: Vec<String>,
    pub return_type: String,
    /// Doc comment text without the `///` markers.
    pub doc: String,
    /// true when callable as a method / without namespace (registered `global`).
    pub global: bool,
    /// Part of Rhai's standard packages (not ralf-sh's own).
    pub standard: bool,
}

impl FnDoc {
    pub fn qualified(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}::{}", self.namespace, self.name)
        }
    }
    pub fn signature(&self) -> String {
        let ret = if self.return_type.is_empty() || self.return_type == "()" {
            String::new()
        } else {
            format!(" -> {}", self.return_type)
        };
        format!("{}({}){}", self.qualified(), self.params.join(", "), ret)
    }
    /// Rhai examples from the doc comment: (code, runnable).
    pub fn examples(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut cur: Option<(String, bool)> = None;
        for line in self.doc.lines() {
            let t = line.trim();
            match &mut cur {
                None if t.starts_with("```rhai") => {
                    cur = Some((String::new(), !t.contains("no_run")));
                }
                Some(_) if t.starts_with("```") => out.push(cur.take().expect("open block")),
                Some((code, _)) => {
                    code.push_str(line.strip_prefix(' ').unwrap_or(line));
                    code.push('\n');
                }
                None => {}
            }
        }
        out
    }
    /// First paragraph of the doc comment.
    pub fn summary(&self) -> String {
        self.doc
            .split("\n\n")
            .next()
            .unwrap_or("")
            .replace('\n', " ")
            .trim()
            .to_string()
    }
}

fn clean_comment(lines: &[impl AsRef<str>]) -> String {
    let mut out = Vec::new();
    for l in lines {
        for line in l.as_ref().lines() {
            let t = line.trim_start();
            let t = t
                .strip_prefix("///")
                .or_else(|| t.strip_prefix("//!"))
                .unwrap_or(t);
            out.push(t.strip_prefix(' ').unwrap_or(t).to_string());
        }
    }
    out.join("\n").trim().to_string()
}

/// Every function the engine knows. `standard` includes Rhai's own packages.
pub fn functions(engine: &Engine, standard: bool) -> Vec<FnDoc> {
    let mut v: Vec<FnDoc> = engine.collect_fn_metadata(
        None,
        |info| {
            let m = info.metadata;
            if m.name.starts_with("get$")
                || m.name.starts_with("set$")
                || m.name.starts_with("index$")
            {
                // property accessors are listed separately
            }
            Some(FnDoc {
                namespace: info.namespace.to_string(),
                name: m.name.to_string(),
                params: m.params_info.iter().map(|p| pretty_param(p)).collect(),
                return_type: pretty_type(&m.return_type),
                doc: clean_comment(&m.comments),
                global: matches!(m.namespace, rhai::FnNamespace::Global),
                standard: false,
            })
        },
        standard,
    );
    if standard {
        // Mark what comes only from Rhai's standard packages.
        let ours: std::collections::HashSet<(String, String, usize)> = engine
            .collect_fn_metadata(
                None,
                |info| {
                    Some((
                        info.namespace.to_string(),
                        info.metadata.name.to_string(),
                        info.metadata.num_params,
                    ))
                },
                false,
            )
            .into_iter()
            .collect();
        for f in &mut v {
            f.standard = !ours.contains(&(f.namespace.clone(), f.name.clone(), f.params.len()));
        }
    }
    v.sort_by(|a, b| {
        (&a.namespace, &a.name, a.params.len()).cmp(&(&b.namespace, &b.name, b.params.len()))
    });
    v.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name && a.params == b.params);
    v
}

/// ralf-sh's own functions grouped by namespace ("" = globals).
pub fn by_namespace(engine: &Engine) -> BTreeMap<String, Vec<FnDoc>> {
    let mut m: BTreeMap<String, Vec<FnDoc>> = BTreeMap::new();
    for f in functions(engine, false) {
        m.entry(f.namespace.clone()).or_default().push(f);
    }
    m
}

/// Rust type names as a script writer knows them.
pub fn pretty_type(t: &str) -> String {
    let mut t = t.trim().to_string();
    for wrap in ["RhaiResult<", "RhaiResultOf<", "Result<"] {
        if let Some(inner) = t.strip_prefix(wrap).and_then(|r| r.strip_suffix('>')) {
            // Result<T, E>: keep T
            let inner = inner.trim();
            let first = split_top(inner).into_iter().next().unwrap_or_default();
            t = first.trim().to_string();
        }
    }
    let t = t.trim_start_matches("&mut ").trim_start_matches('&').trim();
    let base = t.rsplit("::").next().unwrap_or(t);
    match base {
        "str" | "ImmutableString" | "String" => "string".into(),
        "i64" | "INT" | "i32" | "usize" | "u64" => "int".into(),
        "f64" | "FLOAT" | "f32" => "float".into(),
        "bool" => "bool".into(),
        "Dynamic" => "any".into(),
        "Map" => "map".into(),
        "Array" | "Vec<Dynamic>" => "array".into(),
        "FnPtr" => "Fn".into(),
        "()" | "" => "()".into(),
        other => other.replace(" >", ">"),
    }
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// "name: &str" -> "name: string"
fn pretty_param(p: &str) -> String {
    match p.split_once(':') {
        Some((n, t)) => format!("{}: {}", n.trim(), pretty_type(t)),
        None => pretty_type(p),
    }
}

/// Names Rhai handles as keywords/special functions (not in metadata).
pub const BUILTIN_FUNCTIONS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
    "eval",
    "exit",
    "this",
    "throw",
    "import",
    "export",
    "global",
];
