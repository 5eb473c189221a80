//! A consumer container killed with SIGKILL in its pod, on the test bed's real node under a steady order
//! load: the kubelet restarts it in the same pod, and the test measures the time from the kill to the first
//! invoice stored again (the invoices' `created_at` in PostgreSQL, on this machine's clock, as the kill).
//! Invoicing runs one replica, so every partition stalls until the restarted container consumes again.
//!
//! - By default, with the operator's per-pod `KAFKA_GROUP_INSTANCE_ID`, the consumer is a static member
//!   under the classic protocol (the kit's `ConsumerArgs::protocol`): the restarted container takes the
//!   killed one's partitions back at once. Recovery must stay well under the session timeout, which is
//!   what a dynamic member would wait (its predecessor holds the partitions until the session expires).
//! - Under the consumer protocol (KIP-848, `KAFKA_GROUP_PROTOCOL=consumer` in the template) the instance
//!   id is not used (see the kit's `Membership`): the killed member's partitions wait for the broker's
//!   session timeout (`group.consumer.session.timeout.ms`, 10 s on the test bed, 45 s by Kafka's default).
//!   This test asserts no duration, only that the restarted container consumes again without a further
//!   crash.
//!
//! - Static membership must not make scale-down worse: under the classic protocol a static member that
//!   shuts down leaves the group (the kit leaves explicitly; librdkafka sends no LeaveGroup for a static
//!   member), so when invoicing goes from 2 pods to 1, no order waits for its invoice anywhere near the
//!   session timeout.
//!
//! With `CONSUMER_RECOVERY_INVOICING_IMAGE` set, invoicing runs that image instead of the operator's: the
//! "before" of BENCHMARKS.md is the static test run on the previous commit's invoicing image, which does not
//! know the instance id, and fails on its duration.
//!
//! Throughout, every order placed before, during and after is invoiced exactly once. Besides the time to
//! the first invoice, each test gives the longest any order accepted after the event waited for its
//! invoice. The figures they print are the ones in BENCHMARKS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_api::names::{Service as ShopService, child_name, pg_identifier, quote_ident};
use ordersystem_e2e::cluster::{self, READY_WITHIN, ready_pods};
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::shop::{Service, SteadyLoad, all_stored_once};
use ordersystem_e2e::{env, wait};
use serde_json::{Value, json};
use sqlx::Connection;

const SYSTEM: &str = "shop";
/// An invoicing image to run instead of the operator's (see the module's documentation).
const INVOICING_IMAGE: &str = "CONSUMER_RECOVERY_INVOICING_IMAGE";
const PARTITIONS: i32 = 2;
/// The kit's session timeout under the classic protocol (`--kafka-session-timeout-ms`): a dynamic member
/// killed under it leaves its partitions stalled this long.
const CLASSIC_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Orders keep coming this long after the event measured, so the backlog and new orders mix.
const LOAD_AFTER: Duration = Duration::from_secs(5);
/// After a scale-down, orders keep coming this long before `LOAD_AFTER`: past the time a partition stalled
/// by a member that did not leave would still wait (half the session timeout), well short of all of it.
const SCALE_DOWN_LOAD: Duration = Duration::from_secs(25);

