//! End-to-end tests of the loader: example files, parse errors with paths and lines, defaults,
//! and validation that reports every problem at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sluice_config::{
    load_file, load_str, Config, ConfigError, ConfigErrors, Endpoint, LogFormat, ProviderKind,
    StateConfig, Timeouts,
};

const DEMO_DIGEST: &str = "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213";

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, &no_env)
}

fn load_ok(text: &str) -> Config {
    match load(text) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

fn load_err(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors.into_vec(),
    }
}

/// `(path, message)` of every validation error.
fn invalid(errors: &[ConfigError]) -> Vec<(String, String)> {
    errors
        .iter()
        .map(|e| match e {
            ConfigError::Invalid { path, message } => (path.clone(), message.clone()),
            other => panic!("expected a validation error, got {other:?}"),
        })
        .collect()
}

/// The one parse error, as `(path, line, message)`.
fn parse_error(text: &str) -> (String, Option<usize>, String) {
    let errors = load_err(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0] {
        ConfigError::Parse {
            path,
            line,
            message,
        } => (path.clone(), *line, message.clone()),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

/// A minimal valid config; tests append to it or replace parts of it.
const MINIMAL: &str = r#"server:
  listen: "127.0.0.1:8080"
  admin_listen: "127.0.0.1:9090"
providers:
  - name: demo
    kind: mock
models:
  - name: mock
    targets:
      - { provider: demo, model: mock-1 }
"#;

/// MINIMAL with an openai provider whose `base_url` is `url`.
fn with_base_url(url: &str) -> String {
    format!(
        r#"server: {{ listen: "127.0.0.1:8080", admin_listen: "127.0.0.1:9090" }}
providers:
  - {{ name: up, kind: openai, base_url: "{url}" }}
models:
  - {{ name: m, targets: [{{ provider: up, model: m }}] }}
"#
    )
}

fn endpoint(config: &Config) -> &Endpoint {
    match &config.providers[0].kind {
        ProviderKind::OpenAi { endpoint, .. } => endpoint,
        ProviderKind::Mock => panic!("expected an openai provider"),
    }
}

// ---- examples ----------------------------------------------------------------------------

#[test]
fn quickstart_example_loads() {
    let config = load_file(&example("quickstart.yaml")).unwrap();
    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.server.admin_listen,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert!(!config.auth.required);
    assert_eq!(config.state, StateConfig::Memory);
    assert_eq!(config.providers.len(), 1);
    assert_eq!(config.providers[0].name, "demo");
    assert!(matches!(config.providers[0].kind, ProviderKind::Mock));
    assert_eq!(config.models.len(), 1);
    let model = config.model("mock").unwrap();
    assert_eq!(model.target.model, "mock-1");
    assert_eq!(config.provider(model.target.provider).unwrap().name, "demo");
    assert!(config.keys.is_empty());
    assert_eq!(config.logs.format, LogFormat::Text);
    assert_eq!(config.logs.level, "info");
}

#[test]
fn quickstart_explains_keyless_access() {
    let text = std::fs::read_to_string(example("quickstart.yaml")).unwrap();
    assert!(text.contains("required: false"));
    assert!(text.contains("local trials only"));
}

#[test]
fn openai_example_loads_with_env() {
    let text = std::fs::read_to_string(example("openai.yaml")).unwrap();
    let config = load_str(&text, &env_of(&[("OPENAI_API_KEY", "sk-test-123")])).unwrap();

    assert_eq!(
        config.server.listen,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.server.admin_listen,
        "0.0.0.0:9090".parse::<SocketAddr>().unwrap()
    );
    assert!(config.auth.required);
    assert_eq!(config.providers.len(), 1);
    let provider = &config.providers[0];
    let ProviderKind::OpenAi {
        endpoint,
        api_key,
        headers,
    } = &provider.kind
    else {
        panic!("expected openai, got {:?}", provider.kind);
    };
    assert_eq!(
        endpoint,
        &Endpoint {
            tls: true,
            host: "api.openai.com".into(),
            port: 443,
            base_path: "/v1".into(),
        }
    );
    assert_eq!(api_key.as_ref().unwrap().expose(), "sk-test-123");
    assert!(headers.is_empty());

    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["gpt-4o-mini", "gpt-4o"]);
    assert_eq!(config.model("gpt-4o").unwrap().target.model, "gpt-4o");

    assert_eq!(config.keys.len(), 1);
    let key = &config.keys[0];
    assert_eq!(key.id, "demo");
    assert_eq!(hex(&key.digest), DEMO_DIGEST);
    assert!(!key.disabled);

    // The secret does not leak through the Debug of the whole config.
    let shown = format!("{config:?}");
    assert!(!shown.contains("sk-test-123"), "{shown}");
    assert!(shown.contains("*****"));
}

#[test]
fn openai_example_digest_can_be_overridden() {
    let text = std::fs::read_to_string(example("openai.yaml")).unwrap();
    let other = "AB".repeat(32);
    let config = load_str(
        &text,
        &env_of(&[("OPENAI_API_KEY", "k"), ("SLUICE_KEY_SHA256", &other)]),
    )
    .unwrap();
    assert_eq!(config.keys[0].digest, [0xab; 32]);
}

#[test]
fn openai_example_without_api_key_names_the_variable_and_line() {
    let text = std::fs::read_to_string(example("openai.yaml")).unwrap();
    let errors = load_str(&text, &no_env).unwrap_err().into_vec();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let expected_line = text
        .lines()
        .position(|l| l.contains("api_key: \"${OPENAI_API_KEY}\""))
        .unwrap()
        + 1;
    match &errors[0] {
        ConfigError::Interpolation { line, message } => {
            assert_eq!(*line, expected_line);
            assert!(message.contains("`OPENAI_API_KEY`"), "{message}");
        }
        other => panic!("expected an interpolation error, got {other:?}"),
    }
}

#[test]
fn the_demo_digest_is_sha256_of_the_demo_key() {
    // Recorded with `printf %s sk-sluice-demo | sha256sum`; this guards the example against
    // an accidental edit of the digest.
    let text = std::fs::read_to_string(example("openai.yaml")).unwrap();
    assert!(text.contains(&format!("${{SLUICE_KEY_SHA256:-{DEMO_DIGEST}}}")));
    assert!(text.contains("sluice hash-key"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- load_file ---------------------------------------------------------------------------

#[test]
fn load_file_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let config = load_file(&path).unwrap();
    assert_eq!(config.models[0].name, "mock");
}

#[test]
fn load_file_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let errors = load_file(&path).unwrap_err().into_vec();
    assert_eq!(errors.len(), 1);
    match &errors[0] {
        ConfigError::Io { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(errors[0].to_string().contains("absent.yaml"));
}

// ---- defaults ----------------------------------------------------------------------------

#[test]
fn every_default_is_applied() {
    let config = load_ok(MINIMAL);
    let server = &config.server;
    assert_eq!(server.region, None);
    assert_eq!(server.max_body_bytes, 4_194_304);
    assert_eq!(server.drain_timeout, Duration::from_secs(30));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(server.threads, cpus.clamp(1, 256));
    assert!(config.auth.required, "auth.required defaults to true");
    assert_eq!(config.state, StateConfig::Memory);
    assert_eq!(config.providers[0].region, None);
    assert_eq!(
        config.models[0].timeouts,
        Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    );
    assert!(config.keys.is_empty());
    assert_eq!(config.logs.format, LogFormat::Text);
    assert_eq!(config.logs.level, "info");
}

#[test]
fn section_level_defaults_fill_missing_fields() {
    let text = format!(
        "{MINIMAL}    timeouts: {{ first_byte: 5s }}
auth: {{}}
state: {{}}
logs: {{ format: json }}
keys:
  - {{ id: k, key_sha256: \"{DEMO_DIGEST}\" }}
"
    );
    let config = load_ok(&text);
    assert!(config.auth.required);
    assert_eq!(config.state, StateConfig::Memory);
    assert_eq!(config.logs.format, LogFormat::Json);
    assert_eq!(config.logs.level, "info");
    let t = config.models[0].timeouts;
    assert_eq!(t.connect, Duration::from_secs(2));
    assert_eq!(t.first_byte, Duration::from_secs(5));
    assert_eq!(t.idle, Duration::from_secs(60));
    assert_eq!(t.total, Duration::from_secs(600));
    assert!(!config.keys[0].disabled);
    assert_eq!(config.keys[0].models, None);
}

#[test]
fn explicit_values_override_defaults() {
    let text = r#"server:
  listen: "[::1]:8080"
  admin_listen: "[::1]:9090"
  region: eu-west-1
  max_body_bytes: 1024
  drain_timeout: 1m 30s
  threads: 3
auth: { required: false }
providers:
  - { name: p.1_a-b, kind: mock, region: eu-west-1 }
models:
  - name: m
    targets: [{ provider: p.1_a-b, model: x }]
    timeouts: { connect: 50ms, first_byte: 1s, idle: 2h, total: 1s }
keys:
  - { id: Team_A.1, key_sha256: "ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD", models: [m], disabled: true }
logs: { format: json, level: "sluice=debug,info" }
"#;
    let config = load_ok(text);
    assert_eq!(config.server.listen.to_string(), "[::1]:8080");
    assert_eq!(config.server.region.as_deref(), Some("eu-west-1"));
    assert_eq!(config.server.max_body_bytes, 1024);
    assert_eq!(config.server.drain_timeout, Duration::from_secs(90));
    assert_eq!(config.server.threads, 3);
    assert!(!config.auth.required);
    assert_eq!(config.providers[0].region.as_deref(), Some("eu-west-1"));
    let t = config.models[0].timeouts;
    assert_eq!(t.connect, Duration::from_millis(50));
    assert_eq!(t.idle, Duration::from_secs(7200));
    assert_eq!(t.total, Duration::from_secs(1));
    let key = &config.keys[0];
    assert_eq!(key.id, "Team_A.1");
    assert_eq!(key.digest[0], 0xab);
    assert_eq!(key.digest[31], 0xcd);
    assert_eq!(key.models.as_deref(), Some(&["m".to_owned()][..]));
    assert!(key.disabled);
    assert_eq!(config.logs.level, "sluice=debug,info");
}

// ---- parse errors ------------------------------------------------------------------------

#[test]
fn unknown_field_names_path_and_line() {
    let (path, line, message) = parse_error(
        "server:\n  listn: \"0.0.0.0:8080\"\n  admin_listen: \"0.0.0.0:9090\"\nproviders: []\nmodels: []\n",
    );
    assert_eq!(path, "server.listn");
    assert_eq!(line, Some(2));
    assert!(
        message.starts_with("unknown field `listn`, expected one of"),
        "{message}"
    );
    assert!(message.contains("`listen`"), "{message}");
}

#[test]
fn unknown_field_deep_in_a_sequence() {
    let text = MINIMAL.replace(
        "      - { provider: demo, model: mock-1 }",
        "      - { provider: demo, model: mock-1, weight: 3 }",
    );
    let (path, line, message) = parse_error(&text);
    assert_eq!(path, "models[0].targets[0].weight");
    assert_eq!(line, Some(10));
    assert!(message.contains("unknown field `weight`"), "{message}");
}

#[test]
fn unknown_top_level_section() {
    let (path, line, message) = parse_error(&format!("{MINIMAL}cache: {{}}\n"));
    assert_eq!(path, "cache");
    assert_eq!(line, Some(11));
    assert!(message.contains("unknown field `cache`"), "{message}");
}

#[test]
fn wrong_type_names_path_and_line() {
    let text = MINIMAL.replace(
        "  admin_listen: \"127.0.0.1:9090\"\n",
        "  admin_listen: \"127.0.0.1:9090\"\n  max_body_bytes: lots\n",
    );
    let (path, line, message) = parse_error(&text);
    assert_eq!(path, "server.max_body_bytes");
    assert_eq!(line, Some(4));
    assert!(message.contains("invalid type"), "{message}");

    let text = MINIMAL.replace("provider: demo", "provider: [demo]");
    let (path, line, _) = parse_error(&text);
    assert_eq!(path, "models[0].targets[0].provider");
    assert_eq!(line, Some(10));

    let text = MINIMAL.replace("\"127.0.0.1:8080\"", "localhost:8080");
    let (path, line, message) = parse_error(&text);
    assert_eq!(path, "server.listen");
    assert_eq!(line, Some(2));
    assert!(message.contains("socket address"), "{message}");
}

#[test]
fn unknown_enum_value_names_path() {
    let text = MINIMAL.replace("kind: mock", "kind: anthropic");
    let (path, line, message) = parse_error(&text);
    assert_eq!(path, "providers[0].kind");
    assert_eq!(line, Some(6));
    assert!(message.contains("unknown variant `anthropic`"), "{message}");

    let (path, _, _) = parse_error(&format!("{MINIMAL}logs: {{ format: xml }}\n"));
    assert_eq!(path, "logs.format");
}

#[test]
fn bad_duration_is_a_parse_error_with_path() {
    let (path, line, message) =
        parse_error(&format!("{MINIMAL}    timeouts: {{ total: 5 parsecs }}\n"));
    assert_eq!(path, "models[0].timeouts.total");
    assert_eq!(line, Some(11));
    assert!(
        message.contains("invalid duration `5 parsecs`"),
        "{message}"
    );

    let text = MINIMAL.replace(
        "  admin_listen: \"127.0.0.1:9090\"\n",
        "  admin_listen: \"127.0.0.1:9090\"\n  drain_timeout: 30\n",
    );
    let (path, line, message) = parse_error(&text);
    assert_eq!(path, "server.drain_timeout");
    assert_eq!(line, Some(4));
    assert!(message.contains("duration"), "{message}");
}

#[test]
fn missing_required_fields() {
    let (path, _, message) = parse_error("server: { listen: \"127.0.0.1:1\" }\n");
    assert_eq!(path, "server");
    assert!(
        message.contains("missing field `admin_listen`"),
        "{message}"
    );

    let (path, _, message) =
        parse_error("server: { listen: \"127.0.0.1:1\", admin_listen: \"127.0.0.1:2\" }\n");
    assert_eq!(path, "");
    assert!(message.contains("missing field `providers`"), "{message}");
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let text = MINIMAL.replace("    kind: mock", "   kind: mock");
    let (path, line, message) = parse_error(&text);
    assert_eq!(path, "");
    assert_eq!(line, Some(6));
    assert!(message.starts_with("invalid YAML"), "{message}");
}

#[test]
fn empty_document_is_an_error() {
    for text in ["", "\n# only a comment\n"] {
        let (_, _, message) = parse_error(text);
        assert!(message.contains("empty"), "{message}");
    }
}

#[test]
fn parse_error_display_has_path_and_line() {
    let errors = load("server:\n  listn: x\n").unwrap_err();
    let shown = errors.to_string();
    assert!(
        shown.starts_with("server.listn: unknown field `listn`"),
        "{shown}"
    );
    assert!(shown.ends_with("(line 2)"), "{shown}");
}

// ---- validation --------------------------------------------------------------------------

#[test]
fn many_validation_errors_are_reported_together() {
    let text = r#"server:
  listen: "127.0.0.1:8080"
  admin_listen: "127.0.0.1:8080"
  max_body_bytes: 10
  threads: 0
state: { backend: redis }
providers:
  - { name: OpenAI, kind: openai }
  - { name: demo, kind: mock, base_url: "http://localhost" }
models:
  - name: a
    targets: [{ provider: demo, model: x }]
  - name: b
    targets: [{ provider: nope, model: "" }]
    timeouts: { connect: 0s, first_byte: 20m, total: 10m }
keys:
  - { id: "bad id", key_sha256: "abc", models: [zzz] }
logs: { level: " " }
"#;
    let errors = load(text).unwrap_err();
    let found = invalid(&errors.0);
    let expect = [
        ("server.admin_listen", "must differ from server.listen"),
        ("server.max_body_bytes", "at least 1024"),
        ("server.threads", "between 1 and 256"),
        ("state.redis_url", "required with `backend: redis`"),
        ("providers[0].name", "invalid provider name `OpenAI`"),
        ("providers[0].base_url", "required for kind `openai`"),
        ("providers[1].base_url", "not allowed for kind `mock`"),
        ("models[1].targets[0].provider", "unknown provider `nope`"),
        ("models[1].targets[0].model", "must not be empty"),
        ("models[1].timeouts.connect", "greater than zero"),
        ("models[1].timeouts.first_byte", "exceeds"),
        ("keys[0].id", "invalid key id `bad id`"),
        ("keys[0].key_sha256", "64 hex"),
        ("keys[0].models[0]", "unknown model `zzz`"),
        ("logs.level", "must not be empty"),
    ];
    for (path, needle) in expect {
        assert!(
            found.iter().any(|(p, m)| p == path && m.contains(needle)),
            "missing `{path}: ...{needle}...` in:\n{errors}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{errors}");
    // One line per error in Display.
    assert_eq!(errors.to_string().lines().count(), expect.len());
    assert!(errors
        .to_string()
        .contains("models[1].targets[0].provider: unknown provider `nope`"));
}

#[test]
fn duplicate_provider_names() {
    let text = r#"server: { listen: "127.0.0.1:1", admin_listen: "127.0.0.1:2" }
providers:
  - { name: demo, kind: mock }
  - { name: other, kind: mock }
  - { name: demo, kind: mock }
models:
  - { name: m, targets: [{ provider: demo, model: x }] }
"#;
    let found = invalid(&load_err(text));
    assert_eq!(
        found,
        [(
            "providers[2].name".to_owned(),
            "duplicate provider name `demo` (already used by providers[0])".to_owned()
        )]
    );
}

#[test]
fn duplicate_model_names() {
    let text =
        format!("{MINIMAL}  - {{ name: mock, targets: [{{ provider: demo, model: y }}] }}\n");
    let found = invalid(&load_err(&text));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "models[1].name");
    assert!(
        found[0].1.contains("duplicate model name `mock`"),
        "{found:?}"
    );
}

#[test]
fn duplicate_key_ids_and_digests() {
    let upper = DEMO_DIGEST.to_uppercase();
    let text = format!(
        r#"{MINIMAL}keys:
  - {{ id: a, key_sha256: "{DEMO_DIGEST}" }}
  - {{ id: a, key_sha256: "{}" }}
  - {{ id: c, key_sha256: "{upper}" }}
"#,
        "0".repeat(64)
    );
    let found = invalid(&load_err(&text));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "keys[1].id");
    assert!(found[0].1.contains("duplicate key id `a`"), "{found:?}");
    // Digests are compared as bytes: upper and lower case are the same key.
    assert_eq!(found[1].0, "keys[2].key_sha256");
    assert!(found[1].1.contains("same digest as keys[0]"), "{found:?}");
}

#[test]
fn bad_hex_digest() {
    let bad_char = format!("{}g", &DEMO_DIGEST[..63]);
    let too_long = format!("{DEMO_DIGEST}00");
    for (digest, needle) in [
        (bad_char.as_str(), "non-hex"),
        ("sk-sluice-demo", "got 14 characters"),
        (too_long.as_str(), "got 66 characters"),
        ("", "got 0 characters"),
    ] {
        let text = format!("{MINIMAL}keys:\n  - {{ id: a, key_sha256: \"{digest}\" }}\n");
        let found = invalid(&load_err(&text));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "keys[0].key_sha256");
        assert!(found[0].1.contains(needle), "{digest}: {found:?}");
        if !digest.is_empty() {
            // The value is never echoed: a raw key pasted here must not reach the logs.
            assert!(!found[0].1.contains(digest), "{found:?}");
        }
    }
}

#[test]
fn zero_targets_and_multi_target() {
    let text = r#"server: { listen: "127.0.0.1:1", admin_listen: "127.0.0.1:2" }
providers:
  - { name: a, kind: mock }
  - { name: b, kind: mock }
models:
  - { name: none, targets: [] }
  - { name: two, targets: [{ provider: a, model: x }, { provider: b, model: y }] }
"#;
    let found = invalid(&load_err(text));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "models[0].targets");
    assert!(found[0].1.contains("exactly one target"), "{found:?}");
    assert_eq!(found[1].0, "models[1].targets");
    assert!(
        found[1]
            .1
            .contains("multi-target routing is not supported by this build yet"),
        "{found:?}"
    );
}

#[test]
fn empty_providers_and_models() {
    let text = "server: { listen: \"127.0.0.1:1\", admin_listen: \"127.0.0.1:2\" }\nproviders: []\nmodels: []\n";
    let found = invalid(&load_err(text));
    assert_eq!(
        found.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["providers", "models"]
    );
}

#[test]
fn auth_required_without_keys_is_valid() {
    let config = load_ok(&format!("{MINIMAL}auth: {{ required: true }}\n"));
    assert!(config.auth.required);
    assert!(config.keys.is_empty());
}

#[test]
fn listeners_may_both_use_ephemeral_ports() {
    let text = MINIMAL
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    let config = load_ok(&text);
    assert_eq!(config.server.listen.port(), 0);
}

#[test]
fn wildcard_listener_overlaps_a_specific_one() {
    let text = MINIMAL
        .replace("127.0.0.1:8080", "0.0.0.0:8080")
        .replace("127.0.0.1:9090", "127.0.0.1:8080");
    let found = invalid(&load_err(&text));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "server.admin_listen");
}

#[test]
fn threads_upper_bound() {
    let ok = MINIMAL.replace(
        "  admin_listen: \"127.0.0.1:9090\"\n",
        "  admin_listen: \"127.0.0.1:9090\"\n  threads: 256\n",
    );
    assert_eq!(load_ok(&ok).server.threads, 256);
    let bad = ok.replace("threads: 256", "threads: 257");
    let found = invalid(&load_err(&bad));
    assert_eq!(found[0].0, "server.threads");
}

// ---- providers ---------------------------------------------------------------------------

#[test]
fn base_url_http_default_port() {
    let config = load_ok(&with_base_url("http://localhost/v1"));
    assert_eq!(
        endpoint(&config),
        &Endpoint {
            tls: false,
            host: "localhost".into(),
            port: 80,
            base_path: "/v1".into(),
        }
    );
}

#[test]
fn base_url_https_default_port() {
    let config = load_ok(&with_base_url("https://api.example.com/openai/v1"));
    let e = endpoint(&config);
    assert!(e.tls);
    assert_eq!(e.port, 443);
    assert_eq!(e.base_path, "/openai/v1");
}

#[test]
fn base_url_explicit_port() {
    let config = load_ok(&with_base_url("http://127.0.0.1:11434"));
    let e = endpoint(&config);
    assert_eq!(e.host, "127.0.0.1");
    assert_eq!(e.port, 11434);
    assert_eq!(e.base_path, "");
}

#[test]
fn base_url_ipv6_literal() {
    let config = load_ok(&with_base_url("http://[::1]:8081/v1"));
    let e = endpoint(&config);
    assert_eq!(e.host, "::1");
    assert_eq!(e.port, 8081);
    assert_eq!(e.base_path, "/v1");
    assert_eq!(e.authority(), "[::1]:8081");
}

#[test]
fn base_url_trailing_slash_stripped() {
    let config = load_ok(&with_base_url("https://api.openai.com/v1/"));
    assert_eq!(endpoint(&config).base_path, "/v1");
    let config = load_ok(&with_base_url("https://api.openai.com/"));
    assert_eq!(endpoint(&config).base_path, "");
}

#[test]
fn base_url_rejections() {
    for (url, needle) in [
        ("ftp://example.com/v1", "unsupported scheme `ftp`"),
        ("https://example.com/v1?api-version=1", "query"),
        ("https://example.com/v1#x", "fragment"),
        ("example.com/v1", "invalid URL"),
    ] {
        let found = invalid(&load_err(&with_base_url(url)));
        assert_eq!(found.len(), 1, "{url}: {found:?}");
        assert_eq!(found[0].0, "providers[0].base_url");
        assert!(found[0].1.contains(needle), "{url}: {found:?}");
    }
}

#[test]
fn empty_api_key_is_none() {
    let text = with_base_url("https://api.openai.com/v1")
        .replace("base_url:", "api_key: \"${OPENAI_API_KEY:-}\", base_url:");
    let config = load_ok(&text);
    let ProviderKind::OpenAi { api_key, .. } = &config.providers[0].kind else {
        panic!("expected openai");
    };
    assert!(api_key.is_none());
}

#[test]
fn api_key_and_headers_are_openai_only() {
    let text = MINIMAL.replace(
        "    kind: mock\n",
        "    kind: mock\n    api_key: sk-x\n    headers: { X-A: b }\n",
    );
    let found = invalid(&load_err(&text));
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["providers[0].api_key", "providers[0].headers"]);
    // The key does not appear in the error.
    assert!(found.iter().all(|(_, m)| !m.contains("sk-x")));
}

#[test]
fn headers_are_validated() {
    let text = with_base_url("https://api.openai.com/v1").replace(
        "base_url:",
        r#"headers: { OpenAI-Organization: org-1, "Bad Name": x, X-Tab: "a\tb", Host: h, x-dup: 1, X-Dup: 2 }, base_url:"#,
    );
    let found = invalid(&load_err(&text));
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    // BTreeMap order: uppercase before lowercase.
    assert_eq!(
        paths,
        [
            "providers[0].headers.Bad Name",
            "providers[0].headers.Host",
            "providers[0].headers.X-Tab",
            "providers[0].headers.x-dup",
        ],
        "{found:?}"
    );
}

#[test]
fn valid_headers_are_kept() {
    let text = with_base_url("https://api.openai.com/v1").replace(
        "base_url:",
        "headers: { OpenAI-Organization: org-1, X-Title: \"My app (v2)\" }, base_url:",
    );
    let config = load_ok(&text);
    let ProviderKind::OpenAi { headers, .. } = &config.providers[0].kind else {
        panic!("expected openai");
    };
    assert_eq!(headers.len(), 2);
    assert_eq!(headers["OpenAI-Organization"], "org-1");
    assert_eq!(headers["X-Title"], "My app (v2)");
}

#[test]
fn model_references_resolve_to_provider_indices() {
    let text = r#"server: { listen: "127.0.0.1:1", admin_listen: "127.0.0.1:2" }
providers:
  - { name: a, kind: mock }
  - { name: b, kind: mock }
models:
  - { name: to-b, targets: [{ provider: b, model: x }] }
  - { name: to-a, targets: [{ provider: a, model: y }] }
"#;
    let config = load_ok(text);
    assert_eq!(config.model("to-b").unwrap().target.provider, 1);
    assert_eq!(config.model("to-a").unwrap().target.provider, 0);
    assert!(config.model("nope").is_none());
}

// ---- interpolation through the loader ----------------------------------------------------

#[test]
fn interpolated_values_reach_the_config() {
    let text = r#"server:
  listen: "${LISTEN:-127.0.0.1:8080}"
  admin_listen: "127.0.0.1:${ADMIN_PORT}"
  region: ${REGION:-local}
providers:
  - { name: demo, kind: mock }
models:
  - { name: "$${literal}", targets: [{ provider: demo, model: "${UPSTREAM_MODEL}" }] }
"#;
    let config = load_str(
        text,
        &env_of(&[("ADMIN_PORT", "9999"), ("UPSTREAM_MODEL", r#"we"ird\"#)]),
    )
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.admin_listen.port(), 9999);
    assert_eq!(config.server.region.as_deref(), Some("local"));
    assert_eq!(config.models[0].name, "${literal}");
    assert_eq!(config.models[0].target.model, r#"we"ird\"#);
}

#[test]
fn interpolation_cannot_inject_keys() {
    let text = format!("{MINIMAL}logs: {{ level: \"${{LEVEL}}\" }}\n");
    // A quote cannot end the string early...
    let config = load_str(&text, &env_of(&[("LEVEL", r#"info", format: "json"#)])).unwrap();
    assert_eq!(config.logs.format, LogFormat::Text);
    assert_eq!(config.logs.level, r#"info", format: "json"#);
    // ...and a line break is refused outright.
    let errors = load_str(
        &text,
        &env_of(&[("LEVEL", "info\nauth: {required: false}")]),
    )
    .unwrap_err()
    .into_vec();
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(errors[0], ConfigError::Interpolation { line: 11, .. }),
        "{errors:?}"
    );
}

const LIMITS_CONFIG: &str = r#"
server: { listen: "127.0.0.1:8080", admin_listen: "127.0.0.1:9090" }
providers: [ { name: demo, kind: mock } ]
models:
  - name: m
    targets: [ { provider: demo, model: mock-1 } ]
    price: { input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075 }
    limits: { rpm: 10000, tpm: 2000000, max_concurrent: 50 }
    max_output_tokens: 16384
    tokenizer: o200k_base
teams:
  - { name: research, tpm: 500000, budget_usd_per_month: 1000 }
keys:
  - id: team-a
    key_sha256: "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213"
    team: research
    rpm: 600
    tpm: 200000
    max_concurrent: 4
    budget_usd_per_day: 50
    max_tokens: 4096
    on_exceed: reject
    model_limits: { m: { tpm: 1000 } }
"#;

#[test]
fn limits_budgets_teams_and_prices_load() {
    let c = load_ok(LIMITS_CONFIG);
    let m = &c.models[0];
    assert_eq!(m.limits.rpm, Some(10_000));
    assert_eq!(m.limits.max_concurrent, Some(50));
    assert_eq!(m.max_output_tokens, Some(16_384));
    assert_eq!(m.tokenizer.as_deref(), Some("o200k_base"));
    let price = m.price.unwrap();
    assert_eq!(price.cached_input_per_mtok, Some(0.075));
    let t = &c.teams[0];
    assert_eq!(t.limits.tpm, Some(500_000));
    assert_eq!(t.budgets.per_month_micros, Some(1_000_000_000));
    let k = &c.keys[0];
    assert_eq!(k.team.as_deref(), Some("research"));
    assert_eq!(
        (k.limits.rpm, k.limits.tpm, k.limits.max_concurrent),
        (Some(600), Some(200_000), Some(4))
    );
    assert_eq!(k.budgets.per_day_micros, Some(50_000_000));
    assert_eq!(k.max_tokens, Some(4096));
    assert_eq!(k.on_exceed, sluice_config::OnExceed::Reject);
    assert_eq!(k.model_limits["m"].tpm, Some(1000));
}

#[test]
fn limit_errors_are_all_reported() {
    let bad = LIMITS_CONFIG
        .replace("team: research", "team: reserach")
        .replace("rpm: 600", "rpm: 0")
        .replace("budget_usd_per_day: 50", "budget_usd_per_day: -5")
        .replace(
            "model_limits: { m: { tpm: 1000 } }",
            "model_limits: { nope: { tpm: 1000 } }",
        )
        .replace("tokenizer: o200k_base", "tokenizer: gpt2")
        .replace("output_per_mtok: 0.6", "output_per_mtok: -1");
    let errors = invalid(&load_err(&bad));
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "keys[0].team",
        "keys[0].rpm",
        "keys[0].budget_usd_per_day",
        "keys[0].model_limits.nope",
        "models[0].tokenizer",
        "models[0].price.output_per_mtok",
    ] {
        assert!(
            paths.contains(&expected),
            "missing {expected} in {errors:?}"
        );
    }
    // A typo inside a limits block names the field.
    let (path, _, _) =
        parse_error(&LIMITS_CONFIG.replace("max_concurrent: 50", "max_concurent: 50"));
    assert_eq!(path, "models[0].limits.max_concurent");
}

#[test]
fn redis_state_loads_with_defaults_and_checks_its_fields() {
    let base = LIMITS_CONFIG.replace(
        "providers:",
        "state: { backend: redis, redis_url: \"redis://127.0.0.1:6379\", replicas: 3 }\nproviders:",
    );
    let c = load_ok(&base);
    let sluice_config::StateConfig::Redis(r) = &c.state else {
        panic!("not redis: {:?}", c.state)
    };
    assert_eq!(r.url.expose(), "redis://127.0.0.1:6379");
    assert!(r.fail_open);
    assert_eq!(r.replicas, 3);
    assert_eq!(r.timeout, Duration::from_millis(50));
    assert_eq!(r.key_prefix, "sluice");
    let bad = base
        .replace("redis://127.0.0.1:6379", "http://x")
        .replace("replicas: 3", "replicas: 0");
    let errors = invalid(&load_err(&bad));
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"state.redis_url") && paths.contains(&"state.replicas"),
        "{errors:?}"
    );
}

#[test]
fn full_example_loads_with_env() {
    let c = load_file_with(
        &example("full.yaml"),
        &env_of(&[("OPENAI_API_KEY", "sk-test")]),
    );
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.teams[0].name, "research");
    assert!(c.pii.is_some());
    assert_eq!(
        c.keys[1].pii.as_ref().unwrap().as_ref().unwrap().mode,
        "pseudonym"
    );
}

fn load_file_with(path: &std::path::Path, env: &dyn Fn(&str) -> Option<String>) -> Config {
    let text = std::fs::read_to_string(path).unwrap();
    match load_str(&text, env) {
        Ok(c) => c,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}
