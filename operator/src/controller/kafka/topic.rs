//! The order topic: creates it, grows its partitions, keeps the configs we manage in step with the spec
//! through incremental config changes, and reports what it finds (topic id, partitions, replication
//! factor, configs set by others). It never shrinks a topic, never changes a config it does not manage,
//! and never touches a topic other than the one named in the spec.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication, TopicResult,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{Admin, ConfigOp, Error, FfiError, REQUEST_TIMEOUT, TopicDescription};
use crate::controller::durability::{PartitionReplicas, Replication};
use crate::controller::validate::ValidTopic;
use crate::crd::TopicStatus;

/// The topic's state, beyond the facts in `TopicStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicState {
    Ready,
    /// The topic does not exist and was not created (paused).
    Missing,
    /// The topic we created (this id) is gone; it is not recreated without acknowledgement.
    Deleted {
        topic_id: String,
    },
    /// A topic of that name exists with another id than the one we created; left alone.
    IdChanged {
        known: String,
        actual: String,
    },
    /// The topic has more partitions than the spec; Kafka cannot remove partitions.
    MorePartitionsThanSpec {
        spec: i32,
        actual: i32,
    },
    /// The spec's replication factor differs from the topic's.
    ReplicationFactorMismatch {
        spec: i32,
        actual: i32,
    },
    /// The topic cannot be created with more replicas than there are brokers.
    ReplicationFactorTooLarge {
        spec: i32,
        brokers: i32,
    },
}

/// What the backend found and did.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicObserved {
    pub state: TopicState,
    pub status: Option<TopicStatus>,
    pub created: bool,
    pub partitions_added: bool,
    pub configs_changed: Vec<String>,
    /// Where the topic's replicas are and which are in sync, when the topic was looked at.
    pub replication: Option<Replication>,
}

/// The config that says how many in-sync replicas a write with `acks=all` needs.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Describes the topic (partitions, replication factor, id); `None` when it does not exist.
pub async fn describe(admin: &Arc<Admin>, topic: &str) -> Result<Option<TopicDescription>, Error> {
    let (admin, name) = (admin.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        ordersystem_kafka_admin::describe_topic(&admin, &name, REQUEST_TIMEOUT)
    })
    .await
    .map_err(|source| Error::Blocking { source })?
    .map_err(|source| Error::DescribeTopic {
        topic: topic.to_string(),
        source,
    })
}

async fn broker_count(admin: &Arc<Admin>) -> Result<i32, Error> {
    let admin = admin.clone();
    let metadata = tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, REQUEST_TIMEOUT))
        .await
        .map_err(|source| Error::Blocking { source })?
        .map_err(|source| Error::Metadata { source })?;
    Ok(i32::try_from(metadata.brokers().len()).unwrap_or(i32::MAX))
}

/// Brings the topic in line with the spec. `known_id` is the id of the topic this resource created; when
/// given, a missing topic or one with another id is reported instead of created or changed. `previously_managed` are the config keys we managed before
/// (from status), so a key removed from the spec is reset rather than left behind. When `paused`, only
/// observes.
pub async fn ensure_topic(
    admin: &Arc<Admin>,
    topic: &ValidTopic,
    previously_managed: &BTreeSet<String>,
    known_id: Option<&str>,
    paused: bool,
) -> Result<TopicObserved, Error> {
    let description = describe(admin, &topic.name).await?;
    ensure_described_topic(admin, description, topic, previously_managed, known_id, paused).await
}

