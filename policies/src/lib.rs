//! sluice-policies: request-side policy logic of Sluice that needs no proxy framework.
//!
//! For now: the OpenAI wire format (request validation, usage extraction, an incremental SSE
//! parser) and virtual keys (digest lookup, model allow-lists). Later: token counting, rate
//! limits and budgets, PII redaction. No pingora, no sockets: everything here is plain data in,
//! decisions out, so it is unit-testable and benchable on its own.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cost;
pub mod error;
pub mod keys;
pub mod limits;
pub mod openai;
pub mod pii;
pub mod sse;
pub mod tokens;

pub use error::PolicyError;
