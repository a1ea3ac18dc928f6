//! The built-in recognizers: one regex per surface format, each paired with a validator that
//! cuts the regex's false positives (checksums, value ranges, `std::net` parsing, boundaries).
//!
//! Patterns use ASCII classes only (`[0-9]`, not `\d`; no `\b`) so the combined `RegexSet` stays a
//! small, fast DFA and nothing matches digits or letters of other scripts. Boundaries that would
//! need look-behind are checked by the validators instead, on the bytes around the match.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::Entity;

/// Which validator runs on a regex match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    Email,
    PhoneIntl,
    /// National phone formats; `uniform`: all separators must be the same character.
    PhoneNational {
        uniform: bool,
    },
    Card,
    Ssn,
    Iban,
    Ipv4,
    Ipv6,
    OpenAiKey,
    /// A prefixed token (AWS, GitHub, Slack, Google). `fixed`: the format has an exact length, so
    /// the next byte must not continue the token.
    Token {
        fixed: bool,
    },
    Jwt,
    /// A PEM private key: the regex finds the BEGIN line, [`pem_block`] the rest.
    Pem,
    /// A user pattern from config: accepted as matched.
    Custom,
}

/// One built-in pattern.
pub(super) struct Builtin {
    pub entity: Entity,
    pub check: Check,
    pub pattern: &'static str,
    /// Starts with a digit/letter class and no literal: searched in the shared candidate pass
    /// (see `PiiPolicy::hits`) instead of a pass of its own. Matches are at most
    /// [`WINDOW`] bytes long.
    pub windowed: bool,
}

/// Longest match of a windowed pattern is 50 bytes (IPv6 with an IPv4 tail); candidates are
/// examined in a window this long.
pub(super) const WINDOW: usize = 72;