/// [`ensure_topic`] for a topic already described (`None`: it did not exist).
/// Long on purpose: each state of the topic is checked in turn (missing, replaced, partitions,
/// replication, configs), and the first that ends the step returns.
pub async fn ensure_described_topic(
    admin: &Arc<Admin>,
    description: Option<TopicDescription>,
    topic: &ValidTopic,
    previously_managed: &BTreeSet<String>,
    known_id: Option<&str>,
    paused: bool,
) -> Result<TopicObserved, Error> {
    let mut observed = TopicObserved {
        state: TopicState::Ready,
        status: None,
        created: false,
        partitions_added: false,
        configs_changed: Vec::new(),
        replication: None,
    };
    let description = match description {
        Some(description) => description,
        None if paused => {
            observed.state = TopicState::Missing;
            return Ok(observed);
        }
        // Recreating an empty topic under consumers that committed offsets in the old one would
        // silently lose or replay history: wait for an explicit acknowledgement instead.
        None if known_id.is_some() => {
            observed.state = TopicState::Deleted {
                topic_id: known_id.unwrap_or_default().to_string(),
            };
            return Ok(observed);
        }
        None => {
            if let Some(state) = check_brokers(admin, topic).await? {
                observed.state = state;
                return Ok(observed);
            }
            create_topic(admin, topic).await?;
            observed.created = true;
            describe_after_create(admin, &topic.name).await?
        }
    };
    if let Some(known) = known_id
        && known != description.topic_id
    {
        observed.state = TopicState::IdChanged {
            known: known.to_string(),
            actual: description.topic_id,
        };
        return Ok(observed);
    }
    let mut partitions = description.partitions;
    if description.partitions < topic.partitions && !paused {
        add_partitions(admin, topic).await?;
        observed.partitions_added = true;
        partitions = partitions_after_add(admin, topic).await?;
    } else if description.partitions > topic.partitions {
        observed.state = TopicState::MorePartitionsThanSpec {
            spec: topic.partitions,
            actual: description.partitions,
        };
    }
    if let Some(spec) = topic.replication_factor
        && spec != description.replication_factor
    {
        observed.state = TopicState::ReplicationFactorMismatch {
            spec,
            actual: description.replication_factor,
        };
    }
    let configs = ensure_configs(admin, topic, previously_managed, paused).await?;
    observed.configs_changed = configs.changed;
    observed.replication = replication(admin, &topic.name, configs.min_insync_replicas).await?;
    observed.status = Some(TopicStatus {
        name: topic.name.clone(),
        topic_id: Some(description.topic_id),
        cluster_id: None,
        partitions,
        replication_factor: description.replication_factor,
        managed_configs: configs.managed,
        unmanaged_configs: configs.unmanaged,
    });
    Ok(observed)
}

/// The topic's dynamic configs split into managed and unmanaged ones, the keys that changed, and the
/// `min.insync.replicas` in effect.
struct Configs {
    managed: BTreeMap<String, String>,
    unmanaged: BTreeMap<String, String>,
    changed: Vec<String>,
    min_insync_replicas: i32,
}

/// The configs we manage brought in line with the spec (unless `paused`).
async fn ensure_configs(
    admin: &Arc<Admin>,
    topic: &ValidTopic,
    previously_managed: &BTreeSet<String>,
    paused: bool,
) -> Result<Configs, Error> {
    let described = topic_configs(admin, &topic.name).await?;
    let current = described.dynamic;
    let changes = config_changes(&topic.configs, previously_managed, &current);
    let (current, changed) = if changes.is_empty() || paused {
        (current, Vec::new())
    } else {
        alter_configs(admin, &topic.name, &changes).await?;
        let changed = changes.iter().map(|(k, _)| k.clone()).collect();
        (
            dynamic_configs_after_alter(admin, &topic.name, &changes).await?,
            changed,
        )
    };
    // The topic's own value as it is now, else the one in effect at the first look (the broker's).
    let min_insync_replicas = current
        .get(MIN_INSYNC_REPLICAS)
        .and_then(|v| v.parse().ok())
        .or(described.min_insync_replicas)
        .unwrap_or(1);
    let (managed, unmanaged) = current
        .into_iter()
        .partition(|(k, _)| topic.configs.contains_key(k));
    Ok(Configs {
        managed,
        unmanaged,
        changed,
        min_insync_replicas,
    })
}

/// The topic's partitions as the cluster metadata shows them (leaders, replicas, in-sync replicas), with
/// the brokers it lists; `None` when the metadata does not show the topic.
async fn replication(
    admin: &Arc<Admin>,
    topic: &str,
    min_insync_replicas: i32,
) -> Result<Option<Replication>, Error> {
    let (admin, name) = (admin.clone(), topic.to_string());
    let metadata =
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(Some(&name), REQUEST_TIMEOUT))
            .await
            .map_err(|source| Error::Blocking { source })?
            .map_err(|source| Error::Metadata { source })?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    else {
        return Ok(None);
    };
    let partitions = found
        .partitions()
        .iter()
        .map(|p| PartitionReplicas {
            partition: p.id(),
            leader: (p.leader() >= 0).then_some(p.leader()),
            replicas: p.replicas().to_vec(),
            in_sync: p.isr().to_vec(),
        })
        .collect();
    Ok(Some(Replication {
        brokers: metadata.brokers().iter().map(|b| b.id()).collect(),
        partitions,
        min_insync_replicas,
    }))
}

