//! Cluster helpers of the end-to-end tests: namespaces, helm, and the pods of one service of a system.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::wait;

/// How long pods and resources may take to become Ready.
pub const READY_WITHIN: Duration = Duration::from_secs(180);

/// Creates a namespace and waits for its `default` ServiceAccount.
pub async fn create_namespace(client: &kube::Client, name: &str, annotations: serde_json::Value) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": annotations}
            }))
            .expect("namespace"),
        )
        .await
        .expect("create namespace");
    // ServiceAccount admission refuses pods until kube-controller-manager created `default`.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait::until("the default ServiceAccount", Duration::from_secs(30), || async {
        accounts
            .get_opt("default")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("absent".to_string())
    })
    .await;
}

/// Deletes a namespace and waits until it is gone, so nothing of it is left for what runs next (the real
/// node runs a leftover namespace's pods again at every start).
pub async fn delete_namespace_and_wait(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait::until(
        &format!("namespace {name} gone"),
        Duration::from_secs(90),
        || async {
            match namespaces.get_opt(name).await {
                Ok(None) => Ok(()),
                other => Err(format!("{:?}", other.map(|n| n.and_then(|n| n.status)))),
            }
        },
    )
    .await;
}

/// Runs helm (from PATH) and fails the test with its stderr when it fails.
pub fn helm(args: &[&str]) {
    let output = std::process::Command::new("helm")
        .args(args)
        .output()
        .expect("helm on PATH (e2e/infra/up.sh installs it; `. /tmp/ordersystem/env` puts it on PATH)");
    assert!(
        output.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every pod of one service of a system.
pub async fn pods(client: &kube::Client, ns: &str, system: &str, service: &str) -> Vec<Pod> {
    let selector = format!("app.kubernetes.io/instance={system},app.kubernetes.io/component={service}");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
}

/// Ready and not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// Base URLs of the Ready pods of one service, once exactly `count` are Ready.
pub async fn ready_pods(
    client: &kube::Client,
    ns: &str,
    system: &str,
    service: &str,
    count: usize,
) -> Vec<Pod> {
    wait::until(&format!("{count} Ready {service} pods"), READY_WITHIN, || async {
        let all = pods(client, ns, system, service).await;
        let ready: Vec<Pod> = all.iter().filter(|p| is_ready(p)).cloned().collect();
        if ready.len() == count && all.len() == count {
            Ok(ready)
        } else {
            Err(format!("{} of {} Ready", ready.len(), all.len()))
        }
    })
    .await
}
