//! Reading servers' answers: completions, stream chunks, model lists, error shapes.

use super::ChatResponse;
use crate::error::{RResult, RalfError};
use serde_json::Value;

pub(crate) fn parse_completion(v: &Value, url: &str) -> RResult<ChatResponse> {
    if v.get("error").is_some() {
        let msg = error_message(v).unwrap_or_default();
        return Err(RalfError::unavailable(format!(
            "exo: {url} answered 200 with an error: {msg}"
        )));
    }
    let choice = v.get("choices").and_then(|c| c.get(0)).ok_or_else(|| {
        RalfError::unavailable(format!(
            "exo: {url} answered 200 without choices: {}",
            excerpt(&v.to_string())
        ))
    })?;
    let content = choice
        .pointer("/message/content")
        .cloned()
        .unwrap_or(Value::Null);
    let text = match content {
        Value::String(s) => s,
        Value::Null => String::new(),
        // content given as parts: join the text parts
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    };
    let (text, think) = split_think(&text);
    let mut reasoning = reasoning_of(choice.get("message"));
    reasoning.push_str(&think);
    let finish_reason = choice
        .get("finish_reason")
        .and_then(|f| f.as_str())
        .map(String::from);
    if finish_reason.as_deref() == Some("error") {
        return Err(RalfError::unavailable(format!(
            "exo: generation failed on the server (finish_reason: error); partial text: {}",
            excerpt(&text)
        )));
    }
    Ok(ChatResponse {
        text,
        reasoning,
        finish_reason,
        model: v.get("model").and_then(|m| m.as_str()).map(String::from),
        usage: v.get("usage").cloned(),
        comments: 0,
    })
}

pub(crate) fn apply_chunk(v: &Value, out: &mut ChatResponse, on_delta: &mut impl FnMut(&str)) {
    if out.model.is_none() {
        out.model = v.get("model").and_then(|m| m.as_str()).map(String::from);
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        out.usage = Some(u.clone());
    }
    let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
        return; // a usage-only chunk
    };
    let piece = choice
        .pointer("/delta/content")
        .or_else(|| choice.pointer("/message/content"))
        .and_then(|c| c.as_str());
    if let Some(p) = piece {
        if !p.is_empty() {
            out.text.push_str(p);
            on_delta(p);
        }
    }
    let r = reasoning_of(choice.get("delta").or_else(|| choice.get("message")));
    out.reasoning.push_str(&r);
    if let Some(f) = choice.get("finish_reason").and_then(|f| f.as_str()) {
        out.finish_reason = Some(f.to_string());
    }
}

/// The reasoning fields servers use beside `content`: `reasoning_content` (exo v1, llama.cpp with
/// `reasoning_format: deepseek`, DeepSeek, vLLM), `reasoning` (Ollama's /v1, OpenRouter),
/// `thinking` (Ollama native).
pub const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "reasoning", "thinking"];

fn reasoning_of(msg: Option<&Value>) -> String {
    let Some(m) = msg else {
        return String::new();
    };
    REASONING_FIELDS
        .iter()
        .filter_map(|f| m.get(*f).and_then(|v| v.as_str()))
        .collect::<Vec<_>>()
        .join("")
}

/// Split inline `<think>..</think>` blocks (servers that leave the tags in `content`, e.g. llama.cpp
/// with `reasoning_format: none`) from the answer: `(answer, thinking)`. An unclosed `<think>`
/// makes the rest thinking.
pub fn split_think(text: &str) -> (String, String) {
    if !text.contains("<think>") {
        return (text.to_string(), String::new());
    }
    let mut answer = String::new();
    let mut think = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("<think>") {
        answer.push_str(&rest[..i]);
        let after = &rest[i + "<think>".len()..];
        match after.find("</think>") {
            Some(j) => {
                think.push_str(&after[..j]);
                rest = &after[j + "</think>".len()..];
            }
            None => {
                think.push_str(after);
                rest = "";
            }
        }
    }
    answer.push_str(rest);
    (answer.trim_start().to_string(), think)
}

