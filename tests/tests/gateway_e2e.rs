//! End-to-end tests of the gateway core: a real `sluice` process in front of the fake upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::fake::{FakeLlm, FakeOptions};
use sluice_tests::harness::{ServerExtra, Sluice};

const UPSTREAM_KEY: &str = "sk-upstream-secret";
const KEY_A: &str = "sk-test-team-a";
const KEY_B: &str = "sk-test-team-b";
const KEY_OFF: &str = "sk-test-disabled";

fn digest(raw: &str) -> String {
    sluice_policies::keys::digest_hex(raw)
}

/// A config body (everything but `server:`) in front of `fake`.
fn body(fake: &FakeLlm, extra_keys: &str) -> String {
    format!(
        r#"auth: {{ required: true }}
providers:
  - {{ name: fake-us, kind: openai, base_url: "{base}", api_key: "{UPSTREAM_KEY}", region: us-east-1 }}
  - {{ name: dead, kind: openai, base_url: "http://127.0.0.1:{dead}/v1" }}
  - {{ name: demo, kind: mock }}
models:
  - {{ name: gpt-test, targets: [ {{ provider: fake-us, model: echo }} ] }}
  - {{ name: bpe-counted, targets: [ {{ provider: fake-us, model: echo }} ], tokenizer: o200k_base }}
  - {{ name: streamy, targets: [ {{ provider: fake-us, model: "chunks-5-200" }} ] }}
  - {{ name: long-stream, targets: [ {{ provider: fake-us, model: "chunks-20-100" }} ] }}
  - {{ name: sigterm-stream, targets: [ {{ provider: fake-us, model: "chunks-10-100" }} ] }}
  - {{ name: broken-stream, targets: [ {{ provider: fake-us, model: "reset-after-2" }} ] }}
  - {{ name: slow, targets: [ {{ provider: fake-us, model: "slow-3000" }} ], timeouts: {{ first_byte: 300ms }} }}
  - {{ name: stalls, targets: [ {{ provider: fake-us, model: "chunks-3-1500" }} ], timeouts: {{ idle: 300ms }} }}
  - {{ name: err500, targets: [ {{ provider: fake-us, model: "status-500" }} ] }}
  - {{ name: err400, targets: [ {{ provider: fake-us, model: "status-400" }} ] }}
  - {{ name: limited, targets: [ {{ provider: fake-us, model: "ratelimit-7" }} ] }}
  - {{ name: unreachable, targets: [ {{ provider: dead, model: x }} ], timeouts: {{ connect: 500ms }} }}
  - {{ name: mock, targets: [ {{ provider: demo, model: mock-1 }} ] }}
keys:
  - {{ id: team-a, key_sha256: "{a}" }}
  - {{ id: team-b, key_sha256: "{b}", models: [gpt-test] }}
  - {{ id: off, key_sha256: "{off}", disabled: true }}
{extra_keys}logs: {{ format: json, level: info }}
"#,
        base = fake.base_url(),
        dead = dead_port(),
        a = digest(KEY_A),
        b = digest(KEY_B),
        off = digest(KEY_OFF),
    )
}

/// A loopback port with nothing listening.
fn dead_port() -> u16 {
    sluice_tests::harness::free_port().unwrap()
}

async fn setup() -> (FakeLlm, Sluice) {
    setup_with(&ServerExtra::default()).await
}

