//! Token-aware admission (part of `request_filter`): count the prompt, bound the completion,
//! reserve requests, tokens, concurrency and budget against every limit that applies, and hand
//! back a [`Reservation`] guard that settles on the real usage — or on drop, so capacity never
//! leaks when a client disconnects or a call fails.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice_config::OnExceed;
use sluice_policies::cost::{self, Price};
use sluice_policies::keys::Principal;
use sluice_policies::limits::{Demand, Kind, Limit, RateHeaders, Rejection, Scope};
use sluice_policies::openai::{ApiKind, ParsedRequest};

use crate::error::GatewayError;
use crate::limiter::{Grant, ReserveError};
use crate::state::{Route, Runtime, Shared};

/// Completion reserved when neither the request, the key nor the model bounds it.
pub const DEFAULT_COMPLETION_RESERVE: u64 = 4096;

/// Every limit that applies to `principal` calling `route`.
pub fn limits_for(rt: &Runtime, principal: &Principal, route: &Route) -> Vec<Limit> {
    let mut out = Vec::new();
    let mut push = |scope: &Scope, kind: Kind, max: Option<u64>| {
        if let Some(max) = max {
            out.push(Limit {
                scope: scope.clone(),
                kind,
                max,
            });
        }
    };
    let model = Scope::Model(Arc::clone(&route.model));
    push(&model, Kind::Rpm, route.limits.rpm);
    push(&model, Kind::Tpm, route.limits.tpm);
    push(&model, Kind::Concurrent, route.limits.max_concurrent);
    let Some(key) = &principal.key else {
        return out;
    };
    let scope = Scope::Key(Arc::clone(&principal.key_id));
    push(&scope, Kind::Rpm, key.limits.rpm);
    push(&scope, Kind::Tpm, key.limits.tpm);
    push(&scope, Kind::Concurrent, key.limits.max_concurrent);
    push(&scope, Kind::UsdPerDay, key.budgets.per_day_micros);
    push(&scope, Kind::UsdPerMonth, key.budgets.per_month_micros);
    if let Some(l) = key.model_limits.get(&*route.model) {
        let scope = Scope::KeyModel(Arc::clone(&principal.key_id), Arc::clone(&route.model));
        push(&scope, Kind::Rpm, l.rpm);
        push(&scope, Kind::Tpm, l.tpm);
        push(&scope, Kind::Concurrent, l.max_concurrent);
    }
    if let Some(team) = key.team.as_deref().and_then(|t| rt.teams.get(t)) {
        let scope = Scope::Team(Arc::from(team.name.as_str()));
        push(&scope, Kind::Rpm, team.limits.rpm);
        push(&scope, Kind::Tpm, team.limits.tpm);
        push(&scope, Kind::Concurrent, team.limits.max_concurrent);
        push(&scope, Kind::UsdPerDay, team.budgets.per_day_micros);
        push(&scope, Kind::UsdPerMonth, team.budgets.per_month_micros);
    }
    out
}

/// A held reservation. Settles exactly once: with [`Reservation::settle`], or on drop with
/// nothing consumed (the provider was never reached, or the client went away before usage was
/// known), so capacity never leaks.
#[must_use]
pub struct Reservation {
    shared: Arc<Shared>,
    limits: Vec<Limit>,
    grant: Option<Grant>,
    reserved: Demand,
}

impl Reservation {
    /// Settle with the real usage.
    pub async fn settle(mut self, actual: Demand) {
        if let Some(grant) = self.grant.take() {
            self.shared
                .limiter
                .settle(&self.limits, grant, self.reserved, actual)
                .await;
        }
    }

    /// What was reserved.
    pub fn reserved(&self) -> Demand {
        self.reserved
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            let limits = std::mem::take(&mut self.limits);
            self.shared
                .limiter
                .settle_detached(limits, grant, self.reserved, Demand::default());
        }
    }
}

/// The outcome of admission for one request.
pub struct Admitted {
    /// Held capacity (settle in `logging`); `None` when no limit applies.
    pub reservation: Option<Reservation>,
    /// Header values for `x-ratelimit-*`.
    pub headers: RateHeaders,
    /// The completion cap written into the body, when Sluice changed or added it.
    pub clamped: Option<u64>,
    /// Prompt tokens as counted by Sluice.
    pub prompt_tokens: u64,
}

