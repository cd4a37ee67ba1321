//! The advisor: asks a (small) model for a decision as a JSON object, checks it against a schema,
//! asks again once when it is invalid, and falls back to a configured answer otherwise.
//!
//! The advisor is never the authority: the deterministic planner decides the order of deployments;
//! the advisor's answer may only hold a service back (`wait`/`skip`) or explain.

use super::parse::split_think;
use super::{ChatRequest, Client, Message};
use crate::error::{ErrorKind, RResult, RalfError};
use serde::Serialize;
use serde_json::{json, Value};

/// The three answers a decision may have.
pub const DECISIONS: [&str; 3] = ["proceed", "wait", "skip"];

/// A checked decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// proceed | wait | skip
    pub decision: String,
    pub reason: String,
    /// `llm` (a valid model answer) or `fallback`.
    pub source: String,
    /// Why the fallback was used (fallback only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Decision {
    pub fn fallback(decision: &str, reason: impl Into<String>, error: Option<String>) -> Decision {
        Decision {
            decision: decision.to_string(),
            reason: reason.into(),
            source: "fallback".into(),
            error,
        }
    }
}

/// Everything one `decide` exchanged with the model, for the run journal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transcript {
    pub messages: Vec<Message>,
    pub answers: Vec<String>,
    /// The model's thinking per answer (reasoning fields and inline `<think>` blocks), kept apart
    /// from the answers: journaled (scrubbed), never parsed as the decision.
    pub reasoning: Vec<String>,
    pub problems: Vec<String>,
    /// The server could not even be connected to (refused, unreachable, connect timeout).
    #[serde(skip)]
    pub unreachable: bool,
}

pub const DECIDE_SYSTEM: &str = "You are a cautious deployment advisor for a homelab. \
You never decide the order of deployments (a deterministic planner does); you may only advise to \
hold a service back or explain. Answer with ONLY a JSON object, no prose, no code fence: \
{\"decision\": \"proceed\" | \"wait\" | \"skip\", \"reason\": \"<one short sentence>\"}. \
Use \"wait\" when something in the context suggests a dependency or the target is not ready, \
\"skip\" when the service should not be deployed in this run, otherwise \"proceed\".";

/// Token budget of each decide round. The answer itself needs well under 100 tokens; the rest is
/// room for a model that thinks although it was asked not to (its thinking counts against
/// `max_tokens` on exo, Ollama and llama.cpp alike), so that it still finishes its answer. The second
/// round doubles it when the first one ran out while thinking.
pub const DECIDE_MAX_TOKENS: [u64; 2] = [1024, 2048];

/// Longest `reason` the schema allows (keeps a grammar-constrained small model from rambling).
pub const REASON_MAX_CHARS: u64 = 200;

/// The JSON schema of a decision, sent as `response_format` (servers that enforce it, Ollama and
/// llama.cpp, then make even a weak model answer in shape).
pub fn decision_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": DECISIONS},
            "reason": {"type": "string", "minLength": 1, "maxLength": REASON_MAX_CHARS},
        },
        "required": ["decision", "reason"],
        "additionalProperties": false,
    })
}

/// How `decide` asks.
#[derive(Debug, Clone)]
pub struct DecideOptions {
    /// Send the decision schema as `response_format` (default true; a server that rejects the
    /// field is asked again without it, and not sent it again in this run).
    pub response_format: bool,
    /// Token budget of the two rounds (default [`DECIDE_MAX_TOKENS`]).
    pub max_tokens: [u64; 2],
}

impl Default for DecideOptions {
    fn default() -> Self {
        DecideOptions {
            response_format: true,
            max_tokens: DECIDE_MAX_TOKENS,
        }
    }
}

/// The user message for a decision.
pub fn decide_prompt(question: &str, context: &Value) -> String {
    let ctx = match context {
        Value::Null => "{}".to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    format!("Question: {question}\nContext (JSON):\n{ctx}\n\nReply with the JSON object only.")
}

/// Find a JSON object in a model's answer: the whole text, a ```json fence, or the first balanced
/// `{...}` inside prose that parses.
pub fn extract_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    // Code fences: ```json ... ``` or ``` ... ```
    let mut rest = t;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(0);
        let body = &after[body_start..];
        let Some(end) = body.find("```") else { break };
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(body[..end].trim()) {
            return Some(v);
        }
        rest = &body[end + 3..];
    }
    // Balanced braces, string-aware, from each '{'.
    let bytes = t.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'{' {
            continue;
        }
        if let Some(end) = balanced_end(&t[i..]) {
            if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&t[i..i + end]) {
                return Some(v);
            }
        }
    }
    None
}

