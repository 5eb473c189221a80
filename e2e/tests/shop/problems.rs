//! Errors a client can rely on: every 4xx and 5xx of the three JSON APIs is `application/problem+json` with
//! the stable `type` of its kind, a refused order or a bad `?limit=` names the field, and the HTML pages
//! show the same error with the same status. With the database cut off (a proxy in front of the real one),
//! every service answers 503 with `Retry-After`, as problem+json on the API and as the message page on the
//! pages.

use crate::support::*;
use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_service_kit::problem::{CONTENT_TYPE, RETRY_AFTER_SECONDS};
use ordersystem_testkit::proxy::Proxy;
use ordersystem_testkit::schema::{self, ServiceDb};
use ordersystem_testkit::{env, names};
use serde_json::{Value, json};

/// A fresh schema for `service`, reached through a proxy that can cut it off.
async fn behind_proxy(service: &str) -> (ServiceDb, Proxy) {
    let mut db = schema::fresh_schema(service).await;
    let proxy = Proxy::start(format!("{}:{}", db.host, db.port)).await;
    db.host = "127.0.0.1".into();
    db.port = proxy.addr.port();
    (db, proxy)
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    async fn of(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("an answer");
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ASCII header").to_string())
        };
        let (content_type, retry_after) = (header("content-type").unwrap_or_default(), header("retry-after"));
        Self {
            status: response.status().as_u16(),
            content_type,
            retry_after,
            body: response.text().await.expect("a body"),
        }
    }

    /// The problem document, after checking status, media type and `type`.
    fn problem(&self, what: &str, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert_eq!(self.content_type, CONTENT_TYPE, "{what}");
        let problem: Value = serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(problem["type"], format!("/problems/{kind}"), "{what}: {problem}");
        assert_eq!(problem["status"], status, "{what}: {problem}");
        assert!(problem["title"].is_string(), "{what}: {problem}");
        problem
    }

    /// The message page, after checking status and media type.
    fn page(&self, what: &str, status: u16, title: &str, detail: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert!(
            self.content_type.starts_with("text/html"),
            "{what}: {}",
            self.content_type
        );
        assert!(
            self.body.contains(&format!("<h1>{title}</h1>")) && self.body.contains(detail),
            "{what}: {}",
            self.body
        );
    }
}

fn an_order(customer: i64, city: &str) -> Value {
    json!({
        "customerId": customer,
        "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": city},
        "orderLine": [{"count": 1, "itemId": 1}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_is_a_problem_on_the_api_and_the_same_message_on_the_pages() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("problems");
    create_topic(&bootstrap, &topic, 1).await;
    let (db, order_proxy) = behind_proxy("order").await;
    let order = spawn_order_in(db, &bootstrap, &topic).await;
    let (db, invoicing_proxy) = behind_proxy("invoicing").await;
    let group = consumer_args(&names::unique("invoicing"), GroupProtocol::Consumer);
    let invoicing = spawn_invoicing(db, &bootstrap, &topic, group).await;
    let (db, shipping_proxy) = behind_proxy("shipping").await;
    let group = consumer_args(&names::unique("shipping"), GroupProtocol::Consumer);
    let shipping = spawn_shipping(db, &bootstrap, &topic, group).await;
    let client = reqwest::Client::new();
    let get = |url: String| Answer::of(client.get(url));
    let post = |body: Value| Answer::of(client.post(order.url("/api/orders")).json(&body));

    // A refused order names the field at fault.
    let blank_city = post(an_order(1, " "))
        .await
        .problem("blank city", 422, "validation");
    assert_eq!(blank_city["detail"], "billing address: city is required");
    assert_eq!(
        blank_city["errors"],
        json!([{"field": "billingAddress.city", "message": "billing address: city is required"}])
    );
    let unknown = post(an_order(999_999, "Berlin"))
        .await
        .problem("unknown customer", 422, "validation");
    assert_eq!(unknown["errors"][0]["field"], "customerId", "{unknown}");
    let wrong_type = post(json!({"customerId": "one"}))
        .await
        .problem("wrong type", 422, "validation");
    assert_eq!(wrong_type["errors"][0]["field"], "customerId", "{wrong_type}");
    let malformed = Answer::of(
        client
            .post(order.url("/api/orders"))
            .header("content-type", "application/json")
            .body("{\"customerId\": "),
    )
    .await;
    malformed.problem("malformed JSON", 400, "bad-request");
    let no_json = Answer::of(client.post(order.url("/api/orders")).body("customerId=1")).await;
    no_json.problem("no JSON content type", 415, "unsupported-media-type");

    // Unknown and unreadable ids: the same error on the API and on the page.
    for (service, api, what) in [
        (&order, "/api/orders", "order"),
        (&invoicing, "/api/invoices", "invoice"),
        (&shipping, "/api/shipments", "shipment"),
    ] {
        let detail = format!("{what} 999999 not found");
        let missing = get(service.url(&format!("{api}/999999")))
            .await
            .problem(what, 404, "not-found");
        assert_eq!(missing["detail"], detail.as_str());
        assert_eq!(missing["title"], "Not found");
        get(service.url("/999999"))
            .await
            .page(what, 404, "Not found", &detail);
        get(service.url(&format!("{api}/abc")))
            .await
            .problem(what, 400, "bad-request");
        get(service.url("/abc"))
            .await
            .page(what, 400, "Bad request", "abc");
    }

    // A bad `limit`: a validation problem naming it on every JSON list, its message page on every page.
    let detail = "limit must be a whole number from 1 to 1000";
    for (service, api, page, what) in [
        (&order, "/api/orders", "/", "orders"),
        (&invoicing, "/api/invoices", "/", "invoices"),
        (&shipping, "/api/shipments", "/", "shipments"),
        (&invoicing, "/api/dead-letters", "/dead-letters", "dead letters"),
    ] {
        let refused = get(service.url(&format!("{api}?limit=0")))
            .await
            .problem(what, 422, "validation");
        assert_eq!(refused["errors"][0]["field"], "limit", "{what}: {refused}");
        get(service.url(&format!("{page}?limit=0")))
            .await
            .page(what, 422, "Invalid request", detail);
    }

    // The database cut off: retryable everywhere, with nothing of the database's own text.
    for proxy in [&order_proxy, &invoicing_proxy, &shipping_proxy] {
        proxy.cut();
    }
    let retry = Some(RETRY_AFTER_SECONDS.to_string());
    let refused = post(an_order(1, "Berlin")).await;
    assert_eq!(refused.retry_after, retry, "an order refused for the outage");
    let problem = refused.problem("an order during the outage", 503, "unavailable");
    assert!(!problem.to_string().contains("127.0.0.1"), "{problem}");
    for (service, api, what) in [
        (&order, "/api/orders", "order"),
        (&invoicing, "/api/invoices", "invoice"),
        (&shipping, "/api/shipments", "shipment"),
    ] {
        let listed = get(service.url(api)).await;
        assert_eq!(listed.retry_after, retry, "{what} list");
        let problem = listed.problem(what, 503, "unavailable");
        let detail = problem["detail"].as_str().expect("detail").to_string();
        let page = get(service.url("/")).await;
        assert_eq!(page.retry_after, retry, "{what} page");
        page.page(what, 503, "Service unavailable", &detail);
    }

    for proxy in [&order_proxy, &invoicing_proxy, &shipping_proxy] {
        proxy.restore();
    }
    for service in [&order, &invoicing, &shipping] {
        wait_until(
            "the service answers again",
            std::time::Duration::from_secs(30),
            || async {
                client
                    .get(service.url("/"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
    }
    for service in [order, invoicing, shipping] {
        service.stop().await;
    }
}