/// A new topic reaches the metadata of every broker shortly after CreateTopics returns; wait for it
/// (bounded) instead of failing the reconcile.
async fn describe_after_create(admin: &Arc<Admin>, topic: &str) -> Result<TopicDescription, Error> {
    until_settled(|| describe(admin, topic), Option::is_some)
        .await?
        .ok_or_else(|| Error::DescribeTopic {
            topic: topic.to_string(),
            source: FfiError::Broker {
                op: "DescribeTopics",
                code: RDKafkaErrorCode::UnknownTopicOrPartition,
                message: "created topic not visible in metadata yet".into(),
            },
        })
}

/// Added partitions reach the metadata shortly after CreatePartitions returns; wait for them (bounded)
/// so that the status, and the next reconcile, see what the broker has.
async fn partitions_after_add(admin: &Arc<Admin>, topic: &ValidTopic) -> Result<i32, Error> {
    let grown =
        |seen: &Option<TopicDescription>| seen.as_ref().is_some_and(|d| d.partitions >= topic.partitions);
    let seen = until_settled(|| describe(admin, &topic.name), grown).await?;
    Ok(seen.map_or(topic.partitions, |d| d.partitions))
}

/// Looks with `look` every 100 ms until `settled` accepts what it saw or `REQUEST_TIMEOUT` passed, and
/// returns the last look. A broker applies a created topic or an altered config from the metadata log
/// shortly after the call that made it returned, so a look right away can still show the old state.
async fn until_settled<T, Look, Seen>(mut look: Look, settled: impl Fn(&T) -> bool) -> Result<T, Error>
where
    Look: FnMut() -> Seen,
    Seen: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let seen = look().await?;
        if settled(&seen) || tokio::time::Instant::now() >= deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check_brokers(admin: &Arc<Admin>, topic: &ValidTopic) -> Result<Option<TopicState>, Error> {
    let Some(spec) = topic.replication_factor else {
        return Ok(None);
    };
    let brokers = broker_count(admin).await?;
    Ok((spec > brokers).then_some(TopicState::ReplicationFactorTooLarge { spec, brokers }))
}

async fn create_topic(admin: &Arc<Admin>, topic: &ValidTopic) -> Result<(), Error> {
    // -1 asks the broker for its default.replication.factor (KIP-464).
    let replication = TopicReplication::Fixed(topic.replication_factor.unwrap_or(-1));
    let mut new_topic = NewTopic::new(&topic.name, topic.partitions, replication);
    for (key, value) in &topic.configs {
        new_topic = new_topic.set(key, value);
    }
    let results = admin
        .create_topics([&new_topic], &options())
        .await
        .map_err(|source| Error::CreateTopic {
            topic: topic.name.clone(),
            source,
        })?;
    match first_error(&results, &[RDKafkaErrorCode::TopicAlreadyExists]) {
        Some(code) => Err(Error::CreateTopic {
            topic: topic.name.clone(),
            source: KafkaError::AdminOp(code),
        }),
        None => Ok(()),
    }
}

/// The first error an admin call reported for a topic, leaving out those in `tolerated`.
fn first_error(results: &[TopicResult], tolerated: &[RDKafkaErrorCode]) -> Option<RDKafkaErrorCode> {
    results.iter().find_map(|result| match result {
        Err((_, code)) if !tolerated.contains(code) => Some(*code),
        _ => None,
    })
}

async fn add_partitions(admin: &Arc<Admin>, topic: &ValidTopic) -> Result<(), Error> {
    let count = usize::try_from(topic.partitions).unwrap_or(1);
    let results = admin
        .create_partitions([&NewPartitions::new(&topic.name, count)], &options())
        .await
        .map_err(|source| Error::CreatePartitions {
            topic: topic.name.clone(),
            source,
        })?;
    match first_error(&results, &[]) {
        Some(code) => Err(Error::CreatePartitions {
            topic: topic.name.clone(),
            source: KafkaError::AdminOp(code),
        }),
        None => Ok(()),
    }
}

/// A topic's configs as DescribeConfigs reports them.
struct DescribedConfigs {
    /// Those set on the topic itself (not broker defaults).
    dynamic: BTreeMap<String, String>,
    /// `min.insync.replicas` in effect, wherever it is set.
    min_insync_replicas: Option<i32>,
}

