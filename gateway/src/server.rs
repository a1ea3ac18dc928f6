//! Building and running the Pingora server: the API service, the admin service, the reloader
//! and the draining shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use sluice_config::Config;

use crate::admin::Admin;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::shutdown::DrainingShutdown;
use crate::state::{Runtime, Shared};
use crate::{reload, telemetry};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Anything else while building the server.
    #[error("{0}")]
    Other(String),
}

/// Build shared state for `config` (resolves provider hosts).
pub fn build_shared(
    config: Config,
    config_path: Option<PathBuf>,
) -> Result<Arc<Shared>, StartError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let limiter = crate::limiter::Limiter::new(&config.state).map_err(StartError::Other)?;
    let runtime = rt
        .block_on(Runtime::build(config, 1))
        .map_err(StartError::Other)?;
    let metrics = Metrics::new().map_err(|e| StartError::Other(e.to_string()))?;
    Ok(Shared::new(runtime, metrics, limiter, config_path))
}

/// Run the gateway until shutdown. Blocks the calling thread.
pub fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), StartError> {
    telemetry::init(&config.logs);
    // Fail early with a clear message when a port is taken (Pingora would only log it).
    for addr in [config.server.listen, config.server.admin_listen] {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    }
    let server_cfg = config.server.clone();
    let shared = build_shared(config, config_path)?;

    let conf = ServerConf {
        threads: server_cfg.threads,
        // Draining happens before Pingora's shutdown starts (see `shutdown`), so Pingora itself
        // waits no grace period.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut api = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(Arc::clone(&shared)),
        "sluice-api",
    );
    api.add_tcp(&server_cfg.listen.to_string());
    let mut admin = Service::new("sluice-admin".to_owned(), Admin::new(Arc::clone(&shared)));
    admin.add_tcp(&server_cfg.admin_listen.to_string());
    admin.threads = Some(1);
    server.add_service(api);
    server.add_service(admin);

    reload::spawn(Arc::clone(&shared)).map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!(
        listen = %server_cfg.listen,
        admin_listen = %server_cfg.admin_listen,
        threads = server_cfg.threads,
        version = env!("CARGO_PKG_VERSION"),
        "sluice starting"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingShutdown::new(shared)),
    });
    tracing::info!("sluice stopped");
    Ok(())
}
