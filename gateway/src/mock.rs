//! The built-in `mock` provider: deterministic answers with realistic shapes, usage and
//! streaming, and no network. For the quickstart, demos and benchmarks — not a real model.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use sluice_policies::openai::{ApiKind, ParsedRequest};

/// A complete mock answer: what an upstream would have sent.
pub struct MockResponse {
    /// `application/json` or `text/event-stream`.
    pub content_type: &'static str,
    /// Body pieces, sent in order (one SSE event each when streaming).
    pub chunks: Vec<Bytes>,
    /// Prompt tokens (estimated).
    pub prompt_tokens: u64,
    /// Completion tokens (estimated).
    pub completion_tokens: u64,
}

/// Rough token estimate: 4 bytes per token, at least 1.
fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4).max(1)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The last user message of a chat request, and the total bytes of all message contents.
fn last_user_and_total(body: &Map<String, Value>) -> (String, usize, usize) {
    let messages = body.get("messages").and_then(Value::as_array);
    let mut last = String::new();
    let mut total = 0;
    let mut count = 0;
    for m in messages.into_iter().flatten() {
        let text = text_of(m.get("content"));
        total += text.len();
        count += 1;
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last = text;
        }
    }
    (last, total, count)
}

fn reply_for(prompt: &str) -> String {
    let mut quoted: String = prompt.chars().take(200).collect();
    if quoted.len() < prompt.len() {
        quoted.push('…');
    }
    format!("This is a mock reply from Sluice's built-in mock provider. You said: \"{quoted}\"")
}

/// Cut `text` to at most `max_tokens` (by the 4-bytes estimate) on a char boundary.
fn clamp(text: String, max_tokens: Option<u64>) -> (String, &'static str) {
    let Some(max) = max_tokens else {
        return (text, "stop");
    };
    let limit = usize::try_from(max.saturating_mul(4)).unwrap_or(usize::MAX);
    if text.len() <= limit {
        return (text, "stop");
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (text[..cut].to_owned(), "length")
}

fn max_tokens(body: &Map<String, Value>) -> Option<u64> {
    body.get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Split text into word-ish pieces of about 12 bytes for streaming.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i - start >= 12 {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Answer `req` for `api` as the mock model `model`.
pub fn respond(api: ApiKind, req: &ParsedRequest, model: &str, request_id: &str) -> MockResponse {
    match api {
        ApiKind::ChatCompletions => chat(req, model, request_id),
        ApiKind::Completions => completion(req, model, request_id),
        ApiKind::Embeddings => embeddings(req, model),
    }
}

fn usage(p: u64, c: u64) -> Value {
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn chat(req: &ParsedRequest, model: &str, request_id: &str) -> MockResponse {
    let (last, total, count) = last_user_and_total(&req.body);
    let (content, finish) = clamp(reply_for(&last), max_tokens(&req.body));
    let prompt_tokens = tokens(total) + 3 * count as u64;
    let completion_tokens = tokens(content.len());
    let id = format!("chatcmpl-mock-{request_id}");
    let created = now();
    if !req.stream {
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                         "logprobs": null, "finish_reason": finish}],
            "usage": usage(prompt_tokens, completion_tokens),
            "system_fingerprint": "fp_sluice_mock",
        });
        return MockResponse {
            content_type: "application/json",
            chunks: vec![Bytes::from(body.to_string())],
            prompt_tokens,
            completion_tokens,
        };
    }
    let with_usage = req.include_usage;
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut v = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_sluice_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if with_usage {
            v["usage"] = Value::Null;
        }
        sse(&v)
    };
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    for piece in pieces(&content) {
        chunks.push(chunk(json!({"content": piece}), None));
    }
    chunks.push(chunk(json!({}), Some(finish)));
    if with_usage {
        chunks.push(sse(&json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_sluice_mock", "choices": [],
            "usage": usage(prompt_tokens, completion_tokens),
        })));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    MockResponse {
        content_type: "text/event-stream",
        chunks,
        prompt_tokens,
        completion_tokens,
    }
}

