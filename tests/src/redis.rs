//! A real `redis-server` (Debian package) on a free loopback port, for shared-state tests.
//! Persistence is off (`--save ''`); the server is killed on drop. A missing `redis-server`
//! is an error (`make deps` installs it), never a silent skip.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::free_port;

/// A running Redis.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Start one on a free port.
    pub async fn start() -> Result<RedisServer, String> {
        let port = free_port().map_err(|e| e.to_string())?;
        Self::start_on(port).await
    }

    /// Start one on `port` (e.g. to bring a killed server back).
    pub async fn start_on(port: u16) -> Result<RedisServer, String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (run `make deps`): {e}"))?;
        let server = RedisServer {
            child: Some(child),
            port,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if server.cli(&["PING"]).is_ok_and(|out| out.trim() == "PONG") {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("redis-server did not answer PING within 10s".into())
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Run `redis-cli` against this server and return its output.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Kill the server now (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
