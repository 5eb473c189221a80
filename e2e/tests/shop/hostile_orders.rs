//! Hostile orders: bodies that are not an order get a clear 4xx and store nothing; text that is an attack
//! elsewhere (HTML and script, SQL metacharacters, quotes, non-ASCII) is an ordinary address here: stored
//! and published byte for byte, and shown escaped on the order, invoice and shipment pages.

use crate::support::*;
use ordersystem_testkit::{env, names, orders};
use serde_json::{Value, json};
use std::time::Duration;

fn order() -> Value {
    json!({
        "customerId": 1,
        "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": 1, "itemId": 1}]
    })
}

fn with(pointer: &str, value: Value) -> String {
    let mut body = order();
    *body.pointer_mut(pointer).expect("field") = value;
    body.to_string()
}

fn without(object: &str, field: &str) -> String {
    let mut body = order();
    let target = if object.is_empty() {
        &mut body
    } else {
        body.pointer_mut(object).expect("object")
    };
    target.as_object_mut().expect("object").remove(field);
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_that_are_not_orders_get_a_clear_4xx_and_store_nothing() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("hostile-orders");
    create_topic(&bootstrap, &topic, 1).await;
    let order_service = spawn_order(&bootstrap, &topic).await;
    let client = reqwest::Client::new();
    let many_lines = json!(
        (0..101)
            .map(|_| json!({"count": 1, "itemId": 1}))
            .collect::<Vec<_>>()
    );
    // (case, content type, body, status, text the error must contain)
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("empty body", "application/json", String::new(), 400, "EOF"),
        ("empty line", "application/json", "\n".into(), 400, "EOF"),
        (
            "truncated JSON",
            "application/json",
            "{\"customerId\": ".into(),
            400,
            "",
        ),
        (
            "JSON null",
            "application/json",
            "null".into(),
            422,
            "invalid type",
        ),
        (
            "JSON array",
            "application/json",
            "[1]".into(),
            422,
            "expected struct OrderInput",
        ),
        ("no content type", "", order().to_string(), 415, "Content-Type"),
        (
            "form content type",
            "application/x-www-form-urlencoded",
            order().to_string(),
            415,
            "",
        ),
        (
            "customerId as text",
            "application/json",
            with("/customerId", json!("1")),
            422,
            "invalid type",
        ),
        (
            "customerId missing",
            "application/json",
            without("", "customerId"),
            422,
            "customerId",
        ),
        (
            "address missing",
            "application/json",
            without("", "shippingAddress"),
            422,
            "shippingAddress",
        ),
        (
            "address as text",
            "application/json",
            with("/billingAddress", json!("Berlin")),
            422,
            "invalid type",
        ),
        (
            "count as text",
            "application/json",
            with("/orderLine/0/count", json!("2")),
            422,
            "invalid type",
        ),
        (
            "count fractional",
            "application/json",
            with("/orderLine/0/count", json!(1.5)),
            422,
            "invalid type",
        ),
        (
            "count beyond i64",
            "application/json",
            with("/orderLine/0/count", json!(1e20)),
            422,
            "",
        ),
        (
            "count negative",
            "application/json",
            with("/orderLine/0/count", json!(-3)),
            422,
            "count must be between",
        ),
        (
            "count zero",
            "application/json",
            with("/orderLine/0/count", json!(0)),
            422,
            "count must be between",
        ),
        (
            "count huge",
            "application/json",
            with("/orderLine/0/count", json!(i64::MAX)),
            422,
            "count must be between",
        ),
        (
            "line without item",
            "application/json",
            with("/orderLine/0", json!({"count": 1})),
            422,
            "itemId",
        ),
        (
            "101 lines",
            "application/json",
            with("/orderLine", many_lines),
            422,
            "at most 100 lines",
        ),
        (
            "item 0",
            "application/json",
            with("/orderLine/0/itemId", json!(0)),
            422,
            "unknown item 0",
        ),
        (
            "item negative",
            "application/json",
            with("/orderLine/0/itemId", json!(-1)),
            422,
            "unknown item -1",
        ),
        (
            "customer unknown",
            "application/json",
            with("/customerId", json!(i64::MAX)),
            422,
            "unknown customer",
        ),
        (
            "street too long",
            "application/json",
            with("/shippingAddress/street", json!("s".repeat(201))),
            422,
            "longer than 200",
        ),
        (
            "zip blank",
            "application/json",
            with("/shippingAddress/zip", json!("\t \n")),
            422,
            "zip is required",
        ),
        (
            "NUL in city",
            "application/json",
            with("/billingAddress/city", json!("Ber\u{0}lin")),
            422,
            "control character",
        ),
        (
            "oversized body",
            "application/json",
            format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000)),
            413,
            "",
        ),
    ];
    let total = cases.len();
    for (name, content_type, body, status, message) in cases {
        let mut request = client.post(order_service.url("/api/orders")).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect(name);
        assert_eq!(response.status().as_u16(), status, "{name}");
        let text = response.text().await.expect("body");
        assert!(text.contains(message), "{name}: {text}");
        assert!(!text.to_lowercase().contains("panic"), "{name}: {text}");
    }
    for table in ["orders", "order_lines", "outbox"] {
        assert_eq!(
            count(&order_service.db, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} stays empty"
        );
    }
    assert!(
        metric(&order_service, "ordersystem_http_requests").await >= total as f64,
        "every request counted"
    );
    assert_eq!(metric(&order_service, "ordersystem_orders_accepted").await, 0.0);
    order_service.stop().await;
}

