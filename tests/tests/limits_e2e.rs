//! End-to-end tests of token-aware limits, budgets and max_tokens clamping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::fake::FakeLlm;
use sluice_tests::harness::Sluice;

fn digest(raw: &str) -> String {
    sluice_policies::keys::digest_hex(raw)
}

async fn start(fake: &FakeLlm, keys: &str, models: &str) -> Sluice {
    let cfg = format!(
        r#"providers:
  - {{ name: fake, kind: openai, base_url: "{base}" }}
models:
  - {{ name: m, targets: [ {{ provider: fake, model: echo }} ] }}
  - {{ name: slow, targets: [ {{ provider: fake, model: "slow-700" }} ] }}
  - {{ name: stream, targets: [ {{ provider: fake, model: "chunks-20-100" }} ] }}
{models}keys:
{keys}logs: {{ format: json, level: info }}
"#,
        base = fake.base_url()
    );
    Sluice::start(&cfg).await.unwrap()
}

fn key_line(id: &str, extra: &str) -> String {
    format!(
        "  - {{ id: {id}, key_sha256: \"{}\"{extra} }}\n",
        digest(&format!("sk-{id}"))
    )
}

fn chat(model: &str, text: &str, max_tokens: Option<u64>) -> Value {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if let Some(m) = max_tokens {
        v["max_tokens"] = json!(m);
    }
    v
}

