//! Per-request state carried through the Pingora phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_policies::limits::RateHeaders;
use sluice_policies::openai::{ApiKind, Usage};

use crate::admission::Reservation;
use crate::error::GatewayError;
use crate::state::{InflightGuard, Route, Runtime};

/// What a request asked for, decided in `early_request_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A JSON API that forwards to a provider.
    Api(ApiKind),
    /// `GET /v1/models`.
    Models,
}

impl Endpoint {
    /// Low-cardinality label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Api(api) => api.label(),
            Self::Models => "models",
        }
    }
}

/// Per-request context (Pingora `CTX`).
pub struct RequestCtx {
    /// `x-request-id`: the client's (when sane) or a new UUID.
    pub request_id: String,
    /// When `early_request_filter` ran.
    pub started: Instant,
    /// The endpoint, or why there is none (404/405) — answered in `request_filter`.
    pub endpoint: Result<Endpoint, Option<GatewayError>>,
    /// The config snapshot this request runs on from start to end.
    pub runtime: Option<Arc<Runtime>>,
    /// Authenticated key id.
    pub key_id: Option<Arc<str>>,
    /// Configured client-facing model name (metric label).
    pub model: Option<Arc<str>>,
    /// Provider deployment name (metric label).
    pub provider: Option<Arc<str>>,
    /// Status sent to the client (0 before any).
    pub status: u16,
    /// Metric label of the error that ended the request, if any.
    pub error: Option<&'static str>,
    /// Response header already written: errors can no longer change the status.
    pub response_started: bool,
    /// Time spent waiting on the upstream (connect, send, header, body reads).
    pub upstream_wait: Duration,
    /// Time from start to the first response body byte written.
    pub first_byte: Option<Duration>,
    /// Usage reported by the provider.
    pub usage: Option<Usage>,
    /// Counts the request as in flight until dropped.
    pub inflight: Option<InflightGuard>,
    /// The resolved route.
    pub route: Option<Arc<Route>>,
    /// Held limit capacity, settled in `logging` (or on drop).
    pub reservation: Option<Reservation>,
    /// `x-ratelimit-*` values.
    pub rate_headers: RateHeaders,
    /// Completion cap Sluice wrote into the body (`x-sluice-max-tokens-clamped`).
    pub clamped: Option<u64>,
    /// Prompt tokens counted by Sluice.
    pub prompt_tokens: u64,
    /// Answer text of a stream whose provider reported no usage (to count completion tokens).
    pub streamed_text: Option<String>,
    /// Usage was settled and booked.
    pub settled: bool,
    /// Pseudonyms to put back into the answer (`restore: true`).
    pub pseudonyms: Option<Arc<sluice_policies::pii::PseudonymMap>>,
}

impl RequestCtx {
    /// A fresh context.
    pub fn new() -> Self {
        Self {
            request_id: String::new(),
            started: Instant::now(),
            endpoint: Err(None),
            runtime: None,
            key_id: None,
            model: None,
            provider: None,
            status: 0,
            error: None,
            response_started: false,
            upstream_wait: Duration::ZERO,
            first_byte: None,
            usage: None,
            inflight: None,
            route: None,
            reservation: None,
            rate_headers: RateHeaders::default(),
            clamped: None,
            prompt_tokens: 0,
            streamed_text: None,
            settled: false,
            pseudonyms: None,
        }
    }

    /// Mark the first body byte sent (once).
    pub fn mark_first_byte(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(self.started.elapsed());
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
