//! The one engine builder used by every entry point (file, -e, REPL, check, docs, tests).

pub mod meta;
pub mod render;
pub mod resolver;
pub mod run;

use crate::error::exit;

use crate::host::Host;
use resolver::{Resolver, SourceMap};
use rhai::{Dynamic, Engine, EvalAltResult, Scope, AST};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// An engine with every binding registered, plus what error rendering needs.
pub struct ScriptEngine {
    pub engine: Engine,
    pub host: Arc<Host>,
    pub sources: SourceMap,
    module_sources: Arc<parking_lot::Mutex<HashMap<String, String>>>,
    show_ast: std::sync::OnceLock<AST>,
}

/// How a script run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Finished; the value of the last statement.
    Value(Dynamic),
    /// `exit(code)` or `exit(code, value)` was called.
    Exit(i32, Dynamic),
}

/// Build the engine: strict variables, limits, print/debug routing, cancellation, resolver, bindings.
pub fn build(host: &Arc<Host>) -> ScriptEngine {
    let mut engine = Engine::new();
    engine.set_strict_variables(true);
    engine.set_max_call_levels(96);
    engine.set_max_expr_depths(256, 128);
    // No Rhai data-size limits: with any of them set, Rhai re-measures an array after every method
    // call on it (40,000 pushes took 1.2 s). The calls that allocate in bulk (`pad`, `blob`) are
    // checked against `limits:` instead (bindings::limits).
    engine.set_max_operations(host.cfg().limits.max_operations);
    engine.set_fail_on_invalid_map_property(true);

    let progress = host.progress.clone();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    engine.on_print(move |s| {
        let mut text = crate::redact::redact(s);
        if tty {
            // Printed text often carries remote text: no escape sequence reaches the terminal raw.
            text = crate::text::visible_controls(&text).into_owned();
        }
        progress.suspend(|| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        });
    });
    engine.on_debug(|s, src, pos| {
        let at = match (src, pos.line()) {
            (Some(src), Some(l)) => format!("{src}:{l}: "),
            (None, Some(l)) => format!("line {l}: "),
            _ => String::new(),
        };
        tracing::debug!(target: "ralf::script", "{at}{s}");
    });
    let cancel = host.cancel.clone();
    engine.on_progress(move |_ops| {
        if cancel.is_cancelled() {
            Some(Dynamic::from("cancelled"))
        } else {
            None
        }
    });

    let sources = SourceMap::default();
    let resolver = Resolver::new(&host.cfg().stdlib_paths, sources.clone());
    let module_sources = resolver.module_sources.clone();
    engine.set_module_resolver(resolver);

    // Bindings find the host through the engine's default tag.
    engine.set_default_tag(Dynamic::from(crate::bindings::HostRef(host.clone())));
    crate::bindings::register_all(&mut engine);

    ScriptEngine {
        engine,
        host: host.clone(),
        sources,
        module_sources,
        show_ast: std::sync::OnceLock::new(),
    }
}

impl ScriptEngine {
    /// Compile script text under a source name (a path, `<eval>`, `<repl>`). Errors are rendered.
    pub fn compile_text(&self, name: &str, text: &str) -> Result<AST, String> {
        // ARGS as a plain variable here: as a constant, the optimizer would inline the empty
        // compile-time value into the script and every script would see `ARGS == []`.
        let mut scope = Scope::new();
        scope.push("ARGS", rhai::Array::new());
        self.compile_in_scope(name, text, &scope)
    }

    /// Compile against the variables of `scope` (strict variables are checked at compile time).
    pub fn compile_in_scope(&self, name: &str, text: &str, scope: &Scope) -> Result<AST, String> {
        self.sources.insert(name, text);
        let stripped = resolver::strip_shebang(text);
        match self.engine.compile_with_scope(scope, stripped.as_ref()) {
            Ok(mut ast) => {
                ast.set_source(name);
                Ok(ast)
            }
            Err(e) => Err(render::render_parse(&e, name, &self.sources)),
        }
    }

