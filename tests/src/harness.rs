//! Harness: start a real `sluice` process on free loopback ports with a config built in the test.
//!
//! The binary comes from the workspace target directory (`make test` builds it first; set
//! `SLUICE_BIN` to use another). Its output goes to a log file that [`Sluice::logs`] reads and
//! that is printed when a test fails.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a gateway may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the `sluice` binary under test.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    target_dir().join("debug").join("sluice")
}

/// The workspace target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        },
        PathBuf::from,
    )
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free loopback port (bound and released; the OS hands out ephemeral ports in a cycle, so a
/// collision right after is unlikely, and [`Sluice::start`] retries if one happens).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running gateway process. Killed on drop.
pub struct Sluice {
    child: Option<Child>,
    /// API listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

/// Extra `server:` settings, each a YAML line such as `drain_timeout: 2s`.
#[derive(Debug, Clone, Default)]
pub struct ServerExtra(pub Vec<String>);

impl Sluice {
    /// Start with `body` (every top-level section except `server:`).
    pub async fn start(body: &str) -> Result<Sluice, String> {
        Self::start_with(&ServerExtra::default(), body).await
    }

    /// Start with extra `server:` lines.
    pub async fn start_with(extra: &ServerExtra, body: &str) -> Result<Sluice, String> {
        let bin = sluice_bin();
        if !bin.exists() {
            return Err(format!(
                "{} is missing: build it first (`cargo build -p sluice --bin sluice`, done by `make test`)",
                bin.display()
            ));
        }
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin, extra, body).await {
                Ok(s) => return Ok(s),
                // A port picked as free can be taken by a parallel test before Sluice binds it.
                Err(e)
                    if e.contains("cannot listen")
                        || e.contains("Address already in use")
                        || e.contains("exited early") =>
                {
                    last_err = e
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    async fn try_start(bin: &Path, extra: &ServerExtra, body: &str) -> Result<Sluice, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ports = (free_port(), free_port());
        let (Ok(p1), Ok(p2)) = ports else {
            return Err("no free port".into());
        };
        let addr: SocketAddr = ([127, 0, 0, 1], p1).into();
        let admin: SocketAddr = ([127, 0, 0, 1], p2).into();
        let mut s = Sluice {
            child: None,
            addr,
            admin,
            dir,
        };
        s.write_config_with(extra, body)
            .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(s.log_path()).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(s.config_path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        s.child = Some(child);
        s.wait_ready().await?;
        Ok(s)
    }

    /// Write a new config (same ports) — for reload tests.
    pub fn write_config(&self, body: &str) -> std::io::Result<()> {
        self.write_config_with(&ServerExtra::default(), body)
    }

    /// Write a new config with extra `server:` lines.
    pub fn write_config_with(&self, extra: &ServerExtra, body: &str) -> std::io::Result<()> {
        let mut yaml = format!(
            "server:\n  listen: \"{}\"\n  admin_listen: \"{}\"\n  threads: 2\n",
            self.addr, self.admin
        );
        for line in &extra.0 {
            yaml.push_str("  ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str(body);
        // Write then rename so the watcher never sees a half-written file.
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(tmp, self.config_path())
    }

    /// Raw text to the config file (may be invalid on purpose).
    pub fn write_raw_config(&self, text: &str) -> std::io::Result<()> {
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, self.config_path())
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sluice.log")
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT/v1`, the SDK `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}` on the API listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...).
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        let Some(pid) = self.pid() else {
            return Err(std::io::Error::other("not running"));
        };
        let pid = i32::try_from(pid).map_err(std::io::Error::other)?;
        let rc = nix_kill(pid, sig);
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::other("kill failed"))
        }
    }

    /// Wait for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Fetch an admin path's body.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        let resp = reqwest::get(self.admin_url(path))
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    }

    /// The value of one sample in `/metrics` (exact series text, e.g.
    /// `sluice_config_reloads_total{result="error"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let Ok((_, text)) = self.admin_get("/metrics").await else {
            return 0.0;
        };
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let client = reqwest::Client::new();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("sluice exited early ({status}):\n{}", self.logs()));
                }
            }
            if let Ok(r) = client.get(self.admin_url("/readyz")).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "sluice not ready after {READY_TIMEOUT:?}:\n{}",
            self.logs()
        ))
    }
}

fn nix_kill(pid: i32, sig: i32) -> i32 {
    // The `kill` utility keeps this crate free of unsafe code.
    match Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
    {
        Ok(s) if s.success() => 0,
        _ => -1,
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!("---- sluice log (last 60 lines) ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
