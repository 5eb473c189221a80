//! The Kafka backend against the real broker (`KAFKA_BOOTSTRAP`), including the unsafe librdkafka
//! wrappers (DescribeTopics for the topic id, IncrementalAlterConfigs) and the look at the partitions'
//! replicas that `DurabilityReduced` is decided from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ordersystem_e2e::control_plane::block_on_cleanup;
use ordersystem_operator::controller::kafka::{self, ConfigOp, KafkaClients, TopicState};
use ordersystem_operator::controller::validate::ValidTopic;

fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> ValidTopic {
    let mut configs: BTreeMap<String, String> = configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    configs.insert("cleanup.policy".into(), "delete".into());
    ValidTopic {
        name: name.to_string(),
        partitions,
        replication_factor: Some(1),
        configs,
    }
}

struct TopicGuard(Arc<kafka::Admin>, String);

impl Drop for TopicGuard {
    fn drop(&mut self) {
        let (admin, name) = (self.0.clone(), self.1.clone());
        block_on_cleanup(async move {
            let _ = kafka::delete_topic(&admin, &name).await;
        });
    }
}

fn setup(prefix: &str) -> (Arc<kafka::Admin>, String, TopicGuard) {
    let clients = KafkaClients::default();
    let admin = clients
        .admin(&ordersystem_e2e::env::kafka_bootstrap())
        .expect("admin client");
    let name = ordersystem_e2e::names::unique(prefix);
    let guard = TopicGuard(admin.clone(), name.clone());
    (admin, name, guard)
}

