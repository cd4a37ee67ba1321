//! Server info, login, tokens, projects and the project's other resources (keys, inventory, ...).

use super::*;
// ---------------------------------------------------------------- auth, info, projects

pub(super) async fn info(State(sh): State<Arc<Shared>>) -> Response {
    json_resp(
        StatusCode::OK,
        &json!({
            "version": sh.profile.version, "ansible": "ansible [core 2.17.0] (lab stand-in)", "web_host": sh.url,
            "use_remote_runner": false, "auth_methods": {"totp": {"enabled": false}},
            "git_client": "cmd_git", "schedule_timezone": "UTC", "features": {}
        }),
    )
}

pub(super) async fn login_meta() -> Response {
    json_resp(
        StatusCode::OK,
        &json!({"oidc_providers": [], "login_with_password": true}),
    )
}

pub(super) async fn login(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(m) = body_json(&body) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let auth = m
        .get("auth")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    let pw = m.get("password").and_then(Value::as_str).unwrap_or("");
    if auth != sh.user.to_lowercase() || pw != sh.password {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let session = random_token();
    sh.st.lock().sessions.insert(session.clone());
    let mut r = empty(StatusCode::NO_CONTENT);
    r.headers_mut().remove(header::CONTENT_TYPE);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "semaphore={session}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn logout(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(c) = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        let mut st = sh.st.lock();
        for s in c
            .split(';')
            .filter_map(|kv| kv.trim().strip_prefix("semaphore="))
        {
            st.sessions.remove(s);
        }
    }
    empty(StatusCode::NO_CONTENT)
}

pub(super) async fn tokens(State(sh): State<Arc<Shared>>) -> Response {
    json_resp(StatusCode::OK, &Value::Array(sh.st.lock().tokens.clone()))
}

pub(super) async fn new_token(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string));
    let mut t = json!({"id": random_token(), "created": now(), "expired": false, "user_id": 1});
    if let Some(n) = name {
        t["name"] = json!(n);
    }
    sh.st.lock().tokens.push(t.clone());
    json_resp(StatusCode::CREATED, &t)
}

pub(super) async fn projects(State(sh): State<Arc<Shared>>) -> Response {
    let list: Vec<Value> = sh
        .st
        .lock()
        .projects
        .iter()
        .map(|p| sh.profile.project(p))
        .collect();
    json_resp(StatusCode::OK, &Value::Array(list))
}

/// The lab's only user (`db.User`; the password hash is never serialised).
fn the_user(sh: &Shared) -> Value {
    json!({"id": 1, "created": "2024-01-01T00:00:00Z", "username": sh.user, "name": "Lab Admin",
        "email": "admin@lab.invalid", "admin": true, "external": false, "alert": false, "pro": false})
}

pub(super) async fn user_get(State(sh): State<Arc<Shared>>) -> Response {
    let mut u = the_user(&sh);
    u["can_create_project"] = json!(true);
    json_resp(StatusCode::OK, &u)
}

pub(super) async fn users(State(sh): State<Arc<Shared>>) -> Response {
    json_resp(StatusCode::OK, &json!([the_user(&sh)]))
}

pub(super) async fn token_delete(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let mut st = sh.st.lock();
    match st.tokens.iter_mut().find(|t| t["id"] == json!(id)) {
        Some(t) => {
            // Deleting a token expires it (`ExpireAPIToken`).
            t["expired"] = json!(true);
            empty(StatusCode::NO_CONTENT)
        }
        None => empty(StatusCode::NOT_FOUND),
    }
}

/// `db.Event` list (the lab records none: an empty list, like a fresh server).
pub(super) async fn events() -> Response {
    json_resp(StatusCode::OK, &json!([]))
}

/// Schedules, views, integrations: the lab has none.
pub(super) async fn empty_list(
    State(sh): State<Arc<Shared>>,
    Path(params): Path<HashMap<String, String>>,
) -> Resp {
    if let Some(p) = params.get("project_id") {
        project(&sh, p)?;
    }
    Ok(json_resp(StatusCode::OK, &json!([])))
}

pub(super) async fn project_role(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    project(&sh, &p)?;
    // The admin is owner everywhere; the bitmask has every permission bit set.
    Ok(json_resp(
        StatusCode::OK,
        &json!({"role": "owner", "permissions": 0x7fff}),
    ))
}

pub(super) async fn project_users(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    project(&sh, &p)?;
    let u = the_user(&sh);
    Ok(json_resp(
        StatusCode::OK,
        &json!([{"id": 1, "username": u["username"], "name": u["name"], "role": "owner"}]),
    ))
}

