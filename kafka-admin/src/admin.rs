//! The Kafka Admin API calls rdkafka's safe `AdminClient` lacks, wrapped around librdkafka 2.12's C
//! API: `IncrementalAlterConfigs` (KIP-339; the legacy `AlterConfigs` would reset every key not sent),
//! `DescribeTopics` (for the topic id) and `ListConsumerGroupOffsets` (for consumer lag).
//!
//! Every call is synchronous and blocks for at most its timeout; callers run it in `spawn_blocking`. All
//! librdkafka objects are created and destroyed within one call, each owned by a guard whose `Drop`
//! frees it, so no pointer escapes and no early return leaks.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::ffi::{Owned, admin_call, check_items, cstr, event_items, item_error, queue_and_options, wait};

/// Failure of one of the wrapped calls.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error("{op}: no answer within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    /// The broker's refusal: librdkafka's message, which already says what the code means (the code alone
    /// when there is none).
    #[error("{op}: {}", if message.is_empty() { code.to_string() } else { message.clone() })]
    Broker {
        op: &'static str,
        code: RDKafkaErrorCode,
        message: String,
    },
    #[error("{op}: name contains a NUL byte")]
    Nul {
        op: &'static str,
        source: std::ffi::NulError,
    },
}

impl FfiError {
    /// The broker's error code, when the broker answered with one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What `DescribeTopics` reports about one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// Kafka's topic id, base64 as Kafka's own tools print it.
    pub topic_id: String,
    pub partitions: i32,
    /// Replicas of partition 0 (all partitions of a topic created by us have the same count).
    pub replication_factor: i32,
}

/// One incremental config change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    /// Remove the topic-level value, so the broker default applies again.
    Delete,
}

pub type Admin = AdminClient<DefaultClientContext>;

/// A consumer client with a consumer group of its own that never subscribes: the one kind of client
/// `list_group_offsets` may use. When a broker answers an OffsetFetch with `NOT_COORDINATOR` (as it
/// does while it restarts or loads its groups), librdkafka queues a coordinator query on the asking
/// client's own group, and a client without one (an admin client) crashes on the null group
/// (librdkafka#5040). Here that query goes to a group the client never joins, harmlessly.
pub struct GroupClient(BaseConsumer);

impl GroupClient {
    /// A client from `config` whose own group is `group`. Any group the client's identity may describe
    /// will do; it is never joined and nothing is committed for it.
    pub fn new(config: &ClientConfig, group: &str) -> KafkaResult<Self> {
        let consumer = config
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self(consumer))
    }

    pub fn consumer(&self) -> &BaseConsumer {
        &self.0
    }
}

