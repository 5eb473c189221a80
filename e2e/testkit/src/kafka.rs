//! Kafka helpers for tests: a topic with a given partition count, raw records (poison included), and
//! reading a topic from its start.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Create `topic` with `partitions` partitions (replication 1: the test broker is a single node).
///
/// # Panics
/// When the broker refuses or cannot be reached.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("admin client for {bootstrap}: {e}"));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("create topic {topic} on {bootstrap}: {e}"));
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("topic {name} not created: {code}"));
    }
}

/// Produce one record and wait for the acknowledgement; returns (partition, offset).
///
/// # Panics
/// When the record is not acknowledged within 30 s.
pub async fn produce(bootstrap: &str, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap_or_else(|e| panic!("producer for {bootstrap}: {e}"));
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .unwrap_or_else(|(e, _)| panic!("record to {topic} not acknowledged: {e}"))
}

/// A consumer of `topic` from its first record, in a group of its own that commits nothing.
///
/// # Panics
/// When the consumer cannot be created.
pub fn read_from_start(bootstrap: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::names::unique("topic-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer for {bootstrap}: {e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribe to {topic}: {e}"));
    consumer
}

/// How often each key (an order id) was published on `topic`: read from the beginning until every id in
/// `expected` was seen, then 3 s longer so a late duplicate would be counted too.
///
/// # Panics
/// When a record has no order id as its key, or not every id arrived within 60 s.
pub async fn records_per_key(bootstrap: &str, topic: &str, expected: &BTreeSet<i64>) -> HashMap<i64, usize> {
    let consumer = read_from_start(bootstrap, topic);
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut until = None;
    loop {
        let wait = until.map_or(Duration::from_secs(60), |at: tokio::time::Instant| {
            at.saturating_duration_since(tokio::time::Instant::now())
        });
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(message) => {
                let message = message.expect("receive");
                let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
                let id: i64 = key.and_then(|k| k.parse().ok()).expect("order id key");
                *seen.entry(id).or_default() += 1;
                if until.is_none() && expected.iter().all(|id| seen.contains_key(id)) {
                    until = Some(tokio::time::Instant::now() + Duration::from_secs(3));
                }
            }
            Err(_) if until.is_some() => return seen,
            Err(_) => panic!(
                "not every order reached the topic: {} of {} seen ({seen:?})",
                seen.len(),
                expected.len()
            ),
        }
    }
}
