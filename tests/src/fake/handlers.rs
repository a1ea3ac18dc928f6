//! Request routing and OpenAI-shaped responses.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::model::Behavior;
use super::util::{
    base64_encode, content_text, embedding_for, fixed_text, floor_boundary, tokens_for, Chunking,
    Pieces,
};
use super::{FakeBody, Shared};

/// Channel depth between a stream producer and the connection.
const STREAM_CHANNEL_DEPTH: usize = 2;
/// Pause before aborting a connection so already-sent frames get flushed.
const RESET_FLUSH_PAUSE: Duration = Duration::from_millis(30);

type Resp = Response<FakeBody>;

/// Handles one request end to end.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let id = shared.record(&parts, &body);
    let path = parts.uri.path();

    if parts.method == Method::GET && path == "/healthz" {
        let mut resp = Response::new(FakeBody::Full(Some(Bytes::from_static(b"ok"))));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return resp;
    }

    if let Some(expected) = &shared.expected_auth {
        let ok = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if !ok {
            return error_response(
                id,
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                Some("invalid_api_key"),
            );
        }
    }

    let endpoint = match (&parts.method, path) {
        (&Method::GET, "/v1/models") => return models(id),
        (&Method::POST, "/v1/chat/completions") => Endpoint::Chat,
        (&Method::POST, "/v1/completions") => Endpoint::Legacy,
        (&Method::POST, "/v1/embeddings") => Endpoint::Embeddings,
        _ => {
            return error_response(
                id,
                StatusCode::NOT_FOUND,
                &format!("Unknown request URL: {} {}", parts.method, path),
                "invalid_request_error",
                Some("not_found"),
            )
        }
    };

    let req: Map<String, Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) | Err(_) => {
            return error_response(
                id,
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                "invalid_request_error",
                None,
            )
        }
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let behavior = Behavior::parse(&model);

    if let Some(ms) = behavior.slow_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(secs) = behavior.ratelimit {
        let mut resp = error_response(
            id,
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests (fake upstream).",
            "requests",
            Some("rate_limit_exceeded"),
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    if let Some(code) = behavior.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        return error_response(
            id,
            status,
            &format!("fake upstream error {code}"),
            kind,
            None,
        );
    }

    let ctx = Ctx {
        shared,
        id,
        model,
        behavior,
    };
    match endpoint {
        Endpoint::Chat => chat(ctx, &req),
        Endpoint::Legacy => legacy(ctx, &req),
        Endpoint::Embeddings => embeddings(ctx, &req),
    }
}

enum Endpoint {
    Chat,
    Legacy,
    Embeddings,
}

/// Per-request context.
struct Ctx {
    shared: Arc<Shared>,
    id: u64,
    model: String,
    behavior: Behavior,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn set_request_id(resp: &mut Resp, id: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("fake-{id}")) {
        resp.headers_mut().insert("x-request-id", v);
    }
}

fn json_response(id: u64, status: StatusCode, value: &Value) -> Resp {
    let mut resp = Response::new(FakeBody::Full(Some(Bytes::from(value.to_string()))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_request_id(&mut resp, id);
    resp
}

fn error_response(
    id: u64,
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Resp {
    let body = json!({
        "error": {
            "message": message,
            "type": kind,
            "param": null,
            "code": code,
        }
    });
    json_response(id, status, &body)
}

/// A successful JSON answer; with `reset-after-*` the body is truncated under
/// a full content-length and the connection aborted.
fn ok_json(ctx: &Ctx, value: &Value) -> Resp {
    if ctx.behavior.reset_after.is_none() {
        return json_response(ctx.id, StatusCode::OK, value);
    }
    let full = Bytes::from(value.to_string());
    let (tx, rx) = mpsc::channel(STREAM_CHANNEL_DEPTH);
    let mut resp = Response::new(FakeBody::Channel(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(full.len() as u64));
    set_request_id(&mut resp, ctx.id);
    tokio::spawn(async move {
        let half = full.slice(..full.len() / 2);
        if tx.send(Ok(half)).await.is_ok() {
            abort_after_pause(&tx).await;
        }
    });
    resp
}

/// Waits a moment so already-sent frames are flushed, then errors the body so
/// hyper drops the connection without finishing the message.
async fn abort_after_pause(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>) {
    tokio::select! {
        _ = tokio::time::sleep(RESET_FLUSH_PAUSE) => {}
        _ = tx.closed() => return,
    }
    let _ = tx
        .send(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fake upstream reset",
        )))
        .await;
}

fn models(id: u64) -> Resp {
    let body = json!({
        "object": "list",
        "data": [
            {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}
        ]
    });
    json_response(id, StatusCode::OK, &body)
}

/// Token usage of one answer.
#[derive(Debug, Clone, Copy)]
struct Usage {
    prompt: u64,
    completion: u64,
}

impl Usage {
    fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// Final content + finish reason + usage, after applying `fixed-*` and max tokens.
struct Answer {
    content: String,
    finish_reason: &'static str,
    usage: Usage,
}

fn make_answer(
    behavior: &Behavior,
    echo: String,
    prompt_tokens: u64,
    req: &Map<String, Value>,
) -> Answer {
    let mut content = match behavior.fixed {
        Some(n) => fixed_text(n),
        None => echo,
    };
    let mut finish_reason = "stop";
    let mut completion = tokens_for(content.len()).max(1);
    let max = req
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64));
    if let Some(max) = max {
        if completion > max {
            let cut = usize::try_from(max.saturating_mul(4)).unwrap_or(usize::MAX);
            let cut = floor_boundary(&content, cut);
            content.truncate(cut);
            finish_reason = "length";
            completion = tokens_for(content.len()).max(1).min(max);
        }
    }
    Answer {
        content,
        finish_reason,
        usage: Usage {
            prompt: prompt_tokens,
            completion,
        },
    }
}

fn wants_stream(req: &Map<String, Value>) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

fn include_usage(req: &Map<String, Value>) -> bool {
    req.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn chat(ctx: Ctx, req: &Map<String, Value>) -> Resp {
    let empty = Vec::new();
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut prompt_tokens = 0u64;
    let mut last_user = String::new();
    for m in messages {
        let text = m.get("content").map(content_text).unwrap_or_default();
        prompt_tokens += tokens_for(text.len()) + 3;
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    let answer = make_answer(
        &ctx.behavior,
        format!("echo: {last_user}"),
        prompt_tokens,
        req,
    );
    if wants_stream(req) {
        return stream_response(ctx, Kind::Chat, answer, include_usage(req));
    }
    let body = json!({
        "id": format!("chatcmpl-fake-{}", ctx.id),
        "object": "chat.completion",
        "created": now_secs(),
        "model": ctx.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.content, "refusal": null},
            "logprobs": null,
            "finish_reason": answer.finish_reason,
        }],
        "usage": answer.usage.to_json(),
        "system_fingerprint": "fp_fake",
    });
    ok_json(&ctx, &body)
}

