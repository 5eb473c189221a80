//! Hostile records on the topic: a null value, an empty value, bytes that are not UTF-8, not JSON, JSON of
//! the wrong shape, a missing or mistyped id, nesting deep enough to exhaust a naive parser, a message
//! near the broker's size limit, a duplicate id with different content. Each is dead-lettered with its
//! reason and raw bytes, counted, and the good events around them are stored once; nothing else is lost.

mod support;

use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_testkit::kafka::produce;
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use std::time::Duration;
use support::*;

/// Produce a record whose value may be absent (a Kafka null, as a tombstone has).
async fn produce_raw(producer: &FutureProducer, topic: &str, key: &str, payload: Option<&[u8]>) -> i64 {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|delivery| delivery.offset)
        .unwrap_or_else(|(e, _)| panic!("record {key} not acknowledged: {e}"))
}

fn event_value(id: i64) -> serde_json::Value {
    serde_json::from_slice(&event(id, 1)).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_records_are_dead_lettered_with_their_bytes_and_good_events_are_stored_once() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("hostile");
    // One partition: every hostile record stands between good events of the same partition.
    create_topic(&bootstrap, &topic, 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "1000000")
        .create()
        .expect("producer");

    let mut missing_id = event_value(90);
    missing_id.as_object_mut().expect("object").remove("id");
    let mut id_as_text = event_value(91);
    id_as_text["id"] = json!("ninety-one");
    let mut negative_price = event_value(92);
    negative_price["orderLine"][0]["item"]["price"] = json!(-42.0);
    let mut huge = event_value(93);
    // About 900 kB: under the broker's default 1 MB limit, far beyond any real order.
    huge["customer"]["name"] = json!("x".repeat(900_000));
    huge["orderLine"] = json!([]);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let hostile: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("null value", None),
        ("empty value", Some(Vec::new())),
        ("not UTF-8", Some(vec![0xff, 0xfe, 0x00, 0x80])),
        ("not JSON", Some(b"<order id=1/>".to_vec())),
        ("a JSON array", Some(b"[1, 2, 3]".to_vec())),
        ("JSON null", Some(b"null".to_vec())),
        ("missing id", Some(serde_json::to_vec(&missing_id).expect("json"))),
        ("id as text", Some(serde_json::to_vec(&id_as_text).expect("json"))),
        (
            "negative price",
            Some(serde_json::to_vec(&negative_price).expect("json")),
        ),
        (
            "huge and without lines",
            Some(serde_json::to_vec(&huge).expect("json")),
        ),
        ("nested 10,000 deep", Some(deep.into_bytes())),
        ("same id, other content", Some(event(1, 7))),
    ];

    produce(&bootstrap, &topic, "1", &event(1, 2)).await;
    let mut offsets = Vec::new();
    for (name, payload) in &hostile {
        offsets.push(produce_raw(&producer, &topic, name, payload.as_deref()).await);
    }
    for id in 2..=4 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, id)).await;
    }

    let invoicing = start_fresh(&bootstrap, &topic, GroupProtocol::Consumer).await;
    invoicing.wait_count("SELECT count(*) FROM invoices", 4).await;
    invoicing
        .wait_count("SELECT count(*) FROM dead_letters", hostile.len() as i64)
        .await;

    let mut conn = invoicing.db.connect().await;
    let letters: Vec<(i64, String, Option<Vec<u8>>, String)> =
        sqlx::query_as(r#"SELECT "offset", reason, payload, error FROM dead_letters ORDER BY "offset""#)
            .fetch_all(&mut conn)
            .await
            .expect("dead letters");
    for (((name, payload), offset), (stored_offset, reason, stored_payload, error)) in
        hostile.iter().zip(&offsets).zip(&letters)
    {
        assert_eq!(stored_offset, offset, "{name}: dead-lettered in order");
        let expected_reason = if *name == "same id, other content" {
            "ConflictingDuplicate"
        } else {
            "Undecodable"
        };
        assert_eq!(reason, expected_reason, "{name}: {error}");
        assert_eq!(stored_payload, payload, "{name}: the raw bytes are kept");
        assert!(!error.is_empty(), "{name}: the error says why");
    }
    let error_of = |name: &str| {
        let index = hostile.iter().position(|(n, _)| *n == name).expect("case");
        letters[index].3.clone()
    };
    assert!(
        error_of("missing id").contains("missing field `id`"),
        "{}",
        error_of("missing id")
    );
    assert!(error_of("negative price").contains("negative price"));
    assert!(error_of("huge and without lines").contains("no lines"));

    // The good events once each, the first version of order 1 kept.
    assert_eq!(invoicing.count("SELECT count(*) FROM invoices").await, 4);
    let kept: i32 = sqlx::query_scalar("SELECT count FROM invoice_lines WHERE order_id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("line");
    assert_eq!(kept, 2, "the first version of order 1 stays");
    assert_eq!(
        invoicing.metric("ordersystem_dead_letters").await,
        hostile.len() as f64
    );
    assert_eq!(invoicing.metric("ordersystem_events_consumed").await, 4.0);
    invoicing.stop().await;
}
