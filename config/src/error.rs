//! Configuration errors: [`ConfigError`] (one problem) and [`ConfigErrors`] (all of them).

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading a configuration.
///
/// Paths are dotted field paths into the YAML document, with sequence indices in brackets,
/// e.g. `models[0].targets[0].provider`. The empty path means the document root.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `${VAR}` interpolation failed (unset variable, bad syntax, unsafe value).
    #[error("line {line}: {message}")]
    Interpolation {
        /// 1-based line number in the configuration text.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// The YAML is malformed or does not match the schema (unknown field, wrong type, ...).
    #[error("{}", display_parse(path, *line, message))]
    Parse {
        /// Dotted field path, e.g. `server.listen` (empty for the document root).
        path: String,
        /// 1-based line number, when the parser knows it.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The document parsed, but a value is not acceptable (out of range, dangling reference, ...).
    #[error("{}", display_invalid(path, message))]
    Invalid {
        /// Dotted field path, e.g. `models[1].targets[0].provider`.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl ConfigError {
    /// The field path this error is about, if it has one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Parse { path, .. } | Self::Invalid { path, .. } => Some(path),
            Self::Io { .. } | Self::Interpolation { .. } => None,
        }
    }

    /// The 1-based line this error is about, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Interpolation { line, .. } => Some(*line),
            Self::Parse { line, .. } => *line,
            Self::Io { .. } | Self::Invalid { .. } => None,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

fn display_parse(path: &str, line: Option<usize>, message: &str) -> String {
    let mut out = String::new();
    if !path.is_empty() {
        out.push_str(path);
        out.push_str(": ");
    }
    out.push_str(message);
    if let Some(line) = line {
        out.push_str(&format!(" (line {line})"));
    }
    out
}

fn display_invalid(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Every problem found in a configuration, in document order.
///
/// `Display` prints one error per line. Never empty when returned as an `Err`.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no errors (never true for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors as a vector.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(errors: Vec<ConfigError>) -> Self {
        Self(errors)
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let errors = ConfigErrors(vec![
            ConfigError::Interpolation {
                line: 3,
                message: "environment variable `X` is not set".into(),
            },
            ConfigError::Parse {
                path: "server.listn".into(),
                line: Some(2),
                message: "unknown field `listn`".into(),
            },
            ConfigError::Parse {
                path: String::new(),
                line: None,
                message: "empty".into(),
            },
            ConfigError::invalid("models[1].targets[0].provider", "unknown provider `nope`"),
        ]);
        assert_eq!(
            errors.to_string(),
            "line 3: environment variable `X` is not set\n\
             server.listn: unknown field `listn` (line 2)\n\
             empty\n\
             models[1].targets[0].provider: unknown provider `nope`"
        );
        assert_eq!(errors.len(), 4);
        assert_eq!(errors.0[1].path(), Some("server.listn"));
        assert_eq!(errors.0[1].line(), Some(2));
        assert_eq!(errors.0[0].line(), Some(3));
        assert_eq!(errors.0[3].line(), None);
    }

    #[test]
    fn io_error_names_the_file() {
        let error = ConfigError::Io {
            path: PathBuf::from("/etc/sluice.yaml"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        };
        assert_eq!(
            error.to_string(),
            "cannot read config file /etc/sluice.yaml: not found"
        );
        assert!(std::error::Error::source(&error).is_some());
    }
}