/// The body field that carries the completion cap for this request.
fn max_tokens_field(body: &serde_json::Map<String, Value>, upstream_model: &str) -> &'static str {
    if body.contains_key("max_completion_tokens") {
        return "max_completion_tokens";
    }
    if body.contains_key("max_tokens") {
        return "max_tokens";
    }
    // Reasoning models reject `max_tokens`.
    let m = upstream_model.to_ascii_lowercase();
    if ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p)) {
        "max_completion_tokens"
    } else {
        "max_tokens"
    }
}

/// Convert a policy rejection into the client-facing error.
pub fn rejection_error(r: &Rejection) -> GatewayError {
    if r.limit.kind.is_budget() {
        GatewayError::QuotaExceeded {
            message: r.to_string(),
            retry_after: r.retry_after,
            label: limit_label(&r.limit),
        }
    } else {
        GatewayError::RateLimited {
            message: r.to_string(),
            retry_after: r.retry_after,
            label: limit_label(&r.limit),
        }
    }
}

/// `key_tpm`, `team_budget_day`, ...: a bounded metric label.
pub fn limit_label(limit: &Limit) -> &'static str {
    use Kind::*;
    match (limit.scope.label(), limit.kind) {
        ("key", Rpm) => "key_rpm",
        ("key", Tpm) => "key_tpm",
        ("key", Concurrent) => "key_concurrent",
        ("key", UsdPerDay) => "key_budget_day",
        ("key", UsdPerMonth) => "key_budget_month",
        ("key_model", Rpm) => "key_model_rpm",
        ("key_model", Tpm) => "key_model_tpm",
        ("key_model", _) => "key_model_concurrent",
        ("model", Rpm) => "model_rpm",
        ("model", Tpm) => "model_tpm",
        ("model", _) => "model_concurrent",
        ("team", Rpm) => "team_rpm",
        ("team", Tpm) => "team_tpm",
        ("team", Concurrent) => "team_concurrent",
        ("team", UsdPerDay) => "team_budget_day",
        _ => "team_budget_month",
    }
}

/// Bodies at least this large are counted with the worker thread handed off the reactor
/// (exact BPE counting runs at roughly 20-40 MB/s).
const BLOCKING_COUNT_BYTES: usize = 64 * 1024;

/// Count the prompt; large prompts are counted in `block_in_place` so other requests on this
/// worker move to another thread meanwhile.
fn count_prompt(route: &Route, api: ApiKind, parsed: &ParsedRequest, body_len: usize) -> u64 {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if body_len >= BLOCKING_COUNT_BYTES && multi_thread {
        tokio::task::block_in_place(|| route.tokenizer.count_prompt(api, &parsed.body))
    } else {
        route.tokenizer.count_prompt(api, &parsed.body)
    }
}

