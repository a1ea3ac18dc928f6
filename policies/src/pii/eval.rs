//! Precision/recall evaluation on a deterministic synthetic corpus.
//!
//! A seeded generator writes sentences from templates with one inserted PII value of a known
//! entity and span (positives), and PII-free sentences full of look-alikes (negatives): versions,
//! dates, times, prices, order and ticket IDs, git SHAs, SHA-256 sums, UUIDs, Luhn-invalid card
//! numbers, out-of-range SSNs, IBANs with a wrong checksum, out-of-range IPv4s, MAC addresses,
//! long code identifiers, paths, URLs and Kubernetes pod names.
//!
//! A positive counts as recalled when a finding of the right entity covers the inserted value.
//! A negative counts as a false positive when it has any finding at all.
//!
//! Not in the negatives on purpose: random base64 blobs. They are indistinguishable from
//! credentials, and the generic secret rule redacts them by design.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

/// SplitMix64: small, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn string_of(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(*self.pick(alphabet))).collect()
    }

    fn digits(&mut self, n: usize) -> String {
        self.string_of(b"0123456789", n)
    }
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_NUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";

const FIRST: &[&str] = &[
    "john", "maria", "wei", "fatima", "lars", "aiko", "carlos", "priya", "olga", "kwame", "emma",
    "noah", "li", "sofia", "ahmed", "jean-luc", "o.brien",
];
const LAST: &[&str] = &[
    "smith", "garcia", "chen", "khan", "nielsen", "tanaka", "silva", "patel", "ivanova", "mensah",
    "muller", "dupont", "rossi", "kowalski",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp.co.uk",
    "uni-bonn.de",
    "x.io",
    "company.travel",
    "sub.dept.example.net",
    "GMAIL.COM",
];

/// Templates for positives; `{}` is where the value goes. They carry look-alike noise too.
const POSITIVE: &[&str] = &[
    "Please contact {} about the invoice from 2024-03-15.",
    "My details: {} (updated on 15/03/2024).",
    "Can you check {}? The total was $1,234.56.",
    "{} is what the form says.",
    "Forwarding this to {} - see ticket JIRA-4521.",
    "Note for the v2.3.1 release: {}",
    "Hi team,\nthe value is {}\nthanks",
    "\"{}\"",
    "Customer wrote: my info is {}, order 1234567890.",
    "Here you go: {}.",
    "Use {} for the account, not the old one.",
    "Re: {} / ref #88231",
    "[{}]",
    "value={}&next=1",
    "<td>{}</td>",
    "At 12:30:45 the agent logged {} in build 4.2.0.",
    "Das ist {}, bitte pruefen.",
    "Voici {} pour le dossier 2023/118.",
    "{}",
    "mailto:{}",
    "John Smith <{}>",
    "tel:{}",
    "SSN:{} DOB 1990-01-01",
    "Whitelisted: {}; expires 2025-12-31.",
    "(see {})",
];

/// Templates for negatives; `{}` takes a look-alike.
const NEGATIVE: &[&str] = &[
    "Please look at {} before the meeting.",
    "The log line mentions {} twice.",
    "{} is what the form says.",
    "Re: {} / see the changelog.",
    "Our notes: {}",
    "Is {} correct here?",
    "`{}`",
    "Note for the next release: {}",
    "{}",
];

const ENGLISH: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Summarize the attached report in three bullet points.",
    "What is the capital of Australia, and why was it chosen?",
    "Translate 'good morning' into Spanish, French and German.",
    "Write a haiku about autumn leaves falling in the rain.",
    "Explain the difference between TCP and UDP for a beginner.",
    "Give me a recipe for pancakes that serves 4 people.",
    "Our quarterly revenue grew 12% compared to last year.",
    "The meeting moved to Thursday at 3 pm in room 101.",
    "Convert 5 km to miles and 20 degrees Celsius to Fahrenheit.",
    "List five tips for writing clean, readable Python code.",
    "Please review chapter 7, pages 120-135, before Monday.",
];

const WORDS: &[&str] = &[
    "user",
    "account",
    "balance",
    "service",
    "handler",
    "config",
    "request",
    "response",
    "manager",
    "factory",
    "builder",
    "session",
    "cache",
    "stream",
    "buffer",
    "message",
    "channel",
    "policy",
    "limit",
    "default",
    "connection",
    "pool",
    "metrics",
    "gateway",
    "provider",
    "upstream",
    "retry",
    "timeout",
    "budget",
    "fiscal",
    "quarter",
    "profile",
    "settings",
    "validate",
    "parse",
    "render",
    "update",
    "delete",
    "create",
    "index",
];

