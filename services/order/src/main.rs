//! `ordersystem-order`: parse the configuration, run until SIGTERM.

use clap::Parser;
use ordersystem_order::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordersystem_order::run_until_signal(Config::parse()).await?;
    Ok(())
}
