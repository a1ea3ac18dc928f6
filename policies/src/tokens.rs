//! Prompt token counting for token limits and budget reservations.
//!
//! The gateway counts a request's prompt before it forwards it, reserves prompt + expected
//! completion against TPM and budgets, and settles with the provider's real `usage` afterwards.
//! So a count here is an estimate that errs high rather than low, and it must be cheap: it runs
//! on every request that is not a cache hit.
//!
//! - OpenAI models are counted with their real BPE (`cl100k_base` or `o200k_base`), using the
//!   `bpe-openai` crate: the same pre-tokenizer and the same tokens as OpenAI's `tiktoken`, but
//!   counted with a linear-time BPE (no quadratic worst case on long words, no backtracking
//!   regex to overflow on long whitespace runs) about 5x faster. Its tables are serialized at
//!   build time and compiled into the binary: nothing is downloaded. Each encoding is
//!   deserialized once per process, on first use or by [`Tokenizer::preload`], and shared by
//!   all threads.
//! - Other models are counted as `ceil(bytes / 3.5)` per string ([`Tokenizer::Approx`]).
//! - Chat bodies follow OpenAI's per-message framing (the cookbook's
//!   `num_tokens_from_messages`), which reproduces the API's `prompt_tokens` for plain messages.
//!   Tools, images and other parts are estimated; see [`Tokenizer::count_chat`].
//!
//! User text is encoded as *ordinary* text: `<|endoftext|>` typed by a user counts as the
//! seven tokens OpenAI's API bills for it, never as one special token.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::openai::ApiKind;

/// Bytes per token assumed for models without a known encoding.
///
/// OpenAI's encodings average about 4 bytes per token on English prose, and Anthropic quotes
/// about 3.5 characters per token for Claude, so dividing by 3.5 overestimates most Latin-script
/// text by 10-15% — a safety factor, since an undercount would let a key overspend. Scripts with
/// several bytes per character (CJK: 3 bytes, often about one token per character) are
/// *under*counted by this rule; the settle step corrects the ledger from the provider's usage.
pub const DEFAULT_APPROX_BYTES_PER_TOKEN: f32 = 3.5;

/// Framing tokens per chat message (`<|start|>{role}<|message|>…<|end|>`).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Extra token when a message has a `name`.
const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: u64 = 3;
/// Framing around one tool call in an assistant message (beyond its name and arguments).
const TOKENS_PER_TOOL_CALL: u64 = 3;
/// Framing per tool definition, on top of the JSON text of its `function` object.
const TOKENS_PER_TOOL: u64 = 10;
/// An image part with `detail: "low"`: OpenAI bills a flat 85 tokens (gpt-4o family).
pub const IMAGE_LOW_DETAIL_TOKENS: u64 = 85;
/// An image part with `detail: "high"`/`"auto"`/absent. The gateway does not decode images, so
/// it cannot tile them; 765 is a 1024x1024 image at high detail (4 tiles x 170 + 85), the
/// common case. Large non-square images cost more (up to 1,445 for 768x2048), and gpt-4o-mini
/// bills images at many times these numbers; the settle step corrects from the real usage.
pub const IMAGE_HIGH_DETAIL_TOKENS: u64 = 765;
/// Non-text, non-image content parts (`input_audio`, `file`, ...): their payload is base64, so
/// counting its text would overcount by orders of magnitude. Reserved like a high-detail image.
pub const OTHER_PART_TOKENS: u64 = IMAGE_HIGH_DETAIL_TOKENS;

/// How prompt text is turned into a token count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tokenizer {
    /// OpenAI `cl100k_base`: gpt-4, gpt-4-turbo, gpt-3.5-turbo, text-embedding-*.
    Cl100kBase,
    /// OpenAI `o200k_base`: gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4.
    O200kBase,
    /// `ceil(bytes / bytes_per_token)` per string, for models whose tokenizer Sluice does not
    /// ship (see [`DEFAULT_APPROX_BYTES_PER_TOKEN`]). A non-positive or non-finite value counts
    /// one token per byte.
    Approx {
        /// Average UTF-8 bytes per token.
        bytes_per_token: f32,
    },
}

/// A tokenizer name in the config that is not one of `cl100k_base`, `o200k_base`, `approx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tokenizer `{name}`: expected one of cl100k_base, o200k_base, approx")]
pub struct UnknownTokenizer {
    /// The name as written.
    pub name: String,
}

impl FromStr for Tokenizer {
    type Err = UnknownTokenizer;

    /// Config names: `cl100k_base`, `o200k_base`, `approx` (3.5 bytes per token).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cl100k_base" => Ok(Self::Cl100kBase),
            "o200k_base" => Ok(Self::O200kBase),
            "approx" => Ok(Self::Approx {
                bytes_per_token: DEFAULT_APPROX_BYTES_PER_TOKEN,
            }),
            other => Err(UnknownTokenizer {
                name: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Known OpenAI model families, longest prefixes first where one prefix contains another
/// (`gpt-4o` and `gpt-4.1` before `gpt-4`).
const FAMILIES: &[(&str, Tokenizer)] = &[
    ("gpt-4o", Tokenizer::O200kBase),
    ("chatgpt-4o", Tokenizer::O200kBase),
    ("gpt-4.1", Tokenizer::O200kBase),
    ("gpt-4.5", Tokenizer::O200kBase),
    ("gpt-5", Tokenizer::O200kBase),
    ("codex-mini", Tokenizer::O200kBase),
    // gpt-oss uses o200k_harmony: the same ranks as o200k_base plus chat-format specials.
    ("gpt-oss", Tokenizer::O200kBase),
    ("gpt-4", Tokenizer::Cl100kBase),
    ("gpt-3.5", Tokenizer::Cl100kBase),
    ("gpt-35", Tokenizer::Cl100kBase), // Azure's spelling
    ("text-embedding-", Tokenizer::Cl100kBase),
    ("davinci-002", Tokenizer::Cl100kBase),
    ("babbage-002", Tokenizer::Cl100kBase),
];

/// Reasoning series, matched as the whole name or followed by `-` (`o3`, `o3-mini`, ...).
const O_SERIES: &[&str] = &["o1", "o3", "o4"];

impl Tokenizer {
    /// The tokenizer for a provider-side model name (the route's upstream model, not the
    /// client-facing alias). Fine-tuned names (`ft:gpt-4o-mini:org::id`) and `openai/`-prefixed
    /// names count like their base model; any name outside the OpenAI families, including
    /// Azure deployment names that do not start with the model name, gets
    /// [`Tokenizer::Approx`] with [`DEFAULT_APPROX_BYTES_PER_TOKEN`]. Matching ignores ASCII
    /// case.
    pub fn for_model(upstream_model: &str) -> Tokenizer {
        let name = strip_prefix_ci(upstream_model, "ft:").unwrap_or(upstream_model);
        let name = strip_prefix_ci(name, "openai/").unwrap_or(name);
        for (prefix, tokenizer) in FAMILIES {
            if strip_prefix_ci(name, prefix).is_some() {
                return *tokenizer;
            }
        }
        for family in O_SERIES {
            if let Some(rest) = strip_prefix_ci(name, family) {
                if rest.is_empty() || rest.starts_with('-') {
                    return Tokenizer::O200kBase;
                }
            }
        }
        Tokenizer::Approx {
            bytes_per_token: DEFAULT_APPROX_BYTES_PER_TOKEN,
        }
    }

    /// Config name (`cl100k_base`, `o200k_base`, `approx`), also a metric/log label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
            Self::Approx { .. } => "approx",
        }
    }

    /// Load this tokenizer's encoding now instead of on the first request that needs it:
    /// PRELOAD_COST (measured on a 2-core machine). Idempotent; a no-op for
    /// [`Tokenizer::Approx`].
    pub fn preload(&self) {
        let _ = self.bpe();
    }

    /// The encoding, deserialized on first use from tables the build embedded in the binary
    /// (`bpe-openai` checks them when it generates them, so loading cannot fail at run time).
    fn bpe(&self) -> Option<&'static Encoding> {
        match self {
            Self::Cl100kBase => Some(&CL100K_BASE),
            Self::O200kBase => Some(&O200K_BASE),
            Self::Approx { .. } => None,
        }
    }

