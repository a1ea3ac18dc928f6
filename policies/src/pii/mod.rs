//! PII recognizers and redaction.
//!
//! A [`PiiPolicy`] is built once from a [`PiiSpec`] (the config crate maps YAML to it) and is then
//! shared read-only by every request. For one text it finds emails, phone numbers, payment cards,
//! US SSNs, IBANs, IP addresses, credentials and user-defined patterns, and per entity either
//! redacts them, blocks the request, or only counts them.
//!
//! # How a scan works
//!
//! No regex is compiled per call; a text without PII is read a few times at DFA speed and,
//! unless it holds candidates the validators then reject, allocates nothing.
//!
//! 1. Formats with a literal (`@` of emails, `+` of international phones, `sk-`, `AKIA`, `ghp_`,
//!    `-----BEGIN`, `eyJ`, ...) and custom patterns are each searched on their own: the regex
//!    crate's literal prefilters skip a text without that literal at memchr speed.
//! 2. Numeric formats without such a literal (cards, SSNs, IBANs, IPv4/IPv6, national phones)
//!    share one pass: an alternation of all of them finds the next position where any matches,
//!    then a `RegexSet` of the anchored patterns tells which ones match there (within 72 bytes),
//!    and only those are run. Every matching position is examined, so a rejected long candidate
//!    cannot hide a valid one starting inside it. (A `RegexSet` over the whole text followed by
//!    one pass per matching pattern costs a full pass per format on PII-dense text.)
//! 3. A byte loop finds generic high-entropy tokens.
//! 4. Validators cut false positives: Luhn for cards, ISO 13616 mod-97 for IBANs,
//!    area/group/serial ranges for SSNs, `std::net` parsing for IP addresses, boundaries (a
//!    number glued to other digits is part of something longer), entropy and word-likeness for
//!    generic tokens.
//! 5. Overlapping findings: the longest span wins; on equal length the higher priority wins:
//!    custom > secret > credit_card > iban > ssn > phone > ip_address > email. A span shaped
//!    like an IBAN whose checksum fails suppresses phone/card/SSN findings inside it (a mistyped
//!    account number must not turn into a phone number).
//!
//! Work stays linear in the text: unbounded candidates (`sk-…`, email local parts, PEM bodies)
//! are never rescanned after a rejection.
//!
//! # Decisions worth knowing
//!
//! - Phones need a `+` country code or a national layout with separators (US `(555) 123-4567`,
//!   `555-123-4567`; UK `020 7946 0958`; DE `030 12345678`; FR `01 23 45 67 89`) and 7–15 digits.
//!   A bare digit run such as `Order 1234567890` is not a phone.
//! - Cards: 13–19 digits, contiguous or in uniform `-`/space groups, issuer prefix 3/4/5/6, Luhn.
//! - IBANs must be upper case; spaces only between groups of four.
//! - IP addresses: the unspecified (`0.0.0.0`, `::`) and loopback (`127.0.0.0/8`, `::1`)
//!   addresses are not reported; private ranges are. IPv6 candidates need a decimal digit and at
//!   least four hex digits, so `Add::add` or `a::b` in code do not count. A bare four-part
//!   version number with parts up to 255 (`115.0.2.1`) is indistinguishable from an IPv4
//!   address and is reported; `v1.2.3.4` and `1.2.3.4.5` are not.
//! - Generic secrets: a run of `[A-Za-z0-9+/_=-]` (split after an inner `=`, so `key=value`
//!   is judged on the value) of at least 32 bytes with letters and digits, at least 4.0 bits/char
//!   of Shannon entropy, and under 70 % of its letters in word-like segments. Entropy alone is not
//!   enough: camelCase identifiers, snake_case names, paths and slugs reach 4.0–4.5 bits/char;
//!   their letters sit in words, a random token's do not.
//!   Hex-only runs (with dashes) never count: git SHAs, SHA-256 sums and UUIDs are identifiers,
//!   and their entropy sits at or below 4.0 anyway. Hex API keys without a known prefix are
//!   therefore not found; add a custom pattern for them. Random base64 blobs (images, hashes)
//!   are indistinguishable from credentials and are reported.
//!
//! No value ever appears in an error, a `Debug` of the session map, or a count: [`Blocked`] and
//! [`Counts`] name entity types only.

mod chat;
mod pseudonym;
mod recognizers;

#[cfg(test)]
mod eval;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use regex::{Regex, RegexSet};

