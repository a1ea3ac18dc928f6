//! What a request costs, in integer micro-USD.
//!
//! Budgets add up many small amounts across replicas (in Redis, with `INCRBY`), so money is a
//! `u64` count of micro-USD (1e-6 USD): integer sums never drift, and a day's spend of a busy
//! key (millions of requests) still fits with room to spare. Prices come from the config in USD
//! per million tokens; conveniently, 1 USD per 1M tokens is exactly 1 micro-USD per token.
//!
//! Prices are converted to integer pico-USD per token (1e-6 micro-USD) before multiplying, so
//! `100 tokens x 0.15 USD/Mtok` is exactly 15 micro-USD — multiplying the floats directly would
//! give 15.000000000000002 and round up to 16. A request's total is rounded up to the next
//! micro-USD once, after summing its parts.

use serde::Deserialize;
use serde_json::Value;

/// A model's price in USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    /// Uncached prompt (input) tokens.
    pub input_per_mtok: f64,
    /// Completion (output) tokens, reasoning tokens included.
    pub output_per_mtok: f64,
    /// Prompt tokens served from the provider's prompt cache; `None` bills them at
    /// `input_per_mtok`.
    pub cached_input_per_mtok: Option<f64>,
}

/// Pico-USD per token in one micro-USD.
const PICOS_PER_MICRO: u128 = 1_000_000;

/// USD per 1M tokens as integer pico-USD per token, rounded to the nearest pico-USD (finer
/// prices than 1e-6 USD per 1M tokens do not exist). Negative and NaN prices count as free, so a
/// bad price can never credit a budget; config validation is where they are rejected.
fn picos_per_token(usd_per_mtok: f64) -> u128 {
    if usd_per_mtok.is_nan() || usd_per_mtok <= 0.0 {
        return 0;
    }
    // `as` saturates at u128::MAX for huge values and infinity.
    (usd_per_mtok * 1e6).round() as u128
}

/// The cost of a finished request in micro-USD, rounded up.
///
/// `cached_prompt_tokens` are the part of `prompt_tokens` the provider served from its prompt
/// cache (OpenAI's `usage.prompt_tokens_details.cached_tokens`, see [`cached_prompt_tokens`]).
/// They are billed at `cached_input_per_mtok` when the price has one, else at the input rate,
/// and never twice: the rest of `prompt_tokens` is billed at `input_per_mtok`. A cached count
/// above `prompt_tokens` is clamped to it. Saturates at `u64::MAX`.
pub fn cost_micros(
    price: &Price,
    prompt_tokens: u64,
    cached_prompt_tokens: u64,
    completion_tokens: u64,
) -> u64 {
    let cached = cached_prompt_tokens.min(prompt_tokens);
    let uncached = prompt_tokens - cached;
    let input = picos_per_token(price.input_per_mtok);
    let cached_rate = price.cached_input_per_mtok.map_or(input, picos_per_token);
    let output = picos_per_token(price.output_per_mtok);
    let picos = u128::from(uncached)
        .saturating_mul(input)
        .saturating_add(u128::from(cached).saturating_mul(cached_rate))
        .saturating_add(u128::from(completion_tokens).saturating_mul(output));
    let micros = picos.div_ceil(PICOS_PER_MICRO);
    u64::try_from(micros).unwrap_or(u64::MAX)
}

/// The most a request can cost before it runs: every prompt token at the uncached input rate
/// (a prompt-cache hit is not known in advance) plus `max_completion_tokens` of output. This is
/// what the gateway reserves against budgets; it settles with [`cost_micros`] afterwards.
pub fn worst_case_micros(price: &Price, prompt_tokens: u64, max_completion_tokens: u64) -> u64 {
    cost_micros(price, prompt_tokens, 0, max_completion_tokens)
}

