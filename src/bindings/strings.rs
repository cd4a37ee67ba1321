//! Text for people: `print` of maps and arrays, `pretty`, `table`, and the small helpers scripts
//! kept writing by hand (`join`, `trimmed`, `tail_lines`, `round_to`).

use crate::error::{RResult, RalfError};
use crate::script::pretty::{self, Column};
use rhai::plugin::*;
use rhai::{Array, Engine, Map, FLOAT, INT};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(strings).into());
}

fn joined(items: &Array, sep: &str) -> String {
    let mut out = String::new();
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&x.to_string());
    }
    out
}

fn last_lines(text: &str, n: INT) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let n = n.max(0) as usize;
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A handle's registered `to_string`, from a native call.
fn handle_text(ctx: &NativeCallContext, v: &Dynamic) -> String {
    ctx.call_native_fn::<ImmutableString>("to_string", (v.clone(),))
        .map(|s| s.to_string())
        .unwrap_or_else(|_| v.type_name().rsplit("::").next().unwrap_or("?").to_string())
}

fn columns_of(opts: &Map) -> RResult<Option<Vec<Column>>> {
    for k in opts.keys() {
        if k.as_str() != "columns" {
            return Err(RalfError::invalid(format!(
                "table: unknown option `{k}` (columns)"
            )));
        }
    }
    let Some(cols) = opts.get("columns") else {
        return Ok(None);
    };
    let Some(cols) = cols.read_lock::<Array>() else {
        return Err(RalfError::invalid(
            "table: columns must be an array of keys or #{ key, title } maps",
        ));
    };
    let mut out = Vec::new();
    for c in cols.iter() {
        if c.is_string() {
            let k = c.to_string();
            out.push(Column {
                title: k.clone(),
                key: k,
            });
        } else if let Some(m) = c.read_lock::<Map>() {
            let key = m
                .get("key")
                .filter(|k| k.is_string())
                .map(|k| k.to_string());
            let Some(key) = key else {
                return Err(RalfError::invalid(
                    "table: a column map needs a `key` string",
                ));
            };
            let title = m
                .get("title")
                .map(|t| t.to_string())
                .unwrap_or_else(|| key.clone());
            out.push(Column { key, title });
        } else {
            return Err(RalfError::invalid(format!(
                "table: a column is a key or #{{ key, title }}, got {}",
                c.type_name()
            )));
        }
    }
    Ok(Some(out))
}

fn rows_of(rows: &Array) -> RResult<Vec<Map>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            r.read_lock::<Map>().map(|m| m.clone()).ok_or_else(|| {
                RalfError::invalid(format!(
                    "table: row {} is a {}, not a map",
                    i + 1,
                    r.type_name()
                ))
            })
        })
        .collect()
}

#[export_module]
mod strings {
    use crate::bindings::AtCall;

    /// `print(map)`: one `key: value` line per field (unit fields left out), nested maps indented,
    /// epoch times under `…time` keys as RFC 3339.
    ///
    /// ```rhai
    /// print(#{ name: "redis", error: (), smoke: #{ ok: true } });
    /// ```
    #[rhai_fn(name = "print", pure)]
    pub fn print_map(ctx: NativeCallContext, m: &mut Map) -> String {
        pretty::pretty(&Dynamic::from_map(m.clone()), &|x| handle_text(&ctx, x))
    }

    /// `print(array)`: an array of maps as a table, other arrays one item a line or inline.
    ///
    /// ```rhai
    /// print([#{ service: "redis", status: "deployed" }, #{ service: "n8n", status: "failed" }]);
    /// ```
    #[rhai_fn(name = "print", pure)]
    pub fn print_array(ctx: NativeCallContext, a: &mut Array) -> String {
        pretty::pretty(&Dynamic::from_array(a.clone()), &|x| handle_text(&ctx, x))
    }

