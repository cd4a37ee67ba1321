//! Small text helpers scripts kept writing by hand: `join`, `trimmed`, `tail_lines`, `round_to`.

use rhai::plugin::*;
use rhai::{Array, Engine, FLOAT, INT};

pub fn register(engine: &mut Engine) {
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

#[export_module]
mod strings {
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