    /// Tokens in `text`, encoded as ordinary text (special-token markup counts as the text it
    /// is), exactly as `tiktoken`'s `encode_ordinary(text).len()`. Approximate counts round
    /// up. Linear in the length of `text`, whatever the text; allocates only small per-piece
    /// buffers.
    pub fn count_text(&self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        match (self, self.bpe()) {
            (Self::Approx { bytes_per_token }, _) => approx_count(text.len(), *bytes_per_token),
            (_, Some(bpe)) => bpe.count(text),
            (_, None) => approx_count(text.len(), DEFAULT_APPROX_BYTES_PER_TOKEN),
        }
    }

    /// Prompt tokens of a chat completion body, following OpenAI's counting rules:
    ///
    /// - each message: 3 framing tokens + the tokens of each of its string fields (`role`,
    ///   `content`, `name`, `tool_call_id`, `refusal`, ...) + 1 if it has a `name`;
    /// - `content` as an array of parts: `text` (and `refusal`) parts count their text; image
    ///   parts count [`IMAGE_LOW_DETAIL_TOKENS`] for `detail: "low"` else
    ///   [`IMAGE_HIGH_DETAIL_TOKENS`]; other parts (audio, files) [`OTHER_PART_TOKENS`];
    /// - `tool_calls` (and the legacy `function_call`): each call's function name + arguments
    ///   text + 3;
    /// - other non-string message fields count their JSON text;
    /// - 3 tokens priming the reply;
    /// - `tools` (and legacy `functions`): the JSON text of each tool's `function` object + 10;
    /// - `tool_choice` and `response_format`, when objects: their JSON text.
    ///
    /// For plain messages this is exact (it reproduces the API's `prompt_tokens` in OpenAI's
    /// cookbook example); tool definitions are counted as JSON, which is more than the API's
    /// internal rendering, so the estimate errs high.
    pub fn count_chat(&self, body: &Map<String, Value>) -> u64 {
        let mut total: u64 = 0;
        if let Some(Value::Array(messages)) = body.get("messages") {
            for message in messages {
                total = total.saturating_add(self.count_message(message));
            }
        }
        total = total.saturating_add(REPLY_PRIMING);
        for field in ["tools", "functions"] {
            if let Some(Value::Array(tools)) = body.get(field) {
                for tool in tools {
                    let function = tool.get("function").unwrap_or(tool);
                    total = total
                        .saturating_add(self.count_json(function))
                        .saturating_add(TOKENS_PER_TOOL);
                }
            }
        }
        for field in ["tool_choice", "response_format"] {
            if let Some(value @ Value::Object(_)) = body.get(field) {
                total = total.saturating_add(self.count_json(value));
            }
        }
        total
    }

    fn count_message(&self, message: &Value) -> u64 {
        let Value::Object(message) = message else {
            return 0;
        };
        let mut total = TOKENS_PER_MESSAGE;
        for (key, value) in message {
            let n = match (key.as_str(), value) {
                (_, Value::Null) => 0,
                ("name", Value::String(s)) => self.count_text(s).saturating_add(TOKENS_PER_NAME),
                ("content", Value::Array(parts)) => parts
                    .iter()
                    .fold(0u64, |acc, part| acc.saturating_add(self.count_part(part))),
                ("tool_calls", Value::Array(calls)) => calls.iter().fold(0u64, |acc, call| {
                    let function = call.get("function").unwrap_or(call);
                    acc.saturating_add(self.count_function_call(function))
                }),
                ("function_call", function) => self.count_function_call(function),
                (_, Value::String(s)) => self.count_text(s),
                (_, other) => self.count_json(other),
            };
            total = total.saturating_add(n);
        }
        total
    }

    fn count_part(&self, part: &Value) -> u64 {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" | "refusal" | "input_text" => part
                .get(kind)
                .or_else(|| part.get("text"))
                .and_then(Value::as_str)
                .map_or(0, |s| self.count_text(s)),
            "image_url" | "input_image" => {
                let detail = part
                    .get("image_url")
                    .and_then(|i| i.get("detail"))
                    .or_else(|| part.get("detail"))
                    .and_then(Value::as_str);
                if detail == Some("low") {
                    IMAGE_LOW_DETAIL_TOKENS
                } else {
                    IMAGE_HIGH_DETAIL_TOKENS
                }
            }
            _ => OTHER_PART_TOKENS,
        }
    }

    /// A tool call's `function` object: its name and its arguments (a JSON string).
    fn count_function_call(&self, function: &Value) -> u64 {
        let mut total = TOKENS_PER_TOOL_CALL;
        for field in ["name", "arguments"] {
            match function.get(field) {
                Some(Value::String(s)) => total = total.saturating_add(self.count_text(s)),
                Some(Value::Null) | None => {}
                Some(other) => total = total.saturating_add(self.count_json(other)),
            }
        }
        total
    }

    /// The compact JSON text of `value`.
    fn count_json(&self, value: &Value) -> u64 {
        match value {
            Value::Null => 0,
            Value::String(s) => self.count_text(s),
            // Serializing a `Value` cannot fail (string keys, no custom Serialize).
            other => self.count_text(&serde_json::to_string(other).unwrap_or_default()),
        }
    }

    /// Prompt tokens of a request body for `api`: chat messages (see
    /// [`Tokenizer::count_chat`]), the completions `prompt` (plus `suffix`), or the embeddings
    /// `input`. A prompt may be a string, an array of strings, an array of token ids (which
    /// counts its length), or an array of token-id arrays.
    pub fn count_prompt(&self, api: ApiKind, body: &Map<String, Value>) -> u64 {
        match api {
            ApiKind::ChatCompletions => self.count_chat(body),
            ApiKind::Completions => {
                let prompt = body.get("prompt").map_or(0, |p| self.count_input(p));
                let suffix = body
                    .get("suffix")
                    .and_then(Value::as_str)
                    .map_or(0, |s| self.count_text(s));
                prompt.saturating_add(suffix)
            }
            ApiKind::Embeddings => body.get("input").map_or(0, |i| self.count_input(i)),
        }
    }

    fn count_input(&self, input: &Value) -> u64 {
        match input {
            Value::String(s) => self.count_text(s),
            Value::Array(items) => items.iter().fold(0u64, |acc, item| {
                let n = match item {
                    Value::String(s) => self.count_text(s),
                    Value::Number(_) => 1,
                    Value::Array(ids) => ids.len() as u64,
                    _ => 0,
                };
                acc.saturating_add(n)
            }),
            _ => 0,
        }
    }
}

/// The most completion tokens a request may produce: `max_completion_tokens` (or the older
/// `max_tokens`) times the number of choices, `n` or, for completions, `best_of` when larger
/// (OpenAI bills every `best_of` candidate). `None` when the client set no limit.
pub fn expected_completion(body: &Map<String, Value>) -> Option<u64> {
    let per_choice = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64))?;
    let choices = ["n", "best_of"]
        .iter()
        .filter_map(|f| body.get(*f).and_then(Value::as_u64))
        .max()
        .unwrap_or(1)
        .max(1);
    Some(per_choice.saturating_mul(choices))
}

