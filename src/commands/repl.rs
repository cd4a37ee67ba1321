//! The interactive shell (rustyline).
//!
//! Variables, functions and imports persist across lines; input continues while the buffer is
//! incomplete (open block, call or string); Tab completes namespaces, functions (from the engine's
//! metadata), methods and variables; hints; history in `$XDG_STATE_HOME/ralf/history` with secrets
//! scrubbed; `:help NAME`, `:vars`, `:load FILE`, `:quit`; Ctrl-C clears the line (or stops the
//! running line), Ctrl-D leaves.

use crate::engine::meta::FnDoc;
use crate::engine::{self, Outcome, ScriptEngine};
use crate::error::exit;
use crate::host::Host;
use rhai::{Dynamic, Scope, AST};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, History};
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) fn run(host: &Arc<Host>) -> i32 {
    let host = host.clone();
    crate::engine::run::on_script_thread(move || {
        let code = Repl::new(&host).run();
        // A session that used the state store (run::step, catalog::mark, run::lock) is recorded
        // as a run; close it and release the lock.
        crate::session::finish_run(&host, code);
        code
    })
}

/// Where history is kept.
pub(crate) fn history_path() -> PathBuf {
    crate::config::xdg_state_home().join("ralf/history")
}

/// What completion and hints know: names from the engine metadata plus live variables.
struct ReplHelper {
    fns: Vec<FnDoc>,
    namespaces: BTreeSet<String>,
    vars: Vec<(String, String)>,
    module_aliases: Vec<(String, Vec<String>)>,
}

const META: &[&str] = &[":help", ":vars", ":load", ":quit", ":clear"];
const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "while", "loop", "for", "in", "return", "throw", "try",
    "catch", "import", "export", "as", "break", "continue", "true", "false", "switch", "do",
    "until",
];

fn word_start(line: &str, pos: usize) -> usize {
    line[..pos]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == ':'))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0)
}

impl ReplHelper {
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        if line.trim_start().starts_with(':') && !line[..pos].contains(' ') {
            let start = line.len() - line.trim_start().len();
            let w = &line[start..pos];
            return (
                start,
                META.iter()
                    .filter(|m| m.starts_with(w))
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
        let start = word_start(line, pos);
        let word = &line[start..pos];
        if inside_string(&line[..pos]) {
            return (start, Vec::new());
        }
        let before = line[..start].trim_end();
        let mut out = BTreeSet::new();
        if before.ends_with('.') {
            // method: filter by the receiver's type when it is a known variable
            let recv_start = word_start(line, before.len() - 1);
            let recv = &line[recv_start..before.len() - 1];
            let ty = self
                .vars
                .iter()
                .find(|(n, _)| n == recv)
                .map(|(_, t)| t.clone());
            for f in &self.fns {
                if !(f.namespace.is_empty() || f.global) || !f.name.starts_with(word) {
                    continue;
                }
                let first = f
                    .params
                    .first()
                    .map(|p| p.split(':').nth(1).unwrap_or("").trim().to_string());
                let matches_type = match (&ty, &first) {
                    (Some(t), Some(p)) => p == t || p == "any" || t == "any",
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                // Methods and properties only: no setters, indexers, operators or closures.
                let name = f.name.strip_prefix("get$").unwrap_or(&f.name);
                let public = !name.is_empty()
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                    && !name.starts_with('_');
                if matches_type && public {
                    out.insert(name.to_string());
                }
            }
            return (start, out.into_iter().collect());
        }
        if let Some((ns, rest)) = word.rsplit_once("::") {
            for f in &self.fns {
                if f.namespace == ns && f.name.starts_with(rest) && !f.name.contains('$') {
                    out.insert(format!("{ns}::{}", f.name));
                }
            }
            for (alias, fns) in &self.module_aliases {
                if alias == ns {
                    for f in fns.iter().filter(|f| f.starts_with(rest)) {
                        out.insert(format!("{ns}::{f}"));
                    }
                }
            }
            return (start, out.into_iter().collect());
        }
        for ns in &self.namespaces {
            if ns.starts_with(word) {
                out.insert(format!("{ns}::"));
            }
        }
        for (alias, _) in &self.module_aliases {
            if alias.starts_with(word) {
                out.insert(format!("{alias}::"));
            }
        }
        for f in &self.fns {
            if f.namespace.is_empty()
                && f.name.starts_with(word)
                && !f.name.contains('$')
                && !f.standard
            {
                out.insert(f.name.clone());
            }
        }
        for (v, _) in &self.vars {
            if v.starts_with(word) {
                out.insert(v.clone());
            }
        }
        for k in KEYWORDS {
            if k.starts_with(word) && !word.is_empty() {
                out.insert(k.to_string());
            }
        }
        if word.is_empty() {
            return (start, Vec::new());
        }
        (start, out.into_iter().collect())
    }
}

/// True when `text` ends inside a string literal.
fn inside_string(text: &str) -> bool {
    let mut q: Option<char> = None;
    let mut esc = false;
    for c in text.chars() {
        match q {
            Some(open) => {
                if esc {
                    esc = false;
                } else if c == '\\' && open != '`' {
                    esc = true;
                } else if c == open {
                    q = None;
                }
            }
            None if c == '"' || c == '`' => q = Some(c),
            None => {}
        }
    }
    q.is_some()
}

/// rustyline's helper (the ReplHelper lives behind a lock so the REPL can refresh variables).
struct RlHelper(Arc<parking_lot::Mutex<ReplHelper>>);

impl Completer for RlHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, c) = self.0.lock().candidates(line, pos);
        Ok((
            start,
            c.into_iter()
                .map(|s| Pair {
                    display: s.clone(),
                    replacement: s,
                })
                .collect(),
        ))
    }
}

