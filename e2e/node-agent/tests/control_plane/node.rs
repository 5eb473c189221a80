//! The Node stays Ready: Lease renewals and status heartbeats keep KCM's node lifecycle controller happy.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::support::{Agent, client, node_ready};

/// Longer than KCM's node-monitor grace period (40–50 s) several times over.
const OBSERVE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn node_stays_ready_for_three_minutes_with_a_renewed_lease_and_pod_capacity() {
    let client = client().await;
    let agent = Agent::start(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let node = nodes.get(&agent.node).await.expect("node exists");
    let capacity = node
        .status
        .as_ref()
        .and_then(|s| s.capacity.clone())
        .unwrap_or_default();
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    assert_eq!(
        capacity.get("pods").map(|q| q.0.as_str()),
        Some("110"),
        "{capacity:?}"
    );
    assert!(allocatable.contains_key("pods"), "{allocatable:?}");
    let renew_time = |lease: &Lease| lease.spec.as_ref().and_then(|s| s.renew_time.clone());

    let start = Instant::now();
    let first_renewal = renew_time(&leases.get(&agent.node).await.expect("lease exists"));
    let mut renewals = std::collections::BTreeSet::new();
    while start.elapsed() < OBSERVE {
        let node = nodes.get(&agent.node).await.expect("node still exists");
        assert!(
            node_ready(&node),
            "node not Ready after {:?}:\n{}",
            start.elapsed(),
            agent.log()
        );
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert!(
            taints.iter().all(|t| !t.key.starts_with("node.kubernetes.io/")),
            "KCM tainted the node after {:?}: {taints:?}",
            start.elapsed()
        );
        let lease = leases.get(&agent.node).await.expect("lease still exists");
        renewals.insert(format!("{:?}", renew_time(&lease)));
        // Polling pace of the observation, not a synchronization: each pass asserts the current state.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(
        renewals.len() >= 10,
        "lease renewed only {} times in {OBSERVE:?} (first {first_renewal:?})",
        renewals.len()
    );
}
