//! Applying a policy to OpenAI request bodies.
//!
//! Texts scanned: chat `messages[].content` (a string, or the `text` of `{"type": "text"}`
//! parts), completions `prompt` (a string or an array of strings) and embeddings `input` (a
//! string or an array of strings). Token-id arrays, images and audio parts are left alone.

use serde_json::{Map, Value};

use super::{Blocked, Counts, PiiPolicy, PseudonymMap};

/// What [`PiiPolicy::apply_to_chat`] did to one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Findings per (entity, action).
    pub counts: Counts,
    /// Text fields scanned.
    pub texts_scanned: u32,
    /// Text fields rewritten.
    pub texts_changed: u32,
}

impl PiiPolicy {
    /// Apply the policy to every prompt text of an OpenAI chat, completions or embeddings body,
    /// rewriting redacted fields in place. On `Err` the body may be partly rewritten and must not
    /// be forwarded; the error names the entity type only.
    pub fn apply_to_chat(
        &self,
        body: &mut Map<String, Value>,
        session: &mut PseudonymMap,
    ) -> Result<Report, Blocked> {
        let mut report = Report::default();
        if self.is_noop() {
            return Ok(report);
        }
        if let Some(Value::Array(messages)) = body.get_mut("messages") {
            for message in messages.iter_mut() {
                let Some(content) = message.get_mut("content") else {
                    continue;
                };
                match content {
                    Value::String(_) => self.apply_value(content, session, &mut report)?,
                    Value::Array(parts) => {
                        for part in parts.iter_mut() {
                            let Value::Object(part) = part else {
                                continue;
                            };
                            if part.get("type").and_then(Value::as_str) != Some("text") {
                                continue;
                            }
                            if let Some(text) = part.get_mut("text") {
                                self.apply_value(text, session, &mut report)?;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for field in ["prompt", "input"] {
            match body.get_mut(field) {
                Some(v @ Value::String(_)) => self.apply_value(v, session, &mut report)?,
                Some(Value::Array(items)) => {
                    for item in items.iter_mut() {
                        self.apply_value(item, session, &mut report)?;
                    }
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// Apply to one JSON value if it is a string.
    fn apply_value(
        &self,
        value: &mut Value,
        session: &mut PseudonymMap,
        report: &mut Report,
    ) -> Result<(), Blocked> {
        let Value::String(text) = value else {
            return Ok(());
        };
        report.texts_scanned += 1;
        let applied = self.apply(text, session);
        report.counts.merge(&applied.counts);
        if let Some(entity) = applied.blocked {
            return Err(Blocked {
                entity,
                counts: report.counts,
            });
        }
        if let std::borrow::Cow::Owned(new) = applied.text {
            report.texts_changed += 1;
            *text = new;
        }
        Ok(())
    }
}
