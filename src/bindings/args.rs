//! `args::parse`: declarative script arguments. The defaults say each option's type (a string
//! takes a value, an integer or float a number, a bool is a flag with a `--no-` form, an array
//! takes a comma-separated list and may repeat, `()` an optional string); `--help` prints the
//! usage and ends the script with exit 0; a usage error prints one line and ends it with exit 2.
//! `args::argv()` gives the script's arguments anywhere, functions included.

use crate::bindings::{host, AtCall};
use crate::error::{RResult, RalfError, RhaiResult};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("args", exported_module!(args_mod).into());
}

/// A usage error: what was wrong with the arguments.
enum Fail {
    Usage(String),
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Str,
    OptStr,
    Int,
    Float,
    Bool,
    List,
}

fn ty_of(v: &Dynamic) -> Option<Ty> {
    if v.is_unit() {
        Some(Ty::OptStr)
    } else if v.is_string() {
        Some(Ty::Str)
    } else if v.is_int() {
        Some(Ty::Int)
    } else if v.is_float() {
        Some(Ty::Float)
    } else if v.is_bool() {
        Some(Ty::Bool)
    } else if v.is_array() {
        Some(Ty::List)
    } else {
        None
    }
}

fn flag(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

struct Spec {
    usage: String,
    about: String,
    options: Vec<(String, Dynamic, Ty, String)>,
    positional: Vec<(String, bool)>,
    rest: bool,
}

fn spec_of(m: &Map) -> RResult<Spec> {
    let bad = |msg: String| RalfError::invalid(format!("args::parse: {msg}"));
    for k in m.keys() {
        if !["usage", "about", "options", "help", "positional", "rest"].contains(&k.as_str()) {
            let hint = crate::text::did_you_mean(
                k,
                ["usage", "about", "options", "help", "positional", "rest"],
            )
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
            return Err(bad(format!("unknown key `{k}`{hint}")));
        }
    }
    let text = |k: &str| -> RResult<String> {
        match m.get(k) {
            None => Ok(String::new()),
            Some(v) if v.is_string() => Ok(v.to_string()),
            Some(v) => Err(bad(format!(
                "`{k}` must be a string, got {}",
                v.type_name()
            ))),
        }
    };
    let help: Map = match m.get("help") {
        None => Map::new(),
        Some(v) => v
            .clone()
            .try_cast::<Map>()
            .ok_or_else(|| bad("`help` must be a map of option name -> text".into()))?,
    };
    let mut options = Vec::new();
    if let Some(v) = m.get("options") {
        let o = v
            .clone()
            .try_cast::<Map>()
            .ok_or_else(|| bad("`options` must be a map of name -> default".into()))?;
        for (k, d) in o {
            if k.as_str() == "given" || k.as_str() == "help" {
                return Err(bad(format!(
                    "`{k}` cannot be an option name (it is reserved)"
                )));
            }
            let ty = ty_of(&d).ok_or_else(|| {
                bad(format!(
                    "option `{k}`: the default must be a string, number, bool, array or (), got {}",
                    d.type_name()
                ))
            })?;
            let h = help
                .get(k.as_str())
                .map(|h| h.to_string())
                .unwrap_or_default();
            options.push((k.to_string(), d, ty, h));
        }
    }
    for k in help.keys() {
        if !options.iter().any(|o| o.0 == k.as_str()) {
            return Err(bad(format!("`help` names `{k}`, which is not an option")));
        }
    }
    let mut positional = Vec::new();
    if let Some(v) = m.get("positional") {
        let a = v
            .clone()
            .try_cast::<Array>()
            .ok_or_else(|| bad("`positional` must be an array of names".into()))?;
        for p in a {
            let s = p.to_string();
            // `name?` is optional; the rest are required, and come first.
            let (name, optional) = match s.strip_suffix('?') {
                Some(n) => (n.to_string(), true),
                None => (s, false),
            };
            if positional.iter().any(|(_, o)| *o) && !optional {
                return Err(bad(format!(
                    "positional `{name}` is required but follows an optional one"
                )));
            }
            positional.push((name, optional));
        }
    }
    let rest = match m.get("rest") {
        None => false,
        Some(v) => v
            .as_bool()
            .map_err(|_| bad("`rest` must be true or false".into()))?,
    };
    Ok(Spec {
        usage: text("usage")?,
        about: text("about")?,
        options,
        positional,
        rest,
    })
}

fn help_text(script: &str, s: &Spec) -> String {
    let mut out = String::new();
    let usage = if s.usage.is_empty() {
        let mut u = format!("ralf-sh {script}");
        if !s.options.is_empty() {
            u.push_str(" [OPTIONS]");
        }
        for (p, opt) in &s.positional {
            u.push_str(&if *opt {
                format!(" [{}]", p.to_uppercase())
            } else {
                format!(" {}", p.to_uppercase())
            });
        }
        if s.rest {
            u.push_str(" [ARGS...]");
        }
        u
    } else {
        s.usage.clone()
    };
    out.push_str(&format!("usage: {usage}\n"));
    if !s.about.is_empty() {
        out.push_str(&format!("\n{}\n", s.about));
    }
    if !s.options.is_empty() {
        out.push_str("\noptions:\n");
        let rows: Vec<(String, String)> = s
            .options
            .iter()
            .map(|(k, d, ty, h)| {
                let (left, default) = match ty {
                    Ty::Bool if d.as_bool().unwrap_or(false) => (
                        format!("--[no-]{}", &flag(k)[2..]),
                        " (default on)".to_string(),
                    ),
                    Ty::Bool => (flag(k), String::new()),
                    Ty::Int | Ty::Float => (format!("{} N", flag(k)), format!(" (default {d})")),
                    Ty::List => {
                        let items: Vec<String> = d
                            .clone()
                            .into_array()
                            .unwrap_or_default()
                            .iter()
                            .map(|x| x.to_string())
                            .collect();
                        let def = if items.is_empty() {
                            String::new()
                        } else {
                            format!(" (default {})", items.join(","))
                        };
                        (format!("{} A,B", flag(k)), def)
                    }
                    Ty::OptStr => (format!("{} VALUE", flag(k)), String::new()),
                    Ty::Str => (format!("{} VALUE", flag(k)), format!(" (default {d})")),
                };
                (left, format!("{h}{default}"))
            })
            .collect();
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (l, r) in rows {
            out.push_str(&format!("  {l:<w$}  {}\n", r.trim()));
        }
        out.push_str(&format!("  {:<w$}  show this help\n", "--help"));
    }
    out
}

fn parse_args(argv: &[String], s: &Spec) -> Result<Option<Map>, Fail> {
    let mut out = Map::new();
    for (k, d, _, _) in &s.options {
        out.insert(k.as_str().into(), d.clone());
    }
    let mut given = Array::new();
    let mut pos = Vec::new();
    let mut seen_list: Vec<String> = Vec::new();
    let mut i = 0;
    let mut only_positional = false;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if only_positional || !a.starts_with("--") || a == "-" {
            if a.starts_with('-') && a.len() > 1 && !only_positional && a != "-" {
                if a == "-h" {
                    return Ok(None);
                }
                return Err(Fail::Usage(format!("unknown option `{a}`")));
            }
            pos.push(a.clone());
            continue;
        }
        if a == "--" {
            only_positional = true;
            continue;
        }
        if a == "--help" {
            return Ok(None);
        }
        let (name, inline) = match a[2..].split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a[2..].to_string(), None),
        };
        let key = name.replace('-', "_");
        let (opt_key, negated) = match s.options.iter().find(|o| o.0 == key) {
            Some(o) => (o, false),
            None => match key
                .strip_prefix("no_")
                .and_then(|k| s.options.iter().find(|o| o.0 == k && o.2 == Ty::Bool))
            {
                Some(o) => (o, true),
                None => {
                    let names: Vec<String> = s.options.iter().map(|o| flag(&o.0)).collect();
                    let hint = crate::text::did_you_mean(
                        &format!("--{name}"),
                        names.iter().map(String::as_str),
                    )
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                    return Err(Fail::Usage(format!("unknown option `--{name}`{hint}")));
                }
            },
        };
        let (k, _, ty, _) = opt_key;
        let value = |i: &mut usize| -> Result<String, Fail> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            match argv.get(*i) {
                Some(v) if !v.starts_with("--") => {
                    *i += 1;
                    Ok(v.clone())
                }
                _ => Err(Fail::Usage(format!("`{}` needs a value", flag(k)))),
            }
        };
        let v: Dynamic = match ty {
            Ty::Bool => {
                if inline.is_some() {
                    return Err(Fail::Usage(format!("`{}` takes no value", flag(k))));
                }
                (!negated).into()
            }
            Ty::Str | Ty::OptStr => value(&mut i)?.into(),
            Ty::Int => {
                let v = value(&mut i)?;
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| {
                        Fail::Usage(format!("`{}` needs a whole number, got `{v}`", flag(k)))
                    })?
                    .into()
            }
            Ty::Float => {
                let v = value(&mut i)?;
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| Fail::Usage(format!("`{}` needs a number, got `{v}`", flag(k))))?
                    .into()
            }
            Ty::List => {
                let v = value(&mut i)?;
                let mut items: Array = if seen_list.contains(k) {
                    out.get(k.as_str())
                        .cloned()
                        .and_then(|x| x.try_cast::<Array>())
                        .unwrap_or_default()
                } else {
                    Array::new()
                };
                seen_list.push(k.clone());
                items.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(|x| Dynamic::from(x.to_string())),
                );
                items.into()
            }
        };
        if !given.iter().any(|g| g.to_string() == *k) {
            given.push(k.clone().into());
        }
        out.insert(k.as_str().into(), v);
    }
    let required = s.positional.iter().filter(|p| !p.1).count();
    if pos.len() < required {
        let missing: Vec<String> = s.positional[pos.len()..required]
            .iter()
            .map(|p| p.0.to_uppercase())
            .collect();
        return Err(Fail::Usage(format!("missing {}", missing.join(" "))));
    }
    if pos.len() > s.positional.len() && !s.rest {
        return Err(Fail::Usage(format!(
            "unexpected argument `{}`",
            pos[s.positional.len()]
        )));
    }
    for (n, (name, _)) in s.positional.iter().enumerate() {
        out.insert(
            name.as_str().into(),
            pos.get(n)
                .map(|v| Dynamic::from(v.clone()))
                .unwrap_or(Dynamic::UNIT),
        );
    }
    if s.rest {
        let rest: Array = pos
            .iter()
            .skip(s.positional.len())
            .map(|v| Dynamic::from(v.clone()))
            .collect();
        out.insert("rest".into(), rest.into());
    }
    out.insert("given".into(), given.into());
    Ok(Some(out))
}

