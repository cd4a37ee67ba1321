//! Rendering of uncaught errors: `file:line:col`, the source line with a caret, the message and
//! the call chain through functions and imported modules. Never a raw map or a Debug dump.

use crate::engine::resolver::SourceMap;
use crate::error::RalfError;
use rhai::{Dynamic, EvalAltResult, ParseError, Position};

/// A thrown value in an error message: a ralf-sh error as `[kind] message`, anything else as Rhai
/// displays it (results are shown by [`super::pretty`]).
fn display_value(v: &Dynamic) -> String {
    if let Some(e) = RalfError::from_dynamic(v) {
        return e.to_string();
    }
    v.to_string()
}

fn snippet(out: &mut String, sources: &SourceMap, src: &str, pos: Position) {
    let (Some(line), Some(text)) = (pos.line(), sources.get(src)) else {
        return;
    };
    let Some(code) = text.lines().nth(line - 1) else {
        return;
    };
    let col = pos.position().unwrap_or(1).max(1);
    let num = line.to_string();
    let pad = " ".repeat(num.len());
    // Keep tabs in the caret line so it lines up with the code.
    let lead: String = code
        .chars()
        .take(col - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!("{pad} |\n{num} | {code}\n{pad} | {lead}^\n"));
}

fn loc(src: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{src}:{l}:{c}"),
        (Some(l), None) => format!("{src}:{l}"),
        _ => src.to_string(),
    }
}

/// The message of an innermost error, without Rhai's "(line x, position y)" suffix.
fn message_of(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorRuntime(v, _) => match RalfError::from_dynamic(v) {
            Some(re) => format!("[{}] {}", re.kind, re.message),
            None => format!("uncaught exception: {}", display_value(v)),
        },
        other => {
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_string(),
                _ => s,
            }
        }
    }
}

/// Render an uncaught runtime error raised while running `main_src`.
pub fn render_runtime(
    err: &EvalAltResult,
    main_src: &str,
    sources: &SourceMap,
    module_sources: &std::collections::HashMap<String, String>,
) -> String {
    let (inner, src, frames) = unwind(err, main_src, module_sources);
    let pos = inner.position();
    let mut out = format!("error: {}\n", crate::redact::redact(&message_of(inner)));
    out.push_str(&format!("  --> {}\n", loc(&src, pos)));
    snippet(&mut out, sources, &src, pos);
    // Call chain, innermost first.
    for f in frames.iter().rev() {
        out.push_str(&format!("  = {f}\n"));
    }
    crate::redact::redact(&out)
}

/// An uncaught error as the fields of one JSON log line: `kind`, `file`, `line`, `column` and
/// `chain` (the calls through functions and modules, innermost first); the message apart.
pub fn error_fields(
    err: &EvalAltResult,
    main_src: &str,
    module_sources: &std::collections::HashMap<String, String>,
) -> (String, serde_json::Value) {
    let (inner, src, frames) = unwind(err, main_src, module_sources);
    let pos = inner.position();
    let kind = match inner {
        EvalAltResult::ErrorRuntime(v, _) => RalfError::from_dynamic(v)
            .map(|re| re.kind.to_string())
            .unwrap_or_else(|| "script".into()),
        EvalAltResult::ErrorTerminated(..) => "cancelled".into(),
        _ => "script".into(),
    };
    let chain: Vec<String> = frames.iter().rev().cloned().collect();
    let msg = crate::redact::redact(&message_of(inner));
    let fields = serde_json::json!({
        "kind": kind, "file": src, "line": pos.line(), "column": pos.position(), "chain": chain,
    });
    (msg, crate::host::redact_json(fields))
}

/// The innermost error, the source it happened in and the frames on the way (outermost first).
fn unwind<'e>(
    err: &'e EvalAltResult,
    main_src: &str,
    module_sources: &std::collections::HashMap<String, String>,
) -> (&'e EvalAltResult, String, Vec<String>) {
    let mut frames: Vec<String> = Vec::new();
    let mut cur_src = main_src.to_string();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, fsrc, inner, pos) => {
                frames.push(format!("in call to `{name}` at {}", loc(&cur_src, *pos)));
                if !fsrc.is_empty() {
                    cur_src = fsrc.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(mname, inner, pos) => {
                frames.push(format!(
                    "in module `{mname}` imported at {}",
                    loc(&cur_src, *pos)
                ));
                cur_src = module_sources
                    .get(mname)
                    .cloned()
                    .unwrap_or_else(|| mname.clone());
                e = inner;
            }
            _ => return (e, cur_src, frames),
        }
    }
}

/// Render a message located at `pos` in `src`.
pub fn render_message(msg: &str, src: &str, pos: Position, sources: &SourceMap) -> String {
    let mut out = format!("error: {msg}\n");
    out.push_str(&format!("  --> {}\n", loc(src, pos)));
    snippet(&mut out, sources, src, pos);
    out
}

/// Render a compile error of `src`.
pub fn render_parse(err: &ParseError, src: &str, sources: &SourceMap) -> String {
    let pos = err.position();
    let mut out = format!("error: {}\n", err.err_type());
    out.push_str(&format!("  --> {}\n", loc(src, pos)));
    snippet(&mut out, sources, src, pos);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;
    #[test]
    fn durations_read_well() {
        assert_eq!(
            crate::text::human_duration(Duration::from_millis(250)),
            "250ms"
        );
        assert_eq!(crate::text::human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(
            crate::text::human_duration(Duration::from_millis(1500)),
            "1.5s"
        );
        assert_eq!(crate::text::human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(
            crate::text::human_duration(Duration::from_secs(125)),
            "2m 5s"
        );
    }
}