/// Every built-in pattern. Several patterns may share an entity (national phone formats, the
/// secret prefixes); the `RegexSet` reports them separately so only the formats present run.
pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        entity: Entity::Email,
        check: Check::Email,
        pattern: r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}",
        windowed: false,
    },
    // E.164 and spaced/dashed international forms: `+1 (555) 123-4567`, `+44 20 7946 0958`,
    // `+44 (0)20 7946 0958`, `+4915112345678`.
    Builtin {
        entity: Entity::Phone,
        check: Check::PhoneIntl,
        pattern: r"\+[1-9][0-9]{0,2}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}",
        windowed: false,
    },
    // US with area code in parentheses: `(555) 123-4567`, `1 (555) 123 4567`.
    Builtin {
        entity: Entity::Phone,
        check: Check::PhoneNational { uniform: false },
        pattern: r"(?:1[ .-]?)?\([2-9][0-9]{2}\)[ .-]?[0-9]{3}[ .-][0-9]{4}",
        windowed: false,
    },
    // US plain: `555-123-4567`, `555.123.4567`, `555 123 4567`, `1-800-555-1234`.
    Builtin {
        entity: Entity::Phone,
        check: Check::PhoneNational { uniform: true },
        pattern: r"(?:1[ .-])?[2-9][0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4}",
        windowed: true,
    },
    // UK: `020 7946 0958`, `0161 496 0000`, `07911 123456`, `07911 123 456`.
    Builtin {
        entity: Entity::Phone,
        check: Check::PhoneNational { uniform: true },
        pattern: r"0[1-9][0-9](?: [0-9]{4} [0-9]{4}|[0-9] [0-9]{3} [0-9]{4}|[0-9]{2} [0-9]{6}|[0-9]{2} [0-9]{3} [0-9]{3})",
        windowed: true,
    },
    // DE: `030 12345678`, `0171 2345678`, `089/1234567`, `030 1234 5678`.
    Builtin {
        entity: Entity::Phone,
        check: Check::PhoneNational { uniform: false },
        pattern: r"0[1-9][0-9]{1,4}[ /-][0-9]{3,8}(?: [0-9]{2,5})?",
        windowed: true,
    },
    // FR: `01 23 45 67 89`, `06.12.34.56.78`.
    Builtin {
        entity: Entity::Phone,
        check: Check::PhoneNational { uniform: true },
        pattern: r"0[1-9](?:[ .][0-9]{2}){4}",
        windowed: true,
    },
    // 4-4-4-4(-3) groups, Amex/Diners 4-6-5 and 4-6-4, or 13–19 contiguous digits.
    Builtin {
        entity: Entity::CreditCard,
        check: Check::Card,
        pattern: r"[3-6][0-9]{3}(?:[ -][0-9]{4}){2}[ -][0-9]{1,4}(?:[ -][0-9]{3})?|3[0-9]{3}[ -][0-9]{6}[ -][0-9]{4,5}|[3-6][0-9]{12,18}",
        windowed: true,
    },
    Builtin {
        entity: Entity::Ssn,
        check: Check::Ssn,
        pattern: r"[0-9]{3}[ -][0-9]{2}[ -][0-9]{4}",
        windowed: true,
    },
    // Country code, check digits, then the BBAN compact or in groups of four.
    Builtin {
        entity: Entity::Iban,
        check: Check::Iban,
        pattern: r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
        windowed: true,
    },
    Builtin {
        entity: Entity::IpAddress,
        check: Check::Ipv4,
        pattern: r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        windowed: true,
    },
    Builtin {
        entity: Entity::IpAddress,
        check: Check::Ipv6,
        pattern: r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f]{1,4})?",
        windowed: true,
    },
    Builtin {
        entity: Entity::Secret,
        check: Check::OpenAiKey,
        pattern: r"sk-[A-Za-z0-9_-]{20,}",
        windowed: false,
    },
    Builtin {
        entity: Entity::Secret,
        check: Check::Token { fixed: true },
        pattern: r"(?:AKIA|ASIA)[A-Z0-9]{16}",
        windowed: false,
    },
    Builtin {
        entity: Entity::Secret,
        check: Check::Token { fixed: false },
        pattern: r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
        windowed: false,
    },
    Builtin {
        entity: Entity::Secret,
        check: Check::Token { fixed: false },
        pattern: r"xox[abeprs]-[0-9][A-Za-z0-9-]{9,}",
        windowed: false,
    },
    Builtin {
        entity: Entity::Secret,
        check: Check::Token { fixed: true },
        pattern: r"AIza[0-9A-Za-z_-]{35}",
        windowed: false,
    },
    // The BEGIN line of a PEM private key; `pem_block` extends it over the body and END line
    // (a lazy `.*?` up to END would rescan to the end of the text for every unterminated BEGIN).
    Builtin {
        entity: Entity::Secret,
        check: Check::Pem,
        pattern: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----",
        windowed: false,
    },
    Builtin {
        entity: Entity::Secret,
        check: Check::Jwt,
        pattern: r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        windowed: false,
    },
];

/// What a validator decided about one regex match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// PII at this byte range (may be narrower than the regex match).
    Accept(Range<usize>),
    /// Not PII; the search resumes one character after the match start.
    Reject,
    /// Not PII, and no match starting inside this one can be either: the search resumes at the
    /// match end. Keeps rejections of unbounded patterns (`sk-…`, email local parts) linear.
    Skip,
    /// Not PII, but shaped like an IBAN: numbers inside this range are parts of an account
    /// number, not cards, phones or SSNs (a mistyped IBAN must not turn into a phone finding).
    Claim(Range<usize>),
}

/// Run the validator `check` on `text[m]`.
pub(super) fn validate(check: Check, text: &str, m: Range<usize>) -> Verdict {
    let b = text.as_bytes();
    let ok = |yes: bool| {
        if yes {
            Verdict::Accept(m.clone())
        } else {
            Verdict::Reject
        }
    };
    match check {
        Check::Email => email(b, m.clone()),
        // An `sk-`, `ghp_`, `eyJ` found inside a rejected token run has a token byte before it,
        // so it would be rejected too.
        Check::OpenAiKey => skip_unless(openai_key(b, m.clone()), m),
        Check::Token { fixed } => skip_unless(token(b, m.clone(), fixed), m),
        Check::Jwt => skip_unless(!continues_token(before(b, m.start)), m),
        Check::PhoneIntl => ok(phone_intl(b, m.clone())),
        Check::PhoneNational { uniform } => ok(phone_national(b, m.clone(), uniform)),
        Check::Card => ok(card(b, m.clone())),
        Check::Ssn => ok(ssn(b, m.clone())),
        Check::Iban => iban(b, m.clone()),
        Check::Ipv4 => ok(ipv4(text, m.clone())),
        Check::Ipv6 => ok(ipv6(text, m.clone())),
        Check::Pem | Check::Custom => Verdict::Accept(m),
    }
}

