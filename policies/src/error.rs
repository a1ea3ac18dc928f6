//! The policies crate's error type.

/// Why a request was refused by a policy. The gateway maps each variant, in one place, to an
/// HTTP status, an OpenAI error `type`/`code` and a metric label. Messages never contain prompt
/// text or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No key was presented while auth is required.
    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    MissingKey,
    /// The key is unknown.
    #[error("invalid API key")]
    InvalidKey,
    /// The key exists but is disabled.
    #[error("this API key is disabled")]
    DisabledKey,
    /// The key may not use this model.
    #[error("this API key is not allowed to use model `{model}`")]
    ModelNotAllowed {
        /// The client-facing model name.
        model: String,
    },
    /// The body is not valid JSON.
    #[error("request body is not valid JSON: {reason}")]
    InvalidJson {
        /// Parser message (position, not content).
        reason: String,
    },
    /// A field is missing or has the wrong type or value.
    #[error("invalid value for `{param}`: {reason}")]
    InvalidField {
        /// Dotted path of the field, e.g. `messages[0].role`.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required field is absent.
    #[error("missing required parameter: `{param}`")]
    MissingField {
        /// The field's name.
        param: String,
    },
}