async fn topic_configs(admin: &Arc<Admin>, topic: &str) -> Result<DescribedConfigs, Error> {
    let error = |source| Error::DescribeConfigs {
        topic: topic.to_string(),
        source,
    };
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options())
        .await
        .map_err(error)?;
    let mut configs = DescribedConfigs {
        dynamic: BTreeMap::new(),
        min_insync_replicas: None,
    };
    for result in results {
        let resource = result.map_err(|code| error(KafkaError::AdminOp(code)))?;
        for entry in resource.entries {
            if entry.name == MIN_INSYNC_REPLICAS {
                configs.min_insync_replicas = entry.value.as_deref().and_then(|v| v.parse().ok());
            }
            if entry.source == ConfigSource::DynamicTopic && !entry.is_sensitive {
                configs
                    .dynamic
                    .insert(entry.name, entry.value.unwrap_or_default());
            }
        }
    }
    Ok(configs)
}

/// Configs set on the topic itself (not broker defaults).
async fn dynamic_configs(admin: &Arc<Admin>, topic: &str) -> Result<BTreeMap<String, String>, Error> {
    Ok(topic_configs(admin, topic).await?.dynamic)
}

/// The topic's dynamic configs once `changes` show in them (see `until_settled`), so the status does not
/// report what was just replaced. After the bound, what the broker shows is returned, and the next
/// reconcile compares again.
async fn dynamic_configs_after_alter(
    admin: &Arc<Admin>,
    topic: &str,
    changes: &[(String, ConfigOp)],
) -> Result<BTreeMap<String, String>, Error> {
    until_settled(
        || dynamic_configs(admin, topic),
        |current| {
            changes.iter().all(|(key, op)| match op {
                ConfigOp::Set(value) => current.get(key) == Some(value),
                ConfigOp::Delete => !current.contains_key(key),
            })
        },
    )
    .await
}

/// Incremental config changes on one topic (public for tests that play "someone else").
pub async fn alter_configs(
    admin: &Arc<Admin>,
    topic: &str,
    changes: &[(String, ConfigOp)],
) -> Result<(), Error> {
    let (admin, name, owned) = (admin.clone(), topic.to_string(), changes.to_vec());
    tokio::task::spawn_blocking(move || {
        ordersystem_kafka_admin::alter_topic_configs(&admin, &name, &owned, REQUEST_TIMEOUT)
    })
    .await
    .map_err(|source| Error::Blocking { source })?
    .map_err(|source| Error::AlterConfigs {
        topic: topic.to_string(),
        source,
    })
}

/// The incremental changes that make the managed keys match the spec: set what differs, delete what we
/// managed before and the spec no longer has. Keys we never managed are not in the result.
pub fn config_changes(
    desired: &BTreeMap<String, String>,
    previously_managed: &BTreeSet<String>,
    current: &BTreeMap<String, String>,
) -> Vec<(String, ConfigOp)> {
    let set = desired
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), ConfigOp::Set(value.clone())));
    let reset = previously_managed
        .iter()
        .filter(|key| !desired.contains_key(*key) && current.contains_key(*key))
        .map(|key| (key.clone(), ConfigOp::Delete));
    set.chain(reset).collect()
}

/// Deletes the topic; a topic that is already gone is not an error.
pub async fn delete_topic(admin: &Arc<Admin>, topic: &str) -> Result<(), Error> {
    let error = |source| Error::DeleteTopic {
        topic: topic.to_string(),
        source,
    };
    let results = admin.delete_topics(&[topic], &options()).await.map_err(error)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, code)) => return Err(error(KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_differing_managed_keys_are_set_and_removed_ones_reset() {
        let desired = map(&[("cleanup.policy", "delete"), ("retention.ms", "1000")]);
        let previously = ["retention.ms", "segment.ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let current = map(&[
            ("cleanup.policy", "delete"),
            ("retention.ms", "5"),
            ("segment.ms", "9"),
            ("max.message.bytes", "7"),
        ]);
        let changes = config_changes(&desired, &previously, &current);
        assert_eq!(
            changes,
            vec![
                ("retention.ms".to_string(), ConfigOp::Set("1000".into())),
                ("segment.ms".to_string(), ConfigOp::Delete)
            ]
        );
    }
}