/// Takes every event waiting on the client's main queue, which rdkafka's `AdminClient` never serves:
/// returns the client-level errors (connection, TLS, authentication) and forwards log lines to
/// `tracing`. Called after each reconcile's Kafka step, so the queue never grows.
pub fn drain_client_events(admin: &Admin) -> Vec<(RDKafkaErrorCode, String)> {
    let rk = admin.inner().native_ptr();
    // SAFETY: `rk` is the live client handle owned by `admin`; the returned reference is released by
    // the guard.
    let queue = Owned {
        ptr: unsafe { rd::rd_kafka_queue_get_main(rk) },
        destroy: rd::rd_kafka_queue_destroy,
    };
    let mut errors = Vec::new();
    loop {
        // SAFETY: `queue` is live; a zero timeout never blocks.
        let event = unsafe { rd::rd_kafka_queue_poll(queue.ptr, 0) };
        if event.is_null() {
            return errors;
        }
        let event = Owned {
            ptr: event,
            destroy: rd::rd_kafka_event_destroy,
        };
        // SAFETY: `event` is live while read; the strings are owned by it and copied before it is freed.
        unsafe {
            match rd::rd_kafka_event_type(event.ptr) {
                rd::RD_KAFKA_EVENT_ERROR => errors.push((
                    rd::rd_kafka_event_error(event.ptr).into(),
                    cstr(rd::rd_kafka_event_error_string(event.ptr)),
                )),
                rd::RD_KAFKA_EVENT_LOG => {
                    let (mut facility, mut message, mut level) = (ptr::null(), ptr::null(), 0);
                    if rd::rd_kafka_event_log(event.ptr, &mut facility, &mut message, &mut level) == 0 {
                        let (facility, message) = (cstr(facility), cstr(message));
                        // syslog levels: 0-4 emergency to warning.
                        if level <= 4 {
                            tracing::warn!(facility, message, "librdkafka");
                        } else {
                            tracing::debug!(facility, message, "librdkafka");
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Describes one topic; `Ok(None)` when it does not exist.
pub fn describe_topic(
    admin: &Admin,
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicDescription>, FfiError> {
    const OP: &str = "DescribeTopics";
    let name = CString::new(topic).map_err(|source| FfiError::Nul { op: OP, source })?;
    let mut names = [name.as_ptr()];
    // SAFETY: `names` holds one valid C string; the collection copies the names.
    let collection = unsafe { rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), names.len()) };
    let collection = Owned {
        ptr: collection,
        destroy: rd::rd_kafka_TopicCollection_destroy,
    };
    let (queue, options) = queue_and_options(admin.inner(), timeout);
    // SAFETY: client, collection, options and queue are all live; the call copies what it needs.
    unsafe {
        rd::rd_kafka_DescribeTopics(admin.inner().native_ptr(), collection.ptr, options.ptr, queue.ptr)
    };
    let event = wait(&queue, OP, timeout)?;
    // SAFETY: the event is a DescribeTopics result (it came from this call's private queue); every pointer
    // read below is owned by the event and only used while `event` is alive.
    unsafe {
        let result = rd::rd_kafka_event_DescribeTopics_result(event.ptr);
        let mut count = 0usize;
        let topics = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        if result.is_null() || topics.is_null() || count == 0 {
            return Ok(None);
        }
        let description = *topics;
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null() {
            let code: RDKafkaErrorCode = rd::rd_kafka_error_code(error).into();
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Ok(None);
            }
            return Err(FfiError::Broker {
                op: OP,
                code,
                message: cstr(rd::rd_kafka_error_string(error)),
            });
        }
        let topic_id = cstr(rd::rd_kafka_Uuid_base64str(
            rd::rd_kafka_TopicDescription_topic_id(description),
        ));
        let mut partition_count = 0usize;
        let partitions = rd::rd_kafka_TopicDescription_partitions(description, &mut partition_count);
        let mut replication_factor = 0usize;
        if !partitions.is_null() && partition_count > 0 {
            rd::rd_kafka_TopicPartitionInfo_replicas(*partitions, &mut replication_factor);
        }
        Ok(Some(TopicDescription {
            topic_id,
            partitions: i32::try_from(partition_count).unwrap_or(i32::MAX),
            replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
        }))
    }
}

/// Applies incremental config changes to one topic; keys not listed are left as they are.
pub fn alter_topic_configs(
    admin: &Admin,
    topic: &str,
    changes: &[(String, ConfigOp)],
    timeout: Duration,
) -> Result<(), FfiError> {
    const OP: &str = "IncrementalAlterConfigs";
    if changes.is_empty() {
        return Ok(());
    }
    let resource = config_resource(OP, topic, changes)?;
    let mut resources = [resource.ptr];
    let event = admin_call(
        admin.inner(),
        OP,
        timeout,
        &mut resources,
        rd::rd_kafka_IncrementalAlterConfigs,
    )?;
    // SAFETY: the event is an IncrementalAlterConfigs result from this call's queue; the resources it
    // returns are owned by the event, alive while read.
    unsafe {
        let resources = event_items(
            &event,
            rd::rd_kafka_event_IncrementalAlterConfigs_result,
            rd::rd_kafka_IncrementalAlterConfigs_result_resources,
        );
        check_items(
            OP,
            resources.iter().map(|&resource| {
                let code = rd::rd_kafka_ConfigResource_error(resource);
                (code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
                    (
                        code.into(),
                        cstr(rd::rd_kafka_ConfigResource_error_string(resource)),
                    )
                })
            }),
        )
    }
}

/// The topic as a config resource carrying `changes`.
fn config_resource(
    op: &'static str,
    topic: &str,
    changes: &[(String, ConfigOp)],
) -> Result<Owned<rd::rd_kafka_ConfigResource_t>, FfiError> {
    let name = CString::new(topic).map_err(|source| FfiError::Nul { op, source })?;
    // SAFETY: `name` is a valid C string; the resource copies it.
    let resource = unsafe {
        rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        )
    };
    let resource = Owned {
        ptr: resource,
        destroy: rd::rd_kafka_ConfigResource_destroy,
    };
    for (key, change) in changes {
        let key = CString::new(key.as_str()).map_err(|source| FfiError::Nul { op, source })?;
        let (op_type, value) = match change {
            ConfigOp::Set(value) => (
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                Some(CString::new(value.as_str()).map_err(|source| FfiError::Nul { op, source })?),
            ),
            ConfigOp::Delete => (
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
                None,
            ),
        };
        let value_ptr = value.as_ref().map_or(ptr::null(), |v| v.as_ptr());
        // SAFETY: resource is live, key/value are valid C strings (value may be null for DELETE); they are
        // copied by librdkafka.
        let error = unsafe {
            rd::rd_kafka_ConfigResource_add_incremental_config(resource.ptr, key.as_ptr(), op_type, value_ptr)
        };
        if !error.is_null() {
            let error = Owned {
                ptr: error,
                destroy: rd::rd_kafka_error_destroy,
            };
            // SAFETY: `error` is live while read.
            let (code, message) = unsafe {
                (
                    rd::rd_kafka_error_code(error.ptr).into(),
                    cstr(rd::rd_kafka_error_string(error.ptr)),
                )
            };
            return Err(FfiError::Broker { op, code, message });
        }
    }
    Ok(resource)
}

/// The committed offset of each partition `0..partitions` of `topic` for consumer group `group`, `None`
/// where the group committed nothing. OffsetFetch through the group coordinator answers for `classic`
/// and KIP-848 `consumer` groups alike, and asking never joins the group. Long on purpose: one request and
/// the walk through its result, whose pointers may not leave the `unsafe` block that reads them.
pub fn list_group_offsets(
    client: &GroupClient,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Vec<Option<i64>>, FfiError> {
    const OP: &str = "ListConsumerGroupOffsets";
    let group_id = CString::new(group).map_err(|source| FfiError::Nul { op: OP, source })?;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    // SAFETY: `group_id` and `wanted` are valid for the call; the request copies both.
    let request = Owned {
        ptr: unsafe { rd::rd_kafka_ListConsumerGroupOffsets_new(group_id.as_ptr(), wanted.ptr()) },
        destroy: rd::rd_kafka_ListConsumerGroupOffsets_destroy,
    };
    let native = client.consumer().client();
    // librdkafka takes exactly one group per call.
    let mut requests = [request.ptr];
    // The client has a consumer group (see `GroupClient`), so a NOT_COORDINATOR answer is handled safely.
    let event = admin_call(
        native,
        OP,
        timeout,
        &mut requests,
        rd::rd_kafka_ListConsumerGroupOffsets,
    )?;
    let mut offsets = vec![None; usize::try_from(partitions).unwrap_or_default()];
    // SAFETY: the event is a ListConsumerGroupOffsets result (it came from this call's private queue);
    // every pointer read below is owned by the event and only used while `event` is alive.
    unsafe {
        let groups = event_items(
            &event,
            rd::rd_kafka_event_ListConsumerGroupOffsets_result,
            rd::rd_kafka_ListConsumerGroupOffsets_result_groups,
        );
        let Some(&group_result) = groups.first() else {
            return Err(FfiError::Broker {
                op: OP,
                code: RDKafkaErrorCode::Fail,
                message: format!("no result for group {group}"),
            });
        };
        check_items(OP, [item_error(rd::rd_kafka_group_result_error(group_result))])?;
        let list = rd::rd_kafka_group_result_partitions(group_result);
        if list.is_null() || (*list).cnt <= 0 || (*list).elems.is_null() {
            return Ok(offsets);
        }
        let elems =
            std::slice::from_raw_parts((*list).elems, usize::try_from((*list).cnt).unwrap_or_default());
        let mut failures = Vec::new();
        for elem in elems {
            if elem.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                failures.push(Some((elem.err.into(), format!("partition {}", elem.partition))));
            } else if let Some(slot) = usize::try_from(elem.partition)
                .ok()
                .and_then(|p| offsets.get_mut(p))
            {
                // A negative offset (OFFSET_INVALID) means nothing committed.
                *slot = (elem.offset >= 0).then_some(elem.offset);
            }
        }
        check_items(OP, failures)?;
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_refusal_says_what_it_means_once() {
        let refused = FfiError::Broker {
            op: "ListConsumerGroupOffsets",
            code: RDKafkaErrorCode::GroupAuthorizationFailed,
            message: "Broker: Group authorization failed".into(),
        };
        assert_eq!(
            refused.to_string(),
            "ListConsumerGroupOffsets: Broker: Group authorization failed"
        );
        let bare = FfiError::Broker {
            op: "DescribeTopics",
            code: RDKafkaErrorCode::UnknownTopicOrPartition,
            message: String::new(),
        };
        assert_eq!(
            bare.to_string(),
            format!("DescribeTopics: {}", RDKafkaErrorCode::UnknownTopicOrPartition)
        );
    }
}
