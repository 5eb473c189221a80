//! kill -9 while orders flow, and a restart: nothing lost, nothing twice. The order service is crashed
//! exactly at the points timing cannot hit (failpoints, built only into `ordersystem-order-failpoints`):
//! after the order committed, with the relay's batch locked but unpublished, and between the broker's
//! acknowledgement and marking the rows sent. The consumers are crashed mid-stream. Each test ends with
//! every stored order invoiced and shipped exactly once, and proves its path ran through the relay's and
//! the consumers' counters and the records on the topic.

use crate::faults::{Load, assert_exactly_once, orders_per_test, shop_processes};
use crate::support::*;
use ordersystem_contract::wiring::env as wiring;
use ordersystem_service_kit::failpoints::{ORDER_COMMITTED, RELAY_ACKNOWLEDGED, RELAY_BEFORE_PUBLISH};
use ordersystem_testkit::kafka::records_per_key;
use ordersystem_testkit::process::{ServiceProcess, start_all};
use ordersystem_testkit::{env, names};
use std::collections::BTreeSet;
use std::time::Duration;

/// The shop as processes on a fresh topic and schemas: order (with failpoints), invoicing, shipping.
struct Shop {
    bootstrap: String,
    topic: String,
    order: ServiceProcess,
    invoicing: ServiceProcess,
    shipping: ServiceProcess,
}

impl Shop {
    async fn start() -> Self {
        let bootstrap = env::kafka_bootstrap();
        let topic = names::unique("crash");
        create_topic(&bootstrap, &topic, PARTITIONS).await;
        let order_extra = [(wiring::OUTBOX_POLL_MS, "200")];
        let [order, mut invoicing, mut shipping] = shop_processes(
            "ordersystem-order-failpoints",
            &order_extra,
            &bootstrap,
            &topic,
            &env::database_url(),
        )
        .await;
        start_all(&mut [&mut invoicing, &mut shipping]).await;
        Self {
            bootstrap,
            topic,
            order,
            invoicing,
            shipping,
        }
    }

    async fn assert_exactly_once(&self, accepted: &BTreeSet<i64>) -> usize {
        assert_exactly_once(
            &self.order.db,
            &self.invoicing.db,
            &self.shipping.db,
            accepted,
            &BTreeSet::new(),
        )
        .await
    }

    async fn stored_orders(&self) -> BTreeSet<i64> {
        let mut conn = self.order.db.connect().await;
        sqlx::query_scalar::<_, i64>("SELECT id FROM orders")
            .fetch_all(&mut conn)
            .await
            .expect("orders")
            .into_iter()
            .collect()
    }

    async fn unsent(&self) -> i64 {
        count(
            &self.order.db,
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
        )
        .await
    }

    /// Orders flow; order parks at the `hit`-th pass through `failpoint`, takes `orders_while_parked`
    /// more orders, is killed with SIGKILL there and started again (without failpoints armed). Returns the
    /// accepted orders and the unsent outbox rows left by the killed process.
    async fn crash_order_at(
        &mut self,
        failpoint: &str,
        hit: usize,
        orders_while_parked: usize,
    ) -> (BTreeSet<i64>, i64) {
        self.order
            .start(&[("FAILPOINT_PARK_AT", &format!("{failpoint}:{hit}"))]);
        self.order.wait_ready().await;
        let load = Load::start(self.order.url(""));
        self.order.wait_log("failpoint parked").await;
        load.wait_more(orders_while_parked).await;
        self.order.kill9();
        let unsent_after_kill = self.unsent().await;
        let accepted_before_restart = load.accepted_count();
        self.order.start(&[]);
        self.order.wait_ready().await;
        let (accepted, failed) = load.finish(orders_per_test()).await;
        eprintln!(
            "{failpoint}: {} accepted ({accepted_before_restart} before the restart), {failed} attempts \
             failed while order was down, {unsent_after_kill} unsent rows left by the killed process",
            accepted.len()
        );
        (accepted, unsent_after_kill)
    }

    /// The records on the topic per stored order: each at least once and at most twice. An event goes
    /// out twice only when its round was acknowledged but not yet marked sent as the process died (rounds
    /// overlap, so that can be a round other than the parked one), and each consumer skips exactly those
    /// as duplicates. Returns how many went out twice.
    async fn assert_published_and_duplicates_skipped(&self, stored: usize) -> usize {
        let published = records_per_key(&self.bootstrap, &self.topic, &self.stored_orders().await).await;
        assert_eq!(published.len(), stored, "every stored order published");
        assert!(published.values().all(|n| *n <= 2), "nothing more than twice");
        let republished = published.values().filter(|n| **n == 2).count();
        for consumer in [&self.invoicing, &self.shipping] {
            assert_eq!(
                consumer.metric("ordersystem_duplicates_skipped").await,
                republished as f64,
                "each republished event was skipped as a duplicate, and nothing else"
            );
        }
        republished
    }

