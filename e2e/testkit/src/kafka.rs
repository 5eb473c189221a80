//! Kafka helpers for tests: a topic with a given partition count, and raw records (poison included).

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
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
