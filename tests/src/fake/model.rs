//! Parsing of the behaviour-selecting `model` string.
//!
//! The model string is split on `+`; every token that matches one of the
//! grammar rules below adjusts the behaviour, unknown tokens are ignored (so a
//! normal model name such as `gpt-4o-mini` behaves as plain echo):
//!
//! ```text
//! echo                 default: content = "echo: " + last user message
//! fixed-<N>            content is exactly N bytes of lorem ipsum
//! huge-<N>             alias of fixed-<N>
//! slow-<ms>            wait ms before sending the response header
//! chunks-<N>-<ms>      streaming: exactly N content chunks, ms between them
//! status-<code>        respond with that status (400..=599) + OpenAI error
//! ratelimit-<secs>     429 + `retry-after: secs`
//! reset-after-<N>      streaming: role + N content chunks then abort;
//!                      non-streaming: truncated body then abort
//! ```

/// Behaviour selected by a model string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Behavior {
    /// `fixed-<N>` / `huge-<N>`: content length in bytes.
    pub(crate) fixed: Option<usize>,
    /// `slow-<ms>`: delay before the response header.
    pub(crate) slow_ms: Option<u64>,
    /// `chunks-<N>-<ms>`: chunk count and inter-chunk delay.
    pub(crate) chunks: Option<(usize, u64)>,
    /// `status-<code>`: error status to answer with.
    pub(crate) status: Option<u16>,
    /// `ratelimit-<secs>`: answer 429 with this retry-after.
    pub(crate) ratelimit: Option<u64>,
    /// `reset-after-<N>`: abort the connection after N content chunks.
    pub(crate) reset_after: Option<usize>,
}

impl Behavior {
    /// Parses a model string; never fails, unknown tokens are ignored.
    pub(crate) fn parse(model: &str) -> Behavior {
        let mut b = Behavior::default();
        for token in model.split('+') {
            let token = token.trim();
            if let Some(rest) = token.strip_prefix("reset-after-") {
                if let Ok(n) = rest.parse() {
                    b.reset_after = Some(n);
                }
            } else if let Some(rest) = token.strip_prefix("fixed-") {
                if let Ok(n) = rest.parse() {
                    b.fixed = Some(n);
                }
            } else if let Some(rest) = token.strip_prefix("huge-") {
                if let Ok(n) = rest.parse() {
                    b.fixed = Some(n);
                }
            } else if let Some(rest) = token.strip_prefix("slow-") {
                if let Ok(ms) = rest.parse() {
                    b.slow_ms = Some(ms);
                }
            } else if let Some(rest) = token.strip_prefix("chunks-") {
                if let Some((n, ms)) = rest.split_once('-') {
                    if let (Ok(n), Ok(ms)) = (n.parse::<usize>(), ms.parse::<u64>()) {
                        b.chunks = Some((n.max(1), ms));
                    }
                }
            } else if let Some(rest) = token.strip_prefix("status-") {
                if let Ok(code) = rest.parse::<u16>() {
                    if (400..=599).contains(&code) {
                        b.status = Some(code);
                    }
                }
            } else if let Some(rest) = token.strip_prefix("ratelimit-") {
                if let Ok(secs) = rest.parse() {
                    b.ratelimit = Some(secs);
                }
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::Behavior;

    #[test]
    fn parses_tokens() {
        assert_eq!(Behavior::parse("gpt-4o-mini"), Behavior::default());
        assert_eq!(Behavior::parse("echo"), Behavior::default());
        let b = Behavior::parse("chunks-5-100+slow-200+fixed-10+reset-after-3");
        assert_eq!(b.chunks, Some((5, 100)));
        assert_eq!(b.slow_ms, Some(200));
        assert_eq!(b.fixed, Some(10));
        assert_eq!(b.reset_after, Some(3));
        assert_eq!(Behavior::parse("huge-1000").fixed, Some(1000));
        assert_eq!(Behavior::parse("status-503").status, Some(503));
        assert_eq!(Behavior::parse("status-200").status, None);
        assert_eq!(Behavior::parse("ratelimit-7").ratelimit, Some(7));
        assert_eq!(Behavior::parse("chunks-x-1"), Behavior::default());
    }
}