async fn post(s: &Sluice, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(format!("sk-{key}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_never_exceed_the_tpm_limit() {
    let fake = FakeLlm::start().await.unwrap();
    // Each request reserves its prompt (~12 tokens with the approx tokenizer) + 100 completion.
    let s = start(&fake, &key_line("a", ", tpm: 1000"), "").await;
    let body = chat("slow", "count my tokens please", Some(100));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let url = s.url("/v1/chat/completions");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth("sk-a")
                .json(&body)
                .send()
                .await
                .unwrap()
        }));
    }
    let mut admitted = 0;
    let mut limited = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            200 => admitted += 1,
            429 => {
                limited += 1;
                assert!(r.headers().contains_key("retry-after"));
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "rate_limit_exceeded");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // All 100 are in flight together (the upstream takes 700 ms), so nothing is settled before
    // the last one is admitted: at most floor(1000 / demand) fit, and the rest are refused.
    let demand = 1000 / admitted;
    assert!((5..=9).contains(&admitted), "admitted {admitted}");
    assert!(
        demand >= 100,
        "each admitted request reserved at least its max_tokens"
    );
    assert_eq!(admitted + limited, 100);
    assert_eq!(
        fake.request_count(),
        admitted as usize,
        "refused requests never reached the provider"
    );
    assert!(
        s.metric(r#"sluice_ratelimit_rejections_total{limit="key_tpm"}"#)
            .await
            >= f64::from(limited)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_returns_unused_capacity() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, &key_line("a", ", tpm: 600"), "").await;
    // Reserves ~510 tokens but uses ~10: after settling, the next one fits again.
    for i in 0..5 {
        let r = post(&s, "a", &chat("m", "hi", Some(500))).await;
        assert_eq!(
            r.status(),
            200,
            "request {i} refused: unused reservation not returned"
        );
        let remaining: u64 = r.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            remaining < 100,
            "remaining right after reserving: {remaining}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_limit_answers_429_with_openai_headers() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, &key_line("a", ", rpm: 3, tpm: 100000"), "").await;
    for i in 0..3 {
        let r = post(&s, "a", &chat("m", "x", Some(10))).await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            h["x-ratelimit-remaining-requests"].to_str().unwrap(),
            (2 - i).to_string()
        );
        assert!(h["x-ratelimit-reset-requests"]
            .to_str()
            .unwrap()
            .ends_with('s'));
        assert_eq!(h["x-ratelimit-limit-tokens"], "100000");
        assert!(h.contains_key("x-ratelimit-remaining-tokens"));
        assert!(h.contains_key("x-ratelimit-reset-tokens"));
    }
    let r = post(&s, "a", &chat("m", "x", Some(10))).await;
    assert_eq!(r.status(), 429);
    // 3 per minute refill one every 20 s; the first was taken just now.
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&after), "retry-after {after}");
    assert!(r.headers().contains_key("retry-after-ms"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests per minute"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_and_dropped_clients_release_their_slot() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, &key_line("a", ", max_concurrent: 1"), "").await;
    let body =
        json!({"model": "stream", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let mut first = post(&s, "a", &body).await;
    assert_eq!(first.status(), 200);
    assert!(first.chunk().await.unwrap().is_some());
    let r = post(&s, "a", &chat("m", "x", Some(5))).await;
    assert_eq!(r.status(), 429, "second concurrent request admitted");
    // The client goes away mid-stream: the slot must come back.
    drop(first);
    let start = Instant::now();
    let mut status = 0;
    while start.elapsed() < Duration::from_secs(3) {
        status = post(&s, "a", &chat("m", "x", Some(5)))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "slot leaked after client disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_usage_settles_and_is_booked() {
    let fake = FakeLlm::start().await.unwrap();
    let models = "  - { name: priced, targets: [ { provider: fake, model: \"chunks-3-10\" } ], price: { input_per_mtok: 1000000, output_per_mtok: 2000000 } }\n";
    let s = start(&fake, &key_line("a", ""), models).await;
    // Without include_usage: Sluice counts the streamed text.
    let body = json!({"model": "priced", "stream": true, "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]});
    let text = post(&s, "a", &body).await.text().await.unwrap();
    assert!(text.contains("[DONE]"));
    // With include_usage: the provider's numbers.
    let mut body2 = body.clone();
    body2["stream_options"] = json!({"include_usage": true});
    let text = post(&s, "a", &body2).await.text().await.unwrap();
    let usage_line = text.lines().rfind(|l| l.contains("\"usage\":{")).unwrap();
    let usage: Value = serde_json::from_str(usage_line.strip_prefix("data: ").unwrap()).unwrap();
    let (p, c) = (
        usage["usage"]["prompt_tokens"].as_u64().unwrap(),
        usage["usage"]["completion_tokens"].as_u64().unwrap(),
    );

    let start = Instant::now();
    let mut report = Value::Null;
    while start.elapsed() < Duration::from_secs(2) {
        let (_, body) = s.admin_get("/admin/usage?key=a").await.unwrap();
        report = serde_json::from_str(&body).unwrap();
        if report["keys"]["a"]["requests"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = &report["keys"]["a"];
    assert_eq!(a["requests"], 2, "{report}");
    assert!(a["completion_tokens"].as_u64().unwrap() > c, "{report}");
    assert!(a["prompt_tokens"].as_u64().unwrap() >= p, "{report}");
    // $1 per prompt token, $2 per completion token at these prices.
    let cost = a["cost_usd"].as_f64().unwrap();
    assert!(cost >= (p + 2 * c) as f64, "{report}");
    assert!(
        s.metric(r#"sluice_cost_usd_total{key="a",model="priced"}"#)
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_exhaustion_is_insufficient_quota() {
    let fake = FakeLlm::start().await.unwrap();
    // $10 per 1M tokens in and out; a $0.001 daily budget = 100 tokens.
    let models = "  - { name: priced, targets: [ { provider: fake, model: echo } ], price: { input_per_mtok: 10, output_per_mtok: 10 } }\n";
    let s = start(&fake, &key_line("a", ", budget_usd_per_day: 0.001"), models).await;
    let mut ok = 0;
    let mut last = None;
    for _ in 0..20 {
        let r = post(&s, "a", &chat("priced", "spend it", Some(10))).await;
        if r.status() == 200 {
            ok += 1;
        } else {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("budget never ran out");
    assert!(ok >= 2, "only {ok} requests before the budget ran out");
    assert_eq!(r.status(), 429);
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after <= 86_400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(v["error"]["type"], "insufficient_quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_is_clamped_or_rejected() {
    let fake = FakeLlm::start().await.unwrap();
    let keys =
        key_line("c", ", max_tokens: 100") + &key_line("r", ", max_tokens: 100, on_exceed: reject");
    let models = "  - { name: capped, targets: [ { provider: fake, model: echo } ], max_output_tokens: 50 }\n";
    let s = start(&fake, &keys, models).await;

    let r = post(&s, "c", &chat("m", "x", Some(1000))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-max-tokens-clamped"], "100");
    assert_eq!(
        fake.requests().last().unwrap().json().unwrap()["max_tokens"],
        100
    );

    // Missing: the cap is written in.
    let r = post(&s, "c", &chat("m", "x", None)).await;
    assert_eq!(r.headers()["x-sluice-max-tokens-clamped"], "100");
    assert_eq!(
        fake.requests().last().unwrap().json().unwrap()["max_tokens"],
        100
    );

    // The model's own cap is lower.
    let r = post(&s, "c", &chat("capped", "x", Some(80))).await;
    assert_eq!(r.headers()["x-sluice-max-tokens-clamped"], "50");

    // Within the cap: untouched.
    let r = post(&s, "c", &chat("m", "x", Some(20))).await;
    assert!(!r.headers().contains_key("x-sluice-max-tokens-clamped"));
    assert_eq!(
        fake.requests().last().unwrap().json().unwrap()["max_tokens"],
        20
    );

    // max_completion_tokens keeps its field name.
    let mut body = chat("m", "x", None);
    body["max_completion_tokens"] = json!(500);
    post(&s, "c", &body).await;
    let sent = fake.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["max_completion_tokens"], 100);
    assert!(sent.get("max_tokens").is_none());

    let before = fake.request_count();
    let r = post(&s, "r", &chat("m", "x", Some(1000))).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "max_tokens_exceeded");
    assert_eq!(v["error"]["param"], "max_tokens");
    let r = post(&s, "r", &chat("m", "x", None)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(fake.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_and_model_limits_are_shared_across_keys() {
    let fake = FakeLlm::start().await.unwrap();
    let keys = key_line("a", ", team: t") + &key_line("b", ", team: t") + &key_line("c", "");
    let models = "  - { name: shared, targets: [ { provider: fake, model: echo } ], limits: { rpm: 3 } }\nteams:\n  - { name: t, rpm: 2 }\n";
    let s = start(&fake, &keys, models).await;
    assert_eq!(post(&s, "a", &chat("m", "x", Some(5))).await.status(), 200);
    assert_eq!(post(&s, "b", &chat("m", "x", Some(5))).await.status(), 200);
    let r = post(&s, "a", &chat("m", "x", Some(5))).await;
    assert_eq!(r.status(), 429, "team limit not shared");
    assert!(
        s.metric(r#"sluice_ratelimit_rejections_total{limit="team_rpm"}"#)
            .await
            >= 1.0
    );
    // Model limit across keys of different teams.
    for _ in 0..3 {
        assert_eq!(
            post(&s, "c", &chat("shared", "x", Some(5))).await.status(),
            200
        );
    }
    let r = post(&s, "c", &chat("shared", "x", Some(5))).await;
    assert_eq!(r.status(), 429);
    assert!(
        s.metric(r#"sluice_ratelimit_rejections_total{limit="model_rpm"}"#)
            .await
            >= 1.0
    );
}