fn skip_unless(yes: bool, m: Range<usize>) -> Verdict {
    if yes {
        Verdict::Accept(m)
    } else {
        Verdict::Skip
    }
}

fn before(b: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| b.get(j).copied())
}

fn at(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied()
}

fn is_word(c: Option<u8>) -> bool {
    matches!(c, Some(c) if c.is_ascii_alphanumeric() || c == b'_')
}

fn is_digit(c: Option<u8>) -> bool {
    matches!(c, Some(c) if c.is_ascii_digit())
}

/// A byte that would make a token the tail of a longer token.
fn continues_token(c: Option<u8>) -> bool {
    is_word(c) || c == Some(b'-')
}

/// The number at `s..e` stands alone: no word byte on either side, and no joiner byte (from
/// `join_before` / `join_after`) that glues it to another digit, as in `12-555-123-4567` or
/// `1.2.3.4.5`.
fn standalone(b: &[u8], s: usize, e: usize, join_before: &[u8], join_after: &[u8]) -> bool {
    let p = before(b, s);
    if is_word(p) {
        return false;
    }
    if let Some(c) = p {
        if join_before.contains(&c) && is_digit(before(b, s - 1)) {
            return false;
        }
    }
    let n = at(b, e);
    if is_word(n) {
        return false;
    }
    if let Some(c) = n {
        if join_after.contains(&c) && is_digit(at(b, e + 1)) {
            return false;
        }
    }
    true
}

/// Digits of `b[m]` (as values 0–9) and whether every non-digit separator is the same byte.
/// Parentheses are ignored for the uniformity check. Returns `None` past 19 digits.
fn digits(b: &[u8], m: Range<usize>) -> Option<(Vec<u8>, bool)> {
    let mut ds = Vec::with_capacity(19);
    let mut sep: Option<u8> = None;
    let mut uniform = true;
    for &c in &b[m] {
        if c.is_ascii_digit() {
            if ds.len() == 19 {
                return None;
            }
            ds.push(c - b'0');
        } else if c != b'(' && c != b')' && c != b'+' {
            match sep {
                None => sep = Some(c),
                Some(s) if s != c => uniform = false,
                Some(_) => {}
            }
        }
    }
    Some((ds, uniform))
}

/// Rejections skip the whole match: a later start inside the local part shares its `@` and
/// domain, so it fails the same checks.
fn email(b: &[u8], m: Range<usize>) -> Verdict {
    let Some(at_pos) = b[m.clone()].iter().position(|&c| c == b'@') else {
        return Verdict::Skip;
    };
    let at_pos = m.start + at_pos;
    // The local part may have swallowed leading dots or dashes of the surrounding text.
    let mut start = m.start;
    while start < at_pos && matches!(b[start], b'.' | b'-' | b'+' | b'%') {
        start += 1;
    }
    if start == at_pos || b[at_pos - 1] == b'.' {
        return Verdict::Skip;
    }
    let domain = &b[at_pos + 1..m.end];
    let labels_ok = domain
        .split(|&c| c == b'.')
        .all(|l| !l.is_empty() && l[0] != b'-' && l[l.len() - 1] != b'-');
    if !labels_ok || at(b, m.end) == Some(b'@') {
        return Verdict::Skip;
    }
    Verdict::Accept(start..m.end)
}