    /// Read and compile a script file.
    pub fn compile_file(&self, path: &Path) -> Result<AST, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("error: cannot read {}: {e}\n", path.display()))?;
        self.compile_text(&path.display().to_string(), &text)
    }

    /// Run a compiled script in `scope`.
    pub fn run(&self, scope: &mut Scope, ast: &AST) -> Result<Outcome, Box<EvalAltResult>> {
        match self.engine.eval_ast_with_scope::<Dynamic>(scope, ast) {
            Ok(v) => Ok(Outcome::Value(v)),
            Err(e) => match exit_request(&e) {
                Some((code, v)) => Ok(Outcome::Exit(code, v)),
                None => match *e {
                    EvalAltResult::Exit(v, _) => Ok(Outcome::Exit(exit_value(&v), Dynamic::UNIT)),
                    _ => Err(e),
                },
            },
        }
    }

    /// Render an uncaught error raised while running the script named `main_src`.
    pub fn render_error(&self, err: &EvalAltResult, main_src: &str) -> String {
        let ms = self.module_sources.lock().clone();
        render::render_runtime(err, main_src, &self.sources, &ms)
    }

    /// A value as people read it ([`pretty::pretty`]): handles by their registered `to_string`.
    pub fn show(&self, v: &Dynamic) -> String {
        crate::script::pretty::pretty(v, &|x| self.handle_text(x))
    }

    /// A value as JSON for `--output json`.
    pub fn show_json(&self, v: &Dynamic) -> String {
        crate::script::pretty::to_json(v, &|x| self.handle_text(x)).to_string()
    }

    /// A handle's registered `to_string` (its type name when it has none).
    fn handle_text(&self, v: &Dynamic) -> String {
        let ast = self.show_ast.get_or_init(|| {
            self.engine
                .compile("fn __show(v) { to_string(v) }")
                .unwrap_or_default()
        });
        self.engine
            .call_fn::<String>(&mut Scope::new(), ast, "__show", (v.clone(),))
            .unwrap_or_else(|_| v.type_name().rsplit("::").next().unwrap_or("?").to_string())
    }

    /// An uncaught error as (message, JSON fields) for one JSON log line.
    pub fn error_fields(&self, err: &EvalAltResult, main_src: &str) -> (String, serde_json::Value) {
        let ms = self.module_sources.lock().clone();
        render::error_fields(err, main_src, &ms)
    }
}

/// The scope every script starts with: `ARGS` (the script's arguments, strings).
pub fn base_scope(args: Vec<String>) -> Scope<'static> {
    let mut scope = Scope::new();
    let a: rhai::Array = args.into_iter().map(Dynamic::from).collect();
    // A plain variable, not a constant: scripts are compiled against this scope before the real
    // arguments are known, and the optimizer would inline a constant's compile-time value.
    scope.push("ARGS", a);
    scope
}

/// The code (and value) of an `exit(..)` call, wherever in the call chain it happened.
pub fn exit_request(e: &EvalAltResult) -> Option<(i32, Dynamic)> {
    match e {
        EvalAltResult::ErrorTerminated(v, _) => v
            .read_lock::<crate::bindings::core::ExitRequest>()
            .map(|r| (r.0, r.1.clone())),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => exit_request(inner),
        _ => None,
    }
}

fn exit_value(v: &Dynamic) -> i32 {
    if let Ok(i) = v.as_int() {
        return i.clamp(0, 255) as i32;
    }
    if v.is_unit() {
        return 0;
    }
    exit::FAILED
}

/// The exit code for an uncaught error: 130 when cancelled, the code the error names (e.g. 75 for
/// a held run lock), 2 for a configuration error met before the run changed anything ("nothing
/// was started", `changed` false), 1 otherwise.
pub fn exit_code_for(err: &EvalAltResult, changed: bool) -> i32 {
    match err {
        EvalAltResult::ErrorTerminated(_, _) => exit::CANCELLED,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => exit_code_for(inner, changed),
        EvalAltResult::ErrorRuntime(v, _) => match crate::error::RalfError::from_dynamic(v) {
            Some(e) if e.kind == crate::error::ErrorKind::Cancelled => exit::CANCELLED,
            Some(e) if e.kind == crate::error::ErrorKind::Config && !changed => exit::USAGE,
            // An error may name the process exit code it implies (e.g. 75 for a held run lock).
            Some(e) => e
                .details
                .get("exit_code")
                .and_then(|c| c.as_i64())
                .map(|c| c.clamp(1, 255) as i32)
                .unwrap_or(exit::FAILED),
            None => exit::FAILED,
        },
        _ => exit::FAILED,
    }
}