/// In a generated value, the PII itself sits between the marks (or before the only mark, or is
/// the whole value when there is none); the rest is context such as a port.
const MARK: char = '\u{1}';

/// Strip the marks: (text, PII span in it).
fn unmark(v: &str) -> (String, std::ops::Range<usize>) {
    let parts: Vec<&str> = v.split(MARK).collect();
    match parts.as_slice() {
        [pii, rest] => ((*pii).to_owned() + rest, 0..pii.len()),
        [pre, pii, post] => (
            format!("{pre}{pii}{post}"),
            pre.len()..pre.len() + pii.len(),
        ),
        _ => (v.to_owned(), 0..v.len()),
    }
}

fn luhn_check_digit(payload: &[u8]) -> u8 {
    // Digit that makes payload + check Luhn-valid.
    let mut sum = 0u32;
    for (i, &d) in payload.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u8
}

fn card_digits(rng: &mut Rng) -> Vec<u8> {
    let (prefix, len): (&str, usize) = *rng.pick(&[
        ("4", 16),
        ("4", 13),
        ("51", 16),
        ("53", 16),
        ("55", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("65", 16),
        ("3528", 16),
        ("4", 19),
    ]);
    let mut d: Vec<u8> = prefix.bytes().map(|c| c - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.below(10) as u8);
    }
    let c = luhn_check_digit(&d);
    d.push(c);
    d
}

fn format_card(rng: &mut Rng, d: &[u8]) -> String {
    let s: String = d.iter().map(|&x| char::from(b'0' + x)).collect();
    let sep = *rng.pick(&["", " ", "-"]);
    if sep.is_empty() {
        return s;
    }
    let groups: &[usize] = match d.len() {
        15 => &[4, 6, 5],
        16 => &[4, 4, 4, 4],
        19 => &[4, 4, 4, 4, 3],
        _ => return s,
    };
    let mut out = String::new();
    let mut i = 0;
    for (k, g) in groups.iter().enumerate() {
        if k > 0 {
            out.push_str(sep);
        }
        out.push_str(&s[i..i + g]);
        i += g;
    }
    out
}

fn email(rng: &mut Rng) -> String {
    let mut local = (*rng.pick(FIRST)).to_owned();
    match rng.below(4) {
        0 => {}
        1 => write!(local, ".{}", rng.pick(LAST)).unwrap_or_default(),
        2 => write!(local, "_{}{}", rng.pick(LAST), rng.range(1, 99)).unwrap_or_default(),
        _ => write!(local, "+{}", rng.pick(&["news", "work", "x1"])).unwrap_or_default(),
    }
    if rng.chance(15) {
        local = local.to_uppercase();
    }
    format!("{local}@{}", rng.pick(DOMAINS))
}

