//! PostgreSQL stopped and started again while orders flow, on this test's own instance (`postgres.sh` with
//! `PG_INSTANCE`; the shared database is never touched): every service reports not ready, order refuses
//! new orders with a retryable 503, the consumers pause their partitions without leaving their groups
//! (no rebalance, same assignment, longer than max.poll.interval.ms), and all recover without a restart;
//! every stored order ends invoiced and shipped exactly once.

use crate::faults::{Load, assert_exactly_once, orders_per_test, shop_processes};
use crate::support::*;
use ordersystem_testkit::events;
use ordersystem_testkit::own_instance::OwnInstance;
use ordersystem_testkit::process::start_all;
use ordersystem_testkit::{env, names};
use std::collections::BTreeSet;
use std::time::Duration;

const INSTANCE: &str = "svc-pg-restart";
const PORT: u16 = 5442;
/// Longer than the consumers' max.poll.interval.ms (10 s, `ServiceProcess::consumer`): a member blocked
/// on the database for this long would be thrown out of its group.
const OUTAGE: Duration = Duration::from_secs(15);

async fn status(url: String) -> u16 {
    reqwest::get(&url).await.map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_pauses_everyone_and_all_recover_without_a_restart() {
    let own = OwnInstance::postgres(INSTANCE, PORT).start_fresh().await;
    let admin_url = own.run("url").await;
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("pg-restart");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let [mut order, mut invoicing, mut shipping] =
        shop_processes("ordersystem-order", &[], &bootstrap, &topic, &admin_url).await;
    start_all(&mut [&mut order, &mut invoicing, &mut shipping]).await;
    let consumers = [&invoicing, &shipping];
    for consumer in consumers {
        wait_until("partitions assigned", Duration::from_secs(60), || async {
            consumer.metric("ordersystem_assigned_partitions").await == f64::from(PARTITIONS)
        })
        .await;
    }
    let rebalances = [
        invoicing.metric("ordersystem_rebalances").await,
        shipping.metric("ordersystem_rebalances").await,
    ];

    let target = orders_per_test();
    let load = Load::start(order.url(""));
    load.wait_accepted(target / 3).await;
    own.run("stop").await;

    // Not ready, and order refuses with a retryable 503 rather than losing an order.
    for service in [&order, &invoicing, &shipping] {
        let url = service.url("/readyz");
        wait_until("/readyz says not ready", Duration::from_secs(60), || {
            let url = url.clone();
            async move { status(url).await == 503 }
        })
        .await;
    }
    // Events another writer puts on the topic meanwhile reach consumers that cannot store them.
    let foreign: BTreeSet<i64> = (1_000_001..=1_000_010).collect();
    for id in &foreign {
        ordersystem_testkit::kafka::produce(
            &bootstrap,
            &topic,
            &id.to_string(),
            &events::order_placed(*id, 1),
        )
        .await;
    }
    for consumer in consumers {
        consumer.wait_log("transient failure, pausing partition").await;
    }
    tokio::time::sleep(OUTAGE).await;
    let refused = reqwest::Client::new()
        .post(order.url("/api/orders"))
        .json(&serde_json::json!({
            "customerId": 1,
            "shippingAddress": {"street": "S 1", "zip": "1", "city": "C"},
            "billingAddress": {"street": "S 1", "zip": "1", "city": "C"},
            "orderLine": [{"count": 1, "itemId": 1}]
        }))
        .send()
        .await
        .expect("order answers while its database is down");
    assert_eq!(refused.status(), 503, "a retryable refusal");

    own.run("start").await;
    for service in [&order, &invoicing, &shipping] {
        service.wait_ready().await;
    }
    let (accepted, failed) = load.finish(target).await;
    let stored = assert_exactly_once(&order.db, &invoicing.db, &shipping.db, &accepted, &foreign).await;
    eprintln!(
        "postgres restart: {} orders accepted, {failed} attempts refused during the outage, {stored} stored",
        accepted.len()
    );
    assert!(failed > 0, "orders were refused while the database was down");
    for (consumer, before) in consumers.into_iter().zip(rebalances) {
        assert_eq!(
            consumer.metric("ordersystem_rebalances").await,
            before,
            "no rebalance: the member never left its group"
        );
        assert_eq!(
            consumer.metric("ordersystem_assigned_partitions").await,
            f64::from(PARTITIONS)
        );
        assert!(consumer.log().contains("partition resumed"));
    }
    for service in [&mut order, &mut invoicing, &mut shipping] {
        assert!(service.is_running(), "recovered without a restart");
        service.stop().await;
        service.assert_no_password_in_log();
    }
    drop(own);
}