/// End the script with `code`, as `exit(code)` does.
fn exit_with(ctx: &NativeCallContext, code: i32) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from(crate::bindings::core::ExitRequest(code, Dynamic::UNIT)),
        ctx.call_position(),
    ))
}

fn parse_impl(ctx: &NativeCallContext, argv: Array, spec: Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let s = spec_of(&spec).at(ctx)?;
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let script = h
        .script
        .read()
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "SCRIPT".into());
    match parse_args(&argv, &s) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => {
            let text = help_text(&script, &s);
            h.progress.suspend(|| crate::out::write(&text));
            Err(exit_with(ctx, 0))
        }
        Err(Fail::Usage(msg)) => {
            let line = crate::redact::redact(&format!("error: {script}: {msg} (see --help)\n"));
            h.progress.suspend(|| eprint!("{line}"));
            Err(exit_with(ctx, crate::error::exit::USAGE))
        }
    }
}

#[export_module]
mod args_mod {
    use super::*;

    /// Parse the script's arguments by a spec: `#{ usage, about, options: #{ name: default },
    /// help: #{ name: "text" }, positional: ["name", "opt?"], rest }`. Each default gives the
    /// option's type: a string takes a value (`--env prod`, `--env=prod`), an integer or float a
    /// number, a bool is a flag (`--dag`; `--no-advisor` for a default of true), an array a
    /// comma-separated list (may repeat; the others: the last one counts), `()` an optional
    /// string. Returns a map of every option
    /// and positional by name, `rest` (with `rest: true`) and `given` (the options on the command
    /// line). `--help` prints the usage and ends the script with exit 0; a usage error prints one
    /// line and ends it with exit 2.
    ///
    /// ```rhai
    /// let o = args::parse(["--parallel", "8", "--only", "redis,traefik", "--no-advisor", "v1.2"], #{
    ///     options: #{ priority: "P2", parallel: 4, only: [], advisor: true },
    ///     positional: ["commit"],
    /// });
    /// assert(o.parallel == 8 && o.only == ["redis", "traefik"] && !o.advisor && o.commit == "v1.2");
    /// assert(o.priority == "P2" && o.given == ["parallel", "only", "advisor"]);
    /// ```
    #[rhai_fn(name = "parse", return_raw)]
    pub fn parse(ctx: NativeCallContext, argv: Array, spec: Map) -> RhaiResult<Map> {
        parse_impl(&ctx, argv, spec)
    }

