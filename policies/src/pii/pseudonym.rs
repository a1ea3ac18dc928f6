//! Per-request pseudonyms and restoring them in answers.
//!
//! In [`RedactMode::Pseudonym`](super::RedactMode::Pseudonym) a value becomes `<TAG_N>`
//! (`<EMAIL_1>`): the same value maps to the same pseudonym for the whole request, so the model
//! can still tell two people apart and refer back to them. The [`PseudonymMap`] lives in the
//! request context; after the answer comes back, a [`Restorer`] puts the originals back, chunk by
//! chunk for streams, holding back a chunk's tail only while it could still become a pseudonym.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// Original ↔ pseudonym for one request. Its `Debug` shows only the number of entries.
#[derive(Clone, Default)]
pub struct PseudonymMap {
    /// tag -> original -> pseudonym.
    forward: HashMap<String, HashMap<String, String>>,
    /// pseudonym -> original, ordered for prefix lookups.
    reverse: BTreeMap<String, String>,
    /// Longest pseudonym, in bytes.
    max_len: usize,
}

impl fmt::Debug for PseudonymMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymMap")
            .field("entries", &self.reverse.len())
            .finish_non_exhaustive()
    }
}

/// What sits at a `<` in a text.
enum At<'m> {
    /// A known pseudonym of this many bytes, and its original.
    Full(usize, &'m str),
    /// The rest of the text is a proper prefix of a known pseudonym.
    Partial,
    /// Not a pseudonym.
    No,
}

impl PseudonymMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct pseudonyms handed out.
    pub fn len(&self) -> usize {
        self.reverse.len()
    }

    /// No pseudonyms handed out.
    pub fn is_empty(&self) -> bool {
        self.reverse.is_empty()
    }

    /// The pseudonym for `original` under `tag` (`EMAIL`), creating `<EMAIL_n>` with the next
    /// free number on first use.
    pub fn pseudonym(&mut self, tag: &str, original: &str) -> &str {
        let per_tag = self.forward.entry(tag.to_owned()).or_default();
        if !per_tag.contains_key(original) {
            let mut n = per_tag.len() + 1;
            let mut p = format!("<{tag}_{n}>");
            // Cannot collide for distinct tags (the number follows the last `_`); be safe anyway.
            while self.reverse.contains_key(&p) {
                n += 1;
                p = format!("<{tag}_{n}>");
            }
            self.max_len = self.max_len.max(p.len());
            self.reverse.insert(p.clone(), original.to_owned());
            per_tag.insert(original.to_owned(), p);
        }
        per_tag.get(original).map_or("", String::as_str)
    }

    /// The original behind `pseudonym`, if this map handed it out.
    pub fn original(&self, pseudonym: &str) -> Option<&str> {
        self.reverse.get(pseudonym).map(String::as_str)
    }

    /// Replace every known pseudonym in a whole text (a non-streamed answer's content).
    pub fn restore_all(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        self.restore_into(text, &mut out, false, true);
        out
    }

    /// Like [`restore_all`](Self::restore_all) for raw JSON text: originals are written
    /// JSON-escaped so they stay valid inside string literals. Pseudonyms must appear literally
    /// (`<`, not `\u003c`); prefer restoring decoded content when the producer escapes `<`.
    pub fn restore_all_json(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        self.restore_into(text, &mut out, true, true);
        out
    }

    fn at<'m>(&'m self, s: &str) -> At<'m> {
        let b = s.as_bytes();
        let window = &b[..b.len().min(self.max_len)];
        if let Some(gt) = memchr::memchr(b'>', window) {
            return match self.reverse.get(&s[..=gt]) {
                Some(orig) => At::Full(gt + 1, orig),
                None => At::No,
            };
        }
        if b.len() >= self.max_len {
            return At::No;
        }
        // `s` is shorter than the longest pseudonym and has no `>`: is it the start of one?
        let next = self
            .reverse
            .range::<str, _>((Bound::Included(s), Bound::Unbounded))
            .next();
        match next {
            Some((p, _)) if p.starts_with(s) => At::Partial,
            _ => At::No,
        }
    }

    /// Append `text` to `out` with pseudonyms replaced. Unless `at_end`, stops before a tail that
    /// could still become a pseudonym and returns how many bytes of `text` were consumed.
    fn restore_into(&self, text: &str, out: &mut String, json: bool, at_end: bool) -> usize {
        if self.reverse.is_empty() {
            out.push_str(text);
            return text.len();
        }
        let b = text.as_bytes();
        let mut last = 0;
        let mut i = 0;
        while let Some(off) = memchr::memchr(b'<', &b[i..]) {
            let lt = i + off;
            match self.at(&text[lt..]) {
                At::Full(len, orig) => {
                    out.push_str(&text[last..lt]);
                    if json {
                        push_json_escaped(out, orig);
                    } else {
                        out.push_str(orig);
                    }
                    i = lt + len;
                    last = i;
                }
                At::Partial if !at_end => {
                    out.push_str(&text[last..lt]);
                    return lt;
                }
                At::Partial | At::No => i = lt + 1,
            }
        }
        out.push_str(&text[last..]);
        text.len()
    }
}

/// Write `s` escaped for the inside of a JSON string literal.
fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
}

/// Restores pseudonyms in a streamed answer. Feed the text in order with [`push`](Self::push),
/// emit what it returns, and emit [`finish`](Self::finish) at the end. A pseudonym split across
/// chunks (`<EMA` + `IL_1>`) is held back until complete; a tail that cannot become a known
/// pseudonym is released at once, so the extra latency is at most one pseudonym's length.
pub struct Restorer {
    map: Arc<PseudonymMap>,
    pending: String,
    json: bool,
}

impl fmt::Debug for Restorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer")
            .field("map", &self.map)
            .field("pending_bytes", &self.pending.len())
            .field("json", &self.json)
            .finish()
    }
}

impl Restorer {
    /// A restorer for plain text (decoded `delta.content`).
    pub fn new(map: impl Into<Arc<PseudonymMap>>) -> Self {
        Self {
            map: map.into(),
            pending: String::new(),
            json: false,
        }
    }

    /// A restorer for raw JSON / SSE bytes: originals are inserted JSON-escaped (see
    /// [`PseudonymMap::restore_all_json`]).
    pub fn json(map: impl Into<Arc<PseudonymMap>>) -> Self {
        Self {
            json: true,
            ..Self::new(map)
        }
    }

    /// The map this restorer reads.
    pub fn map(&self) -> &PseudonymMap {
        &self.map
    }

    /// Take the next chunk; returns the text that is safe to emit now.
    pub fn push(&mut self, chunk: &str) -> String {
        let mut out = String::with_capacity(chunk.len() + self.pending.len());
        if self.pending.is_empty() {
            let used = self.map.restore_into(chunk, &mut out, self.json, false);
            self.pending.push_str(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.push_str(chunk);
            let used = self.map.restore_into(&buf, &mut out, self.json, false);
            buf.drain(..used);
            self.pending = buf;
        }
        out
    }

    /// End of the answer: the held-back tail, as is.
    pub fn finish(self) -> String {
        self.pending
    }

    /// Restore a whole text at once with this restorer's escaping.
    pub fn restore_all(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        self.map.restore_into(text, &mut out, self.json, true);
        out
    }
}
