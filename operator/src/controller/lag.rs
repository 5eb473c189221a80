//! lag: how far invoicing and shipping are behind the topic, read without joining their groups. One
//! client per set of brokers (a consumer that never subscribes, `kafka::GroupClient`) asks each group's
//! coordinator for the committed offsets (ListConsumerGroupOffsets, which answers for `classic` and
//! KIP-848 `consumer` groups alike) and the partition leaders for the watermarks; lag is the sum over
//! partitions of `high - committed`. A partition without a committed offset counts its whole
//! retained range (`high - low`): a new group starts at the earliest offset and has all of it to read.
//!
//! The watermarks of all partitions come in two ListOffsets requests per leader, one for the low and one
//! for the high ones (`offsets_for_times` with Kafka's special times for earliest and latest), where
//! librdkafka's `query_watermark_offsets` sends two per partition: ten a look for five partitions. That
//! older way is what a look falls back on when the batched request fails.
//!
//! Each look is logged at debug level (`lag read`: its duration and the Kafka requests it sends), so
//! what the lag reads cost at scale can be measured from the operator's own log (`bench operator-scale`).
//!
//! Also here: the "keeps growing" decision behind `Degraded reason=ConsumerLagGrowing`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tracing::debug;

use super::kafka::{self, ClientSecurity, FfiError, GroupClient, KafkaClients};
use crate::crd::{ConsumerLagSpec, ConsumerLagStatus, GroupLagStatus};
use crate::names::Service;