#[tokio::test]
async fn creates_the_topic_with_partitions_configs_and_an_id() {
    let (admin, name, _guard) = setup("kb-create");
    let spec = topic(&name, 3, &[("retention.ms", "3600000")]);
    let observed = kafka::ensure_topic(&admin, &spec, &BTreeSet::new(), None, false)
        .await
        .expect("ensure");
    assert!(observed.created);
    assert_eq!(observed.state, TopicState::Ready);
    let description = kafka::describe(&admin, &name)
        .await
        .expect("describe")
        .expect("topic exists");
    assert_eq!(description.partitions, 3);
    assert_eq!(description.replication_factor, 1);
    assert!(
        description.topic_id.len() >= 22,
        "base64 topic id: {:?}",
        description.topic_id
    );
    let status = observed.status.expect("status");
    assert_eq!(status.topic_id.as_deref(), Some(description.topic_id.as_str()));
    assert_eq!(
        status.managed_configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert_eq!(
        status.managed_configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    // A second pass changes nothing.
    let again = kafka::ensure_topic(&admin, &spec, &BTreeSet::new(), None, false)
        .await
        .expect("ensure again");
    assert!(!again.created && !again.partitions_added && again.configs_changed.is_empty());
}

#[tokio::test]
async fn grows_partitions_and_reports_a_topic_larger_than_the_spec() {
    let (admin, name, _guard) = setup("kb-grow");
    kafka::ensure_topic(&admin, &topic(&name, 2, &[]), &BTreeSet::new(), None, false)
        .await
        .expect("create");
    let grown = kafka::ensure_topic(&admin, &topic(&name, 4, &[]), &BTreeSet::new(), None, false)
        .await
        .expect("grow");
    assert!(grown.partitions_added);
    assert_eq!(
        kafka::describe(&admin, &name)
            .await
            .expect("describe")
            .map(|d| d.partitions),
        Some(4)
    );
    let larger = kafka::ensure_topic(&admin, &topic(&name, 3, &[]), &BTreeSet::new(), None, false)
        .await
        .expect("observe");
    assert_eq!(
        larger.state,
        TopicState::MorePartitionsThanSpec { spec: 3, actual: 4 }
    );
    assert_eq!(
        kafka::describe(&admin, &name)
            .await
            .expect("describe")
            .map(|d| d.partitions),
        Some(4),
        "nothing removed"
    );
}

#[tokio::test]
async fn a_replication_factor_above_the_broker_count_is_a_state_not_a_creation() {
    let (admin, name, _guard) = setup("kb-rf");
    let mut spec = topic(&name, 1, &[]);
    spec.replication_factor = Some(3);
    let observed = kafka::ensure_topic(&admin, &spec, &BTreeSet::new(), None, false)
        .await
        .expect("ensure");
    assert_eq!(
        observed.state,
        TopicState::ReplicationFactorTooLarge { spec: 3, brokers: 1 }
    );
    assert_eq!(kafka::describe(&admin, &name).await.expect("describe"), None);
}

#[tokio::test]
async fn managed_configs_follow_the_spec_and_others_configs_survive() {
    let (admin, name, _guard) = setup("kb-config");
    kafka::ensure_topic(
        &admin,
        &topic(&name, 1, &[("retention.ms", "1000"), ("segment.ms", "3600000")]),
        &BTreeSet::new(),
        None,
        false,
    )
    .await
    .expect("create");
    // Someone else sets a key we do not manage.
    kafka::alter_configs(
        &admin,
        &name,
        &[("max.message.bytes".into(), ConfigOp::Set("123456".into()))],
    )
    .await
    .expect("out-of-band change");
    let previously: BTreeSet<String> = ["cleanup.policy", "retention.ms", "segment.ms"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let observed = kafka::ensure_topic(
        &admin,
        &topic(&name, 1, &[("retention.ms", "2000")]),
        &previously,
        None,
        false,
    )
    .await
    .expect("update");
    let mut changed = observed.configs_changed.clone();
    changed.sort();
    assert_eq!(changed, vec!["retention.ms", "segment.ms"]);
    let status = observed.status.expect("status");
    assert_eq!(
        status.managed_configs.get("retention.ms").map(String::as_str),
        Some("2000")
    );
    assert!(
        !status.managed_configs.contains_key("segment.ms")
            && !status.unmanaged_configs.contains_key("segment.ms"),
        "segment.ms reset"
    );
    assert_eq!(
        status
            .unmanaged_configs
            .get("max.message.bytes")
            .map(String::as_str),
        Some("123456"),
        "foreign key kept and reported"
    );
}

#[tokio::test]
async fn paused_observes_without_creating() {
    let (admin, name, _guard) = setup("kb-paused");
    let observed = kafka::ensure_topic(&admin, &topic(&name, 1, &[]), &BTreeSet::new(), None, true)
        .await
        .expect("observe");
    assert_eq!(observed.state, TopicState::Missing);
    assert_eq!(kafka::describe(&admin, &name).await.expect("describe"), None);
}

#[tokio::test]
async fn delete_removes_the_topic_and_tolerates_a_missing_one() {
    let (admin, name, _guard) = setup("kb-delete");
    kafka::ensure_topic(&admin, &topic(&name, 1, &[]), &BTreeSet::new(), None, false)
        .await
        .expect("create");
    kafka::delete_topic(&admin, &name).await.expect("delete");
    kafka::delete_topic(&admin, &name)
        .await
        .expect("deleting again is fine");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while kafka::describe(&admin, &name).await.expect("describe").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "topic still exists after 30s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_topic_we_created_is_not_recreated_or_changed_after_it_was_replaced() {
    let (admin, name, _guard) = setup("kb-identity");
    let missing = kafka::ensure_topic(
        &admin,
        &topic(&name, 1, &[]),
        &BTreeSet::new(),
        Some("AAAAAAAAAAAAAAAAAAAAAA"),
        false,
    )
    .await
    .expect("observe");
    assert_eq!(
        missing.state,
        TopicState::Deleted {
            topic_id: "AAAAAAAAAAAAAAAAAAAAAA".into()
        }
    );
    assert_eq!(
        kafka::describe(&admin, &name).await.expect("describe"),
        None,
        "not recreated"
    );

    let created = kafka::ensure_topic(&admin, &topic(&name, 1, &[]), &BTreeSet::new(), None, false)
        .await
        .expect("create");
    let actual = created.status.and_then(|s| s.topic_id).expect("id");
    let replaced = kafka::ensure_topic(
        &admin,
        &topic(&name, 2, &[]),
        &BTreeSet::new(),
        Some("AAAAAAAAAAAAAAAAAAAAAA"),
        false,
    )
    .await
    .expect("observe");
    assert_eq!(
        replaced.state,
        TopicState::IdChanged {
            known: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            actual
        }
    );
    assert_eq!(
        kafka::describe(&admin, &name)
            .await
            .expect("describe")
            .map(|d| d.partitions),
        Some(1),
        "left alone"
    );
}

#[tokio::test]
async fn reads_each_partitions_replicas_and_the_min_insync_replicas_in_effect() {
    let (admin, name, _guard) = setup("kb-replicas");
    let observed = kafka::ensure_topic(&admin, &topic(&name, 2, &[]), &BTreeSet::new(), None, false)
        .await
        .expect("ensure");
    let replication = observed.replication.expect("the replicas were looked at");
    assert_eq!(replication.brokers.len(), 1, "{replication:?}");
    let broker = replication.brokers[0];
    assert_eq!(replication.partitions.len(), 2);
    for partition in &replication.partitions {
        assert_eq!(partition.leader, Some(broker), "{partition:?}");
        assert_eq!(partition.replicas, vec![broker], "{partition:?}");
        assert_eq!(partition.in_sync, vec![broker], "{partition:?}");
    }
    assert_eq!(replication.min_insync_replicas, 1, "the broker's default");
    // The topic's own value once the spec sets it, in the same reconcile that sets it.
    let managed: BTreeSet<String> = ["cleanup.policy".to_string()].into();
    let spec = topic(&name, 2, &[("min.insync.replicas", "2")]);
    let observed = kafka::ensure_topic(&admin, &spec, &managed, None, false)
        .await
        .expect("ensure with min.insync.replicas");
    let replication = observed.replication.expect("looked at again");
    assert_eq!(replication.min_insync_replicas, 2);
    let verdict = ordersystem_operator::controller::durability::assess(&name, Some(1), &replication);
    assert_eq!(
        verdict.reason,
        ordersystem_operator::conditions::Reason::BelowMinInsyncReplicas,
        "one replica cannot satisfy min.insync.replicas 2: {}",
        verdict.message
    );
}
