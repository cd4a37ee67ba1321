//! Core globals: `env`, `secret`, `sleep`, `retry`, `parallel`, `confirm`, `json::`, `log::`, `time::`, `error::`.

use crate::bindings::host;
use crate::error::{ErrorKind, RalfError, RhaiResult};
use crate::script::decode;
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext};
use serde::Deserialize;
use std::time::Duration;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(globals).into());
    engine.register_static_module("json", exported_module!(json_mod).into());
    engine.register_static_module("log", exported_module!(log_mod).into());
    engine.register_static_module("time", exported_module!(time_mod).into());
    engine.register_static_module("error", exported_module!(error_mod).into());
}

/// Options of `retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryOpts {
    /// Total attempts, including the first (default 3).
    pub attempts: Option<i64>,
    /// Delay before the second attempt (default 1s).
    pub delay: Option<Secs>,
    /// Multiplier applied to the delay after each failure (default 2.0).
    pub backoff: Option<f64>,
    /// Ceiling of the delay (default 60s).
    pub max_delay: Option<Secs>,
    /// Random extra fraction of the delay, 0..1 (default 0).
    pub jitter: Option<f64>,
    /// Error kinds to retry; "any" retries everything, script throws included.
    /// Default: the retryable kinds (timeout, unavailable, locked).
    pub on: Option<Vec<String>>,
}

/// Raised (as an uncatchable termination) by `exit(code)` and `exit(code, value)`: the code, and
/// the value to print (shown like `-e` shows its value; JSON with `--output json`).
#[derive(Debug, Clone)]
pub(crate) struct ExitRequest(pub i32, pub Dynamic);

fn sleep_any(ctx: &NativeCallContext, seconds: Dynamic) -> RhaiResult<()> {
    use crate::bindings::AtCall;
    let h = host(ctx)?;
    let d = decode::duration_arg(&seconds, "sleep").at(ctx)?;
    crate::script::bridge::sleep(&h, d).at(ctx)
}

fn retry_impl(ctx: &NativeCallContext, opts: &Map, f: &FnPtr) -> RhaiResult<Dynamic> {
    let h = host(ctx)?;
    let o: RetryOpts = decode::decode(opts, "retry")?;
    let attempts = o.attempts.unwrap_or(3);
    if attempts < 1 {
        return Err(RalfError::invalid(format!(
            "retry: attempts must be at least 1, got {attempts}"
        ))
        .into());
    }
    let backoff = o.backoff.unwrap_or(2.0);
    if !backoff.is_finite() || backoff < 1.0 {
        return Err(
            RalfError::invalid(format!("retry: backoff must be >= 1.0, got {backoff}")).into(),
        );
    }
    let jitter = o.jitter.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&jitter) {
        return Err(RalfError::invalid(format!(
            "retry: jitter must be between 0 and 1, got {jitter}"
        ))
        .into());
    }
    let on: Option<Vec<String>> = o.on;
    if let Some(list) = &on {
        for k in list {
            if k != "any" && ErrorKind::parse(k).is_none() {
                let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
                let hint = crate::text::did_you_mean(k, names.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(RalfError::invalid(format!(
                    "retry: unknown error kind `{k}` in `on`{hint}"
                ))
                .into());
            }
        }
    }
    let mut delay = o.delay.map(|s| s.0).unwrap_or(Duration::from_secs(1));
    let max_delay = o.max_delay.map(|s| s.0).unwrap_or(Duration::from_secs(60));
    let mut attempt = 1;
    loop {
        match f.call_within_context::<Dynamic>(ctx, ()) {
            Ok(v) => return Ok(v),
            Err(e) => {
                let re = crate::error::from_rhai(&e);
                let ours = crate::error::is_ralf_error(&e);
                let retryable = if re.kind == ErrorKind::Cancelled {
                    false
                } else {
                    match &on {
                        Some(list) if list.iter().any(|k| k == "any") => true,
                        Some(list) => ours && list.iter().any(|k| k == re.kind.as_str()),
                        None => ours && re.kind.retryable(),
                    }
                };
                if !retryable || attempt >= attempts {
                    return Err(e);
                }
                let extra = if jitter > 0.0 {
                    delay.mul_f64(jitter * rand::random::<f64>())
                } else {
                    Duration::ZERO
                };
                let wait = (delay + extra).min(max_delay);
                tracing::warn!(
                    target: "ralf::retry",
                    "attempt {attempt}/{attempts} failed ({}); retrying in {}",
                    re,
                    crate::text::human_duration(wait)
                );
                crate::script::bridge::sleep(&h, wait)?;
                delay = delay.mul_f64(backoff).min(max_delay);
                attempt += 1;
            }
        }
    }
}

