//! The operator with two replicas behind its Lease, installed by the chart on the real node: both are
//! Ready, one leads; killed with SIGKILL, the standby takes over within lease duration + retry period and
//! carries on with the same topic and the same child objects; killed in the middle of a credentials
//! rotation, the next leader finishes it with one `CredentialsRotated` Event; stopped with SIGSTOP past its
//! lease and continued, a leader finds its lease gone the moment it runs again, exits without a single
//! write (the API server's audit log, by the replica's User-Agent, says so), and comes back as a standby.
//! Killed with SIGKILL in the middle of a drained partition increase, the next leader finishes the drain
//! with the same topic and child objects, and every order placed before and after is stored exactly once.
//! Each test installs its own release, so each has its own lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordersystem_api::crd::OrderSystem;
use ordersystem_e2e::cluster::{self, READY_WITHIN, ready_pods};
use ordersystem_e2e::control_plane::audited_writes;
use ordersystem_e2e::node_shop::{LeaderElection, NodeShop};
use ordersystem_e2e::shop::{all_stored_once, place_orders};
use ordersystem_e2e::{real_node, wait};
use serde_json::json;

/// Lease settings short enough for a test: a standby may take over 6 s after the last renewal.
const LEASE: LeaderElection = LeaderElection {
    replicas: 2,
    lease_duration_seconds: 6,
    renew_deadline_seconds: 4,
    retry_period_seconds: 1,
};

/// How long a takeover may take after the leader died: the lease duration and a retry period, and 5 s for
/// the requests of both.
const TAKEOVER_WITHIN: Duration =
    Duration::from_secs(LEASE.lease_duration_seconds + LEASE.retry_period_seconds + 5);

/// The lease's holder identity: `<pod name>_<8 hex digits>`, one per process.
async fn holder_identity(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

/// The pod holding the lease.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let identity = holder_identity(leases, name).await?;
    Some(identity.rsplit_once('_')?.0.to_string())
}

/// Waits up to 30 s until a pod other than `old` holds the lease; that pod.
async fn next_holder(leases: &Api<Lease>, name: &str, old: &str) -> String {
    wait::until_ok(
        "another replica holds the lease",
        Duration::from_secs(30),
        || async {
            match holder(leases, name).await {
                Some(pod) if pod != old => Ok(pod),
                other => Err(format!("held by {other:?}")),
            }
        },
    )
    .await
}

/// The host process of the operator container of `pod`.
async fn operator_process(pods: &Api<Pod>, pod: &str) -> Pid {
    let pod = pods.get(pod).await.expect("the leader's pod");
    let statuses = pod
        .status
        .and_then(|s| s.container_statuses)
        .expect("container statuses");
    let id = statuses[0].container_id.as_deref().expect("a running container");
    let pid = real_node::host_process(id).pid;
    Pid::from_raw(i32::try_from(pid).expect("a pid"))
}

/// The restart count of `pod`'s operator container.
async fn restarts(pods: &Api<Pod>, pod: &str) -> i32 {
    let pod = pods.get(pod).await.expect("pod");
    pod.status
        .and_then(|s| s.container_statuses)
        .map_or(0, |s| s[0].restart_count)
}

/// An operator release with two replicas behind its own lease, and an OrderSystem `shop` it runs.
struct Ha {
    shop: NodeShop,
    lease_name: String,
    leases: Api<Lease>,
    pods: Api<Pod>,
    systems: Api<OrderSystem>,
    shop_deployments: Api<Deployment>,
}

impl Ha {
    /// Installs the release in a namespace of its own (`<prefix>-system`), waits until both replicas are
    /// Ready, and creates `shop` in `<prefix>-shop` on a topic of `partitions`, with `spec` merged into
    /// its spec.
    async fn install(prefix: &str, partitions: i32, spec: serde_json::Value) -> Ha {
        let shop = NodeShop::namespaces(prefix).await;
        shop.install_operator_electing(LEASE).await;
        shop.create_system("shop", partitions, spec).await;
        let (client, operator_ns) = (&shop.client, &shop.operator_ns);
        Ha {
            lease_name: shop.operator_name(),
            leases: Api::namespaced(client.clone(), operator_ns),
            pods: Api::namespaced(client.clone(), operator_ns),
            shop_deployments: Api::namespaced(client.clone(), &shop.shop_ns),
            systems: shop.systems(),
            shop,
        }
    }

