//! Putting pseudonymised PII back into answers (`guardrails.pii.restore: true`).
//!
//! JSON answers are one contiguous document, so a JSON-escaping [`Restorer`] runs over the raw
//! bytes. Streams are different: a pseudonym such as `<EMAIL_1>` can be split across two SSE
//! events (`"<EMA"` … `"IL_1>"`) with JSON framing in between, so [`SseRestore`] works per event:
//! it decodes each `data:` event, restores the text of every choice with that choice's own
//! restorer (which holds back a possible pseudonym prefix), re-encodes the event, and releases
//! held-back text in the event that carries the choice's `finish_reason`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use sluice_policies::pii::{PseudonymMap, Restorer};

/// Restores pseudonyms in a raw JSON body, chunk by chunk.
pub struct JsonRestore {
    restorer: Restorer,
    carry: Vec<u8>,
}

impl JsonRestore {
    /// Over `map`.
    pub fn new(map: Arc<PseudonymMap>) -> Self {
        Self {
            restorer: Restorer::json(map),
            carry: Vec::new(),
        }
    }

    /// The next chunk; returns what can be sent now (an incomplete UTF-8 sequence or a possible
    /// pseudonym prefix at the end is held back).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        let valid = match std::str::from_utf8(&buf) {
            Ok(_) => buf.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Not UTF-8: nothing to restore; pass it through as is.
            Err(_) => return Bytes::from(buf),
        };
        self.carry = buf.split_off(valid);
        let text = String::from_utf8(buf).unwrap_or_default();
        Bytes::from(self.restorer.push(&text))
    }

    /// The end of the body: everything held back.
    pub fn finish(self) -> Bytes {
        let mut out = self.restorer.finish().into_bytes();
        out.extend_from_slice(&self.carry);
        Bytes::from(out)
    }
}

/// Restores pseudonyms in an OpenAI SSE stream, event by event.
pub struct SseRestore {
    map: Arc<PseudonymMap>,
    per_choice: HashMap<u64, Restorer>,
    line: Vec<u8>,
}

impl SseRestore {
    /// Over `map`.
    pub fn new(map: Arc<PseudonymMap>) -> Self {
        Self {
            map,
            per_choice: HashMap::new(),
            line: Vec::new(),
        }
    }

    /// The next chunk of stream bytes; returns the rewritten complete lines.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len() + 16);
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.line.extend_from_slice(&rest[..=i]);
            rest = &rest[i + 1..];
            let line = std::mem::take(&mut self.line);
            self.rewrite_line(&line, &mut out);
        }
        self.line.extend_from_slice(rest);
        Bytes::from(out)
    }

    /// The end of the stream: any partial line, and any text still held back (which only
    /// happens when the provider never sent a finish reason).
    pub fn finish(mut self) -> Bytes {
        let mut out = std::mem::take(&mut self.line);
        for (_, r) in self.per_choice.drain() {
            let tail = r.finish();
            if !tail.is_empty() {
                let event =
                    serde_json::json!({"choices": [{"index": 0, "delta": {"content": tail}}]});
                out.extend_from_slice(format!("data: {event}\n\n").as_bytes());
            }
        }
        Bytes::from(out)
    }

    fn rewrite_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let Some(data) = body.strip_prefix(b"data:") else {
            out.extend_from_slice(line);
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        let Ok(mut event) = serde_json::from_slice::<Value>(data) else {
            // `[DONE]` or something we do not understand: unchanged.
            out.extend_from_slice(line);
            return;
        };
        let mut changed = false;
        if let Some(choices) = event.get_mut("choices").and_then(Value::as_array_mut) {
            for choice in choices {
                changed |= self.rewrite_choice(choice);
            }
        }
        if changed {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(event.to_string().as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(line);
        }
    }

    /// Restore one choice's text; true when the event changed.
    fn rewrite_choice(&mut self, choice: &mut Value) -> bool {
        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
        let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        // Chat streams carry `delta.content`; legacy completions carry `text`.
        let slot = if choice.get("delta").is_some() {
            choice
                .get_mut("delta")
                .and_then(Value::as_object_mut)
                .map(|d| (d, "content"))
        } else {
            choice.as_object_mut().map(|c| (c, "text"))
        };
        let Some((obj, field)) = slot else {
            return false;
        };
        let text = obj.get(field).and_then(Value::as_str).map(str::to_owned);
        if text.is_none() && !finished {
            return false;
        }
        let map = &self.map;
        let restorer = self
            .per_choice
            .entry(index)
            .or_insert_with(|| Restorer::new(Arc::clone(map)));
        let mut restored = text
            .as_deref()
            .map(|t| restorer.push(t))
            .unwrap_or_default();
        if finished {
            if let Some(r) = self.per_choice.remove(&index) {
                restored.push_str(&r.finish());
            }
        }
        if text.as_deref() == Some(restored.as_str()) {
            return false;
        }
        if text.is_none() && restored.is_empty() {
            return false;
        }
        obj.insert(field.to_owned(), Value::String(restored));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Arc<PseudonymMap> {
        let mut m = PseudonymMap::new();
        m.pseudonym("EMAIL", "jane@example.com");
        Arc::new(m)
    }

    fn event(content: &str, finish: Option<&str>) -> String {
        let v = serde_json::json!({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]});
        format!("data: {v}\n\n")
    }

    fn contents(sse: &[u8]) -> String {
        String::from_utf8_lossy(sse)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|e| {
                e["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    #[test]
    fn pseudonym_split_across_events_is_restored() {
        let stream = [
            event("mail <EMA", None),
            event("IL_1> now", None),
            event("", Some("stop")),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        for split in [1, 3, 7, 50, stream.len()] {
            let mut r = SseRestore::new(map());
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(split) {
                out.extend_from_slice(&r.push(piece));
            }
            out.extend_from_slice(&r.finish());
            assert_eq!(contents(&out), "mail jane@example.com now", "split {split}");
            assert!(String::from_utf8_lossy(&out).ends_with("data: [DONE]\n\n"));
        }
    }

    #[test]
    fn held_back_prefix_is_released_at_finish() {
        let mut r = SseRestore::new(map());
        let mut out = r.push(event("ends with <EMA", None).as_bytes()).to_vec();
        out.extend_from_slice(&r.push(event("", Some("stop")).as_bytes()));
        assert_eq!(contents(&out), "ends with <EMA");
    }

    #[test]
    fn json_bodies_restore_across_chunks_and_utf8_boundaries() {
        let body = "{\"content\":\"é <EMAIL_1> ü\"}".as_bytes();
        for split in 1..body.len() {
            let mut r = JsonRestore::new(map());
            let mut out = Vec::new();
            for piece in body.chunks(split) {
                out.extend_from_slice(&r.push(piece));
            }
            out.extend_from_slice(&r.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "{\"content\":\"é jane@example.com ü\"}"
            );
        }
    }
}