/// One worker's result as scripts see it: `#{ ok: true, value }` or `#{ ok: false, error }`.
pub(crate) fn outcome(r: RhaiResult<Dynamic>) -> Map {
    let mut m = Map::new();
    match r {
        Ok(v) => {
            m.insert("ok".into(), true.into());
            m.insert("value".into(), v);
        }
        Err(e) => {
            m.insert("ok".into(), false.into());
            m.insert("error".into(), crate::error::caught_value(&e));
        }
    }
    m
}

/// Start `n` worker threads (16 MiB stacks, for Rhai's recursion) in `s`, each running `work`.
/// A thread the system refuses is not fatal while at least one runs (the workers share the
/// items); none at all is an `unavailable` error, never a panic.
pub(crate) fn spawn_workers<'scope, F: Fn() + Sync>(
    s: &'scope std::thread::Scope<'scope, '_>,
    n: usize,
    what: &str,
    work: &'scope F,
) -> crate::error::RResult<usize> {
    let mut started = 0;
    for _ in 0..n {
        match std::thread::Builder::new()
            .stack_size(16 * 1024 * 1024)
            .spawn_scoped(s, work)
        {
            Ok(_) => started += 1,
            Err(e) if started == 0 => {
                return Err(RalfError::unavailable(format!(
                    "{what}: cannot start a worker thread: {e}"
                )))
            }
            Err(e) => {
                tracing::warn!(
                    "{what}: {started} of {n} worker threads started ({e}); going on with those"
                );
                break;
            }
        }
    }
    Ok(started)
}

fn parallel_impl(
    ctx: &NativeCallContext,
    items: Array,
    limit: i64,
    f: &FnPtr,
) -> RhaiResult<Array> {
    if limit < 1 {
        return Err(
            RalfError::invalid(format!("parallel: limit must be at least 1, got {limit}")).into(),
        );
    }
    let n = items.len();
    if n == 0 {
        return Ok(Array::new());
    }
    #[allow(deprecated)]
    let store = ctx.store_data();
    let engine = ctx.engine();
    let workers = (limit as usize).min(n);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<parking_lot::Mutex<Option<Dynamic>>> =
        (0..n).map(|_| parking_lot::Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if i >= n {
            break;
        }
        #[allow(deprecated)]
        let c = store.create_context(engine);
        let out = f.call_within_context::<Dynamic>(&c, (items[i].clone(),));
        *results[i].lock() = Some(outcome(out).into());
    };
    std::thread::scope(|s| spawn_workers(s, workers, "parallel", &work))?;
    let h = host(ctx)?;
    h.check_cancelled()?;
    Ok(results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or(Dynamic::UNIT))
        .collect())
}

#[export_module]
mod globals {
    use super::*;

    /// Read an environment variable; throws `not_found` when it is unset.
    ///
    /// ```rhai
    /// let home = env("HOME");
    /// assert(home.len() > 0);
    /// ```
    #[rhai_fn(name = "env", return_raw)]
    pub fn env1(name: &str) -> RhaiResult<String> {
        std::env::var(name).map_err(|_| {
            RalfError::not_found(format!("environment variable {name} is not set")).into()
        })
    }

    /// Read an environment variable, or `default` when it is unset.
    ///
    /// ```rhai
    /// let target = env("RALF_ENV_DOC_EXAMPLE_UNSET", "production");
    /// assert(target == "production");
    /// ```
    #[rhai_fn(name = "env")]
    pub fn env2(name: &str, default: Dynamic) -> Dynamic {
        match std::env::var(name) {
            Ok(v) => v.into(),
            Err(_) => default,
        }
    }

