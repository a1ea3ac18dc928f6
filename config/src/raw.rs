//! The YAML schema as serde structs, before validation.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored
//! setting. Defaults live in named `default_*` functions. Only syntax-level checks happen here
//! (types, enums, socket addresses, durations); everything else is in [`crate::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

use crate::error::ConfigError;
use crate::Secret;

/// The whole document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub state: RawState,
    pub providers: Vec<RawProvider>,
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub teams: Vec<RawTeam>,
    #[serde(default)]
    pub guardrails: RawGuardrails,
    #[serde(default)]
    pub logs: RawLogs,
}

/// `guardrails:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardrails {
    pub pii: Option<RawPii>,
}

/// `guardrails.pii` and `keys[].pii`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPii {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_pii_action")]
    pub action: String,
    pub entities: Option<Vec<String>>,
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    #[serde(default = "default_pii_mode")]
    pub mode: String,
    #[serde(default)]
    pub restore: bool,
    #[serde(default)]
    pub custom: Vec<RawCustomPii>,
}

/// `guardrails.pii.custom[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomPii {
    pub name: String,
    pub pattern: String,
    pub action: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_pii_action() -> String {
    "redact".to_owned()
}

fn default_pii_mode() -> String {
    "mask".to_owned()
}

/// `server:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub region: Option<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
    #[serde(default = "default_threads")]
    pub threads: u64,
}

/// `auth:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default = "default_auth_required")]
    pub required: bool,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            required: default_auth_required(),
        }
    }
}

/// `state:`. The backend is a free string so that an unsupported one is a clear validation
/// error rather than an "unknown variant" parse error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    #[serde(default = "default_state_backend")]
    pub backend: String,
    pub redis_url: Option<Secret<String>>,
    #[serde(default = "default_true")]
    pub fail_open: bool,
    #[serde(default = "default_replicas")]
    pub replicas: u64,
    #[serde(default = "default_state_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_replicas() -> u64 {
    1
}

fn default_state_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(50))
}

fn default_key_prefix() -> String {
    "sluice".to_owned()
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: default_state_backend(),
            redis_url: None,
            fail_open: true,
            replicas: default_replicas(),
            timeout: default_state_timeout(),
            key_prefix: default_key_prefix(),
        }
    }
}

/// `providers[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    pub kind: RawProviderKind,
    pub base_url: Option<String>,
    pub api_key: Option<Secret<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub region: Option<String>,
}

/// `providers[].kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawProviderKind {
    /// `openai`
    OpenAi,
    /// `mock`
    Mock,
}

impl RawProviderKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Mock => "mock",
        }
    }
}

/// `models[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub name: String,
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub price: Option<RawPrice>,
    #[serde(default)]
    pub limits: RawRateLimits,
    pub max_output_tokens: Option<u64>,
    pub tokenizer: Option<String>,
}

/// `models[].price` (USD per million tokens).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
}

/// Rate limits of a key, team, model or key-on-model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
}

/// `teams[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTeam {
    pub name: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub budget_usd_per_day: Option<f64>,
    pub budget_usd_per_month: Option<f64>,
}

/// `keys[].on_exceed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawOnExceed {
    /// `clamp`
    Clamp,
    /// `reject`
    Reject,
}

/// `models[].targets[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub provider: String,
    pub model: String,
}

/// `models[].timeouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    #[serde(default = "default_connect_timeout")]
    pub connect: HumanDuration,
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte: HumanDuration,
    #[serde(default = "default_idle_timeout")]
    pub idle: HumanDuration,
    #[serde(default = "default_total_timeout")]
    pub total: HumanDuration,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        Self {
            connect: default_connect_timeout(),
            first_byte: default_first_byte_timeout(),
            idle: default_idle_timeout(),
            total: default_total_timeout(),
        }
    }
}

/// `keys[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub id: String,
    pub key_sha256: String,
    pub models: Option<Vec<String>>,
    #[serde(default = "default_key_disabled")]
    pub disabled: bool,
    pub team: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub budget_usd_per_day: Option<f64>,
    pub budget_usd_per_month: Option<f64>,
    pub max_tokens: Option<u64>,
    pub on_exceed: Option<RawOnExceed>,
    #[serde(default)]
    pub model_limits: BTreeMap<String, RawRateLimits>,
    pub pii: Option<RawPii>,
}

