//! Consumers are tolerant readers (design 2.1): each reads only the fields it stores. Through the real broker
//! and database: an event without email and prices is a shipment but not an invoice (dead-lettered with the
//! missing field named), one without a shipping address is an invoice but not a shipment, unknown fields are
//! ignored by both, and an event differing only in fields shipping does not read is a duplicate for
//! shipping but a conflict for invoicing.

use crate::support::*;
use ordersystem_testkit::kafka::produce;
use ordersystem_testkit::{env, names};
use serde_json::{Value, json};
use std::time::Duration;

/// The design's event for order `id`, with `email` and `price` as given (`None`: the field is absent).
fn event(id: i64, email: Option<&str>, price: Option<Value>) -> Value {
    let mut event = json!({
        "id": id,
        "customer": {"customerId": 2, "name": "Johnson", "firstname": "Rod"},
        "updated": "2023-05-26T09:02:12Z",
        "shippingAddress": {"street": "Market Street 1", "zip": "94105", "city": "San Francisco"},
        "billingAddress": {"street": "Market Street 2", "zip": "94105", "city": "San Francisco"},
        "orderLine": [{"count": 2, "item": {"itemId": 4, "name": "Apple TV"}}],
        "numberOfLines": 1
    });
    if let Some(email) = email {
        event["customer"]["email"] = json!(email);
    }
    if let Some(price) = price {
        event["orderLine"][0]["item"]["price"] = price;
    }
    event
}

fn bytes(event: &Value) -> Vec<u8> {
    serde_json::to_vec(event).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_consumer_reads_only_the_fields_it_stores() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("tolerant");
    // One partition, so the records are handled in the order sent.
    create_topic(&bootstrap, &topic, 1).await;
    let (invoicing, shipping) = spawn_consumers(&bootstrap, &topic).await;

    // 1: no email, no price; only invoicing needs them.
    produce(&bootstrap, &topic, "1", &bytes(&event(1, None, None))).await;
    // 2: complete, plus fields neither service knows, at the top, in the customer and in an item.
    let mut extra = event(2, Some("rod@somewhere.com"), Some(json!(100.0)));
    extra["channel"] = json!({"name": "web", "campaign": 7});
    extra["customer"]["loyaltyTier"] = json!("gold");
    extra["orderLine"][0]["item"]["weightGrams"] = json!(1250);
    produce(&bootstrap, &topic, "2", &bytes(&extra)).await;
    // 2 again, differing only in email and price: the same shipment, a different invoice.
    let changed = event(2, Some("other@somewhere.com"), Some(json!(90.0)));
    produce(&bootstrap, &topic, "2", &bytes(&changed)).await;
    // 3: no shipping address; only shipping needs it.
    let mut unshippable = event(3, Some("rod@somewhere.com"), Some(json!(100.0)));
    unshippable
        .as_object_mut()
        .expect("an object")
        .remove("shippingAddress");
    produce(&bootstrap, &topic, "3", &bytes(&unshippable)).await;

    wait_until("shipping handled all four", Duration::from_secs(60), || async {
        metric(&shipping, "ordersystem_events_consumed").await == 2.0
            && metric(&shipping, "ordersystem_duplicates_skipped").await == 1.0
            && count(&shipping.db, "SELECT count(*) FROM dead_letters").await == 1
    })
    .await;
    wait_until("invoicing handled all four", Duration::from_secs(60), || async {
        metric(&invoicing, "ordersystem_events_consumed").await == 2.0
            && count(&invoicing.db, "SELECT count(*) FROM dead_letters").await == 2
    })
    .await;
    // Each event stored for the first time is timed from its Kafka timestamp; duplicates and dead
    // letters are not.
    assert_eq!(
        metric(&shipping, "ordersystem_event_age_seconds_count").await,
        2.0
    );
    assert_eq!(
        metric(&invoicing, "ordersystem_event_age_seconds_count").await,
        2.0
    );

    // Shipping: orders 1 and 2 stored, with what it keeps of them; order 3 dead-lettered, naming the field.
    assert_eq!(
        shipping
            .count("SELECT count(*) FROM shipments WHERE order_id IN (1, 2)")
            .await,
        2
    );
    assert_eq!(
        shipping.count("SELECT count(*) FROM shipment_lines WHERE order_id = 1 AND count = 2 AND item_name = 'Apple TV'").await,
        1
    );
    let mut conn = shipping.db.connect().await;
    let (reason, error): (String, String) = sqlx::query_as("SELECT reason, error FROM dead_letters")
        .fetch_one(&mut conn)
        .await
        .expect("shipping's dead letter");
    assert_eq!(reason, "Undecodable");
    assert!(error.contains("missing field `shippingAddress`"), "{error}");

    // Invoicing: orders 2 (the first version's price) and 3 stored; order 1 dead-lettered naming what is
    // missing, and the changed order 2 dead-lettered as a conflict.
    assert_eq!(
        invoicing
            .count("SELECT count(*) FROM invoices WHERE order_id IN (2, 3)")
            .await,
        2
    );
    assert_eq!(
        invoicing
            .count("SELECT count(*) FROM invoice_lines WHERE order_id = 2 AND price = 100")
            .await,
        1
    );
    let mut conn = invoicing.db.connect().await;
    let letters: Vec<(String, String)> =
        sqlx::query_as("SELECT reason, error FROM dead_letters ORDER BY \"offset\"")
            .fetch_all(&mut conn)
            .await
            .expect("dead letters");
    assert_eq!(letters[0].0, "Undecodable");
    assert!(letters[0].1.contains("missing field `email`"), "{}", letters[0].1);
    assert_eq!(letters[1].0, "ConflictingDuplicate");

    invoicing.stop().await;
    shipping.stop().await;
}