    /// Read a secret: `RALF_SECRET_<NAME>`, else the source named under `secrets:` in the config
    /// (an environment variable, or a file that must not be group/world readable).
    /// The value is registered with the redactor: it never appears in output, logs, errors or history.
    ///
    /// ```rhai,no_run
    /// let token = secret("semaphore_token");
    /// print(token);   // prints «redacted»
    /// ```
    #[rhai_fn(return_raw)]
    pub fn secret(ctx: NativeCallContext, name: &str) -> RhaiResult<String> {
        let h = host(&ctx)?;
        let var = crate::secrets::env_name(name);
        if let Some(v) = crate::secrets::read_env(&var, name)? {
            return Ok(v);
        }
        if let Some(src) = h.cfg().secrets.get(name) {
            if let Some(v) =
                crate::secrets::load_ref(src.env.as_deref(), src.file.as_deref(), name)?
            {
                return Ok(v);
            }
            return Err(RalfError::not_found(format!(
                "secret `{name}`: neither {var} nor the configured source ({}) is set",
                match (&src.env, &src.file) {
                    (Some(e), _) => format!("env {e}"),
                    (None, Some(f)) => format!("file {}", f.display()),
                    _ => "nothing".into(),
                }
            ))
            .into());
        }
        Err(RalfError::not_found(format!(
            "secret `{name}` is not set: export {var}, or name a source under `secrets: {name}:` in the config"
        ))
        .into())
    }

    /// Sleep for a number of seconds. Ctrl-C interrupts it (the run is then cancelled).
    ///
    /// ```rhai
    /// sleep(0);
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_int(ctx: NativeCallContext, seconds: i64) -> RhaiResult<()> {
        sleep_any(&ctx, Dynamic::from(seconds))
    }

    /// Sleep for a fractional number of seconds. Ctrl-C interrupts it.
    ///
    /// ```rhai
    /// sleep(0.01);
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_float(ctx: NativeCallContext, seconds: f64) -> RhaiResult<()> {
        sleep_any(&ctx, Dynamic::from(seconds))
    }

    /// Sleep for a duration given as text: "10ms", "1.5s", "2m". Ctrl-C interrupts it.
    ///
    /// ```rhai
    /// sleep("10ms");
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_str(ctx: NativeCallContext, duration: &str) -> RhaiResult<()> {
        sleep_any(&ctx, Dynamic::from(duration.to_string()))
    }