    async fn stop(mut self) {
        for service in [&mut self.order, &mut self.invoicing, &mut self.shipping] {
            service.stop().await;
            service.assert_no_password_in_log();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_order_committed_leaves_it_published_and_processed_once_though_never_answered() {
    let mut shop = Shop::start().await;
    // A request handler parks a runtime worker, so the process is killed at once; the relay's failpoints
    // park the main thread and order keeps taking orders meanwhile.
    let (accepted, _) = shop.crash_order_at(ORDER_COMMITTED, 50, 0).await;
    let stored = shop.assert_exactly_once(&accepted).await;
    // The parked request committed its order but was never answered: stored, yet not accepted.
    let unanswered: Vec<i64> = shop
        .stored_orders()
        .await
        .difference(&accepted)
        .copied()
        .collect();
    assert!(
        !unanswered.is_empty(),
        "the order committed at the failpoint is stored though its client got no answer"
    );
    // The parked request held no relay round, but the relay kept running: a round acknowledged and not
    // yet marked as the process died goes out again, and the consumers skip it.
    let republished = shop.assert_published_and_duplicates_skipped(stored).await;
    eprintln!("{ORDER_COMMITTED}: {republished} events of a round in flight published twice");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_before_the_relay_published_is_made_good_by_the_restarted_relay_exactly_once() {
    let mut shop = Shop::start().await;
    let (accepted, unsent_after_kill) = shop.crash_order_at(RELAY_BEFORE_PUBLISH, 20, 10).await;
    assert!(
        unsent_after_kill > 0,
        "the killed relay left its locked batch unsent"
    );
    let stored = shop.assert_exactly_once(&accepted).await;
    assert!(
        shop.order.metric("ordersystem_events_produced").await >= unsent_after_kill as f64,
        "the restarted relay published what the killed one had locked"
    );
    // The parked round published nothing; only an overlapping round acknowledged but unmarked goes out
    // again.
    let republished = shop.assert_published_and_duplicates_skipped(stored).await;
    eprintln!("{RELAY_BEFORE_PUBLISH}: {republished} events of an overlapping round published twice");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_acknowledgement_and_marking_sent_republishes_and_consumers_skip_the_duplicates() {
    let mut shop = Shop::start().await;
    let (accepted, unsent_after_kill) = shop.crash_order_at(RELAY_ACKNOWLEDGED, 20, 10).await;
    assert!(
        unsent_after_kill > 0,
        "the acknowledged batch is still unsent after the kill"
    );
    let stored = shop.assert_exactly_once(&accepted).await;
    let republished = shop.assert_published_and_duplicates_skipped(stored).await;
    assert!(
        republished > 0,
        "the restarted relay published the acknowledged batch again"
    );
    eprintln!("{RELAY_ACKNOWLEDGED}: {republished} events published twice, each skipped once per consumer");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_killed_mid_stream_restart_and_store_every_order_once() {
    let mut shop = Shop::start().await;
    shop.order.start(&[]);
    shop.order.wait_ready().await;
    let target = orders_per_test();
    let load = Load::start(shop.order.url(""));
    for consumer in [&mut shop.invoicing, &mut shop.shipping] {
        // Mid-stream: orders are being sent when the consumer dies, and while it is away.
        load.wait_more(target / 3).await;
        // Right after it stored an event: that offset is stored but not yet committed (auto-commit runs
        // once a second), so the restarted member must get it again.
        // Scraped back to back, so the kill follows the store within milliseconds.
        let stored = consumer.metric("ordersystem_events_consumed").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while consumer.metric("ordersystem_events_consumed").await <= stored {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the consumer stored nothing for 30 s"
            );
        }
        consumer.kill9();
        consumer.start(&[]);
        consumer.wait_ready().await;
    }
    let (accepted, _) = load.finish(target).await;
    let stored = shop.assert_exactly_once(&accepted).await;
    eprintln!("consumers killed: {stored} orders stored");
    for consumer in [&shop.invoicing, &shop.shipping] {
        // Offsets of what the killed member stored in its last second were never committed: redelivered.
        let skipped = consumer.metric("ordersystem_duplicates_skipped").await;
        eprintln!("consumers killed: the restarted member skipped {skipped} redelivered events");
        assert!(
            skipped > 0.0,
            "the restarted consumer skipped what the killed one had stored"
        );
    }
    shop.stop().await;
}
