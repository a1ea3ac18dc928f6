//! Graceful shutdown.
//!
//! Pingora's own graceful path sleeps a fixed `grace_period_seconds` after SIGTERM, busy or not.
//! Sluice instead drains: on SIGTERM it marks itself draining (`/readyz` turns 503, responses
//! carry `connection: close`), waits until no request is in flight or `server.drain_timeout`
//! passes, and only then lets Pingora stop its services with a zero grace period. An idle
//! gateway exits at once; a streaming answer gets up to `drain_timeout` to finish.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::state::Shared;

/// How often the drain checks for in-flight requests.
const POLL: Duration = Duration::from_millis(10);

/// Shutdown signal watcher that drains before stopping.
pub struct DrainingShutdown {
    shared: Arc<Shared>,
}

impl DrainingShutdown {
    /// A watcher over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn drain(&self) {
        let timeout = self.shared.runtime.load().config.server.drain_timeout;
        self.shared.draining.store(true, Ordering::Release);
        let start = Instant::now();
        tracing::info!(
            inflight = self.shared.inflight.load(Ordering::Acquire),
            drain_timeout_s = timeout.as_secs_f64(),
            "SIGTERM: draining"
        );
        while self.shared.inflight.load(Ordering::Acquire) > 0 && start.elapsed() < timeout {
            tokio::time::sleep(POLL).await;
        }
        let left = self.shared.inflight.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                inflight = left,
                "drain timeout reached; stopping with requests in flight"
            );
        } else {
            tracing::info!(
                elapsed_ms = start.elapsed().as_millis() as u64,
                "drained; stopping"
            );
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainingShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = quit.recv() => {}
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                return ShutdownSignal::FastShutdown;
            }
        }
        tokio::select! {
            _ = self.drain() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
