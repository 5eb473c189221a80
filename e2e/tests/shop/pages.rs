//! The pages a person uses, and the lists a client pages through, against the real broker and database:
//! the services published under public URLs (as `spec.expose` sets them) link one order's order, invoice
//! and shipment pages to each other; a placed order redirects to its page, and reloading that page places
//! nothing; a refused form marks each refused field with its own message and keeps the input; every list
//! comes a page at a time with a `Link` to the next; the stylesheet is the service's own.

use crate::support::*;
use ordersystem_e2e::shop::next_page;
use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_service_kit::public::{PublicUrl, PublicUrls};
use ordersystem_testkit::{names, orders, schema};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Order at the root of `shop.test/shop`, invoicing under `shop.test/invoicing`, shipping at the root of
/// its own host: the hosts need not resolve, the links name them.
fn published() -> PublicUrls {
    let url = |url: &str| PublicUrl::parse(url).ok();
    PublicUrls {
        order: url("https://shop.test/shop"),
        invoicing: url("https://shop.test/invoicing"),
        shipping: url("https://shipping.shop.test"),
    }
}

fn address(street: &str) -> Value {
    json!({"street": street, "zip": "10999", "city": "Berlin"})
}

/// The ids of every page of the JSON list at `path` (`id` or `orderId` of each entry), following
/// `Link: rel="next"`, and how many pages there were.
async fn every_page(client: &reqwest::Client, running: &Running, path: &str, key: &str) -> (Vec<i64>, usize) {
    let (mut ids, mut pages) = (Vec::new(), 0);
    let mut next = Some(path.to_string());
    while let Some(page) = next.take() {
        let response = client.get(running.url(&page)).send().await.expect("list");
        assert_eq!(response.status(), 200, "GET {page}");
        next = next_page(response.headers());
        let list: Vec<Value> = response.json().await.expect("a JSON array");
        ids.extend(list.iter().map(|entry| entry[key].as_i64().expect("id")));
        pages += 1;
    }
    (ids, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_follows_one_order_through_the_published_pages_and_clients_page_through_lists() {
    let bootstrap = ordersystem_testkit::env::kafka_bootstrap();
    let topic = names::unique("pages");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let group = |service: &str| consumer_args(&names::unique(service), GroupProtocol::Consumer);
    let invoicing = spawn_invoicing_published(
        schema::fresh_schema("invoicing").await,
        &bootstrap,
        &topic,
        group("invoicing"),
        Published::on("127.0.0.1", published()).await,
    )
    .await;
    let shipping = spawn_shipping_published(
        schema::fresh_schema("shipping").await,
        &bootstrap,
        &topic,
        group("shipping"),
        Published::on("127.0.0.1", published()).await,
    )
    .await;
    let order = spawn_order_published(
        schema::fresh_schema("order").await,
        &bootstrap,
        &topic,
        Published::on("127.0.0.1", published()).await,
    )
    .await;
    let client = reqwest::Client::new();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Five orders through the API.
    let mut placed = Vec::new();
    for n in 0..5 {
        let body = json!({
            "customerId": 1,
            "shippingAddress": address(&format!("Ohlauer Str. {n}")),
            "billingAddress": address("Krischerstr. 100"),
            "orderLine": [{"count": 2, "itemId": 1}]
        });
        let created = orders::place(&client, &order.url("/shop"), &body).await;
        assert_eq!(created["totalPrice"], "84.00", "money is one decimal string");
        assert_eq!(created["orderLine"][0]["item"]["price"], "42.00");
        placed.push(created["id"].as_i64().expect("id"));
    }

    // One through the form: Post/Redirect/Get.
    let form = [
        ("customer", "2"),
        ("shippingAddress.street", "Market Street 1"),
        ("shippingAddress.zip", "94105"),
        ("shippingAddress.city", "San Francisco"),
        ("billingAddress.street", "Billing Road 2"),
        ("billingAddress.zip", "94000"),
        ("billingAddress.city", "Oakland"),
        ("orderLine[0].count", "3"),
        ("orderLine[0].item", "2"),
        ("submit", ""),
    ];
    let answer = no_redirects
        .post(order.url("/shop/"))
        .form(&form)
        .send()
        .await
        .expect("submit");
    assert_eq!(answer.status(), 303, "a placed order is a See Other to its page");
    let location = answer.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let (id, query) = location.split_once('?').expect("{id}?placed");
    let id: i64 = id.parse().expect("the location names the order");
    assert_eq!(query, "placed");
    placed.push(id);
    // The browser resolves the relative location against the form's URL: the order's page under /shop.
    let page = text(&client, order.url(&format!("/shop/{location}"))).await;
    assert!(page.contains(&format!("Order {id} was placed.")), "{page}");
    assert!(page.contains("63.00"), "3 × 21.00, shown as money: {page}");
    for link in [
        format!("href=\"https://shop.test/invoicing/{id}\""),
        format!("href=\"https://shipping.shop.test/{id}\""),
        "href=\"/shop/static/style.css\"".to_string(),
    ] {
        assert!(page.contains(&link), "the order's page links {link}: {page}");
    }
    // Reloading the page a person landed on places nothing.
    let stored = order.db.count("SELECT count(*) FROM orders").await;
    for _ in 0..2 {
        text(&client, order.url(&format!("/shop/{location}"))).await;
    }
    assert_eq!(order.db.count("SELECT count(*) FROM orders").await, stored);
    assert_eq!(stored, 6);

    // The stylesheet is served by the service itself, under its path.
    let css = client
        .get(order.url("/shop/static/style.css"))
        .send()
        .await
        .expect("stylesheet");
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/css")
    );
    assert!(css.text().await.expect("css").contains(".field-error"));

    // A refused form: every refused field marked with its own message, the input kept, nothing stored.
    let mut refused = form.to_vec();
    refused[2] = ("shippingAddress.zip", " ");
    refused[7] = ("orderLine[0].count", "three");
    let answer = client
        .post(order.url("/shop/"))
        .form(&refused)
        .send()
        .await
        .expect("submit");
    assert_eq!(answer.status(), 422);
    let page = answer.text().await.expect("html");
    for (id, message) in [
        ("shipping-zip-error", "shipping address: zip is required"),
        ("line-0-count-error", "line 1: count must be a whole number"),
    ] {
        assert!(
            page.contains(&format!("id=\"{id}\">{message}</span>")),
            "{id} says {message:?}: {page}"
        );
    }
    assert!(
        page.contains("aria-describedby=\"shipping-zip-error\"")
            && page.contains("aria-describedby=\"line-0-count-error\""),
        "the refused inputs point at their messages: {page}"
    );
    assert!(!page.contains("billing-zip-error"), "a valid field is not marked");
    assert!(page.contains("value=\"Market Street 1\""), "the input is kept");
    assert_eq!(order.db.count("SELECT count(*) FROM orders").await, 6);

    // The order list, two at a time: every order once, in order, three pages.
    let (ids, pages) = every_page(&client, &order, "/shop/api/orders?limit=2", "id").await;
    assert_eq!(ids, placed, "every order once, in id order");
    assert_eq!(pages, 3);
    let bad = client
        .get(order.url("/shop/api/orders?limit=0"))
        .send()
        .await
        .expect("list");
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "limit", "{problem}");
    // The page shows the next one as a link, and each order's invoice and shipment.
    let list = text(&client, order.url("/shop/?limit=2")).await;
    let unescaped = list.replace("&#38;", "&").replace("&amp;", "&");
    assert!(
        unescaped.contains(&format!("rel=\"next\" href=\"?limit=2&after={}\"", placed[1])),
        "{list}"
    );
    assert!(
        list.contains(&format!("href=\"https://shop.test/invoicing/{}\"", placed[0])),
        "{list}"
    );

    // Invoicing and shipping: each order once, across pages, and the same order's pages linked back.
    let expected: BTreeSet<i64> = placed.iter().copied().collect();
    for (running, path) in [
        (&invoicing, "/invoicing/api/invoices?limit=4"),
        (&shipping, "/api/shipments?limit=4"),
    ] {
        wait_until(
            &format!("every order in {path}"),
            Duration::from_secs(60),
            || async {
                let (ids, _) = every_page(&client, running, path, "orderId").await;
                ids.into_iter().collect::<BTreeSet<_>>() == expected
            },
        )
        .await;
        let (ids, pages) = every_page(&client, running, path, "orderId").await;
        assert_eq!((ids.len(), pages), (6, 2), "{path}: each once, two pages");
    }
    let invoice = text(&client, invoicing.url(&format!("/invoicing/{id}"))).await;
    for link in [
        format!("href=\"https://shop.test/shop/{id}\""),
        format!("href=\"https://shipping.shop.test/{id}\""),
        "href=\"/invoicing/static/style.css\"".to_string(),
    ] {
        assert!(invoice.contains(&link), "the invoice links {link}: {invoice}");
    }
    assert!(invoice.contains("<span id=\"total\">63.00</span>"), "{invoice}");
    let amounts: Value = client
        .get(invoicing.url(&format!("/invoicing/api/invoices/{id}")))
        .send()
        .await
        .expect("invoice")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&amounts["totalAmount"], &amounts["lines"][0]["price"]),
        (&json!("63.00"), &json!("21.00"))
    );
    let shipment = text(&client, shipping.url(&format!("/{id}"))).await;
    for link in [
        format!("href=\"https://shop.test/shop/{id}\""),
        format!("href=\"https://shop.test/invoicing/{id}\""),
    ] {
        assert!(shipment.contains(&link), "the shipment links {link}: {shipment}");
    }

    order.stop().await;
    invoicing.stop().await;
    shipping.stop().await;
}
