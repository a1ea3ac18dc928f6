#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::util::base64_encode;
use super::{FakeLlm, FakeOptions};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn chat(fake: &FakeLlm, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", fake.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Reads an SSE body, returning each `data:` payload with its arrival time.
async fn read_events(resp: reqwest::Response) -> (Vec<(String, Instant)>, Option<reqwest::Error>) {
    let mut events = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => {
                buf.push_str(std::str::from_utf8(&b).unwrap());
                while let Some(pos) = buf.find("\n\n") {
                    let ev: String = buf.drain(..pos + 2).collect();
                    let data = ev.trim_end().strip_prefix("data: ").unwrap().to_owned();
                    events.push((data, Instant::now()));
                }
            }
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

#[tokio::test]
async fn echo_json_shape_and_usage() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(
        &fake,
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hello world"},
        ]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(rid, format!("fake-{}", &v["id"].as_str().unwrap()[14..]));
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-fake-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["system_fingerprint"], "fp_fake");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "echo: hello world");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    // P = (ceil(7/4)+3) + (ceil(11/4)+3) = 5 + 6; C = ceil(17/4) = 5
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
    );
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint"
        ]
    );

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(fake.request_count(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("Content-Type"), Some("application/json"));
    assert_eq!(reqs[0].json().unwrap()["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn content_parts_fixed_and_max_tokens() {
    let fake = FakeLlm::start().await.unwrap();
    let v: Value = chat(
        &fake,
        json!({"model": "echo", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}},
            {"type": "text", "text": "b"}]}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: ab");

    let v: Value = chat(
        &fake,
        json!({"model": "fixed-100", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.len(), 100);
    assert!(content.starts_with("lorem ipsum dolor sit amet lorem"));
    assert_eq!(v["usage"]["completion_tokens"], 25);

    let v: Value = chat(
        &fake,
        json!({"model": "huge-100", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "lorem ipsum dolor si"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn stream_event_order_with_usage() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(
        &fake,
        json!({"model": "fixed-40", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (events, err) = read_events(resp).await;
    assert!(err.is_none());
    let n = events.len();
    assert_eq!(events[n - 1].0, "[DONE]");
    let chunks: Vec<Value> = events[..n - 1]
        .iter()
        .map(|(d, _)| serde_json::from_str(d).unwrap())
        .collect();
    // role, 3 content chunks (16+16+8), finish, usage
    assert_eq!(chunks.len(), 6);
    let role = &chunks[0];
    assert_eq!(role["object"], "chat.completion.chunk");
    assert_eq!(role["model"], "fixed-40");
    assert_eq!(role["system_fingerprint"], "fp_fake");
    assert_eq!(
        role["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(role["choices"][0]["finish_reason"], Value::Null);
    let mut content = String::new();
    for c in &chunks[..5] {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.as_object().unwrap().contains_key("usage"));
        assert_eq!(c["id"], role["id"]);
    }
    for c in &chunks[1..4] {
        content.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(content.len(), 40);
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(
        chunks[5]["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 10, "total_tokens": 14})
    );

    // Completed counter is bumped once [DONE] was handed over.
    assert_eq!(fake.completed_streams(), 1);
    assert_eq!(fake.cancelled_streams(), 0);
}

#[tokio::test]
async fn stream_without_usage_has_no_usage_key() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(
        &fake,
        json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (events, _) = read_events(resp).await;
    assert_eq!(events.last().unwrap().0, "[DONE]");
    let mut content = String::new();
    for (d, _) in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(!v.as_object().unwrap().contains_key("usage"));
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    assert_eq!(content, "echo: hi");
}

#[tokio::test]
async fn stream_chunk_timing() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(
        &fake,
        json!({"model": "chunks-3-200", "stream": true,
               "messages": [{"role": "user", "content": "hello there world"}]}),
    )
    .await;
    let (events, err) = read_events(resp).await;
    assert!(err.is_none());
    let content: Vec<&(String, Instant)> = events
        .iter()
        .filter(|(d, _)| {
            d != "[DONE]" && {
                let v: Value = serde_json::from_str(d).unwrap();
                v["choices"][0]["delta"]
                    .as_object()
                    .is_some_and(|o| o.contains_key("content") && !o.contains_key("role"))
            }
        })
        .collect();
    assert_eq!(content.len(), 3);
    let spread = content[2].1.duration_since(content[0].1);
    assert!(spread >= Duration::from_millis(150), "spread {spread:?}");
}

#[tokio::test]
async fn status_and_ratelimit() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(&fake, json!({"model": "status-500", "messages": []})).await;
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["message"], "fake upstream error 500");

    let resp = chat(&fake, json!({"model": "status-404", "messages": []})).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let resp = chat(&fake, json!({"model": "ratelimit-7", "messages": []})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"].to_str().unwrap(), "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn slow_delays_headers() {
    let fake = FakeLlm::start().await.unwrap();
    let t = Instant::now();
    let resp = chat(&fake, json!({"model": "slow-200", "messages": []})).await;
    assert!(t.elapsed() >= Duration::from_millis(180));
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn reset_after_truncates_stream() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(
        &fake,
        json!({"model": "reset-after-2+fixed-100", "stream": true,
               "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (events, err) = read_events(resp).await;
    assert!(err.is_some(), "expected a body error");
    assert!(events.iter().all(|(d, _)| d != "[DONE]"));
    // Role chunk + 2 content chunks arrive before the abort.
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(fake.completed_streams(), 0);

    // Non-streaming: body shorter than content-length, then abort.
    let resp = chat(
        &fake,
        json!({"model": "reset-after-1", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let fake = FakeLlm::start().await.unwrap();
    let url = format!("{}/embeddings", fake.base_url());
    let v: Value = client()
        .post(&url)
        .json(&json!({"model": "text-embedding-3-small", "input": ["hello", "world!!!"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let floats: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 8);
    let norm: f32 = floats.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);

    let v: Value = client()
        .post(&url)
        .json(&json!({"model": "m", "input": "hello", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    assert_eq!(b64, base64_encode(&bytes));
    assert_eq!(b64.len(), 44);

    // token arrays
    let v: Value = client()
        .post(&url)
        .json(&json!({"model": "m", "input": [[1, 2, 3], [4]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn legacy_completions() {
    let fake = FakeLlm::start().await.unwrap();
    let url = format!("{}/completions", fake.base_url());
    let v: Value = client()
        .post(&url)
        .json(&json!({"model": "davinci", "prompt": ["say hi", "ignored"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-fake-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "echo: say hi");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let resp = client()
        .post(&url)
        .json(&json!({"model": "davinci", "prompt": "say hi", "stream": true}))
        .send()
        .await
        .unwrap();
    let (events, err) = read_events(resp).await;
    assert!(err.is_none());
    assert_eq!(events.last().unwrap().0, "[DONE]");
    let mut text = String::new();
    for (d, _) in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["object"], "text_completion");
        text.push_str(v["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(text, "echo: say hi");
}

#[tokio::test]
async fn models_health_404_and_bad_json() {
    let fake = FakeLlm::start().await.unwrap();
    let c = client();
    let v: Value = c
        .get(format!("{}/models", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]})
    );

    let resp = c
        .get(format!("http://{}/healthz", fake.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");

    let resp = c
        .get(format!("{}/nope", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], Value::Null);

    let resp = c
        .post(format!("{}/chat/completions", fake.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    assert_eq!(fake.request_count(), 4);
    assert_eq!(fake.requests()[3].body.as_ref(), b"{not json");
}

#[tokio::test]
async fn require_api_key() {
    let fake = FakeLlm::start_with(FakeOptions {
        require_api_key: Some("sekret".into()),
    })
    .await
    .unwrap();
    let body = json!({"model": "echo", "messages": [{"role": "user", "content": "x"}]});
    let url = format!("{}/chat/completions", fake.base_url());
    let resp = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");

    let resp = client()
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = client()
        .post(&url)
        .bearer_auth("sekret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn client_drop_counts_as_cancelled() {
    let fake = FakeLlm::start().await.unwrap();
    let resp = chat(
        &fake,
        json!({"model": "chunks-10-100", "stream": true,
               "messages": [{"role": "user", "content": "a fairly long message to split up"}]}),
    )
    .await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let dropped = Instant::now();
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.cancelled_streams() == 0 {
        assert!(
            Instant::now() < deadline,
            "stream cancellation not detected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Detected well before the stream would have finished (~900ms).
    assert!(dropped.elapsed() < Duration::from_millis(500));
    assert_eq!(fake.completed_streams(), 0);
}

#[tokio::test]
async fn sequential_requests_on_one_client_and_drop_stops_server() {
    let fake = FakeLlm::start().await.unwrap();
    let c = client();
    for _ in 0..5 {
        let r = c
            .post(format!("{}/chat/completions", fake.base_url()))
            .json(&json!({"model": "echo", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(fake.request_count(), 5);
    let addr = fake.addr();
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
