//! Virtual keys: callers present a raw key; Sluice stores only its SHA-256 digest.
//!
//! Lookup hashes the presented key, finds the entry by digest and confirms it with a
//! constant-time comparison. A raw key is never stored, logged or returned.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sluice_config::VirtualKey;
use subtle::ConstantTimeEq;

use crate::PolicyError;

/// SHA-256 of a raw key, as stored in config (`keys[].key_sha256`).
pub fn digest(raw_key: &str) -> [u8; 32] {
    Sha256::digest(raw_key.as_bytes()).into()
}

/// Lower-case hex SHA-256 of a raw key (what `sluice hash-key` prints).
pub fn digest_hex(raw_key: &str) -> String {
    hex::encode(digest(raw_key))
}

/// Who is calling: the authenticated key and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id from config; `anonymous` when auth is off and no key was sent.
    pub key_id: Arc<str>,
    /// Client-facing models this key may use; `None` = all.
    pub models: Option<Arc<[String]>>,
    /// The key's config (limits, budgets, team); `None` for anonymous callers.
    pub key: Option<Arc<VirtualKey>>,
}

impl Principal {
    /// The principal used when `auth.required` is false and no (known) key was sent.
    pub fn anonymous() -> Self {
        Self {
            key_id: Arc::from("anonymous"),
            models: None,
            key: None,
        }
    }

    /// Whether this principal may use the client-facing model `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == name))
    }

    /// Check [`Self::allows`] as a policy decision.
    pub fn authorize_model(&self, name: &str) -> Result<(), PolicyError> {
        if self.allows(name) {
            Ok(())
        } else {
            Err(PolicyError::ModelNotAllowed {
                model: name.to_owned(),
            })
        }
    }
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
    disabled: bool,
}

/// All configured virtual keys, indexed by digest.
pub struct KeyStore {
    by_digest: HashMap<[u8; 32], Entry>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.by_digest.len())
            .finish()
    }
}

impl KeyStore {
    /// Index the configured keys.
    pub fn new(keys: &[VirtualKey]) -> Self {
        let by_digest = keys
            .iter()
            .map(|k| {
                let entry = Entry {
                    digest: k.digest,
                    principal: Principal {
                        key_id: Arc::from(k.id.as_str()),
                        models: k.models.as_ref().map(|m| Arc::from(m.clone())),
                        key: Some(Arc::new(k.clone())),
                    },
                    disabled: k.disabled,
                };
                (k.digest, entry)
            })
            .collect();
        Self { by_digest }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Authenticate a raw key.
    pub fn authenticate(&self, raw_key: &str) -> Result<&Principal, PolicyError> {
        let presented = digest(raw_key);
        let entry = self
            .by_digest
            .get(&presented)
            .ok_or(PolicyError::InvalidKey)?;
        // The map lookup found a candidate; confirm in constant time so the comparison itself
        // leaks nothing about how many leading bytes matched.
        if !bool::from(entry.digest.ct_eq(&presented)) {
            return Err(PolicyError::InvalidKey);
        }
        if entry.disabled {
            return Err(PolicyError::DisabledKey);
        }
        Ok(&entry.principal)
    }

    /// Authenticate the key presented in a request (if any) under the auth policy.
    ///
    /// With `required`, a missing or unknown key is refused. Without it (keyless gateways, e.g.
    /// the quickstart), a configured key still authenticates as itself — its allow-list applies
    /// and a disabled key is refused — while a missing or unknown key runs as anonymous, because
    /// SDKs always send some key.
    pub fn authorize(
        &self,
        presented: Option<&str>,
        required: bool,
    ) -> Result<Principal, PolicyError> {
        match (presented, required) {
            (Some(raw), true) => self.authenticate(raw).cloned(),
            (Some(raw), false) => match self.authenticate(raw) {
                Ok(p) => Ok(p.clone()),
                Err(PolicyError::InvalidKey) => Ok(Principal::anonymous()),
                Err(e) => Err(e),
            },
            (None, true) => Err(PolicyError::MissingKey),
            (None, false) => Ok(Principal::anonymous()),
        }
    }
}

/// Extract the raw key from an `Authorization` header value (`Bearer <key>`, scheme
/// case-insensitive) or an `x-api-key` header value. Empty keys count as absent.
pub fn key_from_headers<'a>(
    authorization: Option<&'a [u8]>,
    x_api_key: Option<&'a [u8]>,
) -> Option<&'a str> {
    let from_bearer = authorization.and_then(|v| {
        let v = std::str::from_utf8(v).ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    from_bearer
        .or_else(|| {
            x_api_key
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
        })
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, raw: &str, models: Option<&[&str]>, disabled: bool) -> VirtualKey {
        VirtualKey {
            id: id.into(),
            digest: digest(raw),
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
            disabled,
            team: None,
            limits: Default::default(),
            budgets: Default::default(),
            max_tokens: None,
            on_exceed: Default::default(),
            model_limits: Default::default(),
            pii: None,
        }
    }

    #[test]
    fn digest_hex_matches_known_vector() {
        // printf %s abc | sha256sum
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn authenticates_by_digest_and_applies_allow_list() {
        let store = KeyStore::new(&[
            key("a", "sk-a", Some(&["m1"]), false),
            key("b", "sk-b", None, false),
            key("off", "sk-off", None, true),
        ]);
        let a = store.authenticate("sk-a").unwrap();
        assert_eq!(&*a.key_id, "a");
        assert!(a.allows("m1"));
        assert_eq!(
            a.authorize_model("m2"),
            Err(PolicyError::ModelNotAllowed { model: "m2".into() })
        );
        assert!(store.authenticate("sk-b").unwrap().allows("anything"));
        assert_eq!(store.authenticate("sk-c"), Err(PolicyError::InvalidKey));
        assert_eq!(store.authenticate("sk-off"), Err(PolicyError::DisabledKey));
    }

    #[test]
    fn authorize_respects_required_flag() {
        let store = KeyStore::new(&[key("a", "sk-a", None, false)]);
        assert_eq!(store.authorize(None, true), Err(PolicyError::MissingKey));
        assert_eq!(&*store.authorize(None, false).unwrap().key_id, "anonymous");
        assert_eq!(
            store.authorize(Some("bad"), true),
            Err(PolicyError::InvalidKey)
        );
        assert_eq!(
            &*store
                .authorize(Some("sdk-placeholder"), false)
                .unwrap()
                .key_id,
            "anonymous"
        );
        assert_eq!(&*store.authorize(Some("sk-a"), false).unwrap().key_id, "a");
        assert_eq!(&*store.authorize(Some("sk-a"), true).unwrap().key_id, "a");
    }

    #[test]
    fn key_extraction_prefers_bearer_and_ignores_empty() {
        assert_eq!(key_from_headers(Some(b"Bearer sk-1"), None), Some("sk-1"));
        assert_eq!(
            key_from_headers(Some(b"bearer   sk-1 "), Some(b"x")),
            Some("sk-1")
        );
        assert_eq!(
            key_from_headers(Some(b"Basic abc"), Some(b"sk-2")),
            Some("sk-2")
        );
        assert_eq!(key_from_headers(None, Some(b" sk-3 ")), Some("sk-3"));
        assert_eq!(key_from_headers(Some(b"Bearer "), None), None);
        assert_eq!(key_from_headers(None, None), None);
    }
}
