//! The dashboard, server-rendered by `serve` from the same state store as every run: the runs
//! (refreshed live, so a run started by cron shows up within a second), a run with its plan graph
//! (SVG, coloured by step status), its steps and its log streamed over server-sent events (a
//! reconnect resumes after `Last-Event-ID`, no line lost or doubled), a service's history, and
//! resume / re-run / stop. Templates are minijinja, the little JavaScript is ours (no build step).
//!
//! Access: with `serve.token_env` set (required off loopback) every page asks for the token once
//! (a `SameSite=Strict` cookie holds its hash); every POST carries the page's CSRF token and, when
//! the browser sends one, an `Origin` of this host.

pub mod graph;

use super::{same_secret as same, Served};
use crate::state::{RunRecord, Store};
use axum::extract::{Form, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::context;
use serde_json::json;
use sha2::Digest;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// What the pages need besides the store.
pub struct Dash {
    env: minijinja::Environment<'static>,
    csrf: String,
    /// service -> the services it depends on (the catalog, read when serve started).
    deps: HashMap<String, Vec<String>>,
    /// `on: manual` triggers: a button each.
    manual: Vec<super::runner::Launch>,
}

impl Dash {
    pub fn new(deps: HashMap<String, Vec<String>>, manual: Vec<super::runner::Launch>) -> Dash {
        let mut env = minijinja::Environment::new();
        for (name, text) in [
            ("base.html", include_str!("assets/base.html")),
            ("runs.html", include_str!("assets/runs.html")),
            ("run.html", include_str!("assets/run.html")),
            ("service.html", include_str!("assets/service.html")),
            ("login.html", include_str!("assets/login.html")),
        ] {
            env.add_template(name, text)
                .expect("the dashboard's templates parse");
        }
        let csrf = hex::encode(rand::random::<[u8; 24]>());
        Dash {
            env,
            csrf,
            deps,
            manual,
        }
    }
}

pub fn routes() -> Router<Arc<Served>> {
    Router::new()
        .route("/", get(runs_page))
        .route("/api/runs", get(runs_json))
        .route("/api/runs/{id}", get(run_json))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/graph.svg", get(graph_svg))
        .route("/runs/{id}/log", get(log_stream))
        .route("/runs/{id}/{action}", post(run_action))
        .route("/services/{name}", get(service_page))
        .route("/api/gates", get(gates_json))
        .route("/gates/{id}/{answer}", post(gate_answer))
        .route("/triggers/{name}/run", post(start_manual))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript", include_str!("assets/app.js")) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css", include_str!("assets/app.css")) }),
        )
}

pub fn login_routes() -> Router<Arc<Served>> {
    Router::new().route("/login", get(login_page).post(login))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn session_value(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(
        format!("ralf-sh dashboard {token}").as_bytes(),
    ))
}

/// Pages need the token when one is configured (a bearer header or the session cookie).
pub async fn require_login(State(s): State<Arc<Served>>, req: Request, next: Next) -> Response {
    let Some(tok) = &s.token else {
        return next.run(req).await;
    };
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| same(v, tok));
    let want = session_value(tok);
    let cookie = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("ralf_session="))
        .any(|v| same(v, &want));
    if bearer || cookie {
        return next.run(req).await;
    }
    Redirect::to("/login").into_response()
}

fn render(s: &Served, name: &str, ctx: minijinja::Value) -> Response {
    match s.dash.env.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => {
            let mut r = Html(html).into_response();
            r.headers_mut().insert(
                "content-security-policy",
                header::HeaderValue::from_static(
                    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
                ),
            );
            r
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template {name}: {e}"),
        )
            .into_response(),
    }
}

async fn blocking<T: Send + 'static>(
    s: &Arc<Served>,
    f: impl FnOnce(&Store) -> crate::error::RResult<T> + Send + 'static,
) -> Result<T, Response> {
    let st = s.store.clone();
    match tokio::task::spawn_blocking(move || f(&st)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state store: {}\n", crate::redact::redact(&e.message)),
        )
            .into_response()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
    }
}

fn duration(r: &RunRecord) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let (Some(a), b) = (parse(&r.started_at), r.ended_at.as_deref().and_then(parse)) else {
        return String::new();
    };
    let end = b.unwrap_or_else(|| chrono::Utc::now().fixed_offset());
    let secs = (end - a).num_milliseconds() as f64 / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        format!("{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    }
}

