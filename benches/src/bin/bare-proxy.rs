//! `bare-proxy`: the "bare Pingora passthrough" baseline for `load.sh`.
//!
//! A `ProxyHttp` with nothing but `upstream_peer`: every request goes to one plain HTTP/1.1
//! upstream over Pingora's pooled keep-alive connections, with no filters, no body inspection
//! and no logging. Whatever Sluice costs on top of this is Sluice's own work.
//!
//! Usage: `bare-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--threads N]`.
//! Exits on SIGTERM/SIGINT without a grace period.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

/// Bare Pingora passthrough proxy (benchmark baseline).
#[derive(Parser)]
#[command(name = "bare-proxy")]
struct Cli {
    /// Address to listen on (loopback only).
    #[arg(long)]
    listen: SocketAddr,
    /// The single upstream (loopback only).
    #[arg(long)]
    upstream: SocketAddr,
    /// Pingora worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Forwards everything to one upstream.
struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        // Same pool idle time as Sluice's upstream pool (gateway/src/state.rs).
        peer.options.idle_timeout = Some(Duration::from_secs(90));
        Ok(Box::new(peer))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for (what, addr) in [("--listen", cli.listen), ("--upstream", cli.upstream)] {
        if !addr.ip().is_loopback() {
            eprintln!("bare-proxy: {what} must be a loopback address, got {addr}");
            return ExitCode::from(2);
        }
    }
    if cli.threads == 0 {
        eprintln!("bare-proxy: --threads must be at least 1");
        return ExitCode::from(2);
    }
    let conf = ServerConf {
        threads: cli.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Bare {
            upstream: cli.upstream,
        },
        "bare-proxy",
    );
    proxy.add_tcp(&cli.listen.to_string());
    server.add_service(proxy);
    eprintln!(
        "bare-proxy: listening on {} -> {}",
        cli.listen, cli.upstream
    );
    server.run(RunArgs::default());
    ExitCode::SUCCESS
}
