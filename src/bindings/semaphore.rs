//! `semaphore::` bindings: run a Semaphore UI task template and await a typed result.
//!
//! Thin layer over [`crate::clients::semaphore`]: options decoding, dry-run, journal (re-attach on resume),
//! spinner and log lines while waiting.

use crate::bindings::{host, AtCall};
use crate::clients::semaphore::{
    self as client, Auth, Client, ClientOptions, RunRequest, WaitEvent, WaitOptions,
};
use crate::config::IdOrName;
use crate::error::{ErrorKind, RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use crate::text::Secs;
use parking_lot::Mutex;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Semaphore>("Semaphore");
    engine.register_type_with_name::<SemTask>("Task");
    engine.register_static_module("semaphore", exported_module!(semaphore_mod).into());
}

/// A connected Semaphore project.
#[derive(Clone)]
pub(crate) struct Semaphore {
    pub(crate) client: Arc<Client>,
}

struct TaskState {
    task: client::Task,
    template: String,
    /// Created under --dry-run: nothing exists on the server.
    dry: bool,
    /// When `task` was last read from the server.
    fetched: std::time::Instant,
}

/// A Semaphore task. Clones share state: `t.wait()` updates every copy.
#[derive(Clone)]
pub(crate) struct SemTask {
    client: Arc<Client>,
    state: Arc<Mutex<TaskState>>,
}

impl SemTask {
    fn new(client: Arc<Client>, task: client::Task, template: String) -> SemTask {
        SemTask {
            client,
            state: Arc::new(Mutex::new(TaskState {
                task,
                template,
                dry: false,
                fetched: std::time::Instant::now(),
            })),
        }
    }
    fn id(&self) -> i64 {
        self.state.lock().task.id
    }
    fn dry(&self) -> bool {
        self.state.lock().dry
    }
    fn template_id(&self) -> i64 {
        self.state.lock().task.template_id
    }
    fn label(&self) -> String {
        let s = self.state.lock();
        format!("task {} ({})", s.task.id, s.template)
    }
    fn update(&self, t: client::Task) {
        let mut s = self.state.lock();
        s.task = t;
        s.fetched = std::time::Instant::now();
    }

    /// A handle shows the task as it is now: an unfinished task read more than a second ago is
    /// read again (briefly; on an error the last known status stays).
    fn live(&self, ctx: &NativeCallContext) {
        let stale = {
            let s = self.state.lock();
            !s.dry && !s.task.is_terminal() && s.fetched.elapsed() > Duration::from_secs(1)
        };
        if stale {
            if let Err(e) = refresh_impl(ctx, self) {
                tracing::debug!(target: "ralf::semaphore", "could not refresh {}: {e}", self.label());
            }
        }
    }
}

/// Template name or id from a script value.
fn template_ref(v: &Dynamic) -> RResult<IdOrName> {
    if let Ok(i) = v.as_int() {
        return Ok(IdOrName::Id(i));
    }
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        if s.trim().is_empty() {
            return Err(RalfError::invalid(
                "semaphore: template name must not be empty",
            ));
        }
        return Ok(IdOrName::Name(s.to_string()));
    }
    Err(RalfError::invalid(format!(
        "semaphore: a template is named by its name (string) or id (integer), got {}",
        v.type_name()
    )))
}

