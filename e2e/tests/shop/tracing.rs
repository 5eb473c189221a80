//! One trace per order, across Kafka, with the three services as processes and their JSON logs: a request
//! that arrives with a W3C `traceparent` continues that trace in order (its access log and "order accepted"
//! name the trace id), the outbox row keeps the context, the relay sends it on in the record's
//! `traceparent` header (from its own `publish` span), and invoicing and shipping store the event inside a
//! span of the same trace. An event without headers (the reference system's) gets a trace of its own.
//!
//! The same, exported: with the standard `OTEL_EXPORTER_OTLP_ENDPOINT` set to the test bed's collector
//! (`e2e/infra/otelcol.sh`), an order placed through the form is one trace there, read back from the
//! collector's own output: a tree rooted at the form's request, the relay's `publish` span under it, and
//! invoicing's and shipping's `consume` spans children of that, each linked from the `store_batch` span of
//! the statement that stored it.

use crate::support::*;
use ordersystem_e2e::shop::Service;
use ordersystem_testkit::kafka::{produce, read_from_start};
use ordersystem_testkit::otlp::{self, Span};
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

/// Order, invoicing and shipping as processes on `topic` (created here, one partition), with JSON logs (the
/// kit's at debug, for "stored") and `settings`; ready.
async fn three_services(bootstrap: &str, topic: &str, settings: &[(&str, &str)]) -> [ServiceProcess; 3] {
    create_topic(bootstrap, topic, 1).await;
    let [order_bin, invoicing_bin, shipping_bin] = binaries([
        "ordersystem-order",
        "ordersystem-invoicing",
        "ordersystem-shipping",
    ])
    .await;
    let mut env = vec![
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,ordersystem_service_kit=debug"),
    ];
    env.extend_from_slice(settings);
    let mut order = ServiceProcess::new(
        order_bin,
        schema::fresh_schema("order").await,
        bootstrap,
        topic,
        &env,
    );
    let consumer = |bin, db| ServiceProcess::consumer(bin, db, bootstrap, topic, &names::unique("consumer"));
    let mut invoicing = consumer(invoicing_bin, schema::fresh_schema("invoicing").await);
    let mut shipping = consumer(shipping_bin, schema::fresh_schema("shipping").await);
    order.start(&[]);
    invoicing.start(&env);
    shipping.start(&env);
    for process in [&order, &invoicing, &shipping] {
        process.wait_ready().await;
    }
    [order, invoicing, shipping]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_from_its_request_through_kafka_into_invoicing_and_shipping() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("traced");
    let [order, invoicing, shipping] = three_services(&bootstrap, &topic, &[]).await;

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

/// The spans of `trace` once `done` holds for them (the services export every 100 ms).
async fn spans_when(what: &str, trace: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    wait::until(
        &format!("the collector has {what}"),
        Duration::from_secs(60),
        || async { done(&otlp::trace(trace)) },
    )
    .await;
    otlp::trace(trace)
}

fn one<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name} span of {service} in {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_placed_through_the_form_is_one_trace_in_the_collector_in_causal_order() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("exported");
    let exporting = otlp::exporting();
    let exporting: Vec<(&str, &str)> = exporting.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let [order, invoicing, _shipping] = three_services(&bootstrap, &topic, &exporting).await;

    // A person's order, through the form: nobody upstream is tracing, so order starts the trace.
    let id = Service::new(order.url(""))
        .place_order_by_form()
        .await
        .expect("placed through the form");
    let accepted = logged(&order, "order accepted", id).await;
    let trace = accepted["trace_id"].as_str().expect("a trace id").to_string();

    let spans = spans_when(
        "order's, invoicing's and shipping's spans of the order",
        &trace,
        |spans| {
            ["invoicing", "shipping"]
                .iter()
                .all(|service| spans.iter().any(|s| s.service == *service && s.name == "consume"))
                && spans.iter().any(|s| s.name == "publish")
        },
    )
    .await;

    // One tree: one root, the form's request at order; every other span's parent is in the trace.
    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1, "one root in {spans:#?}");
    let root = roots[0];
    assert_eq!(
        (root.service.as_str(), root.name.as_str()),
        ("order", "request"),
        "{root:#?}"
    );
    assert_eq!(
        root.attributes.get("route").map(String::as_str),
        Some("/"),
        "{root:#?}"
    );
    let by_id = |id: &str| spans.iter().find(|s| s.span_id == id);
    for span in &spans {
        if let Some(parent) = &span.parent {
            let parent = by_id(parent).unwrap_or_else(|| panic!("the parent of {span:#?} is in the trace"));
            assert!(
                parent.start_nanos <= span.start_nanos,
                "{parent:#?} starts before its child {span:#?}"
            );
        }
    }
    // Causal order: the request, then the relay's publish (a descendant of the request), then each
    // consumer's span, a child of the publish span: the record's header carried it.
    let publish = one(&spans, "order", "publish");
    let mut ancestor = publish.parent.clone();
    while let Some(id) = ancestor.clone().filter(|id| *id != root.span_id) {
        ancestor = by_id(&id).and_then(|s| s.parent.clone());
    }
    assert_eq!(
        ancestor.as_deref(),
        Some(root.span_id.as_str()),
        "publish descends from the request"
    );
    assert!(root.start_nanos <= publish.start_nanos);
    for service in ["invoicing", "shipping"] {
        let consume = one(&spans, service, "consume");
        assert_eq!(
            consume.parent.as_deref(),
            Some(publish.span_id.as_str()),
            "{consume:#?}"
        );
        assert!(
            publish.start_nanos <= consume.start_nanos,
            "{publish:#?} before {consume:#?}"
        );
        // The statement that stored it: a span of its own, linked to the record's span.
        let batches = spans_when_linked(service, &trace, &consume.span_id).await;
        assert!(
            !batches.is_empty(),
            "a store_batch span of {service} links {consume:#?}"
        );
    }

    // The reference system's event, without headers: a trace of its own, rooted at invoicing's span.
    produce(&bootstrap, &topic, "9002", &events::order_placed(9002, 1)).await;
    let alone = logged(&invoicing, "stored", 9002).await;
    let own = alone["trace_id"].as_str().expect("a trace id").to_string();
    assert_ne!(own, trace);
    let spans = spans_when("invoicing's span of the headerless event", &own, |spans| {
        spans
            .iter()
            .any(|s| s.service == "invoicing" && s.name == "consume")
    })
    .await;
    let consume = one(&spans, "invoicing", "consume");
    assert_eq!(consume.parent, None, "a root: {consume:#?}");
    assert!(
        spans.iter().all(|s| s.service != "order"),
        "order had no part in it: {spans:#?}"
    );
}

/// The `store_batch` spans of `service`, in any trace, that link to span `span_id` of `trace`.
async fn spans_when_linked(service: &str, trace: &str, span_id: &str) -> Vec<Span> {
    let linked = || {
        otlp::spans_mentioning(trace)
            .into_iter()
            .filter(|s| s.service == service && s.name == "store_batch")
            .filter(|s| s.links.iter().any(|(t, id)| t == trace && id == span_id))
            .collect::<Vec<_>>()
    };
    wait::until(
        &format!("{service}'s store_batch span linked to {span_id}"),
        Duration::from_secs(60),
        || async { !linked().is_empty() },
    )
    .await;
    linked()
}