/// The page at `url` once it exists (an invoice or shipment appears when its consumer got the event).
async fn page(client: &reqwest::Client, url: String) -> String {
    wait_until(&format!("GET {url}"), Duration::from_secs(60), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    text(client, url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn script_and_sql_in_text_fields_are_kept_verbatim_and_shown_escaped() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("hostile-text");
    create_topic(&bootstrap, &topic, 1).await;
    let (invoicing, shipping) = spawn_consumers(&bootstrap, &topic).await;
    let order_service = spawn_order(&bootstrap, &topic).await;
    let client = reqwest::Client::new();
    let script = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let sql = "Robert'); DROP TABLE orders; --";
    let quotes = r#"\"; SELECT pg_sleep(10); -- 'ö' ✓"#;
    let body = json!({
        "customerId": 2,
        "shippingAddress": {"street": script, "zip": quotes, "city": sql},
        "billingAddress": {"street": sql, "zip": "1' OR '1'='1", "city": script},
        "orderLine": [{"count": 2, "itemId": 4}]
    });
    let id = orders::place(&client, &order_service.url(""), &body).await["id"]
        .as_i64()
        .expect("id");

    // Stored and served byte for byte.
    let stored: Value = client
        .get(order_service.url(&format!("/api/orders/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stored["shippingAddress"], body["shippingAddress"]);
    assert_eq!(stored["billingAddress"], body["billingAddress"]);

    for (service, html) in [
        ("order", page(&client, order_service.url(&format!("/{id}"))).await),
        ("invoicing", page(&client, invoicing.url(&format!("/{id}"))).await),
        ("shipping", page(&client, shipping.url(&format!("/{id}"))).await),
    ] {
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{service} page lets markup through:\n{html}"
        );
        assert!(
            html.contains("&#60;script&#62;alert(&#39;x&#39;)"),
            "{service} page shows the text escaped:\n{html}"
        );
        assert!(html.contains("DROP TABLE orders"), "{service}: the text is shown");
    }
    // Still one order, and every table still there.
    assert_eq!(count(&order_service.db, "SELECT count(*) FROM orders").await, 1);
    assert_eq!(count(&invoicing.db, "SELECT count(*) FROM invoices").await, 1);
    assert_eq!(count(&shipping.db, "SELECT count(*) FROM shipments").await, 1);
    order_service.stop().await;
    invoicing.stop().await;
    shipping.stop().await;
}
