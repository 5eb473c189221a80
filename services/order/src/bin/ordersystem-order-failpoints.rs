//! `ordersystem-order` with crash points, for the reliability tests only (`cargo build -p ordersystem-order
//! --features failpoints --bin ordersystem-order-failpoints`; a default build skips it). `--park-at
//! <failpoint>[:<hit>]` parks the process at the hit-th pass through that point and logs `failpoint
//! parked`, so a test can kill it with SIGKILL exactly there.

use clap::Parser;
use ordersystem_order::config::Config;
use ordersystem_service_kit::failpoints::{self, ORDER_COMMITTED, RELAY_ACKNOWLEDGED, RELAY_BEFORE_PUBLISH};

#[derive(Debug, clap::Parser)]
#[command(name = "ordersystem-order-failpoints")]
struct Args {
    #[command(flatten)]
    config: Config,
    /// Park for good at the hit-th pass (default the first) through this failpoint: `order-committed`,
    /// `relay-before-publish` or `relay-acknowledged`, optionally followed by `:<hit>`.
    #[arg(long = "park-at", env = "FAILPOINT_PARK_AT")]
    park_at: Option<String>,
}

fn park(spec: &str) -> anyhow::Result<()> {
    let (name, hit) = spec.split_once(':').unwrap_or((spec, "1"));
    let name = [ORDER_COMMITTED, RELAY_BEFORE_PUBLISH, RELAY_ACKNOWLEDGED]
        .into_iter()
        .find(|known| *known == name)
        .ok_or_else(|| anyhow::anyhow!("unknown failpoint {name:?}"))?;
    failpoints::park_at(name, hit.parse()?).map_err(anyhow::Error::msg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(spec) = &args.park_at {
        park(spec)?;
    }
    ordersystem_order::run_until_signal(args.config).await?;
    Ok(())
}
