//! A service's process around its `run`: telemetry, the listener on the configured address, and a shutdown
//! that SIGTERM or Ctrl-C fires. Tests call `run` directly with their own listener and trigger.

use crate::config::LogFormat;
use crate::shutdown::{self, Shutdown};
use crate::telemetry;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Installs telemetry, listens on `listen_addr` and runs the service `name` until SIGTERM or Ctrl-C.
pub async fn run_until_signal<F, E>(
    name: &str,
    listen_addr: SocketAddr,
    log_format: LogFormat,
    run: impl FnOnce(TcpListener, Shutdown) -> F,
) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    telemetry::init(log_format);
    let (trigger, waiter) = shutdown::channel();
    tokio::spawn(shutdown::fire_on_signal(trigger));
    let listener = TcpListener::bind(listen_addr).await?;
    tracing::info!(addr = %listen_addr, "{name} service listening");
    run(listener, waiter).await
}
