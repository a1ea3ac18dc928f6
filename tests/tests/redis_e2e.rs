//! Limits shared across replicas through a real Redis: three gateways, one limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::fake::FakeLlm;
use sluice_tests::harness::Sluice;
use sluice_tests::redis::RedisServer;

fn config(fake: &FakeLlm, redis: &str, fail_open: bool, key_extra: &str) -> String {
    format!(
        r#"state: {{ backend: redis, redis_url: "{redis}", replicas: 3, fail_open: {fail_open}, timeout: 100ms }}
providers:
  - {{ name: fake, kind: openai, base_url: "{base}" }}
models:
  - {{ name: m, targets: [ {{ provider: fake, model: echo }} ] }}
  - {{ name: slow, targets: [ {{ provider: fake, model: "slow-800" }} ] }}
keys:
  - {{ id: a, key_sha256: "{a}"{key_extra} }}
"#,
        base = fake.base_url(),
        a = sluice_policies::keys::digest_hex("sk-a"),
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "share the limit"}]})
}

async fn post(url: String, body: Value) -> u16 {
    reqwest::Client::new()
        .post(url)
        .bearer_auth("sk-a")
        .json(&body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_never_admit_more_than_the_shared_limit() {
    let redis = RedisServer::start().await.unwrap();
    let fake = FakeLlm::start().await.unwrap();
    let cfg = config(&fake, &redis.url(), true, ", tpm: 3000");
    let gateways = [
        Sluice::start(&cfg).await.unwrap(),
        Sluice::start(&cfg).await.unwrap(),
        Sluice::start(&cfg).await.unwrap(),
    ];
    // One request to learn what a request reserves (prompt + 100), then a burst of 90 spread over
    // the three replicas while the upstream holds every admitted one for 800 ms.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let url = gateways[i % 3].url("/v1/chat/completions");
        tasks.push(tokio::spawn(post(url, chat("slow"))));
    }
    let mut admitted = 0u32;
    let mut limited = 0u32;
    for t in tasks {
        match t.await.unwrap() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // Each request reserves 100 completion tokens plus a prompt of a few tokens, so 3000 tokens
    // admit at most 29; more would be over-admission across replicas.
    assert!(admitted <= 29, "over-admission: {admitted} admitted");
    assert!(admitted >= 25, "under-admission: only {admitted}");
    assert_eq!(admitted + limited, 90);
    for g in &gateways {
        assert_eq!(g.metric("sluice_state_errors_total").await, 0.0);
    }
    // The limit state lives in Redis under one hash tag.
    let keys = redis.cli(&["KEYS", "sluice:{sluice}:*"]).unwrap();
    assert!(keys.contains("sluice:{sluice}:k:a:tpm"), "{keys}");
    // Usage from every replica is visible on any one of them.
    let start = Instant::now();
    let mut report = Value::Null;
    while start.elapsed() < Duration::from_secs(3) {
        let (_, body) = gateways[0].admin_get("/admin/usage?key=a").await.unwrap();
        report = serde_json::from_str(&body).unwrap();
        if report["keys"]["a"]["requests"] == admitted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(report["source"], "redis");
    assert_eq!(report["keys"]["a"]["requests"], admitted, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_open_with_local_shares_then_recovers() {
    let mut redis = RedisServer::start().await.unwrap();
    let port = redis.port;
    let fake = FakeLlm::start().await.unwrap();
    // rpm 30 shared by 3 replicas: each replica may admit 10 on its own while Redis is away.
    let s = Sluice::start(&config(&fake, &redis.url(), true, ", rpm: 30"))
        .await
        .unwrap();
    assert_eq!(post(s.url("/v1/chat/completions"), chat("m")).await, 200);
    redis.kill();
    let mut ok = 0;
    for _ in 0..15 {
        if post(s.url("/v1/chat/completions"), chat("m")).await == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "local fallback must admit exactly rpm / replicas");
    assert!(s.metric("sluice_state_errors_total").await >= 1.0);
    // Redis comes back on the same port: after the breaker's pause, Redis decides again.
    let redis = RedisServer::start_on(port).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let start = Instant::now();
    let mut back = false;
    while start.elapsed() < Duration::from_secs(5) {
        let _ = post(s.url("/v1/chat/completions"), chat("m")).await;
        if redis
            .cli(&["EXISTS", "sluice:{sluice}:k:a:rpm"])
            .unwrap()
            .trim()
            == "1"
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "limits did not move back to Redis after it recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_when_configured() {
    let mut redis = RedisServer::start().await.unwrap();
    let fake = FakeLlm::start().await.unwrap();
    let s = Sluice::start(&config(&fake, &redis.url(), false, ", rpm: 1000"))
        .await
        .unwrap();
    assert_eq!(post(s.url("/v1/chat/completions"), chat("m")).await, 200);
    redis.kill();
    let r = reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .bearer_auth("sk-a")
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "state_unavailable");
    // Requests without limits never touch Redis.
    assert_eq!(fake.request_count(), 1);
}