/// `logs:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogs {
    #[serde(default = "default_log_format")]
    pub format: RawLogFormat,
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for RawLogs {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// `logs.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLogFormat {
    /// `text`
    Text,
    /// `json`
    Json,
}

// ---- defaults ----------------------------------------------------------------------------

/// `server.max_body_bytes`: 4 MiB.
pub(crate) fn default_max_body_bytes() -> u64 {
    4 * 1024 * 1024
}

/// `server.drain_timeout`: 30s.
pub(crate) fn default_drain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// Upper bound of `server.threads`.
pub(crate) const MAX_THREADS: u64 = 256;

/// `server.threads`: the available parallelism, clamped to `1..=MAX_THREADS`.
pub(crate) fn default_threads() -> u64 {
    std::thread::available_parallelism()
        .map_or(1, |n| u64::try_from(n.get()).unwrap_or(MAX_THREADS))
        .clamp(1, MAX_THREADS)
}

/// `auth.required`: true (keyless access must be asked for explicitly).
pub(crate) fn default_auth_required() -> bool {
    true
}

/// `state.backend`: `memory`.
pub(crate) fn default_state_backend() -> String {
    "memory".to_owned()
}

/// `models[].timeouts.connect`: 2s.
pub(crate) fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

/// `models[].timeouts.first_byte`: 60s.
pub(crate) fn default_first_byte_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// `models[].timeouts.idle`: 60s.
pub(crate) fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// `models[].timeouts.total`: 600s.
pub(crate) fn default_total_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

/// `keys[].disabled`: false.
pub(crate) fn default_key_disabled() -> bool {
    false
}

/// `logs.format`: text.
pub(crate) fn default_log_format() -> RawLogFormat {
    RawLogFormat::Text
}

/// `logs.level`: `info`.
pub(crate) fn default_log_level() -> String {
    "info".to_owned()
}

// ---- durations ---------------------------------------------------------------------------

/// A duration written the humantime way: `50ms`, `30s`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor (not after `String::deserialize`) lets the YAML
        // deserializer attach the line number to the error.
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as `50ms`, `30s` or `1h`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v.trim())
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format_args!("invalid duration `{v}`: {e}")))
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

// ---- parsing -----------------------------------------------------------------------------

/// Parses interpolated YAML into [`RawConfig`], turning a failure into a
/// [`ConfigError::Parse`] with the field path and line.
pub(crate) fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    if is_blank_document(text) {
        return Err(ConfigError::Parse {
            path: String::new(),
            line: None,
            message: "the configuration is empty (expected at least `server`, `providers` and \
                      `models`)"
                .to_owned(),
        });
    }
    // Syntax first, over the whole document: the typed pass below stops at its first error,
    // which could otherwise hide a YAML syntax error further down behind a misleading one.
    if let Err(error) = IgnoredAny::deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        let location = error.location();
        let message = clean_message(&error.to_string(), "", location.as_ref());
        return Err(ConfigError::Parse {
            path: String::new(),
            line: location.map(|l| l.line()),
            message: format!("invalid YAML: {message}"),
        });
    }
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = format_path(error.path());
        let inner = error.inner();
        let location = inner.location();
        let message = clean_message(&inner.to_string(), &path, location.as_ref());
        ConfigError::Parse {
            path,
            line: location.map(|l| l.line()),
            message,
        }
    })
}

/// Only blank lines and comments.
fn is_blank_document(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// `a.b[0].c` from serde_path_to_error's segments; the root is the empty string.
pub(crate) fn format_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Strips what we report separately from serde_yaml_ng's message: its own `path: ` prefix
/// (a prefix of ours) and the ` at line L column C` of the error location.
fn clean_message(message: &str, path: &str, location: Option<&serde_yaml_ng::Location>) -> String {
    let mut message = message.to_owned();
    if let Some(location) = location {
        let at = format!(" at line {} column {}", location.line(), location.column());
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    // serde_yaml_ng prefixes custom errors with the path of the node where they were raised,
    // formatted like ours; it is always a prefix of our (deeper or equal) path.
    let ends = path
        .char_indices()
        .filter(|&(_, c)| c == '.' || c == '[')
        .map(|(i, _)| i)
        .chain(std::iter::once(path.len()));
    for end in ends.rev() {
        let prefix = format!("{}: ", &path[..end]);
        if end > 0 && message.starts_with(&prefix) {
            message.replace_range(..prefix.len(), "");
            break;
        }
    }
    message
}