fn phone_intl(b: &[u8], m: Range<usize>) -> bool {
    let p = before(b, m.start);
    if is_word(p) || p == Some(b'+') {
        return false;
    }
    if !standalone(b, m.start, m.end, b"", b"-./") {
        return false;
    }
    match digits(b, m) {
        Some((ds, _)) => (7..=15).contains(&ds.len()),
        None => false,
    }
}

fn phone_national(b: &[u8], m: Range<usize>, uniform: bool) -> bool {
    let p = before(b, m.start);
    if p == Some(b'+') || !standalone(b, m.start, m.end, b"-./ ", b"-./ ") {
        return false;
    }
    match digits(b, m) {
        Some((ds, same)) => (7..=15).contains(&ds.len()) && (same || !uniform),
        None => false,
    }
}

fn luhn(ds: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in ds.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    let rem = sum % 10;
    rem == 0
}

fn card(b: &[u8], m: Range<usize>) -> bool {
    if !standalone(b, m.start, m.end, b"-./ ", b"-./") {
        return false;
    }
    let Some((ds, uniform)) = digits(b, m) else {
        return false;
    };
    if !uniform || !(13..=19).contains(&ds.len()) {
        return false;
    }
    // Issuer prefixes: 3x (Amex 34/37, Diners 30/36/38/39, JCB 35), 4 Visa, 5 Mastercard and
    // Maestro, 6 Discover/UnionPay/Maestro. Amex is 15 digits, Diners 14–16.
    let iin_ok = match ds[0] {
        3 => matches!(ds[1], 0 | 4..=9) && (14..=16).contains(&ds.len()),
        4..=6 => true,
        _ => false,
    };
    iin_ok && luhn(&ds)
}

fn ssn(b: &[u8], m: Range<usize>) -> bool {
    if !standalone(b, m.start, m.end, b"-./ ", b"-./ ") {
        return false;
    }
    let Some((ds, uniform)) = digits(b, m) else {
        return false;
    };
    if !uniform || ds.len() != 9 {
        return false;
    }
    let num = |r: Range<usize>| ds[r].iter().fold(0u32, |a, &d| a * 10 + u32::from(d));
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// IBAN length for a country, for the countries that use IBANs.
fn iban_len(cc: &[u8]) -> Option<usize> {
    let n = match cc {
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"AE" | b"GI" | b"IL" | b"IQ" => 23,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" => 28,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"BE" => 16,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"IS" | b"TR" => 26,
        b"JO" | b"KW" | b"MU" => 30,
        b"LC" => 32,
        b"MK" | b"SI" => 19,
        b"MT" => 31,
        b"NO" => 15,
        b"PT" => 25,
        _ => return None,
    };
    Some(n)
}

/// ISO 13616 check: move the first four characters to the end, letters to 10..35, mod 97 == 1.
pub(super) fn iban_mod97(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

fn iban(b: &[u8], m: Range<usize>) -> Verdict {
    if is_word(before(b, m.start)) {
        return Verdict::Reject;
    }
    // Alphanumeric characters and the byte offset just past each.
    let mut chars = Vec::with_capacity(34);
    let mut ends = Vec::with_capacity(34);
    for (i, &c) in b[m.clone()].iter().enumerate() {
        if c != b' ' {
            chars.push(c);
            ends.push(m.start + i + 1);
        }
    }
    let len = match iban_len(&chars[..2]) {
        Some(n) if chars.len() >= n => n,
        Some(_) => return Verdict::Reject,
        None if (15..=34).contains(&chars.len()) => chars.len(),
        None => return Verdict::Reject,
    };
    let end = ends[len - 1];
    if is_word(at(b, end)) {
        return Verdict::Reject;
    }
    if iban_mod97(&chars[..len]) {
        Verdict::Accept(m.start..end)
    } else {
        Verdict::Claim(m.start..end)
    }
}

fn ipv4(text: &str, m: Range<usize>) -> bool {
    let b = text.as_bytes();
    standalone(b, m.start, m.end, b".", b".")
        && text[m]
            .parse::<Ipv4Addr>()
            .is_ok_and(|a| !a.is_unspecified() && !a.is_loopback())
}

fn ipv6(text: &str, m: Range<usize>) -> bool {
    let b = text.as_bytes();
    let p = before(b, m.start);
    let n = at(b, m.end);
    // Not the tail of a longer colon/dot sequence; `tel:` or `ip:` before the address is fine.
    let glued_before = match p {
        Some(b'.') => true,
        Some(b':') => {
            matches!(before(b, m.start - 1), Some(c) if c.is_ascii_hexdigit() || c == b':')
        }
        p => is_word(p),
    };
    if glued_before || is_word(n) || n == Some(b':') {
        return false;
    }
    let s = &text[m];
    // Real addresses carry a decimal digit and some substance; this keeps `Add::add`, `a::b`
    // and `::` in code from counting.
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let has_digit = s.bytes().any(|c| c.is_ascii_digit());
    has_digit
        && (hex >= 4 || s.contains('.'))
        && s.parse::<Ipv6Addr>()
            .is_ok_and(|a| !a.is_unspecified() && !a.is_loopback())
}

fn openai_key(b: &[u8], m: Range<usize>) -> bool {
    if continues_token(before(b, m.start)) {
        return false;
    }
    let body = &b[m.start + 3..m.end];
    let body = body.strip_prefix(b"proj-").unwrap_or(body);
    // Random, not words: `sk-learn-2024-compatible-release-notes` is not a key.
    body.len() >= 20
        && body.iter().any(u8::is_ascii_digit)
        && body.iter().any(u8::is_ascii_alphabetic)
        && word_fraction(body) < GENERIC_MAX_WORD_FRACTION
}

fn token(b: &[u8], m: Range<usize>, fixed: bool) -> bool {
    if continues_token(before(b, m.start)) {
        return false;
    }
    !fixed || !continues_token(at(b, m.end))
}

/// Bytes of a generic token: base64 (standard and URL-safe) and `=` padding.
pub(super) const TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'=' | b'-');
        i += 1;
    }
    t
};