/// Count, bound and reserve. May rewrite the completion cap in `parsed.body`.
pub async fn admit(
    shared: &Arc<Shared>,
    rt: &Runtime,
    principal: &Principal,
    route: &Route,
    api: ApiKind,
    parsed: &mut ParsedRequest,
    body_len: usize,
) -> Result<Admitted, GatewayError> {
    let prompt_tokens = count_prompt(route, api, parsed, body_len);
    let limits = limits_for(rt, principal, route);
    let key = principal.key.as_deref();

    // Bound the completion: the key's cap, the model's cap, then what the budget can pay.
    let mut clamped = None;
    let completion = if api == ApiKind::Embeddings {
        0
    } else {
        // Every choice (`n`, or `best_of` for completions) may produce the full cap.
        let n = ["n", "best_of"]
            .iter()
            .filter_map(|f| parsed.body.get(*f).and_then(Value::as_u64))
            .max()
            .unwrap_or(1)
            .max(1);
        let requested = parsed
            .body
            .get("max_completion_tokens")
            .or_else(|| parsed.body.get("max_tokens"))
            .and_then(Value::as_u64);
        let cap = [key.and_then(|k| k.max_tokens), route.max_output_tokens]
            .into_iter()
            .flatten()
            .min();
        let on_exceed = key.map_or(OnExceed::Clamp, |k| k.on_exceed);
        let mut per_choice = match (requested, cap) {
            (Some(r), Some(c)) if r > c => {
                if on_exceed == OnExceed::Reject {
                    return Err(GatewayError::MaxTokensExceeded {
                        requested: r,
                        allowed: c,
                    });
                }
                clamped = Some(c);
                c
            }
            (Some(r), _) => r,
            (None, Some(c)) => {
                if on_exceed == OnExceed::Reject {
                    return Err(GatewayError::MaxTokensRequired { allowed: c });
                }
                clamped = Some(c);
                c
            }
            (None, None) => DEFAULT_COMPLETION_RESERVE,
        };
        if let Some(price) = &route.price {
            if let Some(left) = shared.limiter.budget_left(&limits).await {
                let prompt_cost = cost::worst_case_micros(price, prompt_tokens, 0);
                let affordable = affordable_tokens(price, left.saturating_sub(prompt_cost)) / n;
                if affordable == 0 {
                    // Reserve anyway: the limiter produces the right quota error and retry-after.
                } else if affordable < per_choice {
                    if on_exceed == OnExceed::Reject {
                        return Err(GatewayError::MaxTokensExceeded {
                            requested: per_choice,
                            allowed: affordable,
                        });
                    }
                    per_choice = affordable;
                    clamped = Some(affordable);
                }
            }
        }
        if let Some(c) = clamped {
            let field = max_tokens_field(&parsed.body, &route.upstream_model);
            parsed.body.remove("max_tokens");
            parsed.body.remove("max_completion_tokens");
            parsed.body.insert(field.to_owned(), Value::from(c));
        }
        per_choice * n
    };

    let demand = Demand {
        tokens: prompt_tokens + completion,
        cost_micros: route
            .price
            .as_ref()
            .map_or(0, |p| cost::worst_case_micros(p, prompt_tokens, completion)),
    };
    if limits.is_empty() {
        return Ok(Admitted {
            reservation: None,
            headers: RateHeaders::default(),
            clamped,
            prompt_tokens,
        });
    }
    let on_error = || shared.metrics.state_errors.inc();
    let grant = match shared.limiter.reserve(&limits, demand, on_error).await {
        Ok(g) => g,
        Err(ReserveError::Rejected(r)) => {
            shared
                .metrics
                .ratelimit_rejections
                .with_label_values(&[limit_label(&r.limit)])
                .inc();
            return Err(rejection_error(&r));
        }
        Err(ReserveError::Unavailable) => return Err(GatewayError::StateUnavailable),
    };
    let headers = grant.admission.headers;
    Ok(Admitted {
        reservation: Some(Reservation {
            shared: Arc::clone(shared),
            limits,
            grant: Some(grant),
            reserved: demand,
        }),
        headers,
        clamped,
        prompt_tokens,
    })
}

/// Completion tokens `micros` can pay for.
fn affordable_tokens(price: &Price, micros: u64) -> u64 {
    if price.output_per_mtok <= 0.0 {
        return u64::MAX;
    }
    // micro-USD per token = output_per_mtok (USD per 1e6 tokens) → 1 µUSD-per-token per 1 USD/Mtok.
    (micros as f64 / price.output_per_mtok).floor() as u64
}

/// Real usage → demand for settling.
pub fn actual_demand(price: Option<&Price>, prompt: u64, cached: u64, completion: u64) -> Demand {
    Demand {
        tokens: prompt + completion,
        cost_micros: price.map_or(0, |p| cost::cost_micros(p, prompt, cached, completion)),
    }
}

/// `retry-after` seconds (rounded up, at least 1).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// OpenAI-style duration text for `x-ratelimit-reset-*` (`6s`, `1m30s`, `250ms`).
pub fn reset_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{secs:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return format!("{s}s");
    }
    let whole = d.as_secs();
    format!("{}m{}s", whole / 60, whole % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_text_is_openai_style() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_millis(6000)), "6s");
        assert_eq!(reset_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(reset_text(Duration::from_secs(90)), "1m30s");
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn affordable_tokens_follow_the_output_price() {
        let p = Price {
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
            cached_input_per_mtok: None,
        };
        // $0.001 = 1000 µUSD at $2 per 1M tokens = 500 tokens.
        assert_eq!(affordable_tokens(&p, 1000), 500);
    }
}
