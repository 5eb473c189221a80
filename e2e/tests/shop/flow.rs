//! End to end through the real broker and database: an order placed through the API and one through the
//! form each become exactly one invoice and one shipment with the right totals and addresses; events in
//! the reference implementation's format are consumed; bad orders get a 4xx and store nothing.

use crate::support::*;
use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_testkit::{env, names, orders, schema};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use std::time::Duration;

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn wait_for_json(client: &reqwest::Client, url: String) -> Value {
    wait_until(&format!("GET {url}"), Duration::from_secs(60), || {
        let (client, url) = (client.clone(), url.clone());
        async move { get_json(&client, &url).await.is_some() }
    })
    .await;
    get_json(client, &url).await.expect("present after wait")
}

fn api_order() -> Value {
    json!({
        "customerId": 2,
        "shippingAddress": {"street": "Market Street 1", "zip": "94105", "city": "San Francisco"},
        "billingAddress": {"street": "Billing Road 2", "zip": "94000", "city": "Oakland"},
        "orderLine": [{"count": 3, "itemId": 2}, {"count": 2, "itemId": 4}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_form_orders_each_become_one_invoice_and_one_shipment() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("flow");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let invoicing = spawn_invoicing(
        schema::fresh_schema("invoicing").await,
        &bootstrap,
        &topic,
        consumer_args(&names::unique("invoicing"), GroupProtocol::Consumer),
    )
    .await;
    let shipping = spawn_shipping(
        schema::fresh_schema("shipping").await,
        &bootstrap,
        &topic,
        consumer_args(&names::unique("shipping"), GroupProtocol::Classic),
    )
    .await;
    let order = spawn_order(&bootstrap, &topic).await;
    let client = reqwest::Client::new();

    // Through the API: 3 × iPod touch (21.00) + 2 × Apple TV (100.00) = 263.00.
    let created = orders::place(&client, &order.url(""), &api_order()).await;
    let api_id = created["id"].as_i64().expect("id");
    assert_eq!(created["totalPrice"], "263.00");

    // Through the form, as a browser would: open the form, "Add Line", then submit two lines.
    let form_page = text(&client, order.url("/form.html")).await;
    assert!(
        form_page.contains("Eberhard Wolff") && form_page.contains("Add Line"),
        "{form_page}"
    );
    let base = [
        ("customer", "1"),
        ("shippingAddress.street", "Ohlauer Str. 43"),
        ("shippingAddress.zip", "10999"),
        ("shippingAddress.city", "Berlin"),
        ("billingAddress.street", "Krischerstr. 100"),
        ("billingAddress.zip", "40789"),
        ("billingAddress.city", "Monheim am Rhein"),
    ];
    let mut fields: Vec<(&str, &str)> = base.to_vec();
    fields.push(("addLine", ""));
    let with_line = client
        .post(order.url("/line"))
        .form(&fields)
        .send()
        .await
        .expect("add line")
        .text()
        .await
        .expect("html");
    assert!(
        with_line.contains("orderLine[0].count") && with_line.contains("iPod nano"),
        "Add Line did not add a line: {with_line}"
    );
    assert!(
        with_line.contains("Ohlauer Str. 43"),
        "the form lost the person's input"
    );
    let mut fields: Vec<(&str, &str)> = base.to_vec();
    fields.extend([
        ("orderLine[0].count", "42"),
        ("orderLine[0].item", "1"),
        ("orderLine[1].count", "1"),
        ("orderLine[1].item", "3"),
        ("submit", ""),
    ]);
    // Post/Redirect/Get: the browser lands on the new order's page.
    let placed = client
        .post(order.url("/"))
        .form(&fields)
        .send()
        .await
        .expect("submit");
    assert_eq!(placed.status(), 200);
    let form_id: i64 = placed
        .url()
        .path()
        .trim_start_matches('/')
        .parse()
        .expect("the form redirects to the new order's page");
    let detail = placed.text().await.expect("html");
    assert!(
        detail.contains(&format!("Order {form_id} was placed.")) && detail.contains("1765.00"),
        "42 × 42.00 + 1 × 1.00 = 1765.00 on the order page: {detail}"
    );

    // Exactly one invoice and one shipment each, with the right totals and addresses.
    let invoice = wait_for_json(&client, invoicing.url(&format!("/api/invoices/{api_id}"))).await;
    assert_eq!(invoice["totalAmount"], "263.00");
    assert_eq!(invoice["billingAddress"]["city"], "Oakland");
    assert_eq!(invoice["email"], "rod@somewhere.com");
    let invoice = wait_for_json(&client, invoicing.url(&format!("/api/invoices/{form_id}"))).await;
    assert_eq!(invoice["totalAmount"], "1765.00");
    assert_eq!(invoice["billingAddress"]["street"], "Krischerstr. 100");
    let shipment = wait_for_json(&client, shipping.url(&format!("/api/shipments/{api_id}"))).await;
    assert_eq!(shipment["shippingAddress"]["street"], "Market Street 1");
    assert_eq!(shipment["lines"].as_array().map(Vec::len), Some(2));
    let shipment = wait_for_json(&client, shipping.url(&format!("/api/shipments/{form_id}"))).await;
    assert_eq!(shipment["shippingAddress"]["city"], "Berlin");
    assert_eq!(count(&invoicing.db, "SELECT count(*) FROM invoices").await, 2);
    assert_eq!(
        count(&invoicing.db, "SELECT count(*) FROM invoice_lines").await,
        4
    );
    assert_eq!(count(&shipping.db, "SELECT count(*) FROM shipments").await, 2);
    assert_eq!(
        count(&order.db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await,
        0
    );

    // The pages show them.
    let page = text(&client, invoicing.url(&format!("/{form_id}"))).await;
    assert!(
        page.contains("eberhard.wolff@gmail.com") && page.contains("1764.00"),
        "{page}"
    );
    let page = text(&client, shipping.url("/")).await;
    assert!(
        page.contains("Rod Johnson") && page.contains("Eberhard Wolff"),
        "{page}"
    );

    order.stop().await;
    invoicing.stop().await;
    shipping.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_orders_get_a_clear_4xx_and_store_nothing() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("bad");
    create_topic(&bootstrap, &topic, 1).await;
    let order = spawn_order(&bootstrap, &topic).await;
    let client = reqwest::Client::new();
    let with = |pointer: &str, value: Value| {
        let mut body = api_order();
        *body.pointer_mut(pointer).expect("field") = value;
        body
    };
    let post = || client.post(order.url("/api/orders"));
    let invalid = [
        ("no lines", "/orderLine", json!([]), "at least one line"),
        ("zero count", "/orderLine/0/count", json!(0), "count"),
        ("absurd count", "/orderLine/0/count", json!(1_000_000), "count"),
        ("unknown customer", "/customerId", json!(999), "unknown customer"),
        ("unknown item", "/orderLine/1/itemId", json!(999), "unknown item"),
        (
            "blank city",
            "/billingAddress/city",
            json!(" "),
            "city is required",
        ),
    ];
    let mut cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = invalid
        .into_iter()
        .map(|(name, pointer, value, message)| (name, post().json(&with(pointer, value)), 422, message))
        .collect();
    let raw = |body: Vec<u8>| post().header("content-type", "application/json").body(body);
    cases.push(("malformed json", raw(b"{\"customerId\": ".to_vec()), 400, ""));
    // The server answers 413 without reading the body and closes the connection: not one to reuse.
    cases.push((
        "oversized body",
        raw(vec![b' '; 200_000]).header("connection", "close"),
        413,
        "",
    ));
    for (name, request, status, message) in cases {
        let response = request.send().await.expect(name);
        assert_eq!(response.status().as_u16(), status, "{name}");
        let body = response.text().await.expect("body");
        assert!(body.contains(message), "{name}: {body}");
    }
    // The form shows the reason to the person, not a stack trace.
    let response = client
        .post(order.url("/"))
        .form(&[
            ("customer", "1"),
            ("shippingAddress.street", "S"),
            ("shippingAddress.zip", "1"),
            ("shippingAddress.city", "C"),
            ("billingAddress.street", "S"),
            ("billingAddress.zip", "1"),
            ("billingAddress.city", "C"),
            ("submit", ""),
        ])
        .send()
        .await
        .expect("form");
    assert_eq!(response.status(), 422);
    let page = response.text().await.expect("html");
    assert!(
        page.contains("an order needs at least one line") && page.contains("Order : Add"),
        "{page}"
    );
    for table in ["orders", "order_lines", "outbox"] {
        assert_eq!(
            count(&order.db, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} must stay empty"
        );
    }
    let requests = metric(&order, "ordersystem_http_requests").await;
    assert!(requests >= 10.0, "every request is counted");
    assert_eq!(
        metric(&order, "ordersystem_http_request_duration_seconds_count").await,
        // A scrape is counted after its text is made: this one sees the scrape above, which did not.
        requests + 1.0,
        "every request is timed by its route"
    );
    order.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_data_is_the_designs_and_a_restart_adds_nothing() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("seed");
    create_topic(&bootstrap, &topic, 1).await;
    let order = spawn_order(&bootstrap, &topic).await;
    let client = reqwest::Client::new();
    // Seed data exactly as designed, once.
    let customers = get_json(&client, &order.url("/api/customers"))
        .await
        .expect("customers");
    assert_eq!(customers.as_array().map(Vec::len), Some(2));
    let items = get_json(&client, &order.url("/api/items")).await.expect("items");
    assert_eq!(items[0]["name"], "iPod");
    assert_eq!(items[0]["price"], "42.00", "money is a decimal string in our API");
    // A restart on the same schema migrates and seeds again, and adds nothing.
    let db = order.db.clone();
    order.stop().await;
    let order = spawn_order_in(db, &bootstrap, &topic).await;
    let items = get_json(&client, &order.url("/api/items")).await.expect("items");
    let names: Vec<&str> = items
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["iPod", "iPod touch", "iPod nano", "Apple TV"]);
    // Read as text: a JSON parser would turn the prices into floats.
    let raw = client
        .get(order.url("/api/items"))
        .send()
        .await
        .expect("items")
        .text()
        .await
        .expect("text");
    for price in ["42.00", "21.00", "1.00", "100.00"] {
        assert!(
            raw.contains(&format!("\"price\":\"{price}\"")),
            "price {price} exact, as money, on the wire: {raw}"
        );
    }
    let customers = get_json(&client, &order.url("/api/customers"))
        .await
        .expect("customers");
    assert_eq!(customers.as_array().map(Vec::len), Some(2));
    assert_eq!(customers[0]["email"], "eberhard.wolff@gmail.com");
    order.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_format_events_are_consumed() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("reference");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let (invoicing, shipping) = spawn_consumers(&bootstrap, &topic).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    // The design's sample, keyed as the reference keyed it ("<id>created"), and an ISO-8601 variant with
    // fields we do not know.
    let sample = include_str!("../../../services/contract/tests/samples/reference.json");
    let iso = include_str!("../../../services/contract/tests/samples/iso_updated_extra_fields.json");
    for (key, payload) in [("1created", sample), ("7created", iso)] {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("sent");
    }
    let client = reqwest::Client::new();
    let invoice = wait_for_json(&client, invoicing.url("/api/invoices/1")).await;
    assert_eq!(invoice["totalAmount"], "1764.00");
    assert_eq!(invoice["firstname"], "Eberhard");
    let invoice = wait_for_json(&client, invoicing.url("/api/invoices/7")).await;
    assert_eq!(invoice["totalAmount"], "63.10", "3 × 21.0 + 0.1, exact");
    let shipment = wait_for_json(&client, shipping.url("/api/shipments/1")).await;
    assert_eq!(shipment["shippingAddress"]["street"], "Ohlauer Str. 43");
    wait_for_json(&client, shipping.url("/api/shipments/7")).await;
    invoicing.stop().await;
    shipping.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_seeding_an_empty_schema_at_once_agree_on_the_designs_ids() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("seed-race");
    create_topic(&bootstrap, &topic, 1).await;
    let db = schema::fresh_schema("order").await;
    // Two replicas of a first deployment, starting together.
    let (first, second) = tokio::join!(
        spawn_order_in(db.clone(), &bootstrap, &topic),
        spawn_order_in(db, &bootstrap, &topic)
    );
    let client = reqwest::Client::new();
    for order in [&first, &second] {
        let customers = get_json(&client, &order.url("/api/customers"))
            .await
            .expect("customers");
        let ids: Vec<i64> = customers
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["customerId"].as_i64())
            .collect();
        assert_eq!(
            ids,
            [1, 2],
            "customer 1 is Eberhard Wolff, 2 Rod Johnson: {customers}"
        );
        assert_eq!(customers[0]["email"], "eberhard.wolff@gmail.com");
        let items = get_json(&client, &order.url("/api/items")).await.expect("items");
        let ids: Vec<i64> = items
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|i| i["itemId"].as_i64())
            .collect();
        assert_eq!(ids, [1, 2, 3, 4], "{items}");
        assert_eq!(items[0]["name"], "iPod");
    }
    first.stop().await;
    second.stop().await;
}
