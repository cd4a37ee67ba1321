//! Service catalog: model, loading + validation, dependency graph and planner.
//!
//! A catalog is a folder of YAML files, one service per file (`catalog/projects/*.yaml`).
//! [`Catalog::load`] reads and validates all of them and reports every problem at once, each
//! with `file:line`. The catalog YAML is never written; deployment status lives in the state store.

pub mod model;
pub mod plan;

pub use model::{Guest, Priority, SemaphoreSpec, Service, SmokeCheck, Snapshot};
pub use plan::{Plan, PlanEntry, PlanOpts};

use crate::error::{RResult, RalfError};
use crate::text::did_you_mean;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                c,
                self.message
            ),
            None => write!(f, "{}:{}: {}", self.file.display(), self.line, self.message),
        }
    }
}

/// Validation rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOpts {
    /// Allow a service to depend on a service of lower priority (higher P number).
    pub allow_priority_inversion: bool,
}

/// A validated catalog: services sorted by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The folder (or file) it was loaded from.
    pub path: PathBuf,
    pub services: Vec<Service>,
    index: HashMap<String, usize>,
}

impl Catalog {
    /// Load and validate a catalog folder (every `*.yaml` / `*.yml` in it) or a single service file,
    /// with the default rules (no priority inversion).
    pub fn load(path: impl AsRef<Path>) -> RResult<Catalog> {
        Self::load_with(path, LoadOpts::default())
    }

    /// Load with explicit rules. All problems are reported in one `config` error, one per line.
    pub fn load_with(path: impl AsRef<Path>, opts: LoadOpts) -> RResult<Catalog> {
        let path = path.as_ref();
        let files = read_sources(path)?;
        Self::from_sources(path, files, opts).map_err(|problems| problems_error(path, &problems))
    }

    /// Validate in-memory sources `(file name, bytes)`; every problem is returned.
    pub fn from_sources(
        path: &Path,
        files: Vec<(PathBuf, Vec<u8>)>,
        opts: LoadOpts,
    ) -> Result<Catalog, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut parsed: Vec<(Service, String)> = Vec::new();
        // Names seen in files that failed to parse: they still count as "known" so one broken
        // file does not cascade into "unknown dependency" errors everywhere.
        let mut known_broken: Vec<String> = Vec::new();
        for (file, bytes) in files {
            let r = std::panic::catch_unwind(|| parse_file(&file, &bytes));
            match r {
                Ok(FileResult {
                    service,
                    name,
                    problems: ps,
                    text,
                }) => {
                    problems.extend(ps);
                    match service {
                        Some(s) => parsed.push((s, text)),
                        None => known_broken.extend(name),
                    }
                }
                Err(_) => problems.push(Problem {
                    file: file.clone(),
                    line: 1,
                    column: None,
                    message: "the YAML parser failed on this file (malformed input)".into(),
                }),
            }
        }
        check_semantics(&parsed, &known_broken, opts, &mut problems);
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            return Err(problems);
        }
        let mut services: Vec<Service> = parsed.into_iter().map(|(s, _)| s).collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let index = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok(Catalog {
            path: path.to_path_buf(),
            services,
            index,
        })
    }

    /// The service called `name`.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.index.get(name).map(|&i| &self.services[i])
    }

    /// Index of `name` in [`Catalog::services`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// `not_found` error with a did-you-mean.
    pub fn not_found(&self, name: &str) -> RalfError {
        let hint = did_you_mean(name, self.services.iter().map(|s| s.name.as_str()))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        RalfError::not_found(format!("no service `{name}` in the catalog{hint}"))
            .with("service", name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| s.name.as_str())
    }
}

/// One `config` error listing every problem.
pub fn problems_error(path: &Path, problems: &[Problem]) -> RalfError {
    let mut msg = format!(
        "catalog {}: {} problem{}",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        msg.push_str("\n  ");
        msg.push_str(&p.to_string());
    }
    let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    RalfError::config(msg)
        .with("problems", list)
        .with("path", path.display().to_string())
}

