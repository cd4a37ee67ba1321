//! Typed fix proposals: after a failed deployment the advisor may propose one of a few actions,
//! which the flow checks against the catalog's allow-list before doing anything. This module only
//! asks and parses; it never decides what is allowed.

use super::advisor::extract_json;
use super::Message;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The actions a proposal may name.
pub const ACTIONS: &[&str] = &["retry", "restart", "rollback", "none"];

/// One proposal, as the model gave it (shape-checked, not yet allowed).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Proposal {
    pub action: String,
    pub env: BTreeMap<String, String>,
    pub reason: String,
}

pub const PROPOSE_SYSTEM: &str = "You help an operator repair a failed homelab deployment. \
You may propose exactly one action, as a JSON object and nothing else: \
{\"action\": \"retry\" | \"restart\" | \"rollback\" | \"none\", \"env\": {\"KEY\": \"value\"}, \"reason\": \"...\"}. \
\"retry\" runs the deployment again with the env changes given (only keys from the allowed list); \
\"restart\" restarts the service's container; \"rollback\" restores the snapshot taken before; \
\"none\" when the log does not show a fix you are sure of. Base the proposal only on the log.";

/// The messages for a proposal. `env` holds the service's current task variables (catalog data,
/// no secrets), `allowed_env` the keys a retry may change, `restart` whether a restart is allowed.
pub fn propose_messages(
    service: &str,
    log: &str,
    env: &BTreeMap<String, String>,
    allowed_env: &[String],
    restart: bool,
) -> Vec<Message> {
    let current: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let user = format!(
        "Service: {service}\nCurrent variables: {}\nVariables a retry may change: {}\nRestart allowed: {}\nLast log lines:\n{log}",
        if current.is_empty() { "(none)".to_string() } else { current.join(", ") },
        if allowed_env.is_empty() { "(none)".to_string() } else { allowed_env.join(", ") },
        if restart { "yes" } else { "no" },
    );
    vec![Message::system(PROPOSE_SYSTEM), Message::user(user)]
}

/// Parse and shape-check a proposal; the error says what is wrong with the answer.
pub fn parse_proposal(text: &str) -> Result<Proposal, String> {
    let v = extract_json(text).ok_or_else(|| "the answer contains no JSON object".to_string())?;
    let action = match v.get("action") {
        Some(Value::String(s)) => s.trim().to_lowercase(),
        Some(other) => return Err(format!("\"action\" must be a string, got {other}")),
        None => return Err("the JSON object has no \"action\" field".into()),
    };
    if !ACTIONS.contains(&action.as_str()) {
        return Err(format!(
            "\"action\" must be one of {}; got \"{action}\"",
            ACTIONS.join(", ")
        ));
    }
    let mut env = BTreeMap::new();
    match v.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                let s = match val {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(format!("\"env\".{k} must be a string, got {other}")),
                };
                env.insert(k.clone(), s);
            }
        }
        Some(other) => return Err(format!("\"env\" must be an object, got {other}")),
    }
    let reason = match v.get("reason") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None => {
            return Err("the JSON object needs a non-empty \"reason\" string".into())
        }
        Some(other) => return Err(format!("\"reason\" must be a string, got {other}")),
    };
    Ok(Proposal {
        action,
        env,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shape_checks() {
        let p = parse_proposal(
            "Here:\n```json\n{\"action\": \" Retry\", \"env\": {\"PG_MAX\": 200}, \"reason\": \"too few\"}\n```",
        )
        .unwrap();
        assert_eq!(p.action, "retry");
        assert_eq!(p.env["PG_MAX"], "200");
        assert!(
            parse_proposal(r#"{"action":"reboot the world","reason":"x"}"#)
                .unwrap_err()
                .contains("one of retry")
        );
        assert!(
            parse_proposal(r#"{"action":"retry","env":[1],"reason":"x"}"#)
                .unwrap_err()
                .contains("object")
        );
        assert!(parse_proposal(r#"{"action":"none"}"#)
            .unwrap_err()
            .contains("reason"));
        assert!(parse_proposal("no").unwrap_err().contains("no JSON"));
    }

    #[test]
    fn the_prompt_names_only_keys_and_catalog_values() {
        let env = BTreeMap::from([("SERVICE_NAME".to_string(), "n8n".to_string())]);
        let m = propose_messages("n8n", "fatal", &env, &["N8N_PORT".into()], false);
        assert!(m[1]
            .content
            .contains("Variables a retry may change: N8N_PORT"));
        assert!(m[1].content.contains("Restart allowed: no"));
    }
}