fn first_prompt(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => match items.first() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

fn completion(req: &ParsedRequest, model: &str, request_id: &str) -> MockResponse {
    let prompt = first_prompt(req.body.get("prompt"));
    let (text, finish) = clamp(reply_for(&prompt), max_tokens(&req.body));
    let prompt_tokens = tokens(prompt.len());
    let completion_tokens = tokens(text.len());
    let id = format!("cmpl-mock-{request_id}");
    let created = now();
    if !req.stream {
        let body = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
            "usage": usage(prompt_tokens, completion_tokens),
        });
        return MockResponse {
            content_type: "application/json",
            chunks: vec![Bytes::from(body.to_string())],
            prompt_tokens,
            completion_tokens,
        };
    }
    let chunk = |t: &str, finish: Option<&str>| {
        sse(&json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": t, "index": 0, "logprobs": null, "finish_reason": finish}],
        }))
    };
    let mut chunks: Vec<Bytes> = pieces(&text).into_iter().map(|p| chunk(p, None)).collect();
    chunks.push(chunk("", Some(finish)));
    if req.include_usage {
        chunks.push(sse(&json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [], "usage": usage(prompt_tokens, completion_tokens),
        })));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    MockResponse {
        content_type: "text/event-stream",
        chunks,
        prompt_tokens,
        completion_tokens,
    }
}

/// A deterministic unit vector for `text` (FNV-1a seeded xorshift), `dims` long.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v = Vec::with_capacity(dims);
    for _ in 0..dims {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.push(((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0);
    }
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(char::from(B64[(n >> 18) as usize & 63]));
        out.push(char::from(B64[(n >> 12) as usize & 63]));
        out.push(if c.len() > 1 {
            char::from(B64[(n >> 6) as usize & 63])
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            char::from(B64[n as usize & 63])
        } else {
            '='
        });
    }
    out
}

fn embeddings(req: &ParsedRequest, model: &str) -> MockResponse {
    let inputs: Vec<String> = match req.body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let dims = req
        .body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(384, |d| d.clamp(1, 4096) as usize);
    let as_base64 = req.body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = vector(text, dims);
            let embedding = if as_base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt_tokens: u64 = inputs.iter().map(|s| tokens(s.len())).sum();
    let body = json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    MockResponse {
        content_type: "application/json",
        chunks: vec![Bytes::from(body.to_string())],
        prompt_tokens,
        completion_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_policies::openai::parse_request;
    use sluice_policies::sse::SseObserver;

    fn parse(api: ApiKind, s: &str) -> ParsedRequest {
        parse_request(api, s.as_bytes()).unwrap()
    }

    #[test]
    fn chat_json_is_deterministic_and_counts_usage() {
        let req = parse(
            ApiKind::ChatCompletions,
            r#"{"model":"mock","messages":[{"role":"user","content":"hello"}]}"#,
        );
        let a = respond(ApiKind::ChatCompletions, &req, "mock-1", "r1");
        let v: Value = serde_json::from_slice(&a.chunks[0]).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert!(v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("\"hello\""));
        assert_eq!(v["usage"]["completion_tokens"], a.completion_tokens);
        let b = respond(ApiKind::ChatCompletions, &req, "mock-1", "r2");
        let w: Value = serde_json::from_slice(&b.chunks[0]).unwrap();
        assert_eq!(v["choices"], w["choices"]);
    }

    #[test]
    fn chat_stream_is_a_complete_openai_stream() {
        let req = parse(
            ApiKind::ChatCompletions,
            r#"{"model":"mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"tell me a story about a gateway"}]}"#,
        );
        let a = respond(ApiKind::ChatCompletions, &req, "mock-1", "r1");
        assert!(a.chunks.len() > 4);
        let mut o = SseObserver::new();
        a.chunks.iter().for_each(|c| o.feed(c));
        assert!(o.complete());
        assert_eq!(o.usage.unwrap().completion_tokens, a.completion_tokens);
    }

    #[test]
    fn max_tokens_cuts_with_length() {
        let req = parse(
            ApiKind::ChatCompletions,
            r#"{"model":"mock","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        let a = respond(ApiKind::ChatCompletions, &req, "m", "r");
        let v: Value = serde_json::from_slice(&a.chunks[0]).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .len(),
            8
        );
    }

    #[test]
    fn embeddings_float_and_base64() {
        let req = parse(
            ApiKind::Embeddings,
            r#"{"model":"e","input":["a","b"],"dimensions":4}"#,
        );
        let a = respond(ApiKind::Embeddings, &req, "e", "r");
        let v: Value = serde_json::from_slice(&a.chunks[0]).unwrap();
        let e = v["data"][0]["embedding"].as_array().unwrap();
        assert_eq!(e.len(), 4);
        let norm: f64 = e.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let req = parse(
            ApiKind::Embeddings,
            r#"{"model":"e","input":"a","dimensions":4,"encoding_format":"base64"}"#,
        );
        let b = respond(ApiKind::Embeddings, &req, "e", "r");
        let v: Value = serde_json::from_slice(&b.chunks[0]).unwrap();
        assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 24);
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