pub use chat::Report;
pub use pseudonym::{PseudonymMap, Restorer};

use recognizers::{Check, Verdict, BUILTINS};

/// A kind of personal or secret data. The snake_case name ([`Entity::as_str`]) is what config
/// files and metric labels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// `email`: an email address.
    Email,
    /// `phone`: an international (`+`) or national phone number.
    Phone,
    /// `credit_card`: a Luhn-valid payment card number.
    CreditCard,
    /// `ssn`: a US social security number.
    Ssn,
    /// `iban`: an international bank account number with a valid checksum.
    Iban,
    /// `ip_address`: an IPv4 or IPv6 address.
    IpAddress,
    /// `secret`: an API key, token or private key.
    Secret,
    /// `custom`: a match of a named pattern from config.
    Custom,
}

impl Entity {
    /// Every entity, in the order of their metric index.
    pub const ALL: [Entity; 8] = [
        Entity::Email,
        Entity::Phone,
        Entity::CreditCard,
        Entity::Ssn,
        Entity::Iban,
        Entity::IpAddress,
        Entity::Secret,
        Entity::Custom,
    ];

    /// The built-in entities (all but [`Entity::Custom`]).
    pub const BUILT_IN: [Entity; 7] = [
        Entity::Email,
        Entity::Phone,
        Entity::CreditCard,
        Entity::Ssn,
        Entity::Iban,
        Entity::IpAddress,
        Entity::Secret,
    ];

    /// The snake_case name used in config and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::CreditCard => "credit_card",
            Self::Ssn => "ssn",
            Self::Iban => "iban",
            Self::IpAddress => "ip_address",
            Self::Secret => "secret",
            Self::Custom => "custom",
        }
    }

    /// The tag used in masks (`[EMAIL]`) and pseudonyms (`<EMAIL_1>`).
    pub fn tag(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::CreditCard => "CREDIT_CARD",
            Self::Ssn => "SSN",
            Self::Iban => "IBAN",
            Self::IpAddress => "IP_ADDRESS",
            Self::Secret => "SECRET",
            Self::Custom => "CUSTOM",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Tie-break between overlapping findings of equal length: higher wins.
    fn priority(self) -> u8 {
        match self {
            Self::Custom => 7,
            Self::Secret => 6,
            Self::CreditCard => 5,
            Self::Iban => 4,
            Self::Ssn => 3,
            Self::Phone => 2,
            Self::IpAddress => 1,
            Self::Email => 0,
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Entity {
    type Err = PiiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| PiiError::UnknownEntity(s.to_owned()))
    }
}

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `redact`: replace the value (see [`RedactMode`]).
    Redact,
    /// `block`: refuse the request; the error names the entity type only.
    Block,
    /// `log_only`: leave the text alone, count the finding.
    LogOnly,
}

impl Action {
    /// Every action, in the order of their metric index.
    pub const ALL: [Action; 3] = [Action::Redact, Action::Block, Action::LogOnly];

    /// The snake_case name used in config and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Block => "block",
            Self::LogOnly => "log_only",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = PiiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| PiiError::UnknownAction(s.to_owned()))
    }
}

/// How redacted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedactMode {
    /// `[EMAIL]`, `[CREDIT_CARD]`, `[EMPLOYEE_ID]` for a custom pattern named `employee_id`.
    #[default]
    Mask,
    /// `<EMAIL_1>`, `<EMAIL_2>`, ...: the same value gets the same pseudonym within one request,
    /// and a [`Restorer`] can put the originals back into the answer.
    Pseudonym,
}

/// A named user pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSpec {
    /// snake_case name (`employee_id`); its upper-case form is the mask tag (`[EMPLOYEE_ID]`).
    pub name: String,
    /// A `regex` crate pattern, e.g. `EMP-\d{6}`. It must not match the empty string.
    pub pattern: String,
    /// What to do with a match.
    pub action: Action,
}

/// What a [`PiiPolicy`] looks for and what it does: plain data, filled in by the config crate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PiiSpec {
    /// Built-in entities to look for, each with its action. [`Entity::Custom`] is not allowed
    /// here; named patterns go in `custom`.
    pub entities: Vec<(Entity, Action)>,
    /// Named user patterns.
    pub custom: Vec<CustomSpec>,
    /// How redacted values are written.
    pub mode: RedactMode,
}

