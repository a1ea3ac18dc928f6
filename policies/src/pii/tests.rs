//! Unit tests: every recognizer with positives and negatives, actions, modes, pseudonym
//! restoring and the OpenAI body walk.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::recognizers::{entropy, iban_mod97, looks_random, BUILTINS};
use super::*;

fn all() -> PiiPolicy {
    PiiPolicy::new(&PiiSpec::all(Action::Redact)).unwrap()
}

/// (entity, matched text) of every finding.
fn found(p: &PiiPolicy, text: &str) -> Vec<(Entity, String)> {
    p.scan(text)
        .into_iter()
        .map(|f| (f.entity, text[f.range].to_owned()))
        .collect()
}

#[track_caller]
fn assert_one(text: &str, entity: Entity, value: &str) {
    let got = found(&all(), text);
    assert_eq!(got, vec![(entity, value.to_owned())], "in {text:?}");
}

#[track_caller]
fn assert_none(text: &str) {
    let got = found(&all(), text);
    assert!(got.is_empty(), "expected nothing in {text:?}, got {got:?}");
}

#[test]
fn builtin_patterns_compile() {
    for b in BUILTINS {
        regex::Regex::new(b.pattern).unwrap();
    }
}

#[test]
fn english_sentence_has_no_findings() {
    assert_none(
        "The quick brown fox jumps over the lazy dog, then rests for 5 minutes at 3:30 pm.",
    );
    assert_none(
        "Please summarize the attached report in three bullet points and keep it under 200 words.",
    );
    assert_none("");
}

#[test]
fn emails() {
    assert_one(
        "mail john.doe@example.com today",
        Entity::Email,
        "john.doe@example.com",
    );
    assert_one(
        "<a+tag@sub.example.co.uk>",
        Entity::Email,
        "a+tag@sub.example.co.uk",
    );
    assert_one("ends with dot: x_y@corp.io.", Entity::Email, "x_y@corp.io");
    assert_one("...jane@example.org", Entity::Email, "jane@example.org");
    assert_none("user@localhost is not routable");
    assert_none("follow @sluice on social");
    assert_none("a @ b.com and foo@bar");
    assert_none("decorators like @app.route('/x') are code");
}