    /// The topic id `shop` records, once it does.
    async fn topic_id(&self) -> String {
        wait::until_ok("the topic recorded", READY_WITHIN, || async {
            let os = self.systems.get("shop").await.map_err(|e| e.to_string())?;
            os.status
                .and_then(|s| s.topic)
                .and_then(|t| t.topic_id)
                .ok_or("no topic id yet".to_string())
        })
        .await
    }

    /// The topic id `shop`'s status records now.
    async fn recorded_topic_id(&self) -> Option<String> {
        let os = self.systems.get("shop").await.expect("get");
        os.status?.topic?.topic_id
    }

    /// The uids of `shop`'s Deployments, sorted.
    async fn uids(&self) -> Vec<String> {
        let list = self
            .shop_deployments
            .list(&ListParams::default())
            .await
            .expect("list");
        let mut uids: Vec<String> = list.items.into_iter().filter_map(|d| d.metadata.uid).collect();
        uids.sort();
        uids
    }

    /// The uids of `shop`'s three Deployments, once there are three.
    async fn children(&self) -> Vec<String> {
        wait::until_ok("three Deployments", READY_WITHIN, || async {
            let now = self.uids().await;
            (now.len() == 3)
                .then_some(now.clone())
                .ok_or(format!("{} Deployments", now.len()))
        })
        .await
    }

    /// The partition count `shop`'s status records.
    async fn recorded_partitions(&self) -> Option<i32> {
        let os = self.systems.get("shop").await.ok()?;
        Some(os.status?.topic?.partitions)
    }

    /// The replicas the spec of `shop`'s Deployment of `service` asks for.
    async fn replicas(&self, service: &str) -> Option<i32> {
        let deployment = self
            .shop_deployments
            .get_opt(&format!("shop-{service}"))
            .await
            .ok()??;
        deployment.spec?.replicas
    }

    /// Deletes `shop` through the current leader (its topic and schemas go too), then the release.
    async fn delete(self) {
        self.shop.delete_and_uninstall("shop").await;
    }
}

