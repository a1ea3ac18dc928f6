//! Token-aware admission costs.
//!
//! - `pipeline/...`: auth (1,000 keys) + parse + prompt count + local reserve + settle for a
//!   chat prompt of about 1,000 tokens, per tokenizer: the request-side policy work.
//! - `local/...`: `LocalLimiter` reserve + settle for a request under 1 and 6 limits.
//! - `redis/reserve_settle`: the same through a real `redis-server` on loopback (one Lua
//!   round trip each way). Needs `redis-server` on PATH (`make deps`).
//!
//! Run: `cargo bench -p sluice-benches --bench limits`.

#![expect(
    missing_docs,
    reason = "criterion_main! generates an undocumented `main`"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::limiter::Limiter;
use sluice_config::{RedisState, Secret, StateConfig};
use sluice_policies::keys::KeyStore;
use sluice_policies::limits::{now_micros, Demand, Kind, Limit, LocalLimiter, Scope};
use sluice_policies::openai::{parse_request, ApiKind};
use sluice_policies::tokens::Tokenizer;

/// A chat body of roughly 1,000 tokens: a system prompt and a few turns of prose.
fn thousand_token_chat() -> Vec<u8> {
    let para = "The gateway counts every prompt before it forwards it, so that a burst of \
                requests cannot overshoot the tokens-per-minute limit of a key, a team or a model. ";
    let mut text = String::new();
    while text.len() < 4200 {
        text.push_str(para);
    }
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": &text[..2100]},
            {"role": "assistant", "content": "Understood."},
            {"role": "user", "content": &text[2100..]},
        ],
    });
    body.to_string().into_bytes()
}

fn limits(key: &str, n: usize) -> Vec<Limit> {
    let k: Arc<str> = Arc::from(key);
    let all = [
        Limit {
            scope: Scope::Key(Arc::clone(&k)),
            kind: Kind::Tpm,
            max: u64::MAX / 4,
        },
        Limit {
            scope: Scope::Key(Arc::clone(&k)),
            kind: Kind::Rpm,
            max: u64::MAX / 4,
        },
        Limit {
            scope: Scope::Key(Arc::clone(&k)),
            kind: Kind::Concurrent,
            max: 1_000_000,
        },
        Limit {
            scope: Scope::Key(Arc::clone(&k)),
            kind: Kind::UsdPerDay,
            max: u64::MAX / 4,
        },
        Limit {
            scope: Scope::Model(Arc::from("gpt-4o-mini")),
            kind: Kind::Tpm,
            max: u64::MAX / 4,
        },
        Limit {
            scope: Scope::Team(Arc::from("research")),
            kind: Kind::Tpm,
            max: u64::MAX / 4,
        },
    ];
    all.into_iter().take(n).collect()
}

fn keystore() -> KeyStore {
    let keys: Vec<sluice_config::VirtualKey> = (0..1000)
        .map(|i| sluice_config::VirtualKey {
            id: format!("key-{i}"),
            digest: sluice_policies::keys::digest(&format!("sk-bench-{i}")),
            models: None,
            disabled: false,
            team: None,
            limits: Default::default(),
            budgets: Default::default(),
            max_tokens: None,
            on_exceed: Default::default(),
            model_limits: Default::default(),
            pii: None,
        })
        .collect();
    KeyStore::new(&keys)
}

fn bench_pipeline(c: &mut Criterion) {
    let body = thousand_token_chat();
    let store = keystore();
    let limiter = LocalLimiter::new();
    let lims = limits("key-500", 6);
    let mut g = c.benchmark_group("pipeline");
    g.measurement_time(Duration::from_secs(3)).sample_size(50);
    for tok in [
        Tokenizer::O200kBase,
        Tokenizer::Cl100kBase,
        "approx".parse().unwrap_or(Tokenizer::O200kBase),
    ] {
        tok.preload();
        let parsed = parse_request(ApiKind::ChatCompletions, &body).ok();
        let tokens = parsed
            .as_ref()
            .map_or(0, |p| tok.count_prompt(ApiKind::ChatCompletions, &p.body));
        eprintln!("{}: {tokens} prompt tokens", tok.name());
        g.bench_function(format!("auth_parse_count_reserve/{}", tok.name()), |b| {
            b.iter(|| {
                let principal = store.authorize(Some("sk-bench-500"), true);
                let parsed = parse_request(ApiKind::ChatCompletions, black_box(&body));
                if let (Ok(_p), Ok(parsed)) = (principal, parsed) {
                    let n = tok.count_prompt(ApiKind::ChatCompletions, &parsed.body);
                    let demand = Demand {
                        tokens: n + 256,
                        cost_micros: 1,
                    };
                    let now = now_micros();
                    if let Ok(adm) = limiter.reserve(&lims, demand, now) {
                        limiter.settle(&lims, &adm, demand, demand, now);
                    }
                }
            });
        });
    }
    g.finish();
}

fn bench_local(c: &mut Criterion) {
    let limiter = LocalLimiter::new();
    let mut g = c.benchmark_group("local");
    g.measurement_time(Duration::from_secs(3)).sample_size(50);
    for n in [1, 6] {
        let lims = limits("k", n);
        g.bench_function(format!("reserve_settle/{n}_limits"), |b| {
            b.iter(|| {
                let demand = Demand {
                    tokens: 1000,
                    cost_micros: 10,
                };
                let now = now_micros();
                if let Ok(adm) = limiter.reserve(black_box(&lims), demand, now) {
                    limiter.settle(
                        &lims,
                        &adm,
                        demand,
                        Demand {
                            tokens: 500,
                            cost_micros: 5,
                        },
                        now,
                    );
                }
            });
        });
    }
    g.finish();
}

fn bench_redis(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        eprintln!("redis bench: cannot build a tokio runtime");
        return;
    };
    let server = match rt.block_on(sluice_tests::redis::RedisServer::start()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("redis bench needs redis-server (make deps): {e}");
            std::process::exit(1);
        }
    };
    let state = StateConfig::Redis(RedisState {
        url: Secret::new(server.url()),
        fail_open: false,
        replicas: 1,
        timeout: Duration::from_millis(200),
        key_prefix: "bench".into(),
    });
    let Ok(limiter) = Limiter::new(&state) else {
        eprintln!("redis bench: bad state config");
        return;
    };
    let mut g = c.benchmark_group("redis");
    g.measurement_time(Duration::from_secs(3)).sample_size(50);
    for n in [1, 6] {
        let lims = limits("k", n);
        g.bench_function(format!("reserve_settle/{n}_limits"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let demand = Demand {
                        tokens: 1000,
                        cost_micros: 10,
                    };
                    if let Ok(grant) = limiter.reserve(&lims, demand, || ()).await {
                        limiter
                            .settle(
                                &lims,
                                grant,
                                demand,
                                Demand {
                                    tokens: 500,
                                    cost_micros: 5,
                                },
                            )
                            .await;
                    }
                });
            });
        });
    }
    g.finish();
    drop(server);
}

criterion_group!(benches, bench_pipeline, bench_local, bench_redis);
criterion_main!(benches);
