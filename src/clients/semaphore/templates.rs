//! Templates and the project's resources: look-ups and `ensure_template`.

use super::*;

impl Client {
    /// All templates of the project.
    pub async fn templates(&self) -> RResult<Vec<Template>> {
        let v = self
            .get_json(&format!("{}/templates", self.p()), "templates")
            .await?;
        let list = match v {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        let all: Vec<Template> = list
            .into_iter()
            .map(Template::from_value)
            .collect::<RResult<_>>()?;
        let mut by_name = std::collections::HashMap::with_capacity(all.len());
        let mut by_id = std::collections::HashMap::with_capacity(all.len());
        for t in &all {
            by_name.entry(t.name.clone()).or_insert_with(|| t.clone());
            by_id.insert(t.id, t.clone());
        }
        *self.template_cache.lock() = Some(TemplateCache {
            at: std::time::Instant::now(),
            by_name,
            by_id,
        });
        Ok(all)
    }

    /// Drop the cached template list (a template was found gone or changed).
    pub fn forget_templates(&self) {
        *self.template_cache.lock() = None;
    }

    /// A template from the cache while it is fresh: by name, else a numeric name as an id.
    fn cached_template(&self, name_or_id: &IdOrName) -> Option<Template> {
        let g = self.template_cache.lock();
        let c = g.as_ref().filter(|c| c.at.elapsed() < TEMPLATE_TTL)?;
        match name_or_id {
            IdOrName::Id(id) => c.by_id.get(id).cloned(),
            IdOrName::Name(n) => c
                .by_name
                .get(n)
                .or_else(|| n.parse::<i64>().ok().and_then(|id| c.by_id.get(&id)))
                .cloned(),
        }
    }

    /// A template by name or numeric id (a numeric string counts as an id if no template has that
    /// name). Served from the template cache while it is fresh; a miss reads the list again.
    pub async fn template(&self, name_or_id: &IdOrName) -> RResult<Template> {
        if let Some(t) = self.cached_template(name_or_id) {
            return Ok(t);
        }
        match name_or_id {
            IdOrName::Id(id) => {
                let v = self
                    .get_json(
                        &format!("{}/templates/{id}", self.p()),
                        &format!("template {id}"),
                    )
                    .await?;
                Template::from_value(v)
            }
            IdOrName::Name(n) => {
                let _one = self.template_refresh.lock().await;
                // Another caller may have refreshed the list while this one waited.
                if let Some(t) = self.cached_template(name_or_id) {
                    return Ok(t);
                }
                let all = self.templates().await?;
                if let Some(t) = all.iter().find(|t| &t.name == n) {
                    return Ok(t.clone());
                }
                if let Ok(id) = n.parse::<i64>() {
                    if let Some(t) = all.iter().find(|t| t.id == id) {
                        return Ok(t.clone());
                    }
                }
                let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
                let hint = crate::text::did_you_mean(n, names.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(RalfError::not_found(format!(
                    "semaphore: template `{n}` not found in project {} ({}){hint}",
                    self.project_id, self.project_name
                ))
                .with("template", n))
            }
        }
    }

    /// Look up an inventory/repository/environment/key by id or name: returns its id.
    pub async fn resource_id(&self, kind: &str, r: &IdOrName) -> RResult<i64> {
        let list = self.get_json(&format!("{}/{kind}", self.p()), kind).await?;
        let items = list.as_array().cloned().unwrap_or_default();
        let found = items.iter().find(|i| match r {
            IdOrName::Id(id) => i.get("id").and_then(Value::as_i64) == Some(*id),
            IdOrName::Name(n) => i.get("name").and_then(Value::as_str) == Some(n.as_str()),
        });
        found
            .and_then(|i| i.get("id").and_then(Value::as_i64))
            .ok_or_else(|| {
                let shown = match r {
                    IdOrName::Id(i) => i.to_string(),
                    IdOrName::Name(n) => format!("`{n}`"),
                };
                RalfError::not_found(format!(
                    "semaphore: {kind} {shown} not found in project {}",
                    self.project_id
                ))
            })
    }

    async fn first_resource(&self, kind: &str) -> RResult<Option<i64>> {
        let list = self.get_json(&format!("{}/{kind}", self.p()), kind).await?;
        Ok(list
            .as_array()
            .and_then(|a| a.first())
            .and_then(|i| i.get("id"))
            .and_then(Value::as_i64))
    }

    /// Create or update a template by name. `spec` uses the API's field names, except that `inventory`,
    /// `repository`, `environment` may name resources (id or name) and `arguments` may be an array.
    /// `task_params` (the override flags: `allow_override_limit`, `allow_override_tags`,
    /// `allow_override_skip_tags`, `allow_override_inventory`, `allow_debug`) is merged into the
    /// template's current one. Only the fields the spec manages (and the defaults this call fills
    /// in) are compared, absent and empty alike, so an unchanged template is not written again.
    /// Returns the template and whether anything was created/changed ("created" | "updated" | "unchanged").
    pub async fn ensure_template(
        &self,
        spec: &Map<String, Value>,
    ) -> RResult<(Template, &'static str)> {
        // Compared with the server's current state, and changed: the cache is not to be trusted.
        self.forget_templates();
        let r = self.ensure_template_inner(spec).await;
        self.forget_templates();
        r
    }

    async fn ensure_template_inner(
        &self,
        spec: &Map<String, Value>,
    ) -> RResult<(Template, &'static str)> {
        let name = spec
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                RalfError::invalid(
                    "semaphore::ensure_template: `name` (a non-empty string) is required",
                )
            })?
            .to_string();
        let existing = match self.template(&IdOrName::Name(name.clone())).await {
            Ok(t) => Some(t),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let before: Map<String, Value> = existing
            .as_ref()
            .and_then(|t| t.raw.as_object().cloned())
            .unwrap_or_default();
        let mut body = before.clone();
        body.remove("last_task");
        body.remove("tasks");
        // The keys this call decides; everything else is the server's.
        let mut managed: Vec<String> = vec!["name".into()];
        for (k, v) in spec {
            if k == "task_params" && !v.is_object() {
                return Err(RalfError::invalid(
                    "semaphore::ensure_template: `task_params` must be a map (e.g. #{ allow_override_limit: true })",
                ));
            }
            match k.as_str() {
                "inventory" | "repository" | "environment" | "name" => {}
                "task_params" | "allow_override_branch_in_task" | "allow_any_vars_in_task"
                    if self.legacy =>
                {
                    tracing::warn!(target: "ralf::semaphore", "ensure_template `{name}`: this v2.10 server has no `{k}`; not set");
                }
                "arguments" => {
                    let s = match v {
                        Value::Array(_) => v.to_string(),
                        Value::String(s) => s.clone(),
                        _ => return Err(RalfError::invalid(
                            "semaphore::ensure_template: `arguments` must be an array of strings",
                        )),
                    };
                    body.insert(k.clone(), Value::String(s));
                    managed.push(k.clone());
                }
                "task_params" => {
                    let new = v.as_object().cloned().unwrap_or_default();
                    let mut merged = body
                        .get("task_params")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    merged.extend(new);
                    body.insert(k.clone(), Value::Object(merged));
                    managed.push(k.clone());
                }
                _ => {
                    body.insert(k.clone(), v.clone());
                    managed.push(k.clone());
                }
            }
        }
        for (key, kind, field) in [
            ("inventory", "inventory", "inventory_id"),
            ("repository", "repositories", "repository_id"),
            ("environment", "environment", "environment_id"),
        ] {
            if let Some(v) = spec.get(key) {
                let r: IdOrName = serde_json::from_value(v.clone()).map_err(|_| {
                    RalfError::invalid(format!(
                        "semaphore::ensure_template: `{key}` must be an id or a name"
                    ))
                })?;
                body.insert(field.into(), json!(self.resource_id(kind, &r).await?));
                managed.push(field.into());
            } else if body
                .get(field)
                .and_then(Value::as_i64)
                .is_none_or(|i| i <= 0)
            {
                if let Some(id) = self.first_resource(kind).await? {
                    body.insert(field.into(), json!(id));
                    managed.push(field.into());
                }
            }
        }
        // `environment_ids` only where the server has it (not v2.10), kept in step with environment_id.
        if !self.legacy && (existing.is_none() || before.contains_key("environment_ids")) {
            if let Some(env_id) = body.get("environment_id").cloned() {
                let ids = body
                    .get("environment_ids")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !ids.contains(&env_id) {
                    body.insert("environment_ids".into(), json!([env_id]));
                    managed.push("environment_ids".into());
                }
            }
        }
        for (k, d) in [
            ("app", json!("ansible")),
            ("type", json!("")),
            ("arguments", json!("[]")),
        ] {
            if !body.contains_key(k) {
                body.insert(k.into(), d);
            }
        }
        body.insert("name".into(), json!(name));
        body.insert("project_id".into(), json!(self.project_id));
        match existing {
            Some(t) => {
                body.insert("id".into(), json!(t.id));
                let changed: Vec<&String> = managed
                    .iter()
                    .filter(|k| !same_value(before.get(k.as_str()), body.get(k.as_str())))
                    .collect();
                if changed.is_empty() {
                    return Ok((t, "unchanged"));
                }
                tracing::debug!(target: "ralf::semaphore", "template `{name}`: changing {changed:?}");
                let path = format!("{}/templates/{}", self.p(), t.id);
                self.change(
                    Method::PUT,
                    &path,
                    &Value::Object(body),
                    &format!("template {}", t.id),
                )
                .await?;
                self.forget_templates();
                Ok((self.template(&IdOrName::Id(t.id)).await?, "updated"))
            }
            None => {
                body.remove("id");
                let path = format!("{}/templates", self.p());
                let text = self
                    .change(
                        Method::POST,
                        &path,
                        &Value::Object(body),
                        &format!("project {}", self.project_id),
                    )
                    .await?;
                let v: Value = serde_json::from_str(&text).map_err(|e| {
                    RalfError::internal(format!("semaphore: POST {path}: answer is not JSON: {e}"))
                })?;
                Ok((Template::from_value(v)?, "created"))
            }
        }
    }
}

/// Equal as the server stores them: absent, null, "", false, 0, [], {} and the argument list "[]"
/// are all "empty" (omitempty fields are left out of newer answers); maps compare key by key.
pub(crate) fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn empty(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => !b,
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            Some(Value::String(s)) => s.is_empty() || s == "[]",
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.values().all(|v| empty(Some(v))),
        }
    }
    if empty(a) && empty(b) {
        return true;
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => x
            .keys()
            .chain(y.keys())
            .all(|k| same_value(x.get(k), y.get(k))),
        (Some(Value::String(x)), Some(Value::String(y))) if x != y => {
            // JSON-encoded strings (arguments) may differ only in spacing.
            matches!((serde_json::from_str::<Value>(x), serde_json::from_str::<Value>(y)), (Ok(p), Ok(q)) if p == q)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::same_value;
    use serde_json::json;

    #[test]
    fn absent_and_empty_are_the_same() {
        assert!(same_value(None, Some(&json!(""))));
        assert!(same_value(None, Some(&json!(false))));
        assert!(same_value(Some(&json!("[]")), None));
        assert!(same_value(
            Some(&json!({"allow_override_limit": true})),
            Some(&json!({"allow_override_limit": true, "allow_debug": false, "tags": []}))
        ));
        assert!(!same_value(
            Some(&json!({"allow_override_limit": true})),
            Some(&json!({}))
        ));
        assert!(same_value(
            Some(&json!("[\"-v\"]")),
            Some(&json!("[ \"-v\" ]"))
        ));
        assert!(!same_value(Some(&json!("a.yml")), Some(&json!("b.yml"))));
    }
}