#[tokio::test]
async fn a_killed_leader_is_replaced_by_the_standby_and_a_stopped_one_exits_once_its_lease_is_gone() {
    let ha = Ha::install("ha", 2, json!({})).await;
    let Ha {
        shop:
            NodeShop {
                client,
                operator_ns,
                shop_ns,
                ..
            },
        lease_name,
        leases,
        pods,
        systems,
        shop_deployments,
        ..
    } = &ha;
    let topic_id = ha.topic_id().await;
    let children = ha.children().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), shop_ns);

    // SIGKILL: the standby takes over once the record stood still for the lease duration.
    let first = holder(leases, lease_name).await.expect("a leader");
    kill(operator_process(pods, &first).await, Signal::SIGKILL).expect("kill -9 the leader");
    let killed = Instant::now();
    let second = next_holder(leases, lease_name, &first).await;
    let took_over = killed.elapsed();
    eprintln!("SIGKILL: {second} took over from {first} after {took_over:.1?}");
    assert!(
        took_over <= TAKEOVER_WITHIN,
        "within lease + retry + a request: {took_over:?}"
    );
    // It reconciles: a spec change reaches the Deployment.
    systems
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"invoicing": {"replicas": 2}}})),
        )
        .await
        .expect("scale invoicing");
    wait::until_ok("the new leader scales invoicing", READY_WITHIN, || async {
        let d = shop_deployments
            .get("shop-invoicing")
            .await
            .map_err(|e| e.to_string())?;
        let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(0);
        (replicas == 2)
            .then_some(())
            .ok_or(format!("{replicas} replicas"))
    })
    .await;
    assert_eq!(
        ha.uids().await,
        children,
        "the child objects are the same objects"
    );
    assert_eq!(
        ha.recorded_topic_id().await,
        Some(topic_id.clone()),
        "never re-created"
    );

    // SIGKILL in the middle of a credentials rotation: the next leader finishes it, once.
    ready_pods(client, shop_ns, "shop", "invoicing", 2).await;
    let rotate = json!({"metadata": {"annotations": {"ordersystem.io/rotate-credentials": "invoicing"}}});
    systems
        .patch("shop", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .expect("request a rotation");
    wait::until_ok("the rotation under way", READY_WITHIN, || async {
        let secret = secrets
            .get("shop-invoicing-db")
            .await
            .map_err(|e| e.to_string())?;
        let annotations = secret.metadata.annotations.unwrap_or_default();
        annotations
            .contains_key("ordersystem.io/retire-login")
            .then_some(())
            .ok_or("the Secret has not switched yet".to_string())
    })
    .await;
    let rotating = holder(leases, lease_name).await.expect("a leader");
    kill(operator_process(pods, &rotating).await, Signal::SIGKILL).expect("kill -9 mid-rotation");
    wait::until_ok(
        "the rotation finished by the next leader",
        READY_WITHIN,
        || async {
            let os = systems.get("shop").await.map_err(|e| e.to_string())?;
            let secret = secrets
                .get("shop-invoicing-db")
                .await
                .map_err(|e| e.to_string())?;
            let done = !os
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("ordersystem.io/rotate-credentials")
                && !secret
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .contains_key("ordersystem.io/retire-login");
            done.then_some(()).ok_or("still rotating".to_string())
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), shop_ns);
    let rotated: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CredentialsRotated"))
        .collect();
    assert_eq!(rotated.len(), 1, "one CredentialsRotated Event: {rotated:#?}");
    assert!(
        rotated[0].series.is_none(),
        "written once, not repeated: {rotated:#?}"
    );
    assert_eq!(
        ha.uids().await,
        children,
        "the child objects are the same objects"
    );

    // SIGSTOP past the lease, then SIGCONT: the stopped leader finds its deadline passed and exits.
    let stopped_identity = holder_identity(leases, lease_name).await.expect("a leader");
    let stopped_pod = holder(leases, lease_name).await.expect("a leader");
    // Its requests carry `ordersystem-operator/<version> (<lease identity>)`: the audit log tells it apart
    // from the replica that takes over, and from its own next process.
    let agent = format!("({stopped_identity})");
    assert!(
        audited_writes(&agent)
            .iter()
            .any(|w| w.request_uri.contains("/leases/")),
        "the audit log knows the leader's lease renewals by its User-Agent {agent}"
    );
    let before = restarts(pods, &stopped_pod).await;
    let process = operator_process(pods, &stopped_pod).await;
    kill(process, Signal::SIGSTOP).expect("kill -STOP the leader");
    let third = next_holder(leases, lease_name, &stopped_pod).await;
    let continued = k8s_openapi::jiff::Timestamp::now();
    kill(process, Signal::SIGCONT).expect("kill -CONT the old leader");
    wait::until_ok(
        "the continued replica restarts",
        Duration::from_secs(60),
        || async {
            let now = restarts(pods, &stopped_pod).await;
            (now > before).then_some(()).ok_or(format!("{now} restarts"))
        },
    )
    .await;
    let previous = cluster::run("kubectl", &["logs", "-p", &stopped_pod, "-n", operator_ns]);
    // Its last lines: the exit, and at most what a step already under way when it was stopped finished
    // in the same instant (a query that was in flight).
    let tail: Vec<&str> = previous.lines().rev().take(3).collect();
    eprintln!("SIGSTOP: {third} took over from {stopped_pod}; its last lines: {tail:#?}");
    assert!(
        tail.iter().any(|line| line.contains("lost the leader lease")),
        "it exits on waking: {tail:#?}"
    );
    // Between SIGCONT and its exit (its next process has another identity), not one write of the old
    // process reached the API server: not the lease, not an object, not an Event.
    let after_continue: Vec<_> = audited_writes(&agent)
        .into_iter()
        .filter(|w| w.received() >= continued)
        .collect();
    assert!(
        after_continue.is_empty(),
        "the continued replica wrote after losing its lease: {after_continue:#?}"
    );
    assert_eq!(holder(leases, lease_name).await.as_deref(), Some(third.as_str()));
    assert_eq!(ha.recorded_topic_id().await, Some(topic_id), "never re-created");

    // The new leader deletes the resource (its topic and schemas) before the operator goes.
    ha.delete().await;
}

