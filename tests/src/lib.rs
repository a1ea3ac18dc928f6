//! sluice-tests: fake LLM upstream, harness and end-to-end suites.

pub mod fake;
pub mod harness;
pub mod redis;