#[test]
fn phones() {
    for (text, value) in [
        ("call +1 (555) 123-4567 now", "+1 (555) 123-4567"),
        ("E.164 +14155552671.", "+14155552671"),
        ("UK +44 20 7946 0958", "+44 20 7946 0958"),
        ("UK +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
        ("DE +49 30 12345678", "+49 30 12345678"),
        ("FR +33 1 23 45 67 89", "+33 1 23 45 67 89"),
        ("US (555) 123-4567", "(555) 123-4567"),
        ("US 555-123-4567", "555-123-4567"),
        ("US 555.123.4567", "555.123.4567"),
        ("toll free 1-800-555-1234", "1-800-555-1234"),
        ("London 020 7946 0958", "020 7946 0958"),
        ("mobile 07911 123456", "07911 123456"),
        ("Berlin 030 12345678", "030 12345678"),
        ("Handy 0171 2345678", "0171 2345678"),
        ("Paris 01 23 45 67 89", "01 23 45 67 89"),
        ("portable 06.12.34.56.78", "06.12.34.56.78"),
        ("电话555-123-4567", "555-123-4567"),
    ] {
        assert_one(text, Entity::Phone, value);
    }
    assert_none("Order 1234567890 shipped");
    assert_none("Ticket #4155552671");
    assert_none("+12 34 is too short");
    assert_none("released on 2024-01-15 at 12:30:45");
    assert_none("555-123 4567 mixes separators");
    assert_none("SKU 12-555-123-4567 is a part number");
    assert_none("ratio 1:555-123-4567x");
}

#[test]
fn credit_cards() {
    for (text, value) in [
        ("visa 4111 1111 1111 1111 exp 12/25", "4111 1111 1111 1111"),
        ("4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("card=4111111111111111;", "4111111111111111"),
        ("MC 5500 0000 0000 0004", "5500 0000 0000 0004"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
        ("VISA 4111 1111 1111 1111 12/25", "4111 1111 1111 1111"),
    ] {
        assert_one(text, Entity::CreditCard, value);
    }
    assert_none("card 4111 1111 1111 1112 fails Luhn");
    assert_none("4111 1111-1111 1111 mixes separators");
    assert_none("id 1234 5678 9012 3452 starts with 1");
    assert_none("ref 41111111111111111111 too long");
}

#[test]
fn ssns() {
    assert_one("SSN 078-05-1120.", Entity::Ssn, "078-05-1120");
    assert_one("ssn: 123 45 6789", Entity::Ssn, "123 45 6789");
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
    ] {
        assert_none(&format!("SSN {bad} is invalid"));
    }
    assert_none("no separators 123456789");
    assert_none("mixed 123-45 6789");
}

#[test]
fn ibans() {
    for (text, value) in [
        (
            "pay to DE89 3704 0044 0532 0130 00 please",
            "DE89 3704 0044 0532 0130 00",
        ),
        ("DE89370400440532013000", "DE89370400440532013000"),
        (
            "GB82 WEST 1234 5698 7654 32.",
            "GB82 WEST 1234 5698 7654 32",
        ),
        (
            "FR14 2004 1010 0505 0001 3M02 606",
            "FR14 2004 1010 0505 0001 3M02 606",
        ),
        ("NL91ABNA0417164300", "NL91ABNA0417164300"),
        ("iban BE68 5390 0754 7034 EUR", "BE68 5390 0754 7034"),
    ] {
        assert_one(text, Entity::Iban, value);
    }
    assert!(iban_mod97(b"DE89370400440532013000"));
    // Bad checksums are left alone, and their digits do not turn into cards or phones.
    assert_none("pay to DE88 3704 0044 0532 0130 00 please");
    assert_none("GB81 WEST 1234 5698 7654 32");
    assert_none("lowercase de89 3704 0044 0532 0130 00");
}

#[test]
fn ip_addresses() {
    for (text, value) in [
        ("host 192.168.1.1 is down", "192.168.1.1"),
        ("from 10.0.0.255.", "10.0.0.255"),
        ("v6 2001:db8::8a2e:370:7334 ok", "2001:db8::8a2e:370:7334"),
        (
            "full 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        ),
        ("link-local fe80::1%eth0", "fe80::1"),
        ("mapped ::ffff:192.0.2.128", "::ffff:192.0.2.128"),
    ] {
        assert_one(text, Entity::IpAddress, value);
    }
    assert_none("999.1.1.1 is not an address");
    assert_none("256.300.1.1");
    assert_none("version 1.2.3.4.5 and 1.2.3");
    assert_none("v1.2.3.4");
    assert_none("at 12:30:45");
    assert_none("use std::collections::HashMap; Add::add(a, b); a::b");
    assert_none("mac 00:1A:2B:3C:4D:5E");
    assert_none("loopback ::1");
}

fn rand_alnum(seed: u64, n: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % 62) as usize] as char
        })
        .collect()
}

#[test]
fn secrets_with_known_prefixes() {
    let cases = [
        format!("sk-{}", rand_alnum(1, 48)),
        format!("sk-proj-{}_{}", rand_alnum(2, 40), rand_alnum(3, 20)),
        "AKIAIOSFODNN7EXAMPLE".to_owned(),
        format!("ghp_{}", rand_alnum(4, 36)),
        format!("github_pat_{}", rand_alnum(5, 82)),
        "xoxb-1234567890-0987654321-AbCdEfGhIjKl".to_owned(),
        format!("AIza{}", rand_alnum(6, 35)),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
            .to_owned(),
    ];
    for key in &cases {
        assert_one(&format!("key: {key} ok"), Entity::Secret, key);
    }
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----";
    assert_one(&format!("here:\n{pem}\nthanks"), Entity::Secret, pem);
    let truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    assert_one(truncated, Entity::Secret, truncated);
    assert_one(
        &format!("{truncated}\n\nWhat is wrong with it?"),
        Entity::Secret,
        truncated,
    );
    let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nxY9z+/abc=\n-----END RSA PRIVATE KEY-----";
    assert_one(&format!("{encrypted}."), Entity::Secret, encrypted);
}