fn approx_count(bytes: usize, bytes_per_token: f32) -> u64 {
    if bytes == 0 {
        return 0;
    }
    let per = f64::from(bytes_per_token);
    if !(per.is_finite() && per > 0.0) {
        return bytes as u64;
    }
    // `as` saturates; a byte count fits an f64 exactly up to 2^53.
    (bytes as f64 / per).ceil() as u64
}

/// An OpenAI encoding as the gateway counts with it: `bpe-openai`'s tokenizer plus what makes
/// counting fast without changing a count.
struct Encoding {
    /// Pre-tokenizer (regex) and linear-time BPE, tables embedded in the binary.
    tokenizer: &'static bpe_openai::Tokenizer,
    /// The byte strings of all tokens. A piece that is one token counts 1 without running the
    /// BPE, as in `tiktoken` (`encode_ordinary` looks each piece up before merging).
    tokens: HashSet<&'static [u8], FxBuildHasher>,
    /// Which pre-tokenizer pattern [`Encoding::ascii_piece`] follows.
    pattern: Pattern,
}

/// Slots in each thread's cache of piece counts, per encoding (a power of two; 16 bytes each,
/// so 32 KiB).
///
/// A few thousand distinct words make up most of any prose, code or JSON, and the token table
/// (several MB, one or two cache misses per lookup) is the main cost of counting them. So
/// each thread keeps a small direct-mapped cache of the counts of the pieces of up to
/// [`CACHED_PIECE_BYTES`] it saw last: a hit costs a multiply-hash of two words and a
/// comparison with the whole piece, so a count is never taken from another piece.
const PIECE_CACHE_SLOTS: usize = 2048;
/// Longest piece kept in the per-thread cache (the slot's last two bytes hold the length and
/// the count).
const CACHED_PIECE_BYTES: usize = 14;

/// One slot of a per-thread piece cache: the piece's bytes, zero-padded, in little-endian
/// words, with its length in byte 14 (0 for an empty slot) and its count in byte 15.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CachedPiece([u64; 2]);

impl CachedPiece {
    /// Bits of the second word that hold the count.
    const COUNT: u64 = 0xff << 56;

    /// The key of `piece` (count 0) if it is short enough to cache. Whole-word loads, not a
    /// byte copy into a buffer (whose narrower stores the word loads would stall on).
    fn key(piece: &[u8]) -> Option<CachedPiece> {
        let len = piece.len();
        let load = |at: usize| -> u64 {
            let word = piece
                .get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok());
            word.map_or(0, u64::from_le_bytes)
        };
        let load4 = |at: usize| -> u64 {
            let word = piece
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok());
            word.map_or(0, |w| u64::from(u32::from_le_bytes(w)))
        };
        let [lo, hi] = match len {
            1..=3 => {
                let word = piece
                    .iter()
                    .enumerate()
                    .fold(0, |w, (i, &b)| w | u64::from(b) << (8 * i));
                [word, 0]
            }
            // Two overlapping loads; the bytes they share are the same.
            4..=7 => [load4(0) | load4(len - 4) << (8 * (len - 4)), 0],
            8 => [load(0), 0],
            9..=CACHED_PIECE_BYTES => [load(0), load(len - 8) >> (8 * (16 - len))],
            _ => return None,
        };
        Some(CachedPiece([lo, hi | (len as u64) << 48]))
    }

    fn hash(&self) -> u64 {
        let [lo, hi] = self.0;
        (lo ^ hi.rotate_left(32))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(7)
            .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    }

    /// The count stored in `self` if it is the slot of `key`.
    fn count_of(&self, key: CachedPiece) -> Option<u64> {
        let [lo, hi] = self.0;
        (lo == key.0[0] && hi & !Self::COUNT == key.0[1]).then_some(hi >> 56)
    }

    fn with_count(self, count: u8) -> CachedPiece {
        let [lo, hi] = self.0;
        CachedPiece([lo, hi | u64::from(count) << 56])
    }
}

thread_local! {
    /// Per-thread piece caches for `cl100k_base` and `o200k_base`, allocated on first use.
    static PIECE_CACHES: RefCell<(Vec<CachedPiece>, Vec<CachedPiece>)> =
        const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The pre-tokenizer patterns, as in `tiktoken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    /// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|
    /// ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
    Cl100k,
    /// `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
    /// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
    /// \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    O200k,
}

static CL100K_BASE: LazyLock<Encoding> =
    LazyLock::new(|| Encoding::new(bpe_openai::cl100k_base(), Pattern::Cl100k));
static O200K_BASE: LazyLock<Encoding> =
    LazyLock::new(|| Encoding::new(bpe_openai::o200k_base(), Pattern::O200k));

impl Encoding {
    fn new(tokenizer: &'static bpe_openai::Tokenizer, pattern: Pattern) -> Self {
        let bpe = &tokenizer.bpe;
        let mut tokens = HashSet::with_capacity_and_hasher(bpe.num_tokens(), FxBuildHasher);
        for id in 0..bpe.num_tokens() {
            if let Ok(id) = u32::try_from(id) {
                tokens.insert(bpe.token_bytes(id));
            }
        }
        Self {
            tokenizer,
            tokens,
            pattern,
        }
    }