/// How long one offset or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to create a Kafka client for {bootstrap}")]
    CreateClient {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to read the committed offsets of consumer group {group}")]
    Committed {
        group: String,
        #[source]
        source: FfiError,
    },
    #[error("failed to read the offsets of the partitions of topic {topic}")]
    Offsets {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to read the offsets of partition {partition} of topic {topic}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("a blocking Kafka call panicked or was cancelled")]
    Blocking {
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The lag of one partition: what the group has still to read of what the topic holds.
pub fn partition_lag(committed: Option<i64>, low: i64, high: i64) -> i64 {
    match committed {
        Some(offset) => (high - offset.max(low)).max(0),
        None => (high - low).max(0),
    }
}

/// Lag of each consumer group (`groups`: service and group id) on `topic` with `partitions` partitions,
/// asked through the one lag reader of `bootstrap` and `security`, whatever the number of groups. A
/// failed look drops the reader, so the next one starts with a fresh client.
#[tracing::instrument(name = "lag", skip_all)]
pub async fn observe(
    clients: &KafkaClients,
    bootstrap: &str,
    security: &ClientSecurity,
    topic: &str,
    partitions: i32,
    groups: Vec<(Service, String)>,
) -> Result<BTreeMap<Service, i64>, Error> {
    let Some((_, first_group)) = groups.first() else {
        return Ok(BTreeMap::new());
    };
    let reader = clients
        .lag_reader(bootstrap, security, first_group)
        .map_err(|source| Error::CreateClient {
            bootstrap: bootstrap.to_string(),
            source,
        })?;
    let requests = requests_per_look(partitions, groups.len());
    let started = Instant::now();
    let owned_topic = topic.to_string();
    let result =
        tokio::task::spawn_blocking(move || observe_blocking(&reader, &owned_topic, partitions, &groups))
            .await
            .map_err(|source| Error::Blocking { source })?;
    debug!(
        topic,
        partitions,
        requests,
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        ok = result.is_ok(),
        "lag read"
    );
    if result.is_err()
        && let Some(reader) = clients.forget_lag_reader(bootstrap, security)
    {
        tokio::task::spawn_blocking(move || drop(reader));
    }
    result
}

/// The Kafka requests one look sends at least: the low watermarks of all partitions in one ListOffsets
/// request and the high ones in another (per leader broker: one with a single broker), and each group's
/// committed offsets in one OffsetFetch. Metadata and FindCoordinator requests come on top when
/// librdkafka has not cached the partition leaders or the group's coordinator.
pub fn requests_per_look(partitions: i32, groups: usize) -> u64 {
    let watermarks = if partitions > 0 { 2 } else { 0 };
    watermarks + u64::try_from(groups).unwrap_or(u64::MAX)
}

fn observe_blocking(
    reader: &GroupClient,
    topic: &str,
    partitions: i32,
    groups: &[(Service, String)],
) -> Result<BTreeMap<Service, i64>, Error> {
    // Nobody polls the reader between looks: take what librdkafka queued meanwhile (errors, logs).
    while reader.consumer().poll(Duration::ZERO).is_some() {}
    let watermarks = watermarks(reader, topic, partitions)?;
    let mut lags = BTreeMap::new();
    for (service, group) in groups {
        let committed = kafka::list_group_offsets(reader, group, topic, partitions, REQUEST_TIMEOUT)
            .map_err(|source| Error::Committed {
                group: group.clone(),
                source,
            })?;
        let lag = committed
            .iter()
            .zip(&watermarks)
            .map(|(&offset, &(low, high))| partition_lag(offset, low, high))
            .sum();
        lags.insert(*service, lag);
    }
    Ok(lags)
}

/// The low and high watermark of each partition of `topic`, partition 0 first: both sides for all
/// partitions at once ([`batched_watermarks`]); when that fails, partition by partition as librdkafka's
/// `query_watermark_offsets` asks. The batched request carries the leader epoch librdkafka has cached, and
/// a broker restarted since refuses it (`FENCED_LEADER_EPOCH`) where the older request still answers.
/// Both ways share one [`REQUEST_TIMEOUT`]: a broker that did not answer the batched request in time is
/// not asked again, so a look at an unreachable broker fails after that timeout, not several of them.
fn watermarks(reader: &GroupClient, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>, Error> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let left = || deadline.saturating_duration_since(Instant::now());
    let error = match batched_watermarks(reader, topic, partitions, left) {
        Ok(marks) => return Ok(marks),
        Err(error) => error,
    };
    if left().is_zero() {
        return Err(error);
    }
    debug!(topic, error = %error, "batched watermarks failed, asking partition by partition");
    (0..partitions)
        .map(|partition| {
            reader
                .consumer()
                .fetch_watermarks(topic, partition, left())
                .map_err(|source| Error::Watermarks {
                    topic: topic.to_string(),
                    partition,
                    source,
                })
        })
        .collect()
}

/// The watermarks of all partitions in two requests per leader: Kafka's earliest and latest offsets
/// (ListOffsets with the times -2 and -1, which the broker answers with the log start and the end offset,
/// as for `query_watermark_offsets`).
/// Each request waits at most what `left` says is left of the look's timeout.
fn batched_watermarks(
    reader: &GroupClient,
    topic: &str,
    partitions: i32,
    left: impl Fn() -> Duration,
) -> Result<Vec<(i64, i64)>, Error> {
    let error = |partition, source| Error::Watermarks {
        topic: topic.to_string(),
        partition,
        source,
    };
    let query = |at: Offset| {
        let mut list = TopicPartitionList::with_capacity(usize::try_from(partitions).unwrap_or(0));
        for partition in 0..partitions {
            list.add_partition_offset(topic, partition, at)
                .map_err(|source| error(partition, source))?;
        }
        reader
            .consumer()
            .offsets_for_times(list, left())
            .map_err(|source| Error::Offsets {
                topic: topic.to_string(),
                source,
            })
    };
    let (low, high) = (query(Offset::Beginning)?, query(Offset::End)?);
    let offset = |list: &TopicPartitionList, partition| {
        let element = list.find_partition(topic, partition).ok_or_else(|| {
            error(
                partition,
                KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownPartition),
            )
        })?;
        element.error().map_err(|source| error(partition, source))?;
        match element.offset() {
            Offset::Offset(offset) => Ok(offset),
            _ => Err(error(
                partition,
                KafkaError::OffsetFetch(RDKafkaErrorCode::OffsetNotAvailable),
            )),
        }
    };
    (0..partitions)
        .map(|partition| Ok((offset(&low, partition)?, offset(&high, partition)?)))
        .collect()
}

/// Consecutive observations in which a group's lag was above the threshold and not shrinking: a group
/// that is behind but catching up starts again from zero, one that is stuck or falling behind counts on.
pub fn growing_observations(previous: Option<&GroupLagStatus>, lag: i64, threshold: i64) -> i32 {
    if lag <= threshold {
        return 0;
    }
    match previous {
        Some(before) if lag >= before.lag => before.growing_observations.saturating_add(1),
        _ => 1,
    }
}

/// The new lag status from this observation and the previous one.
pub fn status(
    previous: Option<&ConsumerLagStatus>,
    lags: &BTreeMap<Service, i64>,
    groups: &[(Service, String)],
    spec: &ConsumerLagSpec,
) -> ConsumerLagStatus {
    let group = |service: Service| {
        let lag = lags.get(&service).copied().unwrap_or_default();
        let before = previous.map(|p| match service {
            Service::Shipping => &p.shipping,
            _ => &p.invoicing,
        });
        GroupLagStatus {
            group: groups
                .iter()
                .find(|(s, _)| *s == service)
                .map(|(_, g)| g.clone())
                .unwrap_or_default(),
            lag,
            growing_observations: growing_observations(before, lag, spec.threshold),
        }
    };
    let (invoicing, shipping) = (group(Service::Invoicing), group(Service::Shipping));
    ConsumerLagStatus {
        total: invoicing.lag + shipping.lag,
        invoicing,
        shipping,
    }
}

/// `Degraded reason=ConsumerLagGrowing` message, when a group's lag kept growing past the threshold for
/// `spec.observations` observations in a row.
pub fn growing_message(lag: &ConsumerLagStatus, spec: &ConsumerLagSpec) -> Option<String> {
    let growing: Vec<String> = [("invoicing", &lag.invoicing), ("shipping", &lag.shipping)]
        .into_iter()
        .filter(|(_, g)| g.growing_observations >= spec.observations)
        .map(|(name, g)| format!("{name} ({}) is {} events behind", g.group, g.lag))
        .collect();
    (!growing.is_empty()).then(|| {
        format!(
            "{}; above the threshold of {} and not shrinking for {} observations in a row",
            growing.join(", "),
            spec.threshold,
            spec.observations
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(lag: i64, growing_observations: i32) -> GroupLagStatus {
        GroupLagStatus {
            group: "g".into(),
            lag,
            growing_observations,
        }
    }

    #[test]
    fn a_partition_without_committed_offset_owes_its_whole_retained_range() {
        assert_eq!(partition_lag(None, 3, 10), 7);
        assert_eq!(partition_lag(Some(8), 3, 10), 2);
        assert_eq!(partition_lag(Some(10), 3, 10), 0);
        // A committed offset below the log start (retention removed the records) owes what is left.
        assert_eq!(partition_lag(Some(1), 3, 10), 7);
    }

    #[test]
    fn a_look_sends_two_watermark_requests_for_all_partitions_and_one_offset_fetch_per_group() {
        assert_eq!(requests_per_look(5, 2), 4);
        assert_eq!(requests_per_look(1, 2), 4);
        assert_eq!(requests_per_look(0, 2), 2);
    }

    #[test]
    fn lag_keeps_growing_only_while_above_the_threshold_and_not_shrinking() {
        // (previous lag and count, lag now, expected count, why), with a threshold of 100.
        let cases = [
            (None, 100, 0, "at the threshold"),
            (None, 101, 1, "above it"),
            (Some((150, 2)), 150, 3, "stuck counts"),
            (Some((150, 2)), 200, 3, "growing counts"),
            (Some((150, 2)), 140, 1, "catching up restarts"),
            (Some((150, 5)), 50, 0, "below resets"),
        ];
        for (previous, lag, expected, why) in cases {
            let previous = previous.map(|(lag, count)| group(lag, count));
            assert_eq!(
                growing_observations(previous.as_ref(), lag, 100),
                expected,
                "{why}"
            );
        }
    }

    #[test]
    fn degraded_only_after_the_configured_number_of_observations() {
        let spec = ConsumerLagSpec {
            threshold: 10,
            observations: 3,
            interval_seconds: 30,
        };
        let groups = vec![
            (Service::Invoicing, "ns.shop.invoicing".to_string()),
            (Service::Shipping, "ns.shop.shipping".to_string()),
        ];
        let lags = BTreeMap::from([(Service::Invoicing, 20), (Service::Shipping, 0)]);
        let mut status = None;
        for round in 1..=3 {
            let next = super::status(status.as_ref(), &lags, &groups, &spec);
            assert_eq!(next.total, 20);
            assert_eq!(
                growing_message(&next, &spec).is_some(),
                round == 3,
                "round {round}"
            );
            status = Some(next);
        }
        let message = growing_message(status.as_ref().unwrap(), &spec).unwrap();
        assert!(
            message.contains("invoicing (ns.shop.invoicing) is 20 events behind"),
            "{message}"
        );
        assert!(!message.contains("shipping"), "{message}");
    }
}
