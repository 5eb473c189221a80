//! A person in a real browser (headless Chromium, in a network namespace whose only links are loopback and
//! the test bed's bridge: `ordersystem_e2e::browser`), against the three services listening on the
//! bridge and published there: opens the order list, fills the form, adds lines, submits, lands on the
//! order's page and reloads it without placing a second order, follows the links to its invoice and its
//! shipment and back, sees each refused field marked, and redrives a dead letter from its page. The
//! browser cannot reach the host's loopback or anything off the machine. Screenshots of each step are
//! written next to the test output.

use crate::support::*;
use fantoccini::Locator;
use ordersystem_e2e::browser::{Browser, bridge_ip};
use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_service_kit::public::{PublicUrl, PublicUrls};
use ordersystem_testkit::kafka::produce;
use ordersystem_testkit::{env, events, names, schema};
use std::process::Command;
use std::time::Duration;
use tokio::net::TcpListener;

/// The text of the element `css` on the browser's page.
async fn text_of(browser: &Browser, css: &str) -> String {
    let element = browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
    element.text().await.expect("text")
}

/// Types `value` into the input `css`, after clearing it.
async fn fill(browser: &Browser, css: &str, value: &str) {
    let input = browser.client.find(Locator::Css(css)).await.expect(css);
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("typed");
}