    /// Tokens of `text`: the sum over the pre-tokenizer's pieces of each piece's BPE count.
    ///
    /// Pieces are cut by [`Encoding::ascii_piece`] where ASCII decides them (most of English,
    /// code and JSON), else by `bpe-openai`'s regex. Neither pattern has a look-behind, so the
    /// piece that starts at a position depends only on the text from there on, and the two can
    /// take turns.
    ///
    /// For `cl100k_base`, a piece that starts where only whitespace remains takes all of it:
    /// `tiktoken`'s current pattern tries `\s++$` before `\s*[\r\n]`, while `bpe-openai` has the
    /// pattern as it was before that alternative was added, which cuts such a tail after its
    /// last line break (`"\n"`, `" "` instead of `"\n "`). Everywhere else the two cut the same
    /// pieces: `\s++$` cannot match while non-whitespace remains, and `\s*[\r\n]` and
    /// `\s*[\r\n]+` both end at the last line break of a whitespace run followed by more text.
    /// (No text was found where the two cuts of a tail count differently, but following the
    /// pattern makes the pieces the same by construction.) `o200k_base`'s pattern has no such
    /// alternative.
    fn count(&self, text: &str) -> u64 {
        let counted = PIECE_CACHES.try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let cache = match self.pattern {
                Pattern::Cl100k => &mut caches.0,
                Pattern::O200k => &mut caches.1,
            };
            if cache.is_empty() {
                cache.resize(PIECE_CACHE_SLOTS, CachedPiece::default());
            }
            Some(self.count_pieces(text, cache))
        });
        // Without the thread's cache (being destroyed at thread exit), count without one.
        counted
            .ok()
            .flatten()
            .unwrap_or_else(|| self.count_pieces(text, &mut []))
    }

    fn count_pieces(&self, text: &str, cache: &mut [CachedPiece]) -> u64 {
        let tail = match self.pattern {
            // `\s` is Unicode `White_Space`, as is `char::is_whitespace`.
            Pattern::Cl100k => text.trim_end_matches(char::is_whitespace).len(),
            Pattern::O200k => text.len(),
        };
        let mut total: u64 = 0;
        let mut start = 0;
        while let Some(rest) = text.get(start..).filter(|rest| !rest.is_empty()) {
            let len = if start >= tail {
                rest.len()
            } else {
                match self.ascii_piece(rest.as_bytes()) {
                    Some(len) => len,
                    // The regex matches every non-empty text (each character is a letter, a
                    // number, whitespace or none of these); if it did not, take the rest.
                    None => self
                        .tokenizer
                        .split(rest)
                        .next()
                        .map_or(rest.len(), str::len),
                }
            };
            // Pieces are never empty and end at a character boundary; if one did not, the
            // rest would be counted as one piece rather than loop or split a character.
            let len = if len > 0 && rest.is_char_boundary(len) {
                len
            } else {
                rest.len()
            };
            let piece = rest.as_bytes().get(..len).unwrap_or_default();
            total = total.saturating_add(self.piece_count(piece, cache));
            start += len;
        }
        total
    }

    /// Tokens of one piece, from `cache` (see [`PIECE_CACHE_SLOTS`]) when it is there.
    fn piece_count(&self, piece: &[u8], cache: &mut [CachedPiece]) -> u64 {
        let Some(key) = CachedPiece::key(piece) else {
            return self.uncached_piece_count(piece);
        };
        let slot = (key.hash() >> (64 - PIECE_CACHE_SLOTS.trailing_zeros())) as usize;
        let Some(cached) = cache.get_mut(slot) else {
            return self.uncached_piece_count(piece);
        };
        if let Some(count) = cached.count_of(key) {
            return count;
        }
        let count = self.uncached_piece_count(piece);
        if let Ok(small) = u8::try_from(count) {
            *cached = key.with_count(small);
        }
        count
    }

    fn uncached_piece_count(&self, piece: &[u8]) -> u64 {
        if self.tokens.contains(piece) {
            1
        } else {
            self.tokenizer.bpe.count(piece) as u64
        }
    }

    /// Length of the first piece of `s` (non-empty) under this encoding's pattern, when it is
    /// decided by ASCII characters alone; `None` when a non-ASCII character would have to be
    /// classified (letter? mark? number? whitespace? `ſ`, which `(?i:'s)` matches?).
    ///
    /// ASCII classes: letters `A-Za-z` (upper `Lu`, lower `Ll`), numbers `0-9`, whitespace
    /// `\t \n \v \f \r` and space; everything else is "other" (`[^\s\p{L}\p{N}]`).
    fn ascii_piece(&self, s: &[u8]) -> Option<usize> {
        let c0 = Class::of(*s.first()?);
        let c1 = s.get(1).map(|&b| Class::of(b));
        match c0 {
            Class::NonAscii => None,
            Class::Upper | Class::Lower => self.letters(s, 0),
            Class::Digit => digits(s),
            Class::Space | Class::LineBreak | Class::OtherSpace => match c1 {
                Some(Class::NonAscii) => None,
                // `[^\r\n\p{L}\p{N}]?` takes a space or tab before a word.
                Some(Class::Upper | Class::Lower) if c0 != Class::LineBreak => self.letters(s, 1),
                // ` ?[^\s\p{L}\p{N}]+`
                Some(Class::Other) if c0 == Class::Space => self.others(s, 1),
                _ => whitespace(s),
            },
            Class::Other => {
                if self.pattern == Pattern::Cl100k && s.first() == Some(&b'\'') {
                    // `'(?i:[sdmt]|ll|ve|re)` comes first.
                    match contraction(s, 0) {
                        Contraction::Yes(len) => return Some(len),
                        Contraction::Unknown => return None,
                        Contraction::No => {}
                    }
                }
                match c1 {
                    Some(Class::NonAscii) => None,
                    Some(Class::Upper | Class::Lower) => self.letters(s, 1),
                    _ => self.others(s, 0),
                }
            }
        }
    }

    /// End of the piece whose letters start at `at` (an ASCII letter): `\p{L}+` for cl100k;
    /// for o200k `[Lu…]*[Ll…]+` (a word with a lowercase part) or else `[Lu…]+[Ll…]*` (an
    /// all-caps word), each with an optional contraction.
    fn letters(&self, s: &[u8], at: usize) -> Option<usize> {
        let run = |from: usize, class: fn(u8) -> bool| {
            from + s
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| class(b))
                .count()
        };
        let known = |i: usize| s.get(i).is_none_or(u8::is_ascii);
        match self.pattern {
            Pattern::Cl100k => {
                let end = run(at, |b| b.is_ascii_alphabetic());
                known(end).then_some(end)
            }
            Pattern::O200k => {
                let upper_end = run(at, |b| b.is_ascii_uppercase());
                let end = run(upper_end, |b| b.is_ascii_lowercase());
                // Both runs may go on with non-ASCII letters or marks.
                if !known(upper_end) || !known(end) {
                    return None;
                }
                if s.get(end) == Some(&b'\'') {
                    match contraction(s, end) {
                        Contraction::Yes(len) => Some(end + len),
                        Contraction::No => Some(end),
                        Contraction::Unknown => None,
                    }
                } else {
                    Some(end)
                }
            }
        }
    }

    /// End of ` ?[^\s\p{L}\p{N}]+[\r\n]*` (cl100k) or `…[\r\n/]*` (o200k), whose "other"
    /// characters start at `at`.
    fn others(&self, s: &[u8], at: usize) -> Option<usize> {
        let mut end = at;
        while let Some(&b) = s.get(end) {
            match Class::of(b) {
                Class::Other => end += 1,
                Class::NonAscii => return None,
                _ => break,
            }
        }
        let slash = self.pattern == Pattern::O200k;
        while let Some(&b) = s.get(end) {
            if b == b'\r' || b == b'\n' || (slash && b == b'/') {
                end += 1;
            } else {
                break;
            }
        }
        Some(end)
    }
}

/// `\p{N}{1,3}` from the start of `s`, which is an ASCII digit.
fn digits(s: &[u8]) -> Option<usize> {
    let mut end = 0;
    while end < 3 {
        match s.get(end) {
            Some(b) if b.is_ascii_digit() => end += 1,
            Some(b) if !b.is_ascii() => return None,
            _ => break,
        }
    }
    Some(end)
}

/// The piece at the start of a whitespace run (when no word or punctuation follows its first
/// character): `\s*[\r\n]+` up to the run's last line break if it has one, else `\s+(?!\S)`,
/// all of the run at the end of the text and all but its last character before anything else,
/// else `\s+` (a single whitespace character before non-whitespace).
fn whitespace(s: &[u8]) -> Option<usize> {
    let mut end = 0;
    let mut line_break = None;
    while let Some(&b) = s.get(end) {
        match Class::of(b) {
            Class::LineBreak => line_break = Some(end),
            Class::Space | Class::OtherSpace => {}
            // `\u{a0}`, `\u{3000}`, ... are whitespace too.
            Class::NonAscii => return None,
            _ => break,
        }
        end += 1;
    }
    Some(match line_break {
        Some(i) => i + 1,
        None if end == s.len() => end,
        None => end.saturating_sub(1).max(1),
    })
}

enum Contraction {
    Yes(usize),
    No,
    Unknown,
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `at` (an apostrophe). Unknown when a letter to compare
/// is not ASCII: case-insensitive `s` also matches `ſ` (U+017F).
fn contraction(s: &[u8], at: usize) -> Contraction {
    let lower = |i: usize| s.get(at + i).map(u8::to_ascii_lowercase);
    match lower(1) {
        Some(b's' | b't' | b'm' | b'd') => Contraction::Yes(2),
        Some(first @ (b'r' | b'v' | b'l')) => match lower(2) {
            Some(second) if !second.is_ascii() => Contraction::Unknown,
            Some(b'e') if first != b'l' => Contraction::Yes(3),
            Some(b'l') if first == b'l' => Contraction::Yes(3),
            _ => Contraction::No,
        },
        Some(b) if !b.is_ascii() => Contraction::Unknown,
        _ => Contraction::No,
    }
}

/// A byte's class for the pre-tokenizers' ASCII fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Upper,
    Lower,
    Digit,
    /// `' '`
    Space,
    /// `\r`, `\n`
    LineBreak,
    /// `\t`, `\v`, `\f`
    OtherSpace,
    /// ASCII that is neither a letter, a number nor whitespace.
    Other,
    /// A byte of a non-ASCII character.
    NonAscii,
}

