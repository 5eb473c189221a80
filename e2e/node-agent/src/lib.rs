//! Test-only node agent for local mode (design section 4): registers a Node with a real API server and
//! runs the pods bound to it as host processes. Not part of the product.
//!
//! Modules, from the outside in: `node` (Node, Lease, NodeStatus), `pods` (watch and dispatch), `pod`
//! (one pod's lifecycle), `launch` (pod spec → process launches), `container` (one container's restarts and probes), `process` (spawn, mount
//! namespace, signals), `leftovers` (process groups a crashed agent left), and the helpers `env`,
//! `volumes`, `probes`, `status`, `images`, `ips`.

pub mod container;
pub mod env;
pub mod images;
pub mod ips;
pub mod launch;
pub mod leftovers;
pub mod node;
pub mod pod;
pub mod pods;
pub mod probes;
pub mod process;
pub mod status;
pub mod volumes;

use std::path::PathBuf;
use std::time::Duration;

/// Field manager of every server-side apply the agent makes.
pub const FIELD_MANAGER: &str = "ordersystem-node-agent";

/// What every pod worker shares.
pub struct Agent {
    pub client: kube::Client,
    pub node_name: String,
    /// This node's directory: `logs/`, `pods/<uid>/` for volumes, `pids/` (see `leftovers`).
    pub state_dir: PathBuf,
    pub images: images::ImageTable,
    pub ips: ips::IpPool,
    /// Where pods reach the API server (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_host: String,
    pub api_port: u16,
    /// First crash-loop backoff step.
    pub crash_backoff: Duration,
    /// How often volumes are rewritten (fresh tokens, current Secret and ConfigMap data).
    pub volume_refresh: Duration,
}

/// `error: cause: cause`, for one-line logs of a nested error.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
