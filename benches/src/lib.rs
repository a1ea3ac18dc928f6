//! sluice-benches: fixtures shared by the criterion micro-benches (`benches/request_path.rs`)
//! and the whole-process load run (`load.sh` with the `bare-proxy` and `loadgen` binaries).
//!
//! Nothing here runs in production; it builds request bodies and configs of known shapes so
//! every bench measures the same inputs.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::fmt::Write as _;

/// The raw virtual key every bench client presents (`authorization: Bearer sk-bench`).
pub const BENCH_KEY: &str = "sk-bench";

/// A small chat completion body (about 300 bytes) for `model`.
pub fn small_chat_body(model: &str, stream: bool) -> String {
    let stream = if stream { r#","stream":true"# } else { "" };
    format!(
        concat!(
            r#"{{"model":"{model}","messages":["#,
            r#"{{"role":"system","content":"You are a concise assistant. Answer in plain text."}},"#,
            r#"{{"role":"user","content":"Summarize the trade-offs between open-loop and "#,
            r#"closed-loop load generation in two short sentences, please. Keep it brief."}}],"#,
            r#""temperature":0.2,"max_tokens":64,"user":"bench-user-0001"{stream}}}"#
        ),
        model = model,
        stream = stream
    )
}

/// A chat completion body of at least `min_bytes` bytes: alternating user/assistant turns of
/// ~1 KiB of deterministic prose each, the shape of a long conversation history.
pub fn large_chat_body(model: &str, min_bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "gateway", "latency", "budget", "token", "provider", "region", "cache", "stream", "limit",
        "request", "upstream", "policy", "header", "prompt", "answer", "model",
    ];
    let mut body = format!(r#"{{"model":"{model}","messages":["#);
    let mut turn = 0usize;
    while body.len() < min_bytes {
        let role = if turn & 1 == 0 { "user" } else { "assistant" };
        if turn > 0 {
            body.push(',');
        }
        let _ = write!(body, r#"{{"role":"{role}","content":""#);
        let start = body.len();
        let mut w = turn;
        while body.len() - start < 1000 {
            body.push_str(WORDS[w % WORDS.len()]);
            body.push(' ');
            w = w.wrapping_mul(31).wrapping_add(7);
        }
        body.push_str(r#""}"#);
        turn += 1;
    }
    // A chat request must end with a user turn to look realistic; the parser does not care.
    body.push_str(r#"],"temperature":0.7,"max_tokens":256}"#);
    body
}

/// Lower-case hex SHA-256 of a raw key, as `keys[].key_sha256` wants it.
pub fn key_digest_hex(raw: &str) -> String {
    sluice_policies::keys::digest_hex(raw)
}

/// A gateway config with `n_keys` virtual keys (the last is [`BENCH_KEY`], id `bench`), the
/// models `bench` (→ `echo`) and `bench-stream` (→ `chunks-8-0`) on one OpenAI-compatible
/// provider at `upstream` (`host:port`), plus `extra_models` more aliases so route lookup
/// searches a realistically sized map.
pub fn bench_config_yaml(upstream: &str, n_keys: usize, extra_models: usize) -> String {
    let mut y = String::new();
    y.push_str(
        "server: { listen: \"127.0.0.1:18080\", admin_listen: \"127.0.0.1:19090\", threads: 1 }\n",
    );
    y.push_str("auth: { required: true }\n");
    let _ = writeln!(
        y,
        "providers:\n  - {{ name: fake, kind: openai, base_url: \"http://{upstream}/v1\", api_key: \"sk-upstream\" }}"
    );
    y.push_str("models:\n");
    y.push_str("  - { name: bench, targets: [ { provider: fake, model: echo } ] }\n");
    y.push_str(
        "  - { name: bench-stream, targets: [ { provider: fake, model: \"chunks-8-0\" } ] }\n",
    );
    for i in 0..extra_models {
        let _ = writeln!(
            y,
            "  - {{ name: alias-{i:04}, targets: [ {{ provider: fake, model: upstream-{i:04} }} ] }}"
        );
    }
    y.push_str("keys:\n");
    for i in 0..n_keys.saturating_sub(1) {
        let digest = key_digest_hex(&format!("sk-other-{i:05}"));
        let _ = writeln!(y, "  - {{ id: key-{i:05}, key_sha256: \"{digest}\" }}");
    }
    let _ = writeln!(
        y,
        "  - {{ id: bench, key_sha256: \"{}\" }}",
        key_digest_hex(BENCH_KEY)
    );
    y.push_str("logs: { format: json, level: warn }\n");
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_policies::openai::{parse_request, ApiKind};

    #[test]
    fn bodies_parse_and_have_the_intended_sizes() {
        let small = small_chat_body("bench", false);
        assert!(
            (250..=350).contains(&small.len()),
            "small body is {} bytes",
            small.len()
        );
        let parsed = parse_request(ApiKind::ChatCompletions, small.as_bytes()).unwrap();
        assert_eq!(parsed.model, "bench");
        assert!(!parsed.stream);
        assert!(
            parse_request(
                ApiKind::ChatCompletions,
                small_chat_body("m", true).as_bytes()
            )
            .unwrap()
            .stream
        );

        let large = large_chat_body("bench", 64 * 1024);
        assert!(
            large.len() >= 64 * 1024 && large.len() < 66 * 1024,
            "{}",
            large.len()
        );
        parse_request(ApiKind::ChatCompletions, large.as_bytes()).unwrap();
    }

    #[test]
    fn config_loads_with_all_keys_and_models() {
        let yaml = bench_config_yaml("127.0.0.1:9", 1000, 50);
        let config = sluice_config::load_str(&yaml, &|_| None).unwrap();
        assert_eq!(config.keys.len(), 1000);
        assert_eq!(config.models.len(), 52);
    }
}
