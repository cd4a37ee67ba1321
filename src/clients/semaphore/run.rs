//! Starting tasks (what the template lets a run override, no blind retries), stop, confirm, reject.

use super::*;

impl Client {
    /// The JSON body of `POST /project/{p}/tasks` (field types per the spec: strings for environment/arguments).
    pub fn run_body(&self, template_id: i64, r: &RunRequest) -> Value {
        let mut b = Map::new();
        b.insert("template_id".into(), json!(template_id));
        if let Some(env) = &r.env {
            b.insert(
                "environment".into(),
                Value::String(Value::Object(env.clone()).to_string()),
            );
        }
        if let Some(m) = &r.message {
            b.insert("message".into(), json!(m));
        }
        if let Some(br) = &r.branch {
            b.insert("git_branch".into(), json!(br));
        }
        if !r.arguments.is_empty() {
            b.insert(
                "arguments".into(),
                Value::String(json!(r.arguments).to_string()),
            );
        }
        if let Some(i) = r.inventory_id {
            b.insert("inventory_id".into(), json!(i));
        }
        if self.legacy {
            // v2.10 and older: top-level flags and a comma-separated limit.
            if r.debug {
                b.insert("debug".into(), json!(true));
            }
            if r.dry_run {
                b.insert("dry_run".into(), json!(true));
            }
            if r.diff {
                b.insert("diff".into(), json!(true));
            }
            if !r.limit.is_empty() {
                b.insert("limit".into(), json!(r.limit.join(",")));
            }
        } else {
            let mut p = Map::new();
            if r.debug {
                p.insert("debug".into(), json!(true));
            }
            if r.dry_run {
                p.insert("dry_run".into(), json!(true));
            }
            if r.diff {
                p.insert("diff".into(), json!(true));
            }
            if !r.limit.is_empty() {
                p.insert("limit".into(), json!(r.limit));
            }
            if !r.tags.is_empty() {
                p.insert("tags".into(), json!(r.tags));
            }
            if !r.skip_tags.is_empty() {
                p.insert("skip_tags".into(), json!(r.skip_tags));
            }
            if !p.is_empty() {
                b.insert("params".into(), Value::Object(p));
            }
        }
        Value::Object(b)
    }

    /// Start a task. Never blindly retried: when the answer is lost (connection dropped after sending,
    /// timeout, 5xx), the client looks for a task it created (newer than the newest task before the call,
    /// same template, same environment and message) and adopts it; only when there is none does it try again.
    pub async fn run(&self, template: &Template, r: &RunRequest) -> RResult<Task> {
        let baseline = self.baseline().await?;
        self.run_after(template, r, baseline).await
    }

    /// The id of the newest task of the project (0 when there is none): tasks a later `run` creates
    /// are newer. Recorded before starting a task, it lets a resumed run find the task an
    /// interrupted attempt started (see [`Client::find_started`]).
    pub async fn baseline(&self) -> RResult<i64> {
        Ok(self
            .recent_tasks(1)
            .await?
            .first()
            .map(|t| t.id)
            .unwrap_or(0))
    }

    /// A task of `template` newer than `baseline` started with the same environment and message
    /// as `r` would be, if there is one.
    pub async fn find_started(
        &self,
        template: &Template,
        r: &RunRequest,
        baseline: i64,
    ) -> RResult<Option<Task>> {
        let body = self.run_body(template.id, r);
        self.find_created(template.id, baseline, &body).await
    }

