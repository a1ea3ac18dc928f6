//! Small helpers: text generation, token estimates, chunking, embeddings, base64.

use serde_json::Value;
use sha2::{Digest, Sha256};

const LOREM: &str = "lorem ipsum dolor sit amet ";

/// Exactly `n` bytes of repeated lorem ipsum (ASCII, so any cut is valid UTF-8).
pub(crate) fn fixed_text(n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        let take = (n - s.len()).min(LOREM.len());
        s.push_str(&LOREM[..take]);
    }
    s
}

/// `ceil(bytes / 4)`.
pub(crate) fn tokens_for(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

/// Largest char boundary `<= i`.
pub(crate) fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Smallest char boundary `>= i`.
pub(crate) fn ceil_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Text of a chat message `content`: a string, or an array of parts whose
/// `type: "text"` parts' `text` fields are concatenated. Anything else is "".
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for part in parts {
                if part.get("type").and_then(Value::as_str) == Some("text") {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        out.push_str(t);
                    }
                }
            }
            out
        }
        _ => String::new(),
    }
}

/// How a streamed content string is split into pieces.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunking {
    /// ~16-byte pieces (char-boundary safe), no delay.
    Default,
    /// Exactly `n` pieces (some may be empty when the text is short).
    Exact(usize),
}

/// Default piece size in bytes.
const DEFAULT_PIECE: usize = 16;

/// Iterator over `(start, end)` byte ranges of the pieces of a string.
pub(crate) struct Pieces<'a> {
    s: &'a str,
    chunking: Chunking,
    k: usize,
    pos: usize,
}

impl<'a> Pieces<'a> {
    pub(crate) fn new(s: &'a str, chunking: Chunking) -> Self {
        Pieces {
            s,
            chunking,
            k: 0,
            pos: 0,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let len = self.s.len();
        let end = match self.chunking {
            Chunking::Default => {
                if self.pos >= len {
                    return None;
                }
                let mut end = ceil_boundary(self.s, self.pos + DEFAULT_PIECE);
                if end == self.pos {
                    end = len;
                }
                end
            }
            Chunking::Exact(n) => {
                if self.k >= n {
                    return None;
                }
                let target = ((len as u128 * (self.k as u128 + 1)) / n as u128) as usize;
                ceil_boundary(self.s, target).max(self.pos)
            }
        };
        let piece = self.s.get(self.pos..end).unwrap_or("");
        self.pos = end;
        self.k += 1;
        Some(piece)
    }
}

/// Deterministic 8-dim unit vector derived from sha256 of `text`.
pub(crate) fn embedding_for(text: &str) -> [f32; 8] {
    let digest = Sha256::digest(text.as_bytes());
    let mut v = [0f64; 8];
    for (i, chunk) in digest.chunks_exact(4).enumerate().take(8) {
        let u = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        v[i] = (f64::from(u) / f64::from(u32::MAX)) * 2.0 - 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut out = [0f32; 8];
    if norm > 0.0 {
        for (o, x) in out.iter_mut().zip(v.iter()) {
            *o = (x / norm) as f32;
        }
    } else {
        out[0] = 1.0;
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        out.push(char::from(B64[(n >> 18) as usize & 63]));
        out.push(char::from(B64[(n >> 12) as usize & 63]));
        if chunk.len() > 1 {
            out.push(char::from(B64[(n >> 6) as usize & 63]));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(char::from(B64[n as usize & 63]));
        } else {
            out.push('=');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn fixed_text_len() {
        assert_eq!(fixed_text(0), "");
        assert_eq!(fixed_text(5), "lorem");
        assert_eq!(fixed_text(1000).len(), 1000);
    }

    #[test]
    fn pieces_exact_and_default() {
        let s = "héllo wörld, this is a longer string with ünïcödé";
        for n in [1, 2, 3, 7, 100] {
            let p: Vec<&str> = Pieces::new(s, Chunking::Exact(n)).collect();
            assert_eq!(p.len(), n);
            assert_eq!(p.concat(), s);
        }
        let p: Vec<&str> = Pieces::new(s, Chunking::Default).collect();
        assert!(p.iter().all(|x| !x.is_empty() && x.len() <= 17));
        assert_eq!(p.concat(), s);
        assert_eq!(Pieces::new("", Chunking::Default).count(), 0);
        assert_eq!(Pieces::new("", Chunking::Exact(3)).count(), 3);
    }

    #[test]
    fn embedding_is_unit_and_deterministic() {
        let a = embedding_for("hello");
        let b = embedding_for("hello");
        assert_eq!(a, b);
        assert_ne!(a, embedding_for("world"));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }

    #[test]
    fn boundaries() {
        let s = "aé"; // 'é' is 2 bytes at 1..3
        assert_eq!(floor_boundary(s, 2), 1);
        assert_eq!(ceil_boundary(s, 2), 3);
        assert_eq!(floor_boundary(s, 10), 3);
    }
}