/// Seconds since the epoch of `at`.
fn epoch(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

/// When the first invoice after `after` was stored, in seconds since the epoch, if there is one yet.
async fn first_invoice_after(schema: &str, after: SystemTime) -> Result<Option<f64>, String> {
    let mut db = sqlx::PgConnection::connect(&env::database_url())
        .await
        .map_err(|e| e.to_string())?;
    // The schema's name is the operator's, quoted; the time is a bound parameter.
    let sql = format!(
        "SELECT extract(epoch FROM min(created_at))::float8 FROM {}.invoices WHERE created_at > to_timestamp($1)",
        quote_ident(schema)
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(epoch(after))
        .fetch_one(&mut db)
        .await
        .map_err(|e| e.to_string())
}

/// The longest time from an order's acceptance to its invoice among `placed` accepted at `from` or later:
/// how long the event's partition stalled.
async fn longest_wait(schema: &str, placed: &BTreeMap<i64, SystemTime>, from: SystemTime) -> Duration {
    let mut db = sqlx::PgConnection::connect(&env::database_url())
        .await
        .expect("connect as admin");
    let ids: Vec<i64> = placed.keys().copied().collect();
    let sql = format!(
        "SELECT order_id, extract(epoch FROM created_at)::float8 FROM {}.invoices WHERE order_id = ANY($1)",
        quote_ident(schema)
    );
    let stored: Vec<(i64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .fetch_all(&mut db)
        .await
        .expect("the invoices' times");
    let longest = stored
        .iter()
        .filter_map(|(id, at)| {
            let accepted = *placed.get(id)?;
            (accepted >= from).then(|| at - epoch(accepted))
        })
        .fold(0.0_f64, f64::max);
    Duration::from_secs_f64(longest.max(0.0))
}

/// The restart count of `pod`'s container and when the running one started.
async fn restarts(pods: &Api<Pod>, name: &str) -> (i32, Option<SystemTime>) {
    let Ok(pod) = pods.get(name).await else {
        return (0, None);
    };
    let status = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|s| s.into_iter().next());
    let count = status.as_ref().map_or(0, |s| s.restart_count);
    let started = status
        .and_then(|s| s.state?.running?.started_at)
        .map(|t| SystemTime::from(t.0));
    (count, started)
}

/// A shop of the test's own whose invoicing runs `replicas` pods with `invoicing_env` in their container
/// (besides the operator's variables), Ready, under a steady load that invoicing is seen to keep up with.
struct LoadedShop {
    shop: NodeShop,
    topic: String,
    invoicing_pods: Vec<Pod>,
    schema: String,
    invoicing: Service,
    load: SteadyLoad,
}

impl LoadedShop {
    async fn start(prefix: &str, replicas: i32, invoicing_env: Value) -> LoadedShop {
        let shop = NodeShop::namespaces(prefix).await;
        shop.install_operator(&[]);
        let mut invoicing = json!({"replicas": replicas, "template": {"container": {"env": invoicing_env}}});
        if let Ok(image) = std::env::var(INVOICING_IMAGE) {
            eprintln!("invoicing runs {image} ({INVOICING_IMAGE})");
            invoicing["image"] = json!(image);
        }
        let topic = shop
            .create_system(SYSTEM, PARTITIONS, json!({ "invoicing": invoicing }))
            .await;
        shop.ready(SYSTEM).await;
        let (client, mode, ns) = (&shop.client, &shop.mode, &shop.shop_ns);
        let count = usize::try_from(replicas).expect("replicas");
        let invoicing_pods = ready_pods(client, ns, SYSTEM, ShopService::Invoicing.as_str(), count).await;
        let schema = pg_identifier(ns, SYSTEM, ShopService::Invoicing);
        let order = mode
            .service_of(client, ns, &child_name(SYSTEM, ShopService::Order))
            .await
            .without_keep_alive();
        let invoicing = mode
            .service_of(client, ns, &child_name(SYSTEM, ShopService::Invoicing))
            .await;
        // The Service's ClusterIP is routed by kube-proxy shortly after the pods are Ready, not at once.
        wait::until_ok("the order Service answers", READY_WITHIN, || order.metrics()).await;
        let load = SteadyLoad::start(order, 0);
        let load_started = SystemTime::now();
        wait::until_some("invoices of the load stored", READY_WITHIN, || async {
            first_invoice_after(&schema, load_started).await.ok().flatten()
        })
        .await;
        // A few seconds of steady consumption, so what follows finds the members in the middle of their work.
        tokio::time::sleep(Duration::from_secs(3)).await;
        LoadedShop {
            shop,
            topic,
            invoicing_pods,
            schema,
            invoicing,
            load,
        }
    }

    /// Stops the load after `LOAD_AFTER`, checks no request failed `during` the event and every order was
    /// invoiced exactly once, and gives the longest wait for an invoice among the orders accepted from
    /// `from` on.
    async fn finish(self, during: &str, from: SystemTime) -> (NodeShop, Duration) {
        tokio::time::sleep(LOAD_AFTER).await;
        let placed = self.load.stop_timed(during, 0).await;
        let ids: BTreeSet<i64> = placed.keys().copied().collect();
        all_stored_once(&self.invoicing, "/api/invoices", &ids).await;
        let longest = longest_wait(&self.schema, &placed, from).await;
        eprintln!(
            "{} orders, each invoiced exactly once; the longest wait for an invoice from then on: {:.2} s",
            placed.len(),
            longest.as_secs_f64()
        );
        (self.shop, longest)
    }
}

/// What one kill showed.
struct Recovery {
    /// From the kill to the first invoice stored after it.
    first_invoice: Duration,
    /// From the kill to the restarted container's start, as the kubelet reports it (whole seconds).
    container_started: Option<Duration>,
    /// The longest an order accepted after the kill waited for its invoice.
    longest_wait: Duration,
    /// The restarted container's log.
    log: String,
}

/// Kills the one invoicing container of a shop whose invoicing container gets `invoicing_env`, under load,
/// and measures until invoices are stored again; the shop is removed at the end.
async fn kill_invoicing_under_load(prefix: &str, invoicing_env: Value) -> Recovery {
    let loaded = LoadedShop::start(prefix, 1, invoicing_env).await;
    let pod = loaded.invoicing_pods[0].clone();
    let pod_name = pod.metadata.name.clone().expect("a pod name");
    let ns = loaded.shop.shop_ns.clone();
    let pods: Api<Pod> = Api::namespaced(loaded.shop.client.clone(), &ns);

    let killed_at = SystemTime::now();
    loaded.shop.mode.crash(&pod);
    let first = wait::until_some(
        "an invoice stored after the kill",
        Duration::from_secs(180),
        || async {
            first_invoice_after(&loaded.schema, killed_at)
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    let first_invoice = Duration::from_secs_f64((first - epoch(killed_at)).max(0.0));
    // The kubelet reports the restart in the pod's status a moment after it happened.
    let started = wait::until_some("the restart in the pod's status", READY_WITHIN, || async {
        match restarts(&pods, &pod_name).await {
            (1, started) => Some(started),
            _ => None,
        }
    })
    .await;
    let (shop, longest_wait) = loaded.finish("the kill", killed_at).await;
    assert_eq!(
        restarts(&pods, &pod_name).await.0,
        1,
        "the killed container restarted once and then kept running"
    );
    let log = cluster::pod_log(&ns, &pod_name);
    // Whole seconds: a start in the second of the kill reads as before it.
    let container_started = started.map(|s| s.duration_since(killed_at).unwrap_or_default());
    eprintln!(
        "{prefix}: the first invoice after the kill was stored {:.2} s after it; the container restarted \
         after {}",
        first_invoice.as_secs_f64(),
        container_started.map_or("? (not known)".into(), |d| format!(
            "{} s (whole seconds)",
            d.as_secs()
        ))
    );
    shop.delete_and_uninstall(SYSTEM).await;
    Recovery {
        first_invoice,
        container_started,
        longest_wait,
        log,
    }
}

/// The services' own defaults: nothing added to the template's environment.
fn defaults() -> Value {
    json!([])
}

#[tokio::test]
async fn a_killed_static_member_by_default_takes_its_partitions_back_well_within_the_session_timeout() {
    let recovery = kill_invoicing_under_load("recover-static", defaults()).await;
    // A dynamic member would wait for the killed one's session to expire: the whole timeout at least.
    assert!(
        recovery.first_invoice < CLASSIC_SESSION_TIMEOUT / 2
            && recovery.longest_wait < CLASSIC_SESSION_TIMEOUT / 2,
        "the restarted static member took {:?} (container started after {:?}) to store an invoice again, and \
         an order waited up to {:?}: not well under the session timeout of {CLASSIC_SESSION_TIMEOUT:?}",
        recovery.first_invoice,
        recovery.container_started,
        recovery.longest_wait
    );
    assert!(
        recovery.log.contains("static group membership")
            && recovery
                .log
                .lines()
                .any(|l| l.contains("consumer started") && l.contains("classic")),
        "by default the restarted consumer runs as a static member of a classic group (the operator sets \
         KAFKA_GROUP_INSTANCE_ID): {}",
        recovery.log
    );
}

#[tokio::test]
async fn a_killed_member_under_the_consumer_protocol_consumes_again_once_the_brokers_session_expired() {
    let consumer_protocol = json!([{"name": "KAFKA_GROUP_PROTOCOL", "value": "consumer"}]);
    let recovery = kill_invoicing_under_load("recover-kip848", consumer_protocol).await;
    assert!(
        !recovery.log.contains("static group membership"),
        "no static membership under the consumer protocol: {}",
        recovery.log
    );
    eprintln!(
        "consumer protocol: the first invoice {:.2} s after the kill, the longest wait {:.2} s",
        recovery.first_invoice.as_secs_f64(),
        recovery.longest_wait.as_secs_f64()
    );
}

/// Scale-down must not get worse with static membership: a static member that shuts down leaves the group
/// (the kit leaves explicitly; librdkafka would not), so the remaining pod takes its partition at once
/// instead of after the session timeout.
#[tokio::test]
async fn a_static_member_scaled_away_leaves_the_group_so_its_partition_moves_at_once() {
    let loaded = LoadedShop::start("recover-scale", 2, defaults()).await;
    let (client, ns) = (loaded.shop.client.clone(), loaded.shop.shop_ns.clone());
    let logs: Vec<(String, cluster::LogFollower)> = loaded
        .invoicing_pods
        .iter()
        .map(|pod| {
            let name = pod.metadata.name.clone().expect("a pod name");
            let follower = cluster::LogFollower::start(&ns, &name);
            (name, follower)
        })
        .collect();
    let scaled_at = SystemTime::now();
    loaded
        .shop
        .systems()
        .patch(
            SYSTEM,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"invoicing": {"replicas": 1}}})),
        )
        .await
        .expect("scale invoicing to 1");
    let remaining = ready_pods(&client, &ns, SYSTEM, ShopService::Invoicing.as_str(), 1).await;
    let remaining = remaining[0].metadata.name.clone().expect("a pod name");
    let (_, gone) = logs
        .iter()
        .find(|(name, _)| *name != remaining)
        .expect("the pod scaled away");
    let topic = loaded.topic.clone();
    // Orders keep coming on both partitions long enough that a stalled one shows.
    tokio::time::sleep(SCALE_DOWN_LOAD).await;
    let (shop, longest) = loaded.finish("the scale-down", scaled_at).await;
    eprintln!(
        "scale-down 2 -> 1 under the classic protocol with static members: the longest wait for an invoice \
         {:.2} s",
        longest.as_secs_f64()
    );
    shop.delete_and_uninstall(SYSTEM).await;
    // The pod scaled away held a partition, which moved: the test saw a move, not an idle member leave.
    let text = gone.text();
    let revoked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("partitions revoked") && l.contains(&format!("{topic}[")))
        .collect();
    eprintln!("the pod scaled away: {revoked:?}");
    assert!(
        !revoked.is_empty(),
        "the pod scaled away had partitions to give up: {text}"
    );
    assert!(
        longest < CLASSIC_SESSION_TIMEOUT / 2,
        "an order accepted after the scale-down waited {longest:?} for its invoice: the leaving member's \
         partition stalled as if it had not left (session timeout {CLASSIC_SESSION_TIMEOUT:?})"
    );
    assert!(
        text.contains("left the group as a static member"),
        "the pod scaled away left the group: {text}"
    );
}