fn read_sources(path: &Path) -> RResult<Vec<(PathBuf, Vec<u8>)>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| RalfError::from(e).context(format!("catalog {}", path.display())))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let rd = std::fs::read_dir(path)
            .map_err(|e| RalfError::from(e).context(format!("catalog {}", path.display())))?;
        for entry in rd.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if yaml && p.is_file() {
                files.push(p);
            } else if yaml && p.is_symlink() {
                // A link to nothing: say so instead of leaving a service out silently.
                tracing::warn!(
                    "catalog {}: {name} is a broken symbolic link (to {}); it is left out",
                    path.display(),
                    std::fs::read_link(&p)
                        .map(|t| t.display().to_string())
                        .unwrap_or_else(|_| "?".into())
                );
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(RalfError::config(format!(
                "catalog {}: no service files (*.yaml, *.yml) in this folder",
                path.display()
            )));
        }
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(&f)
            .map_err(|e| RalfError::from(e).context(format!("catalog file {}", f.display())))?;
        out.push((f, bytes));
    }
    Ok(out)
}

struct FileResult {
    service: Option<Service>,
    name: Option<String>,
    problems: Vec<Problem>,
    text: String,
}

fn problem(file: &Path, line: usize, column: Option<usize>, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: line.max(1),
        column,
        message: message.into(),
    }
}

fn parse_file(file: &Path, bytes: &[u8]) -> FileResult {
    let mut out = FileResult {
        service: None,
        name: None,
        problems: Vec::new(),
        text: String::new(),
    };
    let text = match crate::yaml::text(bytes) {
        Ok(t) => t.to_string(),
        Err(p) => {
            out.problems
                .push(problem(file, p.line, Some(p.column), p.message));
            return out;
        }
    };
    if text.trim().is_empty() {
        out.problems.push(problem(
            file,
            1,
            None,
            "empty file (expected a service definition: name, priority, ...)",
        ));
        return out;
    }
    // Fast path: a valid file parses strictly in one pass (unknown keys would fail it).
    if let Ok(mut s) = crate::yaml::from_str::<Service>(&text) {
        s.file = file.to_path_buf();
        s.line = top_key_line(&text, "name").unwrap_or(1);
        service_checks(&s, &text, &mut out.problems);
        out.name = Some(s.name.clone());
        // Kept even with problems, so cross-file checks (deps, cycles) still run on it.
        out.service = Some(s);
        out.text = text;
        return out;
    }
    let value: crate::yaml::Value = match crate::yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            out.problems.push(yaml_problem(file, &e, None));
            return out;
        }
    };
    let map = match &value {
        crate::yaml::Value::Mapping(m) => m,
        other => {
            let what = match other {
                crate::yaml::Value::Sequence(_) => "a list",
                crate::yaml::Value::String(_) => "a string",
                crate::yaml::Value::Number(_) => "a number",
                crate::yaml::Value::Bool(_) => "a boolean",
                crate::yaml::Value::Null => "nothing",
                _ => "a tagged value",
            };
            out.problems.push(problem(
                file,
                1,
                None,
                format!("expected a mapping of service keys (name, priority, ...), found {what}"),
            ));
            return out;
        }
    };
    if let Some(crate::yaml::Value::String(n)) = map.get("name") {
        out.name = Some(n.clone());
    }
    // Every unknown top-level key at once (serde stops at the first).
    let mut unknown = Vec::new();
    let mut suggested = Vec::new();
    for k in map.keys() {
        match k.as_str() {
            Some(k) if model::SERVICE_KEYS.contains(&k) => {}
            Some(k) => {
                let line = top_key_line(&text, k).unwrap_or(1);
                let hint = match did_you_mean(k, model::SERVICE_KEYS.iter().copied()) {
                    Some(s) => {
                        suggested.push(format!("missing field `{s}`"));
                        format!("; did you mean `{s}`?")
                    }
                    None => format!("; expected one of: {}", model::SERVICE_KEYS.join(", ")),
                };
                out.problems.push(problem(
                    file,
                    line,
                    None,
                    format!("unknown key `{k}`{hint}"),
                ));
                unknown.push(k.to_string());
            }
            None => out.problems.push(problem(
                file,
                1,
                None,
                format!("keys must be strings, found {k:?}"),
            )),
        }
    }
    // Blank out the unknown keys' blocks (keeping line numbers) and deserialize the rest strictly.
    let strict_text = if unknown.is_empty() {
        text.clone()
    } else {
        blank_top_keys(&text, &unknown)
    };
    match crate::yaml::from_str::<Service>(&strict_text) {
        Ok(mut s) => {
            s.file = file.to_path_buf();
            s.line = top_key_line(&text, "name").unwrap_or(1);
            service_checks(&s, &text, &mut out.problems);
            // Kept even with problems (unknown keys, smoke checks), so cross-file checks still run.
            out.service = Some(s);
        }
        Err(e) => {
            // "missing field `priority`" after "unknown key `priorty`; did you mean `priority`?" is noise.
            let p = yaml_problem(file, &e, Some(&text));
            if !suggested.iter().any(|m| p.message.starts_with(m.as_str())) {
                out.problems.push(p);
            }
        }
    }
    out.text = text;
    out
}