impl PiiSpec {
    /// Every built-in entity with the same action, masked (`guardrails.pii.action` with the
    /// default entity list).
    pub fn all(action: Action) -> Self {
        Self {
            entities: Entity::BUILT_IN.iter().map(|&e| (e, action)).collect(),
            custom: Vec::new(),
            mode: RedactMode::Mask,
        }
    }
}

/// Why a [`PiiSpec`] is not usable. Messages name config items, never scanned text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// An entity name that is not one of [`Entity::ALL`].
    #[error("unknown PII entity `{0}` (expected one of email, phone, credit_card, ssn, iban, ip_address, secret)")]
    UnknownEntity(String),
    /// An action name that is not `redact`, `block` or `log_only`.
    #[error("unknown PII action `{0}` (expected redact, block or log_only)")]
    UnknownAction(String),
    /// The same entity is listed twice.
    #[error("PII entity `{0}` is listed more than once")]
    DuplicateEntity(Entity),
    /// `custom` in the entity list.
    #[error("`custom` is not a built-in PII entity: define named patterns under `custom`")]
    CustomInEntities,
    /// A custom pattern name that is not snake_case.
    #[error("invalid custom PII name `{name}`: use lowercase letters, digits and `_`, starting with a letter, at most 64 characters")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// Two custom patterns share a name, or one is named like a built-in entity.
    #[error("custom PII name `{name}` is used twice or clashes with a built-in entity")]
    DuplicateName {
        /// The name as given.
        name: String,
    },
    /// A custom pattern does not compile.
    #[error("invalid regex for custom PII `{name}`: {reason}")]
    InvalidPattern {
        /// The pattern's name.
        name: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A custom pattern matches the empty string (it would match everywhere).
    #[error("regex for custom PII `{name}` matches the empty string")]
    EmptyMatch {
        /// The pattern's name.
        name: String,
    },
    /// The combined pattern set does not compile (e.g. too large).
    #[error("PII patterns could not be compiled: {reason}")]
    Build {
        /// The regex compiler's message.
        reason: String,
    },
}

/// A request refused by a `block` action. Names the entity type only, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request blocked by PII policy: it contains {entity}")]
pub struct Blocked {
    /// The entity of the first blocking finding.
    pub entity: Entity,
    /// Findings counted up to and including the blocking text, for metrics.
    pub counts: Counts,
}

/// One finding in a scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<'p> {
    /// What was found.
    pub entity: Entity,
    /// The entity's name, or for [`Entity::Custom`] the pattern's name (`employee_id`).
    pub name: &'p str,
    /// Byte range in the scanned text.
    pub range: Range<usize>,
    /// The configured action.
    pub action: Action,
}

/// Findings per (entity, action), for metrics (`sluice_pii_findings_total{entity,action}`).
/// Custom patterns count under [`Entity::Custom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts([[u32; 3]; 8]);

impl Counts {
    /// Findings of `entity` handled with `action`.
    pub fn get(&self, entity: Entity, action: Action) -> u32 {
        self.0[entity.index()][action.index()]
    }

    /// Findings of `entity`, whatever the action.
    pub fn entity(&self, entity: Entity) -> u32 {
        self.0[entity.index()].iter().sum()
    }

    /// All findings.
    pub fn total(&self) -> u32 {
        self.0.iter().flatten().sum()
    }

    /// No findings at all.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The non-zero counts.
    pub fn iter(&self) -> impl Iterator<Item = (Entity, Action, u32)> + '_ {
        Entity::ALL.into_iter().flat_map(move |e| {
            Action::ALL
                .into_iter()
                .map(move |a| (e, a, self.get(e, a)))
                .filter(|&(_, _, n)| n > 0)
        })
    }

    /// Add `other` to these counts.
    pub fn merge(&mut self, other: &Counts) {
        for (row, orow) in self.0.iter_mut().zip(other.0.iter()) {
            for (c, o) in row.iter_mut().zip(orow.iter()) {
                *c = c.saturating_add(*o);
            }
        }
    }

    fn add(&mut self, entity: Entity, action: Action) {
        let c = &mut self.0[entity.index()][action.index()];
        *c = c.saturating_add(1);
    }
}

/// The result of [`PiiPolicy::apply`] on one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<'t> {
    /// The text with `redact` findings replaced; borrowed when nothing was replaced (and always
    /// when the text is blocked).
    pub text: Cow<'t, str>,
    /// Findings per (entity, action).
    pub counts: Counts,
    /// The entity of the first `block` finding, if any.
    pub blocked: Option<Entity>,
}

