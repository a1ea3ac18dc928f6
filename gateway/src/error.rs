//! The gateway's error type and its one mapping to HTTP status, OpenAI error body and metric label.

use bytes::Bytes;
use serde_json::json;
use sluice_policies::PolicyError;

/// Everything that can end a request with an error response.
///
/// Messages never carry prompt text, keys or upstream bodies.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A policy refused the request (auth, allow-list, body validation).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No such endpoint.
    #[error("unknown endpoint {method} {path}")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path (query dropped).
        path: String,
    },
    /// The endpoint exists but not for this method.
    #[error("method {method} is not allowed for {path}; use {allowed}")]
    MethodNotAllowed {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The method the endpoint takes.
        allowed: &'static str,
    },
    /// `model` names no configured model.
    #[error("the model `{model}` does not exist")]
    ModelNotFound {
        /// The requested name (cut to 128 chars).
        model: String,
    },
    /// Request body larger than `server.max_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body used a content encoding Sluice cannot read.
    #[error("unsupported request content-encoding; send an uncompressed JSON body")]
    UnsupportedEncoding,
    /// Could not connect to the provider (refused, DNS, TLS, connect timeout).
    #[error("could not connect to the upstream provider `{provider}`")]
    UpstreamConnect {
        /// Provider name.
        provider: String,
    },
    /// The provider did not answer in time.
    #[error("the upstream provider `{provider}` timed out ({phase})")]
    UpstreamTimeout {
        /// Provider name.
        provider: String,
        /// `first_byte`, `idle` or `total`.
        phase: &'static str,
    },
    /// The provider broke the protocol or the connection before answering.
    #[error("the upstream provider `{provider}` failed: {reason}")]
    UpstreamProtocol {
        /// Provider name.
        provider: String,
        /// Short, content-free reason.
        reason: &'static str,
    },
    /// A rate limit (requests, tokens, concurrency) has no room now.
    #[error("{message}")]
    RateLimited {
        /// Which limit, with numbers (no prompt content).
        message: String,
        /// When to retry; `None` when the request can never fit.
        retry_after: Option<std::time::Duration>,
        /// Metric label of the limit.
        label: &'static str,
    },
    /// A budget is used up for this period.
    #[error("{message}")]
    QuotaExceeded {
        /// Which budget.
        message: String,
        /// Until the period resets.
        retry_after: Option<std::time::Duration>,
        /// Metric label of the limit.
        label: &'static str,
    },
    /// `max_tokens` above what this key/model allows and `on_exceed: reject`.
    #[error("max_tokens {requested} exceeds the allowed {allowed} for this key and model")]
    MaxTokensExceeded {
        /// What the request asked for.
        requested: u64,
        /// The most it may ask for.
        allowed: u64,
    },
    /// No `max_tokens` sent, a cap applies and `on_exceed: reject`.
    #[error("this key requires max_tokens (or max_completion_tokens) of at most {allowed}")]
    MaxTokensRequired {
        /// The most it may ask for.
        allowed: u64,
    },
    /// A PII policy with `block` matched (names the entity type only).
    #[error("request blocked by PII policy: it contains {entity}")]
    PiiBlocked {
        /// Entity type (`email`, `credit_card`, or a custom pattern name).
        entity: String,
    },
    /// Shared state (Redis) is unreachable and `state.fail_open` is false.
    #[error("rate limit state is unavailable; try again shortly")]
    StateUnavailable,
    /// The client went away; nothing can be sent.
    #[error("client closed the connection")]
    ClientClosed,
    /// A bug or an impossible state; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// How an error is shown to the client and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorShape {
    /// HTTP status.
    pub status: u16,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    /// OpenAI `error.code`.
    pub code: &'static str,
    /// Low-cardinality metric label.
    pub label: &'static str,
}

