//! Consumer lag read through the operator's one lag reader per set of brokers: it reads every group's
//! committed offsets (`ListConsumerGroupOffsets`) and stays up while a fresh broker creates its offsets
//! topic and while the broker restarts, when the group coordinator answers `NOT_COORDINATOR` or is still
//! loading: the answers on which librdkafka crashes a client that has no consumer group of its own
//! (librdkafka#5040). A crash here kills the test process.
//! Runs its own broker (`KAFKA_INSTANCE=op-lag-reader`, ports 19792/19793), never the shared one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ordersystem_e2e::kafka::{create_topic, produce};
use ordersystem_e2e::names::unique;
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_operator::controller::kafka::{ClientSecurity, KafkaClients};
use ordersystem_operator::controller::lag;
use ordersystem_operator::names::Service;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PORT: u16 = 19792;
const CONTROLLER_PORT: u16 = 19793;
const PARTITIONS: i32 = 3;
const RECORDS: i64 = 9;

/// Commits `offset` on every partition of `topic` for `group`, as a member that never joins would.
fn commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("offset");
    }
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");
}

/// Two fresh groups: neither committed anything, so each owes the whole topic.
fn fresh_groups() -> Vec<(Service, String)> {
    vec![
        (Service::Invoicing, unique("lag-fresh")),
        (Service::Shipping, unique("lag-fresh")),
    ]
}

async fn observe(
    clients: &KafkaClients,
    bootstrap: &str,
    topic: &str,
    groups: Vec<(Service, String)>,
) -> Result<BTreeMap<Service, i64>, lag::Error> {
    let plain = ClientSecurity::plaintext();
    lag::observe(clients, bootstrap, &plain, topic, PARTITIONS, groups).await
}

/// Looks at two new groups every 20 ms until `wanted` looks answered (at most 3 minutes); every answer
/// must be the whole topic. Returns how many failed and how many answered.
async fn look_until_answered(
    clients: &KafkaClients,
    bootstrap: &str,
    topic: &str,
    wanted: u32,
) -> (u32, u32) {
    let (mut failed, mut answered) = (0u32, 0u32);
    let started = Instant::now();
    while answered < wanted && started.elapsed() < Duration::from_secs(180) {
        match observe(clients, bootstrap, topic, fresh_groups()).await {
            Ok(lags) => {
                assert_eq!(
                    lags.values().copied().collect::<Vec<_>>(),
                    vec![RECORDS, RECORDS],
                    "a new group owes the whole topic"
                );
                answered += 1;
            }
            Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (failed, answered)
}

#[tokio::test]
async fn one_lag_reader_reads_every_group_and_survives_a_restarting_group_coordinator() {
    let broker = OwnInstance::kafka("op-lag-reader", PORT, CONTROLLER_PORT)
        .start_fresh()
        .await;
    let bootstrap = format!("127.0.0.1:{PORT}");
    let topic = unique("lag-reader");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let mut high = BTreeMap::new();
    for i in 0..RECORDS {
        let (partition, offset) = produce(&bootstrap, &topic, &format!("order-{i}"), b"{}").await;
        high.entry(partition)
            .and_modify(|h: &mut i64| *h = (*h).max(offset + 1))
            .or_insert(offset + 1);
    }
    let clients = KafkaClients::default();
    // Nothing has asked for a group yet: the first looks make the broker create its offsets topic.
    let (failed, answered) = look_until_answered(&clients, &bootstrap, &topic, 20).await;
    eprintln!("looks on a fresh broker: {failed} failed, then {answered} answered");
    assert_eq!(answered, 20, "lag is read once the offsets topic exists");

    // A group that read up to offset 1 of every partition owes what lies beyond it.
    let reading = unique("lag-reading");
    commit(&bootstrap, &reading, &topic, 1);
    let owed: i64 = (0..PARTITIONS)
        .map(|p| (high.get(&p).copied().unwrap_or(0) - 1).max(0))
        .sum();
    let groups = vec![
        (Service::Invoicing, reading.clone()),
        (Service::Shipping, unique("lag-fresh")),
    ];
    let lags = observe(&clients, &bootstrap, &topic, groups)
        .await
        .expect("lag with the broker up");
    assert_eq!(lags.get(&Service::Invoicing), Some(&owed), "the committed group");
    assert_eq!(
        lags.get(&Service::Shipping),
        Some(&RECORDS),
        "a fresh group owes all"
    );

    // Restart the broker while looks at new groups keep coming: the new coordinator loads its groups and
    // answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS meanwhile.
    broker.run("stop").await;
    let looking = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::spawn(
            async move { look_until_answered(&KafkaClients::default(), &bootstrap, &topic, 60).await },
        )
    };
    // Longer than a look's request timeout, so looks fail while the broker is away.
    tokio::time::sleep(Duration::from_secs(12)).await;
    broker.run("start").await;
    let (failed, answered) = looking.await.expect("the looking task");
    eprintln!("looks across the restart: {failed} failed, then {answered} answered");
    assert!(failed > 0, "some looks happened while the broker was down");
    assert_eq!(answered, 60, "lag is read again once the broker is back");
    let lags = observe(&clients, &bootstrap, &topic, vec![(Service::Invoicing, reading)])
        .await
        .expect("the committed group after the restart");
    assert_eq!(lags.get(&Service::Invoicing), Some(&owed));
    tokio::task::spawn_blocking(move || drop(broker))
        .await
        .expect("own broker removed");
}
