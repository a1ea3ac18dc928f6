//! OpenAI wire format: request validation and usage extraction.
//!
//! The request body is parsed once into a JSON object (key order preserved) so the gateway can
//! rewrite `model` and forward every other field untouched. Validation checks the fields Sluice
//! relies on and the common type mistakes, naming the field in the error like OpenAI's `param`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::PolicyError;

/// The OpenAI API surfaces Sluice serves that take a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKind {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl ApiKind {
    /// Path below the provider's base URL (`/chat/completions`, ...).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }
}

/// A validated request body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The whole body as sent (object keys in their original order).
    pub body: Map<String, Value>,
    /// The client-facing model name.
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
}

impl ParsedRequest {
    /// Replace `model` with the upstream model name and serialize for the provider.
    pub fn upstream_body(&mut self, upstream_model: &str) -> Vec<u8> {
        if let Some(m) = self.body.get_mut("model") {
            *m = Value::String(upstream_model.to_owned());
        }
        // Serializing a `Map<String, Value>` cannot fail (string keys, no custom Serialize).
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

const CHAT_ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Parse and validate a request body for `api`.
pub fn parse_request(api: ApiKind, bytes: &[u8]) -> Result<ParsedRequest, PolicyError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| PolicyError::InvalidJson {
        // serde_json's message names line/column and what was expected, never the content.
        reason: e.to_string(),
    })?;
    let Value::Object(body) = value else {
        return Err(PolicyError::InvalidField {
            param: "body".into(),
            reason: "expected a JSON object".into(),
        });
    };
    let model = match body.get("model") {
        None | Some(Value::Null) => return Err(missing("model")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(invalid("model", "must not be empty"));
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    let stream = opt_bool(&body, "stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(wrong_type(
                    "stream_options.include_usage",
                    "a boolean",
                    other,
                ))
            }
        },
        Some(other) => return Err(wrong_type("stream_options", "an object", other)),
    };
    match api {
        ApiKind::ChatCompletions => validate_chat(&body)?,
        ApiKind::Completions => validate_prompt(&body, "prompt")?,
        ApiKind::Embeddings => {
            validate_prompt(&body, "input")?;
            if stream {
                return Err(invalid("stream", "embeddings cannot be streamed"));
            }
        }
    }
    for field in ["max_tokens", "max_completion_tokens"] {
        opt_uint(&body, field)?;
    }
    if let Some(n) = opt_uint(&body, "n")? {
        if n == 0 {
            return Err(invalid("n", "must be at least 1"));
        }
    }
    if let Some(t) = opt_number(&body, "temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid("temperature", "must be between 0 and 2"));
        }
    }
    if let Some(p) = opt_number(&body, "top_p")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid("top_p", "must be between 0 and 1"));
        }
    }
    Ok(ParsedRequest {
        body,
        model,
        stream,
        include_usage,
    })
}

fn validate_chat(body: &Map<String, Value>) -> Result<(), PolicyError> {
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(invalid("messages", "must contain at least one message"));
    }
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(m) = message else {
            return Err(wrong_type(&format!("messages[{i}]"), "an object", message));
        };
        match m.get("role") {
            None | Some(Value::Null) => return Err(missing(&format!("messages[{i}].role"))),
            Some(Value::String(r)) if CHAT_ROLES.contains(&r.as_str()) => {}
            Some(Value::String(_)) => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    "must be one of system, developer, user, assistant, tool, function",
                ));
            }
            Some(other) => {
                return Err(wrong_type(
                    &format!("messages[{i}].role"),
                    "a string",
                    other,
                ))
            }
        }
        match m.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    if !part.is_object() {
                        return Err(wrong_type(
                            &format!("messages[{i}].content[{j}]"),
                            "an object",
                            part,
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(wrong_type(
                    &format!("messages[{i}].content"),
                    "a string or an array of content parts",
                    other,
                ));
            }
        }
    }
    Ok(())
}

/// `prompt` (completions) and `input` (embeddings): a string, an array of strings, an array of
/// token ids, or an array of token-id arrays.
fn validate_prompt(body: &Map<String, Value>, field: &str) -> Result<(), PolicyError> {
    const EXPECTED: &str = "a string, an array of strings, or an array of token arrays";
    match body.get(field) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
            let ok = items.iter().all(|v| match v {
                Value::String(_) => true,
                Value::Number(n) => n.is_u64(),
                Value::Array(t) => t.iter().all(|x| x.as_u64().is_some()),
                _ => false,
            });
            if ok {
                Ok(())
            } else {
                Err(invalid(field, &format!("expected {EXPECTED}")))
            }
        }
        Some(other) => Err(wrong_type(field, EXPECTED, other)),
    }
}

fn opt_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>, PolicyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(field, "a boolean", other)),
    }
}

fn opt_uint(body: &Map<String, Value>, field: &str) -> Result<Option<u64>, PolicyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a non-negative integer")),
        Some(other) => Err(wrong_type(field, "an integer", other)),
    }
}

fn opt_number(body: &Map<String, Value>, field: &str) -> Result<Option<f64>, PolicyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(wrong_type(field, "a number", other)),
    }
}

