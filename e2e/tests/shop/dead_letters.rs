//! Dead letters a person can see and redrive, through the real broker and database: invoicing shows each
//! (page and JSON: reason, error, the payload as text or hexadecimal, when), and a redrive runs one through
//! the same handler, exactly once: a record the database refused is stored once its cause is gone, a
//! second redrive (even a concurrent one) stores nothing more, a conflict stays a conflict and an
//! undecodable record stays undecodable. Metrics count the dead letters and the redrives by outcome.

use crate::support::*;
use ordersystem_testkit::kafka::produce;
use ordersystem_testkit::{env, events, names};
use serde_json::Value;
use std::time::Duration;

/// The `id`s of invoicing's dead letters by the order id in their key (`None` for keyless records).
async fn letters(client: &reqwest::Client, invoicing: &Running) -> Vec<Value> {
    client
        .get(invoicing.url("/api/dead-letters"))
        .send()
        .await
        .expect("dead letters")
        .json()
        .await
        .expect("a JSON array")
}

fn with_key<'a>(letters: &'a [Value], key: &str) -> &'a Value {
    letters
        .iter()
        .find(|letter| letter["key"] == key)
        .unwrap_or_else(|| panic!("no dead letter with key {key}: {letters:?}"))
}

async fn redrive(client: &reqwest::Client, invoicing: &Running, id: i64) -> (u16, Value) {
    let response = client
        .post(invoicing.url(&format!("/api/dead-letters/{id}/redrive")))
        .send()
        .await
        .expect("redrive");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_shown_and_a_redrive_stores_once_what_the_database_refused_before() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("redrive");
    // One partition, so the records are handled in the order sent.
    create_topic(&bootstrap, &topic, 1).await;
    let (invoicing, shipping) = spawn_consumers(&bootstrap, &topic).await;
    let client = reqwest::Client::new();

    // A rule of invoicing's database that order 3 breaks: it is refused for good (not retried) and set
    // aside as Rejected. Removing the rule later is the fixed cause a redrive waits for.
    let mut conn = invoicing.db.connect().await;
    sqlx::query("ALTER TABLE invoices ADD CONSTRAINT no_large_customers CHECK (customer_id < 1000)")
        .execute(&mut conn)
        .await
        .expect("a rule");
    let refused = String::from_utf8(events::order_placed(3, 1))
        .expect("text")
        .replace("\"customerId\":1", "\"customerId\":4711");
    assert!(refused.contains("4711"), "{refused}");

    produce(&bootstrap, &topic, "1", &events::order_placed(1, 1)).await;
    produce(&bootstrap, &topic, "1", &events::order_placed(1, 2)).await; // conflicts with the first
    produce(&bootstrap, &topic, "2", b"not an order").await;
    produce(&bootstrap, &topic, "2", &[0xff, 0x00, 0x2a]).await;
    produce(&bootstrap, &topic, "3", refused.as_bytes()).await;
    wait_until(
        "invoicing set four records aside",
        Duration::from_secs(60),
        || async { invoicing.db.count("SELECT count(*) FROM dead_letters").await == 4 },
    )
    .await;

    // Shown as a client sees them, each with its reason, error and payload.
    let all = letters(&client, &invoicing).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let conflict = with_key(&all, "1");
    assert_eq!(conflict["reason"], "ConflictingDuplicate");
    assert!(
        conflict["error"]
            .as_str()
            .expect("error")
            .contains("order 1 already invoiced")
    );
    let not_json = &all[1];
    assert_eq!(not_json["reason"], "Undecodable");
    assert_eq!(not_json["payload"], "not an order");
    let binary = &all[2];
    assert_eq!(
        (&binary["payload"], &binary["payloadHex"]),
        (&Value::Null, &Value::from("ff002a"))
    );
    assert_eq!(binary["payloadBytes"], 3);
    let rejected = with_key(&all, "3");
    assert_eq!(rejected["reason"], "Rejected");
    assert!(
        rejected["error"]
            .as_str()
            .expect("error")
            .contains("no_large_customers"),
        "{rejected}"
    );
    assert_eq!(rejected["payload"], refused.as_str());
    assert_eq!(rejected["redrivenAt"], Value::Null);
    // And as a person sees them.
    let list = text(&client, invoicing.url("/dead-letters")).await;
    assert!(
        list.contains("ConflictingDuplicate") && list.contains("Rejected"),
        "{list}"
    );
    let id = |letter: &Value| letter["id"].as_i64().expect("id");
    let page = text(&client, invoicing.url(&format!("/dead-letters/{}", id(not_json)))).await;
    assert!(page.contains("<pre id=\"payload\">not an order</pre>"), "{page}");
    assert!(page.contains("id=\"redrive\""), "a redrive button: {page}");

    // What cannot be stored stays a dead letter: the conflict, the bytes that are no order.
    for (letter, says) in [(conflict, "still conflicts"), (not_json, "still undecodable")] {
        let (status, problem) = redrive(&client, &invoicing, id(letter)).await;
        assert_eq!(status, 409, "{problem}");
        assert_eq!(problem["type"], "/problems/conflict");
        assert!(
            problem["detail"].as_str().expect("detail").contains(says),
            "{problem}"
        );
    }
    assert_eq!(
        invoicing
            .db
            .count("SELECT count(*) FROM dead_letters WHERE redriven_at IS NOT NULL")
            .await,
        0
    );
    // The conflict changed nothing: the first version of order 1 is kept.
    assert_eq!(
        invoicing
            .db
            .count("SELECT count(*) FROM invoice_lines WHERE order_id = 1 AND count = 1")
            .await,
        1
    );

    // While the rule stands, a redrive of order 3 is refused again and changes nothing.
    let (status, problem) = redrive(&client, &invoicing, id(rejected)).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("refused again"),
        "{problem}"
    );

    // The cause fixed: two redrives at once store order 3 once; the other finds it redriven.
    sqlx::query("ALTER TABLE invoices DROP CONSTRAINT no_large_customers")
        .execute(&mut conn)
        .await
        .expect("the rule dropped");
    let (first, second) = tokio::join!(
        redrive(&client, &invoicing, id(rejected)),
        redrive(&client, &invoicing, id(rejected))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");
    let stored = if first.0 == 200 { &first.1 } else { &second.1 };
    assert_eq!(
        (&stored["orderId"], &stored["outcome"]),
        (&Value::from(3), &Value::from("Stored"))
    );
    assert_eq!(
        invoicing
            .db
            .count("SELECT count(*) FROM invoices WHERE order_id = 3 AND customer_id = 4711")
            .await,
        1
    );
    let (status, again) = redrive(&client, &invoicing, id(rejected)).await;
    assert_eq!(status, 409);
    assert!(
        again["detail"]
            .as_str()
            .expect("detail")
            .contains("was redriven at"),
        "{again}"
    );
    let shown: Value = client
        .get(invoicing.url(&format!("/api/dead-letters/{}", id(rejected))))
        .send()
        .await
        .expect("dead letter")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["redriveOutcome"], "Stored");
    assert!(shown["redrivenAt"].is_string(), "{shown}");

    // Counted: four dead letters by reason, the redrives by outcome.
    let metrics = text(&client, invoicing.url("/metrics")).await;
    for line in [
        "ordersystem_dead_letters_total{reason=\"ConflictingDuplicate\"} 1",
        "ordersystem_dead_letters_total{reason=\"Undecodable\"} 2",
        "ordersystem_dead_letters_total{reason=\"Rejected\"} 1",
        "ordersystem_dead_letter_redrives_total{outcome=\"Stored\"} 1",
        "ordersystem_dead_letter_redrives_total{outcome=\"AlreadyRedriven\"} 2",
        "ordersystem_dead_letter_redrives_total{outcome=\"ConflictingDuplicate\"} 1",
        "ordersystem_dead_letter_redrives_total{outcome=\"Undecodable\"} 1",
        "ordersystem_dead_letter_redrives_total{outcome=\"Rejected\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Shipping has its own, through the same routes: the conflict and the bytes that are no order.
    let shipped: Vec<Value> = client
        .get(shipping.url("/api/dead-letters"))
        .send()
        .await
        .expect("dead letters")
        .json()
        .await
        .expect("json");
    assert_eq!(
        shipped.len(),
        3,
        "the second order 1 conflicts there too: {shipped:?}"
    );
    invoicing.stop().await;
    shipping.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_redrives_a_dead_letter_from_its_page_and_lands_back_on_it() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("redrive-page");
    create_topic(&bootstrap, &topic, 1).await;
    let (invoicing, shipping) = spawn_consumers(&bootstrap, &topic).await;
    let client = reqwest::Client::new();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut conn = shipping.db.connect().await;
    sqlx::query("ALTER TABLE shipments ADD CONSTRAINT not_yet CHECK (order_id <> 7)")
        .execute(&mut conn)
        .await
        .expect("a rule");
    produce(&bootstrap, &topic, "7", &events::order_placed(7, 2)).await;
    wait_until("shipping set order 7 aside", Duration::from_secs(60), || async {
        shipping.db.count("SELECT count(*) FROM dead_letters").await == 1
    })
    .await;
    let id = shipping.db.count("SELECT max(id) FROM dead_letters").await;
    sqlx::query("ALTER TABLE shipments DROP CONSTRAINT not_yet")
        .execute(&mut conn)
        .await
        .expect("the rule dropped");

    let answer = no_redirects
        .post(shipping.url(&format!("/dead-letters/{id}/redrive")))
        .send()
        .await
        .expect("redrive");
    assert_eq!(answer.status(), 303);
    assert_eq!(
        answer.headers()["location"],
        format!("/dead-letters/{id}?redriven").as_str()
    );
    let page = text(&client, shipping.url(&format!("/dead-letters/{id}?redriven"))).await;
    assert!(page.contains("Redriven: the event was stored."), "{page}");
    assert!(
        !page.contains("id=\"redrive\""),
        "no second redrive offered: {page}"
    );
    assert_eq!(
        shipping
            .db
            .count("SELECT count(*) FROM shipments WHERE order_id = 7")
            .await,
        1
    );
    // The button again (a second tab): the page says why nothing happened.
    let again = client
        .post(shipping.url(&format!("/dead-letters/{id}/redrive")))
        .send()
        .await
        .expect("redrive");
    assert_eq!(again.status(), 409);
    let page = again.text().await.expect("html");
    assert!(
        page.contains("id=\"redrive-error\"") && page.contains("was redriven at"),
        "{page}"
    );
    assert_eq!(
        shipping
            .db
            .count("SELECT count(*) FROM shipments WHERE order_id = 7")
            .await,
        1
    );
    invoicing.stop().await;
    shipping.stop().await;
}