/// One compiled pattern.
#[derive(Debug)]
struct Rule {
    entity: Entity,
    check: Check,
    regex: Regex,
    action: Action,
    /// Index into `PiiPolicy::labels`.
    label: usize,
}

/// Name and mask tag of an entity or custom pattern.
#[derive(Debug)]
struct Label {
    name: String,
    tag: String,
}

/// A validated finding before it is exposed.
#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    entity: Entity,
    action: Action,
    label: usize,
}

/// The numeric formats, compiled for one shared pass.
#[derive(Debug)]
struct Windowed {
    /// All patterns as one alternation: its leftmost match start is the next position where any
    /// of them matches.
    any: Regex,
    /// The patterns anchored (`^(?:...)`): which match at a candidate position.
    set: RegexSet,
    /// Same order as `set`; `regex` is the anchored pattern.
    rules: Vec<Rule>,
}

/// A compiled PII policy: build once, share (`Send + Sync`), call per request.
#[derive(Debug)]
pub struct PiiPolicy {
    entities: Vec<(Entity, Action)>,
    custom: Vec<(String, Regex, Action)>,
    mode: RedactMode,
    /// Rules with a literal prefix or a rare required byte (`@`, `+`, `sk-`, ...) and custom
    /// patterns: each searched on its own, which the regex prefilters make nearly free when the
    /// literal is absent.
    rules: Vec<Rule>,
    /// Numeric formats with no literal to anchor a prefilter on (cards, SSNs, IBANs, IPs,
    /// national phones): searched together, see [`Windowed`].
    windowed: Option<Windowed>,
    /// Labels: first one per entity (by index), then one per custom pattern.
    labels: Vec<Label>,
    /// Action of the generic high-entropy secret rule, when `secret` is enabled.
    generic_secret: Option<Action>,
}

fn valid_custom_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

impl PiiPolicy {
    /// Compile `spec`. All regexes are compiled here, none per call.
    pub fn new(spec: &PiiSpec) -> Result<Self, PiiError> {
        let mut actions: [Option<Action>; 8] = [None; 8];
        for &(entity, action) in &spec.entities {
            if entity == Entity::Custom {
                return Err(PiiError::CustomInEntities);
            }
            let slot = &mut actions[entity.index()];
            if slot.is_some() {
                return Err(PiiError::DuplicateEntity(entity));
            }
            *slot = Some(action);
        }

        let mut labels: Vec<Label> = Entity::ALL
            .iter()
            .map(|e| Label {
                name: e.as_str().to_owned(),
                tag: e.tag().to_owned(),
            })
            .collect();
        let build = |e: regex::Error| PiiError::Build {
            reason: e.to_string(),
        };
        let mut rules = Vec::new();
        let mut window_rules = Vec::new();
        for b in BUILTINS {
            let Some(action) = actions[b.entity.index()] else {
                continue;
            };
            let (list, pattern) = if b.windowed {
                (&mut window_rules, format!("^(?:{})", b.pattern))
            } else {
                (&mut rules, b.pattern.to_owned())
            };
            list.push(Rule {
                entity: b.entity,
                check: b.check,
                regex: Regex::new(&pattern).map_err(build)?,
                action,
                label: b.entity.index(),
            });
        }
        let windowed = if window_rules.is_empty() {
            None
        } else {
            let alternation = BUILTINS
                .iter()
                .filter(|b| b.windowed && actions[b.entity.index()].is_some())
                .map(|b| format!("(?:{})", b.pattern))
                .collect::<Vec<_>>()
                .join("|");
            Some(Windowed {
                any: Regex::new(&alternation).map_err(build)?,
                set: RegexSet::new(window_rules.iter().map(|r| r.regex.as_str())).map_err(build)?,
                rules: window_rules,
            })
        };

        let mut custom = Vec::with_capacity(spec.custom.len());
        for c in &spec.custom {
            if !valid_custom_name(&c.name) {
                return Err(PiiError::InvalidName {
                    name: c.name.clone(),
                });
            }
            if labels.iter().any(|l| l.name == c.name) {
                return Err(PiiError::DuplicateName {
                    name: c.name.clone(),
                });
            }
            let regex = Regex::new(&c.pattern).map_err(|e| PiiError::InvalidPattern {
                name: c.name.clone(),
                reason: e.to_string(),
            })?;
            if regex.is_match("") {
                return Err(PiiError::EmptyMatch {
                    name: c.name.clone(),
                });
            }
            labels.push(Label {
                name: c.name.clone(),
                tag: c.name.to_ascii_uppercase(),
            });
            rules.push(Rule {
                entity: Entity::Custom,
                check: Check::Custom,
                regex: regex.clone(),
                action: c.action,
                label: labels.len() - 1,
            });
            custom.push((c.name.clone(), regex, c.action));
        }

        Ok(Self {
            entities: spec.entities.clone(),
            custom,
            mode: spec.mode,
            rules,
            windowed,
            labels,
            generic_secret: actions[Entity::Secret.index()],
        })
    }