    /// End the script at once with this process exit code (0 success, 1 failed, 3 partial ...).
    /// Unlike an error, `exit` cannot be caught.
    ///
    /// ```rhai,no_run
    /// exit(3);
    /// ```
    #[rhai_fn(name = "exit", return_raw)]
    pub fn exit_code(ctx: NativeCallContext, code: i64) -> RhaiResult<()> {
        Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(ExitRequest(code.clamp(0, 255) as i32, Dynamic::UNIT)),
            ctx.call_position(),
        )))
    }

    /// End the script with `code` and print `value` as its result: readable text (tables for
    /// lists of maps), or one JSON document with `--output json` (for `jq` and other programs).
    ///
    /// ```rhai,no_run
    /// let report = #{ deployed: 3, failed: 0 };
    /// exit(0, report);
    /// ```
    #[rhai_fn(name = "exit", return_raw)]
    pub fn exit_value(ctx: NativeCallContext, code: i64, value: Dynamic) -> RhaiResult<()> {
        Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(ExitRequest(code.clamp(0, 255) as i32, value)),
            ctx.call_position(),
        )))
    }

    /// End the script at once with exit code 0.
    ///
    /// ```rhai,no_run
    /// exit();
    /// ```
    #[rhai_fn(name = "exit", return_raw)]
    pub fn exit0(ctx: NativeCallContext) -> RhaiResult<()> {
        exit_code(ctx, 0)
    }

    /// Anything else given to `sleep` is an `invalid` error.
    ///
    /// ```rhai
    /// try { sleep(#{}); } catch (e) { assert(e.kind == "invalid"); }
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_dyn(ctx: NativeCallContext, seconds: Dynamic) -> RhaiResult<()> {
        sleep_any(&ctx, seconds)
    }

    /// Call `f` until it succeeds, at most `attempts` times, sleeping `delay` seconds between attempts,
    /// multiplied by `backoff` each time up to `max_delay`, plus up to `jitter` × delay at random.
    /// Only errors whose kind is retryable (timeout, unavailable, locked) are retried, unless `on`
    /// lists kinds (or "any", which also retries a script's own `throw`). The last error is re-thrown.
    ///
    /// ```rhai
    /// let n = 0;
    /// let v = retry(#{ attempts: 3, delay: 0.01, on: ["any"] }, || {
    ///     n += 1;
    ///     if n < 3 { throw "not yet"; }
    ///     n
    /// });
    /// assert(v == 3);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn retry(ctx: NativeCallContext, opts: Map, f: FnPtr) -> RhaiResult<Dynamic> {
        retry_impl(&ctx, &opts, &f)
    }

    /// Run `f(item)` for every item on at most `limit` workers at once. Results come back in input
    /// order as `#{ ok: true, value }` or `#{ ok: false, error }`; one failure does not stop the others.
    ///
    /// ```rhai
    /// let rs = parallel([1, 2, 3], 2, |x| if x == 2 { throw "two" } else { x * 10 });
    /// assert(rs[0].value == 10);
    /// assert(!rs[1].ok);
    /// assert(rs[2].value == 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parallel(
        ctx: NativeCallContext,
        items: Array,
        limit: i64,
        f: FnPtr,
    ) -> RhaiResult<Array> {
        parallel_impl(&ctx, items, limit, &f)
    }

    /// Ask a yes/no question on the terminal. Without a terminal on stdin the answer is `false`,
    /// unless `--yes` was given (then `true` without asking).
    ///
    /// ```rhai,no_run
    /// if confirm("Deploy to production?") { print("going"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn confirm(ctx: NativeCallContext, question: &str) -> RhaiResult<bool> {
        let h = host(&ctx)?;
        if h.opts.yes {
            tracing::info!("{question} -> yes (--yes)");
            return Ok(true);
        }
        if !h.opts.interactive {
            tracing::warn!("{question} -> no (not interactive; pass --yes to accept)");
            return Ok(false);
        }
        let q = question.to_string();
        let answer = h.progress.suspend(|| {
            use std::io::{BufRead, Write};
            eprint!("{q} [y/N] ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            line
        });
        Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
    }

    /// Throw an `invalid` error unless `cond` is true.
    ///
    /// ```rhai
    /// assert(1 + 1 == 2);
    /// ```
    #[rhai_fn(name = "assert", return_raw)]
    pub fn assert1(ctx: NativeCallContext, cond: bool) -> RhaiResult<()> {
        if cond {
            Ok(())
        } else {
            Err(crate::bindings::at(
                &ctx,
                RalfError::invalid("assertion failed"),
            ))
        }
    }

    /// Throw an `invalid` error with `message` unless `cond` is true.
    ///
    /// ```rhai
    /// assert([1, 2].len() == 2, "two items");
    /// ```
    #[rhai_fn(name = "assert", return_raw)]
    pub fn assert2(ctx: NativeCallContext, cond: bool, message: &str) -> RhaiResult<()> {
        if cond {
            Ok(())
        } else {
            Err(crate::bindings::at(
                &ctx,
                RalfError::invalid(format!("assertion failed: {message}")),
            ))
        }
    }

    /// Throw an `invalid` error showing both values unless `left == right`.
    ///
    /// ```rhai
    /// assert_eq(json::parse("[1]"), [1]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn assert_eq(ctx: NativeCallContext, left: Dynamic, right: Dynamic) -> RhaiResult<()> {
        let same = if left.type_id() == right.type_id()
            || (left.is_int() || left.is_float()) && (right.is_int() || right.is_float())
        {
            ctx.call_native_fn::<bool>("==", (left.clone(), right.clone()))
                .unwrap_or(false)
        } else {
            false
        };
        if same {
            Ok(())
        } else {
            Err(crate::bindings::at(
                &ctx,
                RalfError::invalid(format!(
                    "assertion failed: left == right\n  left:  {left:?}\n  right: {right:?}"
                )),
            ))
        }
    }

    /// Type of an error value caught with `catch (e)`: its `kind` ("timeout", "not_found", ...) for
    /// errors raised by ralf-sh, or "" for a script's own `throw`.
    ///
    /// ```rhai
    /// try { throw "mine"; } catch (e) { assert(error_kind(e) == ""); }
    /// try { json::parse("{"); } catch (e) { assert(error_kind(e) == "invalid"); }
    /// ```
    pub fn error_kind(e: Dynamic) -> String {
        RalfError::from_dynamic(&e)
            .map(|r| r.kind.as_str().to_string())
            .unwrap_or_default()
    }
}

