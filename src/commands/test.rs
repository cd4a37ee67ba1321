//! `ralf-sh test FILE..`: run every `fn test_*()` of script test files.
//!
//! Each test runs with the file's top-level statements evaluated first (imports, constants), in a
//! fresh scope. Output: one line per test, then `N passed, N failed`. Exit 0 all passed, 1 any
//! failed, 2 a file did not compile.

use crate::engine;
use crate::error::exit;
use crate::host::Host;
use rhai::{CallFnOptions, Dynamic};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn run(host: &Arc<Host>, files: &[PathBuf]) -> i32 {
    let host = host.clone();
    let files = files.to_vec();
    crate::engine::run::on_script_thread(move || run_inner(&host, &files))
}

fn run_inner(host: &Arc<Host>, files: &[PathBuf]) -> i32 {
    let se = engine::build(host);
    let (mut passed, mut failed, mut compile_errors) = (0, 0, 0);
    let mut failures = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let ast = match se.compile_file(file) {
            Ok(a) => a,
            Err(msg) => {
                eprint!("{}", crate::redact::redact(&msg));
                compile_errors += 1;
                continue;
            }
        };
        let mut tests: Vec<String> = ast
            .iter_functions()
            .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
            .map(|f| f.name.to_string())
            .collect();
        tests.sort();
        if tests.is_empty() {
            crate::outln!("{name}: no test_* functions");
        }
        for t in tests {
            if host.cancel.is_cancelled() {
                break;
            }
            let start = Instant::now();
            let mut scope = engine::base_scope(Vec::new());
            let opts = CallFnOptions::new().eval_ast(true).rewind_scope(true);
            let r = se
                .engine
                .call_fn_with_options::<Dynamic>(opts, &mut scope, &ast, &t, ());
            let ms = start.elapsed().as_millis();
            match r {
                Ok(_) => {
                    passed += 1;
                    crate::outln!("ok     {name}::{t} ({ms} ms)");
                }
                Err(e) => {
                    failed += 1;
                    crate::outln!("FAILED {name}::{t} ({ms} ms)");
                    failures.push(format!("--- {name}::{t}\n{}", se.render_error(&e, &name)));
                }
            }
        }
    }
    for f in &failures {
        crate::out!("{}", crate::redact::redact(f));
    }
    crate::outln!("{passed} passed, {failed} failed");
    if host.cancel.is_cancelled() {
        exit::CANCELLED
    } else if compile_errors > 0 {
        exit::USAGE
    } else if failed > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}