    /// The built-in entities looked for, with their actions.
    pub fn entities(&self) -> &[(Entity, Action)] {
        &self.entities
    }

    /// The custom patterns: name, compiled regex, action.
    pub fn custom(&self) -> &[(String, Regex, Action)] {
        &self.custom
    }

    /// How redacted values are written.
    pub fn mode(&self) -> RedactMode {
        self.mode
    }

    /// Nothing to look for: every call returns the text unchanged.
    pub fn is_noop(&self) -> bool {
        self.rules.is_empty() && self.windowed.is_none() && self.generic_secret.is_none()
    }

    /// Find PII in `text`, ordered by position, non-overlapping. A text without candidates
    /// allocates nothing (the empty `Vec` does not allocate).
    pub fn scan(&self, text: &str) -> Vec<Finding<'_>> {
        self.hits(text)
            .into_iter()
            .map(|h| Finding {
                entity: h.entity,
                name: &self.labels[h.label].name,
                range: h.start..h.end,
                action: h.action,
            })
            .collect()
    }

    /// Scan `text` and carry out the actions: `redact` findings are replaced (mask or pseudonym
    /// from `session`), `log_only` findings are only counted, and any `block` finding blocks the
    /// text (returned unchanged, `blocked` set). Borrows the input when nothing is replaced.
    pub fn apply<'t>(&self, text: &'t str, session: &mut PseudonymMap) -> Applied<'t> {
        let hits = self.hits(text);
        let mut counts = Counts::default();
        let mut blocked = None;
        let mut redact = false;
        for h in &hits {
            counts.add(h.entity, h.action);
            match h.action {
                Action::Block => {
                    blocked.get_or_insert(h.entity);
                }
                Action::Redact => redact = true,
                Action::LogOnly => {}
            }
        }
        if blocked.is_some() || !redact {
            return Applied {
                text: Cow::Borrowed(text),
                counts,
                blocked,
            };
        }
        let mut out = String::with_capacity(text.len() + 16 * hits.len());
        let mut last = 0;
        for h in hits.iter().filter(|h| h.action == Action::Redact) {
            out.push_str(&text[last..h.start]);
            let tag = &self.labels[h.label].tag;
            match self.mode {
                RedactMode::Mask => {
                    out.push('[');
                    out.push_str(tag);
                    out.push(']');
                }
                RedactMode::Pseudonym => {
                    out.push_str(session.pseudonym(tag, &text[h.start..h.end]));
                }
            }
            last = h.end;
        }
        out.push_str(&text[last..]);
        Applied {
            text: Cow::Owned(out),
            counts,
            blocked: None,
        }
    }

    fn hits(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut claims: Vec<Range<usize>> = Vec::new();
        for rule in &self.rules {
            run_rule(rule, text, &mut hits);
        }
        if let Some(w) = &self.windowed {
            run_windowed(w, text, &mut hits, &mut claims);
        }
        if let Some(action) = self.generic_secret {
            generic_secrets(text, action, &mut hits);
        }
        if !claims.is_empty() {
            merge_ranges(&mut claims);
            hits.retain(|h| {
                if !matches!(h.entity, Entity::Phone | Entity::CreditCard | Entity::Ssn) {
                    return true;
                }
                let i = claims.partition_point(|c| c.start <= h.start);
                !(i > 0 && h.end <= claims[i - 1].end)
            });
        }
        resolve_overlaps(&mut hits);
        hits
    }
}

/// The first char boundary after `i`.
fn next_boundary(text: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < text.len() && !text.is_char_boundary(j) {
        j += 1;
    }
    j
}

/// Sort and merge overlapping ranges, so they are disjoint and ordered.
fn merge_ranges(ranges: &mut Vec<Range<usize>>) {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match out.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    *ranges = out;
}

