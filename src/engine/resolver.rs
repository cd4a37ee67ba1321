//! Module resolution for `import`.
//!
//! * `import "ralf/<name>"`: `./stdlib/<name>.rhai`, then `$XDG_CONFIG_HOME/ralf/stdlib/<name>.rhai`, then the
//!   config's `stdlib_paths`, then the copy embedded in the binary. Operators override the stdlib without recompiling.
//! * any other path: relative to the importing script's folder (then the working directory); `.rhai` is optional.
//!
//! Every loaded source is kept in a [`SourceMap`] so errors can quote the offending line.

use parking_lot::Mutex;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));

/// Source texts by source name, for error rendering.
#[derive(Default, Clone)]
pub struct SourceMap(Arc<Mutex<HashMap<String, Arc<str>>>>);

impl SourceMap {
    pub fn insert(&self, name: &str, text: &str) {
        self.0.lock().insert(name.to_string(), Arc::from(text));
    }
    pub fn get(&self, name: &str) -> Option<Arc<str>> {
        self.0.lock().get(name).cloned()
    }
}

pub struct Resolver {
    user_dirs: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Shared<Module>>>,
    pub sources: SourceMap,
    /// import path as written -> source name (for "in module" frames)
    pub module_sources: Arc<Mutex<HashMap<String, String>>>,
}

/// The stdlib folders searched before the embedded copy.
pub fn stdlib_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("stdlib")];
    v.push(crate::config::xdg_config_home().join("ralf/stdlib"));
    v.extend(extra.iter().cloned());
    v
}

pub fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED_STDLIB
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
}

/// The embedded stdlib modules: (`ralf/<name>`, source).
pub fn embedded_stdlib() -> &'static [(&'static str, &'static str)] {
    EMBEDDED_STDLIB
}

/// Names of all stdlib modules (embedded ones plus overrides on disk).
pub fn stdlib_names() -> Vec<&'static str> {
    EMBEDDED_STDLIB.iter().map(|(n, _)| *n).collect()
}

/// Replace a leading `#!` line with a blank one (keeps line numbers).
pub fn strip_shebang(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with("#!") {
        let rest = text.find('\n').map(|i| &text[i..]).unwrap_or("");
        std::borrow::Cow::Owned(rest.to_string())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

impl Resolver {
    pub fn new(extra_dirs: &[PathBuf], sources: SourceMap) -> Self {
        Resolver {
            user_dirs: stdlib_dirs(extra_dirs),
            cache: Mutex::new(HashMap::new()),
            sources,
            module_sources: Default::default(),
        }
    }

    /// Find the file (or embedded text) for an import path. Returns (source name, text).
    pub fn locate(&self, importer: Option<&str>, path: &str) -> Result<(String, String), String> {
        if let Some(name) = path.strip_prefix("ralf/") {
            if name.is_empty() || name.contains("..") || name.contains('/') {
                return Err(format!("invalid stdlib module name `{path}`"));
            }
            for dir in &self.user_dirs {
                let f = dir.join(format!("{name}.rhai"));
                if f.is_file() {
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                    return Ok((f.display().to_string(), text));
                }
            }
            if let Some(text) = embedded(path) {
                return Ok((format!("<embedded>/{path}.rhai"), text.to_string()));
            }
            let known: Vec<&str> = stdlib_names();
            let hint = crate::text::did_you_mean(path, known.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!("no stdlib module `{path}`{hint}"));
        }
        let mut cands = Vec::new();
        let base = importer
            .filter(|s| !s.starts_with("<"))
            .and_then(|s| Path::new(s).parent().map(Path::to_path_buf));
        let with_ext = if path.ends_with(".rhai") {
            path.to_string()
        } else {
            format!("{path}.rhai")
        };
        if Path::new(&with_ext).is_absolute() {
            cands.push(PathBuf::from(&with_ext));
        } else {
            if let Some(b) = base {
                cands.push(b.join(&with_ext));
            }
            cands.push(PathBuf::from(&with_ext));
        }
        for c in &cands {
            if c.is_file() {
                let text = std::fs::read_to_string(c)
                    .map_err(|e| format!("cannot read {}: {e}", c.display()))?;
                return Ok((c.display().to_string(), text));
            }
        }
        Err(format!(
            "module `{path}` not found (looked for {})",
            cands
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let (name, text) = self.locate(source, path).map_err(|msg| {
            Box::new(EvalAltResult::ErrorRuntime(
                crate::error::RalfError::not_found(format!("import \"{path}\": {msg}"))
                    .to_dynamic(),
                pos,
            ))
        })?;
        self.module_sources
            .lock()
            .insert(path.to_string(), name.clone());
        if let Some(m) = self.cache.lock().get(&name) {
            return Ok(m.clone());
        }
        self.sources.insert(&name, &text);
        let mut ast = engine.compile(strip_shebang(&text).as_ref()).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                name.clone(),
                Box::new(e.into()),
                pos,
            ))
        })?;
        ast.set_source(name.as_str());
        let mut m = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos)))?;
        expose_closures(&mut m);
        let m: Shared<Module> = m.into();
        self.cache.lock().insert(name, m.clone());
        Ok(m)
    }
}

/// Closures a module hands out (`#{ runner: |host, cmd| ... }` from `deploy::smoke_opts()`) are
/// anonymous functions of the module. Rhai looks an `f.call(..)` up in the calling script and in
/// the *global* functions of the imported modules, so a module's closure called from the script
/// that imported it was "Function not found: anon$…". Its anonymous functions are made global;
/// their names are unique hashes, so they shadow nothing.
fn expose_closures(m: &mut Module) {
    let anon: Vec<_> = m
        .iter_script_fn_info()
        .filter(|(_, _, name, _, _)| name.starts_with("anon$"))
        .map(|(_, _, _, _, def)| def.clone())
        .collect();
    for def in anon {
        // Set again (same name and arity: replaced), which hands back its hash.
        let hash = m.set_script_fn(def);
        #[allow(deprecated)]
        m.update_fn_namespace(hash, rhai::FnNamespace::Global);
    }
    m.build_index();
}