#[test]
fn generic_high_entropy_tokens() {
    let b64 = "q8Zf2Lr9XwT4vN7kB1mC5sD0eH3jP6gA+u/YbV==";
    assert!(looks_random(b64.as_bytes()), "{}", entropy(b64.as_bytes()));
    assert_one(&format!("token {b64} here"), Entity::Secret, b64);
    // Prefixes inside longer words are not keys.
    assert_none("see task-management-system-overview-2024-and-more for details");
    // Hex: git SHAs, SHA-256 sums and UUIDs are identifiers.
    assert_none("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it");
    assert_none("sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_none("request 550e8400-e29b-41d4-a716-446655440000 failed");
    // Long identifiers and paths stay under the entropy threshold or lack digits.
    for code in [
        "let total = getUserAccountBalanceForFiscalYear2024AndNextQuarter(x);",
        "fn this_is_a_very_long_function_name_for_testing_v2() {}",
        "GET https://example.com/api/v2/users/12345/orders/67890/items",
        "import com.example.project.service.impl.UserServiceImplementation2;",
        "====================================================",
        "AbstractSingletonProxyFactoryBeanDefinitionRegistry",
    ] {
        assert_none(code);
    }
}

#[test]
fn overlapping_findings_keep_the_longest() {
    // The card-shaped digits inside a valid IBAN do not split it.
    assert_one(
        "DE89 3704 0044 0532 0130 00",
        Entity::Iban,
        "DE89 3704 0044 0532 0130 00",
    );
    // An email and a phone side by side are both kept, in order.
    let got = found(&all(), "a@b.io,555-123-4567");
    assert_eq!(
        got,
        vec![
            (Entity::Email, "a@b.io".to_owned()),
            (Entity::Phone, "555-123-4567".to_owned())
        ]
    );
}

#[test]
fn only_configured_entities_are_reported() {
    let p = PiiPolicy::new(&PiiSpec {
        entities: vec![(Entity::Email, Action::Redact)],
        ..PiiSpec::default()
    })
    .unwrap();
    assert_eq!(
        found(&p, "x@y.com 555-123-4567 192.168.0.1"),
        vec![(Entity::Email, "x@y.com".to_owned())]
    );
    let none = PiiPolicy::new(&PiiSpec::default()).unwrap();
    assert!(none.is_noop());
    assert!(none.scan("x@y.com").is_empty());
}

fn custom_policy(mode: RedactMode) -> PiiPolicy {
    PiiPolicy::new(&PiiSpec {
        entities: vec![
            (Entity::Email, Action::Redact),
            (Entity::Phone, Action::Redact),
        ],
        custom: vec![CustomSpec {
            name: "employee_id".into(),
            pattern: r"EMP-\d{6}".into(),
            action: Action::Redact,
        }],
        mode,
    })
    .unwrap()
}

#[test]
fn custom_patterns() {
    let p = custom_policy(RedactMode::Mask);
    let f = p.scan("ask EMP-123456 about it");
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].entity, f[0].name), (Entity::Custom, "employee_id"));
    let mut s = PseudonymMap::new();
    let out = p.apply("ask EMP-123456 or a@b.io", &mut s);
    assert_eq!(out.text, "ask [EMPLOYEE_ID] or [EMAIL]");
    assert_eq!(out.counts.get(Entity::Custom, Action::Redact), 1);
    assert_eq!(out.counts.get(Entity::Email, Action::Redact), 1);
}

#[test]
fn spec_errors() {
    let err = |spec: PiiSpec| PiiPolicy::new(&spec).unwrap_err();
    let custom = |name: &str, pattern: &str| PiiSpec {
        custom: vec![CustomSpec {
            name: name.into(),
            pattern: pattern.into(),
            action: Action::Redact,
        }],
        ..PiiSpec::default()
    };
    assert_eq!(
        err(PiiSpec {
            entities: vec![(Entity::Custom, Action::Redact)],
            ..PiiSpec::default()
        }),
        PiiError::CustomInEntities
    );
    assert_eq!(
        err(PiiSpec {
            entities: vec![
                (Entity::Email, Action::Redact),
                (Entity::Email, Action::Block)
            ],
            ..PiiSpec::default()
        }),
        PiiError::DuplicateEntity(Entity::Email)
    );
    assert!(matches!(
        err(custom("Bad-Name", "x")),
        PiiError::InvalidName { .. }
    ));
    assert!(matches!(
        err(custom("email", "x")),
        PiiError::DuplicateName { .. }
    ));
    assert!(matches!(
        err(custom("ok", "(")),
        PiiError::InvalidPattern { .. }
    ));
    assert!(matches!(
        err(custom("ok", r"\d*")),
        PiiError::EmptyMatch { .. }
    ));
    assert_eq!("ip_address".parse::<Entity>().unwrap(), Entity::IpAddress);
    assert_eq!("log_only".parse::<Action>().unwrap(), Action::LogOnly);
    assert!("phone_number".parse::<Entity>().is_err());
    for e in Entity::ALL {
        assert_eq!(e.as_str().parse::<Entity>().unwrap(), e);
    }
}

#[test]
fn mask_mode_rewrites_and_borrows_when_clean() {
    let p = all();
    let mut s = PseudonymMap::new();
    let out = p.apply("Email john@example.com or call 555-123-4567.", &mut s);
    assert_eq!(out.text, "Email [EMAIL] or call [PHONE].");
    assert_eq!(out.counts.total(), 2);
    assert_eq!(out.blocked, None);
    assert!(s.is_empty());

    let clean = p.apply("nothing to see here", &mut s);
    assert!(matches!(clean.text, Cow::Borrowed(_)));
    assert!(clean.counts.is_empty());
}