/// Whether `c` is a generic token byte.
pub(super) fn is_token_byte(c: u8) -> bool {
    TOKEN_BYTE[usize::from(c)]
}

/// Shortest run of token bytes the generic high-entropy rule looks at.
pub(super) const GENERIC_MIN_LEN: usize = 32;

/// Minimum Shannon entropy, bits per character, of a generic secret.
pub(super) const GENERIC_MIN_ENTROPY: f64 = 4.0;

/// Shannon entropy of a byte string, bits per byte.
pub(super) fn entropy(tok: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in tok {
        counts[usize::from(c)] += 1;
    }
    let n = tok.len() as f64;
    counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum()
}

/// A token whose letters sit mostly in word-like segments is a code identifier, path or slug.
pub(super) const GENERIC_MAX_WORD_FRACTION: f64 = 0.7;

/// A camelCase / snake_case / path segment that reads like a word: letters only, at least three,
/// `Word`, `word` or `WORD`, some but at most 75 % vowels (`y` counts) and no run of five
/// consonants.
fn wordy(seg: &[u8]) -> bool {
    if seg.len() < 3 || !seg.iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    let cased =
        seg[1..].iter().all(u8::is_ascii_lowercase) || seg.iter().all(u8::is_ascii_uppercase);
    if !cased {
        return false;
    }
    let mut vowels = 0u32;
    let mut streak = 0;
    for c in seg.iter().map(u8::to_ascii_lowercase) {
        if matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y') {
            vowels += 1;
            streak = 0;
        } else {
            streak += 1;
            if streak >= 5 {
                return false;
            }
        }
    }
    vowels > 0 && f64::from(vowels) <= 0.75 * seg.len() as f64
}

