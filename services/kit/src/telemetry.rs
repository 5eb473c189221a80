//! The one tracing subscriber of a process: level from RUST_LOG (default `info`), JSON or text. librdkafka's
//! own logs arrive through rdkafka's `tracing` feature.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. A second call (tests spawning several apps) keeps the first one.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