#[tokio::test]
async fn a_leader_killed_in_the_middle_of_a_drain_is_replaced_by_one_that_finishes_it() {
    let ha = Ha::install(
        "ha-drain",
        2,
        json!({"kafka": {"topic": {"partitionIncrease": "Drain"}},
               "consumerLag": {"intervalSeconds": 5}}),
    )
    .await;
    let topic_id = ha.topic_id().await;
    let children = ha.children().await;
    let mode = &ha.shop.mode;
    let ready = |service| ready_pods(&ha.shop.client, &ha.shop.shop_ns, "shop", service, 1);
    let order = mode.service(&ready("order").await[0]);
    let invoicing = mode.service(&ready("invoicing").await[0]);
    let shipping = mode.service(&ready("shipping").await[0]);
    let mut placed = place_orders(&order, 0..20).await;
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;
    // Its pod goes with the drain.
    drop(order);

    // Partitions 2 -> 4 with Drain; the leader is killed as soon as the drain has stopped intake, before
    // it added the partitions.
    let leader = holder(&ha.leases, &ha.lease_name).await.expect("a leader");
    let process = operator_process(&ha.pods, &leader).await;
    ha.systems
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"kafka": {"topic": {"partitions": 4}}}})),
        )
        .await
        .expect("raise partitions");
    wait::until_ok("the drain stops intake", READY_WITHIN, || async {
        match (ha.replicas("order").await, ha.recorded_partitions().await) {
            (Some(0), Some(2)) => Ok(()),
            other => Err(format!("order replicas and partitions: {other:?}")),
        }
    })
    .await;
    kill(process, Signal::SIGKILL).expect("kill -9 the leader mid-drain");
    let killed = Instant::now();
    // What the killed leader left: intake stopped, the status not yet at the new count.
    assert_eq!(
        (ha.replicas("order").await, ha.recorded_partitions().await),
        (Some(0), Some(2)),
        "killed in the middle of the drain"
    );
    let next = next_holder(&ha.leases, &ha.lease_name, &leader).await;
    let took_over = killed.elapsed();
    eprintln!("SIGKILL mid-drain: {next} took over from {leader} after {took_over:.1?}");
    assert!(
        took_over <= TAKEOVER_WITHIN,
        "within lease + retry + a request: {took_over:?}"
    );
    wait::until_ok("the next leader finishes the drain", READY_WITHIN, || async {
        match (ha.replicas("order").await, ha.recorded_partitions().await) {
            (Some(1), Some(4)) => Ok(()),
            other => Err(format!("order replicas and partitions: {other:?}")),
        }
    })
    .await;
    for service in ["invoicing", "shipping"] {
        assert_eq!(ha.replicas(service).await, Some(1), "{service} at its replicas");
    }
    assert_eq!(
        ha.uids().await,
        children,
        "the child objects are the same objects"
    );
    assert_eq!(ha.topic_id().await, topic_id, "the topic was never re-created");

    // Orders flow again, and every order, from before the drain and after it, is stored exactly once.
    let order = mode.service(&ready("order").await[0]);
    placed.extend(place_orders(&order, 20..40).await);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;
    drop((order, invoicing, shipping));
    ha.delete().await;
}
