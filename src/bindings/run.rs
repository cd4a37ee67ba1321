//! `run::`: the run's id, its journal steps (skipped with their recorded result on resume), the run lock.

use crate::bindings::{host, AtCall};
use crate::error::{RalfError, RhaiResult};
use crate::script::decode::{self, json_to_dynamic, to_json};
use rhai::plugin::*;
use rhai::{Dynamic, Engine, FnPtr, Map, NativeCallContext};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("run", exported_module!(run_mod).into());
}

fn step_impl(
    ctx: &NativeCallContext,
    name: &str,
    service: Option<String>,
    f: &FnPtr,
) -> RhaiResult<Dynamic> {
    run_step(ctx, name, service, || {
        f.call_within_context::<Dynamic>(ctx, ())
    })
}

/// `run::step` for a binding: `body` runs as the journal step `name` (skipped with its recorded
/// result when this run finished it already; its details readable by a resumed attempt).
pub(crate) fn run_step(
    ctx: &NativeCallContext,
    name: &str,
    service: Option<String>,
    body: impl FnOnce() -> RhaiResult<Dynamic>,
) -> RhaiResult<Dynamic> {
    let h = host(ctx)?;
    if name.trim().is_empty() {
        return Err(RalfError::invalid("run::step: step name is empty").into());
    }
    if h.opts.dry_run {
        // A dry run changes nothing, so its steps are not recorded as done (a later real run or
        // resume must not skip them).
        tracing::info!(target: "ralf::run", "dry run: step `{name}` (not recorded)");
        return body();
    }
    let rc = crate::session::run_ctx(&h).at(ctx)?;
    if let Some(done) = rc.store.step_done(&rc.run_id, name).at(ctx)? {
        tracing::info!(
            target: "ralf::run",
            "step `{name}` already done in run {} (at {}); skipping",
            rc.run_id,
            done.ended_at.as_deref().unwrap_or("?")
        );
        return Ok(done
            .result
            .as_ref()
            .map(json_to_dynamic)
            .unwrap_or(Dynamic::UNIT));
    }
    let id = rc
        .store
        .step_start(&rc.run_id, name, service.as_deref())
        .at(ctx)?;
    rc.journal.push_step(id, name);
    // JSON log lines inside the step carry `step` and `service` as keys.
    let span = if crate::logging::is_json() {
        let s = tracing::info_span!("step", step = name, service = tracing::field::Empty);
        if let Some(sv) = &service {
            s.record("service", sv.as_str());
        }
        s
    } else {
        tracing::Span::none()
    };
    let t0 = std::time::Instant::now();
    let r = span.in_scope(|| {
        let r = body();
        tracing::debug!(target: "ralf::run", step = name, status = if r.is_ok() { "done" } else { "failed" },
            duration = t0.elapsed().as_secs_f64(), "step `{name}` ended");
        r
    });
    rc.journal.pop_step(id);
    match r {
        Ok(v) => {
            let result = match rhai::serde::from_dynamic::<serde_json::Value>(&v) {
                Ok(j) => crate::host::redact_json(j),
                Err(_) => {
                    let _ = rc.store.step_add_detail(
                        id,
                        "result_not_stored",
                        &serde_json::json!(v.type_name()),
                    );
                    serde_json::Value::Null
                }
            };
            rc.store.step_end(id, "done", Some(&result), None).at(ctx)?;
            Ok(v)
        }
        Err(e) => {
            let re = crate::error::from_rhai(&e);
            let status = if re.kind == crate::error::ErrorKind::Cancelled || h.cancel.is_cancelled()
            {
                "interrupted"
            } else {
                "failed"
            };
            let msg = crate::redact::redact(&re.message);
            if let Err(we) = rc.store.step_end(id, status, None, Some(&msg)) {
                tracing::warn!(target: "ralf::run", "could not record the end of step `{name}`: {we}");
            }
            Err(e)
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepOpts {
    /// Service the step belongs to (shown by `ralf-sh history --service`).
    service: Option<String>,
}

#[export_module]
mod run_mod {
    use super::*;

    /// This run's id (the same across `ralf-sh resume`).
    ///
    /// ```rhai
    /// print(run::id());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn id(ctx: NativeCallContext) -> RhaiResult<String> {
        Ok(host(&ctx)?.run_id.clone())
    }

    /// Whether this run is a `--dry-run`: calls that change something are recorded, not made.
    ///
    /// ```rhai
    /// if run::dry_run() { print("only showing the plan"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn dry_run(ctx: NativeCallContext) -> RhaiResult<bool> {
        Ok(host(&ctx)?.opts.dry_run)
    }

    /// Run `f` as a recorded step of this run. Its start is committed before `f` runs and its end
    /// right after, so a killed run leaves a consistent record. In a resumed run (`ralf-sh resume`)
    /// a step already done is skipped and its recorded result (plain data) returned; a step that
    /// failed or was interrupted runs again. Step names must be unique within a run.
    /// Under `--dry-run` the closure runs but the step is not recorded.
    ///
    /// ```rhai
    /// let n = run::step("count services", || catalog::load().len());
    /// print(n);
    /// ```
    #[rhai_fn(name = "step", return_raw)]
    pub fn step2(ctx: NativeCallContext, name: &str, f: FnPtr) -> RhaiResult<Dynamic> {
        step_impl(&ctx, name, None, &f)
    }

    /// `run::step(name, #{ service: "vaultwarden" }, f)`: a step that belongs to a service
    /// (listed by `ralf-sh history --service`).
    ///
    /// ```rhai
    /// run::step("deploy minio (doc)", #{ service: "minio" }, || { 42 });
    /// ```
    #[rhai_fn(name = "step", return_raw)]
    pub fn step3(ctx: NativeCallContext, name: &str, opts: Map, f: FnPtr) -> RhaiResult<Dynamic> {
        let o: StepOpts = decode::decode(&opts, "run::step").at(&ctx)?;
        step_impl(&ctx, name, o.service, &f)
    }

    /// Attach a detail to the current step (e.g. a Semaphore task id), so a resumed run can find it
    /// with `run::previous_detail`.
    ///
    /// ```rhai
    /// run::step("detail demo", || { run::detail("task_id", 17); });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn detail(ctx: NativeCallContext, key: &str, value: Dynamic) -> RhaiResult<()> {
        let h = host(&ctx)?;
        let v: serde_json::Value = rhai::serde::from_dynamic(&value).map_err(|e| {
            RalfError::invalid(format!("run::detail: value is not plain data: {e}"))
        })?;
        crate::session::run_ctx(&h).at(&ctx)?;
        h.record_step_detail(key, v);
        Ok(())
    }

    /// A detail recorded for the current step by an earlier, interrupted or failed attempt of the
    /// same run, or `()`.
    ///
    /// ```rhai
    /// run::step("reattach demo", || {
    ///     let old = run::previous_detail("task_id");
    ///     if old != () { print(`re-attaching to task ${old}`); }
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn previous_detail(ctx: NativeCallContext, key: &str) -> RhaiResult<Dynamic> {
        let h = host(&ctx)?;
        crate::session::run_ctx(&h).at(&ctx)?;
        Ok(h.journal()
            .and_then(|j| j.previous_step_detail(key))
            .map(|v| json_to_dynamic(&v))
            .unwrap_or(Dynamic::UNIT))
    }

    /// Take the run lock, held until the run ends. When another run holds it this throws `locked`
    /// naming the holder (pid, host, run id, since), and an uncaught error exits with code 75.
    /// A lock left by a dead process on this host is taken over with a warning.
    ///
    /// ```rhai
    /// let me = run::lock();
    /// print(`holding the run lock as run ${me.run_id}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn lock(ctx: NativeCallContext) -> RhaiResult<Map> {
        let h = host(&ctx)?;
        let rc = crate::session::run_ctx(&h).at(&ctx)?;
        let holder = rc.lock(&h).at(&ctx)?;
        Ok(to_json(&holder).try_cast::<Map>().unwrap_or_default())
    }
}
