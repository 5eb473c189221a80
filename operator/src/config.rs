//! Command-line flags of the operator, each with an environment fallback.

use std::net::SocketAddr;

/// Kubernetes operator for the event-driven order system.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Watch only this namespace; all namespaces when empty.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Log format: `json` (in a cluster) or `text`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the OrderSystem CustomResourceDefinition as YAML (the source of `crds/`).
    Crd,
    /// Run the controller (the default).
    Run,
}
