//! The Node: it stays Ready through Lease renewals and status heartbeats, and the agent's own stop and
//! crash are handled (pods stopped and Node deleted; leftovers ended by the next agent).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use serde_json::json;

use crate::support::{
    Agent, client, container_pid, node_ready, pod_ready, process_alive, wait_for, with_env,
};

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

#[tokio::test]
async fn stopping_the_agent_ends_its_pods_and_deletes_its_node() {
    with_env("agent-stop", async |env| {
        env.create_pod("worker", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        let pid = container_pid(&env.wait_ready("worker").await);
        env.agent.stop();
        assert!(!process_alive(pid), "process {pid} outlived the agent");
        let nodes: Api<Node> = Api::all(env.client.clone());
        wait_for(Duration::from_secs(30), "the Node to be deleted", || async {
            matches!(nodes.get_opt(&env.agent.node).await, Ok(None)).then_some(())
        })
        .await;
        // The pod is still bound to that node name: a new agent for it cleans up with the namespace.
        let node = env.agent.node.clone();
        env.agent = Agent::start_named(&env.client, &node).await;
    })
    .await;
}

#[tokio::test]
async fn an_agent_restarted_after_a_crash_ends_the_processes_its_predecessor_left() {
    with_env("agent-crashed", async |env| {
        env.create_pod("survivor", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        let pid = container_pid(&env.wait_ready("survivor").await);
        env.agent.kill();
        assert!(
            process_alive(pid),
            "a killed agent cannot stop its pods; the test needs that leftover"
        );
        let node = env.agent.node.clone();
        env.agent = Agent::start_named(&env.client, &node).await;
        wait_for(Duration::from_secs(10), "the leftover process to end", || async {
            (!process_alive(pid)).then_some(())
        })
        .await;
        // The pod is still bound here, so the new agent runs it again, on the freed IP.
        let pods = env.pods();
        wait_for(
            Duration::from_secs(60),
            "the pod to run under the new agent",
            || async {
                let pod = pods.get("survivor").await.ok()?;
                (pod_ready(&pod) && container_pid(&pod) != pid).then_some(())
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_node_is_registered_again_by_its_agent() {
    let client = client().await;
    let agent = Agent::start(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let before = nodes.get(&agent.node).await.expect("node").metadata.uid;
    nodes
        .delete(&agent.node, &Default::default())
        .await
        .expect("delete node");
    let again = wait_for(Duration::from_secs(45), "the Node back and Ready", || async {
        let node = nodes.get_opt(&agent.node).await.ok()??;
        (node.metadata.uid != before && node_ready(&node)).then_some(node)
    })
    .await;
    // The Lease must follow the new Node, or the garbage collector removes it with the old one.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait_for(
        Duration::from_secs(30),
        "the Lease owned by the new Node",
        || async {
            let lease = leases.get_opt(&agent.node).await.ok()??;
            let owners = lease.metadata.owner_references.unwrap_or_default();
            owners
                .iter()
                .any(|o| Some(&o.uid) == again.metadata.uid.as_ref())
                .then_some(())
        },
    )
    .await;
}
