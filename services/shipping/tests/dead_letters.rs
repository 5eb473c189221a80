//! Shipping's own schema carries the dead-letter table the shared consumer loop writes: a poison record
//! and a conflicting duplicate are recorded there, duplicates are skipped, and the next event is stored.

use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_testkit::kafka::{create_topic, produce};
use ordersystem_testkit::service::{self, Running};
use ordersystem_testkit::{env, names, schema, wait};
use std::time::Duration;

fn event(id: i64, street: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "customer": {"customerId": 2, "name": "Johnson", "firstname": "Rod", "email": "rod@somewhere.com"},
        "updated": "2023-05-26T09:02:12Z",
        "shippingAddress": {"street": street, "zip": "94105", "city": "San Francisco"},
        "billingAddress": {"street": "Market Street", "zip": "94105", "city": "San Francisco"},
        "orderLine": [{"count": 1, "item": {"itemId": 4, "name": "Apple TV", "price": 100.0}}]
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_conflicts_and_duplicates_are_handled_in_shippings_own_schema() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("ship");
    create_topic(&bootstrap, &topic, 1).await;
    let db = schema::fresh_schema("shipping").await;
    let group = service::consumer_args(&names::unique("shipping"), GroupProtocol::Consumer);
    let config = service::consumer_config(&db, &bootstrap, &topic, group);
    let shipping = Running::start(db.clone(), |listener, waiter| {
        ordersystem_shipping::run(config, listener, waiter)
    })
    .await;

    produce(&bootstrap, &topic, "1", &event(1, "Market Street 1")).await;
    produce(&bootstrap, &topic, "1", &event(1, "Market Street 1")).await; // duplicate
    produce(&bootstrap, &topic, "1", &event(1, "Elsewhere 9")).await; // conflict
    produce(&bootstrap, &topic, "p", b"{\"id\": 2}").await; // poison: fields missing
    produce(&bootstrap, &topic, "3", &event(3, "Market Street 3")).await;

    let mut conn = db.connect().await;
    wait::until(
        "shipment 3 stored after the poison record",
        Duration::from_secs(60),
        || async { shipping.metric("ordersystem_events_consumed").await == 2.0 },
    )
    .await;
    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM dead_letters ORDER BY \"offset\"")
        .fetch_all(&mut conn)
        .await
        .expect("dead letters");
    assert_eq!(reasons, ["ConflictingDuplicate", "Undecodable"]);
    let street: String = sqlx::query_scalar("SELECT shipping_street FROM shipments WHERE order_id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("shipment 1");
    assert_eq!(street, "Market Street 1", "the first version stays");
    assert_eq!(shipping.metric("ordersystem_duplicates_skipped").await, 1.0);
    assert_eq!(shipping.metric("ordersystem_dead_letters").await, 2.0);
    shipping.stop().await;
}
