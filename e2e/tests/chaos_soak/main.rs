//! The chaos soak: a steady order rate for a given time on the shop's own Kafka cluster (three brokers, a
//! KRaft controller apart, replication factor 3, `min.insync.replicas` 2) and its own PostgreSQL, both
//! reached by the real node's pods over the bridge, while a seeded schedule injects, one after the other,
//! the faults each proved alone elsewhere: a service pod killed (`scenario.rs`), a broker killed or stopped
//! and started (`broker_failover.rs`), PostgreSQL restarted (`shop/postgres_restart.rs`), the operator
//! killed (`operator_ha.rs`), invoicing scaled, the partitions raised with `Drain` and a service's
//! credentials rotated (`operations.rs`). Each fault is followed until it took effect (its evidence is
//! logged) and the shop is whole again. The run ends in the exactly-once check on the services' own tables.
//!
//! `CHAOS_SEED` (default 29) and `CHAOS_DURATION_SECONDS` (default 60: one round of the seven faults, the
//! CI form) choose the run, `CHAOS_RATE` the orders per second (default 20); the seed and the schedule are
//! printed first, so `CHAOS_SEED=… CHAOS_DURATION_SECONDS=…` replays a run. `e2e/extended.sh --soak` runs
//! the long form.

mod faults;
mod load;
mod schedule;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_api::names::{Service as ShopService, pg_identifier, quote_ident};
use ordersystem_e2e::cluster::READY_WITHIN;
use ordersystem_e2e::kafka_cluster::KafkaCluster;
use ordersystem_e2e::node_shop::{ADMIN_SECRET, NodeShop};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_e2e::shop::exactly_once;
use ordersystem_e2e::{env, names, wait};
use serde_json::json;
use sqlx::Connection;

use faults::{Chaos, SYSTEM};
use load::{Load, Tally};
use schedule::{KINDS, Schedule};

const BROKERS: u16 = 3;
/// The own cluster: controller on 19983, brokers on 19984, 19988, 19992 (bridge listeners 2 above).
const KAFKA_BASE_PORT: u16 = 19980;
const POSTGRES_PORT: u16 = 19978;
const PARTITIONS: i32 = 3;

/// `name` from the environment, or `default`.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v}: a whole number"))
    })
}

/// The admin Secret for the own PostgreSQL, as the node's pods reach it (the bridge, by name).
fn admin_secret(url: &str) -> Secret {
    // postgres://user:password@127.0.0.1:port/db
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (credentials, location) = rest.rsplit_once('@').expect("user:password@host");
    let (username, password) = credentials.split_once(':').expect("user:password");
    let (host_port, dbname) = location.split_once('/').expect("host:port/db");
    let port = host_port.rsplit_once(':').expect("host:port").1;
    serde_json::from_value(json!({
        "metadata": {"name": ADMIN_SECRET},
        "stringData": {"host": env::postgres_node_host(), "port": port, "dbname": dbname,
                       "username": username, "password": password}
    }))
    .expect("a Secret")
}

