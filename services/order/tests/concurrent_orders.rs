//! Orders of concurrent requests are stored together (one transaction for the orders waiting), yet each
//! request gets its own order back, an unknown customer refuses only its own order, and an order the
//! database refuses makes its whole batch fail, after which the rest of that batch is stored one by one.

mod support;

use ordersystem_testkit::{env, names};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::*;

const REQUESTS: usize = 120;
const UNKNOWN_CUSTOMER: i64 = 999_999;
const REFUSED_STREET: &str = "Refused Street 1";

fn order(i: usize) -> Value {
    let customer = if i % 10 == 3 { UNKNOWN_CUSTOMER } else { 1 };
    let street = if i == 50 {
        REFUSED_STREET.to_string()
    } else {
        format!("Street {i}")
    };
    json!({
        "customerId": customer,
        "shippingAddress": {"street": street, "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": 1 + i % 5, "itemId": 1 + (i % 4) as i64}]
    })
}

/// Every value `sql` yields, as a set.
async fn set_of<T>(conn: &mut sqlx::PgConnection, sql: &'static str) -> BTreeSet<T>
where
    T: Ord + Send + Unpin,
    (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let values: Vec<T> = sqlx::query_scalar(sql)
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    values.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_are_stored_together_and_each_request_gets_its_own_answer() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("together");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let service = spawn_order(&bootstrap, &topic).await;
    // The database refuses one street, as a constraint would.
    let mut conn = service.db.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse_street() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.shipping_street = '{REFUSED_STREET}' THEN
             RAISE EXCEPTION 'street refused' USING ERRCODE = 'check_violation';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_street BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_street();"
    )))
    .execute(&mut conn)
    .await
    .expect("trigger");

    let client = reqwest::Client::new();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let (client, url) = (client.clone(), service.url("/api/orders"));
        requests.spawn(async move {
            let response = client.post(url).json(&order(i)).send().await.expect("answer");
            let status = response.status().as_u16();
            (i, status, response.json::<Value>().await.expect("JSON body"))
        });
    }
    let mut accepted = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (i, status, body) in requests.join_all().await {
        let sent = order(i);
        match (i, status) {
            // The database's refusal is a generic internal problem; its text stays in the log.
            (50, 500) => {
                assert_eq!(body["type"], "/problems/internal", "{body}");
                assert!(!body.to_string().contains("street refused"), "{body}");
            }
            (i, 422) if i % 10 == 3 => {
                assert_eq!(
                    body["detail"],
                    format!("unknown customer {UNKNOWN_CUSTOMER}"),
                    "request {i}"
                );
                assert_eq!(body["errors"][0]["field"], "customerId", "request {i}");
            }
            (_, 201) => {
                assert_eq!(
                    body["shippingAddress"], sent["shippingAddress"],
                    "request {i}: its own order"
                );
                assert_eq!(
                    body["orderLine"][0]["count"], sent["orderLine"][0]["count"],
                    "request {i}"
                );
                assert_eq!(
                    body["orderLine"][0]["item"]["itemId"],
                    sent["orderLine"][0]["itemId"]
                );
                assert_eq!(body["customer"]["customerId"], 1);
                assert!(
                    ids.insert(body["id"].as_i64().expect("id")),
                    "request {i}: a new id"
                );
                accepted.insert(
                    sent["shippingAddress"]["street"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            (i, status) => panic!("request {i}: unexpected {status}: {body}"),
        }
    }
    let expected: BTreeSet<String> = (0..REQUESTS)
        .filter(|i| i % 10 != 3 && *i != 50)
        .map(|i| format!("Street {i}"))
        .collect();
    assert_eq!(
        accepted, expected,
        "every valid order accepted, the refused one not"
    );

    // What was answered is what is stored: each accepted order once, with its outbox row.
    let stored: BTreeSet<String> = set_of(&mut conn, "SELECT shipping_street FROM orders").await;
    assert_eq!(stored, expected);
    assert_eq!(
        count(&service.db, "SELECT count(*) FROM orders").await,
        expected.len() as i64
    );
    let outbox_ids: BTreeSet<i64> = set_of(&mut conn, "SELECT record_key::bigint FROM outbox").await;
    assert_eq!(outbox_ids, ids, "one outbox row per accepted order");

    // Every request went through a batch, and they were stored several at a time.
    let orders_in_batches = metric(&service, "ordersystem_batch_records_sum").await;
    let batches = metric(&service, "ordersystem_batch_records_count").await;
    eprintln!("{REQUESTS} orders in {batches} batches");
    assert_eq!(orders_in_batches, REQUESTS as f64);
    assert!(batches < REQUESTS as f64, "some orders were stored together");
    service.stop().await;
}
