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
        format!(
            "{}({}){}",
            self.qualified(),
            self.params.join(", "),
            self.ret()
        )
    }
    /// The signature without the namespace, as a method of its type is called.
    pub fn method_signature(&self) -> String {
        format!("{}({}){}", self.name, self.params.join(", "), self.ret())
    }
    fn ret(&self) -> String {
        if self.return_type.is_empty() || self.return_type == "()" {
            String::new()
        } else {
            format!(" -> {}", self.return_type)
        }
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
    for f in &mut v {
        if f.return_type == "any" {
            if let Some(t) = declared_return(f) {
                f.return_type = t.to_string();
            }
        }
    }
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
    if let Some((_, script, _)) = TYPES.iter().find(|(rust, _, _)| *rust == base) {
        return (*script).to_string();
    }
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

/// The handle types scripts see: (Rust type, script name, what it is).
pub const TYPES: &[(&str, &str, &str)] = &[
    (
        "Semaphore",
        "Semaphore",
        "A connection to Semaphore UI and one project (`semaphore::connect()`).",
    ),
    (
        "SemTask",
        "Task",
        "A Semaphore task: started by `sem.run(..)`, read by `sem.task(id)`.",
    ),
    (
        "Pve",
        "Proxmox",
        "A connection to a Proxmox VE cluster (`proxmox::connect()`).",
    ),
    (
        "Guest",
        "Guest",
        "An LXC container or QEMU VM on the cluster (`pve.guest(vmid)`).",
    ),
    (
        "PveTask",
        "PveTask",
        "A Proxmox task (UPID), returned by guest actions and `pve.task(upid)`.",
    ),
    (
        "SshHost",
        "SshHost",
        "A host reached over SSH, or the control machine (`ssh::connect(name)`).",
    ),
    (
        "DockerHandle",
        "Docker",
        "The Docker engine on a host (`docker::on(host)`).",
    ),
    (
        "ComposeHandle",
        "Compose",
        "A Compose project in a directory on a host (`docker.compose(dir)`).",
    ),
    (
        "Exo",
        "Exo",
        "The LLM advisor: an OpenAI-compatible server (`exo::connect()`).",
    ),
    (
        "CatalogRef",
        "Catalog",
        "The service catalog (`catalog::load()`).",
    ),
    (
        "ServiceRef",
        "Service",
        "One service of the catalog (`cat.get(name)`).",
    ),
    (
        "PlanRef",
        "Plan",
        "The services to deploy, in waves (`cat.plan(sel)`).",
    ),
];

/// A property of a type.
#[derive(Debug, Clone, Serialize)]
pub struct PropDoc {
    pub name: String,
    pub ty: String,
    pub doc: String,
    pub writable: bool,
}

/// A handle type with its properties and methods.
#[derive(Debug, Clone, Serialize)]
pub struct TypeDoc {
    pub name: String,
    pub doc: String,
    pub props: Vec<PropDoc>,
    pub methods: Vec<FnDoc>,
}

/// The script type a function is a method of: its first parameter is a handle type and it is
/// callable as a method.
pub fn method_of(f: &FnDoc) -> Option<&'static str> {
    if !f.global && !f.namespace.is_empty() {
        return None;
    }
    let first = f.params.first()?;
    let ty = first.split(':').nth(1).unwrap_or(first).trim();
    TYPES
        .iter()
        .find(|(_, script, _)| *script == ty)
        .map(|(_, script, _)| *script)
}

fn is_operator(name: &str) -> bool {
    !name
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

/// Every handle type with its typed, described properties and its methods, by name.
pub fn types(engine: &Engine) -> Vec<TypeDoc> {
    let fns = functions(engine, false);
    TYPES
        .iter()
        .map(|(_, name, doc)| {
            let mine: Vec<&FnDoc> = fns
                .iter()
                .filter(|f| method_of(f) == Some(name) && !is_operator(&f.name))
                .collect();
            let mut props: Vec<PropDoc> = mine
                .iter()
                .filter_map(|f| {
                    let p = f.name.strip_prefix("get$")?;
                    Some(PropDoc {
                        name: p.to_string(),
                        ty: f.return_type.clone(),
                        doc: f.summary(),
                        writable: mine.iter().any(|g| g.name == format!("set${p}")),
                    })
                })
                .collect();
            props.sort_by(|a, b| a.name.cmp(&b.name));
            props.dedup_by(|a, b| a.name == b.name);
            let methods = mine
                .iter()
                .filter(|f| !f.name.contains('$'))
                .map(|f| (*f).clone())
                .collect();
            TypeDoc {
                name: (*name).to_string(),
                doc: (*doc).to_string(),
                props,
                methods,
            }
        })
        .collect()
}

/// The public functions of the stdlib modules (`ralf/deploy` as namespace `deploy`), documented
/// by their `///` comments.
pub fn stdlib_fns(engine: &Engine) -> Vec<FnDoc> {
    let mut out = Vec::new();
    for (path, src) in crate::engine::resolver::embedded_stdlib() {
        let ns = path.trim_start_matches("ralf/");
        let Ok(ast) = engine.compile(src) else {
            continue;
        };
        for f in ast.iter_functions() {
            if f.access == rhai::FnAccess::Private || f.name.starts_with("anon$") {
                continue;
            }
            out.push(FnDoc {
                namespace: ns.to_string(),
                name: f.name.to_string(),
                params: f.params.iter().map(|p| p.to_string()).collect(),
                return_type: String::new(),
                doc: clean_comment(&f.comments),
                global: false,
                standard: false,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, a.params.len()).cmp(&(&b.namespace, &b.name, b.params.len()))
    });
    out
}

/// What functions registered as returning `Dynamic` really return (the binding returns `()`
/// under `--dry-run` or builds the value at run time): (receiver type or namespace, name, type).
const DECLARED_RETURNS: &[(&str, &str, &str)] = &[
    ("Guest", "start", "PveTask"),
    ("Guest", "stop", "PveTask"),
    ("Guest", "shutdown", "PveTask"),
    ("Guest", "reboot", "PveTask"),
    ("Guest", "snapshot", "PveTask"),
    ("Guest", "rollback", "PveTask"),
    ("Guest", "delete_snapshot", "PveTask"),
    ("Guest", "status", "map"),
    ("Guest", "config", "map"),
    ("Compose", "config", "map"),
    ("Docker", "inspect", "map"),
    ("Task", "info", "map"),
    ("Semaphore", "template", "map"),
    ("Semaphore", "ensure_template", "map"),
    ("error", "make", "map"),
];

fn declared_return(f: &FnDoc) -> Option<&'static str> {
    let owner = method_of(f).unwrap_or(f.namespace.as_str());
    DECLARED_RETURNS
        .iter()
        .find(|(o, n, _)| *o == owner && *n == f.name)
        .map(|(_, _, t)| *t)
}
