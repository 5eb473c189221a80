//! `ordersystem-invoicing`: parse the configuration, install telemetry, run until SIGTERM.

use clap::Parser;
use ordersystem_invoicing::config::Config;
use ordersystem_service_kit::{shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log.log_format);
    let (trigger, waiter) = shutdown::channel();
    tokio::spawn(shutdown::fire_on_signal(trigger));
    let listener = tokio::net::TcpListener::bind(config.http.listen_addr).await?;
    tracing::info!(addr = %config.http.listen_addr, "invoicing service listening");
    ordersystem_invoicing::run(config, listener, waiter).await?;
    Ok(())
}
