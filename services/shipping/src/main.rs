//! `ordersystem-shipping`: parse the configuration, install telemetry, run until SIGTERM.

use ordersystem_shipping::{config, service};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service().run_until_signal(config::parse()).await?;
    Ok(())
}
