//! The `logging` phase: metrics and one log line per request. Runs for every request, also
//! after errors and early answers. Never logs prompt text or keys.

use pingora::proxy::Session;

use crate::admission::actual_demand;
use crate::ctx::RequestCtx;
use crate::metrics::status_class;
use crate::state::Shared;

/// Record a finished request.
pub async fn finish(shared: &Shared, session: &Session, ctx: &mut RequestCtx) {
    settle(shared, ctx).await;
    let elapsed = ctx.started.elapsed();
    let m = &shared.metrics;
    let endpoint = ctx.endpoint.as_ref().map_or("none", |e| e.label());
    let model = ctx.model.as_deref().unwrap_or("unknown");
    let provider = ctx.provider.as_deref().unwrap_or("none");
    // A request that never got a status (e.g. the client vanished) is counted as 499.
    let status = if ctx.status == 0 { 499 } else { ctx.status };
    m.requests
        .with_label_values(&[endpoint, model, provider, status_class(status)])
        .inc();
    m.request_duration
        .with_label_values(&[endpoint])
        .observe(elapsed.as_secs_f64());
    if ctx.provider.is_some() && !ctx.upstream_wait.is_zero() {
        m.upstream_duration
            .with_label_values(&[provider])
            .observe(ctx.upstream_wait.as_secs_f64());
    }
    if let Some(ttft) = ctx.first_byte {
        if ctx.model.is_some() && (200..300).contains(&status) {
            m.ttft
                .with_label_values(&[model])
                .observe(ttft.as_secs_f64());
        }
    }
    m.overhead
        .observe(elapsed.saturating_sub(ctx.upstream_wait).as_secs_f64());
    if let Some(u) = &ctx.usage {
        m.tokens
            .with_label_values(&[model, "prompt"])
            .inc_by(u.prompt_tokens);
        m.tokens
            .with_label_values(&[model, "completion"])
            .inc_by(u.completion_tokens);
    }
    if let Some(reason) = ctx.error {
        m.errors.with_label_values(&[reason]).inc();
    }
    let usage = ctx.usage.unwrap_or_default();
    tracing::info!(
        target: "sluice::request",
        request_id = %ctx.request_id,
        method = %session.req_header().method,
        endpoint,
        key_id = ctx.key_id.as_deref().unwrap_or("-"),
        model,
        provider,
        status,
        error = ctx.error.unwrap_or("-"),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_ms = ctx.upstream_wait.as_secs_f64() * 1000.0,
        ttft_ms = ctx.first_byte.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        "request"
    );
    // The runtime snapshot and in-flight guard are released with the context.
    ctx.runtime = None;
    ctx.inflight = None;
}

/// Settle the reservation with the real usage, and book usage and cost (once per request:
/// forwarding calls it just before the last byte goes out, `logging` for every other ending).
///
/// Usage comes from the provider's `usage`; when a successful answer carried none (a stream
/// without `include_usage`, or one cut short), the prompt as counted by Sluice and the streamed
/// answer text counted with the model's tokenizer stand in. Requests the provider did not
/// answer successfully consume nothing.
pub async fn settle(shared: &Shared, ctx: &mut RequestCtx) {
    if ctx.settled {
        return;
    }
    ctx.settled = true;
    let Some(route) = ctx.route.clone() else {
        return;
    };
    let model = &*route.model;
    let answered = ctx.response_started && (200..300).contains(&ctx.status);
    let (prompt, cached, completion) = match (&ctx.usage, answered) {
        (Some(u), _) => (u.prompt_tokens, u.cached_tokens(), u.completion_tokens),
        (None, true) => {
            let completion = ctx
                .streamed_text
                .as_deref()
                .map_or(0, |t| route.tokenizer.count_text(t));
            (ctx.prompt_tokens, 0, completion)
        }
        (None, false) => (0, 0, 0),
    };
    if ctx.usage.is_none() && answered {
        ctx.usage = Some(sluice_policies::openai::Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: None,
        });
    }
    let demand = actual_demand(route.price.as_ref(), prompt, cached, completion);
    if let Some(reservation) = ctx.reservation.take() {
        reservation.settle(demand).await;
    }
    if answered || ctx.usage.is_some() {
        let key = ctx.key_id.as_deref().unwrap_or("anonymous");
        let day = sluice_policies::limits::day_of(sluice_policies::limits::now_micros());
        shared
            .ledger
            .record(key, day, prompt, completion, demand.cost_micros);
        crate::ledger::record_shared(shared, key, day, prompt, completion, demand.cost_micros);
        if demand.cost_micros > 0 {
            shared
                .metrics
                .cost_usd
                .with_label_values(&[key, model])
                .inc_by(demand.cost_micros as f64 / 1e6);
        }
    }
}