/// Length of the balanced `{...}` at the start of `s`, if any.
fn balanced_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_str {
            match c {
                _ if esc => esc = false,
                '\\' => esc = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Check a model's answer against the decision schema. Err explains what is wrong (sent back to
/// the model when it is asked again).
pub fn parse_decision(text: &str) -> Result<Decision, String> {
    let v = extract_json(text).ok_or_else(|| "the answer contains no JSON object".to_string())?;
    let d = v
        .get("decision")
        .ok_or_else(|| "the JSON object has no \"decision\" field".to_string())?;
    let d = d
        .as_str()
        .ok_or_else(|| format!("\"decision\" must be a string, got {d}"))?
        .trim()
        .to_lowercase();
    if !DECISIONS.contains(&d.as_str()) {
        return Err(format!(
            "\"decision\" must be one of proceed, wait, skip; got \"{d}\""
        ));
    }
    let reason = match v.get("reason") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None => {
            return Err("the JSON object needs a non-empty \"reason\" string".into())
        }
        Some(other) => return Err(format!("\"reason\" must be a string, got {other}")),
    };
    Ok(Decision {
        decision: d,
        reason,
        source: "llm".into(),
        error: None,
    })
}

/// Ask for a decision: at most two model answers, then the fallback. Errors reaching the server make
/// the fallback answer at once; only `cancelled` is passed on. The answer is streamed so that the
/// first-token and idle timeouts (not only the overall deadline) catch a server that stopped
/// talking. Thinking is switched off where the server allows it; thinking the model does anyway is
/// kept apart (`Transcript::reasoning`) and never read as the answer.
pub async fn decide(
    client: &Client,
    question: &str,
    context: &Value,
    fallback: &str,
    opts: &DecideOptions,
) -> (RResult<Decision>, Transcript) {
    let mut tr = Transcript::default();
    let mut messages = vec![
        Message::system(DECIDE_SYSTEM),
        Message::user(decide_prompt(question, context)),
    ];
    for (round, budget) in opts.max_tokens.iter().enumerate() {
        let req = ChatRequest {
            messages: messages.clone(),
            temperature: Some(0.0),
            max_tokens: Some(*budget),
            model: None,
            json_schema: opts.response_format.then(decision_schema),
            thinking: Some(false),
        };
        let r = match client.chat_stream_fail_fast(&req).await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::Cancelled => {
                tr.messages = messages;
                return (Err(e), tr);
            }
            Err(e) => {
                tr.messages = messages;
                tr.unreachable = e.details.get("connect").and_then(|c| c.as_bool()) == Some(true);
                tr.problems.push(e.message.clone());
                return (
                    Ok(Decision::fallback(
                        fallback,
                        "advisor unavailable",
                        Some(e.message),
                    )),
                    tr,
                );
            }
        };
        let (answer, inline_think) = split_think(&r.text);
        let thinking = format!("{}{inline_think}", r.reasoning);
        tr.answers.push(answer.clone());
        tr.reasoning.push(thinking.clone());
        let parsed = if answer.trim().is_empty() && !thinking.is_empty() {
            Err(format!(
                "the answer is empty: the model thought ({} characters) {}",
                thinking.chars().count(),
                if r.finish_reason.as_deref() == Some("length") {
                    "until the token budget ran out"
                } else {
                    "but gave no answer"
                }
            ))
        } else {
            parse_decision(&answer)
        };
        match parsed {
            Ok(d) => {
                tr.messages = messages;
                return (Ok(d), tr);
            }
            Err(why) => {
                tr.problems.push(why.clone());
                if round == 0 {
                    messages.push(Message::assistant(answer));
                    messages.push(Message::user(format!(
                        "That answer is not valid: {why}. Do not think aloud. Reply again with ONLY the JSON object \
                         {{\"decision\": \"proceed\" | \"wait\" | \"skip\", \"reason\": \"...\"}}."
                    )));
                }
            }
        }
    }
    let why = tr.problems.last().cloned().unwrap_or_default();
    tr.messages = messages;
    (
        Ok(Decision::fallback(
            fallback,
            "advisor gave no valid answer",
            Some(format!(
                "two answers failed the schema check; last problem: {why}"
            )),
        )),
        tr,
    )
}

