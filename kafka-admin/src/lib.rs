//! The Kafka Admin API calls the operator needs and rdkafka's safe `AdminClient` lacks, over librdkafka's C
//! API: `IncrementalAlterConfigs`, `DescribeTopics` and `ListConsumerGroupOffsets` (`admin`), SCRAM users
//! and ACLs (`identity`), on shared plumbing (`ffi`). The only crate of the workspace with `unsafe`
//! code, each of its modules allowing it for itself; everything it exports is safe to call. Every call blocks for at most its
//! timeout: async callers run it in `spawn_blocking`.

mod admin;
mod ffi;
mod identity;

pub use admin::{
    Admin, ConfigOp, FfiError, GroupClient, TopicDescription, alter_topic_configs, describe_topic,
    drain_client_events, list_group_offsets,
};
pub use identity::{
    Acl, AclOperation, AclResource, ScramMechanism, count_acls, create_acls, delete_acls,
    delete_scram_credentials, describe_scram_user, upsert_scram_user,
};