#[test]
fn log_only_counts_but_keeps_text() {
    let mut spec = PiiSpec::all(Action::Redact);
    spec.entities.retain(|(e, _)| *e != Entity::Email);
    spec.entities.push((Entity::Email, Action::LogOnly));
    let p = PiiPolicy::new(&spec).unwrap();
    let out = p.apply("mail a@b.io", &mut PseudonymMap::new());
    assert!(matches!(out.text, Cow::Borrowed("mail a@b.io")));
    assert_eq!(out.counts.get(Entity::Email, Action::LogOnly), 1);
    assert_eq!(
        out.counts.iter().collect::<Vec<_>>(),
        vec![(Entity::Email, Action::LogOnly, 1)]
    );
}

#[test]
fn block_reports_the_entity_only() {
    let p = PiiPolicy::new(&PiiSpec {
        entities: vec![
            (Entity::Email, Action::Redact),
            (Entity::CreditCard, Action::Block),
        ],
        ..PiiSpec::default()
    })
    .unwrap();
    let text = "me@x.org pays with 4111 1111 1111 1111";
    let out = p.apply(text, &mut PseudonymMap::new());
    assert_eq!(out.blocked, Some(Entity::CreditCard));
    assert_eq!(out.text, text, "a blocked text is not rewritten");

    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    let err = p
        .apply_to_chat(body.as_object_mut().unwrap(), &mut PseudonymMap::new())
        .unwrap_err();
    assert_eq!(err.entity, Entity::CreditCard);
    let msg = err.to_string();
    assert_eq!(
        msg,
        "request blocked by PII policy: it contains credit_card"
    );
    assert!(!msg.contains("4111") && !format!("{err:?}").contains("4111"));
}

#[test]
fn pseudonyms_are_stable_per_request_and_round_trip() {
    let p = custom_policy(RedactMode::Pseudonym);
    let mut s = PseudonymMap::new();
    let text = "a@x.io wrote to b@y.io; cc a@x.io. Call 555-123-4567, badge EMP-000042.";
    let out = p.apply(text, &mut s);
    assert_eq!(
        out.text,
        "<EMAIL_1> wrote to <EMAIL_2>; cc <EMAIL_1>. Call <PHONE_1>, badge <EMPLOYEE_ID_1>."
    );
    assert_eq!(s.len(), 4);
    assert_eq!(s.original("<EMAIL_2>"), Some("b@y.io"));
    assert_eq!(s.restore_all(&out.text), text);
    // A later text of the same request reuses the numbers.
    let again = p.apply("reply to b@y.io", &mut s);
    assert_eq!(again.text, "reply to <EMAIL_2>");
    // Unknown pseudonym-like text is left alone.
    assert_eq!(s.restore_all("<EMAIL_9> <EMAIL_1"), "<EMAIL_9> <EMAIL_1");
    assert!(!format!("{s:?}").contains("x.io"));
}

fn session() -> PseudonymMap {
    let mut s = PseudonymMap::new();
    s.pseudonym("EMAIL", "ann@example.com");
    s.pseudonym("PHONE", "+1 555 123 4567");
    s
}

#[test]
fn restorer_handles_every_split_position() {
    let input = "Hello <EMAIL_1>, call <PHONE_1>.";
    let want = "Hello ann@example.com, call +1 555 123 4567.";
    let map = std::sync::Arc::new(session());
    for i in 0..=input.len() {
        let mut r = Restorer::new(map.clone());
        let mut out = r.push(&input[..i]);
        out += &r.push(&input[i..]);
        out += &r.finish();
        assert_eq!(out, want, "split at {i}");
    }
    for i in 0..=input.len() {
        for j in i..=input.len() {
            let mut r = Restorer::new(map.clone());
            let mut out = r.push(&input[..i]);
            out += &r.push(&input[i..j]);
            out += &r.push(&input[j..]);
            out += &r.finish();
            assert_eq!(out, want, "split at {i}, {j}");
        }
    }
    // One byte at a time; nothing is emitted twice and pseudonyms never leak half-restored.
    let mut r = Restorer::new(map.clone());
    let mut out = String::new();
    for c in input.chars() {
        let piece = r.push(&c.to_string());
        assert!(!piece.contains('<'), "held back: {piece:?}");
        out += &piece;
    }
    out += &r.finish();
    assert_eq!(out, want);
}

