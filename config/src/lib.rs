//! sluice-config: the YAML configuration of Sluice.
//!
//! Loading a configuration goes through three stages, each reporting **every** problem it finds
//! (as [`ConfigErrors`]) rather than stopping at the first:
//!
//! 1. **Interpolation** ([`interpolate()`]): `${VAR}`, `${VAR:-default}` and `$${` on the raw
//!    text, with line numbers in errors.
//! 2. **Parsing**: serde_yaml_ng with `deny_unknown_fields`; errors name the field path
//!    (`models[0].targets[0].provider`) and the line.
//! 3. **Validation**: ranges, references and uniqueness, into the runtime types of [`runtime`]
//!    (re-exported at the crate root), each error with its field path.
//!
//! ```
//! let yaml = r#"
//! server: { listen: "127.0.0.1:8080", admin_listen: "127.0.0.1:9090" }
//! auth: { required: false }
//! providers: [{ name: demo, kind: mock }]
//! models: [{ name: mock, targets: [{ provider: demo, model: mock-1 }] }]
//! "#;
//! let config = sluice_config::load_str(yaml, &|_| None).unwrap();
//! assert_eq!(config.models[0].name, "mock");
//! ```
//!
//! Has no pingora or tokio dependency.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod interpolate;
mod raw;
pub mod runtime;
mod secret;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use interpolate::interpolate;
pub use runtime::*;
pub use secret::{Secret, REDACTED};

/// Reads, interpolates (from the process environment) and validates the file at `path`.
///
/// Errors do not repeat the file name (except [`ConfigError::Io`]); callers usually print
/// `"{path}:"` followed by the [`ConfigErrors`], one per line.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // A variable that is not valid Unicode is treated as unset.
    load_str(&text, &|name| std::env::var(name).ok())
}

/// Interpolates `text` with `env` (a variable lookup, `None` = unset), parses and validates it.
///
/// Interpolation errors are reported before (and instead of) parse errors, and a parse error
/// before validation errors: a stage only runs on the output of a successful previous stage.
pub fn load_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let text = interpolate(text, env)?;
    let raw = raw::parse(&text)?;
    validate::validate(raw)
}
