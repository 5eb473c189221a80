//! The outbox survives a Kafka outage: with this test's own broker stopped, orders are still accepted (201)
//! and order stays ready; once the broker is back, each is published exactly once. The shared broker is
//! never touched.

mod support;

use ordersystem_testkit::kafka::records_per_key;
use ordersystem_testkit::own_instance::OwnInstance;
use ordersystem_testkit::wait::until as wait_until;
use ordersystem_testkit::{names, orders};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use support::*;

const INSTANCE: &str = "svc-outage";
const PORT: u16 = 19192;
const CONTROLLER_PORT: u16 = 19193;

async fn unsent(order: &Running) -> i64 {
    count(&order.db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await
}

async fn place(client: &reqwest::Client, order: &Running, n: i64) -> i64 {
    let body = json!({
        "customerId": 1,
        "shippingAddress": {"street": format!("Street {n}"), "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": n, "itemId": 3}]
    });
    orders::place(client, &order.url(""), &body).await["id"]
        .as_i64()
        .expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_taken_while_kafka_is_down_are_published_exactly_once_after_it_returns() {
    let broker = OwnInstance::kafka(INSTANCE, PORT, CONTROLLER_PORT)
        .start_fresh()
        .await;
    let bootstrap = format!("127.0.0.1:{PORT}");
    let topic = names::unique("outage");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let order = spawn_order(&bootstrap, &topic).await;
    let client = reqwest::Client::new();

    let mut ids = vec![place(&client, &order, 1).await];
    wait_until("first order published", Duration::from_secs(60), || async {
        unsent(&order).await == 0
    })
    .await;

    broker.run("stop").await;
    for n in 2..=6 {
        ids.push(place(&client, &order, n).await);
    }
    let ready = client.get(order.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "order must stay ready while Kafka is down");
    assert_eq!(
        unsent(&order).await,
        5,
        "the orders taken during the outage wait in the outbox"
    );
    wait_until(
        "the backlog gauge shows the waiting orders",
        Duration::from_secs(30),
        || async { metric(&order, "ordersystem_outbox_backlog").await == 5.0 },
    )
    .await;
    wait_until("kafka_connected drops to 0", Duration::from_secs(60), || async {
        metric(&order, "ordersystem_kafka_connected").await == 0.0
    })
    .await;

    broker.run("start").await;
    wait_until(
        "outbox drained after the outage",
        Duration::from_secs(120),
        || async { unsent(&order).await == 0 },
    )
    .await;
    assert_eq!(metric(&order, "ordersystem_kafka_connected").await, 1.0);
    wait_until(
        "the backlog gauge returns to 0",
        Duration::from_secs(30),
        || async { metric(&order, "ordersystem_outbox_backlog").await == 0.0 },
    )
    .await;

    // Every order on the topic exactly once.
    let seen = records_per_key(&bootstrap, &topic, &ids.iter().copied().collect()).await;
    let expected: HashMap<i64, usize> = ids.iter().map(|id| (*id, 1)).collect();
    assert_eq!(seen, expected, "each order exactly once");
    order.stop().await;
    tokio::task::spawn_blocking(move || drop(broker))
        .await
        .expect("broker removed");
}