    /// `args::parse(spec)`: the same on the script's own arguments ([`argv`]), so it works
    /// inside functions too.
    ///
    /// ```rhai
    /// let o = args::parse(#{ options: #{ verbose: false } });
    /// assert(o.verbose == false);
    /// ```
    #[rhai_fn(name = "parse", return_raw)]
    pub fn parse_own(ctx: NativeCallContext, spec: Map) -> RhaiResult<Map> {
        let h = host(&ctx)?;
        let argv = h.args.read().iter().cloned().map(Dynamic::from).collect();
        parse_impl(&ctx, argv, spec)
    }

    /// End the script with a usage error: one line on stderr (`error: SCRIPT: msg (see --help)`),
    /// exit code 2. For checks `args::parse` cannot express (ranges, combinations).
    ///
    /// ```rhai,no_run
    /// let o = args::parse(ARGS, #{ options: #{ parallel: 4 } });
    /// if o.parallel < 1 { args::usage_error("--parallel must be at least 1"); }
    /// ```
    #[rhai_fn(name = "usage_error", return_raw)]
    pub fn usage_error(ctx: NativeCallContext, msg: &str) -> RhaiResult<()> {
        let h = host(&ctx)?;
        let script = h
            .script
            .read()
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "SCRIPT".into());
        let line = crate::redact::redact(&format!("error: {script}: {msg} (see --help)\n"));
        h.progress.suspend(|| eprint!("{line}"));
        Err(exit_with(&ctx, crate::error::exit::USAGE))
    }

    /// The script's arguments (the same as `ARGS`), readable anywhere: functions cannot see the
    /// top-level `ARGS` variable.
    ///
    /// ```rhai
    /// fn first_arg() { let a = args::argv(); if a.len() > 0 { a[0] } else { () } }
    /// assert(type_of(args::argv()) == "array");
    /// ```
    #[rhai_fn(name = "argv", return_raw)]
    pub fn argv(ctx: NativeCallContext) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let a = h.args.read().clone();
        Ok(a.into_iter().map(Dynamic::from).collect())
    }
}