fn yaml_problem(file: &Path, e: &crate::yaml::Error, text: Option<&str>) -> Problem {
    let raw = e.to_string();
    let body = match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.clone(),
    };
    let body = crate::config::rewrite_unknown_key(&body);
    let body = body.replace("unknown variant", "unknown value");
    match e.location() {
        Some(l) => problem(file, l.line(), Some(l.column()), body),
        None => {
            let line = text
                .map(|t| crate::yaml::unlocated_line(t, &body))
                .unwrap_or(1);
            problem(file, line, None, body)
        }
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn service_checks(s: &Service, text: &str, problems: &mut Vec<Problem>) {
    let f = &s.file;
    if !valid_name(&s.name) {
        problems.push(problem(
            f,
            s.line,
            None,
            format!(
                "invalid service name `{}` (use lowercase letters, digits, `-` and `_`, starting with a letter or digit)",
                s.name
            ),
        ));
    }
    if let Some(g) = &s.guest {
        if g.vmid < 100 {
            let line = top_key_line(text, "guest").unwrap_or(s.line);
            problems.push(problem(
                f,
                line,
                None,
                format!("guest vmid must be at least 100, got {}", g.vmid),
            ));
        }
    }
    if let Some(h) = &s.self_heal {
        let line = top_key_line(text, "self_heal").unwrap_or(s.line);
        for k in &h.env {
            let ok = k
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                problems.push(problem(
                    f,
                    line,
                    None,
                    format!("self_heal.env: `{k}` is not an environment variable name (letters, digits, `_`)"),
                ));
            }
        }
        if h.restart && s.guest.is_none() {
            problems.push(problem(
                f,
                line,
                None,
                "self_heal.restart needs a `guest` to restart".to_string(),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for d in &s.depends_on {
        if !seen.insert(d) {
            let line = list_item_line(text, "depends_on", d).unwrap_or(s.line);
            problems.push(problem(
                f,
                line,
                None,
                format!("`{d}` is listed twice in depends_on"),
            ));
        }
    }
    let smoke_line = top_key_line(text, "smoke").unwrap_or(s.line);
    for (i, c) in s.smoke.iter().enumerate() {
        let kinds = [
            c.http.is_some(),
            c.tcp.is_some(),
            c.command.is_some(),
            c.script.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        let at = format!("smoke[{i}]");
        if kinds != 1 {
            problems.push(problem(
                f,
                smoke_line,
                None,
                format!("{at}: a smoke check needs exactly one of `http`, `tcp`, `command`, `script` (found {kinds})"),
            ));
            continue;
        }
        if (c.expect.is_some() || c.contains.is_some()) && c.http.is_none() {
            problems.push(problem(
                f,
                smoke_line,
                None,
                format!("{at}: `expect`/`contains` only apply to `http` checks"),
            ));
        }
        let remote = c.command.is_some() || c.script.is_some();
        if c.on.is_some() && !remote {
            problems.push(problem(
                f,
                smoke_line,
                None,
                format!("{at}: `on` only applies to `command` and `script` checks"),
            ));
        }
        if remote && c.on.is_none() && s.host.is_none() {
            problems.push(problem(
                f,
                smoke_line,
                None,
                format!(
                    "{at}: the {} check has no host to run on: set `on: ALIAS` on the check or `host:` on the service",
                    c.kind()
                ),
            ));
        }
        if let Some(t) = &c.tcp {
            let ok = t
                .rsplit_once(':')
                .map(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                .unwrap_or(false);
            if !ok {
                problems.push(problem(
                    f,
                    smoke_line,
                    None,
                    format!("{at}: tcp check `{t}` must be host:port"),
                ));
            }
        }
        if let Some(t) = &c.threshold {
            if c.script.is_none() {
                problems.push(problem(
                    f,
                    smoke_line,
                    None,
                    format!("{at}: `threshold` only applies to `script` checks"),
                ));
            } else if model::parse_threshold(t).is_none() {
                problems.push(problem(
                    f,
                    smoke_line,
                    None,
                    format!("{at}: threshold `{t}` must look like \"7/10\" (passed/total, passed <= total)"),
                ));
            }
        }
    }
}

fn check_semantics(
    parsed: &[(Service, String)],
    known_broken: &[String],
    opts: LoadOpts,
    problems: &mut Vec<Problem>,
) {
    // Duplicates: name -> first definition.
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (s, _)) in parsed.iter().enumerate() {
        if let Some(&j) = first.get(s.name.as_str()) {
            let o = &parsed[j].0;
            problems.push(problem(
                &s.file,
                s.line,
                None,
                format!(
                    "duplicate service name `{}`: also defined in {}:{}",
                    s.name,
                    o.file.display(),
                    o.line
                ),
            ));
        } else {
            first.insert(&s.name, i);
        }
    }
    let all_names: Vec<&str> = first
        .keys()
        .copied()
        .chain(known_broken.iter().map(|s| s.as_str()))
        .collect();
    // Unknown deps and priority inversion.
    for (s, text) in parsed {
        for d in &s.depends_on {
            let line = || list_item_line(text, "depends_on", d).unwrap_or(s.line);
            match first.get(d.as_str()) {
                None if known_broken.iter().any(|b| b == d) => {}
                None => {
                    let hint = did_you_mean(d, all_names.iter().copied())
                        .map(|x| format!("; did you mean `{x}`?"))
                        .unwrap_or_default();
                    problems.push(problem(
                        &s.file,
                        line(),
                        None,
                        format!("`{}` depends on unknown service `{d}`{hint}", s.name),
                    ));
                }
                Some(&j) => {
                    let dep = &parsed[j].0;
                    if !opts.allow_priority_inversion && dep.priority > s.priority {
                        problems.push(problem(
                            &s.file,
                            line(),
                            None,
                            format!(
                                "priority inversion: `{}` ({}) depends on `{}` ({}), which has a lower priority; \
                                 raise `{}` to {} or set `catalog.allow_priority_inversion: true` in the config",
                                s.name, s.priority, d, dep.priority, d, s.priority
                            ),
                        ));
                    }
                }
            }
        }
    }
    // Cycles (Kahn, then walk the remainder to extract each cycle once).
    let idx: HashMap<&str, usize> = first.iter().map(|(k, v)| (*k, *v)).collect();
    let n = parsed.len();
    let deps: Vec<Vec<usize>> = parsed
        .iter()
        .map(|(s, _)| {
            let mut v: Vec<usize> = s
                .depends_on
                .iter()
                .filter_map(|d| idx.get(d.as_str()).copied())
                .collect();
            v.sort_by(|a, b| parsed[*a].0.name.cmp(&parsed[*b].0.name));
            v.dedup();
            v
        })
        .collect();
    let mut remaining = vec![true; n];
    // Only first definitions of each name take part.
    for (i, (s, _)) in parsed.iter().enumerate() {
        if idx.get(s.name.as_str()) != Some(&i) {
            remaining[i] = false;
        }
    }
    let mut indeg: Vec<usize> = (0..n)
        .map(|i| if remaining[i] { deps[i].len() } else { 0 })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        if remaining[i] {
            for &d in &deps[i] {
                dependents[d].push(i);
            }
        }
    }
    let mut queue: Vec<usize> = (0..n).filter(|&i| remaining[i] && indeg[i] == 0).collect();
    while let Some(i) = queue.pop() {
        remaining[i] = false;
        for &t in &dependents[i] {
            indeg[t] -= 1;
            if indeg[t] == 0 {
                queue.push(t);
            }
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| remaining[i]).collect();
    order.sort_by(|a, b| parsed[*a].0.name.cmp(&parsed[*b].0.name));
    let mut reported = vec![false; n];
    for start in order {
        if reported[start] {
            continue;
        }
        let mut path = vec![start];
        let mut pos: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut cur = start;
        let cycle = loop {
            let next = deps[cur]
                .iter()
                .copied()
                .find(|&d| remaining[d])
                .expect("node left by Kahn has a remaining dep");
            if let Some(&p) = pos.get(&next) {
                break path[p..].to_vec();
            }
            pos.insert(next, path.len());
            path.push(next);
            cur = next;
        };
        if cycle.iter().any(|&c| reported[c]) {
            continue;
        }
        for &c in &cycle {
            reported[c] = true;
        }
        // Rotate so the cycle starts at its smallest name: deterministic output.
        let min_pos = (0..cycle.len())
            .min_by(|&a, &b| parsed[cycle[a]].0.name.cmp(&parsed[cycle[b]].0.name))
            .unwrap_or(0);
        let mut rot: Vec<usize> = cycle[min_pos..].to_vec();
        rot.extend_from_slice(&cycle[..min_pos]);
        let names: Vec<&str> = rot
            .iter()
            .chain(rot.first())
            .map(|&i| parsed[i].0.name.as_str())
            .collect();
        let (s, text) = &parsed[rot[0]];
        let next = names[1];
        let line = list_item_line(text, "depends_on", next).unwrap_or(s.line);
        problems.push(problem(
            &s.file,
            line,
            None,
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_key_line(content: &str, key: &str) -> bool {
    let c = content.trim_start_matches("- ");
    let c = c
        .strip_prefix('"')
        .and_then(|r| r.strip_prefix(key))
        .and_then(|r| r.strip_prefix('"'))
        .or_else(|| {
            c.strip_prefix('\'')
                .and_then(|r| r.strip_prefix(key))
                .and_then(|r| r.strip_prefix('\''))
        })
        .or_else(|| c.strip_prefix(key));
    matches!(c, Some(r) if r.trim_start().starts_with(':'))
}

/// 1-based line of a top-level `key:`.
pub fn top_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| indent_of(l) == 0 && is_key_line(l, key))
        .map(|i| i + 1)
}

/// 1-based line of a nested key (`["semaphore", "template"]`), by indentation.
pub fn nested_key_line(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let first = top_key_line(text, path.first()?)? - 1;
    let mut at = first;
    for key in &path[1..] {
        let base = indent_of(lines[at]);
        let mut found = None;
        for (i, l) in lines.iter().enumerate().skip(at + 1) {
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if indent_of(l) <= base {
                break;
            }
            if is_key_line(l.trim_start(), key) {
                found = Some(i);
                break;
            }
        }
        at = found?;
    }
    Some(at + 1)
}

/// 1-based line of `item` in the list under top-level `key` (block or flow style).
pub fn list_item_line(text: &str, key: &str, item: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let k = top_key_line(text, key)? - 1;
    let strip = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    if let Some((_, rest)) = lines[k].split_once(':') {
        if rest.contains('[') && rest.split(['[', ']', ',']).any(|p| strip(p) == item) {
            return Some(k + 1);
        }
    }
    for (i, l) in lines.iter().enumerate().skip(k + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent_of(l) == 0 && !t.starts_with('-') {
            break;
        }
        let content = t.trim_start_matches('-');
        let content = content.split(" #").next().unwrap_or(content);
        if strip(content) == item || content.split(['[', ']', ',']).any(|p| strip(p) == item) {
            return Some(i + 1);
        }
    }
    Some(k + 1)
}

/// Replace the blocks of the given top-level keys by empty lines (line numbers stay valid).
fn blank_top_keys(text: &str, keys: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blanking = false;
    for l in text.split_inclusive('\n') {
        let t = l.trim_start();
        let top = indent_of(l) == 0 && !t.is_empty() && !t.starts_with('#') && !t.starts_with('-');
        if top {
            blanking = keys.iter().any(|k| is_key_line(l, k));
        }
        if blanking {
            if l.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(l);
        }
    }
    out
}

#[cfg(test)]
mod tests;
