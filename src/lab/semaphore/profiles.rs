//! Version profiles: what differs between the Semaphore releases the stand-in models
//! (`../shared/specs/UPSTREAM.md` §1), and the object shapes each release answers with.
//!
//! Objects are stored in one canonical form (every key, `null` when unset) and shaped on the way
//! out: v2.10 keeps every key of its structs (null when unset) and lacks the newer ones; newer
//! releases tag most fields `omitempty`, so empty strings, `false`, `0`, `null` and empty lists
//! are left out.

use crate::lab::profiles::SemaphoreVersion;
use serde_json::{Map, Value};

/// The behaviours of one modelled release.
#[derive(Debug, Clone)]
pub struct Profile {
    pub release: SemaphoreVersion,
    /// What `GET /api/info` reports as `version`.
    pub version: String,
}

/// Template keys of v2.10 `db.Template` (always present, null when unset).
pub const TEMPLATE_KEYS_V2_10: &[&str] = &[
    "id",
    "project_id",
    "inventory_id",
    "repository_id",
    "environment_id",
    "name",
    "playbook",
    "arguments",
    "allow_override_args_in_task",
    "description",
    "vaults",
    "type",
    "start_version",
    "build_template_id",
    "view_id",
    "last_task",
    "autorun",
    "survey_vars",
    "suppress_success_alerts",
    "app",
    "git_branch",
    "tasks",
    "allow_parallel_tasks",
];

/// Template keys of newer `db.Template` and whether each is `omitempty`.
pub const TEMPLATE_KEYS_NEW: &[(&str, bool)] = &[
    ("id", false),
    ("project_id", false),
    ("inventory_id", true),
    ("repository_id", false),
    ("environment_id", true),
    ("environment_ids", true),
    ("name", false),
    ("playbook", false),
    ("arguments", true),
    ("allow_override_args_in_task", true),
    ("description", true),
    ("vaults", true),
    ("type", true),
    ("start_version", true),
    ("build_template_id", true),
    ("view_id", true),
    ("last_task", true),
    ("autorun", true),
    ("git_branch", true),
    ("survey_vars", true),
    ("suppress_success_alerts", true),
    ("app", true),
    ("tasks", false),
    ("task_params", true),
    ("runner_tag", true),
    ("allow_override_branch_in_task", true),
    ("allow_parallel_tasks", true),
];

/// Extra template key of the newest develop copy (S10).
pub const TEMPLATE_KEY_LATEST: &str = "allow_any_vars_in_task";

/// Task keys (`db.Task`) in v2.10.
pub const TASK_KEYS_V2_10: &[&str] = &[
    "id",
    "template_id",
    "project_id",
    "status",
    "playbook",
    "environment",
    "arguments",
    "git_branch",
    "user_id",
    "integration_id",
    "schedule_id",
    "created",
    "start",
    "end",
    "message",
    "commit_hash",
    "commit_message",
    "build_task_id",
    "version",
    "inventory_id",
    "limit",
    "debug",
    "dry_run",
    "diff",
];

/// Task keys of newer releases.
pub const TASK_KEYS_NEW: &[&str] = &[
    "id",
    "template_id",
    "project_id",
    "status",
    "playbook",
    "environment",
    "arguments",
    "git_branch",
    "user_id",
    "integration_id",
    "schedule_id",
    "created",
    "start",
    "end",
    "message",
    "commit_hash",
    "commit_message",
    "build_task_id",
    "version",
    "inventory_id",
    "limit",
    "params",
];

/// Project keys (v2.10 has `alert_chat`, always present; newer adds `default_secret_storage_id`, omitempty).
pub const PROJECT_KEYS: &[&str] = &[
    "id",
    "name",
    "created",
    "alert",
    "alert_chat",
    "max_parallel_tasks",
    "type",
];
pub const INVENTORY_KEYS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "inventory",
    "ssh_key_id",
    "become_key_id",
    "holder_id",
    "repository_id",
    "type",
];
pub const ENVIRONMENT_KEYS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "password",
    "json",
    "env",
    "secrets",
];
pub const KEY_KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "project_id",
    "string",
    "login_password",
    "ssh",
    "override_secret",
];
pub const REPOSITORY_KEYS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "git_url",
    "git_branch",
    "ssh_key_id",
];

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

