//! Partitions added to the topic are picked up without a restart (a short metadata refresh, 5 s in the
//! tests, 30 s by default), with both group protocols, and their events are stored.

mod support;

use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_testkit::wait::until as wait_until;
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use support::*;

async fn added_partitions_are_consumed(protocol: GroupProtocol) {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("grow");
    create_topic(&bootstrap, &topic, 1).await;
    let invoicing = start_fresh(&bootstrap, &topic, protocol).await;
    wait_until("one partition assigned", Duration::from_secs(60), || async {
        invoicing.metric("ordersystem_assigned_partitions").await == 1.0
    })
    .await;
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin");
    for result in admin
        .create_partitions(&[NewPartitions::new(&topic, 3)], &AdminOptions::new())
        .await
        .expect("request")
    {
        result.expect("partitions added");
    }
    wait_until(
        "all three partitions assigned",
        Duration::from_secs(60),
        || async { invoicing.metric("ordersystem_assigned_partitions").await == 3.0 },
    )
    .await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&topic)
                .partition(2)
                .key("9")
                .payload(&event(9, 1)),
            Duration::from_secs(30),
        )
        .await
        .expect("sent to the new partition");
    invoicing
        .wait_count("SELECT count(*) FROM invoices WHERE order_id = 9", 1)
        .await;
    invoicing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn added_partitions_are_consumed_with_the_consumer_protocol() {
    added_partitions_are_consumed(GroupProtocol::Consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn added_partitions_are_consumed_with_the_classic_protocol() {
    added_partitions_are_consumed(GroupProtocol::Classic).await;
}