impl Hinter for RlHelper {
    type Hint = String;
    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos < line.len() {
            return None;
        }
        let start = word_start(line, pos);
        let word = &line[start..pos];
        if word.len() < 2 {
            return None;
        }
        let h = self.0.lock();
        // A complete function name followed by "(": show the signature.
        let (_, c) = h.candidates(line, pos);
        if c.len() == 1 && c[0].len() > word.len() && c[0].starts_with(word) {
            return Some(c[0][word.len()..].to_string());
        }
        None
    }
}

impl Highlighter for RlHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

/// Input is complete line by line: an open block, call or string continues on the next line
/// under the continuation prompt (see the read loop), so each line is edited on its own.
impl Validator for RlHelper {}

impl Helper for RlHelper {}

/// The prompt of a line that continues the input above it.
const CONTINUATION: &str = " ...> ";

/// True while the input has an open block, call, index or string (outside comments).
pub(crate) fn is_incomplete(input: &str) -> bool {
    if input.trim_start().starts_with(':') {
        return false;
    }
    let mut depth: i32 = 0;
    let mut chars = input.chars().peekable();
    let mut in_str: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = in_str {
            match c {
                '\\' if q != '`' => {
                    chars.next();
                }
                c if c == q => in_str = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '`' | '\'' => in_str = Some(c),
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        closed = true;
                        break;
                    }
                    prev = n;
                }
                if !closed {
                    return true;
                }
            }
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' => depth -= 1,
            _ => {}
        }
    }
    in_str.is_some() || depth > 0
}

struct Repl {
    se: ScriptEngine,
    scope: Scope<'static>,
    /// Function definitions accumulated across lines.
    fns_ast: AST,
    /// Imports seen so far, re-applied before every line.
    imports: Vec<(String, String)>,
    helper: Arc<parking_lot::Mutex<ReplHelper>>,
    counter: usize,
}

impl Repl {
    fn new(host: &Arc<Host>) -> Repl {
        let mut se = engine::build(host);
        // Modules imported on earlier lines are re-applied at run time, which strict mode cannot see
        // at compile time; undefined variables are still reported (at run time).
        se.engine.set_strict_variables(false);
        // An interactive session is not bounded in operations (Ctrl-C stops a line).
        se.engine.set_max_operations(0);
        let fns = crate::engine::meta::functions(&se.engine, true);
        let namespaces = fns
            .iter()
            .filter(|f| !f.namespace.is_empty())
            .map(|f| f.namespace.clone())
            .collect();
        let helper = Arc::new(parking_lot::Mutex::new(ReplHelper {
            fns,
            namespaces,
            vars: Vec::new(),
            module_aliases: Vec::new(),
        }));
        Repl {
            se,
            scope: engine::base_scope(Vec::new()),
            fns_ast: AST::empty(),
            imports: Vec::new(),
            helper,
            counter: 0,
        }
    }

