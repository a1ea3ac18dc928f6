//! Validated runtime configuration: what the gateway runs on.
//!
//! Every value here has been checked; nothing is "filled in later". Built from the raw YAML
//! schema by [`crate::load_str`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Secret;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners, limits and shutdown.
    pub server: ServerConfig,
    /// Whether callers must present a virtual key.
    pub auth: AuthConfig,
    /// Where shared state (limits, cache) lives.
    pub state: StateConfig,
    /// Provider deployments, in config order.
    pub providers: Vec<Provider>,
    /// Client-facing model names, in config order.
    pub models: Vec<Model>,
    /// Virtual keys, in config order.
    pub keys: Vec<VirtualKey>,
    /// Teams (groups of keys sharing limits and budgets), in config order.
    pub teams: Vec<Team>,
    /// PII policy for every key without its own (`guardrails.pii`); `None` = off.
    pub pii: Option<PiiConfig>,
    /// Process log output.
    pub logs: LogsConfig,
}

impl Config {
    /// The model whose client-facing `name` equals `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The provider deployment at `index` (as stored in [`Target::provider`]).
    pub fn provider(&self, index: usize) -> Option<&Provider> {
        self.providers.get(index)
    }
}

/// `server:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// API listener (`server.listen`).
    pub listen: SocketAddr,
    /// Admin listener: metrics, health (`server.admin_listen`).
    pub admin_listen: SocketAddr,
    /// The local region, preferred when routing (`server.region`).
    pub region: Option<String>,
    /// Largest request body accepted, in bytes (`server.max_body_bytes`, default 4 MiB).
    pub max_body_bytes: usize,
    /// On SIGTERM, how long in-flight requests may run on (`server.drain_timeout`, default 30s).
    pub drain_timeout: Duration,
    /// Worker threads for the API service (`server.threads`, default: number of CPUs).
    pub threads: usize,
}

/// `auth:` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthConfig {
    /// `auth.required` (default true). `false` must be written explicitly.
    pub required: bool,
}

/// `state:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateConfig {
    /// In-process state (`backend: memory`), the default.
    Memory,
    /// Limits, budgets and usage shared by every replica through Redis (`backend: redis`).
    Redis(RedisState),
}

/// `state: { backend: redis, ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisState {
    /// `redis://[user:pass@]host:port[/db]` or `rediss://` (`state.redis_url`).
    pub url: Secret<String>,
    /// Redis unreachable: `true` (default) falls back to local limits divided by `replicas`;
    /// `false` refuses requests with 503.
    pub fail_open: bool,
    /// How many replicas share the limits (`state.replicas`, default 1).
    pub replicas: u64,
    /// Longest wait for one Redis call on the request path (`state.timeout`, default 50ms).
    pub timeout: Duration,
    /// Prefix of every Redis key (`state.key_prefix`, default `sluice`).
    pub key_prefix: String,
}

/// One provider deployment (`providers[]`).
#[derive(Debug, Clone)]
pub struct Provider {
    /// Unique name (`providers[].name`), used in metrics and `x-sluice-provider`.
    pub name: String,
    /// What kind of API it speaks.
    pub kind: ProviderKind,
    /// Region of this deployment (`providers[].region`).
    pub region: Option<String>,
}

/// The provider kinds this build supports.
#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// Any OpenAI-compatible API (OpenAI, vLLM, Ollama, ...).
    OpenAi {
        /// Where it listens (`providers[].base_url`).
        endpoint: Endpoint,
        /// Sent as `Authorization: Bearer ...` when set (`providers[].api_key`).
        api_key: Option<Secret<String>>,
        /// Extra headers sent on every upstream request (`providers[].headers`).
        headers: BTreeMap<String, String>,
    },
    /// Built-in deterministic provider, no network (`kind: mock`).
    Mock,
}

/// A parsed `base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` → true.
    pub tls: bool,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// Port, defaulted from the scheme.
    pub port: u16,
    /// Path prefix without trailing slash, e.g. `/v1` (may be empty).
    pub base_path: String,
}

