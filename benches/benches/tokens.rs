//! Prompt token counting (`sluice_policies::tokens`), as `request_filter` runs it before
//! reserving against TPM and budgets.
//!
//! - `count_chat/{cl100k_base,o200k_base}`: a chat body of about 1,000 prompt tokens (system
//!   prompt, a few turns of prose, a code snippet, one tool definition and one tool call).
//! - `count_chat/approx`: the same body with the byte-ratio estimate used for non-OpenAI models.
//! - `count_text_64k/{cl100k_base,o200k_base}`: 64 KiB of prose in one string.
//! - `count_text_unseen_4k/{cl100k_base,o200k_base}`: about 1,000 tokens of words the thread
//!   has not just counted: each iteration counts the next of 256 different 4 KiB texts drawn
//!   from a vocabulary of 50,000 made-up words (1 MiB in all), so the per-thread piece cache
//!   mostly misses and most words take the token table and the BPE. A bound for text unlike
//!   anything recent; real prompts repeat common words and whole messages (chat history).
//!
//! The encodings are loaded before measuring (`Tokenizer::preload`), as the gateway does at
//! start-up. Run: `cargo bench -p sluice-benches --bench tokens` (about 40 s).

#![expect(
    missing_docs,
    reason = "criterion_main! generates an undocumented `main`"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Map, Value};
use sluice_policies::tokens::Tokenizer;

const PROSE: &str = "Our gateway sits between applications and several model providers. \
It authenticates each caller with a virtual key, enforces per-key rate limits and daily \
budgets, redacts personal data, and answers repeated questions from a cache. When a provider \
slows down or returns errors, requests move to the next healthy deployment in another region. ";

const CODE: &str = "fn settle(ledger: &mut Ledger, reserved: u64, used: u64) -> u64 {\n    \
let refund = reserved.saturating_sub(used);\n    ledger.release(refund);\n    refund\n}\n";

/// A chat body of about 1,000 prompt tokens in both OpenAI encodings.
fn chat_body() -> Map<String, Value> {
    let mut messages = vec![json!({
        "role": "system",
        "content": "You are a careful assistant for an infrastructure team. Answer precisely."
    })];
    for turn in 0..4 {
        messages
            .push(json!({"role": "user", "content": format!("Question {turn}: {PROSE}{PROSE}")}));
        messages.push(json!({"role": "assistant", "content": format!("Answer {turn}: {PROSE}")}));
    }
    messages.push(json!({"role": "user", "content": [
        {"type": "text", "text": format!("Review this function:\n{CODE}")},
        {"type": "text", "text": "Is the refund computed correctly when usage exceeds the reservation?"}
    ]}));
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "lookup_ledger", "arguments": "{\"key_id\":\"team-a\",\"day\":\"2025-01-31\"}"}
    }]}));
    messages.push(json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"reserved\":4096,\"used\":5120}"}));
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": messages,
        "tools": [{"type": "function", "function": {
            "name": "lookup_ledger",
            "description": "Look up a key's reserved and used tokens for one day",
            "parameters": {"type": "object", "properties": {
                "key_id": {"type": "string", "description": "The virtual key id"},
                "day": {"type": "string", "description": "UTC day, YYYY-MM-DD"}
            }, "required": ["key_id", "day"]}
        }}],
        "max_tokens": 512
    });
    match body {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `count` texts of about `bytes` bytes each: sentences of made-up words (two to four common
/// English syllables, from a vocabulary of 50,000), with punctuation and numbers.
fn unseen_texts(count: usize, bytes: usize) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "con", "ter", "ing", "al", "ment", "pro", "re", "de", "com", "ver", "tion", "pre", "ex",
        "in", "un", "dis", "per", "for", "ble", "ous", "ive", "ful", "less", "ly", "er", "est",
        "at", "ist", "an", "or", "ic", "ate", "ize", "ward", "sub", "trans", "mon", "gar", "lin",
        "sto", "qua", "vel", "nor", "bri", "tas", "pho", "zen", "kra", "mu", "dro",
    ];
    let mut state: u64 = 0x853c_49e6_748f_ea9b;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % n as u64) as usize
    };
    let vocabulary: Vec<String> = (0..50_000)
        .map(|_| {
            (0..2 + next(3))
                .map(|_| SYLLABLES[next(SYLLABLES.len())])
                .collect()
        })
        .collect();
    (0..count)
        .map(|_| {
            let mut text = String::with_capacity(bytes + 64);
            while text.len() < bytes {
                let word = &vocabulary[next(vocabulary.len())];
                match next(20) {
                    0 => text.push_str(". "),
                    1 => text.push_str(", "),
                    2 => text.push_str(&format!(" {}", next(10_000))),
                    _ => text.push(' '),
                }
                text.push_str(word);
            }
            text
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let body = chat_body();
    let tokenizers = [
        Tokenizer::Cl100kBase,
        Tokenizer::O200kBase,
        Tokenizer::Approx {
            bytes_per_token: 3.5,
        },
    ];
    let mut group = c.benchmark_group("count_chat");
    for t in tokenizers {
        t.preload();
        let tokens = t.count_chat(&body);
        group.throughput(Throughput::Elements(tokens));
        eprintln!("count_chat/{t}: {tokens} prompt tokens");
        group.bench_function(t.name(), |b| b.iter(|| t.count_chat(black_box(&body))));
    }
    group.finish();

    let text = PROSE.repeat(64 * 1024 / PROSE.len());
    let mut group = c.benchmark_group("count_text_64k");
    group.throughput(Throughput::Bytes(text.len() as u64));
    for t in &tokenizers[..2] {
        group.bench_function(t.name(), |b| b.iter(|| t.count_text(black_box(&text))));
    }
    group.finish();

    let texts = unseen_texts(256, 4 * 1024);
    let mut group = c.benchmark_group("count_text_unseen_4k");
    group.throughput(Throughput::Bytes(4 * 1024));
    for t in &tokenizers[..2] {
        let tokens: u64 = texts.iter().map(|text| t.count_text(text)).sum();
        eprintln!(
            "count_text_unseen_4k/{t}: {} tokens per text on average",
            tokens / texts.len() as u64
        );
        let mut i = 0;
        group.bench_function(t.name(), |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                t.count_text(black_box(&texts[i]))
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = tokens;
    config = config();
    targets = benches
}
criterion_main!(tokens);
