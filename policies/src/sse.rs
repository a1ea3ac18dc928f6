//! An incremental observer for OpenAI-style server-sent event streams.
//!
//! The gateway relays stream bytes to the client unchanged, chunk by chunk, and feeds each chunk
//! here to learn what it needs after the stream: the `usage` chunk, whether a `finish_reason`
//! arrived and whether the stream ended with `data: [DONE]`. Work is O(chunk); only a partial
//! line is carried between chunks.

use serde::Deserialize;

use crate::openai::Usage;

/// Longest partial line kept between chunks; a longer one stops observation (the bytes are still
/// relayed, only the bookkeeping gives up).
const MAX_CARRY: usize = 16 * 1024 * 1024;
/// Most answer text kept for counting tokens when the provider reports no usage.
const MAX_CONTENT: usize = 4 * 1024 * 1024;

/// What has been seen on a stream so far.
#[derive(Debug, Default)]
pub struct SseObserver {
    carry: Vec<u8>,
    overflowed: bool,
    /// The last non-null `usage` object seen.
    pub usage: Option<Usage>,
    /// The first `finish_reason` seen (e.g. `stop`, `length`, `tool_calls`).
    pub finish_reason: Option<String>,
    /// `data: [DONE]` arrived.
    pub done: bool,
    /// Number of `data:` events seen.
    pub events: u64,
    /// Answer text streamed so far (`delta.content`, legacy `text`), up to 4 MiB: what the
    /// completion is counted from when the provider reports no usage.
    pub content: String,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

impl SseObserver {
    /// A fresh observer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next chunk of stream bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.overflowed {
            return;
        }
        let mut rest = chunk;
        if !self.carry.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.carry);
                    line.extend_from_slice(&rest[..i]);
                    self.line(&line);
                    rest = &rest[i + 1..];
                }
                None => {
                    self.push_carry(rest);
                    return;
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..i]);
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            self.push_carry(rest);
        }
    }

    fn push_carry(&mut self, bytes: &[u8]) {
        if self.carry.len() + bytes.len() > MAX_CARRY {
            self.overflowed = true;
            self.carry = Vec::new();
        } else {
            self.carry.extend_from_slice(bytes);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        self.events += 1;
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        if let Ok(chunk) = serde_json::from_slice::<Chunk>(data) {
            if chunk.usage.is_some() {
                self.usage = chunk.usage;
            }
            for choice in chunk.choices {
                let text = choice.delta.and_then(|d| d.content).or(choice.text);
                if let Some(t) = text {
                    if self.content.len() + t.len() <= MAX_CONTENT {
                        self.content.push_str(&t);
                    }
                }
                if self.finish_reason.is_none() {
                    self.finish_reason = choice.finish_reason;
                }
            }
        }
    }

    /// The stream ended as a complete OpenAI stream: a finish reason and `[DONE]`.
    pub fn complete(&self) -> bool {
        self.done && self.finish_reason.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\\nlo\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn whole_stream_in_one_chunk() {
        let mut o = SseObserver::new();
        o.feed(STREAM.as_bytes());
        assert!(o.complete());
        assert_eq!(o.events, 5);
        assert_eq!(o.finish_reason.as_deref(), Some("stop"));
        assert_eq!(o.usage.unwrap().total_tokens, 11);
        assert_eq!(o.content, "hel\nlo");
    }

    #[test]
    fn any_split_gives_the_same_result() {
        let bytes = STREAM.replace("\n\n", "\r\n\r\n");
        let bytes = bytes.as_bytes();
        for split in [1, 2, 3, 7, 50, 101] {
            let mut o = SseObserver::new();
            for piece in bytes.chunks(split) {
                o.feed(piece);
            }
            assert!(o.complete(), "split {split}");
            assert_eq!(o.events, 5);
            assert_eq!(o.usage.unwrap().prompt_tokens, 9);
        }
    }

    #[test]
    fn truncated_stream_is_not_complete() {
        let cut = &STREAM[..STREAM
            .find("data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},")
            .unwrap()];
        let mut o = SseObserver::new();
        o.feed(cut.as_bytes());
        assert!(!o.complete());
        assert_eq!(o.finish_reason, None);
        assert!(!o.done);
    }
}
