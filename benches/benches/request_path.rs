//! The per-request policy path without I/O: what `request_filter` does before it touches the
//! upstream (see `gateway/src/pipeline.rs` and `forward::call_openai`).
//!
//! - `auth`: `key_from_headers` on a real `HeaderMap` + `KeyStore::authorize` with 1,000 keys.
//! - `parse`: `parse_request` for a ~300 B chat body and a 64 KiB one.
//! - `route`: alias lookup in `Runtime.routes` (52 models) + `authorize_model`.
//! - `rewrite`: `ParsedRequest::upstream_body` (model rewrite + serialize).
//! - `combined`: all of the above in sequence, per request, as the gateway runs them.
//! - `response`: the per-response work on the way back: `usage_from_json` on a JSON answer and
//!   `SseObserver::feed` over a whole 8-chunk stream (the shapes `fake-llm` sends).
//!
//! Run: `cargo bench -p sluice-benches --bench request_path` (about a minute).

#![expect(
    missing_docs,
    reason = "criterion_main! generates an undocumented `main`"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use sluice::state::Runtime;
use sluice_benches::{bench_config_yaml, large_chat_body, small_chat_body, BENCH_KEY};
use sluice_policies::keys::key_from_headers;
use sluice_policies::openai::{parse_request, usage_from_json, ApiKind};
use sluice_policies::sse::SseObserver;

const N_KEYS: usize = 1000;
const EXTRA_MODELS: usize = 50;
const LARGE_BODY: usize = 64 * 1024;

struct Fixture {
    rt: Runtime,
    headers: HeaderMap,
    small: Vec<u8>,
    large: Vec<u8>,
}