/// Clicks `css`, a link or button that leads to another page, and waits until that page has loaded: the
/// clicked element then belongs to the page left behind, and the new one is complete.
async fn click(browser: &Browser, css: &str) {
    let element = browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} to click: {e}"));
    element.click().await.expect("clicked");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = element.tag_name().await.is_err();
        let state = browser
            .client
            .execute("return document.readyState", Vec::new())
            .await
            .ok();
        if left && state.as_ref().and_then(|s| s.as_str()) == Some("complete") {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let (at, shown) = (
                path(browser).await,
                browser.client.source().await.unwrap_or_default(),
            );
            panic!("clicking {css} led nowhere; still at {at}: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn select(browser: &Browser, css: &str, value: &str) {
    let select = browser.client.find(Locator::Css(css)).await.expect(css);
    select.select_by_value(value).await.expect("selected");
}

async fn path(browser: &Browser) -> String {
    let url = browser.client.current_url().await.expect("url");
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// Opens the page `href` links, until it shows `css` (what the link leads to is stored a moment later).
async fn open_when_there(browser: &Browser, href: &str, css: &str) {
    wait_until(
        &format!("{href} shows {css}"),
        Duration::from_secs(60),
        || async {
            browser.client.goto(href).await.is_ok() && browser.client.find(Locator::Css(css)).await.is_ok()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_orders_follows_the_order_to_its_invoice_and_shipment_and_redrives_a_dead_letter() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("browser");
    create_topic(&bootstrap, &topic, 1).await;
    // The services on the bridge, each published at its own address there.
    let bridge = bridge_ip();
    let bind = || TcpListener::bind((bridge.as_str(), 0));
    let (order_at, invoicing_at, shipping_at) = (
        bind().await.expect("bind"),
        bind().await.expect("bind"),
        bind().await.expect("bind"),
    );
    let url = |listener: &TcpListener| {
        PublicUrl::parse(&format!("http://{}/", listener.local_addr().expect("address"))).ok()
    };
    let urls = PublicUrls {
        order: url(&order_at),
        invoicing: url(&invoicing_at),
        shipping: url(&shipping_at),
    };
    let published = |listener| Published {
        listener,
        urls: urls.clone(),
    };
    let group = |service: &str| consumer_args(&names::unique(service), GroupProtocol::Consumer);
    let invoicing_db = schema::fresh_schema("invoicing").await;
    let invoicing = spawn_invoicing_published(
        invoicing_db,
        &bootstrap,
        &topic,
        group("invoicing"),
        published(invoicing_at),
    )
    .await;
    let shipping_db = schema::fresh_schema("shipping").await;
    let shipping = spawn_shipping_published(
        shipping_db,
        &bootstrap,
        &topic,
        group("shipping"),
        published(shipping_at),
    )
    .await;
    let order = spawn_order_published(
        schema::fresh_schema("order").await,
        &bootstrap,
        &topic,
        published(order_at),
    )
    .await;

    let mut browser = Browser::start("shop-browser").await;
    // The list, then "Add Order".
    browser
        .client
        .goto(&order.url("/"))
        .await
        .expect("the order list");
    assert_eq!(text_of(&browser, "h1").await, "Order: View all");
    browser.screenshot("order-list").await;
    click(&browser, "a[href='form.html']").await;
    assert_eq!(path(&browser).await, "/form.html");

    // The form: customer, both addresses, two lines added with "Add Line".
    select(&browser, "#customer", "2").await;
    for (field, value) in [
        ("#shipping-street", "Market Street 1"),
        ("#shipping-zip", "94105"),
        ("#shipping-city", "San Francisco"),
        ("#billing-street", "Billing Road 2"),
        ("#billing-zip", "94000"),
        ("#billing-city", "Oakland"),
    ] {
        fill(&browser, field, value).await;
    }
    click(&browser, "#add-line").await;
    fill(&browser, "#line-0-count", "3").await;
    select(&browser, "#line-0-item", "2").await;
    click(&browser, "#add-line").await;
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#shipping-street"))
            .await
            .expect("street")
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("Market Street 1"),
        "Add Line keeps what was typed"
    );
    select(&browser, "#line-1-item", "4").await;
    browser.screenshot("form-filled").await;

    // Submit: the browser lands on the new order's page.
    click(&browser, "#submit").await;
    let landed = path(&browser).await;
    let id: i64 = landed
        .strip_prefix('/')
        .and_then(|rest| rest.strip_suffix("?placed"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("landed on {landed}, not on the order's page"));
    assert_eq!(
        text_of(&browser, "#placed").await,
        format!("Order {id} was placed.")
    );
    assert_eq!(
        text_of(&browser, "#total").await,
        "163.00",
        "3 × 21.00 + 1 × 100.00"
    );
    browser.screenshot("order-placed").await;
    // A reload shows the order again and places nothing.
    browser.client.refresh().await.expect("reload");
    browser.client.refresh().await.expect("reload");
    assert_eq!(path(&browser).await, landed);
    assert_eq!(order.db.count("SELECT count(*) FROM orders").await, 1);

    // Its invoice and its shipment, by the links on its page, and back.
    let invoice_href = browser
        .client
        .find(Locator::Css("#invoice"))
        .await
        .expect("invoice link")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    assert_eq!(invoice_href, invoicing.url(&format!("/{id}")));
    open_when_there(&browser, &invoice_href, "#total").await;
    assert_eq!(text_of(&browser, "#total").await, "163.00");
    assert_eq!(text_of(&browser, "h1").await, format!("Invoice {id}"));
    browser.screenshot("invoice").await;
    let shipment_href = browser
        .client
        .find(Locator::Css("#shipment"))
        .await
        .expect("shipment link")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    open_when_there(&browser, &shipment_href, "#customer").await;
    assert_eq!(text_of(&browser, "h1").await, format!("Shipment {id}"));
    assert_eq!(text_of(&browser, "#customer").await, "Rod Johnson");
    browser.screenshot("shipment").await;
    click(&browser, "#order").await;
    assert_eq!(path(&browser).await, format!("/{id}"));

    // A refused form: the refused field marked with its message, the input kept, nothing placed.
    browser
        .client
        .goto(&order.url("/form.html"))
        .await
        .expect("the form");
    fill(&browser, "#shipping-street", "Market Street 1").await;
    fill(&browser, "#shipping-city", "San Francisco").await;
    for field in ["#billing-street", "#billing-zip", "#billing-city"] {
        fill(&browser, field, "x").await;
    }
    click(&browser, "#add-line").await;
    click(&browser, "#submit").await;
    assert_eq!(
        text_of(&browser, "#shipping-zip-error").await,
        "shipping address: zip is required"
    );
    let zip = browser
        .client
        .find(Locator::Css("#shipping-zip"))
        .await
        .expect("zip");
    assert_eq!(
        zip.attr("aria-invalid").await.expect("attr").as_deref(),
        Some("true")
    );
    assert!(
        browser
            .client
            .find(Locator::Css("#shipping-street-error"))
            .await
            .is_err(),
        "a valid field is not marked"
    );
    browser.screenshot("field-error").await;
    assert_eq!(order.db.count("SELECT count(*) FROM orders").await, 1);

    // A dead letter, redriven from its page once its cause is gone.
    let mut conn = invoicing.db.connect().await;
    sqlx::query("ALTER TABLE invoices ADD CONSTRAINT no_large_customers CHECK (customer_id < 1000)")
        .execute(&mut conn)
        .await
        .expect("a rule");
    let refused = String::from_utf8(events::order_placed(9001, 1))
        .expect("text")
        .replace("\"customerId\":1", "\"customerId\":4711");
    produce(&bootstrap, &topic, "9001", refused.as_bytes()).await;
    wait_until(
        "invoicing set order 9001 aside",
        Duration::from_secs(60),
        || async { invoicing.db.count("SELECT count(*) FROM dead_letters").await == 1 },
    )
    .await;
    sqlx::query("ALTER TABLE invoices DROP CONSTRAINT no_large_customers")
        .execute(&mut conn)
        .await
        .expect("the rule dropped");
    browser
        .client
        .goto(&invoicing.url("/"))
        .await
        .expect("the invoice list");
    click(&browser, "#dead-letters").await;
    browser.screenshot("dead-letters").await;
    click(&browser, "table a").await;
    assert_eq!(text_of(&browser, "#reason").await, "Rejected");
    assert!(text_of(&browser, "#payload").await.contains("4711"));
    browser.screenshot("dead-letter").await;
    click(&browser, "#redrive").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !path(&browser).await.ends_with("?redriven") {
        if tokio::time::Instant::now() > deadline {
            let (at, shown) = (
                path(&browser).await,
                browser.client.source().await.unwrap_or_default(),
            );
            panic!("the redrive did not come back to the dead letter's page but to {at}: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        text_of(&browser, "#notice").await,
        "Redriven: the event was stored."
    );
    assert!(
        browser.client.find(Locator::Css("#redrive")).await.is_err(),
        "no second redrive offered"
    );
    browser.screenshot("redriven").await;
    assert_eq!(
        invoicing
            .db
            .count("SELECT count(*) FROM invoices WHERE order_id = 9001")
            .await,
        1
    );

    // The fence: the host's loopback and an address off the machine are out of the browser's reach.
    let loopback = format!("http://127.0.0.1:{}/", order.addr.port());
    for unreachable in [loopback.as_str(), "http://198.51.100.7/"] {
        let opened = browser.client.goto(unreachable).await;
        let shown = browser.client.source().await.unwrap_or_default();
        assert!(
            opened.is_err() || shown.contains("ERR_"),
            "the browser reached {unreachable}: {shown}"
        );
    }
    let routes = Command::new("ip")
        .args(["-n", "ordersystem-browser", "route", "show", "default"])
        .output()
        .expect("ip");
    assert!(
        routes.status.success() && routes.stdout.is_empty(),
        "the browser's namespace has no default route"
    );

    browser.stop().await;
    order.stop().await;
    invoicing.stop().await;
    shipping.stop().await;
}