#[export_module]
mod json_mod {
    use super::*;

    /// Parse JSON text into Rhai values (objects become maps). Throws `invalid` with line and column.
    ///
    /// ```rhai
    /// let m = json::parse(`{"a": [1, 2], "b": null}`);
    /// assert(m.a[1] == 2);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse(ctx: NativeCallContext, text: &str) -> RhaiResult<Dynamic> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            crate::bindings::at(
                &ctx,
                RalfError::invalid(format!("json::parse: {e}"))
                    .with("line", e.line())
                    .with("column", e.column()),
            )
        })?;
        rhai::serde::to_dynamic(v)
    }

    /// Serialize a value as compact JSON.
    ///
    /// ```rhai
    /// assert(json::stringify(#{ a: 1 }) == `{"a":1}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stringify(v: Dynamic) -> RhaiResult<String> {
        let j: serde_json::Value = rhai::serde::from_dynamic(&v)?;
        Ok(j.to_string())
    }

    /// Serialize a value as indented JSON.
    ///
    /// ```rhai
    /// assert(json::pretty([1]) == "[\n  1\n]");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn pretty(v: Dynamic) -> RhaiResult<String> {
        let j: serde_json::Value = rhai::serde::from_dynamic(&v)?;
        serde_json::to_string_pretty(&j).map_err(|e| RalfError::internal(e.to_string()).into())
    }
}

/// A script's log line. Its fields are keys of the JSON line (`--log-format json`), and
/// `key=value` pairs after the message on a human line.
fn log_with(level: tracing::Level, msg: &str, fields: Option<&Map>) {
    let v: serde_json::Value = fields
        .map(|m| rhai::serde::from_dynamic(&Dynamic::from_map(m.clone())).unwrap_or_default())
        .unwrap_or_default();
    let (msg, f) = if crate::logging::is_json() {
        let f = if v.is_object() {
            v.to_string()
        } else {
            String::new()
        };
        (msg.to_string(), f)
    } else {
        let mut line = msg.to_string();
        for (k, x) in v.as_object().into_iter().flatten() {
            match x {
                serde_json::Value::String(s) => line.push_str(&format!(" {k}={s}")),
                other => line.push_str(&format!(" {k}={other}")),
            }
        }
        (line, String::new())
    };
    macro_rules! emit {
        ($lvl:ident) => {
            if f.is_empty() {
                tracing::$lvl!(target: "ralf::script", "{msg}")
            } else {
                tracing::$lvl!(target: "ralf::script", fields = f.as_str(), "{msg}")
            }
        };
    }
    match level {
        tracing::Level::ERROR => emit!(error),
        tracing::Level::WARN => emit!(warn),
        tracing::Level::DEBUG => emit!(debug),
        _ => emit!(info),
    }
}

#[export_module]
mod log_mod {
    use super::*;

    /// Log at info level (stderr; JSON lines with `--log-format json`).
    ///
    /// ```rhai
    /// log::info("starting");
    /// ```
    #[rhai_fn(name = "info")]
    pub fn info1(msg: &str) {
        log_with(tracing::Level::INFO, msg, None)
    }
    /// Log at info level with fields.
    ///
    /// ```rhai
    /// log::info("deployed", #{ service: "gitea", seconds: 12 });
    /// ```
    #[rhai_fn(name = "info")]
    pub fn info2(msg: &str, fields: Map) {
        log_with(tracing::Level::INFO, msg, Some(&fields))
    }
    /// Log a warning.
    ///
    /// ```rhai
    /// log::warn("disk almost full");
    /// ```
    #[rhai_fn(name = "warn")]
    pub fn warn1(msg: &str) {
        log_with(tracing::Level::WARN, msg, None)
    }
    /// Log a warning with fields.
    ///
    /// ```rhai
    /// log::warn("slow", #{ seconds: 30 });
    /// ```
    #[rhai_fn(name = "warn")]
    pub fn warn2(msg: &str, fields: Map) {
        log_with(tracing::Level::WARN, msg, Some(&fields))
    }
    /// Log an error.
    ///
    /// ```rhai
    /// log::error("smoke test failed");
    /// ```
    #[rhai_fn(name = "error")]
    pub fn error1(msg: &str) {
        log_with(tracing::Level::ERROR, msg, None)
    }
    /// Log an error with fields.
    ///
    /// ```rhai
    /// log::error("failed", #{ service: "n8n" });
    /// ```
    #[rhai_fn(name = "error")]
    pub fn error2(msg: &str, fields: Map) {
        log_with(tracing::Level::ERROR, msg, Some(&fields))
    }
    /// Log at debug level (shown with -v). (`debug` is a Rhai keyword, hence the name.)
    ///
    /// ```rhai
    /// log::verbose("details");
    /// ```
    #[rhai_fn(name = "verbose")]
    pub fn debug1(msg: &str) {
        log_with(tracing::Level::DEBUG, msg, None)
    }
}

