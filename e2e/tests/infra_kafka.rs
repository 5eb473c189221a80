//! The test broker is a real Kafka: topics are created with partitions and configs through the Admin API
//! and read back.

use std::time::Duration;

use ordersystem_e2e::{env, names};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client")
}

#[tokio::test]
async fn topic_is_created_with_partitions_and_config_and_read_back() {
    let admin = admin();
    let topic = names::unique("smoke");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "3600000");
    let created = admin
        .create_topics([&new], &options)
        .await
        .expect("create_topics request");
    assert!(created[0].is_ok(), "topic creation failed: {:?}", created[0]);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);

    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &options)
        .await
        .expect("describe_configs request");
    let config = configs[0].as_ref().expect("topic config");
    let value = |name: &str| config.get(name).and_then(|e| e.value.clone());
    assert_eq!(value("cleanup.policy").as_deref(), Some("compact"));
    assert_eq!(value("retention.ms").as_deref(), Some("3600000"));

    let deleted = admin
        .delete_topics(&[&topic], &options)
        .await
        .expect("delete_topics request");
    assert!(deleted[0].is_ok(), "topic deletion failed: {:?}", deleted[0]);
}
