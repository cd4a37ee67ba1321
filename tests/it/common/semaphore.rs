//! Semaphore test harness: a validator for the Swagger 2.0 subset the official `api-docs.yml` uses
//! (type, properties, required, items, $ref, allOf, enum, minimum, x-nullable, format date-time leniently),
//! and helpers to match recorded stand-in exchanges to the spec's paths.
#![allow(dead_code)]

use serde_json::Value;

/// (definition, field) pairs that real servers send as `null` (Go pointers without omitempty).
pub const NULL_WHEN_UNSET: &[(&str, &str)] = &[
    ("Inventory", "become_key_id"),
    ("Inventory", "repository_id"),
    ("Inventory", "ssh_key_id"),
    ("Environment", "password"),
    ("Project", "alert_chat"),
    ("Template", "inventory_id"),
    ("Template", "environment_id"),
    ("Template", "view_id"),
    ("Template", "build_template_id"),
    ("Template", "start_version"),
    ("Template", "description"),
    ("Template", "arguments"),
    ("Template", "git_branch"),
    ("Template", "survey_vars"),
    ("Template", "vaults"),
    ("Task", "inventory_id"),
    ("Task", "git_branch"),
    ("Task", "arguments"),
    ("Task", "environment"),
    ("Task", "message"),
];

/// Keys every object of a kind carries on each modelled release (from the JSON tags of
/// `db/*.go`, UPSTREAM.md §1.2), where the OpenAPI file lists fewer.
pub const REAL_KEYS: &[(&str, &[&str])] = &[
    (
        "project",
        &[
            "id",
            "name",
            "created",
            "alert",
            "alert_chat",
            "max_parallel_tasks",
            "type",
        ],
    ),
    (
        "inventory",
        &[
            "id",
            "name",
            "project_id",
            "inventory",
            "ssh_key_id",
            "become_key_id",
            "holder_id",
            "repository_id",
            "type",
        ],
    ),
    (
        "environment",
        &[
            "id",
            "name",
            "project_id",
            "password",
            "json",
            "env",
            "secrets",
        ],
    ),
    (
        "keys",
        &[
            "id",
            "name",
            "type",
            "project_id",
            "string",
            "login_password",
            "ssh",
            "override_secret",
        ],
    ),
    (
        "template_v2_10",
        &[
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
        ],
    ),
    // Non-omitempty keys of the newer db.Template: the only ones always present.
    (
        "template_new",
        &[
            "id",
            "project_id",
            "repository_id",
            "name",
            "playbook",
            "tasks",
        ],
    ),
    ("output_v2_10", &["task_id", "task", "time", "output"]),
    (
        "output_new",
        &["id", "task_id", "time", "output", "stage_id"],
    ),
];

pub struct Spec {
    doc: Value,
}

impl Spec {
    /// The official spec, copied byte for byte into `tests/data/`.
    pub fn load() -> Spec {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/semaphore-api-docs.yml"
        );
        let text = std::fs::read_to_string(path).expect("read spec");
        let y: ralf_sh::yaml::Value = ralf_sh::yaml::from_str(&text).expect("parse spec");
        let mut doc = serde_json::to_value(y).expect("spec as json");
        // Pointer fields of the Go structs are `null` when unset (UPSTREAM.md §1.2, the JSON tags in
        // db/*.go); the OpenAPI file does not mark them x-nullable.
        for (def, field) in NULL_WHEN_UNSET {
            if let Some(p) = doc["definitions"][def]["properties"].get_mut(*field) {
                p["x-nullable"] = Value::Bool(true);
            }
        }
        Spec { doc }
    }

    fn resolve<'a>(&'a self, r: &str) -> &'a Value {
        let name = r.strip_prefix("#/definitions/").expect("local $ref");
        &self.doc["definitions"][name]
    }

    /// Validate `v` against `schema`; problems are pushed as `path: message`.
    pub fn validate(&self, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            self.validate(self.resolve(r), v, at, errs);
            // Siblings of $ref (used by the templates list) are checked too.
            if let Some(props) = schema.get("properties") {
                self.validate(&serde_json::json!({"properties": props}), v, at, errs);
            }
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(s, v, at, errs);
            }
        }
        if v.is_null() {
            if schema.get("x-nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some()
            {
                errs.push(format!("{at}: null where {} is expected", schema["type"]));
            }
            return;
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let ok = match ty {
            Some("object") => v.is_object(),
            None => true,
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("boolean") => v.is_boolean(),
            Some(other) => {
                errs.push(format!("{at}: validator does not know type {other}"));
                true
            }
        };
        if !ok {
            errs.push(format!("{at}: expected {}, got {v}", ty.unwrap_or("?")));
            return;
        }
        if let Some(en) = schema.get("enum").and_then(Value::as_array) {
            if !en.contains(v) {
                errs.push(format!(
                    "{at}: {v} is not one of {}",
                    Value::Array(en.clone())
                ));
            }
        }
        if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
            if n < min {
                errs.push(format!("{at}: {n} is below the minimum {min}"));
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time") {
            if let Some(s) = v.as_str() {
                if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    errs.push(format!("{at}: `{s}` is not an RFC 3339 date-time"));
                }
            }
        }
        if let (Some(props), Some(obj)) = (
            schema.get("properties").and_then(Value::as_object),
            v.as_object(),
        ) {
            for (k, s) in props {
                if let Some(x) = obj.get(k) {
                    self.validate(s, x, &format!("{at}.{k}"), errs);
                }
            }
        }
        if let (Some(req), Some(obj)) = (
            schema.get("required").and_then(Value::as_array),
            v.as_object(),
        ) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    errs.push(format!("{at}: required field `{k}` is missing"));
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
            for (i, x) in arr.iter().enumerate() {
                self.validate(items, x, &format!("{at}[{i}]"), errs);
            }
        }
    }

    /// The spec path (trailing slash removed) matching an actual path under `/api`, literal segments first.
    pub fn match_path(&self, actual: &str) -> Option<String> {
        let actual = actual.strip_prefix("/api").unwrap_or(actual);
        let segs: Vec<&str> = actual.trim_end_matches('/').split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for p in self.doc["paths"].as_object()?.keys() {
            let norm = p.trim_end_matches('/');
            let ps: Vec<&str> = norm.split('/').collect();
            if ps.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let ok = ps.iter().zip(&segs).all(|(a, b)| {
                if a.starts_with('{') {
                    true
                } else if a == b {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if ok && best.as_ref().is_none_or(|(l, _)| literal > *l) {
                best = Some((literal, p.clone()));
            }
        }
        best.map(|(_, p)| p)
    }

    pub fn operation(&self, spec_path: &str, method: &str) -> Option<&Value> {
        self.doc["paths"][spec_path].get(method.to_lowercase())
    }

    /// The body parameter schema of an operation.
    pub fn body_schema(&self, spec_path: &str, method: &str) -> Option<Value> {
        let op = self.operation(spec_path, method)?;
        op.get("parameters")?
            .as_array()?
            .iter()
            .find(|p| p.get("in").and_then(Value::as_str) == Some("body"))
            .map(|p| p["schema"].clone())
    }

    /// Documented response: Some(schema or Null) when the status is documented.
    pub fn response(&self, spec_path: &str, method: &str, status: u16) -> Option<Value> {
        let op = self.operation(spec_path, method)?;
        let r = op.get("responses")?.get(status.to_string())?;
        Some(r.get("schema").cloned().unwrap_or(Value::Null))
    }
}