/// Share of the letters of `tok` that sit in word-like segments. Segments split at
/// non-alphanumerics, lower-to-upper case changes and letter/digit changes. Random mixed-case
/// base62/base64 tokens of 32+ characters reach 0.7 in about 0.2 % of cases; identifiers such as
/// `getUserAccountBalanceForFiscalYear2024`, `src/components/UserProfile2/index` or
/// `kubernetes-deployment-frontend-7d9f8b6c5d-x2k4p` score 0.78–1. Random tokens of one case
/// (`[a-z0-9]`) score high more often (~15 %), so some such tokens are not found.
pub(super) fn word_fraction(tok: &[u8]) -> f64 {
    let mut letters = 0usize;
    let mut in_words = 0usize;
    let mut seg_start: Option<usize> = None;
    for i in 0..=tok.len() {
        let c = tok.get(i).copied();
        if let Some(s) = seg_start {
            // An open segment means tok[i - 1] is alphanumeric.
            let p = tok[i - 1];
            let boundary = match c {
                None => true,
                Some(c) => {
                    !c.is_ascii_alphanumeric()
                        || (p.is_ascii_lowercase() && c.is_ascii_uppercase())
                        || p.is_ascii_alphabetic() != c.is_ascii_alphabetic()
                }
            };
            if boundary {
                if wordy(&tok[s..i]) {
                    in_words += i - s;
                }
                seg_start = None;
            }
        }
        if let Some(c) = c {
            if c.is_ascii_alphanumeric() {
                letters += usize::from(c.is_ascii_alphabetic());
                seg_start.get_or_insert(i);
            }
        }
    }
    if letters == 0 {
        return 0.0;
    }
    in_words as f64 / letters as f64
}

/// The generic high-entropy rule for a maximal run of token bytes: at least 32 bytes, letters and
/// digits both present, not hex-only (git SHAs, checksums and UUIDs are identifiers, not
/// credentials), at least 4.0 bits of entropy per character, and not made mostly of words (long
/// code identifiers, paths and slugs often pass 4.0 bits/char but are word-like; see
/// [`word_fraction`]).
pub(super) fn looks_random(tok: &[u8]) -> bool {
    if tok.len() < GENERIC_MIN_LEN {
        return false;
    }
    let mut letters = false;
    let mut digits = false;
    let mut hex_only = true;
    for &c in tok {
        letters |= c.is_ascii_alphabetic();
        digits |= c.is_ascii_digit();
        hex_only &= c.is_ascii_hexdigit() || c == b'-';
    }
    letters
        && digits
        && !hex_only
        && entropy(tok) >= GENERIC_MIN_ENTROPY
        && word_fraction(tok) < GENERIC_MAX_WORD_FRACTION
}

/// PEM body bytes: base64, line breaks, and the `Proc-Type: 4,ENCRYPTED` / `DEK-Info:` headers
/// of legacy encrypted keys.
fn is_pem_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'+' | b'/' | b'=' | b':' | b',' | b'-' | b' ' | b'\r' | b'\n' | b'\t'
        )
}

/// Extends a PEM BEGIN line (`begin`) over the key. With an END line in the body: up to the end of
/// that line. Without one (a truncated paste): over the base64 up to the first blank line or
/// non-PEM byte. `stop` caches the end of the PEM-byte run from an earlier call; runs never
/// shrink, so the scan stays linear over all BEGIN lines of a text.
pub(super) fn pem_block(b: &[u8], begin: Range<usize>, stop: &mut usize) -> Range<usize> {
    if *stop < begin.end {
        let mut i = begin.end;
        while i < b.len() && is_pem_byte(b[i]) {
            i += 1;
        }
        *stop = i;
    }
    let body = &b[begin.end..*stop];
    let mut from = 0;
    while let Some(off) = memchr::memmem::find(&body[from..], b"-----END ") {
        let e = from + off + 9;
        let line = &body[e..body.len().min(e + 64)];
        if let Some(k) = memchr::memmem::find(line, b"PRIVATE KEY-----") {
            if line[..k]
                .iter()
                .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' ')
            {
                return begin.start..begin.end + e + k + 16;
            }
        }
        from = e;
    }
    // No END: the body ends at a blank line.
    let mut end = body.len();
    if let Some(blank) = memchr::memmem::find(body, b"\n\n") {
        end = end.min(blank);
    }
    if let Some(blank) = memchr::memmem::find(body, b"\n\r\n") {
        end = end.min(blank);
    }
    while end > 0 && body[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    begin.start..begin.end + end
}
