//! The `sluice` command line: `--check-config`, `hash-key`, `--version`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::process::{Command, Stdio};

use sluice_tests::harness::{sluice_bin, workspace_dir};

#[test]
fn check_config_accepts_the_examples() {
    for name in ["quickstart.yaml", "openai.yaml", "full.yaml"] {
        let out = Command::new(sluice_bin())
            .arg("--check-config")
            .arg(workspace_dir().join("config/examples").join(name))
            .env("OPENAI_API_KEY", "sk-placeholder")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}

#[test]
fn check_config_prints_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        r#"server: { listen: "127.0.0.1:1", admin_listen: "127.0.0.1:2" }
providers:
  - { name: p, kind: openai, base_url: "ftp://x" }
models:
  - { name: a, targets: [ { provider: nope, model: x } ] }
keys:
  - { id: k, key_sha256: "abc" }
"#,
    )
    .unwrap();
    let out = Command::new(sluice_bin())
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "providers[0].base_url",
        "models[0].targets[0].provider",
        "keys[0].key_sha256",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
}

#[test]
fn check_config_names_the_field_and_line_of_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    std::fs::write(
        &path,
        "server:\n  listen: \"127.0.0.1:1\"\n  admin_listn: \"127.0.0.1:2\"\n",
    )
    .unwrap();
    let out = Command::new(sluice_bin())
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.admin_listn") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn hash_key_prints_the_sha256_digest() {
    let mut child = Command::new(sluice_bin())
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn version_and_missing_config() {
    let out = Command::new(sluice_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(sluice_bin())
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