    /// Any value as `print` shows it, as a string.
    ///
    /// ```rhai
    /// assert(pretty(#{ a: 1, b: () }) == "a: 1");
    /// ```
    #[rhai_fn(name = "pretty")]
    pub fn pretty_fn(ctx: NativeCallContext, v: Dynamic) -> String {
        pretty::pretty(&v, &|x| handle_text(&ctx, x))
    }

    /// Rows (maps) as an aligned table: every key in order of first appearance (`name`, `service` or `id` first); unit or missing
    /// cells as `-`.
    ///
    /// ```rhai
    /// let t = table([#{ service: "redis", status: "deployed" }, #{ service: "n8n" }]);
    /// assert(t == "service  status\nredis    deployed\nn8n      -");
    /// ```
    #[rhai_fn(name = "table", return_raw)]
    pub fn table1(ctx: NativeCallContext, rows: Array) -> Result<String, Box<EvalAltResult>> {
        let rows = rows_of(&rows).at(&ctx)?;
        Ok(pretty::table_of(&rows, None, &|x| handle_text(&ctx, x)))
    }

    /// Rows as a table with chosen `columns`: keys, or `#{ key, title }` maps.
    ///
    /// ```rhai
    /// let t = table([#{ name: "redis", took: 1.5 }], #{ columns: ["name", #{ key: "took", title: "seconds" }] });
    /// assert(t == "name   seconds\nredis  1.5");
    /// ```
    #[rhai_fn(name = "table", return_raw)]
    pub fn table2(
        ctx: NativeCallContext,
        rows: Array,
        opts: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let cols = columns_of(&opts).at(&ctx)?;
        let rows = rows_of(&rows).at(&ctx)?;
        Ok(pretty::table_of(&rows, cols.as_deref(), &|x| {
            handle_text(&ctx, x)
        }))
    }

    /// The items as text, `sep` between them.
    ///
    /// ```rhai
    /// assert(["a", 1, true].join(", ") == "a, 1, true");
    /// assert([].join("-") == "");
    /// ```
    #[rhai_fn(name = "join", pure)]
    pub fn join(items: &mut Array, sep: &str) -> String {
        joined(items, sep)
    }

    /// `join(items, sep)`: the same as `items.join(sep)`.
    ///
    /// ```rhai
    /// assert(join(["x", "y"], "+") == "x+y");
    /// ```
    #[rhai_fn(name = "join")]
    pub fn join_fn(items: Array, sep: &str) -> String {
        joined(&items, sep)
    }

    /// A copy of the text without leading and trailing white space (`trim()` changes the string
    /// in place and returns nothing).
    ///
    /// ```rhai
    /// assert("  v1.2\n".trimmed() == "v1.2");
    /// ```
    #[rhai_fn(name = "trimmed", pure)]
    pub fn trimmed(s: &mut ImmutableString) -> String {
        s.trim().to_string()
    }

    /// The last `n` lines of the text (trimmed), joined with newlines: a log tail for a message.
    ///
    /// ```rhai
    /// assert("a\nb\nc\n".tail_lines(2) == "b\nc");
    /// assert("a".tail_lines(5) == "a");
    /// ```
    #[rhai_fn(name = "tail_lines", pure)]
    pub fn tail_lines(s: &mut ImmutableString, n: INT) -> String {
        last_lines(s, n)
    }

    /// The number rounded to `digits` decimal places.
    ///
    /// ```rhai
    /// assert(3.14159.round_to(2) == 3.14);
    /// ```
    #[rhai_fn(name = "round_to")]
    pub fn round_to(x: FLOAT, digits: INT) -> FLOAT {
        let f = 10f64.powi(digits.clamp(0, 15) as i32);
        (x * f).round() / f
    }

    /// An integer as a float (already round).
    ///
    /// ```rhai
    /// assert(2.round_to(1) == 2.0);
    /// ```
    #[rhai_fn(name = "round_to")]
    pub fn round_to_int(x: INT, _digits: INT) -> FLOAT {
        x as FLOAT
    }
}