fn to_dyn(v: &Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectOpts {
    /// Server root.
    url: Option<String>,
    /// Project id or name.
    project: Option<IdOrName>,
    /// API token (prefer `secret("...")`).
    token: Option<String>,
    /// Login user (cookie auth).
    user: Option<String>,
    password: Option<String>,
    /// Per-request timeout.
    timeout: Option<Secs>,
    /// Turn TLS verification off.
    insecure: Option<bool>,
    /// Use /api/ws while waiting (default true).
    websocket: Option<bool>,
}

fn connect_impl(h: &Arc<Host>, o: ConnectOpts) -> RResult<Arc<Client>> {
    let cfg = h.cfg().semaphore.clone();
    let explicit_creds = o.token.is_some() || o.user.is_some();
    let mut opts = match (&cfg, explicit_creds) {
        (Some(c), false) => {
            let mut c = c.clone();
            if let Some(u) = &o.url {
                c.url = u.clone();
            }
            ClientOptions::from_config(&c)?
        }
        _ => {
            let url = o.url.clone().or_else(|| cfg.as_ref().map(|c| c.url.clone())).ok_or_else(|| {
                RalfError::config("semaphore::connect: no url: set `semaphore.url` in the config or pass #{ url: ... }")
            })?;
            let auth = if let Some(t) = &o.token {
                crate::redact::register(t);
                Auth::Token(t.clone())
            } else if o.user.is_none() {
                return Err(RalfError::config(
                    "semaphore::connect: no credentials: pass #{ token: secret(\"...\") } or #{ user, password }, \
                     or set semaphore.token_env / token_file (or user + password_env) in the config",
                ));
            } else {
                let user = o.user.clone().unwrap_or_default();
                let password = o.password.clone().ok_or_else(|| {
                    RalfError::invalid("semaphore::connect: `user` needs a `password` (e.g. password: secret(\"...\"))")
                })?;
                crate::redact::register(&password);
                Auth::Login { user, password }
            };
            ClientOptions {
                url,
                project: cfg.as_ref().and_then(|c| c.project.clone()),
                auth,
                timeout: cfg
                    .as_ref()
                    .and_then(|c| c.timeout)
                    .map(|s| s.0)
                    .unwrap_or(Duration::from_secs(30)),
                ca_file: cfg.as_ref().and_then(|c| c.ca_file.clone()),
                insecure: cfg.as_ref().map(|c| c.insecure).unwrap_or(false),
                websocket: true,
                max_output: cfg
                    .as_ref()
                    .and_then(|c| c.max_output)
                    .unwrap_or(crate::clients::semaphore::DEFAULT_MAX_OUTPUT),
            }
        }
    };
    if let Some(p) = o.project {
        opts.project = Some(p);
    }
    if let Some(t) = o.timeout {
        opts.timeout = t.0;
    }
    if let Some(i) = o.insecure {
        opts.insecure = i;
    }
    if let Some(w) = o.websocket {
        opts.websocket = w;
    }
    block_on(
        h,
        "semaphore::connect",
        Some(opts.timeout * 4 + Duration::from_secs(5)),
        Client::connect(opts),
    )
}

/// Per-host cache of the client built from the config alone.
#[derive(Clone, Default)]
struct DefaultClient(Arc<Mutex<Option<Arc<Client>>>>);

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum StrOrList {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl StrOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrList::None => vec![],
            StrOrList::One(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            StrOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunOpts {
    env: Option<serde_json::Map<String, Value>>,
    message: Option<String>,
    #[serde(default)]
    limit: StrOrList,
    #[serde(default)]
    tags: StrOrList,
    #[serde(default)]
    skip_tags: StrOrList,
    dry_run: Option<bool>,
    debug: Option<bool>,
    diff: Option<bool>,
    branch: Option<String>,
    arguments: Option<Vec<String>>,
    inventory: Option<IdOrName>,
    /// Run even when the template would drop some options (a warning lists them).
    ignore_dropped: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitOpts {
    /// Deadline (default 30m).
    timeout: Option<Secs>,
    /// Ceiling of the polling interval when the websocket is not used (default 5s).
    max_poll: Option<Secs>,
    /// Also stop at this status: "waiting_confirmation" (a plan waiting for approval). (`until` is
    /// a Rhai keyword: it works only quoted, `#{ "until": .. }`.)
    #[serde(alias = "until")]
    stop_at: Option<String>,
}

/// Statuses a wait may stop at besides the final ones.
const UNTIL: &[&str] = &["starting", "running", "waiting_confirmation"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopOpts {
    force: Option<bool>,
}

fn run_impl(
    ctx: &NativeCallContext,
    sem: &Semaphore,
    template: &Dynamic,
    opts: &Map,
) -> RResult<SemTask> {
    let h = host(ctx)?;
    let o: RunOpts = decode(opts, "semaphore::run")?;
    let tref = template_ref(template)?;
    let c = sem.client.clone();
    let tpl = block_on(&h, "semaphore::run", Some(CALL_TIMEOUT), async {
        c.template(&tref).await
    })?;
    let inventory_id = match &o.inventory {
        None => None,
        Some(r) => {
            let c3 = c.clone();
            let r = r.clone();
            Some(block_on(
                &h,
                "semaphore::run",
                Some(CALL_TIMEOUT),
                async move { c3.resource_id("inventory", &r).await },
            )?)
        }
    };
    let req = RunRequest {
        env: o.env,
        message: o.message,
        limit: o.limit.into_vec(),
        tags: o.tags.into_vec(),
        skip_tags: o.skip_tags.into_vec(),
        dry_run: o.dry_run.unwrap_or(false),
        debug: o.debug.unwrap_or(false),
        diff: o.diff.unwrap_or(false),
        branch: o.branch,
        arguments: o.arguments.unwrap_or_default(),
        inventory_id,
    };
    let (c5, tpl5, ignore) = (c.clone(), tpl.clone(), o.ignore_dropped.unwrap_or(false));
    let (req, _warnings) = block_on(&h, "semaphore::run", Some(CALL_TIMEOUT), async move {
        c5.prepare_run(&tpl5, &req, ignore).await
    })?;
    let body = c.run_body(tpl.id, &req);
    if h.dry_run(
        "semaphore",
        format!(
            "run template `{}` (id {}) in project {}: {}",
            tpl.name, tpl.id, c.project_id, body
        ),
    ) {
        let fake = client::Task {
            id: 0,
            template_id: tpl.id,
            status: "dry_run".into(),
            raw: serde_json::json!({"id": 0, "template_id": tpl.id, "status": "dry_run"}),
        };
        let t = SemTask::new(c, fake, tpl.name);
        t.state.lock().dry = true;
        return Ok(t);
    }
    if let Some(t) = interrupted_task(&h, &c, &tpl, &req) {
        tracing::info!(target: "ralf::semaphore", task_id = t.id, template = tpl.name.as_str(), status = t.status.as_str(),
            "re-attaching to task {} of `{}` ({}), started by the interrupted attempt", t.id, tpl.name, t.status);
        h.record_step_detail("semaphore_task_id", serde_json::json!(t.id));
        return Ok(SemTask::new(c, t, tpl.name));
    }
    let c4 = c.clone();
    let tpl2 = tpl.clone();
    let baseline = block_on(&h, "semaphore::run", Some(CALL_TIMEOUT), async {
        c.baseline().await
    })?;
    h.record_step_detail("semaphore_baseline", serde_json::json!(baseline));
    let task = block_on(&h, "semaphore::run", Some(CALL_TIMEOUT), async move {
        c4.run_after(&tpl2, &req, baseline).await
    })?;
    tracing::info!(target: "ralf::semaphore", task_id = task.id, template = tpl.name.as_str(), "started task {} of `{}`", task.id, tpl.name);
    h.record_step_detail("semaphore_task_id", serde_json::json!(task.id));
    Ok(SemTask::new(c, task, tpl.name))
}

/// In a resumed run, the task the interrupted attempt of this step started, when it is still
/// running or has succeeded since (a failed one is retried with a new task). The attempt recorded
/// the task id, or, when it was killed between the request and its answer, only the baseline (the
/// newest task id before the request): then the task is found by template, env and message.
fn interrupted_task(
    h: &Host,
    c: &Arc<client::Client>,
    tpl: &client::Template,
    req: &RunRequest,
) -> Option<client::Task> {
    let j = h.journal()?;
    let detail = |k: &str| j.previous_step_detail(k).and_then(|v| v.as_i64());
    let (prev, base) = (detail("semaphore_task_id"), detail("semaphore_baseline"));
    if prev.is_none() && base.is_none() {
        return None;
    }
    let (c, tpl2, req) = (c.clone(), tpl.clone(), req.clone());
    let found = block_on(h, "semaphore::run", Some(CALL_TIMEOUT), async move {
        match (prev, base) {
            (Some(id), _) => c.task(id).await.map(Some),
            (None, Some(base)) => c.find_started(&tpl2, &req, base).await,
            (None, None) => Ok(None),
        }
    });
    match found {
        Ok(Some(t)) if t.template_id == tpl.id && (!t.is_terminal() || t.status == "success") => {
            Some(t)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(target: "ralf::semaphore", "no task of the interrupted attempt to take over: {e}");
            None
        }
    }
}

fn wait_impl(ctx: &NativeCallContext, t: &SemTask, opts: &Map) -> RResult<SemTask> {
    let h = host(ctx)?;
    let o: WaitOpts = decode(opts, "task.wait")?;
    if t.dry() {
        return Ok(t.clone());
    }
    let timeout = o
        .timeout
        .map(|s| s.0)
        .unwrap_or(Duration::from_secs(30 * 60));
    let mut wo = WaitOptions {
        timeout,
        follow_output: h.progress.enabled()
            || tracing::enabled!(target: "ralf::semaphore", tracing::Level::DEBUG),
        ..Default::default()
    };
    if let Some(m) = o.max_poll {
        wo.poll_max = m.0.max(wo.poll_min);
    }
    if let Some(u) = &o.stop_at {
        if !UNTIL.contains(&u.as_str()) {
            return Err(RalfError::invalid(format!(
                "task.wait: stop_at must be one of {}, got `{u}`",
                UNTIL.join(", ")
            )));
        }
        wo.until = Some(u.clone());
    }
    let (id, template) = {
        let s = t.state.lock();
        (s.task.id, s.template.clone())
    };
    let t0 = std::time::Instant::now();
    let spinner = h.progress.spinner(format!("{template} #{id}: waiting"));
    let c = t.client.clone();
    let label = format!("{template} #{id}");
    let mut status = String::new();
    let mut on = move |ev: WaitEvent| match ev {
        WaitEvent::Status(s) => {
            tracing::debug!(target: "ralf::semaphore", "[{label}] status {s}");
            spinner.set_message(format!("{label}: {s}"));
            status = s;
        }
        WaitEvent::Line(l) => {
            tracing::debug!(target: "ralf::semaphore", "[{label}] {l}");
            let short: String = l.chars().take(100).collect();
            spinner.set_message(format!("{label}: {status} | {short}"));
        }
    };
    let fin = block_on(
        &h,
        &format!("waiting for {}", t.label()),
        Some(timeout + Duration::from_secs(10)),
        async move { c.wait(id, &wo, &mut on).await },
    )
    .inspect_err(|e| {
        if matches!(e.kind, ErrorKind::Cancelled | ErrorKind::Timeout) {
            // Ctrl-C or a deadline stops the waiting, not the task: say where it runs and how to stop it.
            tracing::warn!(target: "ralf::semaphore", task_id = id, template = template.as_str(),
                "task {id} of `{template}` is still running on Semaphore ({}); stop it with \
                 `ralf-sh -e 'semaphore::connect().task({id}).stop()'`, or let `ralf-sh resume` wait for it",
                t.client.task_url(t.template_id(), id));
        }
    })?;
    tracing::info!(target: "ralf::semaphore", task_id = id, template = template.as_str(), status = fin.status.as_str(),
        duration = t0.elapsed().as_secs_f64(), "task {id} of `{template}` {}: {}",
        if fin.is_terminal() { "finished" } else { "is waiting" }, fin.status);
    if fin.is_terminal() {
        // For /metrics: how long the task ran on the server, and how long this run waited.
        let at = |k: &str| {
            fin.raw
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        };
        let task_s = match (at("start"), at("end")) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        h.record_event(
            "semaphore_task",
            serde_json::json!({ "task_id": id, "template": template, "status": fin.status,
                "waited_s": t0.elapsed().as_secs_f64(), "task_s": task_s }),
        );
    }
    t.update(fin);
    Ok(t.clone())
}

fn refresh_impl(ctx: &NativeCallContext, t: &SemTask) -> RResult<SemTask> {
    if t.dry() {
        return Ok(t.clone());
    }
    let h = host(ctx)?;
    let c = t.client.clone();
    let id = t.id();
    let nt = block_on(&h, "task.refresh", Some(CALL_TIMEOUT), async move {
        c.task(id).await
    })?;
    t.update(nt);
    Ok(t.clone())
}

fn wait_ok_impl(ctx: &NativeCallContext, t: &SemTask, opts: &Map) -> RResult<SemTask> {
    let t = wait_impl(ctx, t, opts)?;
    let until: Option<String> = opts
        .get("stop_at")
        .or_else(|| opts.get("until"))
        .and_then(|u| u.clone().into_string().ok());
    let (ok, id, status, template, tid) = {
        let s = t.state.lock();
        (
            s.dry || s.task.status == "success" || until.as_deref() == Some(s.task.status.as_str()),
            s.task.id,
            s.task.status.clone(),
            s.template.clone(),
            s.task.template_id,
        )
    };
    if ok {
        return Ok(t);
    }
    let lines = output_lines(ctx, &t).unwrap_or_default();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Err(RalfError::command_failed(format!(
        "{template}: Semaphore task {id} ended {status} ({})\n{tail}",
        t.client.task_url(tid, id)
    ))
    .with("task_id", id)
    .with("status", status)
    .with("template", template))
}

fn output_lines(ctx: &NativeCallContext, t: &SemTask) -> RResult<Vec<String>> {
    if t.dry() {
        return Ok(vec![]);
    }
    let h = host(ctx)?;
    let c = t.client.clone();
    let id = t.id();
    let lines = block_on(&h, "task.output", Some(CALL_TIMEOUT), async move {
        c.output(id).await
    })?;
    Ok(lines.into_iter().map(|l| l.output).collect())
}

fn change_impl(
    ctx: &NativeCallContext,
    t: &SemTask,
    action: &str,
    force: bool,
) -> RResult<SemTask> {
    let h = host(ctx)?;
    let what = match action {
        "stop" if force => format!("force-stop {}", t.label()),
        _ => format!("{action} {}", t.label()),
    };
    if t.dry() || h.dry_run("semaphore", what) {
        return Ok(t.clone());
    }
    let c = t.client.clone();
    let id = t.id();
    let action2 = action.to_string();
    let outcome = block_on(
        &h,
        &format!("task.{action}"),
        Some(CALL_TIMEOUT),
        async move {
            match action2.as_str() {
                "stop" => c.stop(id, force).await,
                "confirm" => c
                    .confirm(id, true)
                    .await
                    .map(|_| client::StopOutcome::Requested),
                _ => c
                    .confirm(id, false)
                    .await
                    .map(|_| client::StopOutcome::Requested),
            }
        },
    )?;
    if let client::StopOutcome::AlreadyFinished(status) = outcome {
        tracing::info!(target: "ralf::semaphore", "{} had already finished ({status}): nothing stopped, its status is kept", t.label());
    }
    refresh_impl(ctx, t)
}

fn template_map(t: &client::Template) -> Dynamic {
    to_dyn(&t.raw)
}

fn ensure_impl(ctx: &NativeCallContext, sem: &Semaphore, spec: &Map) -> RResult<Dynamic> {
    let h = host(ctx)?;
    let v: Value = rhai::serde::from_dynamic(&Dynamic::from_map(spec.clone())).map_err(|e| {
        RalfError::invalid(format!("semaphore::ensure_template: not plain data: {e}"))
    })?;
    let Value::Object(m) = v else {
        return Err(RalfError::invalid(
            "semaphore::ensure_template: expects a map",
        ));
    };
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.trim().is_empty() {
        return Err(RalfError::invalid(
            "semaphore::ensure_template: `name` (a non-empty string) is required",
        ));
    }
    let c = sem.client.clone();
    if h.opts.dry_run {
        let c2 = c.clone();
        let n2 = name.clone();
        let existing = block_on(
            &h,
            "semaphore::ensure_template",
            Some(CALL_TIMEOUT),
            async move {
                match c2.template(&IdOrName::Name(n2)).await {
                    Ok(t) => Ok(Some(t)),
                    Err(e) if e.kind == crate::error::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            },
        )?;
        let verb = if existing.is_some() {
            "create or update"
        } else {
            "create"
        };
        h.dry_run(
            "semaphore",
            format!("{verb} template `{name}` in project {}", c.project_id),
        );
        let mut out = existing.map(|t| t.raw).unwrap_or(Value::Object(m));
        out["change"] = Value::String("dry_run".into());
        return Ok(to_dyn(&out));
    }
    let (t, change) = block_on(
        &h,
        "semaphore::ensure_template",
        Some(CALL_TIMEOUT),
        async move { c.ensure_template(&m).await },
    )?;
    if change != "unchanged" {
        tracing::info!(target: "ralf::semaphore", "template `{}` {change} (id {})", t.name, t.id);
    }
    let mut out = t.raw.clone();
    out["change"] = Value::String(change.into());
    Ok(to_dyn(&out))
}

#[export_module]
mod semaphore_mod {
    use super::*;

    /// Connect to Semaphore with the `semaphore:` section of the config (url, project, token or login).
    /// Reads `/api/info` and resolves the project. The connection is cached for the run.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// print(sem);          // Semaphore(http://..., project 1 "RALF", v2.19.8-...)
    /// assert(sem.project_id > 0);
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect0(ctx: NativeCallContext) -> RhaiResult<Semaphore> {
        let h = host(&ctx)?;
        let cache = h.extension(DefaultClient::default);
        if let Some(c) = cache.0.lock().clone() {
            return Ok(Semaphore { client: c });
        }
        let c = connect_impl(&h, ConnectOpts::default()).at(&ctx)?;
        *cache.0.lock() = Some(c.clone());
        Ok(Semaphore { client: c })
    }

    /// Connect with options overriding the config: `url`, `project` (id or name), `token`, `user` +
    /// `password` (login with a session cookie), `timeout` (per request), `insecure`, `websocket` (use
    /// `/api/ws` while waiting, default true). Credentials should come from `secret(...)`.
    ///
    /// ```rhai
    /// let sem = semaphore::connect(#{ project: 1, timeout: "20s" });
    /// assert(sem.project_id == 1);
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect1(ctx: NativeCallContext, opts: Map) -> RhaiResult<Semaphore> {
        let h = host(&ctx)?;
        let o: ConnectOpts = decode(&opts, "semaphore::connect").at(&ctx)?;
        let c = connect_impl(&h, o).at(&ctx)?;
        Ok(Semaphore { client: c })
    }

    /// Server root URL.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// assert(sem.url.starts_with("http"));
    /// ```
    #[rhai_fn(global, get = "url", pure)]
    pub fn sem_url(sem: &mut Semaphore) -> String {
        sem.client.root().to_string()
    }

    /// Id of the project this handle works in.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// print(sem.project_id);
    /// ```
    #[rhai_fn(global, get = "project_id", pure)]
    pub fn sem_project_id(sem: &mut Semaphore) -> i64 {
        sem.client.project_id
    }

    /// Server version from `/api/info`.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// print(`Semaphore ${sem.version}`);
    /// ```
    #[rhai_fn(global, get = "version", pure)]
    pub fn sem_version(sem: &mut Semaphore) -> String {
        sem.client.version.clone()
    }

    /// All task templates of the project, as maps (`id`, `name`, `playbook`, `app`, `last_task`, ...).
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// for t in sem.templates() { print(`${t.id}: ${t.name}`); }
    /// ```
    #[rhai_fn(global, name = "templates", return_raw)]
    pub fn templates(ctx: NativeCallContext, sem: &mut Semaphore) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let c = sem.client.clone();
        let list = block_on(&h, "sem.templates", Some(CALL_TIMEOUT), async move {
            c.templates().await
        })
        .at(&ctx)?;
        Ok(list.iter().map(template_map).collect())
    }

    /// One template by name or id; `not_found` (with a did-you-mean) when it does not exist.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// let t = sem.template("RALF Vault Apply");
    /// assert(sem.template(t.id).name == "RALF Vault Apply");
    /// ```
    #[rhai_fn(global, name = "template", return_raw)]
    pub fn template(
        ctx: NativeCallContext,
        sem: &mut Semaphore,
        name_or_id: Dynamic,
    ) -> RhaiResult<Dynamic> {
        let h = host(&ctx)?;
        let r = template_ref(&name_or_id).at(&ctx)?;
        let c = sem.client.clone();
        let t = block_on(&h, "sem.template", Some(CALL_TIMEOUT), async move {
            c.template(&r).await
        })
        .at(&ctx)?;
        Ok(template_map(&t))
    }

    /// Start a task of a template (name or id) with default options. Returns a `Task` at once; call
    /// `.wait()` for the result. Under `--dry-run` nothing is started and the task's status is `dry_run`.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// let t = sem.run("RALF Vault Smoke");
    /// t.wait(#{ timeout: "2m" });
    /// print(`${t.id}: ${t.status}`);
    /// ```
    #[rhai_fn(global, name = "run", return_raw)]
    pub fn run1(
        ctx: NativeCallContext,
        sem: &mut Semaphore,
        template: Dynamic,
    ) -> RhaiResult<SemTask> {
        run_impl(&ctx, sem, &template, &Map::new()).at(&ctx)
    }

    /// Start a task with options: `env` (map of extra variables, sent JSON-encoded), `message`, `limit`
    /// (hosts, string or array), `tags`, `skip_tags`, `dry_run` (ansible --check), `debug`, `diff`,
    /// `branch`, `arguments` (array of CLI arguments), `inventory` (id or name), `ignore_dropped`.
    ///
    /// Semaphore silently drops overrides the template does not allow (after v2.10: `limit`, `tags`,
    /// `skip_tags`, `debug`, `inventory` need `task_params.allow_override_limit` / `_tags` /
    /// `_skip_tags` / `allow_debug` / `allow_override_inventory`, `branch` needs
    /// `allow_override_branch_in_task`; `arguments` need `allow_override_args_in_task` everywhere;
    /// v2.10 has no tags). Such an option is an `invalid` error naming the flag to turn on; with
    /// `ignore_dropped: true` the task runs without it and a warning lists what was dropped.
    /// The task id is recorded in the run journal; a resumed run re-attaches to a task still running
    /// instead of starting another. A lost answer never starts a second task.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// let t = sem.run("RALF Vault Apply", #{
    ///     env: #{ SERVICE_NAME: "vaultwarden", APP_VERSION: "1.32" },
    ///     message: "doc example", limit: ["vault"], tags: ["deploy"], diff: true,
    /// });
    /// t.wait(#{ timeout: "5m" });
    /// if !t.ok { print(t.tail(20)); }
    /// // "RALF Vault Smoke" does not allow a limit: run it knowingly without.
    /// sem.run("RALF Vault Smoke", #{ limit: ["vault"], ignore_dropped: true }).wait();
    /// ```
    #[rhai_fn(global, name = "run", return_raw)]
    pub fn run2(
        ctx: NativeCallContext,
        sem: &mut Semaphore,
        template: Dynamic,
        opts: Map,
    ) -> RhaiResult<SemTask> {
        run_impl(&ctx, sem, &template, &opts).at(&ctx)
    }

    /// A task by id (`not_found` when the project has no such task).
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// let id = sem.run("RALF Vault Smoke").id;
    /// let t = sem.task(id);
    /// assert(t.id == id);
    /// ```
    #[rhai_fn(global, name = "task", return_raw)]
    pub fn task(ctx: NativeCallContext, sem: &mut Semaphore, id: i64) -> RhaiResult<SemTask> {
        let h = host(&ctx)?;
        let c = sem.client.clone();
        let (t, name) = block_on(&h, "sem.task", Some(CALL_TIMEOUT), async move {
            let t = c.task(id).await?;
            let name = c
                .template(&IdOrName::Id(t.template_id))
                .await
                .map(|x| x.name)
                .unwrap_or_else(|_| format!("template {}", t.template_id));
            Ok((t, name))
        })
        .at(&ctx)?;
        Ok(SemTask::new(sem.client.clone(), t, name))
    }

    /// Tasks of a template that are not finished yet (waiting, starting, running, waiting_confirmation,
    /// stopping, ...), newest first.
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// let busy = sem.active("RALF Vault Apply");
    /// print(`${busy.len()} task(s) still running`);
    /// ```
    #[rhai_fn(global, name = "active", return_raw)]
    pub fn active(
        ctx: NativeCallContext,
        sem: &mut Semaphore,
        template: Dynamic,
    ) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let r = template_ref(&template).at(&ctx)?;
        let c = sem.client.clone();
        let (tpl, list) = block_on(&h, "sem.active", Some(CALL_TIMEOUT), async move {
            let tpl = c.template(&r).await?;
            let list = c.active(tpl.id).await?;
            Ok((tpl, list))
        })
        .at(&ctx)?;
        Ok(list
            .into_iter()
            .map(|t| Dynamic::from(SemTask::new(sem.client.clone(), t, tpl.name.clone())))
            .collect())
    }

    /// Create the template if no template has this `name`, else update it (full replace, merged with its
    /// current fields). Keys are the API's (`name`, `playbook`, `app`, `description`, `git_branch`,
    /// `allow_override_args_in_task`, `allow_override_branch_in_task`, `allow_parallel_tasks`,
    /// `allow_any_vars_in_task`, `survey_vars`, ...) plus `inventory`, `repository`, `environment`
    /// (id or name; default: the project's first), `arguments` (array) and `task_params` (a map of
    /// override flags, merged into the current one: `allow_override_limit`, `allow_override_tags`,
    /// `allow_override_skip_tags`, `allow_override_inventory`, `allow_debug`). Only the given fields
    /// are compared (absent and empty alike): an unchanged template is not written.
    /// Returns the template with `change`: "created", "updated" or "unchanged".
    ///
    /// ```rhai
    /// let sem = semaphore::connect();
    /// let spec = #{ name: "RALF Docs Example", playbook: "playbooks/example.yml",
    ///               task_params: #{ allow_override_limit: true } };
    /// let t = sem.ensure_template(spec);
    /// print(`${t.name}: ${t.change}`);
    /// assert(sem.ensure_template(spec).change == "unchanged");
    /// ```
    #[rhai_fn(global, name = "ensure_template", return_raw)]
    pub fn ensure_template(
        ctx: NativeCallContext,
        sem: &mut Semaphore,
        spec: Map,
    ) -> RhaiResult<Dynamic> {
        ensure_impl(&ctx, sem, &spec).at(&ctx)
    }

    /// `Semaphore(url, project, version)`.
    ///
    /// ```rhai
    /// print(semaphore::connect().to_string());
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn sem_to_string(sem: &mut Semaphore) -> String {
        format!(
            "Semaphore({}, project {} \"{}\", v{})",
            sem.client.root(),
            sem.client.project_id,
            sem.client.project_name,
            sem.client.version.trim_start_matches('v')
        )
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// debug(semaphore::connect());
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn sem_to_debug(sem: &mut Semaphore) -> String {
        sem_to_string(sem)
    }

    // ---------------------------------------------------------------- Task

    /// Task id (0 for a task "started" under `--dry-run`).
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// print(t.id);
    /// ```
    #[rhai_fn(global, get = "id", pure)]
    pub fn task_id(t: &mut SemTask) -> i64 {
        t.id()
    }

    /// Last known status: waiting, starting, running, waiting_confirmation, confirmed, rejected, stopping,
    /// stopped, success, error (or dry_run). Updated by `wait()` and `refresh()`.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// print(t.refresh().status);
    /// ```
    #[rhai_fn(global, get = "status", pure)]
    pub fn task_status(ctx: NativeCallContext, t: &mut SemTask) -> String {
        t.live(&ctx);
        t.state.lock().task.status.clone()
    }

    /// True when the task ended in `success` (or is a dry-run task).
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke").wait();
    /// if t.ok { print("smoke test passed"); }
    /// ```
    #[rhai_fn(global, get = "ok", pure)]
    pub fn task_ok(ctx: NativeCallContext, t: &mut SemTask) -> bool {
        t.live(&ctx);
        let s = t.state.lock();
        s.dry || s.task.status == "success"
    }

    /// True once the task is success, error or stopped.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// t.wait();
    /// assert(t.done);
    /// ```
    #[rhai_fn(global, get = "done", pure)]
    pub fn task_done(ctx: NativeCallContext, t: &mut SemTask) -> bool {
        t.live(&ctx);
        let s = t.state.lock();
        s.dry || s.task.is_terminal()
    }

    /// Web UI address of the task.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// print(t.url);
    /// ```
    #[rhai_fn(global, get = "url", pure)]
    pub fn task_url(t: &mut SemTask) -> String {
        let s = t.state.lock();
        t.client.task_url(s.task.template_id, s.task.id)
    }

    /// Name of the task's template.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// assert(t.template == "RALF Vault Smoke");
    /// ```
    #[rhai_fn(global, get = "template", pure)]
    pub fn task_template(t: &mut SemTask) -> String {
        t.state.lock().template.clone()
    }

    /// Id of the task's template.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// print(t.template_id);
    /// ```
    #[rhai_fn(global, get = "template_id", pure)]
    pub fn task_template_id(t: &mut SemTask) -> i64 {
        t.state.lock().task.template_id
    }

    /// The task as a map of the server's fields (`created`, `start`, `end`, `message`, `environment`, ...).
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke", #{ message: "hello" });
    /// assert(t.info().message == "hello");
    /// ```
    #[rhai_fn(global, name = "info", pure)]
    pub fn task_info(t: &mut SemTask) -> Dynamic {
        to_dyn(&t.state.lock().task.raw)
    }

    /// Fetch the task again; returns the task.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke");
    /// print(t.refresh().status);
    /// ```
    #[rhai_fn(global, name = "refresh", return_raw)]
    pub fn refresh(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<SemTask> {
        refresh_impl(&ctx, t).at(&ctx)
    }

    /// Wait until the task is finished (success, error or stopped), at most 30 minutes. Returns the task;
    /// a failed task is not an error (check `t.ok`). Log lines go to the debug log; on a terminal a
    /// spinner shows the status and the latest line.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke").wait();
    /// print(t.status);
    /// ```
    #[rhai_fn(global, name = "wait", return_raw)]
    pub fn wait0(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<SemTask> {
        wait_impl(&ctx, t, &Map::new()).at(&ctx)
    }

    /// Wait with options: `timeout` (deadline, e.g. "30m"; a `timeout` error leaves the task running),
    /// `max_poll` (ceiling of the polling interval when the websocket is not available), `until`
    /// `stop_at` (also stop at this status: "waiting_confirmation" for a plan that waits for
    /// approval, "running", "starting"; `wait_ok` then counts it as ok; `"until"` works as a quoted key).
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Apply");
    /// try {
    ///     t.wait(#{ timeout: "10m" });
    /// } catch (e) {
    ///     if e.kind == "timeout" { t.stop(); }
    /// }
    /// let plan = semaphore::connect().run("Lab Confirm").wait(#{ stop_at: "waiting_confirmation" });
    /// assert(plan.status == "waiting_confirmation");
    /// plan.reject();
    /// ```
    #[rhai_fn(global, name = "wait", return_raw)]
    pub fn wait1(ctx: NativeCallContext, t: &mut SemTask, opts: Map) -> RhaiResult<SemTask> {
        wait_impl(&ctx, t, &opts).at(&ctx)
    }

    /// Wait (as `wait`) and throw `command_failed` unless the task succeeded: the message names the
    /// template, task, status and URL, with the last 20 output lines; `details` has `task_id`,
    /// `status` and `template`.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke").wait_ok();
    /// assert(t.ok);
    /// ```
    #[rhai_fn(global, name = "wait_ok", return_raw)]
    pub fn wait_ok0(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<SemTask> {
        wait_ok_impl(&ctx, t, &Map::new()).at(&ctx)
    }

    /// `wait_ok` with the options of `wait` (`timeout`, `max_poll`).
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke").wait_ok(#{ timeout: "10m" });
    /// ```
    #[rhai_fn(global, name = "wait_ok", return_raw)]
    pub fn wait_ok1(ctx: NativeCallContext, t: &mut SemTask, opts: Map) -> RhaiResult<SemTask> {
        wait_ok_impl(&ctx, t, &opts).at(&ctx)
    }

    /// Every output line of the task, oldest first (an array of strings).
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke").wait();
    /// for line in t.output() { print(line); }
    /// ```
    #[rhai_fn(global, name = "output", return_raw)]
    pub fn output(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<Array> {
        let lines = output_lines(&ctx, t).at(&ctx)?;
        Ok(lines.into_iter().map(Dynamic::from).collect())
    }

    /// The last `n` output lines as one string (lines joined with newlines), e.g. for a report or an
    /// LLM prompt.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Smoke").wait();
    /// print(t.tail(5));
    /// ```
    #[rhai_fn(global, name = "tail", return_raw)]
    pub fn tail(ctx: NativeCallContext, t: &mut SemTask, n: i64) -> RhaiResult<String> {
        if n < 0 {
            return Err(
                RalfError::invalid(format!("task.tail: n must not be negative, got {n}")).into(),
            );
        }
        let lines = output_lines(&ctx, t).at(&ctx)?;
        let start = lines.len().saturating_sub(n as usize);
        Ok(lines[start..].join("\n"))
    }

    /// Stop the task gracefully (`stopping`, then `stopped`). Returns the task. A task that has
    /// already finished is left as it is (the server would overwrite its `success`/`error` with
    /// `stopped`); the log says so and `status` keeps the final status.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Apply");
    /// t.stop();
    /// t.wait(#{ timeout: "1m" });
    /// print(t.status);
    /// ```
    #[rhai_fn(global, name = "stop", return_raw)]
    pub fn stop0(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<SemTask> {
        change_impl(&ctx, t, "stop", false).at(&ctx)
    }

    /// Stop with options: `force: true` kills the task at once.
    ///
    /// ```rhai
    /// let t = semaphore::connect().run("RALF Vault Apply");
    /// t.stop(#{ force: true });
    /// assert(t.wait().status == "stopped");
    /// ```
    #[rhai_fn(global, name = "stop", return_raw)]
    pub fn stop1(ctx: NativeCallContext, t: &mut SemTask, opts: Map) -> RhaiResult<SemTask> {
        let o: StopOpts = decode(&opts, "task.stop").at(&ctx)?;
        change_impl(&ctx, t, "stop", o.force.unwrap_or(false)).at(&ctx)
    }

    /// Confirm a task in `waiting_confirmation` (e.g. a Terraform/OpenTofu plan); `conflict` otherwise.
    /// The status is checked first: the server itself would accept a confirm on a running task and
    /// then apply the plan without waiting for it to be seen.
    ///
    /// ```rhai,no_run
    /// let t = semaphore::connect().run("RALF Infra Plan");
    /// while t.refresh().status != "waiting_confirmation" { sleep(0.2); }
    /// t.confirm();
    /// ```
    #[rhai_fn(global, name = "confirm", return_raw)]
    pub fn confirm(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<SemTask> {
        change_impl(&ctx, t, "confirm", false).at(&ctx)
    }

    /// Reject a task in `waiting_confirmation`; it then ends in `error`. `conflict` in any other
    /// status; `invalid` ("not supported by this server version") on Semaphore v2.10, which has no
    /// reject route (stop the task instead).
    ///
    /// ```rhai,no_run
    /// let t = semaphore::connect().run("RALF Infra Plan");
    /// while t.refresh().status != "waiting_confirmation" { sleep(0.2); }
    /// t.reject();
    /// ```
    #[rhai_fn(global, name = "reject", return_raw)]
    pub fn reject(ctx: NativeCallContext, t: &mut SemTask) -> RhaiResult<SemTask> {
        change_impl(&ctx, t, "reject", false).at(&ctx)
    }

    /// `Task #12 RALF Vault Apply: success`.
    ///
    /// ```rhai
    /// print(semaphore::connect().run("RALF Vault Smoke"));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn task_to_string(ctx: NativeCallContext, t: &mut SemTask) -> String {
        t.live(&ctx);
        let s = t.state.lock();
        format!("Task #{} {}: {}", s.task.id, s.template, s.task.status)
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// debug(semaphore::connect().run("RALF Vault Smoke"));
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn task_to_debug(ctx: NativeCallContext, t: &mut SemTask) -> String {
        task_to_string(ctx, t)
    }
}