pub(super) async fn project_get(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let v = st
        .projects
        .iter()
        .find(|x| x["id"] == json!(p))
        .cloned()
        .unwrap_or_default();
    Ok(json_resp(StatusCode::OK, &sh.profile.project(&v)))
}

// ---------------------------------------------------------------- other resources

pub(super) fn kind_list<'a>(st: &'a mut St, kind: &str) -> Option<&'a mut Vec<Value>> {
    match kind {
        "inventory" => Some(&mut st.inventory),
        "environment" => Some(&mut st.environment),
        "repositories" => Some(&mut st.repositories),
        "keys" => Some(&mut st.keys),
        _ => None,
    }
}

pub(super) async fn res_list(
    State(sh): State<Arc<Shared>>,
    Path((p, kind)): Path<(String, String)>,
) -> Resp {
    let mut st = sh.st.lock();
    let list = kind_list(&mut st, &kind)
        .ok_or_else(not_found_text)?
        .clone();
    drop(st);
    let p = project(&sh, &p)?;
    let items: Vec<Value> = list
        .into_iter()
        .filter(|x| x["project_id"] == json!(p))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(items)))
}

pub(super) async fn res_get(
    State(sh): State<Arc<Shared>>,
    Path((p, kind, id)): Path<(String, String, String)>,
) -> Resp {
    let mut st = sh.st.lock();
    let list = kind_list(&mut st, &kind)
        .ok_or_else(not_found_text)?
        .clone();
    drop(st);
    let p = project(&sh, &p)?;
    let id = int_id(&id)?;
    list.into_iter()
        .find(|x| x["project_id"] == json!(p) && x["id"] == json!(id))
        .map(|v| json_resp(StatusCode::OK, &v))
        .ok_or_else(|| empty(StatusCode::NOT_FOUND))
}

pub(super) async fn res_create(
    State(sh): State<Arc<Shared>>,
    Path((p, kind)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    if kind_list(&mut sh.st.lock(), &kind).is_none() {
        return Err(not_found_text());
    }
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(
        &m,
        &[
            ("id", "int"),
            ("name", "string"),
            ("project_id", "int"),
            ("ssh_key_id", "int"),
            ("become_key_id", "int"),
            ("repository_id", "int"),
            ("inventory", "string"),
            ("type", "string"),
            ("json", "string"),
            ("env", "string"),
            ("password", "string"),
            ("git_url", "string"),
            ("git_branch", "string"),
            ("login_password", "object"),
            ("ssh", "object"),
        ],
    )?;
    if m.get("project_id")
        .and_then(Value::as_i64)
        .is_some_and(|x| x != p)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Project ID in body and URL must be the same",
        ));
    }
    if m.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("{kind} name can not be empty"),
        ));
    }
    let mut st = sh.st.lock();
    let list = kind_list(&mut st, &kind).ok_or_else(not_found_text)?;
    let id = list
        .iter()
        .filter_map(|x| x["id"].as_i64())
        .max()
        .unwrap_or(0)
        + 1;
    let mut v = m.clone();
    v.insert("id".into(), json!(id));
    v.insert("project_id".into(), json!(p));
    let v = resource_value(&kind, v);
    list.push(v.clone());
    Ok(json_resp(StatusCode::CREATED, &v))
}

/// A stored resource with the real struct's keys (null when unset); key secrets are blanked
/// (`AccessKey` comes back with empty `string`, `login_password`, `ssh`).
fn resource_value(kind: &str, m: Map<String, Value>) -> Value {
    let keys = match kind {
        "inventory" => profiles::INVENTORY_KEYS,
        "environment" => profiles::ENVIRONMENT_KEYS,
        "keys" => profiles::KEY_KEYS,
        _ => profiles::REPOSITORY_KEYS,
    };
    let mut v = profiles::keep_all(&m, keys);
    match kind {
        "keys" => {
            v["string"] = json!("");
            v["login_password"] = json!({"login": "", "password": ""});
            v["ssh"] = json!({"login": "", "passphrase": "", "private_key": ""});
            v["override_secret"] = json!(false);
        }
        "environment" => {
            if v["secrets"].is_null() {
                v["secrets"] = json!([]);
            }
            for k in ["json", "env"] {
                if v[k].is_null() {
                    v[k] = json!("{}");
                }
            }
        }
        _ => {}
    }
    v
}