#[export_module]
mod time_mod {
    use super::*;

    /// Current UTC time as RFC 3339 text.
    ///
    /// ```rhai
    /// let t = time::now();
    /// assert(t.ends_with("Z"));
    /// ```
    pub fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Seconds since the Unix epoch, as a float.
    ///
    /// ```rhai
    /// let a = time::unix();
    /// assert(a > 1.7e9);
    /// ```
    pub fn unix() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Monotonic seconds, for measuring durations (`time::mono() - start`).
    ///
    /// ```rhai
    /// let start = time::mono();
    /// assert(time::mono() >= start);
    /// ```
    pub fn mono() -> f64 {
        static START: once_cell::sync::Lazy<std::time::Instant> =
            once_cell::sync::Lazy::new(std::time::Instant::now);
        START.elapsed().as_secs_f64()
    }

    /// Parse a duration string ("90s", "10m", "1h30m", "500ms") into seconds.
    ///
    /// ```rhai
    /// assert(time::seconds("1m30s") == 90.0);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn seconds(text: &str) -> RhaiResult<f64> {
        crate::text::parse_duration(text)
            .map(|d| d.as_secs_f64())
            .map_err(|e| RalfError::invalid(format!("time::seconds: {e}")).into())
    }

    /// Format seconds for people: 0.25 -> "250ms", 125 -> "2m 5s".
    ///
    /// ```rhai
    /// assert(time::human(125.0) == "2m 5s");
    /// ```
    #[rhai_fn(name = "human")]
    pub fn human_f(secs: f64) -> String {
        crate::text::human_duration(Duration::from_secs_f64(secs.max(0.0)))
    }
    /// Format whole seconds for people.
    ///
    /// ```rhai
    /// assert(time::human(90) == "1m 30s");
    /// ```
    #[rhai_fn(name = "human")]
    pub fn human_i(secs: i64) -> String {
        crate::text::human_duration(Duration::from_secs(secs.max(0) as u64))
    }
}

#[export_module]
mod error_mod {
    use super::*;

    /// Build an error value with a kind, to `throw` from scripts so callers can branch on `e.kind`.
    ///
    /// ```rhai
    /// try { throw error::make("not_found", "no such service: foo"); }
    /// catch (e) { assert(e.kind == "not_found"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn make(kind: &str, message: &str) -> RhaiResult<Dynamic> {
        let k = ErrorKind::parse(kind).ok_or_else(|| {
            let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
            let hint = crate::text::did_you_mean(kind, names.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            RalfError::invalid(format!("error::make: unknown error kind `{kind}`{hint}"))
        })?;
        Ok(RalfError::new(k, message).to_dynamic())
    }

    /// One line for any caught value, the way uncaught errors read: `[kind] message` for errors
    /// raised by ralf-sh (or made with `error::make`), the text itself for a script's own `throw`.
    /// For logs and reports: `${e}` would show an error as a raw map.
    ///
    /// ```rhai
    /// try { json::parse("{"); } catch (e) { assert(error::text(e).starts_with("[invalid] ")); }
    /// try { throw "mine"; } catch (e) { assert(error::text(e) == "mine"); }
    /// ```
    pub fn text(e: Dynamic) -> String {
        match RalfError::from_dynamic(&e) {
            Some(r) => crate::redact::redact(&format!("[{}] {}", r.kind.as_str(), r.message)),
            None => crate::redact::redact(&e.to_string()),
        }
    }
}
