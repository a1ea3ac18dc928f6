//! Prometheus metrics, served by the admin listener at `GET /metrics`.
//!
//! Labels are low-cardinality by construction: endpoints are a fixed set, models and providers
//! are names from config (anything else becomes `unknown`), statuses are classes.

use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All Sluice metrics and the registry they live in.
pub struct Metrics {
    registry: Registry,
    /// `sluice_requests_total{endpoint,model,provider,status_class}`
    pub requests: IntCounterVec,
    /// `sluice_request_duration_seconds{endpoint}`
    pub request_duration: HistogramVec,
    /// `sluice_upstream_duration_seconds{provider}`
    pub upstream_duration: HistogramVec,
    /// `sluice_time_to_first_token_seconds{model}`
    pub ttft: HistogramVec,
    /// `sluice_gateway_overhead_seconds`
    pub overhead: Histogram,
    /// `sluice_tokens_total{model,kind}`
    pub tokens: IntCounterVec,
    /// `sluice_inflight_requests`
    pub inflight: IntGauge,
    /// `sluice_config_reloads_total{result}`
    pub config_reloads: IntCounterVec,
    /// `sluice_errors_total{reason}`
    pub errors: IntCounterVec,
    /// `sluice_build_info{version}`
    pub build_info: IntGaugeVec,
    /// `sluice_ratelimit_rejections_total{limit}`
    pub ratelimit_rejections: IntCounterVec,
    /// `sluice_cost_usd_total{key,model}`
    pub cost_usd: CounterVec,
    /// `sluice_guardrail_detections_total{entity,action}`
    pub guardrail_detections: IntCounterVec,
    /// `sluice_state_errors_total`
    pub state_errors: prometheus::IntCounter,
}

/// Latency buckets from 1 ms to 5 min, for whole requests and upstream calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Overhead buckets from 10 µs to 100 ms: the gateway's own time is small.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "sluice_requests_total",
                "Requests answered, by endpoint, model, provider and status class.",
            ),
            &["endpoint", "model", "provider", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_request_duration_seconds",
                "Whole request time as seen by Sluice.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_upstream_duration_seconds",
                "Time spent waiting on the upstream provider.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "sluice_time_to_first_token_seconds",
                "Time from request start to the first response body byte sent to the client.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_gateway_overhead_seconds",
                "Time spent in Sluice itself: request time minus time waiting on the upstream.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "sluice_tokens_total",
                "Tokens reported by providers, by model and kind (prompt, completion).",
            ),
            &["model", "kind"],
        )?;
        let inflight = IntGauge::new("sluice_inflight_requests", "Requests being handled now.")?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "sluice_config_reloads_total",
                "Config reloads, by result (success, error).",
            ),
            &["result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("sluice_errors_total", "Error responses, by reason."),
            &["reason"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "sluice_build_info",
                "Always 1; labelled with the running version.",
            ),
            &["version"],
        )?;
        let ratelimit_rejections = IntCounterVec::new(
            Opts::new(
                "sluice_ratelimit_rejections_total",
                "Requests refused by a rate limit or budget, by limit (e.g. key_tpm, team_budget_day).",
            ),
            &["limit"],
        )?;
        let cost_usd = CounterVec::new(
            Opts::new(
                "sluice_cost_usd_total",
                "Cost of settled usage in USD, by key id and model.",
            ),
            &["key", "model"],
        )?;
        let guardrail_detections = IntCounterVec::new(
            Opts::new(
                "sluice_guardrail_detections_total",
                "PII found in requests, by entity and the action taken (redact, block, log_only).",
            ),
            &["entity", "action"],
        )?;
        registry.register(Box::new(guardrail_detections.clone()))?;
        let state_errors = prometheus::IntCounter::new(
            "sluice_state_errors_total",
            "Failed or timed-out calls to shared state (Redis); the request used the fallback.",
        )?;
        registry.register(Box::new(state_errors.clone()))?;
        registry.register(Box::new(ratelimit_rejections.clone()))?;
        registry.register(Box::new(cost_usd.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(ttft.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        Ok(Self {
            registry,
            requests,
            request_duration,
            upstream_duration,
            ttft,
            overhead,
            tokens,
            inflight,
            config_reloads,
            errors,
            build_info,
            ratelimit_rejections,
            cost_usd,
            guardrail_detections,
            state_errors,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// `2xx`, `4xx`, ... for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help() {
        let m = Metrics::new().unwrap();
        m.requests
            .with_label_values(&["chat_completions", "m", "p", "2xx"])
            .inc();
        m.inflight.set(2);
        let text = String::from_utf8(m.render()).unwrap();
        for name in [
            "sluice_requests_total{endpoint=\"chat_completions\",model=\"m\",provider=\"p\",status_class=\"2xx\"} 1",
            "sluice_inflight_requests 2",
            "sluice_config_reloads_total{result=\"error\"} 0",
            "# HELP sluice_gateway_overhead_seconds",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