/// The shared pass over the numeric formats: find the next position where any of them matches,
/// check there which do (anchored, within [`recognizers::WINDOW`] bytes), validate each, and go
/// on. Every position where a format may start is examined, so a rejected candidate cannot hide
/// another one that starts inside it. Every validator of these formats rejects a match glued to a
/// preceding letter, digit or `_`, so positions inside a word are skipped without running any
/// pattern (this keeps `std::collections::HashMap` or long digit runs cheap).
fn run_windowed(w: &Windowed, text: &str, hits: &mut Vec<Hit>, claims: &mut Vec<Range<usize>>) {
    let b = text.as_bytes();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = w.any.find_at(text, pos) else {
            break;
        };
        let p = m.start();
        if p == 0 || !is_word(b[p - 1]) {
            let mut end = (p + recognizers::WINDOW).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let window = &text[p..end];
            for i in w.set.matches(window).iter() {
                let Some(rule) = w.rules.get(i) else {
                    continue;
                };
                let Some(rm) = rule.regex.find(window) else {
                    continue;
                };
                if rm.is_empty() {
                    continue;
                }
                match recognizers::validate(rule.check, text, p..p + rm.end()) {
                    Verdict::Accept(r) => hits.push(Hit {
                        start: r.start,
                        end: r.end,
                        entity: rule.entity,
                        action: rule.action,
                        label: rule.label,
                    }),
                    Verdict::Claim(r) => claims.push(r),
                    Verdict::Reject | Verdict::Skip => {}
                }
            }
        }
        // The next position not glued to a word byte.
        let mut j = p;
        while j < b.len() && is_word(b[j]) {
            j += 1;
        }
        pos = next_boundary(text, j);
    }
}

fn run_rule(rule: &Rule, text: &str, hits: &mut Vec<Hit>) {
    let mut pos = 0;
    let mut pem_stop = 0;
    while pos < text.len() {
        let Some(m) = rule.regex.find_at(text, pos) else {
            break;
        };
        if m.is_empty() {
            pos = next_boundary(text, m.start());
            continue;
        }
        let verdict = if rule.check == Check::Pem {
            Verdict::Accept(recognizers::pem_block(
                text.as_bytes(),
                m.range(),
                &mut pem_stop,
            ))
        } else {
            recognizers::validate(rule.check, text, m.range())
        };
        match verdict {
            Verdict::Accept(r) => {
                pos = r.end.max(next_boundary(text, m.start()));
                hits.push(Hit {
                    start: r.start,
                    end: r.end,
                    entity: rule.entity,
                    action: rule.action,
                    label: rule.label,
                });
            }
            Verdict::Reject | Verdict::Claim(_) => pos = next_boundary(text, m.start()),
            Verdict::Skip => pos = m.end(),
        }
    }
}

/// The generic high-entropy token rule, as a byte loop (cheaper than a counted repetition in the
/// shared DFA).
fn generic_secrets(text: &str, action: Action, hits: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Skip to the next run, then to its end.
        while i < b.len() && !recognizers::is_token_byte(b[i]) {
            i += 1;
        }
        let start = i;
        while i < b.len() && recognizers::is_token_byte(b[i]) {
            i += 1;
        }
        if i - start < recognizers::GENERIC_MIN_LEN {
            continue;
        }
        // `=` is base64 padding only at the end: an inner one separates `key=value`, so each
        // part is judged (and, if it is another entity, reported) on its own.
        let mut part = start;
        for j in start..i {
            let inner_eq = b[j] == b'=' && j + 1 < i && b[j + 1] != b'=';
            if inner_eq || j + 1 == i {
                let end = j + 1;
                if recognizers::looks_random(&b[part..end]) {
                    hits.push(Hit {
                        start: part,
                        end,
                        entity: Entity::Secret,
                        action,
                        label: Entity::Secret.index(),
                    });
                }
                part = end;
            }
        }
    }
}

/// Keep a non-overlapping subset: longest first, then higher priority, then earlier; the result
/// is ordered by position.
fn resolve_overlaps(hits: &mut Vec<Hit>) {
    if hits.len() < 2 {
        return;
    }
    hits.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(b.entity.priority().cmp(&a.entity.priority()))
            .then(a.start.cmp(&b.start))
    });
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    hits.retain(|h| {
        // Kept spans are disjoint, so the one starting last before `h.end` reaches furthest.
        if let Some((_, &end)) = taken.range(..h.end).next_back() {
            if end > h.start {
                return false;
            }
        }
        taken.insert(h.start, h.end);
        true
    });
    hits.sort_by_key(|h| h.start);
}