fn phone(rng: &mut Rng) -> String {
    let area = format!("{}{}", rng.range(2, 9), rng.digits(2));
    let exch = rng.digits(3);
    let line = rng.digits(4);
    match rng.below(21) {
        0 => format!("+1{area}{exch}{line}"),
        20 => format!("+1.{area}.{exch}.{line}"),
        1 => format!("+1 ({area}) {exch}-{line}"),
        2 => format!("+1-{area}-{exch}-{line}"),
        3 => format!("+1 {area} {exch} {line}"),
        4 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
        5 => format!("+44 7{} {}", rng.digits(3), rng.digits(6)),
        6 => format!("+44 (0)20 {} {}", rng.digits(4), rng.digits(4)),
        7 => format!("+49 30 {}", rng.digits(8)),
        8 => format!("+49 1{} {}", rng.digits(2), rng.digits(7)),
        9 => format!(
            "+33 {} {} {} {} {}",
            rng.range(1, 9),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        10 => format!("({area}) {exch}-{line}"),
        11 => format!("{area}-{exch}-{line}"),
        12 => format!("{area}.{exch}.{line}"),
        13 => format!("{area} {exch} {line}"),
        14 => format!("1-800-{exch}-{line}"),
        15 => format!("020 {} {}", rng.digits(4), rng.digits(4)),
        16 => format!("07{} {}", rng.digits(3), rng.digits(6)),
        17 => format!(
            "0{} {}",
            rng.pick(&["30", "89", "40", "171", "151", "221"]),
            rng.digits(7)
        ),
        18 => format!(
            "0{} {} {} {} {}",
            rng.range(1, 9),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        _ => format!(
            "0{}.{}.{}.{}.{}",
            rng.range(1, 9),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
    }
}

fn ssn_parts(rng: &mut Rng) -> (u64, u64, u64) {
    let mut area = rng.range(1, 899);
    if area == 666 {
        area = 667;
    }
    (area, rng.range(1, 99), rng.range(1, 9999))
}

fn ssn(rng: &mut Rng) -> String {
    let (a, g, s) = ssn_parts(rng);
    let sep = if rng.chance(80) { '-' } else { ' ' };
    format!("{a:03}{sep}{g:02}{sep}{s:04}")
}

/// A valid IBAN (compact) for one of several countries.
fn iban_compact(rng: &mut Rng) -> String {
    let (cc, bban) = match rng.below(10) {
        0 => ("DE", rng.digits(18)),
        1 => (
            "GB",
            format!("{}{}", rng.string_of(UPPER, 4), rng.digits(14)),
        ),
        2 => (
            "FR",
            format!(
                "{}{}{}",
                rng.digits(10),
                rng.string_of(UPPER_NUM, 11),
                rng.digits(2)
            ),
        ),
        3 => (
            "NL",
            format!("{}{}", rng.string_of(UPPER, 4), rng.digits(10)),
        ),
        4 => ("ES", rng.digits(20)),
        5 => (
            "IT",
            format!(
                "{}{}",
                rng.string_of(UPPER, 1),
                rng.string_of(UPPER_NUM, 22)
            ),
        ),
        6 => ("BE", rng.digits(12)),
        7 => ("CH", rng.digits(17)),
        8 => ("AT", rng.digits(16)),
        _ => ("PL", rng.digits(24)),
    };
    let check = iban_check_digits(cc, &bban);
    format!("{cc}{check:02}{bban}")
}

fn iban_check_digits(cc: &str, bban: &str) -> u32 {
    let mut rem = 0u32;
    for c in bban.bytes().chain(cc.bytes()).chain(*b"00") {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            _ => (rem * 100 + u32::from(c - b'A') + 10) % 97,
        };
    }
    98 - rem
}

fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn iban(rng: &mut Rng) -> String {
    let s = iban_compact(rng);
    if rng.chance(60) {
        group4(&s)
    } else {
        s
    }
}

fn ip(rng: &mut Rng) -> String {
    if rng.chance(10) {
        let a = Ipv4Addr::new(
            10,
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.range(1, 254) as u8,
        );
        return format!("{a}{MARK}{}", rng.pick(&[":8080", "/24", ":443"]));
    }
    if rng.chance(60) {
        let mut first = rng.range(1, 223) as u8;
        if first == 127 {
            first = 128;
        }
        Ipv4Addr::new(
            first,
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.range(1, 254) as u8,
        )
        .to_string()
    } else {
        let mut g = [0u16; 8];
        for x in &mut g {
            *x = rng.below(0x1_0000) as u16;
        }
        g[0] = *rng.pick(&[0x2001, 0xfe80, 0x2a00, 0xfd12]);
        // Zero a run so that Display compresses it with `::`.
        if rng.chance(70) {
            let start = rng.range(1, 5) as usize;
            let len = rng.range(2, 3) as usize;
            for x in g.iter_mut().skip(start).take(len) {
                *x = 0;
            }
        }
        let a = Ipv6Addr::from(g);
        if rng.chance(10) {
            return format!("[{MARK}{a}{MARK}]:{}", rng.range(1, 65535));
        }
        if rng.chance(20) {
            // Full, uncompressed form.
            g.iter()
                .map(|x| format!("{x:04x}"))
                .collect::<Vec<_>>()
                .join(":")
        } else {
            a.to_string()
        }
    }
}

fn secret(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => format!("sk-{}", rng.string_of(ALNUM, 48)),
        1 => format!("sk-proj-{}", rng.string_of(B64URL, 100)),
        10 => format!("sk-ant-api03-{}", rng.string_of(B64URL, 95)),
        11 => format!(
            "xoxp-{}-{}-{}-{}",
            rng.digits(11),
            rng.digits(12),
            rng.digits(13),
            rng.string_of(HEX, 32)
        ),
        2 => format!("AKIA{}", rng.string_of(UPPER_NUM, 16)),
        3 => format!("ghp_{}", rng.string_of(ALNUM, 36)),
        4 => format!(
            "xoxb-{}-{}-{}",
            rng.digits(12),
            rng.digits(13),
            rng.string_of(ALNUM, 24)
        ),
        5 => format!("AIza{}", rng.string_of(B64URL, 35)),
        6 => format!(
            "eyJ{}.eyJ{}.{}",
            rng.string_of(B64URL, 20),
            rng.string_of(B64URL, 40),
            rng.string_of(B64URL, 43)
        ),
        7 => format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----",
            rng.string_of(B64, 64),
            rng.string_of(B64, 40)
        ),
        8 => format!("{}=", rng.string_of(B64, 43)),
        _ => format!("github_pat_{}", rng.string_of(ALNUM, 82)),
    }
}