/// The model ids in a `/v1/models` answer (OpenAI `data[].id`; Ollama native `models[].name` too).
pub fn model_ids(v: &Value) -> Vec<String> {
    let list = v
        .get("data")
        .or_else(|| v.get("models"))
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|m| {
            m.get("id")
                .or_else(|| m.get("model"))
                .or_else(|| m.get("name"))
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .collect()
}

/// A readable message from any of the error shapes servers use.
pub fn error_message(v: &Value) -> Option<String> {
    if let Some(e) = v.get("error") {
        return Some(match e {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                let msg = o
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_string();
                let ty = o.get("type").and_then(|m| m.as_str()).unwrap_or("");
                match (msg.is_empty(), ty.is_empty()) {
                    (false, false) => format!("{msg} ({ty})"),
                    (false, true) => msg,
                    (true, false) => ty.to_string(),
                    (true, true) => Value::Object(o.clone()).to_string(),
                }
            }
            other => other.to_string(),
        });
    }
    if let Some(d) = v.get("detail") {
        return Some(match d {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|it| {
                    let loc = it
                        .get("loc")
                        .and_then(|l| l.as_array())
                        .map(|l| {
                            l.iter()
                                .map(|p| {
                                    p.as_str()
                                        .map(String::from)
                                        .unwrap_or_else(|| p.to_string())
                                })
                                .collect::<Vec<_>>()
                                .join(".")
                        })
                        .unwrap_or_default();
                    let msg = it.get("msg").and_then(|m| m.as_str()).unwrap_or("invalid");
                    if loc.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{loc}: {msg}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        });
    }
    None
}

pub(crate) fn excerpt(s: &str) -> String {
    let t = s.trim();
    let mut out: String = t.chars().take(200).collect();
    if t.chars().count() > 200 {
        out.push('…');
    }
    crate::redact::redact(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;
    #[test]
    fn error_shapes() {
        let openai = json!({"error": {"message": "No instance found for model x", "type": "Not Found", "param": null, "code": 404}});
        assert_eq!(
            error_message(&openai).unwrap(),
            "No instance found for model x (Not Found)"
        );
        assert_eq!(
            error_message(&json!({"error": "model \"x\" not found"})).unwrap(),
            "model \"x\" not found"
        );
        assert_eq!(
            error_message(&json!({"detail": "Response generation timed out"})).unwrap(),
            "Response generation timed out"
        );
        let fastapi = json!({"detail": [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]});
        assert_eq!(
            error_message(&fastapi).unwrap(),
            "body.model: Field required"
        );
        assert_eq!(error_message(&json!({"ok": 1})), None);
    }

    #[test]
    fn model_lists() {
        let v = json!({"object": "list", "data": [{"id": "a"}, {"id": "b"}]});
        assert_eq!(model_ids(&v), ["a", "b"]);
        assert_eq!(
            model_ids(&json!({"models": [{"name": "llama3.2:3b"}]})),
            ["llama3.2:3b"]
        );
    }

    #[test]
    fn reasoning_is_kept_apart() {
        let v = json!({"choices": [{"message": {"content": "{}", "reasoning_content": "hmm"}, "finish_reason": "stop"}]});
        let r = parse_completion(&v, "u").unwrap();
        assert_eq!((r.text.as_str(), r.reasoning.as_str()), ("{}", "hmm"));
        let v = json!({"choices": [{"message": {"content": "<think>a\nb</think>\n{\"x\":1}"}}]});
        let r = parse_completion(&v, "u").unwrap();
        assert_eq!(
            (r.text.as_str(), r.reasoning.as_str()),
            ("{\"x\":1}", "a\nb")
        );
        let mut out = ChatResponse::default();
        let mut n = 0;
        apply_chunk(
            &json!({"choices": [{"delta": {"reasoning": "think"}}]}),
            &mut out,
            &mut |_| n += 1,
        );
        assert_eq!(
            (out.text.as_str(), out.reasoning.as_str(), n),
            ("", "think", 0)
        );
        assert_eq!(
            split_think("<think>never closed"),
            (String::new(), "never closed".into())
        );
    }

    #[test]
    fn completion_parsing() {
        let v = json!({"object": "chat.completion", "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": []}, "finish_reason": "tool_calls"}]});
        assert_eq!(parse_completion(&v, "u").unwrap().text, "");
        let bad = json!({"choices": []});
        assert_eq!(
            parse_completion(&bad, "u").unwrap_err().kind,
            ErrorKind::Unavailable
        );
        let err = json!({"choices": [{"message": {"content": "par"}, "finish_reason": "error"}]});
        assert_eq!(
            parse_completion(&err, "u").unwrap_err().kind,
            ErrorKind::Unavailable
        );
    }
}