impl Profile {
    pub fn new(release: SemaphoreVersion, version: Option<String>) -> Profile {
        let default = match release {
            SemaphoreVersion::V2_10 => "v2.10.32-d4a2713-1729814400",
            SemaphoreVersion::V2_16 => "v2.16.18-ralf-lab",
            SemaphoreVersion::Latest => "2.19.8-ralf-lab",
        };
        Profile {
            release,
            version: version.unwrap_or_else(|| default.to_string()),
        }
    }
    pub fn v2_10(&self) -> bool {
        self.release == SemaphoreVersion::V2_10
    }
    pub fn latest(&self) -> bool {
        self.release == SemaphoreVersion::Latest
    }
    /// ≥ 2.11: `limit`/`tags`/`skip_tags`/`debug`/inventory/branch need the template's opt-in.
    pub fn gates_overrides(&self) -> bool {
        !self.v2_10()
    }
    /// v2.10 has no tags and no `params` object (top-level `debug`/`dry_run`/`diff`, string `limit`).
    pub fn has_params(&self) -> bool {
        !self.v2_10()
    }
    /// v2.10's `populateDetails` lets the template environment win over the task's.
    pub fn template_env_wins(&self) -> bool {
        self.v2_10()
    }
    /// `/tasks/{id}/reject` and `/raw_output` are newer than v2.10.32.
    pub fn has_reject_route(&self) -> bool {
        !self.v2_10()
    }
    /// `StopTask` on a task no longer in the pool writes `stopped` over `success`/`error`
    /// (v2.10 and the 2025 develop copies); only the 2026 `taskStatusTransitionAllowed` refuses.
    pub fn stop_overwrites_finished(&self) -> bool {
        !self.latest()
    }
    /// The 2026 develop `ValidateSurveyVars`: env keys must be survey vars unless `allow_any_vars_in_task`.
    pub fn validates_survey_vars(&self) -> bool {
        self.latest()
    }

    /// A template as this release answers with it.
    pub fn template(&self, t: &Value) -> Value {
        let m = t.as_object().cloned().unwrap_or_default();
        if self.v2_10() {
            keep_all(&m, TEMPLATE_KEYS_V2_10)
        } else {
            let mut keys: Vec<(&str, bool)> = TEMPLATE_KEYS_NEW.to_vec();
            if self.latest() {
                keys.push((TEMPLATE_KEY_LATEST, true));
            }
            let mut out = Map::new();
            for (k, omit) in keys {
                let v = m.get(k).cloned().unwrap_or(Value::Null);
                if omit && is_empty(&v) {
                    continue;
                }
                out.insert(k.to_string(), v);
            }
            Value::Object(out)
        }
    }

    /// A task (the plain `db.Task`; list endpoints add the `tpl_*` fields).
    pub fn task(&self, t: &Value) -> Value {
        let m = t.as_object().cloned().unwrap_or_default();
        if self.v2_10() {
            let mut out = keep_all(&m, TASK_KEYS_V2_10);
            // v2.10 keeps the flags top-level and `limit` as a comma-separated string.
            let params = m.get("params").cloned().unwrap_or(Value::Null);
            for k in ["debug", "dry_run", "diff"] {
                out[k] = Value::Bool(params.get(k).and_then(Value::as_bool).unwrap_or(false));
            }
            if let Some(l) = params.get("limit").and_then(Value::as_array) {
                let s: Vec<&str> = l.iter().filter_map(Value::as_str).collect();
                out["limit"] = Value::String(s.join(","));
            } else {
                out["limit"] = Value::String(String::new());
            }
            out
        } else {
            let mut out = Map::new();
            for k in TASK_KEYS_NEW {
                let v = m.get(*k).cloned().unwrap_or(Value::Null);
                // Pointers and strings with omitempty upstream; status/ids stay.
                if v.is_null() && !matches!(*k, "start" | "end") {
                    continue;
                }
                out.insert(k.to_string(), v);
            }
            Value::Object(out)
        }
    }

    /// A project.
    pub fn project(&self, p: &Value) -> Value {
        let m = p.as_object().cloned().unwrap_or_default();
        let mut out = keep_all(&m, PROJECT_KEYS);
        if !self.v2_10() {
            if let Some(o) = out.as_object_mut() {
                if o.get("alert_chat").is_some_and(Value::is_null) {
                    o.remove("alert_chat");
                }
            }
        }
        out
    }

    /// One output line.
    pub fn output_line(&self, l: &Value) -> Value {
        let mut o = Map::new();
        if self.v2_10() {
            for k in ["task_id", "task", "time", "output"] {
                o.insert(
                    k.into(),
                    l.get(k).cloned().unwrap_or(Value::String(String::new())),
                );
            }
        } else {
            for k in ["id", "task_id", "time", "output", "stage_id"] {
                o.insert(k.into(), l.get(k).cloned().unwrap_or(Value::Null));
            }
        }
        Value::Object(o)
    }
}

/// Every key of `keys`, null when unset, and nothing else.
pub fn keep_all(m: &Map<String, Value>, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for k in keys {
        out.insert(k.to_string(), m.get(*k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}