fn fixture() -> Result<Fixture, String> {
    let yaml = bench_config_yaml("127.0.0.1:9", N_KEYS, EXTRA_MODELS);
    let config = sluice_config::load_str(&yaml, &|_| None).map_err(|e| e.to_string())?;
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rt = tokio_rt.block_on(Runtime::build(config, 1))?;
    if rt.keys.len() != N_KEYS {
        return Err(format!("expected {N_KEYS} keys, got {}", rt.keys.len()));
    }
    let mut headers = HeaderMap::new();
    // The headers an OpenAI SDK typically sends, so the map lookups are not trivially small.
    for (name, value) in [
        ("host", "127.0.0.1:8080"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("user-agent", "OpenAI/Python 1.54.0"),
        ("x-stainless-lang", "python"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("content-length", "312"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let auth = HeaderValue::from_str(&format!("Bearer {BENCH_KEY}")).map_err(|e| e.to_string())?;
    headers.insert(http::header::AUTHORIZATION, auth);
    Ok(Fixture {
        rt,
        headers,
        small: small_chat_body("bench", false).into_bytes(),
        large: large_chat_body("bench", LARGE_BODY).into_bytes(),
    })
}

/// What `pipeline::authenticate` does, on a plain `HeaderMap`.
fn authenticate(rt: &Runtime, headers: &HeaderMap) -> Option<sluice_policies::keys::Principal> {
    let presented = key_from_headers(
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        headers.get("x-api-key").map(|v| v.as_bytes()),
    );
    rt.keys.authorize(presented, true).ok()
}

/// auth + parse + resolve + rewrite, as `pipeline::handle` and `forward::call_openai` run them.
fn combined(rt: &Runtime, headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let principal = authenticate(rt, headers)?;
    let mut parsed = parse_request(ApiKind::ChatCompletions, body).ok()?;
    let route = rt.routes.get(&parsed.model)?;
    principal.authorize_model(&route.model).ok()?;
    Some(parsed.upstream_body(&route.upstream_model))
}

/// A non-streaming chat answer as `fake-llm` sends it for the small body (~440 B).
const JSON_ANSWER: &str = concat!(
    r#"{"id":"chatcmpl-fake-1","object":"chat.completion","created":1795440449,"model":"echo","#,
    r#""choices":[{"index":0,"message":{"role":"assistant","content":"echo: Summarize the "#,
    r#"trade-offs between open-loop and closed-loop load generation in two short sentences, "#,
    r#"please. Keep it brief.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":50,"completion_tokens":32,"total_tokens":82},"#,
    r#""system_fingerprint":"fp_fake"}"#
);

/// The events of a `chunks-8-0` stream with `include_usage`, one network chunk per event.
fn sse_events() -> Vec<Vec<u8>> {
    let head = r#"data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1795440997,"model":"chunks-8-0","system_fingerprint":"fp_fake","choices":"#;
    let mut events = vec![format!(
        r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
    )];
    for piece in [
        "echo: Summariz",
        "e the trade-of",
        "fs between ope",
        "n-loop and clo",
    ]
    .iter()
    .chain(
        [
            "sed-loop load ",
            "generation in ",
            "two short sent",
            "ences, please.",
        ]
        .iter(),
    ) {
        events.push(format!(
            r#"{head}[{{"index":0,"delta":{{"content":"{piece}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ));
    }
    events.push(format!(
        r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
    ));
    events.push(format!(
        r#"{head}[],"usage":{{"prompt_tokens":30,"completion_tokens":28,"total_tokens":58}}}}"#
    ));
    events.push("data: [DONE]".to_owned());
    events
        .into_iter()
        .map(|e| format!("{e}\n\n").into_bytes())
        .collect()
}

fn benches(c: &mut Criterion) {
    let f = match fixture() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("request_path: cannot build the fixture: {e}");
            return;
        }
    };
    let rt = &f.rt;

    let mut g = c.benchmark_group("auth");
    g.bench_function("key_from_headers+authorize/1k_keys", |b| {
        b.iter(|| authenticate(rt, black_box(&f.headers)))
    });
    g.bench_function("authorize_unknown_key/1k_keys", |b| {
        b.iter(|| {
            rt.keys
                .authorize(black_box(Some("sk-not-configured")), true)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    for (name, body) in [("chat_small", &f.small), ("chat_64k", &f.large)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{name}/{}B", body.len()), |b| {
            b.iter(|| parse_request(ApiKind::ChatCompletions, black_box(body)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("route");
    let Ok(principal) = rt.keys.authorize(Some(BENCH_KEY), true) else {
        eprintln!("request_path: bench key not accepted");
        return;
    };
    g.bench_function("lookup+authorize_model/52_models", |b| {
        b.iter(|| {
            let route = rt.routes.get(black_box("bench"))?;
            principal.authorize_model(&route.model).ok()?;
            Some(route.upstream_model.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("rewrite");
    for (name, body) in [("chat_small", &f.small), ("chat_64k", &f.large)] {
        let Ok(parsed) = parse_request(ApiKind::ChatCompletions, body) else {
            eprintln!("request_path: {name} does not parse");
            return;
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("upstream_body/{name}"), |b| {
            b.iter_batched(
                || parsed.clone(),
                // Return the request too, so dropping it stays outside the timing.
                |mut p| {
                    let out = p.upstream_body(black_box("echo"));
                    (p, out)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("combined");
    for (name, body) in [("chat_small", &f.small), ("chat_64k", &f.large)] {
        if combined(rt, &f.headers, body).is_none() {
            eprintln!("request_path: combined path rejected {name}");
            return;
        }
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("auth+parse+resolve+rewrite/{name}"), |b| {
            b.iter(|| combined(rt, black_box(&f.headers), black_box(body)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("response");
    if usage_from_json(JSON_ANSWER.as_bytes()).is_none() {
        eprintln!("request_path: no usage in the JSON answer");
        return;
    }
    g.throughput(Throughput::Bytes(JSON_ANSWER.len() as u64));
    g.bench_function(format!("usage_from_json/{}B", JSON_ANSWER.len()), |b| {
        b.iter(|| usage_from_json(black_box(JSON_ANSWER.as_bytes())))
    });
    let events = sse_events();
    let stream_len: usize = events.iter().map(Vec::len).sum();
    let mut check = SseObserver::new();
    events.iter().for_each(|e| check.feed(e));
    if !check.done || check.usage.is_none() {
        eprintln!("request_path: the SSE observer did not see [DONE] and usage");
        return;
    }
    g.throughput(Throughput::Bytes(stream_len as u64));
    g.bench_function(
        format!("sse_observer/{}_events_{stream_len}B", events.len()),
        |b| {
            b.iter(|| {
                let mut o = SseObserver::new();
                for e in &events {
                    o.feed(black_box(e));
                }
                o.usage
            })
        },
    );
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = request_path;
    config = config();
    targets = benches
}
criterion_main!(request_path);