/// The order ids (`column`) in `table` of `service`'s schema of the own PostgreSQL.
async fn stored(
    db: &mut sqlx::PgConnection,
    ns: &str,
    service: ShopService,
    column: &str,
    table: &str,
) -> Vec<i64> {
    let schema = quote_ident(&pg_identifier(ns, SYSTEM, service));
    let sql = format!("SELECT {column} FROM {schema}.{table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(db)
        .await
        .expect("the service's table")
}

/// Every accepted order stored, every stored order invoiced and shipped exactly once, no dead letter; the
/// number of stored orders.
async fn check_exactly_once(url: &str, ns: &str, tally: &Tally) -> usize {
    let mut db = sqlx::PgConnection::connect(url)
        .await
        .expect("the own PostgreSQL");
    let orders: BTreeSet<i64> = stored(&mut db, ns, ShopService::Order, "id", "orders")
        .await
        .into_iter()
        .collect();
    let lost: Vec<&i64> = tally.accepted.difference(&orders).collect();
    assert!(lost.is_empty(), "accepted but not stored: {lost:?}");
    for (service, table) in [
        (ShopService::Invoicing, "invoices"),
        (ShopService::Shipping, "shipments"),
    ] {
        wait::until_ok(
            &format!("every stored order once in {table}"),
            READY_WITHIN,
            || async {
                let mut db = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                exactly_once(&orders, &stored(&mut db, ns, service, "order_id", table).await)
            },
        )
        .await;
        let dead = stored(&mut db, ns, service, "count(*)", "dead_letters").await;
        assert_eq!(dead, vec![0], "no dead letter in {service:?}'s schema");
    }
    orders.len()
}

#[tokio::test]
async fn a_seeded_schedule_of_faults_under_a_steady_order_rate_loses_no_order_and_doubles_none() {
    let started = Instant::now();
    let seed = setting("CHAOS_SEED", 29);
    let duration = Duration::from_secs(setting("CHAOS_DURATION_SECONDS", 60));
    let rate = u32::try_from(setting("CHAOS_RATE", 20)).expect("a rate");
    let longest_pause = (duration.as_secs() / 60).clamp(3, 30);
    let schedule = Schedule::new(seed, longest_pause, i32::from(BROKERS), 1, PARTITIONS);
    eprintln!(
        "chaos soak: seed {seed}, {}s of faults (at least one round of {KINDS}), {rate} orders/s, pauses 1-{longest_pause}s",
        duration.as_secs()
    );
    eprintln!(
        "replay: CHAOS_SEED={seed} CHAOS_DURATION_SECONDS={} CHAOS_RATE={rate}",
        duration.as_secs()
    );
    // The steps a run of this length is expected to reach (about 25 s a fault with its pause); a run goes
    // on past them with the same schedule if its faults are quicker.
    let planned = KINDS
        .max((duration.as_secs() / 25) as usize)
        .next_multiple_of(KINDS);
    for (i, step) in schedule.clone().take(planned).enumerate() {
        eprintln!(
            "schedule {i:>3}: after {:>2}s, {}",
            step.pause.as_secs(),
            step.fault
        );
    }

    let (cluster, postgres) = tokio::join!(
        KafkaCluster::start("e2e-chaos", BROKERS, KAFKA_BASE_PORT),
        OwnInstance::postgres("e2e-chaos-pg", POSTGRES_PORT)
            .with_env("PG_BRIDGE", "yes")
            .start_fresh()
    );
    let url = postgres.run("url").await;
    eprintln!(
        "own Kafka: brokers {:?} at {}; own PostgreSQL on port {POSTGRES_PORT}; after {:.1?}",
        cluster.ids(),
        cluster.bridge_bootstrap(),
        started.elapsed()
    );
    let shop = NodeShop::namespaces("chaos").await;
    shop.install_operator(&[]);
    Api::<Secret>::namespaced(shop.client.clone(), &shop.shop_ns)
        .create(&PostParams::default(), &admin_secret(&url))
        .await
        .expect("the admin Secret");
    let topic = names::unique("chaos-orders");
    let resource: OrderSystem = serde_json::from_value(json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": SYSTEM},
        "spec": {
            "kafka": {"bootstrapServers": cluster.bridge_bootstrap(),
                      "topic": {"name": topic, "partitions": PARTITIONS, "replicationFactor": BROKERS,
                                "partitionIncrease": "Drain", "config": {"min.insync.replicas": "2"}}},
            "postgres": {"adminSecretRef": {"name": ADMIN_SECRET}, "sslMode": "disable"},
            "consumerLag": {"intervalSeconds": 5},
            "deletionPolicy": "Delete"
        }
    }))
    .expect("an OrderSystem");
    shop.systems()
        .create(&PostParams::default(), &resource)
        .await
        .expect("create the OrderSystem");
    shop.ready(SYSTEM).await;
    let front = shop
        .mode
        .service_of(&shop.client, &shop.shop_ns, &format!("{SYSTEM}-order"))
        .await
        .without_keep_alive();
    let load = Load::start(front, rate);
    let mut chaos = Chaos {
        shop,
        cluster,
        postgres,
        topic,
        load,
        invoicing: 1,
    };
    chaos.whole().await;
    eprintln!("shop Ready, load started after {:.1?}", started.elapsed());

    let chaos_started = Instant::now();
    let mut evidence = Vec::new();
    for (i, step) in schedule.enumerate() {
        if i >= KINDS && chaos_started.elapsed() >= duration {
            break;
        }
        tokio::time::sleep(step.pause).await;
        let at = chaos_started.elapsed();
        eprintln!("[{:>6.1}s] step {i}: {}", at.as_secs_f64(), step.fault);
        let shown = chaos.inject(&step.fault).await;
        chaos.whole().await;
        let tally = chaos.load.tally();
        eprintln!(
            "[{:>6.1}s] step {i} took effect: {shown}; shop whole again; orders accepted {}, refused {:?}",
            chaos_started.elapsed().as_secs_f64(),
            tally.accepted.len(),
            tally.refused
        );
        evidence.push(format!(
            "{i:>3} at {:>6.1}s, {:>5.1}s: {}: {shown}",
            at.as_secs_f64(),
            (chaos_started.elapsed() - at).as_secs_f64(),
            step.fault
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let Chaos {
        shop,
        cluster,
        postgres,
        load,
        ..
    } = chaos;
    let tally = load.stop().await;
    assert!(
        tally.unexplained().is_empty(),
        "refusals no fault explains: {:?}",
        tally.unexplained()
    );
    let orders = check_exactly_once(&url, &shop.shop_ns, &tally).await;
    eprintln!("faults, each with its evidence (step, start, took):");
    for line in &evidence {
        eprintln!("  {line}");
    }
    eprintln!(
        "exactly once: seed {seed}, {} faults in {:.1?}; {} orders sent, {} accepted, {orders} stored (answered or \
         not), each invoiced and shipped once; refused {:?}; 0 lost, 0 twice, 0 dead letters",
        evidence.len(),
        chaos_started.elapsed(),
        tally.sent,
        tally.accepted.len(),
        tally.refused
    );

    shop.delete(SYSTEM).await;
    shop.uninstall().await;
    drop((cluster, postgres));
    eprintln!("wall time {:.1?}", started.elapsed());
}