impl Class {
    fn of(b: u8) -> Class {
        match b {
            b'A'..=b'Z' => Class::Upper,
            b'a'..=b'z' => Class::Lower,
            b'0'..=b'9' => Class::Digit,
            b' ' => Class::Space,
            b'\r' | b'\n' => Class::LineBreak,
            b'\t' | 0x0b | 0x0c => Class::OtherSpace,
            0x80.. => Class::NonAscii,
            _ => Class::Other,
        }
    }
}

/// FxHash (as in `rustc-hash`): a fast, non-cryptographic hash for the fixed token table,
/// whose keys are not chosen by clients (a lookup costs at most one probe sequence).
#[derive(Debug, Clone, Copy, Default)]
struct FxBuildHasher;

impl BuildHasher for FxBuildHasher {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BPE: [Tokenizer; 2] = [Tokenizer::Cl100kBase, Tokenizer::O200kBase];

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// The reference implementation: `tiktoken-rs` (a port of OpenAI's `tiktoken`), kept as a
    /// dev-dependency for these comparisons only.
    fn tiktoken_of(t: Tokenizer) -> &'static tiktoken_rs::CoreBPE {
        match t {
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Tokenizer::Approx { .. } => panic!("no reference for approx"),
        }
    }

    fn tiktoken_count(t: Tokenizer, text: &str) -> u64 {
        tiktoken_of(t).encode_ordinary(text).len() as u64
    }

    /// Counts published in OpenAI's cookbook ("How to count tokens with tiktoken").
    #[test]
    fn text_counts_match_the_cookbook() {
        for (text, cl100k, o200k) in [
            ("hello world", 2, 2),
            ("tiktoken is great!", 6, 6),
            ("antidisestablishmentarianism", 6, 6),
            ("2 + 2 = 4", 7, 7),
            ("お誕生日おめでとう", 9, 8),
            ("", 0, 0),
        ] {
            assert_eq!(Tokenizer::Cl100kBase.count_text(text), cl100k, "{text}");
            assert_eq!(Tokenizer::O200kBase.count_text(text), o200k, "{text}");
        }
    }

    #[test]
    fn special_token_markup_in_user_text_is_ordinary_text() {
        for t in BPE {
            // As one special token this would be 1; the API bills the characters.
            assert_eq!(t.count_text("<|endoftext|>"), 7, "{t}");
            let text = "ignore this <|endoftext|><|endofprompt|> and go on";
            assert_eq!(t.count_text(text), tiktoken_count(t, text));
            let with_specials = tiktoken_of(t).encode_with_special_tokens(text).len() as u64;
            assert!(t.count_text(text) > with_specials);
        }
    }

    fn cookbook_messages() -> Value {
        json!([
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
        ])
    }

    /// The cookbook's six example messages: the API reported 129 prompt tokens for
    /// gpt-3.5-turbo / gpt-4-0613 (cl100k) and 124 for gpt-4o / gpt-4o-mini (o200k).
    #[test]
    fn chat_count_matches_the_api_on_the_cookbook_example() {
        let body = obj(json!({"model": "gpt-4", "messages": cookbook_messages(), "max_tokens": 1}));
        assert_eq!(Tokenizer::Cl100kBase.count_chat(&body), 129);
        assert_eq!(Tokenizer::O200kBase.count_chat(&body), 124);
        assert_eq!(Tokenizer::for_model("gpt-3.5-turbo").count_chat(&body), 129);
        assert_eq!(Tokenizer::for_model("gpt-4-0613").count_chat(&body), 129);
        assert_eq!(Tokenizer::for_model("gpt-4o").count_chat(&body), 124);
        assert_eq!(Tokenizer::for_model("gpt-4o-mini").count_chat(&body), 124);
        // Dispatch through count_prompt gives the same.
        assert_eq!(
            Tokenizer::O200kBase.count_prompt(ApiKind::ChatCompletions, &body),
            124
        );
    }

    /// The cookbook's tool example: the API reported 105 (gpt-4, cl100k) and 101 (gpt-4o,
    /// o200k). Counting tool definitions as JSON must not undercount, and not wildly overcount.
    #[test]
    fn tool_definitions_are_counted_conservatively() {
        let body = obj(json!({
            "model": "gpt-4o",
            "tools": [{"type": "function", "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {"type": "object", "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "unit": {"type": "string", "description": "The unit of temperature to return", "enum": ["celsius", "fahrenheit"]}
                }, "required": ["location"]}
            }}],
            "messages": [
                {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
                {"role": "user", "content": "What's the weather like in San Francisco?"}
            ]
        }));
        for (t, api) in [(Tokenizer::Cl100kBase, 105), (Tokenizer::O200kBase, 101)] {
            let n = t.count_chat(&body);
            assert!(n >= api && n * 10 <= api * 13, "{t}: {n} vs API {api}");
        }
        // Without the tool, the count drops by the tool's JSON plus its overhead.
        let mut no_tools = body.clone();
        let tools = no_tools.remove("tools").unwrap();
        let t = Tokenizer::O200kBase;
        assert_eq!(
            t.count_chat(&body) - t.count_chat(&no_tools),
            t.count_text(&serde_json::to_string(&tools[0]["function"]).unwrap()) + TOKENS_PER_TOOL
        );
    }

    #[test]
    fn content_parts_count_like_strings_and_images_are_fixed() {
        for t in BPE {
            let string = obj(
                json!({"messages": [{"role": "user", "content": "Describe the weather today"}]}),
            );
            let parts = obj(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe the weather today"}
            ]}]}));
            assert_eq!(t.count_chat(&string), t.count_chat(&parts), "{t}");
            let base = t.count_chat(&parts);
            let with_images = obj(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe the weather today"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "high"}}
            ]}]}));
            assert_eq!(
                t.count_chat(&with_images),
                base + IMAGE_LOW_DETAIL_TOKENS + 2 * IMAGE_HIGH_DETAIL_TOKENS,
                "{t}"
            );
            // A long base64 payload is not counted as text.
            let audio = obj(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe the weather today"},
                {"type": "input_audio", "input_audio": {"data": "UklGR".repeat(20_000), "format": "wav"}}
            ]}]}));
            assert_eq!(t.count_chat(&audio), base + OTHER_PART_TOKENS, "{t}");
        }
    }

    #[test]
    fn tool_calls_and_tool_results_are_counted() {
        let t = Tokenizer::O200kBase;
        let args = r#"{"location":"Paris, France","unit":"celsius"}"#;
        let body = obj(json!({"messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc123", "type": "function",
                 "function": {"name": "get_current_weather", "arguments": args}}
            ]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": "18 degrees and sunny"}
        ]}));
        let expected = (3 + t.count_text("user") + t.count_text("Weather in Paris?"))
            + (3 + t.count_text("assistant")
                + TOKENS_PER_TOOL_CALL
                + t.count_text("get_current_weather")
                + t.count_text(args))
            + (3 + t.count_text("tool")
                + t.count_text("call_abc123")
                + t.count_text("18 degrees and sunny"))
            + REPLY_PRIMING;
        assert_eq!(t.count_chat(&body), expected);
        // Bigger arguments cost more.
        let mut bigger = body.clone();
        bigger["messages"][1]["tool_calls"][0]["function"]["arguments"] =
            json!(r#"{"location":"Paris, France","unit":"celsius","days":7,"hourly":true}"#);
        assert!(t.count_chat(&bigger) > t.count_chat(&body));
    }

    #[test]
    fn tool_choice_and_response_format_objects_are_counted() {
        let t = Tokenizer::Cl100kBase;
        let base = obj(json!({"messages": [{"role": "user", "content": "hi"}]}));
        let n = t.count_chat(&base);
        let mut with_strings = base.clone();
        with_strings.insert("tool_choice".into(), json!("auto"));
        with_strings.insert("response_format".into(), json!("json"));
        assert_eq!(t.count_chat(&with_strings), n);
        let choice = json!({"type": "function", "function": {"name": "get_current_weather"}});
        let format = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}});
        let mut with_objects = base.clone();
        with_objects.insert("tool_choice".into(), choice.clone());
        with_objects.insert("response_format".into(), format.clone());
        assert_eq!(
            t.count_chat(&with_objects),
            n + t.count_text(&choice.to_string()) + t.count_text(&format.to_string())
        );
    }

    #[test]
    fn completions_and_embeddings_prompts() {
        let t = Tokenizer::Cl100kBase;
        let p = |api, v: Value| t.count_prompt(api, &obj(v));
        assert_eq!(p(ApiKind::Completions, json!({"prompt": "hello world"})), 2);
        assert_eq!(
            p(
                ApiKind::Completions,
                json!({"prompt": ["hello world", "2 + 2 = 4"]})
            ),
            9
        );
        assert_eq!(
            p(
                ApiKind::Completions,
                json!({"prompt": "hello world", "suffix": "hello world"})
            ),
            4
        );
        // Token ids count as themselves.
        assert_eq!(
            p(ApiKind::Completions, json!({"prompt": [15339, 1917, 0]})),
            3
        );
        assert_eq!(
            p(ApiKind::Embeddings, json!({"input": [[1, 2], [3], []]})),
            3
        );
        assert_eq!(p(ApiKind::Embeddings, json!({"input": "hello world"})), 2);
        assert_eq!(
            p(
                ApiKind::Embeddings,
                json!({"input": ["hello world", "hello world"]})
            ),
            4
        );
        assert_eq!(p(ApiKind::Embeddings, json!({"model": "m"})), 0);
    }

    #[test]
    fn expected_completion_multiplies_choices() {
        let e = |v: Value| expected_completion(&obj(v));
        assert_eq!(e(json!({"messages": []})), None);
        assert_eq!(e(json!({"max_tokens": 100})), Some(100));
        assert_eq!(
            e(json!({"max_completion_tokens": 50, "max_tokens": 100})),
            Some(50)
        );
        assert_eq!(e(json!({"max_tokens": 100, "n": 3})), Some(300));
        assert_eq!(
            e(json!({"max_tokens": 100, "n": 2, "best_of": 5})),
            Some(500)
        );
        assert_eq!(e(json!({"max_tokens": 100, "n": null})), Some(100));
        assert_eq!(e(json!({"max_tokens": u64::MAX, "n": 2})), Some(u64::MAX));
        assert_eq!(e(json!({"max_tokens": null})), None);
    }

    #[test]
    fn model_families_pick_their_encoding() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-08-06",
            "chatgpt-4o-latest",
            "gpt-4.1",
            "gpt-4.1-nano",
            "gpt-4.5-preview",
            "gpt-5",
            "gpt-5-mini",
            "o1",
            "o1-mini",
            "o3",
            "o3-pro",
            "o4-mini",
            "ft:gpt-4o-mini:acme::abc123",
            "GPT-4o",
            "openai/gpt-4o",
        ] {
            assert_eq!(Tokenizer::for_model(m), Tokenizer::O200kBase, "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-turbo",
            "gpt-4-32k",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-35-turbo",
            "text-embedding-3-small",
            "text-embedding-ada-002",
            "ft:gpt-3.5-turbo-0125:acme::x",
        ] {
            assert_eq!(Tokenizer::for_model(m), Tokenizer::Cl100kBase, "{m}");
        }
        for m in [
            "claude-3-5-haiku-latest",
            "my-4o-mini-deployment",
            "o1x",
            "omni-moderation-latest",
            "llama-3.1-70b",
            "mistral-large",
            "",
            "gemini-1.5-pro",
        ] {
            assert_eq!(
                Tokenizer::for_model(m),
                Tokenizer::Approx {
                    bytes_per_token: 3.5
                },
                "{m}"
            );
        }
    }

    #[test]
    fn config_names_parse_and_print() {
        for name in ["cl100k_base", "o200k_base", "approx"] {
            let t: Tokenizer = name.parse().unwrap();
            assert_eq!(t.name(), name);
            assert_eq!(t.to_string(), name);
        }
        assert_eq!(
            "approx".parse::<Tokenizer>().unwrap(),
            Tokenizer::Approx {
                bytes_per_token: DEFAULT_APPROX_BYTES_PER_TOKEN
            }
        );
        let err = "p50k_base".parse::<Tokenizer>().unwrap_err();
        assert_eq!(err.name, "p50k_base");
        assert!(err.to_string().contains("o200k_base"));
    }

    #[test]
    fn approx_rounds_up_per_string() {
        let t = Tokenizer::Approx {
            bytes_per_token: 3.5,
        };
        for (text, n) in [
            ("", 0),
            ("a", 1),
            ("abc", 1),
            ("abcd", 2),
            ("abcdefg", 2),
            ("abcdefgh", 3),
        ] {
            assert_eq!(t.count_text(text), n, "{text:?}");
        }
        // Bytes, not chars: 9 UTF-8 chars of 3 bytes = 27 bytes -> ceil(27 / 3.5) = 8.
        assert_eq!(t.count_text("お誕生日おめでとう"), 8);
        // A nonsensical ratio counts every byte.
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert_eq!(
                Tokenizer::Approx {
                    bytes_per_token: bad
                }
                .count_text("abcd"),
                4
            );
        }
        // Chat framing applies as for real encodings: 3 + ceil(4/3.5) + ceil(5/3.5) + 3.
        let body = obj(json!({"messages": [{"role": "user", "content": "hello"}]}));
        assert_eq!(t.count_chat(&body), 3 + 2 + 2 + 3);
        // English prose: the approximation errs high compared with the real encodings.
        let prose = "The quick brown fox jumps over the lazy dog while the gateway counts tokens.";
        for real in BPE {
            assert!(t.count_text(prose) > real.count_text(prose));
        }
    }

    /// Deterministic mixed text: words, contractions, numbers, punctuation, runs of spaces,
    /// tabs, newlines, non-Latin scripts and Unicode whitespace, in random order.
    fn mixed_text(len: usize, seed: u64) -> String {
        const PIECES: &[&str] = &[
            "the",
            " ",
            " ",
            "  ",
            "   ",
            "\n",
            "\n\n",
            " \n",
            "\t",
            "gateway",
            "don't",
            "we're",
            "12345",
            "3.14",
            "!!",
            "?",
            "...",
            "é",
            "naïve",
            "日本語",
            "お誕生日",
            "\u{3000}",
            "\u{a0}",
            "Ünïcödé",
            "x/y",
            "<|endoftext|>",
            "'s",
            "A",
            "CamelCase",
            "-",
            "—",
            "😀",
            " \t ",
            "\r\n",
            "fn main() { }",
            "    ",
            "aaaaaaaaaaaaaaaaaaaa",
        ];
        let mut state = seed;
        let mut out = String::with_capacity(len + 32);
        while out.len() < len {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            out.push_str(PIECES[(state >> 33) as usize % PIECES.len()]);
        }
        out
    }

    /// Fragments of the kinds of text prompts carry; see `counts_equal_tiktoken_on_fragments`.
    const FRAGMENTS: &[&str] = &[
        "The quick brown fox jumps over the lazy dog.",
        "I'm sure they'll say it's DONE, and we've WON'T'S ANSWER'LL",
        "naïve café résumé Ünïcödé ǅungla ʰello Straße",
        "e\u{301}te\u{301} Å Ω ﬁne",
        "fn main() {\n    let x = vec![1, 2, 3];\n\tprintln!(\"{x:?}\");\n}\n",
        "def f(a, b):\n    return a+b  # add\n\n\n    \n",
        "{\"key_id\":\"team-a\",\"n\":[1,2.5,-3e10],\"ok\":true,\"x\":null}",
        "{\n  \"a\": {\n    \"b\": [\n      1,\n      2\n    ]\n  }\n}",
        "0 12 345 6789 1234567890 3.14159 1,234,567.89 -42 +7 1e-9 0x1F 2025-01-31T12:00:00Z",
        "١٢٣ ４５６ Ⅻ ² ½ ௧௨",
        "日本語のテキストです。東京は大きい。",
        "中文文本，包括标点符号！还有数字123。",
        "한국어 텍스트입니다. 안녕하세요!",
        "Привет, мир! Γειά σου Κόσμε. مرحبا بالعالم. שלום עולם. नमस्ते दुनिया. สวัสดีชาวโลก",
        "😀😃 👍🏽 👨‍👩‍👧‍👦 🇺🇸🇯🇵 ❤️ ✨🚀",
        "<|endoftext|><|endofprompt|><|im_start|>user",
        "a\u{200b}b\u{feff}c\u{200d}d\u{180e}e",
        "https://example.com/path/to/page?q=a+b&x=%20#frag",
        "user@example.com +1 (555) 010-9999 /usr/local/bin/ C:\\Windows\\",
        "!!!???...---___***///\\\\|||~~~```",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "   leading spaces and trailing   ",
        "\t\ttabs\tinside\t\t",
        "line one\r\nline two\r\n\r\nline four\rcr",
        "mixed \u{3000}ideographic\u{a0}nbsp\u{2009}thin\u{202f}narrow\u{85}nel\u{2028}ls\u{2029}ps",
        "\u{0}\u{1}\u{7f} control \u{1b}[0m",
        "'s 's 'S 'll 'LL 'd 're 've 'm 't ’s",
        "ABCdef GHIjkl mnoPQR StUvWx",
    ];

    /// Endings and beginnings around fragments: whitespace tails are where `cl100k_base`'s
    /// `\s++$` decides (see [`Encoding::count`]).
    const EDGES: &[&str] = &[
        "",
        " ",
        "  ",
        "\n",
        "\n ",
        " \n",
        "\n\n",
        "\n\n   ",
        "\n \n ",
        "\t",
        "\n\t\t",
        "\r\n",
        "\r\n  ",
        "\u{3000}",
        "\u{a0}\n\u{a0}",
        "\u{85} ",
        "\u{2028}\u{2029}",
        "x",
        "!",
        "\n!",
        " 1",
    ];

    fn assert_same_as_tiktoken(t: Tokenizer, text: &str) {
        assert_eq!(t.count_text(text), tiktoken_count(t, text), "{t}: {text:?}");
    }

    /// Counts equal `tiktoken`'s for each fragment alone, with each edge before and after it,
    /// and for every pair of fragments.
    #[test]
    fn counts_equal_tiktoken_on_fragments() {
        for t in BPE {
            for a in FRAGMENTS {
                for edge in EDGES {
                    assert_same_as_tiktoken(t, &format!("{a}{edge}"));
                    assert_same_as_tiktoken(t, &format!("{edge}{a}"));
                    assert_same_as_tiktoken(t, &format!("{edge}{a}{edge}"));
                }
                for b in FRAGMENTS {
                    assert_same_as_tiktoken(t, &format!("{a}{b}"));
                }
            }
            for a in EDGES {
                for b in EDGES {
                    assert_same_as_tiktoken(t, &format!("{a}{b}"));
                    assert_same_as_tiktoken(t, &format!("x{a}{b}"));
                }
            }
        }
    }

    /// Every prefix and every suffix of a mixed text (so every position is once the end, and
    /// once the start, of the text) counts as in `tiktoken`.
    #[test]
    fn counts_equal_tiktoken_on_every_prefix_and_suffix() {
        let text = FRAGMENTS.join("\n \t") + "  \n  " + &mixed_text(1_000, 11);
        for t in BPE {
            for (i, _) in text.char_indices() {
                assert_same_as_tiktoken(t, &text[..i]);
                assert_same_as_tiktoken(t, &text[i..]);
            }
        }
    }

    /// Characters chosen to exercise the pre-tokenizers' classes: every kind of Unicode
    /// whitespace and its look-alikes, letters of each case class, marks, numbers of several
    /// kinds, CJK, emoji with joiners, apostrophes, contraction letters, ASCII punctuation.
    const UNICODE_CLASSES: &[&str] = &[
        " \t\n\r\u{b}\u{c}\u{85}\u{a0}\u{1680}\u{2000}\u{2007}\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}",
        "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}\u{180e}\u{0}\u{1f}\u{7f}",
        "abcxyzABCXYZ",
        "éüñßøÉÜÑØǅǈǋʰʲˠſK",
        "αβγΑΒΓжщЖЩ",
        "\u{300}\u{301}\u{308}\u{327}\u{fe0f}\u{20e3}",
        "0123456789٠١٢٣४५६０１２ⅠⅫ²³½",
        "日本語中文字東京大学ひらがなカタカナ한국어",
        "😀👍🏽👨🇺🇸❤✨🚀",
        "'’`\"",
        "sdtmlrveSDTMLRVE",
        "!?.,:;-_/\\|()[]{}<>@#$%^&*+=~",
    ];

    /// The same for ASCII only, where the pre-tokenizers' fast path decides every piece.
    const ASCII_CLASSES: &[&str] = &[
        " ",
        "  \t\n\r\u{b}\u{c}",
        "\n\r",
        "abcdefghijklmnopqrstuvwxyz",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        "'",
        "sdtmlrveSDTMLRVE",
        "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\u{0}\u{1}\u{1f}\u{7f}",
    ];

    /// `count` random strings of up to `max_len` characters from `classes`, often repeating a
    /// character to make runs.
    fn random_strings(classes: &[&str], count: usize, max_len: usize, seed: u64) -> Vec<String> {
        let classes: Vec<Vec<char>> = classes.iter().map(|c| c.chars().collect()).collect();
        let mut state = seed;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        (0..count)
            .map(|_| {
                let len = next(max_len + 1);
                let mut text = String::new();
                let mut c = ' ';
                for _ in 0..len {
                    if next(2) == 0 || text.is_empty() {
                        let class = &classes[next(classes.len())];
                        c = class[next(class.len())];
                    }
                    text.push(c);
                }
                text
            })
            .collect()
    }

    #[test]
    fn counts_equal_tiktoken_on_random_strings() {
        for t in BPE {
            for text in random_strings(UNICODE_CLASSES, 3_000, 48, 0x2545_f491_4f6c_dd1d)
                .iter()
                .chain(&random_strings(
                    ASCII_CLASSES,
                    3_000,
                    48,
                    0x9e37_79b9_7f4a_7c15,
                ))
            {
                assert_same_as_tiktoken(t, text);
            }
        }
    }

    /// Wherever the ASCII fast path decides a piece, it is the piece the regex cuts, at every
    /// position of varied texts (a piece depends only on the text from its start on).
    #[test]
    fn ascii_fast_path_cuts_the_regex_pieces() {
        let mut texts = random_strings(ASCII_CLASSES, 1_000, 64, 7);
        texts.extend(random_strings(UNICODE_CLASSES, 300, 64, 8));
        texts.extend(FRAGMENTS.iter().map(|f| f.to_string()));
        texts.push(mixed_text(5_000, 9));
        for t in BPE {
            let encoding = t.bpe().unwrap();
            let mut decided = 0;
            for text in &texts {
                for (i, _) in text.char_indices() {
                    let rest = &text[i..];
                    if let Some(len) = encoding.ascii_piece(rest.as_bytes()) {
                        let regex = encoding.tokenizer.split(rest).next().unwrap();
                        assert_eq!(&rest[..len], regex, "{t}: at {i} of {text:?}");
                        decided += 1;
                    }
                }
            }
            assert!(decided > 20_000, "{decided}");
        }
    }

    /// Whitespace runs of all lengths, alone and between words, count as in `tiktoken` (up to
    /// 64 KiB: longer runs crash `tiktoken-rs`' regex engine, see below).
    #[test]
    fn counts_equal_tiktoken_on_whitespace_runs() {
        for t in BPE {
            for unit in [
                " ", "\t", "\n", "\r\n", " \n", "\n ", "\u{3000}", "\u{a0}", " \t",
            ] {
                for n in [1, 2, 3, 4, 7, 16, 33, 80, 81, 129, 1_000, 4_097] {
                    let run = unit.repeat(n);
                    for text in [
                        run.clone(),
                        format!("x{run}"),
                        format!("{run}x"),
                        format!("x{run}y"),
                        format!("x.{run}\ny"),
                    ] {
                        assert_same_as_tiktoken(t, &text);
                    }
                }
                let run = unit.repeat(64 * 1024 / unit.len());
                assert_same_as_tiktoken(t, &format!("x{run}y"));
            }
        }
    }

    /// Whole documents of 1 MiB count exactly as in `tiktoken`.
    #[test]
    fn counts_equal_tiktoken_on_1_mib_documents() {
        const MIB: usize = 1 << 20;
        let json = {
            let mut items = Vec::new();
            for i in 0..8_000 {
                items.push(
                    json!({"id": i, "name": format!("item {i}"), "price": i as f64 * 1.25,
                    "tags": ["a", "b c", "日本"], "nested": {"ok": i % 2 == 0, "x": null}}),
                );
            }
            serde_json::to_string_pretty(&items).unwrap()
        };
        let to_mib = |s: &str| s.repeat(MIB / s.len() + 1);
        let docs = [
            mixed_text(MIB, 3),
            to_mib(&FRAGMENTS.join(" ")),
            json,
            to_mib("日本語のテキストと中文文本。한국어 텍스트. "),
            to_mib("😀👍🏽 👨‍👩‍👧‍👦🇺🇸 "),
        ];
        for t in BPE {
            for doc in &docs {
                assert!(doc.len() >= MIB, "{}", doc.len());
                assert_eq!(t.count_text(doc), tiktoken_count(t, doc), "{t}");
            }
        }
    }

    /// Text ending in whitespace, where `tiktoken`'s `cl100k_base` pattern (`\s++$` first)
    /// and `bpe-openai`'s split differ (see [`Encoding::count`]): every tail of up to five
    /// whitespace characters, after a word, punctuation, a number, CJK or nothing.
    #[test]
    fn counts_equal_tiktoken_on_whitespace_tails() {
        const WS: [char; 6] = [' ', '\n', '\t', '\r', '\u{a0}', '\u{3000}'];
        for t in BPE {
            for head in ["x", "x.", "", "12", "日", "x  "] {
                for len in 1..=5u32 {
                    for mut code in 0..WS.len().pow(len) {
                        let mut text = head.to_owned();
                        for _ in 0..len {
                            text.push(WS[code % WS.len()]);
                            code /= WS.len();
                        }
                        assert_same_as_tiktoken(t, &text);
                    }
                }
            }
        }
    }

    /// Inputs that make `tiktoken-rs`' regex engine overflow its stack (about 1 MiB of
    /// whitespace) or its BPE quadratic (very long words) are counted without trouble, at the
    /// rate of a 64 KiB piece of the same input (which `tiktoken-rs` still counts).
    #[test]
    fn pathological_input_is_counted_without_panicking() {
        const MIB: usize = 1 << 20;
        for t in BPE {
            for unit in [" ", "\t", "\n", "\r\n", "\u{3000}", "a", "^", "日", "1"] {
                let text = unit.repeat(MIB / unit.len() + 1) + "x";
                let n = t.count_text(&text);
                let small = unit.repeat(64 * 1024 / unit.len());
                let per_byte = tiktoken_count(t, &small) as f64 / small.len() as f64;
                let expected = per_byte * text.len() as f64;
                assert!(
                    (n as f64) >= expected * 0.99 && (n as f64) <= expected * 1.01 + 10.0,
                    "{t} {unit:?}: {n} vs ~{expected}"
                );
            }
        }
    }

    /// A cache key is the piece's bytes, zero-padded, and its length: equal keys mean equal
    /// pieces.
    #[test]
    fn piece_cache_keys_are_the_whole_piece() {
        assert_eq!(CachedPiece::key(b""), None);
        assert_eq!(CachedPiece::key(&[b'a'; CACHED_PIECE_BYTES + 1]), None);
        let bytes: Vec<u8> = (1..=CACHED_PIECE_BYTES as u8).map(|b| b * 17).collect();
        for len in 1..=CACHED_PIECE_BYTES {
            let piece = &bytes[..len];
            let mut padded = [0u8; 16];
            padded[..len].copy_from_slice(piece);
            padded[14] = len as u8;
            let word = u128::from_le_bytes(padded);
            let key = CachedPiece::key(piece).unwrap();
            assert_eq!(
                key,
                CachedPiece([word as u64, (word >> 64) as u64]),
                "{len}"
            );
            let stored = key.with_count(9);
            assert_eq!(stored.count_of(key), Some(9));
            // A piece that is a prefix, or that differs in one byte, does not match.
            assert_eq!(
                stored.count_of(CachedPiece::key(&piece[..len - 1]).unwrap_or_default()),
                None
            );
            let mut other = piece.to_vec();
            other[len - 1] ^= 1;
            assert_eq!(stored.count_of(CachedPiece::key(&other).unwrap()), None);
        }
        // Trailing NUL bytes are told apart by the length.
        let a = CachedPiece::key(b"a").unwrap();
        assert_eq!(
            a.with_count(1).count_of(CachedPiece::key(b"a\0").unwrap()),
            None
        );
        // An empty slot matches no piece.
        assert_eq!(CachedPiece::default().count_of(a), None);
    }

    #[test]
    fn counting_is_shared_across_threads() {
        let text = mixed_text(20_000, 7);
        let expected: Vec<u64> = BPE.iter().map(|t| t.count_text(&text)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| BPE.iter().map(|t| t.count_text(&text)).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), expected);
            }
        });
    }

    #[test]
    fn malformed_shapes_count_what_they_can() {
        let t = Tokenizer::O200kBase;
        // Validation rejects these, but counting must never panic on them.
        assert_eq!(t.count_chat(&Map::new()), REPLY_PRIMING);
        assert_eq!(t.count_chat(&obj(json!({"messages": "hi"}))), REPLY_PRIMING);
        assert_eq!(
            t.count_chat(&obj(json!({"messages": [1, null]}))),
            REPLY_PRIMING
        );
        assert_eq!(
            t.count_chat(&obj(
                json!({"messages": [{"role": "user", "content": [42, {"type": "text"}]}]})
            )),
            3 + t.count_text("user") + OTHER_PART_TOKENS + REPLY_PRIMING
        );
        assert_eq!(
            t.count_prompt(ApiKind::Completions, &obj(json!({"prompt": 5}))),
            0
        );
    }
}