    /// What the server would do with `r` on `template`: options it would drop silently are an
    /// `invalid` error naming the template flag to turn on, or, with `ignore_dropped`, removed from
    /// the request and listed as warnings. Also warns when v2.10 would let the template environment
    /// win over the run's `env`. Returns the request to send and the warnings (already logged).
    pub async fn prepare_run(
        &self,
        template: &Template,
        r: &RunRequest,
        ignore_dropped: bool,
    ) -> RResult<(RunRequest, Vec<String>)> {
        let raw = &template.raw;
        let tp = raw.get("task_params").cloned().unwrap_or(Value::Null);
        let flag = |k: &str| tp.get(k).and_then(Value::as_bool).unwrap_or(false);
        let top = |k: &str| raw.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut req = r.clone();
        // (option, why it is dropped)
        let mut dropped: Vec<(&str, String)> = Vec::new();
        let mut gate = |on: bool, opt: &'static str, why: String, clear: &mut dyn FnMut()| {
            if on {
                dropped.push((opt, why));
                clear();
            }
        };
        let name = &template.name;
        if self.legacy {
            let why = "Semaphore v2.10 has no tags (the server ignores them)".to_string();
            gate(!r.tags.is_empty(), "tags", why.clone(), &mut || {
                req.tags.clear()
            });
            gate(!r.skip_tags.is_empty(), "skip_tags", why, &mut || {
                req.skip_tags.clear()
            });
        } else {
            let need =
                |f: &str| format!("template `{name}` does not allow it: turn on task_params.{f}");
            gate(
                !r.limit.is_empty() && !flag("allow_override_limit"),
                "limit",
                need("allow_override_limit"),
                &mut || req.limit.clear(),
            );
            gate(
                !r.tags.is_empty() && !flag("allow_override_tags"),
                "tags",
                need("allow_override_tags"),
                &mut || req.tags.clear(),
            );
            gate(
                !r.skip_tags.is_empty() && !flag("allow_override_skip_tags"),
                "skip_tags",
                need("allow_override_skip_tags"),
                &mut || req.skip_tags.clear(),
            );
            gate(
                r.debug && !flag("allow_debug"),
                "debug",
                need("allow_debug"),
                &mut || req.debug = false,
            );
            gate(
                r.inventory_id.is_some() && !flag("allow_override_inventory"),
                "inventory",
                need("allow_override_inventory"),
                &mut || req.inventory_id = None,
            );
            gate(
                r.branch.is_some() && !top("allow_override_branch_in_task"),
                "branch",
                format!(
                    "template `{name}` does not allow it: turn on allow_override_branch_in_task"
                ),
                &mut || req.branch = None,
            );
        }
        gate(
            !r.arguments.is_empty() && !top("allow_override_args_in_task"),
            "arguments",
            format!("template `{name}` does not allow it: turn on allow_override_args_in_task"),
            &mut || req.arguments.clear(),
        );
        let mut warnings = Vec::new();
        if !dropped.is_empty() {
            let list = dropped
                .iter()
                .map(|(o, why)| format!("`{o}` ({why})"))
                .collect::<Vec<_>>()
                .join("; ");
            if !ignore_dropped {
                let opts: Vec<&str> = dropped.iter().map(|(o, _)| *o).collect();
                return Err(RalfError::invalid(format!(
                    "semaphore: the server would silently drop {list}; the task would run without it. \
                     Change the template (sem.ensure_template can set these flags), or pass \
                     #{{ ignore_dropped: true }} to run without these options"
                ))
                .with("template", name)
                .with("dropped", opts));
            }
            warnings.push(format!(
                "semaphore: running `{name}` without {list} (ignore_dropped)"
            ));
        }
        if self.legacy {
            if let Some(w) = self.legacy_env_check(template, r).await? {
                warnings.push(w);
            }
        }
        for w in &warnings {
            tracing::warn!(target: "ralf::semaphore", "{w}");
        }
        Ok((req, warnings))
    }

    /// v2.10's `populateDetails` merges with the variable names swapped: the template environment
    /// wins over the task's `env` (a warning naming the keys), and a template without an
    /// environment fails every task that sends one (an error before sending).
    async fn legacy_env_check(
        &self,
        template: &Template,
        r: &RunRequest,
    ) -> RResult<Option<String>> {
        let Some(env) = r.env.as_ref().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let Some(env_id) = template
            .raw
            .get("environment_id")
            .and_then(Value::as_i64)
            .filter(|i| *i > 0)
        else {
            return Err(RalfError::invalid(format!(
                "semaphore: template `{}` has no environment; Semaphore v2.10 fails every task of it that \
                 passes `env` (it cannot merge into a missing environment). Give the template an environment \
                 (sem.ensure_template #{{ environment: ... }}) or run without `env`",
                template.name
            ))
            .with("template", &template.name));
        };
        let v = self
            .get_json(
                &format!("{}/environment/{env_id}", self.p()),
                &format!("environment {env_id}"),
            )
            .await?;
        let tpl_vars: Map<String, Value> = v
            .get("json")
            .and_then(Value::as_str)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let mut clash: Vec<&str> = env
            .keys()
            .filter(|k| tpl_vars.contains_key(*k))
            .map(String::as_str)
            .collect();
        if clash.is_empty() {
            return Ok(None);
        }
        clash.sort();
        Ok(Some(format!(
            "semaphore: on this v2.10 server the environment of template `{}` wins over the run's env for {}: \
             the task runs with the template's values",
            template.name,
            clash.join(", ")
        )))
    }

    /// [`Client::run`] with the baseline already taken. Checks the request with
    /// [`Client::prepare_run`] (strict: a dropped option is an error).
    pub async fn run_after(
        &self,
        template: &Template,
        r: &RunRequest,
        baseline: i64,
    ) -> RResult<Task> {
        let (r, _) = self.prepare_run(template, r, false).await?;
        let body = self.run_body(template.id, &r);
        let path = format!("{}/tasks", self.p());
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let res = self
                .change(
                    Method::POST,
                    &path,
                    &body,
                    &format!("template {} ({})", template.id, template.name),
                )
                .await;
            let err = match res {
                Ok(text) => {
                    match serde_json::from_str::<Value>(&text)
                        .map_err(|e| e.to_string())
                        .and_then(|v| Task::from_value(v).map_err(|e| e.message))
                    {
                        Ok(t) => return Ok(t),
                        Err(m) => RalfError::unavailable(format!(
                            "semaphore: POST {path}: unreadable answer: {m}"
                        ))
                        .with("sent", true),
                    }
                }
                Err(e) => e,
            };
            if err.kind == ErrorKind::NotFound || empty_500(&err) {
                // The template may be gone or changed: the next lookup reads the list again.
                self.forget_templates();
            }
            if empty_500(&err) {
                // AddTask's answer to invalid input (and to a task it created and then failed):
                // deterministic, so one look-up and no retry.
                if let Some(t) = self.find_created(template.id, baseline, &body).await? {
                    tracing::warn!(target: "ralf::semaphore", "starting `{}` answered 500, but the server created task {} ({}); attaching to it", template.name, t.id, t.status);
                    return Ok(t);
                }
                return Err(RalfError::invalid(format!(
                    "semaphore: starting `{}` failed: the server answered 500 with no reason (no task was created). \
                     Usual causes: an unknown template (v2.10), `params` of the wrong types, an invalid \
                     git_branch or playbook, env keys that are not declared survey variables (servers that \
                     validate them; the template's allow_any_vars_in_task allows any), or a template without an \
                     environment receiving `env` (v2.10). The server log has the reason",
                    template.name
                ))
                .with("status", 500)
                .with("template", &template.name));
            }
            let ambiguous = match err.kind {
                ErrorKind::Unavailable => err.details.get("sent") != Some(&Value::Bool(false)),
                _ => return Err(err),
            };
            if ambiguous {
                tracing::warn!(target: "ralf::semaphore", "starting `{}` gave no clear answer ({err}); checking whether the task was created", template.name);
                if let Some(t) = self.find_created(template.id, baseline, &body).await? {
                    tracing::info!(target: "ralf::semaphore", "task {} of `{}` was created; attaching to it", t.id, template.name);
                    return Ok(t);
                }
            }
            if attempt >= 3 {
                return Err(err.with("attempts", attempt));
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    /// After an ambiguous create: a task newer than `baseline` of this template whose request fields match.
    async fn find_created(
        &self,
        template_id: i64,
        baseline: i64,
        body: &Value,
    ) -> RResult<Option<Task>> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self.recent_tasks(50).await {
                Ok(tasks) => {
                    let found = tasks.into_iter().find(|t| {
                        t.id > baseline
                            && t.template_id == template_id
                            && same_field(&t.raw, body, "environment")
                            && same_field(&t.raw, body, "message")
                    });
                    return Ok(found);
                }
                Err(e) if e.kind == ErrorKind::Unavailable && attempt < 5 => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Stop a task (`{"force": bool}` is always sent: an empty body is a 400). A task that has already
    /// finished is left alone: real servers (v2.10 to 2025) would overwrite its `success`/`error`
    /// with `stopped`.
    pub async fn stop(&self, task_id: i64, force: bool) -> RResult<StopOutcome> {
        let t = self.task(task_id).await?;
        if t.is_terminal() {
            tracing::info!(target: "ralf::semaphore", "task {task_id} had already finished ({}); nothing to stop", t.status);
            return Ok(StopOutcome::AlreadyFinished(t.status));
        }
        let path = format!("{}/tasks/{task_id}/stop", self.p());
        self.change(
            Method::POST,
            &path,
            &json!({"force": force}),
            &format!("task {task_id}"),
        )
        .await?;
        Ok(StopOutcome::Requested)
    }

    /// Confirm (`true`) or reject a task in `waiting_confirmation`. The status is checked first:
    /// the server itself accepts a confirm on a running task and skips the later confirmation
    /// step (it applies a plan no one has seen), so anything else is a `conflict` here.
    pub async fn confirm(&self, task_id: i64, yes: bool) -> RResult<()> {
        let what = if yes { "confirm" } else { "reject" };
        if !yes && self.legacy {
            return Err(RalfError::invalid(format!(
                "semaphore: reject is not supported by this server version ({}: no /tasks/{{id}}/reject route); \
                 stop the task instead (task.stop())",
                self.version
            ))
            .with("task_id", task_id));
        }
        let t = self.task(task_id).await?;
        if t.status != "waiting_confirmation" {
            return Err(RalfError::new(
                ErrorKind::Conflict,
                format!(
                    "semaphore: cannot {what} task {task_id}: it is `{}`, not waiting for confirmation",
                    t.status
                ),
            )
            .with("task_id", task_id)
            .with("status", t.status));
        }
        let path = format!("{}/tasks/{task_id}/{what}", self.p());
        match self.change(Method::POST, &path, &json!({}), &format!("task {task_id}")).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::Invalid => Err(RalfError::new(
                ErrorKind::Conflict,
                format!("semaphore: cannot {what} task {task_id}: it is no longer active"),
            )
            .with("task_id", task_id)),
            Err(e) if e.kind == ErrorKind::NotFound && !yes => Err(RalfError::invalid(format!(
                "semaphore: reject is not supported by this server version ({}); stop the task instead",
                self.version
            ))
            .with("task_id", task_id)),
            Err(e) => Err(e),
        }
    }
}

/// What [`Client::stop`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    /// The stop request was sent.
    Requested,
    /// The task had already finished with this status; nothing was sent.
    AlreadyFinished(String),
}