fn legacy(ctx: Ctx, req: &Map<String, Value>) -> Resp {
    let prompt = match req.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).unwrap_or("").to_owned(),
        _ => String::new(),
    };
    let answer = make_answer(
        &ctx.behavior,
        format!("echo: {prompt}"),
        tokens_for(prompt.len()),
        req,
    );
    if wants_stream(req) {
        return stream_response(ctx, Kind::Legacy, answer, include_usage(req));
    }
    let body = json!({
        "id": format!("cmpl-fake-{}", ctx.id),
        "object": "text_completion",
        "created": now_secs(),
        "model": ctx.model,
        "choices": [{
            "text": answer.content,
            "index": 0,
            "logprobs": null,
            "finish_reason": answer.finish_reason,
        }],
        "usage": answer.usage.to_json(),
    });
    ok_json(&ctx, &body)
}

fn token_array(v: &Value) -> Option<String> {
    let arr = v.as_array()?;
    let mut out = Vec::with_capacity(arr.len());
    for t in arr {
        out.push(t.as_i64()?.to_string());
    }
    Some(out.join(","))
}

fn embeddings(ctx: Ctx, req: &Map<String, Value>) -> Resp {
    // (text to hash, token count)
    let inputs: Option<Vec<(String, u64)>> = match req.get("input") {
        Some(Value::String(s)) => Some(vec![(s.clone(), tokens_for(s.len()))]),
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_number) {
                token_array(&Value::Array(items.clone())).map(|t| vec![(t, items.len() as u64)])
            } else {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Some((s.clone(), tokens_for(s.len()))),
                        Value::Array(a) => token_array(item).map(|t| (t, a.len() as u64)),
                        _ => None,
                    })
                    .collect()
            }
        }
        _ => None,
    };
    let Some(inputs) = inputs else {
        return error_response(
            ctx.id,
            StatusCode::BAD_REQUEST,
            "'input' must be a non-empty string, array of strings, or array of token arrays",
            "invalid_request_error",
            None,
        );
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut prompt_tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, toks))| {
            prompt_tokens += toks;
            let v = embedding_for(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                Value::Array(v.iter().map(|&f| json!(f)).collect())
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": ctx.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    ok_json(&ctx, &body)
}

/// Which streaming dialect to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Legacy,
}

/// Everything a stream producer needs.
struct StreamSpec {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    answer: Answer,
    chunking: Chunking,
    delay: Duration,
    include_usage: bool,
    reset_after: Option<usize>,
}

impl StreamSpec {
    fn event(value: &Value) -> Bytes {
        Bytes::from(format!("data: {value}\n\n"))
    }