/// Keep the tail of a log so that it fits in `budget` characters; says how many lines were left out.
pub fn trim_log(lines: &[String], budget: usize) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut used = 0usize;
    for l in lines.iter().rev() {
        let n = l.chars().count() + 1;
        if used + n > budget {
            if kept.is_empty() {
                // A single huge line: keep its end.
                let chars: Vec<char> = l.chars().collect();
                let tail: String = chars[chars.len().saturating_sub(budget.saturating_sub(1))..]
                    .iter()
                    .collect();
                return format!(
                    "[… {} earlier lines omitted; last line shortened]\n{tail}",
                    lines.len() - 1
                );
            }
            break;
        }
        used += n;
        kept.push(l);
    }
    kept.reverse();
    let omitted = lines.len() - kept.len();
    let body = kept.join("\n");
    if omitted > 0 {
        format!("[… {omitted} earlier lines omitted]\n{body}")
    } else {
        body
    }
}

pub const FIX_SYSTEM: &str =
    "You help an operator fix a failed homelab deployment. Given a service \
name and the end of its log, name the most likely cause and the first concrete thing to check or \
change, in at most five short lines. Do not invent facts that are not in the log.";

/// The messages for `suggest_fix`.
pub fn fix_messages(service: &str, log: &str) -> Vec<Message> {
    vec![
        Message::system(FIX_SYSTEM),
        Message::user(format!("Service: {service}\nLast log lines:\n{log}")),
    ]
}

/// The journal record of one exchange (redacted by `Host::record_event`).
pub fn journal_record(
    op: &str,
    model: &str,
    messages: &[Message],
    answers: &[String],
    extra: Value,
) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": crate::redact::redact(&m.content)}))
        .collect();
    let answers: Vec<String> = answers.iter().map(|a| crate::redact::redact(a)).collect();
    let mut v = json!({
        "op": op,
        "model": model,
        "messages": messages,
        "answers": answers,
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

/// Validate a configured fallback decision.
pub fn check_fallback(d: &str) -> RResult<()> {
    if DECISIONS.contains(&d) {
        Ok(())
    } else {
        Err(RalfError::config(format!(
            "fallback_decision must be proceed, wait or skip, got `{d}`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_plain_fenced_and_wrapped() {
        assert_eq!(
            extract_json(r#"{"decision":"wait","reason":"x"}"#).unwrap()["decision"],
            "wait"
        );
        let fenced =
            "Sure!\n```json\n{\"decision\": \"skip\", \"reason\": \"r\"}\n```\nHope it helps";
        assert_eq!(extract_json(fenced).unwrap()["decision"], "skip");
        let prose =
            r#"I think {not json} but {"decision": "proceed", "reason": "brace } in string"} ok"#;
        let v = extract_json(prose).unwrap();
        assert_eq!(v["reason"], "brace } in string");
        assert!(extract_json("no json here").is_none());
        assert!(extract_json("[1, 2]").is_none());
    }

    #[test]
    fn schema_check() {
        assert_eq!(
            parse_decision(r#"{"decision":" Proceed ","reason":"ok"}"#)
                .unwrap()
                .decision,
            "proceed"
        );
        assert!(
            parse_decision(r#"{"decision":"deploy first","reason":"x"}"#)
                .unwrap_err()
                .contains("one of")
        );
        assert!(parse_decision(r#"{"decision":"wait"}"#)
            .unwrap_err()
            .contains("reason"));
        assert!(parse_decision(r#"{"decision":3,"reason":"x"}"#)
            .unwrap_err()
            .contains("string"));
        assert!(parse_decision("garbage").unwrap_err().contains("no JSON"));
    }

    #[test]
    fn log_trim_keeps_tail() {
        let lines: Vec<String> = (1..=100).map(|i| format!("line {i:03}")).collect();
        let t = trim_log(&lines, 50);
        assert!(t.starts_with("[… 95 earlier lines omitted]"), "{t}");
        assert!(t.ends_with("line 100"));
        assert!(!t.contains("line 095"));
        assert_eq!(trim_log(&lines[..2], 1000), "line 001\nline 002");
        let huge = vec!["x".repeat(100) + "END"];
        let t = trim_log(&huge, 20);
        assert!(t.ends_with("END") && t.contains("shortened"), "{t}");
    }
}
