//! The control API (`/_lab/...`, no auth) for failure injection from tests.

use super::*;

// ---------------------------------------------------------------------------------------------
// Control API

pub(super) fn control(app: &App, method: &Method, rest: &str, body: &[u8]) -> Response {
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return json_response(400, json!({"error": format!("body is not JSON: {e}")}))
            }
        }
    };
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let mut st = app.state.lock();
    let ok = |v: Value| json_response(200, v);
    let bad = |m: String| json_response(400, json!({"error": m}));
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["state"]) => ok(serde_json::to_value(&*st).unwrap_or(Value::Null)),
        ("POST", ["tasks", "duration"]) => match body["ms"].as_u64() {
            Some(ms) => {
                st.task_ms = ms;
                ok(json!({"task_ms": ms}))
            }
            None => bad("expected {\"ms\": N}".into()),
        },
        (m, ["guests", vmid, action @ ..]) => {
            let Some(g) = vmid.parse::<u32>().ok().and_then(|v| st.guests.get_mut(&v)) else {
                return json_response(404, json!({"error": format!("no guest {vmid}")}));
            };
            match (m, action) {
                ("GET", []) => ok(serde_json::to_value(&*g).unwrap_or(Value::Null)),
                ("POST", ["marker"]) => match body["value"].as_str() {
                    Some(v) => {
                        g.lab_marker = v.to_string();
                        ok(json!({"lab_marker": v}))
                    }
                    None => bad("expected {\"value\": \"...\"}".into()),
                },
                ("POST", ["config"]) => match body.as_object() {
                    Some(m) => {
                        for (k, v) in m {
                            if v.is_null() {
                                g.config.remove(k);
                            } else {
                                g.config.insert(k.clone(), v.clone());
                            }
                        }
                        ok(Value::Object(g.config.clone().into_iter().collect()))
                    }
                    None => bad("expected a JSON object".into()),
                },
                ("POST", ["fail_next"]) => {
                    let m = body["message"]
                        .as_str()
                        .unwrap_or("lab: injected failure")
                        .to_string();
                    g.fail_next = Some(m.clone());
                    ok(json!({"fail_next": m}))
                }
                ("POST", ["lock"]) => match body["lock"].as_str() {
                    Some(l) => {
                        g.lock = Some(l.to_string());
                        ok(json!({"lock": l}))
                    }
                    None => bad("expected {\"lock\": \"backup\"}".into()),
                },
                ("DELETE", ["lock"]) => {
                    g.lock = None;
                    ok(json!({"lock": null}))
                }
                ("POST", ["slow"]) => match body["ms"].as_u64() {
                    Some(ms) => {
                        g.slow_ms = ms;
                        ok(json!({"slow_ms": ms}))
                    }
                    None => bad("expected {\"ms\": N}".into()),
                },
                ("POST", ["ha"]) => match body["managed"].as_bool() {
                    Some(m) => {
                        g.ha_managed = m;
                        g.ha_state = if g.running { "started" } else { "stopped" }.into();
                        ok(json!({"ha_managed": m}))
                    }
                    None => bad("expected {\"managed\": true|false}".into()),
                },
                ("POST", ["flock_timeout"]) => match body["times"].as_u64() {
                    Some(n) => {
                        g.flock_timeouts = n as u32;
                        ok(json!({"flock_timeouts": n}))
                    }
                    None => bad("expected {\"times\": N}".into()),
                },
                ("POST", ["running"]) => match body["running"].as_bool() {
                    Some(r) => {
                        g.running = r;
                        ok(json!({"running": r}))
                    }
                    None => bad("expected {\"running\": true|false}".into()),
                },
                _ => json_response(
                    404,
                    json!({"error": format!("no control endpoint {method} /_lab/{rest}")}),
                ),
            }
        }
        _ => json_response(
            404,
            json!({"error": format!("no control endpoint {method} /_lab/{rest}")}),
        ),
    }
}
