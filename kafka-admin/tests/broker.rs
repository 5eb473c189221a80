//! Each call of the crate against a real broker: the test bed's shared plaintext one for topics, configs,
//! group offsets and SCRAM users; this test's own SASL_SSL broker with the StandardAuthorizer (ports
//! 19892-19894) for ACLs, which need an authorizer.

use std::time::Duration;

use ordersystem_kafka_admin::{
    Acl, AclOperation, AclResource, Admin, ConfigOp, GroupClient, ScramMechanism, alter_topic_configs,
    count_acls, create_acls, delete_acls, delete_scram_credentials, describe_scram_user, describe_topic,
    list_group_offsets, upsert_scram_user,
};
use ordersystem_testkit::secure_kafka::{ADMIN_PASSWORD, ADMIN_USER, SecureBroker};
use ordersystem_testkit::{env, names, wait};
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

fn shared() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", env::kafka_bootstrap());
    config
}

async fn create_topic(admin: &Admin, topic: &str, partitions: i32) {
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics answered");
    results[0].as_ref().expect("the topic is created");
}

/// The topic's value of `key` as the broker reports it, and whether it is set on the topic itself.
async fn topic_config(admin: &Admin, topic: &str, key: &str) -> (Option<String>, bool) {
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("DescribeConfigs answered");
    let resource = described[0].as_ref().expect("the topic's configs");
    let entry = resource.get(key).expect("the key is described");
    (
        entry.value.clone(),
        matches!(entry.source, rdkafka::admin::ConfigSource::DynamicTopic),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_is_described_by_id_and_its_configs_change_key_by_key() {
    let admin: Admin = shared().create().expect("admin client");
    let topic = names::unique("kafka-admin");
    let absent = tokio::task::block_in_place(|| describe_topic(&admin, &topic, TIMEOUT));
    assert_eq!(absent.expect("DescribeTopics answered"), None);

    create_topic(&admin, &topic, 3).await;
    // A created topic reaches the metadata shortly after CreateTopics returns.
    let described = wait::until_some("the created topic in the metadata", TIMEOUT, || async {
        tokio::task::block_in_place(|| describe_topic(&admin, &topic, TIMEOUT))
            .expect("DescribeTopics answered")
    })
    .await;
    assert_eq!(described.partitions, 3);
    assert_eq!(described.replication_factor, 1);
    assert_eq!(described.topic_id.len(), 22, "base64 of 16 bytes: {described:?}");

    let set = [
        ("retention.ms".to_string(), ConfigOp::Set("3600000".into())),
        ("max.message.bytes".to_string(), ConfigOp::Set("2097152".into())),
    ];
    tokio::task::block_in_place(|| alter_topic_configs(&admin, &topic, &set, TIMEOUT)).expect("set");
    // A broker applies a changed config from the metadata log shortly after the call returned.
    wait::until("retention.ms set on the topic", TIMEOUT, || async {
        topic_config(&admin, &topic, "retention.ms").await == (Some("3600000".into()), true)
    })
    .await;
    // Incremental: deleting one key leaves the other as it is.
    let delete = [("retention.ms".to_string(), ConfigOp::Delete)];
    tokio::task::block_in_place(|| alter_topic_configs(&admin, &topic, &delete, TIMEOUT)).expect("delete");
    wait::until("retention.ms back to the default", TIMEOUT, || async {
        !topic_config(&admin, &topic, "retention.ms").await.1
    })
    .await;
    assert_eq!(
        topic_config(&admin, &topic, "max.message.bytes").await,
        (Some("2097152".into()), true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_groups_committed_offsets_are_listed_without_joining_it() {
    let admin: Admin = shared().create().expect("admin client");
    let topic = names::unique("kafka-admin-offsets");
    create_topic(&admin, &topic, 3).await;
    let group = names::unique("kafka-admin-group");
    let committer: BaseConsumer = shared()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 1, Offset::Offset(0))
        .expect("offset");
    committer
        .commit(&offsets, CommitMode::Sync)
        .expect("commit partition 1");

    let reader = GroupClient::new(&shared(), &names::unique("kafka-admin-reader")).expect("group client");
    let listed = tokio::task::block_in_place(|| list_group_offsets(&reader, &group, &topic, 3, TIMEOUT))
        .expect("ListConsumerGroupOffsets answered");
    assert_eq!(listed, vec![None, Some(0), None]);
}

/// Waits until the broker describes `user` with exactly `want`: a KRaft broker applies credential changes
/// from its metadata log, so what it describes follows a change shortly.
async fn wait_described(admin: &Admin, user: &str, want: &[ScramMechanism]) {
    wait::until(&format!("{user} described with {want:?}"), TIMEOUT, || {
        let now = tokio::task::block_in_place(|| describe_scram_user(admin, user, TIMEOUT))
            .expect("DescribeUserScramCredentials answered");
        let matches = now == want;
        async move { matches }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scram_user_is_created_described_and_deleted() {
    let admin: Admin = shared().create().expect("admin client");
    let user = names::unique("kafka-admin-user");
    wait_described(&admin, &user, &[]).await;
    tokio::task::block_in_place(|| {
        upsert_scram_user(&admin, &user, ScramMechanism::Sha512, "s3cret-password", TIMEOUT)
    })
    .expect("upsert");
    wait_described(&admin, &user, &[ScramMechanism::Sha512]).await;
    tokio::task::block_in_place(|| delete_scram_credentials(&admin, &user, &ScramMechanism::ALL, TIMEOUT))
        .expect("delete");
    wait_described(&admin, &user, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_are_granted_counted_and_taken_back_exactly() {
    let broker = SecureBroker::start("kafka-admin-acls", 19892, 19893).await;
    let admin: Admin = broker
        .client_config(ADMIN_USER, ADMIN_PASSWORD)
        .create()
        .expect("admin client");
    let principal = "User:kafka-admin-acl-user";
    let acls = vec![
        Acl {
            resource: AclResource::Topic("orders".into()),
            principal: principal.into(),
            operation: AclOperation::Write,
        },
        Acl {
            resource: AclResource::Group("invoicing".into()),
            principal: principal.into(),
            operation: AclOperation::Read,
        },
    ];
    let count = || tokio::task::block_in_place(|| count_acls(&admin, principal, TIMEOUT));
    assert_eq!(count().expect("DescribeAcls"), 0);
    tokio::task::block_in_place(|| create_acls(&admin, &acls, TIMEOUT)).expect("CreateAcls");
    assert_eq!(count().expect("DescribeAcls"), 2);
    let deleted =
        tokio::task::block_in_place(|| delete_acls(&admin, &acls[..1], TIMEOUT)).expect("DeleteAcls");
    assert_eq!(deleted, 1, "only the binding asked for");
    assert_eq!(count().expect("DescribeAcls"), 1);
}