fn missing(param: &str) -> PolicyError {
    PolicyError::MissingField {
        param: param.to_owned(),
    }
}

fn invalid(param: &str, reason: &str) -> PolicyError {
    PolicyError::InvalidField {
        param: param.to_owned(),
        reason: reason.to_owned(),
    }
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> PolicyError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    invalid(param, &format!("expected {expected}, got {got}"))
}

/// Token usage as reported by a provider (OpenAI `usage` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum as reported.
    #[serde(default)]
    pub total_tokens: u64,
    /// Breakdown of the prompt (OpenAI reports cached prompt tokens here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the provider's prompt cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    /// Cached prompt tokens (0 when not reported).
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

#[derive(Deserialize)]
struct UsageCarrier {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `usage` object of a JSON response body (chat, completions, embeddings, or one stream
/// chunk), if present and not null.
pub fn usage_from_json(bytes: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<UsageCarrier>(bytes).ok()?.usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ParsedRequest, PolicyError> {
        parse_request(ApiKind::ChatCompletions, body.as_bytes())
    }

    fn param_of(e: PolicyError) -> String {
        match e {
            PolicyError::InvalidField { param, .. } | PolicyError::MissingField { param } => param,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn valid_chat_request_keeps_fields_and_order() {
        let mut r = chat(
            r#"{"model":"m","temperature":0.7,"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"x_custom":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
        let out = String::from_utf8(r.upstream_body("up-1")).unwrap();
        assert_eq!(
            out,
            r#"{"model":"up-1","temperature":0.7,"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"x_custom":[1,2]}"#
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert!(matches!(chat("{"), Err(PolicyError::InvalidJson { .. })));
        assert_eq!(param_of(chat("[1]").unwrap_err()), "body");
        assert_eq!(param_of(chat(r#"{"messages":[]}"#).unwrap_err()), "model");
        assert_eq!(
            param_of(chat(r#"{"model":3,"messages":[]}"#).unwrap_err()),
            "model"
        );
        assert_eq!(param_of(chat(r#"{"model":"m"}"#).unwrap_err()), "messages");
        assert_eq!(
            param_of(chat(r#"{"model":"m","messages":"hi"}"#).unwrap_err()),
            "messages"
        );
        assert_eq!(
            param_of(chat(r#"{"model":"m","messages":[{"content":"x"}]}"#).unwrap_err()),
            "messages[0].role"
        );
        assert_eq!(
            param_of(
                chat(r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":5}]}"#)
                    .unwrap_err()
            ),
            "messages[1].content"
        );
        let ok = r#""messages":[{"role":"user","content":"a"}]"#;
        for (field, bad) in [
            ("stream", r#""yes""#),
            ("max_tokens", "-1"),
            ("max_tokens", "1.5"),
            ("n", "0"),
            ("temperature", "3"),
            ("top_p", r#""x""#),
            ("stream_options", "true"),
        ] {
            let body = format!(r#"{{"model":"m",{ok},"{field}":{bad}}}"#);
            assert_eq!(param_of(chat(&body).unwrap_err()), field, "{body}");
        }
    }

    #[test]
    fn completions_and_embeddings_inputs() {
        let p = |api, b: &str| parse_request(api, b.as_bytes());
        assert!(p(ApiKind::Completions, r#"{"model":"m","prompt":"hi"}"#).is_ok());
        assert!(p(
            ApiKind::Completions,
            r#"{"model":"m","prompt":[[1,2],[3]]}"#
        )
        .is_ok());
        assert_eq!(
            param_of(p(ApiKind::Completions, r#"{"model":"m"}"#).unwrap_err()),
            "prompt"
        );
        assert!(p(ApiKind::Embeddings, r#"{"model":"m","input":["a","b"]}"#).is_ok());
        assert_eq!(
            param_of(p(ApiKind::Embeddings, r#"{"model":"m","input":[{}]}"#).unwrap_err()),
            "input"
        );
        assert_eq!(
            param_of(
                p(
                    ApiKind::Embeddings,
                    r#"{"model":"m","input":"a","stream":true}"#
                )
                .unwrap_err()
            ),
            "stream"
        );
    }

    #[test]
    fn usage_extraction() {
        let u = usage_from_json(
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 4, 7)
        );
        assert_eq!(usage_from_json(br#"{"usage":null}"#), None);
        assert_eq!(usage_from_json(br#"{"id":"x"}"#), None);
        // embeddings report only prompt and total
        let e = usage_from_json(br#"{"usage":{"prompt_tokens":5,"total_tokens":5}}"#).unwrap();
        assert_eq!((e.prompt_tokens, e.completion_tokens), (5, 0));
        let c = usage_from_json(
            br#"{"usage":{"prompt_tokens":50,"completion_tokens":1,"total_tokens":51,"prompt_tokens_details":{"cached_tokens":32}}}"#,
        )
        .unwrap();
        assert_eq!(c.cached_tokens(), 32);
        assert_eq!(e.cached_tokens(), 0);
    }
}
