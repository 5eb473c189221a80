//! Brokers lost under a steady order load, on a Kafka cluster of the test's own: three brokers and a dedicated
//! KRaft controller (`kafka.sh` with `KAFKA_ROLE`, ports 19963-19974), so stopping brokers never costs the
//! quorum. The shop runs as pods on the test bed's real node, its `OrderSystem` asking for replication
//! factor 3 and `min.insync.replicas` 2; the operator runs from this workspace's build on this machine (the
//! change under test is in it, not in the node's operator image), and both reach the brokers' bridge
//! listeners at the bridge address.
//!
//! 1. The broker leading most of the topic's partitions is killed with SIGKILL: the controller moves its
//!    partitions' leadership to the others, the operator reports `DurabilityReduced reason=UnderReplicated`,
//!    and after the broker is started again and back in sync, `FullyReplicated`.
//! 2. Two brokers are stopped together: every partition has one in-sync replica, fewer than
//!    `min.insync.replicas`, so the surviving broker refuses the relay's writes (its log counts the
//!    `NotEnoughReplicasException`s) and the orders wait in the outbox (the order pod's
//!    `ordersystem_outbox_backlog`), while the order service keeps accepting them. The operator reports
//!    `DurabilityReduced reason=BelowMinInsyncReplicas`, without taking `Degraded` for it. Started again,
//!    the brokers catch up, the backlog drains and the condition clears.
//!
//! The run ends in the exactly-once check on the services' own tables: every order placed is invoiced and
//! shipped once, none lost, none twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_api::names::{Service as ShopService, pg_identifier, quote_ident};
use ordersystem_e2e::cluster::{READY_WITHIN, delete_namespace_and_wait, ready_pods, run};
use ordersystem_e2e::control_plane::OperatorProcess;
use ordersystem_e2e::kafka_cluster::{KafkaCluster, Partitions};
use ordersystem_e2e::node_shop::{ADMIN_SECRET, NodeShop};
use ordersystem_e2e::shop::{Service, SteadyLoad, exactly_once};
use ordersystem_e2e::{env, metrics, names, wait};
use serde_json::json;
use sqlx::Connection;

const SYSTEM: &str = "shop";
const PARTITIONS: i32 = 6;
/// How long a fault's effect may take to show: the controller fences a killed broker after its session
/// timeout (9 s), the operator looks again at its resync (30 s, the lag interval) at the latest.
const SHOWS_WITHIN: Duration = Duration::from_secs(90);

/// `DurabilityReduced` of the resource now: status, reason and message.
async fn durability(systems: &Api<OrderSystem>) -> Result<(String, String, String), String> {
    condition(systems, "DurabilityReduced").await
}

