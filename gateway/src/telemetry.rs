//! Process logs via `tracing`: text or JSON lines on stdout.

use sluice_config::{LogFormat, LogsConfig};
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG`, when set, overrides `logs.level`.
pub fn init(logs: &LogsConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logs.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    // `try_init` fails only when a subscriber is already set (e.g. in tests): keep that one.
    let _ = match logs.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