/// A 500 with an empty body: how AddTask reports invalid input.
fn empty_500(e: &RalfError) -> bool {
    e.details.get("status") == Some(&json!(500))
        && e.details.get("empty_body") == Some(&json!(true))
}

fn same_field(task: &Value, body: &Value, k: &str) -> bool {
    let norm = |v: Option<&Value>| match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(o) => o.to_string(),
    };
    let (a, b) = (norm(task.get(k)), norm(body.get(k)));
    if a == b {
        return true;
    }
    // Environments may be re-serialised by the server: compare as JSON.
    match (
        serde_json::from_str::<Value>(&a),
        serde_json::from_str::<Value>(&b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_field_compares_json() {
        let t = json!({"environment": "{\"a\": 1}", "message": "m"});
        let b = json!({"environment": "{\"a\":1}", "message": "m"});
        assert!(same_field(&t, &b, "environment"));
        assert!(same_field(&t, &b, "message"));
        assert!(!same_field(&t, &json!({"message": "n"}), "message"));
    }

    #[test]
    fn only_an_empty_500_is_deterministic() {
        let m = Method::POST;
        assert!(empty_500(&status_error(
            &m,
            "/t",
            StatusCode::INTERNAL_SERVER_ERROR,
            "",
            "t"
        )));
        assert!(!empty_500(&status_error(
            &m,
            "/t",
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"db down"}"#,
            "t"
        )));
        assert!(!empty_500(&status_error(
            &m,
            "/t",
            StatusCode::BAD_GATEWAY,
            "",
            "t"
        )));
    }
}