impl Endpoint {
    /// `host:port` as used for the `Host` header (port omitted when it is the scheme default).
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// One client-facing model (`models[]`).
#[derive(Debug, Clone)]
pub struct Model {
    /// What clients send as `model`.
    pub name: String,
    /// Where requests for it go.
    pub target: Target,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Prices, for cost and budgets (`models[].price`); `None` = free.
    pub price: Option<Price>,
    /// Limits for all keys together on this model (`models[].limits`).
    pub limits: RateLimits,
    /// The model's completion cap (`models[].max_output_tokens`): reserved when a request sets
    /// no `max_tokens`, and the upper bound of clamping.
    pub max_output_tokens: Option<u64>,
    /// Tokenizer override (`models[].tokenizer`: `cl100k_base`, `o200k_base` or `approx`).
    pub tokenizer: Option<String>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Prompt tokens.
    pub input_per_mtok: f64,
    /// Completion tokens.
    pub output_per_mtok: f64,
    /// Cached prompt tokens (defaults to the input price when unset).
    pub cached_input_per_mtok: Option<f64>,
}

/// Requests/min, tokens/min and requests in flight; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Prompt + completion tokens per minute.
    pub tpm: Option<u64>,
    /// Requests in flight.
    pub max_concurrent: Option<u64>,
}

/// Spending limits in micro-USD (1e-6 USD); `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    /// Per UTC day.
    pub per_day_micros: Option<u64>,
    /// Per UTC calendar month.
    pub per_month_micros: Option<u64>,
}

/// One team (`teams[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Name keys refer to (`keys[].team`).
    pub name: String,
    /// Limits shared by all its keys.
    pub limits: RateLimits,
    /// Budgets shared by all its keys.
    pub budgets: Budgets,
}

/// What to do with a `max_tokens` above what is allowed (`keys[].on_exceed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnExceed {
    /// Lower it (and say so in `x-sluice-max-tokens-clamped`). The default.
    #[default]
    Clamp,
    /// Refuse the request with 400.
    Reject,
}

/// A deployment + upstream model name (`models[].targets[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// Model name sent upstream (rewritten into the body).
    pub model: String,
}

/// `models[].timeouts` (each with a default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (+TLS) connect (default 2s).
    pub connect: Duration,
    /// From request sent to response header (default 60s).
    pub first_byte: Duration,
    /// Longest gap between two body chunks (default 60s).
    pub idle: Duration,
    /// Whole upstream exchange (default 600s).
    pub total: Duration,
}

/// One virtual key (`keys[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualKey {
    /// Stable identifier, safe to log (`keys[].id`).
    pub id: String,
    /// SHA-256 of the raw key (`keys[].key_sha256`, 64 hex chars).
    pub digest: [u8; 32],
    /// Models this key may use; `None` = every configured model (`keys[].models`).
    pub models: Option<Vec<String>>,
    /// A disabled key is rejected with 401 (`keys[].disabled`, default false).
    pub disabled: bool,
    /// Team (`keys[].team`), a `teams[].name`.
    pub team: Option<String>,
    /// Limits of this key (`keys[].rpm`, `tpm`, `max_concurrent`).
    pub limits: RateLimits,
    /// Budgets of this key (`keys[].budget_usd_per_day`, `budget_usd_per_month`).
    pub budgets: Budgets,
    /// Largest completion this key may ask for (`keys[].max_tokens`).
    pub max_tokens: Option<u64>,
    /// Clamp or reject an oversized or missing `max_tokens` (`keys[].on_exceed`).
    pub on_exceed: OnExceed,
    /// Limits of this key on one model (`keys[].model_limits.<model>`).
    pub model_limits: BTreeMap<String, RateLimits>,
    /// This key's own PII policy (`keys[].pii`), replacing `guardrails.pii`: `Some(None)` turns
    /// PII handling off for the key, `None` inherits the global policy.
    pub pii: Option<Option<PiiConfig>>,
}

/// A validated PII policy (`guardrails.pii`, `keys[].pii`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiConfig {
    /// Built-in entity names with their action (`redact`, `block`, `log_only`).
    pub entities: Vec<(String, String)>,
    /// Named patterns: (name, regex, action).
    pub custom: Vec<(String, String, String)>,
    /// `mask` (`[EMAIL]`) or `pseudonym` (`<EMAIL_1>`).
    pub mode: String,
    /// Put pseudonymised values back into answers (pseudonym mode only).
    pub restore: bool,
}

/// `logs:` section (process logs; one line per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `sluice=debug` (default `info`).
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}