#[test]
fn restorer_releases_what_cannot_be_a_pseudonym() {
    let mut r = Restorer::new(session());
    assert_eq!(r.push("a <"), "a ");
    assert_eq!(r.push(" b"), "< b");
    assert_eq!(r.push("x <EMA"), "x ");
    assert_eq!(r.push("ZE"), "<EMAZE");
    assert_eq!(r.push("<EMAIL_1"), "");
    assert_eq!(r.push("2>"), "<EMAIL_12>");
    assert_eq!(r.push("<PHO"), "");
    assert_eq!(r.finish(), "<PHO");
    // An empty map passes everything through at once.
    let mut r = Restorer::new(PseudonymMap::new());
    assert_eq!(r.push("<EMA"), "<EMA");
    assert_eq!(r.finish(), "");
}

#[test]
fn json_restorer_escapes_originals() {
    let mut s = PseudonymMap::new();
    s.pseudonym("SECRET", "-----BEGIN PRIVATE KEY-----\n\"x\"\\");
    let raw = r#"{"content":"key: <SECRET_1>"}"#;
    let restored = s.restore_all_json(raw);
    let v: Value = serde_json::from_str(&restored).unwrap();
    assert_eq!(v["content"], "key: -----BEGIN PRIVATE KEY-----\n\"x\"\\");
    let mut r = Restorer::json(s);
    let mut out = r.push(&raw[..20]);
    out += &r.push(&raw[20..]);
    out += &r.finish();
    assert_eq!(out, restored);
}

#[test]
fn chat_body_walk() {
    let p = all();
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You help john@example.com."},
            {"role": "user", "content": [
                {"type": "text", "text": "My card is 4111 1111 1111 1111"},
                {"type": "image_url", "image_url": {"url": "https://x.io/a@b.io.png"}},
                {"type": "text", "text": "thanks"}
            ]},
            {"role": "assistant", "content": null, "tool_calls": []}
        ],
        "user": "u@x.io"
    });
    let report = p
        .apply_to_chat(body.as_object_mut().unwrap(), &mut PseudonymMap::new())
        .unwrap();
    assert_eq!(body["messages"][0]["content"], "You help [EMAIL].");
    assert_eq!(
        body["messages"][1]["content"][0]["text"],
        "My card is [CREDIT_CARD]"
    );
    assert_eq!(
        body["messages"][1]["content"][1]["image_url"]["url"],
        "https://x.io/a@b.io.png"
    );
    assert_eq!(body["user"], "u@x.io", "only prompt text is scanned");
    assert_eq!(report.texts_scanned, 3);
    assert_eq!(report.texts_changed, 2);
    assert_eq!(report.counts.get(Entity::Email, Action::Redact), 1);
    assert_eq!(report.counts.get(Entity::CreditCard, Action::Redact), 1);

    let mut completions = json!({"model": "m", "prompt": ["ip 10.1.2.3", 42, "clean"]});
    let r = p
        .apply_to_chat(
            completions.as_object_mut().unwrap(),
            &mut PseudonymMap::new(),
        )
        .unwrap();
    assert_eq!(
        completions["prompt"],
        json!(["ip [IP_ADDRESS]", 42, "clean"])
    );
    assert_eq!(r.texts_scanned, 2);

    let mut embeddings = json!({"model": "m", "input": "SSN 078-05-1120"});
    p.apply_to_chat(
        embeddings.as_object_mut().unwrap(),
        &mut PseudonymMap::new(),
    )
    .unwrap();
    assert_eq!(embeddings["input"], "SSN [SSN]");
}

#[test]
fn pathological_inputs_terminate() {
    let p = all();
    let digits = "4".repeat(20_000);
    let _ = p.scan(&digits);
    let colons = "a:".repeat(10_000);
    assert!(p.scan(&colons).is_empty());
    let dotted = "1.".repeat(10_000);
    assert!(p.scan(&dotted).is_empty());
    let multibyte = "é1-".repeat(5_000);
    let _ = p.scan(&multibyte);
    // Rejections of unbounded candidates skip ahead instead of rescanning: these would take
    // minutes if the work were quadratic.
    assert!(p.scan(&"sk-".repeat(50_000)).is_empty());
    assert!(p.scan(&format!("{}@b.co", ".".repeat(100_000))).is_empty());
    assert!(p.scan(&format!("x{}", "-sk-a1".repeat(30_000))).is_empty());
    let begins = "-----BEGIN PRIVATE KEY-----.".repeat(5_000);
    assert_eq!(p.scan(&begins).len(), 5_000);
    let pairs = "-----BEGIN PRIVATE KEY----- AAAA -----END PRIVATE KEY----- ".repeat(5_000);
    assert_eq!(p.scan(&pairs).len(), 5_000);
}
