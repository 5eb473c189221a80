//! A service's process around its `run`: telemetry, the listener on the configured address, and a shutdown
//! that SIGTERM or Ctrl-C fires. Tests call `run` directly with their own listener and trigger.

use crate::config::LogFormat;
use crate::consumer::ConsumerError;
use crate::db::DbError;
use crate::relay::RelayError;
use crate::shutdown::{self, Shutdown};
use crate::telemetry;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why a service's `run` ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("database configuration is invalid")]
    Database(#[from] DbError),
    #[error("the consumer failed")]
    Consumer(#[from] ConsumerError),
    #[error("the outbox relay cannot start")]
    Relay(#[from] RelayError),
    #[error("the HTTP server failed")]
    Serve(#[from] std::io::Error),
}

/// Installs telemetry, listens on `listen_addr` and runs the service `name` until SIGTERM or Ctrl-C; then
/// sends the spans not exported yet.
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
    telemetry::init(log_format, name);
    let (trigger, waiter) = shutdown::channel();
    tokio::spawn(shutdown::fire_on_signal(trigger));
    let listener = TcpListener::bind(listen_addr).await?;
    tracing::info!(addr = %listen_addr, "{name} service listening");
    let result = run(listener, waiter).await;
    tokio::task::spawn_blocking(telemetry::shutdown).await.ok();
    result
}

/// Waits for the HTTP server's task to end; a task that panicked is logged, a server that failed is the
/// error.
pub async fn served(server: JoinHandle<std::io::Result<()>>) -> Result<(), RunError> {
    match server.await {
        Ok(result) => result?,
        Err(join) => tracing::error!(error = %join, "HTTP server task failed"),
    }
    Ok(())
}