fn run_view(r: &RunRecord) -> serde_json::Value {
    let script_name = std::path::Path::new(&r.script)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| r.script.clone());
    json!({
        "id": r.id, "status": r.status, "script": r.script, "script_name": script_name,
        "args": r.args.join(" "), "user": r.user, "host": r.host, "pid": r.pid,
        "started_at": r.started_at, "ended_at": r.ended_at, "duration": duration(r),
        "exit_code": r.exit_code, "attempts": r.attempts,
    })
}

async fn runs_page(State(s): State<Arc<Served>>) -> Response {
    let (runs, gates) = match blocking(&s, |st| Ok((st.runs(100)?, pending_gates(st)?))).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let runs: Vec<serde_json::Value> = runs.iter().map(run_view).collect();
    let manual: Vec<serde_json::Value> = s
        .dash
        .manual
        .iter()
        .map(|l| {
            let (running, pending) = s.runner.state(&l.trigger);
            json!({ "name": l.trigger, "script": l.script.display().to_string(), "args": l.args.join(" "),
                    "running": running, "pending": pending })
        })
        .collect();
    render(
        &s,
        "runs.html",
        context! { page => "runs", runs, gates, manual, csrf => s.dash.csrf.clone(), store => s.store.location.clone() },
    )
}

/// Start an `on: manual` trigger's run (coalesced like a webhook: one running, one waiting).
async fn start_manual(
    State(s): State<Arc<Served>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&s, &headers, &form) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let Some(l) = s.dash.manual.iter().find(|l| l.trigger == name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no manual trigger `{name}`\n"),
        )
            .into_response();
    };
    let taken = s.runner.submit(l.clone());
    tracing::info!(target: "ralf::serve", "dashboard: trigger {name}: run {} {}", taken.run_id(), taken.state());
    Redirect::to("/").into_response()
}

/// Gates waiting for an answer that the dashboard may give (their step detail lists it among the
/// places asked). The nonce stays on the server.
fn pending_gates(st: &Store) -> crate::error::RResult<Vec<serde_json::Value>> {
    Ok(st
        .running_steps_with("gate")?
        .into_iter()
        .filter_map(|step| {
            let g = step.details.get("gate")?;
            let sent = g.get("sent")?.as_array()?;
            if !sent.iter().any(|x| x["via"] == "dashboard") {
                return None;
            }
            let q = g.get("question")?;
            let deadline = g.get("deadline").and_then(|d| d.as_i64()).unwrap_or(0);
            Some(json!({
                "id": q.get("id")?.as_str()?,
                "question": q.get("text").and_then(|t| t.as_str()).unwrap_or(""),
                "details": q.get("details").and_then(|t| t.as_str()).unwrap_or(""),
                "plan": q.get("plan").and_then(|t| t.as_str()).unwrap_or(""),
                "run_id": step.run_id,
                "step": step.key,
                "asked_via": sent.iter().filter_map(|x| x["via"].as_str()).collect::<Vec<_>>().join(", "),
                "until": chrono::DateTime::from_timestamp(deadline, 0)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            }))
        })
        .collect())
}

async fn gates_json(State(s): State<Arc<Served>>) -> Response {
    match blocking(&s, pending_gates).await {
        Ok(g) => Json(g).into_response(),
        Err(e) => e,
    }
}