/// Micro-USD as USD, for metrics and logs (never for budget arithmetic).
pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Prompt tokens served from the provider's prompt cache, from a `usage` object:
/// `prompt_tokens_details.cached_tokens` (chat and completions) or
/// `input_tokens_details.cached_tokens` (Responses API). A whole response body or stream
/// chunk that carries `usage` works too. 0 when absent, null or not a non-negative integer.
pub fn cached_prompt_tokens(usage_json: &Value) -> u64 {
    let usage = match usage_json.get("usage") {
        Some(inner @ Value::Object(_)) => inner,
        _ => usage_json,
    };
    ["prompt_tokens_details", "input_tokens_details"]
        .iter()
        .find_map(|details| usage.get(*details)?.get("cached_tokens")?.as_u64())
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct CachedCarrier {
    #[serde(default)]
    usage: Option<CachedUsage>,
}

#[derive(Deserialize)]
struct CachedUsage {
    #[serde(default)]
    prompt_tokens_details: Option<CachedDetails>,
    #[serde(default)]
    input_tokens_details: Option<CachedDetails>,
}

#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// [`cached_prompt_tokens`] straight from the bytes of a JSON response body or one stream
/// chunk's `data`, without building a `Value` (the companion of
/// [`crate::openai::usage_from_json`]). 0 when there is no usage or no cached count.
pub fn cached_prompt_tokens_from_json(bytes: &[u8]) -> u64 {
    let Ok(CachedCarrier { usage: Some(usage) }) = serde_json::from_slice::<CachedCarrier>(bytes)
    else {
        return 0;
    };
    [usage.prompt_tokens_details, usage.input_tokens_details]
        .into_iter()
        .find_map(|d| d?.cached_tokens)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MINI: Price = Price {
        input_per_mtok: 0.15,
        output_per_mtok: 0.60,
        cached_input_per_mtok: Some(0.075),
    };

    #[test]
    fn decimal_prices_do_not_drift() {
        // 100 x 0.15 in f64 is 15.000000000000002; a naive ceil would bill 16.
        assert_eq!(cost_micros(&MINI, 100, 0, 0), 15);
        assert_eq!(cost_micros(&MINI, 0, 0, 100), 60);
        assert_eq!(cost_micros(&MINI, 1_000_000, 0, 1_000_000), 750_000);
        // gpt-4.1-nano-like prices with three decimals.
        let p = Price {
            input_per_mtok: 0.1,
            output_per_mtok: 0.4,
            cached_input_per_mtok: Some(0.025),
        };
        assert_eq!(cost_micros(&p, 30, 0, 10), 7); // 3 + 4
        assert_eq!(cost_micros(&p, 40, 40, 0), 1); // 40 x 0.025 = 1 exactly
    }

    #[test]
    fn rounds_up_once_to_the_next_micro() {
        // 1 token at 0.15 USD/Mtok is 0.15 micro-USD: billed as 1.
        assert_eq!(cost_micros(&MINI, 1, 0, 0), 1);
        // 7 x 0.15 + 1 x 0.60 = 1.65 -> 2 (rounding each part up would give 3).
        assert_eq!(cost_micros(&MINI, 7, 0, 1), 2);
        // Exact amounts are not rounded: 20 x 0.15 = 3.
        assert_eq!(cost_micros(&MINI, 20, 0, 0), 3);
        assert_eq!(cost_micros(&MINI, 21, 0, 0), 4); // 3.15 -> 4
    }

    #[test]
    fn cached_tokens_use_the_cached_rate_and_are_not_double_counted() {
        // 1M prompt tokens, 400k cached: 600k x 0.15 + 400k x 0.075 = 90 + 30 = 120 milli-USD.
        assert_eq!(cost_micros(&MINI, 1_000_000, 400_000, 0), 120_000);
        // All cached.
        assert_eq!(cost_micros(&MINI, 1_000_000, 1_000_000, 0), 75_000);
        // A cached count larger than the prompt is clamped, never billed as extra tokens.
        assert_eq!(cost_micros(&MINI, 1000, 5000, 0), 75);
        // Without a cached rate, cached tokens cost the input rate: no discount, no double bill.
        let no_cache_rate = Price {
            cached_input_per_mtok: None,
            ..MINI
        };
        assert_eq!(
            cost_micros(&no_cache_rate, 1_000_000, 400_000, 0),
            cost_micros(&no_cache_rate, 1_000_000, 0, 0)
        );
        assert_eq!(cost_micros(&no_cache_rate, 1_000_000, 400_000, 0), 150_000);
    }

    #[test]
    fn zero_and_invalid_prices_cost_nothing() {
        let free = Price::default();
        assert_eq!(cost_micros(&free, 1_000_000, 10, 1_000_000), 0);
        assert_eq!(worst_case_micros(&free, u64::MAX, u64::MAX), 0);
        let bad = Price {
            input_per_mtok: -3.0,
            output_per_mtok: f64::NAN,
            cached_input_per_mtok: Some(-1.0),
        };
        assert_eq!(cost_micros(&bad, 1000, 10, 1000), 0);
        // A free cache tier is honoured: cached tokens cost nothing, the rest still does.
        let free_cache = Price {
            cached_input_per_mtok: Some(0.0),
            ..MINI
        };
        assert_eq!(cost_micros(&free_cache, 1_000_000, 1_000_000, 0), 0);
        assert_eq!(cost_micros(&free_cache, 1_000_000, 0, 0), 150_000);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let pricey = Price {
            input_per_mtok: 1e12,
            output_per_mtok: f64::INFINITY,
            cached_input_per_mtok: None,
        };
        assert_eq!(cost_micros(&pricey, u64::MAX, 0, u64::MAX), u64::MAX);
        assert_eq!(cost_micros(&pricey, 0, 0, 1), u64::MAX);
    }

    #[test]
    fn worst_case_ignores_cache_and_covers_the_real_cost() {
        // 1,200 prompt tokens, up to 500 out: 180 + 300 = 480 micro-USD.
        assert_eq!(worst_case_micros(&MINI, 1200, 500), 480);
        // Whatever the provider then reports within those limits costs no more.
        for (cached, out) in [(0, 500), (1024, 500), (1200, 0), (600, 250)] {
            assert!(cost_micros(&MINI, 1200, cached, out) <= worst_case_micros(&MINI, 1200, 500));
        }
    }

    #[test]
    fn micros_display_as_usd() {
        assert!((micros_to_usd(1_500_000) - 1.5).abs() < 1e-12);
        assert_eq!(micros_to_usd(0), 0.0);
    }

    #[test]
    fn cached_tokens_from_usage() {
        let usage = json!({
            "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        });
        assert_eq!(cached_prompt_tokens(&usage), 1920);
        // The whole response (or a final stream chunk) works as well.
        assert_eq!(
            cached_prompt_tokens(&json!({"id": "x", "usage": usage})),
            1920
        );
        // Responses API spelling.
        assert_eq!(
            cached_prompt_tokens(
                &json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 8}})
            ),
            8
        );
        for absent in [
            json!({"prompt_tokens": 5}),
            json!({"prompt_tokens_details": null}),
            json!({"prompt_tokens_details": {"cached_tokens": null}}),
            json!({"prompt_tokens_details": {"cached_tokens": -1}}),
            json!({"usage": null}),
            json!(null),
        ] {
            assert_eq!(cached_prompt_tokens(&absent), 0, "{absent}");
        }
    }

    #[test]
    fn cached_tokens_from_bytes() {
        let body = br#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":2006,"completion_tokens":3,"total_tokens":2009,"prompt_tokens_details":{"cached_tokens":1920}}}"#;
        assert_eq!(cached_prompt_tokens_from_json(body), 1920);
        assert_eq!(cached_prompt_tokens_from_json(br#"{"usage":null}"#), 0);
        assert_eq!(
            cached_prompt_tokens_from_json(br#"{"usage":{"prompt_tokens":3}}"#),
            0
        );
        assert_eq!(cached_prompt_tokens_from_json(b"not json"), 0);
        // Agrees with the Value-based reader.
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            cached_prompt_tokens(&v),
            cached_prompt_tokens_from_json(body)
        );
    }
}
