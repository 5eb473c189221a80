//! `spec.<service>.template` on the real node: every setting reaches the service's running pod (the pod
//! the API server admitted, the process the kubelet started, its log), the other services keep the
//! operator's defaults, and the shop still takes orders.

use k8s_openapi::api::core::v1::Pod;
use ordersystem_api::names::Service as ShopService;
use ordersystem_e2e::cluster::{self, ready_pods};
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::real_node;
use ordersystem_e2e::shop::{all_stored_once, place_orders};
use serde_json::json;

const SYSTEM: &str = "shop";
/// The uid and gid the template gives the order pods instead of the operator's 65532.
const UID: i64 = 65533;

/// The first container's main process as the host sees it.
fn process(pod: &Pod) -> real_node::HostProcess {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].container_id.clone())
        .expect("a container id");
    real_node::host_process(&id)
}

#[tokio::test]
async fn every_template_setting_reaches_the_running_pod_of_its_service() {
    let shop = NodeShop::namespaces("template").await;
    shop.install_operator(&[]);
    let node = match &shop.mode {
        ordersystem_e2e::mode::Mode::Real(node) => node.name.clone(),
        ordersystem_e2e::mode::Mode::Kind => unreachable!("NodeShop runs on the real node"),
    };
    shop.create_system(
        SYSTEM,
        2,
        json!({"order": {"template": {
            "pod": {
                "labels": {"team": "platform"},
                "annotations": {"example.com/owner": "team-a"},
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": [{"key": "example.com/dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
                "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"team": "platform"}}}],
                "priorityClassName": "system-cluster-critical",
                "imagePullSecrets": [{"name": "mirror-credentials"}],
                "securityContext": {"runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
            },
            "container": {
                "env": [{"name": "RUST_LOG", "value": "debug"}],
                "imagePullPolicy": "Never",
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}}
            }
        }}}),
    )
    .await;
    shop.ready(SYSTEM).await;

    let (client, ns) = (&shop.client, &shop.shop_ns);
    let order_pod = ready_pods(client, ns, SYSTEM, ShopService::Order.as_str(), 1)
        .await
        .remove(0);
    let labels = order_pod.metadata.labels.clone().unwrap_or_default();
    let annotations = order_pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("platform"));
    assert_eq!(
        annotations.get("example.com/owner").map(String::as_str),
        Some("team-a")
    );
    let spec = order_pod.spec.clone().expect("a pod spec");
    assert_eq!(
        spec.node_selector
            .unwrap_or_default()
            .get("kubernetes.io/hostname"),
        Some(&node)
    );
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    assert!(
        spec.tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| t.key.as_deref() == Some("example.com/dedicated")),
        "the toleration"
    );
    assert!(
        spec.affinity.and_then(|a| a.node_affinity).is_some(),
        "the affinity"
    );
    assert_eq!(
        spec.topology_spread_constraints
            .unwrap_or_default()
            .first()
            .map(|c| c.max_skew),
        Some(2)
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert!(
        spec.priority.unwrap_or_default() > 1_000_000,
        "the class's priority resolved"
    );
    assert_eq!(
        spec.image_pull_secrets
            .unwrap_or_default()
            .first()
            .map(|s| s.name.clone()),
        Some("mirror-credentials".to_string())
    );
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Never"));
    let running = process(&order_pod);
    assert_eq!(running.field("Uid"), format!("{UID} {UID} {UID} {UID}"));
    let log = cluster::pod_log(ns, order_pod.metadata.name.as_deref().expect("a name"));
    assert!(
        log.lines().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "RUST_LOG=debug reached the service:\n{}",
        log.lines().take(20).collect::<Vec<_>>().join("\n")
    );

    // The consumers keep the operator's defaults: uid 65532, the default spread, small requests.
    let invoicing_pod = ready_pods(client, ns, SYSTEM, ShopService::Invoicing.as_str(), 1)
        .await
        .remove(0);
    assert_eq!(process(&invoicing_pod).field("Uid"), "65532 65532 65532 65532");
    let invoicing_spec = invoicing_pod.spec.clone().expect("a pod spec");
    assert_eq!(
        invoicing_spec
            .topology_spread_constraints
            .unwrap_or_default()
            .first()
            .map(|c| (c.when_unsatisfiable.clone(), c.max_skew)),
        Some(("ScheduleAnyway".to_string(), 1))
    );
    assert!(
        invoicing_spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key("cpu")),
        "default requests"
    );

    // And the shop works as before.
    let order = shop.mode.service(&order_pod);
    let placed = place_orders(&order, 0..20).await;
    let invoicing = shop.mode.service(&invoicing_pod);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    shop.delete_and_uninstall(SYSTEM).await;
}
