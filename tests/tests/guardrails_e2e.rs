//! End-to-end tests of PII guardrails: redaction, blocking, pseudonyms restored in answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use serde_json::{json, Value};
use sluice_tests::fake::FakeLlm;
use sluice_tests::harness::Sluice;

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const BAD_CARD: &str = "4111 1111 1111 1112";

fn digest(raw: &str) -> String {
    sluice_policies::keys::digest_hex(raw)
}

async fn start(fake: &FakeLlm, pii: &str) -> Sluice {
    let cfg = format!(
        r#"providers:
  - {{ name: fake, kind: openai, base_url: "{base}" }}
  - {{ name: demo, kind: mock }}
models:
  - {{ name: m, targets: [ {{ provider: fake, model: echo }} ] }}
  - {{ name: small-chunks, targets: [ {{ provider: fake, model: "chunks-40-0" }} ] }}
  - {{ name: mock, targets: [ {{ provider: demo, model: mock-1 }} ] }}
guardrails:
  pii: {pii}
keys:
  - {{ id: a, key_sha256: "{a}" }}
  - {{ id: raw, key_sha256: "{raw}", pii: {{ enabled: false }} }}
"#,
        base = fake.base_url(),
        a = digest("sk-a"),
        raw = digest("sk-raw"),
    );
    Sluice::start(&cfg).await.unwrap()
}

async fn post(s: &Sluice, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

fn upstream_text(fake: &FakeLlm) -> String {
    fake.requests().last().unwrap().json().unwrap()["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_masks_pii_before_it_leaves() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, "{ action: redact }").await;
    let text = format!("Mail {EMAIL}, card {CARD}, not a card {BAD_CARD}, server 10.1.2.3.");
    let r = post(&s, "sk-a", &chat("m", &text)).await;
    assert_eq!(r.status(), 200);
    let sent = upstream_text(&fake);
    assert_eq!(
        sent,
        format!("Mail [EMAIL], card [CREDIT_CARD], not a card {BAD_CARD}, server [IP_ADDRESS].")
    );
    let v: Value = r.json().await.unwrap();
    assert!(!v.to_string().contains(EMAIL));
    assert_eq!(
        s.metric(r#"sluice_guardrail_detections_total{action="redact",entity="email"}"#)
            .await,
        1.0
    );
    assert_eq!(
        s.metric(r#"sluice_guardrail_detections_total{action="redact",entity="credit_card"}"#)
            .await,
        1.0
    );
    assert!(!s.logs().contains(EMAIL), "PII in logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_refuses_and_names_only_the_entity() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, "{ action: redact, actions: { credit_card: block } }").await;
    let r = post(&s, "sk-a", &chat("m", &format!("charge {CARD} please"))).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "pii_detected");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("credit_card"));
    assert!(!v.to_string().contains("4111"), "value echoed back");
    assert_eq!(fake.request_count(), 0);
    // The same text with an email only is redacted and forwarded.
    let r = post(&s, "sk-a", &chat("m", &format!("write to {EMAIL}"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream_text(&fake), "write to [EMAIL]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonyms_are_restored_in_json_and_split_streams() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, "{ action: redact, mode: pseudonym, restore: true }").await;
    let text = format!("Contact {EMAIL} or ops@example.org, again {EMAIL}.");
    let r = post(&s, "sk-a", &chat("m", &text)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        upstream_text(&fake),
        "Contact <EMAIL_1> or <EMAIL_2>, again <EMAIL_1>."
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("echo: {text}")
    );

    // Streamed in tiny chunks: pseudonyms arrive split across events and must still be restored.
    let body = json!({"model": "small-chunks", "stream": true, "messages": [{"role": "user", "content": text}]});
    let sse = post(&s, "sk-a", &body).await.text().await.unwrap();
    let content: String = sse
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, format!("echo: {text}"));
    assert!(!sse.contains("<EMAIL_"), "pseudonym leaked to the client");

    // The built-in mock quotes the prompt too.
    let r = post(&s, "sk-a", &chat("mock", &format!("hi {EMAIL}"))).await;
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains(EMAIL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_can_turn_pii_handling_off() {
    let fake = FakeLlm::start().await.unwrap();
    let s = start(&fake, "{ action: redact }").await;
    post(&s, "sk-raw", &chat("m", &format!("mail {EMAIL}"))).await;
    assert_eq!(upstream_text(&fake), format!("mail {EMAIL}"));
}
