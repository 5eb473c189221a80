//! `ordersystem-node-agent`: parse flags, register the Node, heartbeat, run its pods until SIGTERM/ctrl-c.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ordersystem_node_agent::{Agent, images::ImageTable, ips::IpPool, leftovers, node, pods};
use tracing::info;

/// Runs the pods bound to one Node as host processes, for machines without a container engine
/// (local mode). Talks to the API server of `KUBECONFIG` with the credentials found there.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Name of the Node to register; give each agent (and each test run) its own.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Directory of the binaries the image table names (default: `$CARGO_TARGET_DIR/debug`).
    #[arg(long, env = "ORDERSYSTEM_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Cargo's target directory, used for the default `--bin-dir`.
    #[arg(long, env = "CARGO_TARGET_DIR", default_value = "target")]
    cargo_target_dir: PathBuf,
    /// Extra or replacing image table entries, `REPOSITORY=BINARY` (repeatable).
    #[arg(long = "image")]
    images: Vec<String>,
    /// Root of the agent's files; this node uses `<state-dir>/<node-name>/` (logs, pod volumes).
    #[arg(
        long,
        env = "ORDERSYSTEM_AGENT_STATE",
        default_value = "/tmp/ordersystem/agent"
    )]
    state_dir: PathBuf,
    /// First three octets of the pod IPs (`<prefix>.2` … `.254`); agents side by side need different ones.
    #[arg(long, default_value = "127.0.0")]
    pod_ip_prefix: String,
    /// Extra Node labels, `key=value` (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Node taints, `key[=value]:Effect` (repeatable); keeps pods without a toleration off this node.
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// Capacity of the Node in pods.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Seconds between Lease renewals and NodeStatus posts.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// First crash-loop backoff in seconds (doubles per quick crash, up to 300).
    #[arg(long, default_value_t = 10)]
    crash_backoff_seconds: u64,
    /// Seconds between rewrites of pod volumes: changed Secrets and ConfigMaps show up within this (the
    /// kubelet's sync period is about a minute), and projected tokens (1 h) are renewed long before expiry.
    #[arg(long, default_value_t = 60)]
    volume_refresh_seconds: u64,
    /// API server address given to pods as `KUBERNETES_SERVICE_HOST` (default: the kubeconfig's server).
    #[arg(long)]
    api_host: Option<String>,
    /// API server port given to pods as `KUBERNETES_SERVICE_PORT` (default: the kubeconfig's server).
    #[arg(long)]
    api_port: Option<u16>,
    /// Delete the Node when the agent stops (tests; a kubelet leaves it).
    #[arg(long)]
    delete_node_on_exit: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        // Tests send the agent's output to a file they print on failure: no colour codes there.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let Args {
        node_name,
        bin_dir,
        cargo_target_dir,
        images,
        state_dir,
        pod_ip_prefix,
        labels,
        taints,
        max_pods,
        heartbeat_seconds,
        crash_backoff_seconds,
        volume_refresh_seconds,
        api_host,
        api_port,
        delete_node_on_exit,
    } = Args::parse();
    let bin_dir = bin_dir.unwrap_or_else(|| cargo_target_dir.join("debug"));
    let labels = labels
        .iter()
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<Vec<_>>>()
        .context("--label must be key=value")?;
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes client configuration (is KUBECONFIG set?)")?;
    // Pods run on this host: they reach the API server where the agent itself does.
    let api_host = match api_host {
        Some(host) => host,
        None => config
            .cluster_url
            .host()
            .context("the kubeconfig's server has no host")?
            .to_string(),
    };
    let api_port = api_port.unwrap_or_else(|| config.cluster_url.port_u16().unwrap_or(443));
    let client = kube::Client::try_from(config).context("no Kubernetes client")?;
    let spec = node::NodeSpec {
        name: node_name.clone(),
        started: chrono::Utc::now(),
        labels,
        taints,
        max_pods,
    };
    node::register(&client, &spec).await?;
    let agent = Arc::new(Agent {
        client: client.clone(),
        node_name: node_name.clone(),
        state_dir: state_dir.join(&node_name),
        images: ImageTable::new(bin_dir.clone(), &images)?,
        ips: IpPool::new(&pod_ip_prefix)?,
        api_host,
        api_port,
        crash_backoff: Duration::from_secs(crash_backoff_seconds),
        volume_refresh: Duration::from_secs(volume_refresh_seconds.max(1)),
    });
    let killed = leftovers::kill_all(&agent.state_dir.join("pids"));
    if killed > 0 {
        info!(killed, "ended process groups of an earlier agent of this node");
    }
    info!(node = %node_name, bin_dir = %bin_dir.display(), state_dir = %agent.state_dir.display(), "node agent running");
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        spec,
        Duration::from_secs(heartbeat_seconds),
    ));
    pods::run(agent, shutdown_signal()).await;
    heartbeat.abort();
    if delete_node_on_exit {
        node::deregister(&client, &node_name).await?;
        info!(node = %node_name, "node deleted");
    }
    Ok(())
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM, only ctrl-c stops the agent");
            return std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
