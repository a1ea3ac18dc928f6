//! sluice: an LLM edge gateway on Cloudflare's Pingora.
//!
//! Applications keep their OpenAI SDK and point `base_url` at Sluice. Sluice authenticates the
//! virtual key, validates the body, resolves the model to a provider deployment and makes the
//! upstream call itself over pooled connections, relaying JSON and SSE answers as they arrive.
//!
//! Phases: [`proxy`] is the thin `ProxyHttp` implementation; [`pipeline`] runs in
//! `request_filter`; [`forward`] does the upstream call; [`observe`] runs in `logging`.
//! Shared state lives in [`state`], swapped atomically by [`reload`].
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod admission;
pub mod ctx;
pub mod error;
pub mod forward;
pub mod ledger;
pub mod limiter;
pub mod metrics;
pub mod mock;
pub mod observe;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod restore;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod telemetry;
