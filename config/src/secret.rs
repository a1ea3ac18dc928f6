//! [`Secret`]: a value that never shows up in logs, debug output or serialized config.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What [`Secret`] prints instead of its value.
pub const REDACTED: &str = "*****";

/// A sensitive value (API key, credential) that is redacted everywhere it could leak.
///
/// `Debug`, `Display` and `Serialize` all produce `*****`; the only way to read the value is
/// [`Secret::expose`], which makes every use greppable. Deserialization is transparent: a
/// `Secret<String>` is written in YAML exactly like a `String`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The wrapped value. Do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps into the inner value. Do not log it.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new(String::from("sk-very-secret"));
        assert_eq!(format!("{s:?}"), "*****");
        assert_eq!(format!("{s}"), "*****");
        assert_eq!(format!("{s:#?}"), "*****");
        // Nested in a derived Debug, too.
        let nested = Some(vec![s.clone()]);
        let shown = format!("{nested:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(shown, "Some([*****])");
    }

    #[test]
    fn expose_returns_the_value() {
        let s = Secret::from(String::from("abc"));
        assert_eq!(s.expose(), "abc");
        assert_eq!(s.clone().into_inner(), "abc");
        assert_eq!(s, Secret::new(String::from("abc")));
        assert_ne!(s, Secret::new(String::from("abd")));
    }

    #[test]
    fn serialize_is_redacted() {
        let s = Secret::new(String::from("sk-very-secret"));
        let yaml = serde_yaml_ng::to_string(&s).unwrap();
        assert_eq!(yaml.trim(), "'*****'");
        assert!(!yaml.contains("sk-very-secret"));
    }

    #[test]
    fn deserialize_is_transparent() {
        let s: Secret<String> = serde_yaml_ng::from_str("\"sk-1\"").unwrap();
        assert_eq!(s.expose(), "sk-1");
        let n: Secret<u32> = serde_yaml_ng::from_str("42").unwrap();
        assert_eq!(*n.expose(), 42);
    }
}