    fn refresh_vars(&self) {
        let vars = self
            .scope
            .iter_raw()
            .map(|(n, _, v)| {
                (
                    n.to_string(),
                    crate::engine::meta::pretty_type(self.se.engine.map_type_name(v.type_name())),
                )
            })
            .collect();
        self.helper.lock().vars = vars;
    }

    fn run(mut self) -> i32 {
        let config = rustyline::Config::builder()
            .auto_add_history(false)
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut rl: Editor<RlHelper, DefaultHistory> = match Editor::with_config(config) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return exit::FAILED;
            }
        };
        rl.set_helper(Some(RlHelper(self.helper.clone())));
        let hist = history_path();
        load_history(&mut rl, &hist);
        println!(
            "ralf-sh {} — Rhai shell. :help for help, :quit or Ctrl-D to leave.",
            env!("CARGO_PKG_VERSION")
        );
        loop {
            self.se.host.cancel.reset();
            let mut line = match rl.readline("ralf> ") {
                Ok(l) => l,
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::FAILED;
                }
            };
            // An open block, call or string continues under the continuation prompt; Ctrl-C drops
            // the whole input, Ctrl-D evaluates what there is (and reports what is missing).
            while is_incomplete(&line) {
                match rl.readline(CONTINUATION) {
                    Ok(more) => {
                        line.push('\n');
                        line.push_str(&more);
                    }
                    Err(ReadlineError::Interrupted) => {
                        line.clear();
                        break;
                    }
                    Err(ReadlineError::Eof) => break,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::FAILED;
                    }
                }
            }
            if line.trim().is_empty() {
                continue;
            }
            let clean = crate::redact::redact(&line);
            let _ = rl.add_history_entry(clean.as_str());
            append_history(&hist, &clean);
            match line.trim() {
                ":quit" | ":q" | ":exit" => break,
                l if l.starts_with(":help") => self.help(l[5..].trim()),
                ":vars" => self.vars(),
                ":clear" => {
                    self.scope = engine::base_scope(Vec::new());
                    self.fns_ast = AST::empty();
                    self.imports.clear();
                    self.refresh_vars();
                }
                l if l.starts_with(":load") => {
                    let path = l[5..].trim();
                    match std::fs::read_to_string(path) {
                        Ok(text) => {
                            if let Some(code) = self.eval(path, &text, false) {
                                return code;
                            }
                        }
                        Err(e) => eprintln!("error: cannot read {path}: {e}"),
                    }
                }
                l if l.starts_with(':') => eprintln!("unknown command {l}; try :help"),
                _ => {
                    self.counter += 1;
                    let name = format!("<repl:{}>", self.counter);
                    if let Some(code) = self.eval(&name, &line, true) {
                        return code;
                    }
                }
            }
            // Persist with secrets scrubbed (secrets loaded by this line included).
            rewrite_history(&hist);
        }
        exit::OK
    }

    /// Evaluate one input. Returns Some(code) when the script called exit().
    fn eval(&mut self, name: &str, text: &str, print_value: bool) -> Option<i32> {
        let prefix: String = self
            .imports
            .iter()
            .map(|(p, a)| format!("import {p:?} as {a};\n"))
            .collect();
        let imports_ast = if prefix.is_empty() {
            AST::empty()
        } else {
            match self.se.engine.compile_with_scope(&self.scope, &prefix) {
                Ok(a) => a,
                Err(_) => AST::empty(),
            }
        };
        let ast = match self.se.compile_in_scope(name, text, &self.scope) {
            Ok(a) => a,
            Err(msg) => {
                eprint!("{}", crate::redact::redact(&msg));
                return None;
            }
        };
        // Remember imports of this input.
        let mut new_imports = Vec::new();
        for stmt in ast.statements() {
            if let rhai::Stmt::Import(x, _) = stmt {
                let (e, alias) = &**x;
                if let rhai::Expr::StringConstant(s, _) = e {
                    new_imports.push((s.to_string(), alias.name.to_string()));
                }
            }
        }
        let before = self.se.host.cancel.is_cancelled();
        let (r, ok) = self.run_ast(name, imports_ast, ast, print_value);
        if ok && !before {
            for imp in new_imports {
                if !self.imports.contains(&imp) {
                    self.imports.push(imp);
                }
            }
        }
        self.refresh_module_aliases();
        r
    }

    /// Run; returns (exit code if exit() was called, whether the line succeeded).
    fn run_ast(
        &mut self,
        name: &str,
        imports_ast: AST,
        ast: AST,
        print_value: bool,
    ) -> (Option<i32>, bool) {
        let full = imports_ast.merge(&self.fns_ast).merge(&ast);
        let r = self.se.run(&mut self.scope, &full);
        // Keep function definitions only.
        let mut fns = full;
        fns.clear_statements();
        self.fns_ast = fns;
        self.refresh_vars();
        match r {
            Ok(Outcome::Value(v)) => {
                if print_value && !v.is_unit() {
                    let text = crate::redact::redact(&self.show(v));
                    println!("{}", crate::text::visible_controls(&text));
                }
                (None, true)
            }
            Ok(Outcome::Exit(code, _)) => (Some(code), true),
            Err(e) => {
                if self.se.host.cancel.is_cancelled() {
                    eprintln!("cancelled");
                } else {
                    eprint!("{}", self.se.render_error(&e, name));
                }
                (None, false)
            }
        }
    }

    /// A value as the REPL shows it: the pretty printer (strings bare, maps as lines, lists of
    /// maps as tables, handles by their `to_string`).
    fn show(&self, v: Dynamic) -> String {
        self.se.show(&v)
    }

    fn refresh_module_aliases(&self) {
        let mut out = Vec::new();
        let resolver = crate::engine::resolver::Resolver::new(
            &self.se.host.cfg().stdlib_paths,
            self.se.sources.clone(),
        );
        for (p, a) in &self.imports {
            if let Ok((_, text)) = resolver.locate(None, p) {
                if let Ok(ast) = self
                    .se
                    .engine
                    .compile(crate::engine::resolver::strip_shebang(&text).as_ref())
                {
                    out.push((
                        a.clone(),
                        ast.iter_functions().map(|f| f.name.to_string()).collect(),
                    ));
                }
            }
        }
        self.helper.lock().module_aliases = out;
    }

    fn vars(&self) {
        for (name, constant, v) in self.scope.iter_raw() {
            let ty = crate::engine::meta::pretty_type(self.se.engine.map_type_name(v.type_name()));
            let kw = if constant { "const" } else { "let" };
            let mut val = self.show(v.clone());
            if val.len() > 80 {
                val.truncate(77);
                val.push_str("...");
            }
            println!("{kw} {name}: {ty} = {}", crate::redact::redact(&val));
        }
        for f in self.fns_ast.iter_functions() {
            println!("fn {}({})", f.name, f.params.join(", "));
        }
    }

    fn help(&self, name: &str) {
        if name.is_empty() {
            println!(
                "Type Rhai statements; a line continues while a block, call or string is open.\n\
                 :help NAME   signature and docs of a function (e.g. :help retry, :help json::parse)\n\
                 :vars        variables and functions defined so far\n\
                 :load FILE   run a script file in this session\n\
                 :clear       forget variables, functions and imports\n\
                 :quit        leave (or Ctrl-D)\n\
                 Tab completes namespaces, functions, methods and variables.\n\
                 Namespaces: {}",
                self.helper.lock().namespaces.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            return;
        }
        let h = self.helper.lock();
        let matches: Vec<&FnDoc> = h
            .fns
            .iter()
            .filter(|f| f.qualified() == name || (f.global && f.name == name))
            .collect();
        if matches.is_empty() && self.help_topic(&h.fns, name.trim_end_matches("::")) {
            return;
        }
        if matches.is_empty() {
            let mut all: Vec<String> = h.fns.iter().map(|f| f.qualified()).collect();
            all.extend(h.namespaces.iter().cloned());
            all.extend(crate::engine::meta::TYPES.iter().map(|t| t.1.to_string()));
            let hint = crate::text::did_you_mean(name, all.iter().map(|s| s.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            println!("no function `{name}`{hint}");
            return;
        }
        for f in matches {
            println!("{}", f.signature());
            if !f.doc.is_empty() {
                println!("{}\n", f.doc);
            }
        }
    }
}

impl Repl {
    /// `:help` for a namespace (its functions), a type (properties and methods) or a stdlib
    /// module or function (`deploy`, `deploy::run_plan`). False when `name` is none of them.
    fn help_topic(&self, fns: &[FnDoc], name: &str) -> bool {
        let engine = &self.se.engine;
        if let Some(t) = crate::engine::meta::types(engine)
            .into_iter()
            .find(|t| t.name == name)
        {
            println!("{}: {}", t.name, t.doc);
            if !t.props.is_empty() {
                println!("\nproperties:");
                let rows: Vec<Vec<String>> = t
                    .props
                    .iter()
                    .map(|p| vec![p.name.clone(), p.ty.clone(), p.doc.clone()])
                    .collect();
                let table = crate::text::table(&["name".into(), "type".into(), "".into()], &rows);
                println!("{}", table.lines().skip(1).collect::<Vec<_>>().join("\n"));
            }
            println!("\nmethods:");
            for f in &t.methods {
                println!("  {}  {}", f.method_signature(), f.summary());
            }
            return true;
        }
        let in_ns: Vec<&FnDoc> = fns
            .iter()
            .filter(|f| f.namespace == name && crate::engine::meta::method_of(f).is_none())
            .collect();
        if !in_ns.is_empty() {
            for f in in_ns.iter().filter(|f| !f.name.contains('$')) {
                println!("{}  {}", f.signature(), f.summary());
            }
            return true;
        }
        let stdlib = crate::engine::meta::stdlib_fns(engine);
        let hits: Vec<&FnDoc> = stdlib
            .iter()
            .filter(|f| f.namespace == name || f.qualified() == name)
            .collect();
        if hits.is_empty() {
            return false;
        }
        let one = hits.iter().all(|f| f.qualified() == name);
        for f in hits {
            if one {
                println!("{}\n{}\n", f.signature(), f.doc);
            } else {
                println!("{}  {}", f.signature(), f.summary());
            }
        }
        true
    }
}

fn encode(line: &str) -> String {
    line.replace('\\', "\\\\").replace('\n', "\\n")
}

fn decode(line: &str) -> String {
    let mut out = String::new();
    let mut it = line.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn load_history(rl: &mut Editor<RlHelper, DefaultHistory>, path: &std::path::Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        for l in text.lines() {
            let _ = rl.history_mut().add(&decode(l));
        }
    }
}

fn append_history(path: &std::path::Path, entry: &str) {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    if let Ok(mut f) = opts.open(path) {
        let _ = writeln!(f, "{}", encode(&crate::redact::redact(entry)));
    }
}

/// Scrub secrets registered since entries were written (keeps the last 1000 entries).
fn rewrite_history(path: &std::path::Path) {
    if !crate::redact::any_registered() {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let keep = &lines[lines.len().saturating_sub(1000)..];
    let cleaned: Vec<String> = keep
        .iter()
        .map(|l| encode(&crate::redact::redact(&decode(l))))
        .collect();
    let new = cleaned.join("\n") + "\n";
    if new != text {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, new).is_ok() {
            let _ = std::fs::rename(tmp, path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_input() {
        assert!(is_incomplete("fn f(x) {"));
        assert!(is_incomplete("let a = [1,"));
        assert!(is_incomplete("let s = `multi"));
        assert!(is_incomplete("print(\"a\""));
        assert!(!is_incomplete("let s = \"{\";"));
        assert!(!is_incomplete("// {\nlet a = 1;"));
        assert!(!is_incomplete("fn f(x) { x }"));
        assert!(!is_incomplete(":help retry"));
    }

    #[test]
    fn history_encoding_roundtrips() {
        let s = "fn f() {\n  \"a\\\\b\"\n}";
        assert_eq!(decode(&encode(s)), s);
    }
}