async fn setup_with(extra: &ServerExtra) -> (FakeLlm, Sluice) {
    let fake = FakeLlm::start_with(FakeOptions {
        require_api_key: Some(UPSTREAM_KEY.into()),
    })
    .await
    .unwrap();
    let sluice = Sluice::start_with(extra, &body(&fake, "")).await.unwrap();
    (fake, sluice)
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn post(s: &Sluice, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

/// Assert an OpenAI-shaped error and return its body.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    let e = &v["error"];
    assert_eq!(e["code"], code, "{v}");
    assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
    assert!(e.as_object().unwrap().contains_key("param"), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_json_roundtrip_rewrites_model_and_credentials() {
    let (fake, s) = setup().await;
    let resp = reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .header("x-request-id", "client-req-42")
        .header("connection", "keep-alive")
        .header("x-custom-trace", "t-1")
        .json(&chat("gpt-test", "hello gateway"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-req-42");
    assert_eq!(resp.headers()["x-sluice-provider"], "fake-us");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello gateway");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let reqs = fake.requests();
    let up = reqs.last().unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(
        up.json().unwrap()["model"],
        "echo",
        "model rewritten to the upstream name"
    );
    assert_eq!(
        up.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(up.header("x-request-id"), Some("client-req-42"));
    assert_eq!(
        up.header("x-custom-trace"),
        Some("t-1"),
        "end-to-end headers pass"
    );
    for (name, value) in &up.headers {
        assert!(
            !value.contains(KEY_A),
            "client key leaked upstream in {name}"
        );
    }
    assert_eq!(up.header("x-api-key"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_prompt_arrives_upstream_byte_identical() {
    let (fake, s) = setup().await;
    // 1 MiB of varied text, including characters JSON must escape.
    let unit = "The quick brown fox \"jumps\" over the lazy dog\\ — ünïcødé ✓\n\t";
    let mut prompt = String::new();
    while prompt.len() < 1024 * 1024 {
        prompt.push_str(unit);
    }
    let resp = post(&s, Some(KEY_A), &chat("gpt-test", &prompt)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        prompt.len() + 6
    );
    let up = fake.requests().last().unwrap().json().unwrap();
    assert_eq!(up["messages"][0]["content"].as_str().unwrap(), prompt);
    // The same prompt counted with a real BPE (off the reactor) still goes through whole.
    let resp = post(&s, Some(KEY_A), &chat("bpe-counted", &prompt)).await;
    assert_eq!(resp.status(), 200);
    let up = fake.requests().last().unwrap().json().unwrap();
    assert_eq!(up["messages"][0]["content"].as_str().unwrap(), prompt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chunks_reach_the_client_incrementally() {
    let (_fake, s) = setup().await;
    let body = json!({
        "model": "streamy", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "stream please"}],
    });
    let start = Instant::now();
    let mut resp = post(&s, Some(KEY_A), &body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        arrivals.push(start.elapsed());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    // 5 content chunks, 200 ms apart: the first must arrive long before the last.
    let first = arrivals[0];
    let last = *arrivals.last().unwrap();
    assert!(
        last - first >= Duration::from_millis(600),
        "first {first:?} last {last:?}"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "echo: stream please");
    assert!(
        events.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_embeddings_and_models() {
    let (fake, s) = setup().await;
    let c = reqwest::Client::new();
    let r = c
        .post(s.url("/v1/completions"))
        .bearer_auth(KEY_A)
        .json(&json!({"model": "gpt-test", "prompt": "say hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["text"], "echo: say hi");
    assert_eq!(fake.requests().last().unwrap().path, "/v1/completions");

    let r = c
        .post(s.url("/v1/embeddings"))
        .bearer_auth(KEY_A)
        .json(&json!({"model": "gpt-test", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(fake.requests().last().unwrap().path, "/v1/embeddings");

    // Models: all for team-a, only the allow-list for team-b.
    let all: Value = c
        .get(s.url("/v1/models"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["object"], "list");
    assert!(all["data"].as_array().unwrap().len() > 5);
    let b: Value = c
        .get(s.url("/v1/models"))
        .bearer_auth(KEY_B)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_provider_answers_without_network() {
    let (fake, s) = setup().await;
    let before = fake.request_count();
    let r = post(&s, Some(KEY_A), &chat("mock", "hi mock")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-provider"], "demo");
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hi mock"));
    let body =
        json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let text = post(&s, Some(KEY_A), &body).await.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert_eq!(fake.request_count(), before, "mock never calls the network");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_openai_shaped_errors() {
    let (fake, s) = setup_with(&ServerExtra(vec!["max_body_bytes: 4096".into()])).await;
    let c = reqwest::Client::new();
    let raw = |body: &'static str| {
        c.post(s.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(raw("{not json").await.unwrap(), 400, "invalid_json").await;
    let v = expect_error(
        raw(r#"{"model":"gpt-test","messages":[{"role":5,"content":"secret prompt text"}]}"#)
            .await
            .unwrap(),
        400,
        "invalid_value",
    )
    .await;
    assert_eq!(v["error"]["param"], "messages[0].role");
    assert!(!v.to_string().contains("secret prompt text"));
    let v = expect_error(
        raw(r#"{"messages":[]}"#).await.unwrap(),
        400,
        "missing_required_parameter",
    )
    .await;
    assert_eq!(v["error"]["param"], "model");
    expect_error(
        post(&s, Some(KEY_A), &chat("no-such-model", "x")).await,
        404,
        "model_not_found",
    )
    .await;
    let big = chat("gpt-test", &"x".repeat(8000));
    expect_error(post(&s, Some(KEY_A), &big).await, 413, "request_too_large").await;
    let r = c
        .get(s.url("/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    expect_error(r, 405, "method_not_allowed").await;
    expect_error(
        c.post(s.url("/v1/nope"))
            .bearer_auth(KEY_A)
            .send()
            .await
            .unwrap(),
        404,
        "unknown_url",
    )
    .await;
    expect_error(
        post(&s, None, &chat("gpt-test", "x")).await,
        401,
        "missing_api_key",
    )
    .await;
    let v = expect_error(
        post(&s, Some("sk-wrong-key"), &chat("gpt-test", "x")).await,
        401,
        "invalid_api_key",
    )
    .await;
    assert!(!v.to_string().contains("sk-wrong-key"), "key echoed back");
    expect_error(
        post(&s, Some(KEY_OFF), &chat("gpt-test", "x")).await,
        401,
        "invalid_api_key",
    )
    .await;
    expect_error(
        post(&s, Some(KEY_B), &chat("mock", "x")).await,
        403,
        "model_not_allowed",
    )
    .await;
    // x-api-key works like a bearer token.
    let r = c
        .post(s.url("/v1/chat/completions"))
        .header("x-api-key", KEY_B)
        .json(&chat("gpt-test", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // None of the refused requests reached the provider.
    assert_eq!(fake.request_count(), 1);
    // The process survives all of it.
    assert_eq!(s.admin_get("/healthz").await.unwrap().0, 200);
    let logs = s.logs();
    assert!(
        !logs.contains("secret prompt text") && !logs.contains(KEY_A),
        "prompt or key in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_gateway_errors() {
    let (_fake, s) = setup().await;
    let start = Instant::now();
    expect_error(
        post(&s, Some(KEY_A), &chat("unreachable", "x")).await,
        502,
        "upstream_connect_error",
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(3));

    let start = Instant::now();
    let v = expect_error(
        post(&s, Some(KEY_A), &chat("slow", "x")).await,
        504,
        "upstream_timeout",
    )
    .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("first_byte"));

    // Provider errors pass through with their status and body.
    let r = post(&s, Some(KEY_A), &chat("err400", "x")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["message"],
        "fake upstream error 400"
    );
    let r = post(&s, Some(KEY_A), &chat("err500", "x")).await;
    assert_eq!(r.status(), 500);
    let r = post(&s, Some(KEY_A), &chat("limited", "x")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_upstream_is_never_silently_truncated() {
    let (_fake, s) = setup().await;
    let body = json!({"model": "broken-stream", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let mut resp = post(&s, Some(KEY_A), &body).await;
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    let mut transport_error = false;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => text.push_str(&String::from_utf8_lossy(&c)),
            Ok(None) => break,
            Err(_) => {
                transport_error = true;
                break;
            }
        }
    }
    assert!(!text.contains("[DONE]"));
    assert!(
        text.contains("\"code\":\"upstream_error\""),
        "error event expected, got {text}"
    );
    assert!(transport_error, "the response must not end as if complete");
    assert!(
        s.metric("sluice_errors_total{reason=\"upstream_protocol\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_stream() {
    let (fake, s) = setup().await;
    let body = json!({"model": "long-stream", "stream": true, "messages": [{"role": "user", "content": "a long answer"}]});
    let mut resp = post(&s, Some(KEY_A), &body).await;
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let start = Instant::now();
    while fake.cancelled_streams() == 0 && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.cancelled_streams(), 1, "upstream stream not cancelled");
    assert_eq!(fake.completed_streams(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_tokens_and_keep_labels_bounded() {
    let (_fake, s) = setup().await;
    assert_eq!(
        post(&s, Some(KEY_A), &chat("gpt-test", "count me"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&s, Some(KEY_A), &chat("random-name-123", "x"))
            .await
            .status(),
        404
    );
    // Metrics are recorded in the logging phase, just after the response went out.
    let start = Instant::now();
    while s
        .metric(r#"sluice_errors_total{reason="model_not_found"}"#)
        .await
        < 1.0
        && start.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, text) = s.admin_get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains(
        r#"sluice_requests_total{endpoint="chat_completions",model="gpt-test",provider="fake-us",status_class="2xx"} 1"#
    ));
    assert!(text.contains(r#"model="unknown""#));
    assert!(
        !text.contains("random-name-123"),
        "unconfigured model names must not become labels"
    );
    assert!(
        s.metric(r#"sluice_tokens_total{kind="completion",model="gpt-test"}"#)
            .await
            > 0.0
    );
    for family in [
        "sluice_request_duration_seconds_bucket",
        "sluice_upstream_duration_seconds_bucket",
        "sluice_time_to_first_token_seconds_bucket",
        "sluice_gateway_overhead_seconds_bucket",
        "sluice_inflight_requests",
        "sluice_config_reloads_total",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    let (status, ready) = s.admin_get("/readyz").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&ready).unwrap()["status"],
        "ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_adds_a_key_under_load_and_rejects_bad_files() {
    let (fake, s) = setup().await;
    let new_key = "sk-added-by-reload";
    assert_eq!(
        post(&s, Some(new_key), &chat("gpt-test", "x"))
            .await
            .status(),
        401
    );

    // Load with the old key in the background for the whole reload.
    let url = s.url("/v1/chat/completions");
    let load = tokio::spawn(async move {
        let c = reqwest::Client::new();
        let (mut ok, mut failed) = (0u32, 0u32);
        let mut first_failure = None;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) && ok + failed < 5000 {
            let r = c
                .post(&url)
                .bearer_auth(KEY_A)
                .json(&chat("gpt-test", "load"))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => ok += 1,
                other => {
                    failed += 1;
                    if first_failure.is_none() {
                        first_failure = Some(match other {
                            Ok(r) => format!(
                                "status {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            ),
                            Err(e) => format!("error {e:?}"),
                        });
                    }
                }
            }
        }
        (ok, failed, first_failure)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = format!("  - {{ id: added, key_sha256: \"{}\" }}\n", digest(new_key));
    s.write_config(&body(&fake, &extra)).unwrap();
    let start = Instant::now();
    let mut status = 0;
    while start.elapsed() < Duration::from_secs(5) {
        status = post(&s, Some(new_key), &chat("gpt-test", "x"))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "key added by reload not accepted");
    let (ok, failed, first_failure) = load.await.unwrap();
    assert!(ok > 20, "load too small: {ok}");
    assert_eq!(
        failed, 0,
        "requests failed during reload: {first_failure:?}"
    );
    assert!(
        s.metric(r#"sluice_config_reloads_total{result="success"}"#)
            .await
            >= 1.0
    );

    // An invalid file is rejected; the running config stays.
    s.write_raw_config("server: [this is not valid\n").unwrap();
    let start = Instant::now();
    while s
        .metric(r#"sluice_config_reloads_total{result="error"}"#)
        .await
        < 1.0
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.metric(r#"sluice_config_reloads_total{result="error"}"#)
            .await,
        1.0
    );
    assert_eq!(
        post(&s, Some(new_key), &chat("gpt-test", "x"))
            .await
            .status(),
        200
    );
    assert!(s.logs().contains("config reload rejected"));

    // SIGHUP reloads too: restore a valid config without the added key, then signal.
    let errors_before = s
        .metric(r#"sluice_config_reloads_total{result="success"}"#)
        .await;
    s.write_config(&body(&fake, "")).unwrap();
    s.signal(libc::SIGHUP).unwrap();
    let start = Instant::now();
    while post(&s, Some(new_key), &chat("gpt-test", "x"))
        .await
        .status()
        != 401
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        post(&s, Some(new_key), &chat("gpt-test", "x"))
            .await
            .status(),
        401
    );
    assert!(
        s.metric(r#"sluice_config_reloads_total{result="success"}"#)
            .await
            > errors_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_inflight_stream_finish_then_exits() {
    let (_fake, mut s) = setup_with(&ServerExtra(vec!["drain_timeout: 10s".into()])).await;
    let body = json!({"model": "sigterm-stream", "stream": true, "messages": [{"role": "user", "content": "finish me"}]});
    let mut resp = post(&s, Some(KEY_A), &body).await;
    let mut text = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    s.signal(libc::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = s.admin_get("/readyz").await.unwrap();
    assert_eq!(status, 503, "readyz must fail while draining");
    while let Some(c) = resp.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream cut by shutdown: {text}"
    );
    let status = s.wait_exit(Duration::from_secs(3)).await;
    assert!(status.is_some(), "did not exit after the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_idle_gateway_exits_at_once() {
    let (_fake, mut s) = setup_with(&ServerExtra(vec!["drain_timeout: 30s".into()])).await;
    let start = Instant::now();
    s.signal(libc::SIGTERM).unwrap();
    let status = s.wait_exit(Duration::from_secs(3)).await;
    assert!(status.is_some(), "idle gateway did not exit promptly");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_needs_explicit_auth_off() {
    let fake = FakeLlm::start().await.unwrap();
    let cfg = format!(
        "auth: {{ required: false }}\nproviders:\n  - {{ name: f, kind: openai, base_url: \"{}\" }}\nmodels:\n  - {{ name: m, targets: [ {{ provider: f, model: echo }} ] }}\n",
        fake.base_url()
    );
    let s = Sluice::start(&cfg).await.unwrap();
    assert_eq!(post(&s, None, &chat("m", "x")).await.status(), 200);
    // SDKs always send some key: an unknown one runs as anonymous when auth is off.
    assert_eq!(
        post(&s, Some("sk-anything"), &chat("m", "x"))
            .await
            .status(),
        200
    );
    drop(s);
    // Without an auth section, keys are required.
    let cfg = cfg.replace("auth: { required: false }\n", "");
    let s = Sluice::start(&cfg).await.unwrap();
    assert_eq!(post(&s, None, &chat("m", "x")).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_between_chunks_ends_the_stream_with_an_error() {
    let (fake, s) = setup().await;
    let body =
        json!({"model": "stalls", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let start = Instant::now();
    let mut resp = post(&s, Some(KEY_A), &body).await;
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while let Ok(Some(c)) = resp.chunk().await {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "idle timeout not applied"
    );
    assert!(text.contains("\"code\":\"upstream_timeout\""), "{text}");
    assert!(text.contains("(idle)"), "{text}");
    assert!(!text.contains("[DONE]"));
    // The upstream call was abandoned, not left running.
    let start = Instant::now();
    while fake.cancelled_streams() == 0 && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.cancelled_streams(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_requests_finish_on_the_config_they_started_with() {
    let (fake, s) = setup().await;
    let body = json!({"model": "sigterm-stream", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let mut resp = post(&s, Some(KEY_A), &body).await;
    let mut text = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    // Reload to a config where team-a's key no longer exists.
    let without_a = body_without_key_a(&fake);
    s.write_config(&without_a).unwrap();
    let start = Instant::now();
    while post(&s, Some(KEY_A), &chat("gpt-test", "x")).await.status() != 401
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        post(&s, Some(KEY_A), &chat("gpt-test", "x")).await.status(),
        401,
        "reload not applied"
    );
    while let Some(c) = resp.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "in-flight stream cut by reload"
    );
}

fn body_without_key_a(fake: &FakeLlm) -> String {
    let full = body(fake, "");
    let line = format!("  - {{ id: team-a, key_sha256: \"{}\" }}\n", digest(KEY_A));
    assert!(full.contains(&line));
    full.replace(&line, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_fake, s) = setup().await;
    let body = chat("gpt-test", &"y".repeat(4000)).to_string();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY_A}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf))
        .await
        .expect("no 100 Continue within 500 ms")
        .unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 100"));
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let mut chunk = [0u8; 8192];
    while !String::from_utf8_lossy(&resp).contains("echo: yyy") {
        let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        resp.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 200"));
}
