//! The Node: registration, Lease renewal and NodeStatus, so kube-controller-manager keeps it Ready.
//!
//! KCM's node lifecycle controller marks a Node `Unknown` (then taints and evicts) when neither its Lease
//! in `kube-node-lease` nor its status heartbeat moves for `--node-monitor-grace-period` (40–50 s). Like
//! the kubelet, the agent renews the Lease every `--heartbeat` (10 s) and posts the full status with it.
//! All writes are server-side apply with one field manager, so restarts of the agent are idempotent.
//! This module touches only the Node and its Lease, never Pods.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{FIELD_MANAGER, error_chain};

/// Namespace of node heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's default; KCM only reads renewTime, the duration is informational.
const LEASE_DURATION_SECONDS: i64 = 40;
/// Version reported in nodeInfo: the control plane this agent is tested against.
const KUBELET_VERSION: &str = "v1.36.3";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply Node {node}")]
    ApplyNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply the status of Node {node}")]
    ApplyStatus {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read Node {node}")]
    ReadNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to renew Lease {node}")]
    RenewLease {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete Node {node}")]
    DeleteNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid taint {taint:?}: expected key[=value]:Effect")]
    InvalidTaint { taint: String },
}

/// What the Node looks like to the scheduler.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// When this agent started: the conditions' transition time, since they hold while it runs.
    pub started: chrono::DateTime<Utc>,
    /// `key=value` labels added to the standard hostname/os/arch ones.
    pub labels: Vec<(String, String)>,
    /// `key[=value]:Effect`; a taint keeps other people's pods off a test node.
    pub taints: Vec<String>,
    /// Capacity (and allocatable) `pods`.
    pub max_pods: u32,
}

/// Creates or updates the Node and posts its first status.
pub async fn register(client: &kube::Client, spec: &NodeSpec) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_object(spec)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    nodes
        .patch(&spec.name, &params, &Patch::Apply(node))
        .await
        .map_err(|source| Error::ApplyNode {
            node: spec.name.clone(),
            source,
        })?;
    post_status(client, spec).await?;
    info!(node = %spec.name, "node registered");
    Ok(())
}

/// Renews the Lease and posts NodeStatus every `period`, forever. Failures are logged and retried on
/// the next tick: a missed beat is harmless, the grace period covers several.
pub async fn heartbeat(client: kube::Client, spec: NodeSpec, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = beat(&client, &spec).await {
            warn!(error = %error_chain(&error), "heartbeat failed");
        }
    }
}

/// One heartbeat: register the Node again if someone deleted it, renew the Lease, post the status.
async fn beat(client: &kube::Client, spec: &NodeSpec) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let read = |source| Error::ReadNode {
        node: spec.name.clone(),
        source,
    };
    let uid = match nodes.get_opt(&spec.name).await.map_err(read)? {
        Some(node) => node.metadata.uid,
        None => {
            warn!(node = %spec.name, "the Node was deleted, registering it again");
            register(client, spec).await?;
            nodes.get(&spec.name).await.map_err(read)?.metadata.uid
        }
    };
    renew_lease(client, &spec.name, &uid.unwrap_or_default()).await?;
    post_status(client, spec).await
}

/// Deletes the Node (its Lease goes with it through the owner reference).
pub async fn deregister(client: &kube::Client, name: &str) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteNode {
            node: name.to_string(),
            source,
        }),
    }
}

/// `uid` is the Node's: the owner reference lets the garbage collector remove the Lease with the Node.
async fn renew_lease(client: &kube::Client, node: &str, uid: &str) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let err = |source| Error::RenewLease {
        node: node.to_string(),
        source,
    };
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        },
    });
    leases
        .patch(
            node,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await
        .map_err(err)?;
    Ok(())
}

async fn post_status(client: &kube::Client, spec: &NodeSpec) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name},
        "status": node_status(spec),
    });
    nodes
        .patch_status(
            &spec.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(status),
        )
        .await
        .map_err(|source| Error::ApplyStatus {
            node: spec.name.clone(),
            source,
        })?;
    Ok(())
}

fn node_object(spec: &NodeSpec) -> Result<Value, Error> {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(spec.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(arch()));
    for (key, value) in &spec.labels {
        labels.insert(key.clone(), json!(value));
    }
    let taints = spec
        .taints
        .iter()
        .map(|t| parse_taint(t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"taints": taints},
    }))
}

/// `key[=value]:Effect` → a taint object.
fn parse_taint(text: &str) -> Result<Value, Error> {
    let invalid = || Error::InvalidTaint {
        taint: text.to_string(),
    };
    let (key_value, effect) = text.rsplit_once(':').ok_or_else(invalid)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") || key_value.is_empty() {
        return Err(invalid());
    }
    let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
    Ok(json!({"key": key, "value": value, "effect": effect}))
}

/// A Ready node with generous capacity: pods here are processes on a shared machine, so the numbers only
/// need to let the scheduler place test pods, not to model the host.
fn node_status(spec: &NodeSpec) -> Value {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let since = spec.started.to_rfc3339_opts(SecondsFormat::Secs, true);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let resources = json!({
        "cpu": "32", "memory": "128Gi", "ephemeral-storage": "100Gi", "pods": spec.max_pods.to_string(),
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("Ready", "True", "KubeletReady", "ordersystem node agent is posting ready status"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": spec.name, "systemUUID": spec.name, "bootID": spec.name,
            "kernelVersion": "", "osImage": "ordersystem local mode",
            "containerRuntimeVersion": "process://local", "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": arch(),
        },
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_with_and_without_value() {
        assert_eq!(
            parse_taint("example.com/agent=n1:NoSchedule").expect("valid"),
            json!({"key": "example.com/agent", "value": "n1", "effect": "NoSchedule"})
        );
        assert_eq!(
            parse_taint("dedicated:NoExecute").expect("valid"),
            json!({"key": "dedicated", "value": "", "effect": "NoExecute"})
        );
        assert!(parse_taint("dedicated=x:Sometimes").is_err());
    }

    #[test]
    fn status_is_ready_with_pod_capacity() {
        let spec = NodeSpec {
            name: "n1".into(),
            started: Utc::now() - chrono::Duration::minutes(5),
            labels: vec![],
            taints: vec![],
            max_pods: 7,
        };
        let status = node_status(&spec);
        assert_eq!(status["capacity"]["pods"], "7");
        assert_eq!(status["allocatable"]["pods"], "7");
        assert_eq!(status["conditions"][0]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "True");
        let since = spec.started.to_rfc3339_opts(SecondsFormat::Secs, true);
        assert_eq!(status["conditions"][0]["lastTransitionTime"], since.as_str());
    }
}