fn identifier(rng: &mut Rng) -> String {
    let n = rng.range(5, 8) as usize;
    let words: Vec<&str> = (0..n).map(|_| *rng.pick(WORDS)).collect();
    let num = rng.range(2, 2099);
    match rng.below(4) {
        0 => {
            let mut s = words[0].to_owned();
            for w in &words[1..] {
                let mut cs = w.chars();
                if let Some(f) = cs.next() {
                    s.push(f.to_ascii_uppercase());
                    s.push_str(cs.as_str());
                }
            }
            format!("{s}{num}")
        }
        1 => format!("{}_v{num}", words.join("_")),
        2 => format!("{}_{num}", words.join("_").to_uppercase()),
        _ => format!(
            "src/{}/{}{num}.rs",
            words[..2].join("/"),
            words[2..].join("_")
        ),
    }
}

/// A PII-free look-alike.
fn look_alike(rng: &mut Rng) -> String {
    match rng.below(42) {
        0 => format!("v{}.{}.{}", rng.below(20), rng.below(30), rng.below(100)),
        1 => format!(
            "version {}.{}.{}-rc.{}",
            rng.below(5),
            rng.below(20),
            rng.below(10),
            rng.below(5)
        ),
        2 => format!(
            "{}-{:02}-{:02}",
            rng.range(1990, 2030),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
        3 => format!(
            "{:02}/{:02}/{}",
            rng.range(1, 28),
            rng.range(1, 12),
            rng.range(1990, 2030)
        ),
        4 => format!(
            "{:02}:{:02}:{:02}",
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        5 => format!(
            "${},{:03}.{:02}",
            rng.range(1, 999),
            rng.below(1000),
            rng.below(100)
        ),
        6 => format!("Order {}", rng.range(1_000_000_000, 999_999_999_999)),
        7 => format!("Order #A-{}", rng.digits(8)),
        8 => format!("ORD-{}-{}", rng.range(2015, 2030), rng.digits(6)),
        9 => format!("commit {}", rng.string_of(HEX, 40)),
        10 => format!("sha256:{}", rng.string_of(HEX, 64)),
        11 => format!(
            "{}-{}-{}-{}-{}",
            rng.string_of(HEX, 8),
            rng.string_of(HEX, 4),
            rng.string_of(HEX, 4),
            rng.string_of(HEX, 4),
            rng.string_of(HEX, 12)
        ),
        12 => {
            // Luhn-invalid card number.
            let mut d = card_digits(rng);
            if let Some(last) = d.last_mut() {
                *last = (*last + 1 + rng.below(8) as u8) % 10;
            }
            format!("card {}", format_card(rng, &d))
        }
        13 => {
            let (a, g, s) = ssn_parts(rng);
            let (a, g, s) = match rng.below(5) {
                0 => (0, g, s),
                1 => (666, g, s),
                2 => (rng.range(900, 999), g, s),
                3 => (a, 0, s),
                _ => (a, g, 0),
            };
            format!("{a:03}-{g:02}-{s:04}")
        }
        14 => {
            // IBAN with a wrong checksum.
            let s = iban_compact(rng);
            let cd: u32 = s[2..4].parse().unwrap_or(50);
            let bad = if cd > 2 { cd - 1 } else { cd + 1 };
            let s = format!("{}{bad:02}{}", &s[..2], &s[4..]);
            if rng.chance(60) {
                group4(&s)
            } else {
                s
            }
        }
        15 => format!(
            "{}.{}.{}.{}",
            rng.range(256, 999),
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        16 => {
            let mac: Vec<String> = (0..6)
                .map(|_| rng.string_of(b"0123456789ABCDEF", 2))
                .collect();
            mac.join(":")
        }
        17 | 18 => identifier(rng),
        19 => format!(
            "https://docs.example.com/{}/v{}/{}",
            rng.pick(WORDS),
            rng.range(1, 9),
            rng.pick(WORDS)
        ),
        20 => format!(
            "std::collections::HashMap / {}::new()",
            rng.pick(&["Vec", "Add", "Cafe", "Bad"])
        ),
        21 => format!(
            "{}-{}-{}",
            rng.pick(WORDS),
            rng.string_of(b"0123456789abcdef", 10),
            rng.string_of(b"bcdfghjklmnpqrstvwxz2456789", 5)
        ),
        22 => format!(
            "ISBN 978-{}-{}-{}-{}",
            rng.below(10),
            rng.digits(2),
            rng.digits(6),
            rng.below(10)
        ),
        23 => format!(
            "Population: {},{:03},{:03}",
            rng.range(1, 99),
            rng.below(1000),
            rng.below(1000)
        ),
        24 => format!(
            "ts={} ms={}",
            rng.range(1_600_000_000, 1_800_000_000),
            rng.range(1_600_000_000_000, 1_799_999_999_999)
        ),
        25 => format!("ext. {} in room {}", rng.digits(4), rng.range(1, 999)),
        26 => format!(
            "{} km in {}.{} h at {}.{}%",
            rng.below(500),
            rng.below(10),
            rng.below(10),
            rng.below(100),
            rng.below(10)
        ),
        27 => format!("color #{}", rng.string_of(HEX, 6)),
        28 => format!("short sha {} and tag v1.2.3.4-beta", rng.string_of(HEX, 7)),
        29 => format!(
            "Chrome {}.0.{}.{}",
            rng.range(100, 130),
            rng.range(5000, 6999),
            rng.range(1, 300)
        ),
        30 => format!(
            "{}.{:02}.{}",
            rng.range(1, 28),
            rng.range(1, 12),
            rng.range(1990, 2030)
        ),
        31 => format!(
            "{} {:03} {:03},{:02} EUR",
            rng.range(1, 99),
            rng.below(1000),
            rng.below(1000),
            rng.below(100)
        ),
        32 => format!(
            "coords {}.{:04}, -{}.{:04}",
            rng.range(1, 89),
            rng.below(10000),
            rng.range(1, 179),
            rng.below(10000)
        ),
        33 => format!("arn:aws:iam::{}:role/{}", rng.digits(12), rng.pick(WORDS)),
        34 => format!("ObjectId(\"{}\")", rng.string_of(HEX, 24)),
        35 => format!(
            "score {}-{}-{}, call back in {}-{} minutes",
            rng.below(10),
            rng.below(10),
            rng.below(10),
            rng.range(1, 5),
            rng.range(6, 30)
        ),
        36 => format!(
            "pip install sk-learn-{}-compatible-release-notes-{}",
            rng.range(2019, 2025),
            rng.pick(WORDS)
        ),
        37 => format!("xoxo-gossip-{}-{}", rng.pick(WORDS), rng.range(2000, 2030)),
        38 => format!(
            "ISBN 978-0-{}-{}-{}",
            rng.digits(3),
            rng.digits(5),
            rng.below(10)
        ),
        39 => format!(
            "listen on [::]:{} and 0.0.0.0:{}",
            rng.range(1024, 65535),
            rng.range(1024, 65535)
        ),
        _ => (*rng.pick(ENGLISH)).to_owned(),
    }
}

struct Stat {
    entity: Entity,
    n: u32,
    hit: u32,
}

#[test]
fn eval_precision_recall() {
    let policy = PiiPolicy::new(&PiiSpec::all(Action::Redact)).unwrap();
    let mut rng = Rng(0x5eed_0f51_001c);
    type Gen = fn(&mut Rng) -> String;
    let gens: [(Entity, Gen, u32); 7] = [
        (Entity::Email, email, 400),
        (Entity::Phone, phone, 600),
        (
            Entity::CreditCard,
            |r| {
                let d = card_digits(r);
                format_card(r, &d)
            },
            400,
        ),
        (Entity::Ssn, ssn, 300),
        (Entity::Iban, iban, 400),
        (Entity::IpAddress, ip, 400),
        (Entity::Secret, secret, 400),
    ];
    let mut stats = Vec::new();
    let mut extra = 0u32;
    let mut misses = Vec::new();
    let mut positives = 0;
    for (entity, gen, n) in gens {
        let mut st = Stat {
            entity,
            n: 0,
            hit: 0,
        };
        for _ in 0..n {
            let (value, inner) = unmark(&gen(&mut rng));
            let template = *rng.pick(POSITIVE);
            let at = template.find("{}").unwrap();
            let text = template.replacen("{}", &value, 1);
            let span = at + inner.start..at + inner.end;
            let findings = policy.scan(&text);
            let ok = findings.iter().any(|f| {
                f.entity == entity && f.range.start <= span.start && span.end <= f.range.end
            });
            extra += findings
                .iter()
                .filter(|f| f.range.end <= span.start || f.range.start >= span.end)
                .count() as u32;
            st.n += 1;
            if ok {
                st.hit += 1;
            } else if misses.len() < 20 {
                misses.push((
                    entity,
                    text.clone(),
                    findings
                        .iter()
                        .map(|f| (f.entity, text[f.range.clone()].to_owned()))
                        .collect::<Vec<_>>(),
                ));
            }
            positives += 1;
        }
        stats.push(st);
    }

    let mut negatives = 0u32;
    let mut fp = 0u32;
    let mut fps = Vec::new();
    for _ in 0..3000 {
        let noise = look_alike(&mut rng);
        let text = rng.pick(NEGATIVE).replacen("{}", &noise, 1);
        negatives += 1;
        let findings = policy.scan(&text);
        if !findings.is_empty() {
            fp += 1;
            if fps.len() < 20 {
                fps.push((
                    text.clone(),
                    findings
                        .iter()
                        .map(|f| (f.entity, text[f.range.clone()].to_owned()))
                        .collect::<Vec<_>>(),
                ));
            }
        }
    }

    for st in &stats {
        eprintln!(
            "recall {:<11} {:>4}/{:<4} = {:.2}%",
            st.entity.as_str(),
            st.hit,
            st.n,
            100.0 * f64::from(st.hit) / f64::from(st.n)
        );
    }
    let fp_rate = 100.0 * f64::from(fp) / f64::from(negatives);
    eprintln!("positives {positives}, extra findings outside the inserted value: {extra}");
    eprintln!("negatives {negatives}, false positives {fp} = {fp_rate:.2}%");
    for m in &misses {
        eprintln!("MISS {m:?}");
    }
    for f in &fps {
        eprintln!("FP {f:?}");
    }

    // Known limits, measured but not asserted: random single-case tokens without a prefix
    // (often read as words), and bare four-part version numbers (read as IPv4 addresses).
    let lower_found = (0..500)
        .filter(|_| {
            let tok = rng.string_of(b"abcdefghijklmnopqrstuvwxyz0123456789", 40);
            !policy.scan(&format!("token {tok} here")).is_empty()
        })
        .count();
    let version_fp = (0..500)
        .filter(|_| {
            let v = format!(
                "Firefox {}.{}.{}.{}",
                rng.range(1, 255),
                rng.below(10),
                rng.below(10),
                rng.below(10)
            );
            !policy.scan(&v).is_empty()
        })
        .count();
    eprintln!(
        "known limits: [a-z0-9]{{40}} tokens found {lower_found}/500; bare a.b.c.d versions reported {version_fp}/500"
    );

    assert!(positives >= 2000 && negatives >= 2000);
    for st in &stats {
        let recall = f64::from(st.hit) / f64::from(st.n);
        let min = if st.entity == Entity::Secret {
            0.98
        } else {
            0.99
        };
        assert!(recall >= min, "{} recall {recall:.4} < {min}", st.entity);
    }
    assert!(fp_rate <= 0.5, "false-positive rate {fp_rate:.2}% > 0.5%");
    assert_eq!(extra, 0, "findings in the template noise of positives");
}