    /// One chunk with a single choice (`payload` is the delta for chat, the
    /// text for legacy).
    fn choice_chunk(&self, payload: Value, finish: Option<&str>) -> Bytes {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(self.id.clone()));
        let choice = match self.kind {
            Kind::Chat => {
                obj.insert("object".into(), "chat.completion.chunk".into());
                json!({"index": 0, "delta": payload, "logprobs": null, "finish_reason": finish})
            }
            Kind::Legacy => {
                obj.insert("object".into(), "text_completion".into());
                json!({"text": payload, "index": 0, "logprobs": null, "finish_reason": finish})
            }
        };
        obj.insert("created".into(), self.created.into());
        obj.insert("model".into(), Value::String(self.model.clone()));
        if self.kind == Kind::Chat {
            obj.insert("system_fingerprint".into(), "fp_fake".into());
        }
        obj.insert("choices".into(), Value::Array(vec![choice]));
        if self.include_usage {
            obj.insert("usage".into(), Value::Null);
        }
        Self::event(&Value::Object(obj))
    }

    fn content_chunk(&self, piece: &str) -> Bytes {
        match self.kind {
            Kind::Chat => self.choice_chunk(json!({"content": piece}), None),
            Kind::Legacy => self.choice_chunk(Value::String(piece.to_owned()), None),
        }
    }

    fn finish_chunk(&self) -> Bytes {
        let payload = match self.kind {
            Kind::Chat => json!({}),
            Kind::Legacy => Value::String(String::new()),
        };
        self.choice_chunk(payload, Some(self.answer.finish_reason))
    }

    fn usage_chunk(&self) -> Bytes {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(self.id.clone()));
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Legacy => "text_completion",
        };
        obj.insert("object".into(), object.into());
        obj.insert("created".into(), self.created.into());
        obj.insert("model".into(), Value::String(self.model.clone()));
        if self.kind == Kind::Chat {
            obj.insert("system_fingerprint".into(), "fp_fake".into());
        }
        obj.insert("choices".into(), Value::Array(Vec::new()));
        obj.insert("usage".into(), self.answer.usage.to_json());
        Self::event(&Value::Object(obj))
    }
}

fn stream_response(ctx: Ctx, kind: Kind, answer: Answer, include_usage: bool) -> Resp {
    let (chunking, delay) = match ctx.behavior.chunks {
        Some((n, ms)) => (Chunking::Exact(n), Duration::from_millis(ms)),
        None => (Chunking::Default, Duration::ZERO),
    };
    let prefix = match kind {
        Kind::Chat => "chatcmpl-fake-",
        Kind::Legacy => "cmpl-fake-",
    };
    let spec = StreamSpec {
        kind,
        id: format!("{prefix}{}", ctx.id),
        created: now_secs(),
        model: ctx.model,
        answer,
        chunking,
        delay,
        include_usage,
        reset_after: ctx.behavior.reset_after,
    };
    let (tx, rx) = mpsc::channel(STREAM_CHANNEL_DEPTH);
    let mut resp = Response::new(FakeBody::Channel(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_request_id(&mut resp, ctx.id);
    let shared = ctx.shared;
    tokio::spawn(async move {
        match produce(&spec, &tx).await {
            Outcome::Done => {
                shared.completed_streams.fetch_add(1, Ordering::SeqCst);
            }
            Outcome::Cancelled => {
                shared.cancelled_streams.fetch_add(1, Ordering::SeqCst);
            }
            Outcome::Reset => {}
        }
    });
    resp
}

enum Outcome {
    /// `[DONE]` was handed to the body.
    Done,
    /// The body was dropped (client went away) before `[DONE]`.
    Cancelled,
    /// We deliberately aborted the connection (`reset-after-*`).
    Reset,
}

/// Marker: the receiving side is gone.
struct Gone;

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn send(tx: &Tx, bytes: Bytes) -> Result<(), Gone> {
    tx.send(Ok(bytes)).await.map_err(|_| Gone)
}

/// Sleeps `d`, returning early with `Gone` if the body is dropped meanwhile.
async fn pause(tx: &Tx, d: Duration) -> Result<(), Gone> {
    if d.is_zero() {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = tx.closed() => Err(Gone),
    }
}

async fn produce(spec: &StreamSpec, tx: &Tx) -> Outcome {
    match produce_inner(spec, tx).await {
        Ok(o) => o,
        Err(Gone) => Outcome::Cancelled,
    }
}

async fn produce_inner(spec: &StreamSpec, tx: &Tx) -> Result<Outcome, Gone> {
    if spec.kind == Kind::Chat {
        send(
            tx,
            spec.choice_chunk(json!({"role": "assistant", "content": ""}), None),
        )
        .await?;
    }
    for (i, piece) in Pieces::new(&spec.answer.content, spec.chunking).enumerate() {
        if spec.reset_after.is_some_and(|n| i >= n) {
            break;
        }
        if i > 0 {
            pause(tx, spec.delay).await?;
        }
        send(tx, spec.content_chunk(piece)).await?;
    }
    if spec.reset_after.is_some() {
        abort_after_pause(tx).await;
        return Ok(Outcome::Reset);
    }
    send(tx, spec.finish_chunk()).await?;
    if spec.include_usage {
        send(tx, spec.usage_chunk()).await?;
    }
    send(tx, Bytes::from_static(b"data: [DONE]\n\n")).await?;
    Ok(Outcome::Done)
}