async fn condition(systems: &Api<OrderSystem>, type_: &str) -> Result<(String, String, String), String> {
    let os = systems.get(SYSTEM).await.map_err(|e| e.to_string())?;
    let conditions = os.status.map(|s| s.conditions).unwrap_or_default();
    let c = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .ok_or(format!("no {type_} condition yet"))?;
    Ok((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `DurabilityReduced` has `status` and `reason`; its message.
async fn durability_becomes(systems: &Api<OrderSystem>, status: &str, reason: &str) -> String {
    let (status, reason) = (status.to_string(), reason.to_string());
    wait::until_ok(
        &format!("DurabilityReduced={status} reason={reason}"),
        SHOWS_WITHIN,
        || async {
            let (s, r, message) = durability(systems).await?;
            (s == status && r == reason)
                .then_some(message.clone())
                .ok_or(format!("{s} {r}: {message}"))
        },
    )
    .await
}

/// How many partitions each broker leads.
fn leaders(partitions: &Partitions) -> Vec<(i32, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for (leader, _) in partitions.values() {
        *counts.entry(leader.unwrap_or(-1)).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

/// Waits until every partition of `topic` has all of `brokers` in sync; the partitions then.
async fn all_in_sync(cluster: &KafkaCluster, topic: &str, brokers: &[i32]) -> Partitions {
    wait::until_ok("every replica back in sync", SHOWS_WITHIN, || async {
        let partitions = cluster.partitions(topic).await?;
        let lagging: Vec<String> = partitions
            .iter()
            .filter(|(_, (_, isr))| !brokers.iter().all(|b| isr.contains(b)))
            .map(|(p, (_, isr))| format!("partition {p} in sync on {isr:?}"))
            .collect();
        lagging
            .is_empty()
            .then_some(partitions.clone())
            .ok_or(lagging.join("; "))
    })
    .await
}

/// The order pod's outbox backlog now.
async fn backlog(order: &Service) -> Result<f64, String> {
    Ok(metrics::sum(
        &order.metrics().await?,
        "ordersystem_outbox_backlog",
    ))
}

/// Lines of `log` where the broker refused a write to `topic` for too few in-sync replicas.
fn refusals(log: &str, topic: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("NotEnoughReplicasException") && l.contains(&format!("partition {topic}-")))
        .count()
}

/// The order ids in `table` of `service`'s schema.
async fn stored(shop_ns: &str, service: ShopService, table: &str) -> Vec<i64> {
    let mut db = sqlx::PgConnection::connect(&env::database_url())
        .await
        .expect("the test database");
    let schema = pg_identifier(shop_ns, SYSTEM, service);
    let sql = format!("SELECT order_id FROM {}.{table}", quote_ident(&schema));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut db)
        .await
        .expect("the service's table")
}

#[tokio::test]
async fn a_killed_leader_and_two_stopped_brokers_lose_no_order_and_reduced_durability_is_reported() {
    let started = Instant::now();
    let cluster = KafkaCluster::start("e2e-failover", 3, 19960).await;
    eprintln!(
        "cluster: brokers {:?} at {} (pods and operator), KRaft controller apart",
        cluster.ids(),
        cluster.bridge_bootstrap()
    );
    let shop = NodeShop::namespaces("failover").await;
    let (client, shop_ns) = (shop.client.clone(), shop.shop_ns.clone());
    // The operator of this workspace, as a process watching the shop's namespace.
    run(
        "kubectl",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/"),
        ],
    );
    let binary = tokio::task::spawn_blocking(|| ordersystem_testkit::process::binary("ordersystem-operator"))
        .await
        .expect("the operator's build");
    let log = env::state().join(format!("e2e-operator-{shop_ns}.log"));
    let operator = OperatorProcess::start(&binary, Path::new(&env::require("KUBECONFIG")), &shop_ns, &log);

    // The admin Secret names PostgreSQL by the bridge address, which the operator here and the pods reach.
    let mut admin = shop.mode.admin_secret(&client, ADMIN_SECRET).await;
    let bridge_ip = env::require("ORDERSYSTEM_NODE_BRIDGE_IP");
    admin
        .string_data
        .as_mut()
        .expect("stringData")
        .insert("host".into(), bridge_ip);
    Api::<Secret>::namespaced(client.clone(), &shop_ns)
        .create(&PostParams::default(), &admin)
        .await
        .expect("admin secret");
    let topic = names::unique("failover-orders");
    let resource: OrderSystem = serde_json::from_value(json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": SYSTEM},
        "spec": {
            "kafka": {"bootstrapServers": cluster.bridge_bootstrap(),
                      "topic": {"name": topic, "partitions": PARTITIONS, "replicationFactor": 3,
                                "config": {"min.insync.replicas": "2"}}},
            "postgres": {"adminSecretRef": {"name": ADMIN_SECRET}, "sslMode": "disable"},
            "deletionPolicy": "Delete"
        }
    }))
    .expect("an OrderSystem");
    let systems = shop.systems();
    systems
        .create(&PostParams::default(), &resource)
        .await
        .expect("create the OrderSystem");
    shop.ready(SYSTEM).await;
    let message = durability_becomes(&systems, "False", "FullyReplicated").await;
    eprintln!("ready: DurabilityReduced=False FullyReplicated: {message}");

    let order = shop
        .mode
        .service(&ready_pods(&client, &shop_ns, SYSTEM, "order", 1).await[0]);
    let load = SteadyLoad::start(order.clone(), 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("load started after {:?}", started.elapsed());

    // 1. SIGKILL to the broker leading most partitions, then a restart.
    let before = cluster.partitions(&topic).await.expect("metadata");
    let (victim, led) = leaders(&before)
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .expect("leaders");
    eprintln!(
        "phase 1: leaders (broker, partitions led) {:?}; SIGKILL to broker {victim}",
        leaders(&before)
    );
    cluster.kill_broker(victim).await;
    let moved = wait::until_ok("leadership moved off the killed broker", SHOWS_WITHIN, || async {
        let now = cluster.partitions(&topic).await?;
        let still = now.values().filter(|(l, _)| *l == Some(victim)).count();
        (still == 0)
            .then_some(now.clone())
            .ok_or(format!("broker {victim} still leads {still}"))
    })
    .await;
    let changed = before
        .iter()
        .filter(|(p, (l, _))| moved.get(p).map(|(now, _)| now) != Some(l))
        .count();
    assert_eq!(
        changed, led,
        "every partition the killed broker led has a new leader"
    );
    eprintln!(
        "phase 1: {changed} leader changes, leaders now {:?}, in sync {:?}",
        leaders(&moved),
        moved.values().map(|(_, isr)| isr.clone()).collect::<Vec<_>>()
    );
    let message = durability_becomes(&systems, "True", "UnderReplicated").await;
    eprintln!("phase 1: DurabilityReduced=True UnderReplicated: {message}");
    cluster.start_brokers(&[victim]).await;
    all_in_sync(&cluster, &topic, &cluster.ids()).await;
    let message = durability_becomes(&systems, "False", "FullyReplicated").await;
    eprintln!("phase 1: broker {victim} back in sync; DurabilityReduced=False: {message}");

    eprintln!("phase 1 done after {:?}", started.elapsed());

    // 2. Two brokers stopped together: in-sync replicas below the minimum.
    let now = cluster.partitions(&topic).await.expect("metadata");
    let survivor = leaders(&now)
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(id, _)| id)
        .expect("leaders");
    let stopped: Vec<i32> = cluster.ids().into_iter().filter(|id| *id != survivor).collect();
    let refused_before = refusals(&cluster.log(survivor), &topic);
    eprintln!("phase 2: stopping brokers {stopped:?} together; broker {survivor} stays");
    cluster.stop_brokers(&stopped).await;
    let message = durability_becomes(&systems, "True", "BelowMinInsyncReplicas").await;
    eprintln!("phase 2: DurabilityReduced=True BelowMinInsyncReplicas: {message}");
    let (refused, waiting) = wait::until_ok(
        "writes refused by the survivor and orders waiting in the outbox",
        SHOWS_WITHIN,
        || async {
            let refused = refusals(&cluster.log(survivor), &topic).saturating_sub(refused_before);
            let waiting = backlog(&order).await?;
            (refused > 0 && waiting > 0.0)
                .then_some((refused, waiting))
                .ok_or(format!("{refused} refusals, outbox backlog {waiting}"))
        },
    )
    .await;
    let isr = cluster.partitions(&topic).await.expect("metadata");
    eprintln!(
        "phase 2: broker {survivor} refused {refused} writes with NOT_ENOUGH_REPLICAS (NotEnoughReplicasException \
         in its log), outbox backlog {waiting}, in sync {:?}",
        isr.values().map(|(_, isr)| isr.clone()).collect::<Vec<_>>()
    );
    let (degraded, reason, message) = condition(&systems, "Degraded").await.expect("Degraded");
    eprintln!("phase 2: Degraded={degraded} reason={reason}: {message}");
    assert!(
        !["UnderReplicated", "BelowMinInsyncReplicas", "PartitionsOffline"].contains(&reason.as_str()),
        "Degraded keeps its own reasons: {reason}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = backlog(&order).await.expect("metrics");
    eprintln!("phase 2: outbox backlog {grown} after 3 s more, orders still accepted");
    cluster.start_brokers(&stopped).await;
    all_in_sync(&cluster, &topic, &cluster.ids()).await;
    let message = durability_becomes(&systems, "False", "FullyReplicated").await;
    eprintln!("phase 2: brokers {stopped:?} back in sync; DurabilityReduced=False: {message}");
    wait::until_ok("the outbox drained", SHOWS_WITHIN, || async {
        let waiting = backlog(&order).await?;
        (waiting == 0.0).then_some(()).ok_or(format!("backlog {waiting}"))
    })
    .await;
    eprintln!("phase 2 done after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every order accepted throughout, invoiced and shipped exactly once.
    let placed: BTreeSet<i64> = load.stop("a killed leader and two stopped brokers", 100).await;
    for (service, table) in [
        (ShopService::Invoicing, "invoices"),
        (ShopService::Shipping, "shipments"),
    ] {
        wait::until_ok(&format!("every order once in {table}"), READY_WITHIN, || async {
            let stored: Vec<i64> = stored(&shop_ns, service, table)
                .await
                .into_iter()
                .filter(|id| placed.contains(id))
                .collect();
            exactly_once(&placed, &stored)
        })
        .await;
    }
    eprintln!(
        "exactly once: {} orders, 0 lost, 0 twice in invoices and shipments",
        placed.len()
    );

    shop.delete(SYSTEM).await;
    drop(operator);
    std::fs::remove_file(&log).ok();
    for ns in [&shop_ns, &shop.operator_ns] {
        delete_namespace_and_wait(&client, ns).await;
    }
    eprintln!("wall time {:?}", started.elapsed());
}
