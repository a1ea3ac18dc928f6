//! PII recognizers (`sluice_policies::pii`) on a 10 KB prompt, reported in bytes/s.
//!
//! - `scan/clean_10k`: no PII, but the look-alikes the validators must reject (versions, dates,
//!   prices, order IDs, git SHAs, UUIDs, code identifiers). The common case on the request path.
//! - `scan/pii_10k`: the same size with ~20 PII items (emails, phones, cards, SSNs, IBANs, IPs,
//!   keys).
//! - `apply_mask/pii_10k`, `apply_pseudonym/pii_10k`: scan plus rewriting the text.
//! - `restore_stream/pii_10k`: the pseudonymized text restored in 64-byte chunks.
//!
//! Run: `cargo bench -p sluice-benches --bench pii` (about half a minute).

#![expect(
    missing_docs,
    reason = "criterion_main! generates an undocumented `main`"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_policies::pii::{Action, PiiPolicy, PiiSpec, PseudonymMap, RedactMode, Restorer};

const TARGET: usize = 10 * 1024;

const CLEAN: &[&str] = &[
    "Please summarize the following design notes for the platform team and list open questions. ",
    "We upgraded the gateway from v2.3.1 to v2.4.0 on 2024-03-15 at 12:30:45 UTC without downtime. ",
    "The invoice total was $1,234.56 for Order 1234567890, shipped in 3 boxes weighing 4.5 kg each. ",
    "Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed the retry loop in upstream_pool.rs. ",
    "Request 550e8400-e29b-41d4-a716-446655440000 timed out after 30s; see the dashboard panel. ",
    "fn getUserAccountBalanceForFiscalYear2024(ctx: &Context) -> Result<Balance, Error> { todo() } ",
    "Latency p99 dropped from 180 ms to 95 ms while throughput rose by 12% across all regions. ",
    "Our policy: rotate credentials every 90 days, review access quarterly, and log every change. ",
    "The cache hit ratio is 0.42 with a TTL of 1h; the semantic threshold stays at 0.92 for now. ",
    "Read chapter 7, pages 120-135, and compare std::collections::HashMap with BTreeMap. ",
];

const PII: &[&str] = &[
    "Contact jane.doe@example.com about the renewal. ",
    "Call +1 (415) 555-2671 after lunch. ",
    "Card on file: 4111 1111 1111 1111. ",
    "Her SSN is 078-05-1120. ",
    "Wire to DE89 3704 0044 0532 0130 00 please. ",
    "The host 192.168.10.25 keeps rebooting. ",
    "Key sk-Zq8Rt2Lm9XwT4vN7kB1mC5sD0eH3jP6gAuYbVc1x2Y3z4W5 leaked. ",
    "London office: 020 7946 0958. ",
    "IPv6 peer 2001:db8::8a2e:370:7334 is flapping. ",
    "AWS key AKIAIOSFODNN7EXAMPLE was rotated. ",
];

fn clean_prompt() -> String {
    let mut s = String::with_capacity(TARGET + 128);
    for line in CLEAN.iter().cycle() {
        if s.len() >= TARGET {
            break;
        }
        s.push_str(line);
    }
    s
}

/// ~20 PII items spread over 10 KB of the clean text.
fn pii_prompt() -> String {
    let mut s = String::with_capacity(TARGET + 256);
    let mut pii = PII.iter().cycle();
    let mut i = 0;
    for line in CLEAN.iter().cycle() {
        if s.len() >= TARGET {
            break;
        }
        s.push_str(line);
        i += 1;
        if i % 5 == 0 {
            if let Some(p) = pii.next() {
                s.push_str(p);
            }
        }
    }
    s
}

fn bench_pii(c: &mut Criterion) {
    let mask = match PiiPolicy::new(&PiiSpec::all(Action::Redact)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pii bench setup failed: {e}");
            return;
        }
    };
    let mut spec = PiiSpec::all(Action::Redact);
    spec.mode = RedactMode::Pseudonym;
    let pseudo = match PiiPolicy::new(&spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pii bench setup failed: {e}");
            return;
        }
    };
    let clean = clean_prompt();
    let pii = pii_prompt();
    eprintln!(
        "clean: {} B, {} findings; pii: {} B, {} findings",
        clean.len(),
        mask.scan(&clean).len(),
        pii.len(),
        mask.scan(&pii).len()
    );

    let mut g = c.benchmark_group("pii");
    g.measurement_time(Duration::from_secs(4));

    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("scan/clean_10k", |b| {
        b.iter(|| black_box(mask.scan(black_box(&clean))))
    });

    g.throughput(Throughput::Bytes(pii.len() as u64));
    g.bench_function("scan/pii_10k", |b| {
        b.iter(|| black_box(mask.scan(black_box(&pii))))
    });
    g.bench_function("apply_mask/pii_10k", |b| {
        b.iter(|| {
            let mut session = PseudonymMap::new();
            black_box(mask.apply(black_box(&pii), &mut session).text.len())
        })
    });
    g.bench_function("apply_pseudonym/pii_10k", |b| {
        b.iter(|| {
            let mut session = PseudonymMap::new();
            black_box(pseudo.apply(black_box(&pii), &mut session).text.len())
        })
    });

    let mut session = PseudonymMap::new();
    let redacted = pseudo.apply(&pii, &mut session).text.into_owned();
    let session = Arc::new(session);
    g.throughput(Throughput::Bytes(redacted.len() as u64));
    g.bench_function("restore_stream/pii_10k", |b| {
        b.iter(|| {
            let mut r = Restorer::new(session.clone());
            let mut n = 0;
            for chunk in redacted.as_bytes().chunks(64) {
                // The text is ASCII, so every 64-byte chunk is valid UTF-8.
                if let Ok(chunk) = std::str::from_utf8(chunk) {
                    n += r.push(chunk).len();
                }
            }
            n += r.finish().len();
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_pii);
criterion_main!(benches);
