//! `ralf-sh check SCRIPT..`: compile every script (and the modules it imports, without running
//! them) and flag calls of functions that are neither registered nor defined, with did-you-mean.
//! No side effects. Exit 0 clean, 2 otherwise.

use crate::engine::{self, ScriptEngine};
use crate::error::exit;
use crate::host::Host;
use rhai::{ASTNode, Expr, Stmt, AST};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) fn run(host: &Arc<Host>, scripts: &[PathBuf]) -> i32 {
    let host = host.clone();
    let scripts = scripts.to_vec();
    crate::engine::run::on_script_thread(move || {
        let se = engine::build(&host);
        let mut problems = 0;
        for s in &scripts {
            let name = s.display().to_string();
            match se.compile_file(s) {
                Err(msg) => {
                    eprint!("{msg}");
                    problems += 1;
                }
                Ok(ast) => {
                    let found = check_ast(&se, &ast, &name);
                    for p in &found {
                        eprint!("{p}");
                    }
                    problems += found.len();
                }
            }
        }
        if problems == 0 {
            crate::outln!("ok: {} script(s) checked", scripts.len());
            exit::OK
        } else {
            eprintln!("{problems} problem(s) found");
            exit::USAGE
        }
    })
}

/// Known function names: global ones, and per namespace.
struct Known {
    global: HashSet<String>,
    namespaced: HashMap<String, HashSet<String>>,
}

fn known(se: &ScriptEngine) -> Known {
    let mut k = Known {
        global: crate::engine::meta::BUILTIN_FUNCTIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        namespaced: HashMap::new(),
    };
    for f in crate::engine::meta::functions(&se.engine, true) {
        if f.namespace.is_empty() || f.global {
            k.global.insert(f.name.clone());
        }
        if !f.namespace.is_empty() {
            k.namespaced
                .entry(f.namespace.clone())
                .or_default()
                .insert(f.name.clone());
        }
    }
    k
}

/// A call found in a script: (namespace, name, position, is a method call).
type Call = (Option<String>, String, rhai::Position, bool);

/// Collect (import path, alias) pairs and every call in an AST.
fn calls(ast: &AST) -> (Vec<(String, String)>, Vec<Call>) {
    let mut imports = Vec::new();
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Import(x, _))) => {
                let (e, alias) = &**x;
                if let Expr::StringConstant(s, _) = e {
                    imports.push((s.to_string(), alias.name.to_string()));
                }
            }
            Some(ASTNode::Expr(Expr::FnCall(f, pos)))
            | Some(ASTNode::Stmt(Stmt::FnCall(f, pos)))
                if f.op_token.is_none() =>
            {
                let ns = if f.namespace.is_empty() {
                    None
                } else {
                    Some(
                        f.namespace
                            .path
                            .iter()
                            .map(|i| i.name.to_string())
                            .collect::<Vec<_>>()
                            .join("::"),
                    )
                };
                out.push((ns, f.name.to_string(), *pos, false));
            }
            Some(ASTNode::Expr(Expr::MethodCall(f, pos))) => {
                out.push((None, f.name.to_string(), *pos, true));
            }
            _ => {}
        }
        true
    });
    (imports, out)
}

fn check_ast(se: &ScriptEngine, ast: &AST, name: &str) -> Vec<String> {
    let k = known(se);
    let mut script_fns: HashSet<String> =
        ast.iter_functions().map(|f| f.name.to_string()).collect();
    let (imports, calls) = calls(ast);
    // Functions of imported modules, compiled (not run) to list what they define.
    let mut module_fns: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let resolver =
        crate::engine::resolver::Resolver::new(&se.host.cfg().stdlib_paths, se.sources.clone());
    for (path, alias) in &imports {
        match resolver.locate(Some(name), path) {
            Ok((src, text)) => match se
                .engine
                .compile(crate::engine::resolver::strip_shebang(&text).as_ref())
            {
                Ok(mast) => {
                    let fns: HashSet<String> =
                        mast.iter_functions().map(|f| f.name.to_string()).collect();
                    module_fns.insert(alias.clone(), fns);
                }
                Err(e) => problems.push(crate::engine::render::render_parse(&e, &src, &se.sources)),
            },
            Err(msg) => problems.push(format!("error: {msg}\n  --> {name} (import \"{path}\")\n")),
        }
    }
    script_fns.extend(["main".to_string()]);
    for (ns, fname, pos, is_method) in calls {
        let ok = match &ns {
            None => {
                k.global.contains(&fname)
                    || script_fns.contains(&fname)
                    || (is_method && fname.starts_with("get$"))
            }
            Some(ns) => {
                module_fns
                    .get(ns)
                    .map(|m| m.contains(&fname))
                    .unwrap_or(false)
                    || k.namespaced
                        .get(ns)
                        .map(|m| m.contains(&fname))
                        .unwrap_or(false)
            }
        };
        if ok {
            continue;
        }
        let (what, cands): (String, Vec<String>) = match &ns {
            None => (
                format!("unknown function `{fname}`"),
                k.global.iter().chain(script_fns.iter()).cloned().collect(),
            ),
            Some(ns) => {
                if let Some(m) = module_fns.get(ns).or_else(|| k.namespaced.get(ns)) {
                    (
                        format!("unknown function `{ns}::{fname}`"),
                        m.iter().cloned().collect(),
                    )
                } else {
                    let nss: Vec<String> = k
                        .namespaced
                        .keys()
                        .chain(module_fns.keys())
                        .cloned()
                        .collect();
                    let hint = crate::text::did_you_mean(ns, nss.iter().map(|s| s.as_str()))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    problems.push(located(
                        se,
                        name,
                        pos,
                        &format!("unknown namespace `{ns}`{hint}"),
                    ));
                    continue;
                }
            }
        };
        let hint = crate::text::did_you_mean(&fname, cands.iter().map(|s| s.as_str()))
            .map(|s| match &ns {
                Some(n) => format!("; did you mean `{n}::{s}`?"),
                None => format!("; did you mean `{s}`?"),
            })
            .unwrap_or_default();
        problems.push(located(se, name, pos, &format!("{what}{hint}")));
    }
    problems
}

fn located(se: &ScriptEngine, name: &str, pos: rhai::Position, msg: &str) -> String {
    crate::engine::render::render_message(msg, name, pos, &se.sources)
}