impl GatewayError {
    /// The one place where errors map to status, OpenAI type/code and metric label.
    pub fn shape(&self) -> ErrorShape {
        let s = |status, kind, code, label| ErrorShape {
            status,
            kind,
            code,
            label,
        };
        match self {
            Self::Policy(p) => match p {
                PolicyError::MissingKey => s(
                    401,
                    "invalid_request_error",
                    "missing_api_key",
                    "auth_missing",
                ),
                PolicyError::InvalidKey => s(
                    401,
                    "invalid_request_error",
                    "invalid_api_key",
                    "auth_invalid",
                ),
                PolicyError::DisabledKey => s(
                    401,
                    "invalid_request_error",
                    "invalid_api_key",
                    "auth_disabled",
                ),
                PolicyError::ModelNotAllowed { .. } => s(
                    403,
                    "permission_error",
                    "model_not_allowed",
                    "model_not_allowed",
                ),
                PolicyError::InvalidJson { .. } => {
                    s(400, "invalid_request_error", "invalid_json", "bad_request")
                }
                PolicyError::InvalidField { .. } => {
                    s(400, "invalid_request_error", "invalid_value", "bad_request")
                }
                PolicyError::MissingField { .. } => s(
                    400,
                    "invalid_request_error",
                    "missing_required_parameter",
                    "bad_request",
                ),
            },
            Self::NotFound { .. } => s(404, "invalid_request_error", "unknown_url", "not_found"),
            Self::MethodNotAllowed { .. } => s(
                405,
                "invalid_request_error",
                "method_not_allowed",
                "method_not_allowed",
            ),
            Self::ModelNotFound { .. } => s(
                404,
                "invalid_request_error",
                "model_not_found",
                "model_not_found",
            ),
            Self::BodyTooLarge { .. } => s(
                413,
                "invalid_request_error",
                "request_too_large",
                "body_too_large",
            ),
            Self::UnsupportedEncoding => s(
                415,
                "invalid_request_error",
                "unsupported_content_encoding",
                "bad_request",
            ),
            Self::UpstreamConnect { .. } => s(
                502,
                "api_error",
                "upstream_connect_error",
                "upstream_connect",
            ),
            Self::UpstreamTimeout { .. } => {
                s(504, "api_error", "upstream_timeout", "upstream_timeout")
            }
            Self::UpstreamProtocol { .. } => {
                s(502, "api_error", "upstream_error", "upstream_protocol")
            }
            Self::RateLimited { .. } => s(429, "requests", "rate_limit_exceeded", "rate_limited"),
            Self::QuotaExceeded { .. } => s(
                429,
                "insufficient_quota",
                "insufficient_quota",
                "quota_exceeded",
            ),
            Self::MaxTokensExceeded { .. } | Self::MaxTokensRequired { .. } => s(
                400,
                "invalid_request_error",
                "max_tokens_exceeded",
                "bad_request",
            ),
            Self::PiiBlocked { .. } => {
                s(400, "invalid_request_error", "pii_detected", "pii_blocked")
            }
            Self::StateUnavailable => s(503, "api_error", "state_unavailable", "state_unavailable"),
            Self::ClientClosed => s(
                499,
                "invalid_request_error",
                "client_closed",
                "client_closed",
            ),
            Self::Internal(_) => s(500, "api_error", "internal_error", "internal"),
        }
    }

    /// OpenAI `error.param`, when one field is at fault.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Policy(
                PolicyError::InvalidField { param, .. } | PolicyError::MissingField { param },
            ) => Some(param),
            Self::PiiBlocked { .. } => Some("messages"),
            Self::MaxTokensExceeded { .. } | Self::MaxTokensRequired { .. } => Some("max_tokens"),
            Self::Policy(PolicyError::ModelNotAllowed { .. }) | Self::ModelNotFound { .. } => {
                Some("model")
            }
            _ => None,
        }
    }

    /// `retry-after` for this error, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::QuotaExceeded { retry_after, .. } => {
                *retry_after
            }
            Self::StateUnavailable => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The message shown to clients (internal details stay in the log).
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error in the gateway".to_owned(),
            other => other.to_string(),
        }
    }

    /// The OpenAI-shaped JSON body `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Bytes {
        let shape = self.shape();
        let v = json!({
            "error": {
                "message": self.client_message(),
                "type": shape.kind,
                "param": self.param(),
                "code": shape.code,
            }
        });
        Bytes::from(v.to_string())
    }

    /// The same error as one SSE event, for failures after a stream started.
    pub fn sse_event(&self) -> Bytes {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.body());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    /// A model name safe to echo back (bounded length).
    pub fn model_not_found(model: &str) -> Self {
        let mut m: String = model.chars().take(128).collect();
        m.retain(|c| !c.is_control());
        Self::ModelNotFound { model: m }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_and_names_the_param() {
        let e = GatewayError::Policy(PolicyError::InvalidField {
            param: "messages[0].role".into(),
            reason: "expected a string, got a number".into(),
        });
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_value");
        assert_eq!(v["error"]["param"], "messages[0].role");
        assert_eq!(e.shape().status, 400);
    }

    #[test]
    fn internal_details_are_not_shown() {
        let e = GatewayError::Internal("secret detail".into());
        let body = String::from_utf8(e.body().to_vec()).unwrap();
        assert!(!body.contains("secret detail"));
        assert_eq!(e.shape().status, 500);
    }

    #[test]
    fn echoed_model_names_are_bounded() {
        let long = "x".repeat(1000) + "\n";
        let GatewayError::ModelNotFound { model } = GatewayError::model_not_found(&long) else {
            panic!("wrong variant")
        };
        assert_eq!(model.len(), 128);
    }
}