/// Approve or deny a pending gate: the answer goes into the store, where the waiting run reads it
/// (as the identity `dashboard`, which must be among the gate's approvers).
async fn gate_answer(
    State(s): State<Arc<Served>>,
    Path((id, answer)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&s, &headers, &form) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let approve = match answer.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return (StatusCode::NOT_FOUND, format!("unknown answer {other}\n")).into_response()
        }
    };
    let id2 = id.clone();
    let nonce = blocking(&s, move |st| {
        Ok(st.running_steps_with("gate")?.into_iter().find_map(|step| {
            let g = step.details.get("gate")?;
            let q = g.get("question")?;
            let asked_here = g
                .get("sent")?
                .as_array()?
                .iter()
                .any(|x| x["via"] == "dashboard");
            if asked_here && q.get("id")?.as_str()? == id2 {
                q.get("nonce").and_then(|n| n.as_str()).map(str::to_string)
            } else {
                None
            }
        }))
    })
    .await;
    let nonce = match nonce {
        Ok(Some(n)) => n,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!("no gate {id} is waiting for the dashboard\n"),
            )
                .into_response()
        }
        Err(e) => return e,
    };
    let a = crate::state::GateAnswer {
        id: 0,
        gate: id.clone(),
        nonce,
        approve,
        by: "operator".into(),
    };
    if let Err(e) = blocking(&s, move |st| st.add_gate_answer(&a)).await {
        return e;
    }
    tracing::info!(target: "ralf::serve", "dashboard: gate {id} {}", if approve { "approved" } else { "denied" });
    Redirect::to("/").into_response()
}

async fn runs_json(State(s): State<Arc<Served>>) -> Response {
    match blocking(&s, |st| st.runs(100)).await {
        Ok(r) => Json(r.iter().map(run_view).collect::<Vec<_>>()).into_response(),
        Err(e) => e,
    }
}

/// A run with its steps (the run page refreshes its status, steps and buttons from it).
async fn run_json(State(s): State<Arc<Served>>, Path(id): Path<String>) -> Response {
    match blocking(&s, move |st| Ok((st.run(&id)?, st.steps(&id)?))).await {
        Ok((Some(r), steps)) => {
            let mut v = run_view(&r);
            v["steps"] = json!(steps);
            v["resumable"] = json!(matches!(
                r.status.as_str(),
                "interrupted" | "cancelled" | "failed"
            ));
            v["stoppable"] =
                json!(r.status == "running" && r.host == crate::state::lock::hostname());
            Json(v).into_response()
        }
        Ok((None, _)) => (StatusCode::NOT_FOUND, "no such run\n").into_response(),
        Err(e) => e,
    }
}

async fn run_page(State(s): State<Arc<Served>>, Path(id): Path<String>) -> Response {
    let id2 = id.clone();
    let (run, steps) = match blocking(&s, move |st| Ok((st.run(&id2)?, st.steps(&id2)?))).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(run) = run else {
        return (
            StatusCode::NOT_FOUND,
            Html(format!("no run {}", graph_escape(&id))),
        )
            .into_response();
    };
    let graph = graph::svg(&steps, &s.dash.deps);
    let resumable = matches!(run.status.as_str(), "interrupted" | "cancelled" | "failed");
    let stoppable = run.status == "running" && run.host == crate::state::lock::hostname();
    render(
        &s,
        "run.html",
        context! {
            page => "run", run_id => run.id.clone(), run => run_view(&run), steps => steps,
            graph => graph, csrf => s.dash.csrf.clone(), resumable, stoppable,
            store => s.store.location.clone(),
        },
    )
}

fn graph_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn graph_svg(State(s): State<Arc<Served>>, Path(id): Path<String>) -> Response {
    match blocking(&s, move |st| st.steps(&id)).await {
        Ok(steps) => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            graph::svg(&steps, &s.dash.deps),
        )
            .into_response(),
        Err(e) => e,
    }
}

