//! The shop's services as real processes under faults: a bounded stream of orders while a service is
//! killed or its database stopped, and the end check of every fault: each order the order service stored
//! has exactly one invoice and one shipment, and nothing was dead-lettered.

use crate::support::wait_until;
use ordersystem_testkit::names;
use ordersystem_testkit::process::{ServiceProcess, binaries};
use ordersystem_testkit::schema::{self, ServiceDb};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The shop as processes on `topic`, not started yet: order (`order`: `ordersystem-order`, or
/// `ordersystem-order-failpoints`) with `order_extra`, and invoicing and shipping each in a group of its own;
/// each with a fresh schema on the server `admin_url` names.
pub async fn shop_processes(
    order: &'static str,
    order_extra: &[(&str, &str)],
    bootstrap: &str,
    topic: &str,
    admin_url: &str,
) -> [ServiceProcess; 3] {
    let [order_bin, invoicing_bin, shipping_bin] =
        binaries([order, "ordersystem-invoicing", "ordersystem-shipping"]).await;
    let consumer = async |bin, service| {
        let db = schema::fresh_schema_at(admin_url, service).await;
        ServiceProcess::consumer(bin, db, bootstrap, topic, &names::unique(service))
    };
    let order_db = schema::fresh_schema_at(admin_url, "order").await;
    [
        ServiceProcess::new(order_bin, order_db, bootstrap, topic, order_extra),
        consumer(invoicing_bin, "invoicing").await,
        consumer(shipping_bin, "shipping").await,
    ]
}

/// Orders each fault test sends at least: a CI-sized run by default, more with `RELIABILITY_ORDERS`.
pub fn orders_per_test() -> usize {
    std::env::var("RELIABILITY_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// Orders per second the load sends: bounded, so the services are tested, not the machine.
pub fn orders_per_second() -> u64 {
    std::env::var("RELIABILITY_RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50)
}

/// A steady stream of orders from a few workers at `orders_per_second`, until `finish`. A refused or
/// failed attempt (the service is down) is counted, and the next attempt is a new order.
pub struct Load {
    accepted: Arc<Mutex<BTreeSet<i64>>>,
    failed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Orders in flight at once.
const WORKERS: u64 = 4;

impl Load {
    pub fn start(base_url: String) -> Self {
        let accepted = Arc::new(Mutex::new(BTreeSet::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let period = Duration::from_millis(1000 * WORKERS / orders_per_second().max(1));
        let workers = (0..WORKERS)
            .map(|worker| {
                let (accepted, failed, stop, url) = (
                    Arc::clone(&accepted),
                    Arc::clone(&failed),
                    Arc::clone(&stop),
                    format!("{base_url}/api/orders"),
                );
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("client");
                    let mut pace = tokio::time::interval(period);
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for n in (worker..).step_by(WORKERS as usize) {
                        pace.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        match place(&client, &url, n).await {
                            Some(id) => {
                                accepted.lock().expect("lock").insert(id);
                            }
                            None => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            accepted,
            failed,
            stop,
            workers,
        }
    }

    pub fn accepted_count(&self) -> usize {
        self.accepted.lock().expect("lock").len()
    }

    /// Wait until `n` more orders than now were accepted.
    pub async fn wait_more(&self, n: usize) {
        let goal = self.accepted_count() + n;
        self.wait_accepted(goal).await;
    }

    /// Wait until at least `n` orders were accepted in all.
    pub async fn wait_accepted(&self, n: usize) {
        wait_until(
            &format!("{n} orders accepted"),
            Duration::from_secs(120),
            || async { self.accepted_count() >= n },
        )
        .await;
    }

    /// Stop once at least `at_least` orders were accepted; returns the accepted ids and how many
    /// attempts failed.
    pub async fn finish(self, at_least: usize) -> (BTreeSet<i64>, u64) {
        self.wait_accepted(at_least).await;
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("load worker");
        }
        let accepted = self.accepted.lock().expect("lock").clone();
        (accepted, self.failed.load(Ordering::Relaxed))
    }
}

async fn place(client: &reqwest::Client, url: &str, n: u64) -> Option<i64> {
    let body = json!({
        "customerId": n % 2 + 1,
        "shippingAddress": {"street": format!("Street {n}"), "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": n % 5 + 1, "itemId": n % 4 + 1}]
    });
    let response = client.post(url).json(&body).send().await.ok()?;
    if response.status() != 201 {
        return None;
    }
    response.json::<serde_json::Value>().await.ok()?["id"].as_i64()
}

async fn ids(db: &ServiceDb, sql: &str) -> BTreeSet<i64> {
    let mut conn = db.connect().await;
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .expect("ids")
        .into_iter()
        .collect()
}

async fn count(db: &ServiceDb, sql: &str) -> i64 {
    db.count(sql).await
}

/// The end of every fault: the outbox drains, every stored order (accepted or not answered) and every
/// `foreign` event (put on the topic by the test) has exactly one invoice and one shipment, every accepted
/// order is stored, and no dead letter was written. Returns the number of stored orders.
pub async fn assert_exactly_once(
    order: &ServiceDb,
    invoicing: &ServiceDb,
    shipping: &ServiceDb,
    accepted: &BTreeSet<i64>,
    foreign: &BTreeSet<i64>,
) -> usize {
    let extra = i64::try_from(foreign.len()).expect("count");
    wait_until(
        "outbox drained and every order invoiced and shipped",
        Duration::from_secs(120),
        || async {
            let orders = count(order, "SELECT count(*) FROM orders").await + extra;
            count(order, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0
                && count(invoicing, "SELECT count(*) FROM invoices").await == orders
                && count(shipping, "SELECT count(*) FROM shipments").await == orders
        },
    )
    .await;
    let orders = ids(order, "SELECT id FROM orders").await;
    assert!(
        accepted.is_subset(&orders),
        "accepted orders missing from the order database: {:?}",
        accepted.difference(&orders).collect::<Vec<_>>()
    );
    let stored: BTreeSet<i64> = orders.union(foreign).copied().collect();
    // invoices.order_id and shipments.order_id are primary keys: equal sets mean exactly once each.
    assert_eq!(
        ids(invoicing, "SELECT order_id FROM invoices").await,
        stored,
        "invoices"
    );
    assert_eq!(
        ids(shipping, "SELECT order_id FROM shipments").await,
        stored,
        "shipments"
    );
    assert_eq!(
        count(order, "SELECT count(*) FROM outbox").await,
        i64::try_from(orders.len()).expect("count"),
        "one outbox row per order"
    );
    for (db, service) in [(invoicing, "invoicing"), (shipping, "shipping")] {
        assert_eq!(
            count(db, "SELECT count(*) FROM dead_letters").await,
            0,
            "{service} dead-lettered a good event"
        );
    }
    orders.len()
}
