//! One trace per order, across Kafka, with the three services as processes and their JSON logs: a request
//! that arrives with a W3C `traceparent` continues that trace in order (its access log and "order accepted"
//! name the trace id), the outbox row keeps the context, the relay sends it on in the record's
//! `traceparent` header (from its own `publish` span), and invoicing and shipping store the event inside a
//! span of the same trace. An event without headers (the reference system's) gets a trace of its own.

use crate::support::*;
use ordersystem_testkit::kafka::{produce, read_from_start};
use ordersystem_testkit::process::{ServiceProcess, binaries};
use ordersystem_testkit::{env, events, names, schema, wait};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::{Value, json};
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The JSON log lines of `process` that say `message` about order `id`.
fn lines_about(process: &ServiceProcess, message: &str, id: i64) -> Vec<Value> {
    process
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message && line["order_id"] == id)
        .collect()
}

async fn logged(process: &ServiceProcess, message: &str, id: i64) -> Value {
    wait::until(
        &format!("{} logs {message:?} for order {id}", process.name),
        Duration::from_secs(60),
        || async { !lines_about(process, message, id).is_empty() },
    )
    .await;
    lines_about(process, message, id).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_from_its_request_through_kafka_into_invoicing_and_shipping() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("traced");
    create_topic(&bootstrap, &topic, 1).await;
    let [order_bin, invoicing_bin, shipping_bin] = binaries([
        "ordersystem-order",
        "ordersystem-invoicing",
        "ordersystem-shipping",
    ])
    .await;
    let json_logs = [
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,ordersystem_service_kit=debug"),
    ];
    let mut order = ServiceProcess::new(
        order_bin,
        schema::fresh_schema("order").await,
        &bootstrap,
        &topic,
        &json_logs,
    );
    let mut invoicing = ServiceProcess::consumer(
        invoicing_bin,
        schema::fresh_schema("invoicing").await,
        &bootstrap,
        &topic,
        &names::unique("invoicing"),
    );
    let mut shipping = ServiceProcess::consumer(
        shipping_bin,
        schema::fresh_schema("shipping").await,
        &bootstrap,
        &topic,
        &names::unique("shipping"),
    );
    order.start(&[]);
    invoicing.start(&json_logs);
    shipping.start(&json_logs);
    for process in [&order, &invoicing, &shipping] {
        process.wait_ready().await;
    }

    // An order whose client is tracing: its request carries the client's span.
    let body = json!({
        "customerId": 1,
        "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": 1, "itemId": 1}]
    });
    let created: Value = reqwest::Client::new()
        .post(order.url("/api/orders"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .json(&body)
        .send()
        .await
        .expect("order")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_i64().expect("id");

    // Order: the request and the accepted order are in the client's trace.
    let accepted = logged(&order, "order accepted", id).await;
    assert_eq!(accepted["trace_id"], TRACE, "{accepted}");
    assert_ne!(accepted["span_id"], CLIENT_SPAN, "order's own span: {accepted}");
    let request = order
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "request" && line["route"] == "/api/orders")
        .expect("the access log line");
    assert_eq!(request["trace_id"], TRACE, "{request}");

    // The record carries the trace on, from the relay's span (neither the client's nor order's request's).
    let consumer = read_from_start(&bootstrap, &topic);
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record within 30 s")
        .expect("a record");
    let headers = record.headers().expect("headers");
    let traceparent = headers
        .iter()
        .find(|header| header.key == "traceparent")
        .and_then(|header| std::str::from_utf8(header.value?).ok())
        .expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{traceparent}"
    );
    assert!(
        parts[2] != CLIENT_SPAN && parts[2] != request["span_id"],
        "the relay's own span: {traceparent}"
    );

    // Invoicing and shipping store it inside the same trace, each in a span of its own.
    let invoiced = logged(&invoicing, "stored", id).await;
    let shipped = logged(&shipping, "stored", id).await;
    for stored in [&invoiced, &shipped] {
        assert_eq!(stored["trace_id"], TRACE, "{stored}");
        assert_ne!(stored["span_id"], parts[2], "{stored}");
    }
    assert_ne!(invoiced["span_id"], shipped["span_id"]);

    // The reference system's event, without headers: a trace of its own.
    produce(&bootstrap, &topic, "9001", &events::order_placed(9001, 1)).await;
    let alone = logged(&invoicing, "stored", 9001).await;
    let trace = alone["trace_id"].as_str().expect("a trace id");
    assert!(
        trace.len() == 32 && trace != TRACE && trace != "0".repeat(32),
        "{alone}"
    );
}