async fn service_page(State(s): State<Arc<Served>>, Path(name): Path<String>) -> Response {
    let n = name.clone();
    let (status, history) = match blocking(&s, move |st| {
        Ok((st.service_status(&n)?, st.service_history(&n, 100)?))
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let status = status.map(|r| r.status).unwrap_or_else(|| "pending".into());
    render(
        &s,
        "service.html",
        context! { page => "service", name, status, history, store => s.store.location.clone() },
    )
}

/// One journal event as a log line.
fn line(e: &crate::state::EventRecord) -> String {
    let at = e.at.get(11..23).unwrap_or(&e.at);
    match e.kind.as_str() {
        "log" => format!(
            "{at} {:>5} {}",
            e.data["level"].as_str().unwrap_or(""),
            e.data["message"].as_str().unwrap_or("")
        ),
        k => format!("{at} [{k}] {}", e.data),
    }
}

/// The run's log: journal events as `line` events, each with its id, so the browser's automatic
/// reconnect (`Last-Event-ID`) resumes without a gap; `end` once the run is over.
async fn log_stream(
    State(s): State<Arc<Served>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let last: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let state = (s.clone(), id, last, false);
    let stream = futures_util::stream::unfold(state, |(s, id, last, done)| async move {
        if done {
            return None;
        }
        let mut idle = 0u32;
        loop {
            let id2 = id.clone();
            let batch = blocking(&s, move |st| {
                Ok((st.events_after(&id2, last, 200)?, st.run(&id2)?))
            })
            .await;
            let Ok((events, run)) = batch else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            if let Some(e) = events.last() {
                let next = e.id;
                let out: Vec<Result<Event, Infallible>> = events
                    .iter()
                    .map(|e| {
                        Ok(Event::default()
                            .event("line")
                            .id(e.id.to_string())
                            .data(line(e)))
                    })
                    .collect();
                return Some((futures_util::stream::iter(out), (s, id, next, false)));
            }
            let over = run.as_ref().is_none_or(|r| r.status != "running");
            if over && idle > 0 {
                let status = run.map(|r| r.status).unwrap_or_else(|| "unknown".into());
                let end = vec![Ok(Event::default().event("end").data(status))];
                return Some((futures_util::stream::iter(end), (s, id, last, true)));
            }
            idle += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    use futures_util::StreamExt;
    Sse::new(stream.flatten())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// POSTs need the page's CSRF token and, when sent, an Origin naming this host.
fn csrf_ok(s: &Served, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let token = form.get("csrf").is_some_and(|t| same(t, &s.dash.csrf));
    let origin_ok = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(o), Some(h)) => {
            let o = o.to_str().unwrap_or("");
            let h = h.to_str().unwrap_or("-");
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| rest == h)
        }
        _ => true,
    };
    token && origin_ok
}

async fn run_action(
    State(s): State<Arc<Served>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&s, &headers, &form) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let id2 = id.clone();
    let run = match blocking(&s, move |st| st.run(&id2)).await {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such run\n").into_response(),
        Err(e) => return e,
    };
    match action.as_str() {
        "resume" => {
            if !matches!(run.status.as_str(), "interrupted" | "cancelled" | "failed") {
                return (
                    StatusCode::CONFLICT,
                    format!("run {id} is {}: nothing to resume\n", run.status),
                )
                    .into_response();
            }
            s.runner
                .spawn_cli("dashboard", &["resume".into(), id.clone()]);
            Redirect::to(&format!("/runs/{id}")).into_response()
        }
        "rerun" => {
            let new_id = crate::host::new_run_id();
            let mut args = vec!["--run-id".to_string(), new_id.clone(), run.script.clone()];
            args.extend(run.args.iter().cloned());
            s.runner.spawn_cli("dashboard", &args);
            Redirect::to("/").into_response()
        }
        "stop" => {
            if run.status != "running" || run.host != crate::state::lock::hostname() {
                return (
                    StatusCode::CONFLICT,
                    format!(
                        "run {id} is not running on this machine ({} on {})\n",
                        run.status, run.host
                    ),
                )
                    .into_response();
            }
            if run.pid > 0 && run.pid <= i32::MAX as i64 {
                unsafe { libc::kill(run.pid as libc::pid_t, libc::SIGTERM) };
                tracing::info!(target: "ralf::serve", "dashboard: stop requested for run {id} (pid {})", run.pid);
            }
            Redirect::to(&format!("/runs/{id}")).into_response()
        }
        other => (StatusCode::NOT_FOUND, format!("unknown action {other}\n")).into_response(),
    }
}

async fn login_page(State(s): State<Arc<Served>>) -> Response {
    render(
        &s,
        "login.html",
        context! { page => "login", csrf => s.dash.csrf.clone(), failed => false, store => "" },
    )
}

async fn login(
    State(s): State<Arc<Served>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(tok) = &s.token else {
        return Redirect::to("/").into_response();
    };
    let given = form.get("token").map(String::as_str).unwrap_or("");
    if !csrf_ok(&s, &headers, &form) || !same(given, tok) {
        let mut r = render(
            &s,
            "login.html",
            context! { page => "login", csrf => s.dash.csrf.clone(), failed => true, store => "" },
        );
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "ralf_session={}; HttpOnly; SameSite=Strict; Path=/",
        session_value(tok)
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
