//! SDK compatibility: the official `openai` Python SDK against a real `sluice` process in front
//! of the fake upstream (`tests/python/openai_sdk_check.py` does the SDK calls and checks).
//!
//! Needs the Python virtualenv from `make deps` (`.cache/venv`); `SLUICE_PYTHON` overrides the
//! interpreter. A missing interpreter fails the test: it is never skipped silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_tests::fake::{FakeLlm, FakeOptions};
use sluice_tests::harness::{workspace_dir, Sluice};

/// The virtual key the SDK uses; allowed for `gpt-test` only.
const GOOD_KEY: &str = "sk-sdk-good";
/// A key that is not configured.
const BAD_KEY: &str = "sk-sdk-unknown";
/// The provider credential Sluice sends upstream.
const UPSTREAM_KEY: &str = "sk-upstream";
/// Upper bound for the whole Python run.
const SDK_TIMEOUT: Duration = Duration::from_secs(120);

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The interpreter: `$SLUICE_PYTHON`, else `<workspace>/.cache/venv/bin/python`. A relative
/// `SLUICE_PYTHON` (e.g. `.cache/venv/bin/python`) is relative to the workspace, not to the
/// test's working directory (the crate folder). Missing → the test fails, never skips.
fn python() -> PathBuf {
    let python = match std::env::var_os("SLUICE_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_dir().join(".cache/venv/bin/python"),
    };
    let python = if python.is_relative() {
        workspace_dir().join(python)
    } else {
        python
    };
    assert!(
        python.exists(),
        "Python interpreter {} not found: run `make deps` (scripts/install-deps.sh) to create \
         .cache/venv with the openai SDK, or set SLUICE_PYTHON",
        python.display()
    );
    python
}

fn config(upstream: &str) -> String {
    format!(
        r#"auth: {{ required: true }}
providers:
  - {{ name: fake, kind: openai, base_url: "{upstream}", api_key: "{UPSTREAM_KEY}" }}
models:
  - {{ name: gpt-test, targets: [ {{ provider: fake, model: echo }} ] }}
  - {{ name: other, targets: [ {{ provider: fake, model: echo }} ] }}
keys:
  - {{ id: team-a, key_sha256: "{digest}", models: [gpt-test] }}
"#,
        digest = sha256_hex(GOOD_KEY),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_against_sluice() {
    let python = python();
    let script = workspace_dir().join("tests/python/openai_sdk_check.py");
    assert!(script.exists(), "{} is missing", script.display());

    let fake = FakeLlm::start_with(FakeOptions {
        require_api_key: Some(UPSTREAM_KEY.into()),
    })
    .await
    .expect("start fake upstream");
    let sluice = Sluice::start(&config(&fake.base_url()))
        .await
        .unwrap_or_else(|e| panic!("start sluice: {e}"));

    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .current_dir(workspace_dir())
        .env("SLUICE_BASE_URL", sluice.base_url())
        .env("SLUICE_KEY", GOOD_KEY)
        .env("SLUICE_BAD_KEY", BAD_KEY)
        // Loopback only: never route the SDK through a proxy from the environment.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): run `make deps` or set SLUICE_PYTHON",
            python.display()
        )
    });
    let out = match tokio::time::timeout(SDK_TIMEOUT, child.wait_with_output()).await {
        Ok(res) => res.expect("wait for the python SDK check"),
        Err(_) => panic!(
            "{} timed out after {SDK_TIMEOUT:?} (child killed)",
            script.display()
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("---- openai_sdk_check.py stdout ----\n{stdout}");
    if !stderr.trim().is_empty() {
        eprintln!("---- openai_sdk_check.py stderr ----\n{stderr}");
    }
    assert!(
        out.status.success(),
        "openai SDK checks failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("openai SDK checks passed"),
        "the script exited 0 without reporting that all checks passed:\n{stdout}"
    );

    // Upstream credentials: always Sluice's provider key, never the client's virtual key.
    let requests = fake.requests();
    assert!(
        !requests.is_empty(),
        "the fake upstream received no request"
    );
    let want = format!("Bearer {UPSTREAM_KEY}");
    for r in &requests {
        let auth: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            auth,
            vec![want.as_str()],
            "{} {}: upstream authorization header(s) should be exactly [{want:?}]",
            r.method,
            r.path
        );
        for (k, v) in &r.headers {
            assert!(
                !v.contains(GOOD_KEY) && !v.contains(BAD_KEY),
                "{} {}: client key leaked upstream in header {k}: {v}",
                r.method,
                r.path
            );
        }
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(GOOD_KEY) && !body.contains(BAD_KEY),
            "{} {}: client key leaked upstream in the body",
            r.method,
            r.path
        );
    }
    // Only allowed, known, valid requests reach the upstream: 2 chat + 1 stream + 1 embeddings.
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| **p == "/v1/chat/completions")
            .count(),
        3,
        "upstream chat requests: {paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| **p == "/v1/embeddings").count(),
        1,
        "upstream embeddings requests: {paths:?}"
    );
    for r in requests
        .iter()
        .filter(|r| r.path != "/v1/models" && r.method == "POST")
    {
        let model = r
            .json()
            .and_then(|v| v["model"].as_str().map(str::to_owned));
        assert_eq!(
            model.as_deref(),
            Some("echo"),
            "{}: the upstream should get the target model name",
            r.path
        );
    }
    drop(sluice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_sees_restored_pii_pseudonyms() {
    let python = python();
    let fake = FakeLlm::start().await.expect("start fake upstream");
    let cfg = format!(
        r#"auth: {{ required: false }}
providers:
  - {{ name: fake, kind: openai, base_url: "{}" }}
models:
  - {{ name: pii-json, targets: [ {{ provider: fake, model: echo }} ] }}
  - {{ name: pii-stream, targets: [ {{ provider: fake, model: "chunks-60-0" }} ] }}
guardrails:
  pii: {{ action: redact, mode: pseudonym, restore: true }}
"#,
        fake.base_url()
    );
    let sluice = Sluice::start(&cfg)
        .await
        .unwrap_or_else(|e| panic!("start sluice: {e}"));
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(workspace_dir().join("tests/python/openai_sdk_pii.py"))
        .env("SLUICE_BASE_URL", sluice.base_url())
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("run python");
    let out = tokio::time::timeout(SDK_TIMEOUT, child.wait_with_output())
        .await
        .expect("python timed out")
        .expect("wait for python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("pii SDK checks passed"),
        "--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    // The provider only ever saw pseudonyms.
    for r in fake.requests() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("jane.doe@example.com"),
            "raw PII reached the provider"
        );
        assert!(body.contains("<EMAIL_1>"), "{body}");
    }
}
