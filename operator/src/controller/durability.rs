//! durability: whether the topic's partitions have the in-sync replicas the spec asks for, decided (pure
//! `assess`) from the cluster metadata the topic step reads: each partition's leader, replicas and in-sync
//! replicas, and the brokers the cluster lists. An acknowledged order event (`acks=all`) is on every in-sync
//! replica; with fewer of them than the spec's replication factor the next broker lost may lose it, and with
//! fewer than `min.insync.replicas` the brokers refuse the relay's writes, so orders wait in the outbox.
//! `DurabilityReduced` says so while it lasts; it is its own condition and leaves `Degraded` to its reasons.

use crate::conditions::Reason;

/// One partition as the cluster metadata shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReplicas {
    pub partition: i32,
    /// The leader's broker id; `None` when the partition has no leader.
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub in_sync: Vec<i32>,
}

/// The topic's replicas as the cluster metadata shows them, and what producers need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    /// The brokers the cluster metadata lists (running and not fenced).
    pub brokers: Vec<i32>,
    pub partitions: Vec<PartitionReplicas>,
    /// `min.insync.replicas` in effect for the topic (its own config, else the broker's).
    pub min_insync_replicas: i32,
}

/// The verdict: reduced or not, the condition's reason and its sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    pub reduced: bool,
    pub reason: Reason,
    pub message: String,
}

/// "1 partition", "3 partitions".
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The verb for `n` partitions.
fn have(n: usize) -> &'static str {
    if n == 1 { "has" } else { "have" }
}

/// "broker 3", "brokers 3 and 4", "brokers 2, 3 and 4".
fn brokers(ids: &[i32]) -> String {
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    match names.as_slice() {
        [] => "no broker".to_string(),
        [one] => format!("broker {one}"),
        [rest @ .., last] => format!("brokers {} and {last}", rest.join(", ")),
    }
}

/// Decides `DurabilityReduced` for `topic`. `spec_replication_factor` is the spec's; without one, each
/// partition's own replica count is what it needs. A replica counts as in sync when the metadata lists it
/// in the partition's ISR and its broker in the cluster.
pub fn assess(topic: &str, spec_replication_factor: Option<i32>, replication: &Replication) -> Durability {
    let available = |id: &i32| replication.brokers.contains(id);
    let in_sync = |p: &PartitionReplicas| {
        i32::try_from(p.in_sync.iter().filter(|id| available(id)).count()).unwrap_or(i32::MAX)
    };
    let wanted = |p: &PartitionReplicas| {
        spec_replication_factor.unwrap_or_else(|| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX))
    };
    let led = |p: &PartitionReplicas| p.leader.is_some_and(|l| available(&l));
    let total = replication.partitions.len();
    let min = replication.min_insync_replicas;
    let of_total = |n: usize| format!("{n} of {}", count(total, "partition"));
    // The brokers whose replicas of these partitions are not in sync, in order.
    let out_of_sync = |partitions: &[&PartitionReplicas]| {
        let mut ids: Vec<i32> = partitions
            .iter()
            .flat_map(|p| {
                p.replicas
                    .iter()
                    .filter(|id| !available(id) || !p.in_sync.contains(id))
            })
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let available_brokers = count(replication.brokers.len(), "broker");

    let offline: Vec<&PartitionReplicas> = replication.partitions.iter().filter(|p| !led(p)).collect();
    if !offline.is_empty() {
        return Durability {
            reduced: true,
            reason: Reason::PartitionsOffline,
            message: format!(
                "{} of topic {topic} {} no leader: none of the replicas (on {}) is available, so orders \
                 cannot be published and wait in the outbox; the cluster lists {available_brokers}",
                of_total(offline.len()),
                have(offline.len()),
                brokers(&out_of_sync(&offline)),
            ),
        };
    }
    let below: Vec<&PartitionReplicas> = replication
        .partitions
        .iter()
        .filter(|p| in_sync(p) < min)
        .collect();
    if let Some(fewest) = below.iter().map(|p| in_sync(p)).min() {
        return Durability {
            reduced: true,
            reason: Reason::BelowMinInsyncReplicas,
            message: format!(
                "{} of topic {topic} {} fewer in-sync replicas ({fewest}) than min.insync.replicas ({min}): \
                 producers are refused and orders wait in the outbox; the replicas on {} are out of sync and \
                 the cluster lists {available_brokers}",
                of_total(below.len()),
                have(below.len()),
                brokers(&out_of_sync(&below)),
            ),
        };
    }
    let under: Vec<&PartitionReplicas> = replication
        .partitions
        .iter()
        .filter(|p| in_sync(p) < wanted(p))
        .collect();
    let asked = match spec_replication_factor {
        Some(factor) => format!("the {factor} replicas the spec asks for"),
        None => "the topic's replicas".to_string(),
    };
    if let Some(fewest) = under.iter().map(|p| in_sync(p)).min() {
        return Durability {
            reduced: true,
            reason: Reason::UnderReplicated,
            message: format!(
                "only {fewest} of {asked} are in sync on {} of topic {topic}; the replicas on {} are out of \
                 sync. Orders are still published (min.insync.replicas is {min}), on fewer copies",
                of_total(under.len()),
                brokers(&out_of_sync(&under)),
            ),
        };
    }
    Durability {
        reduced: false,
        reason: Reason::FullyReplicated,
        message: format!(
            "{} of topic {topic} {} {asked} in sync (min.insync.replicas {min})",
            if total == 1 {
                "the 1 partition".to_string()
            } else {
                format!("all {total} partitions")
            },
            have(total),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(partition: i32, leader: i32, replicas: &[i32], in_sync: &[i32]) -> PartitionReplicas {
        PartitionReplicas {
            partition,
            leader: (leader >= 0).then_some(leader),
            replicas: replicas.to_vec(),
            in_sync: in_sync.to_vec(),
        }
    }

    /// Six partitions of three replicas on brokers 2, 3, 4, each with `in_sync(p)` in sync and led by the
    /// first of them; the cluster lists `brokers`.
    fn cluster(brokers: &[i32], in_sync: impl Fn(&[i32]) -> Vec<i32>) -> Replication {
        let orders = [[2, 3, 4], [3, 4, 2], [4, 2, 3]];
        Replication {
            brokers: brokers.to_vec(),
            partitions: (0..6)
                .map(|p| {
                    let replicas = orders[usize::try_from(p).unwrap_or(0) % 3];
                    let isr = in_sync(&replicas);
                    partition(p, isr.first().copied().unwrap_or(-1), &replicas, &isr)
                })
                .collect(),
            min_insync_replicas: 2,
        }
    }

    fn without(gone: &'static [i32]) -> impl Fn(&[i32]) -> Vec<i32> {
        move |replicas| replicas.iter().copied().filter(|id| !gone.contains(id)).collect()
    }

    #[test]
    fn every_replica_in_sync_is_full_durability() {
        let verdict = assess("orders", Some(3), &cluster(&[2, 3, 4], without(&[])));
        assert!(!verdict.reduced);
        assert_eq!(verdict.reason, Reason::FullyReplicated);
        assert_eq!(
            verdict.message,
            "all 6 partitions of topic orders have the 3 replicas the spec asks for in sync (min.insync.replicas 2)"
        );
    }

    #[test]
    fn one_broker_gone_leaves_the_partitions_under_replicated_but_writable() {
        let verdict = assess("orders", Some(3), &cluster(&[2, 4], without(&[3])));
        assert!(verdict.reduced);
        assert_eq!(verdict.reason, Reason::UnderReplicated);
        assert_eq!(
            verdict.message,
            "only 2 of the 3 replicas the spec asks for are in sync on 6 of 6 partitions of topic orders; the \
             replicas on broker 3 are out of sync. Orders are still published (min.insync.replicas is 2), on \
             fewer copies"
        );
    }

    #[test]
    fn two_brokers_gone_fall_below_min_insync_replicas_and_producers_are_refused() {
        let verdict = assess("orders", Some(3), &cluster(&[2], without(&[3, 4])));
        assert!(verdict.reduced);
        assert_eq!(verdict.reason, Reason::BelowMinInsyncReplicas);
        assert_eq!(
            verdict.message,
            "6 of 6 partitions of topic orders have fewer in-sync replicas (1) than min.insync.replicas (2): \
             producers are refused and orders wait in the outbox; the replicas on brokers 3 and 4 are out of \
             sync and the cluster lists 1 broker"
        );
    }

    /// The metadata may still list a stopped broker's replica in the ISR until the controller fences it;
    /// a replica whose broker the cluster no longer lists is not counted.
    #[test]
    fn an_isr_entry_on_a_broker_the_cluster_no_longer_lists_is_not_in_sync() {
        let verdict = assess("orders", Some(3), &cluster(&[2], without(&[])));
        assert_eq!(verdict.reason, Reason::PartitionsOffline, "{}", verdict.message);
        let stale = Replication {
            brokers: vec![2],
            partitions: vec![partition(0, 2, &[2, 3, 4], &[2, 3, 4])],
            min_insync_replicas: 2,
        };
        let verdict = assess("orders", Some(3), &stale);
        assert_eq!(
            verdict.reason,
            Reason::BelowMinInsyncReplicas,
            "{}",
            verdict.message
        );
    }

    #[test]
    fn a_partition_without_a_leader_is_offline_and_named_before_the_others() {
        let mut replication = cluster(&[2, 3], without(&[4]));
        replication.partitions[5] = partition(5, -1, &[4, 2, 3], &[]);
        let verdict = assess("orders", Some(3), &replication);
        assert!(verdict.reduced);
        assert_eq!(verdict.reason, Reason::PartitionsOffline);
        assert_eq!(
            verdict.message,
            "1 of 6 partitions of topic orders has no leader: none of the replicas (on brokers 2, 3 and 4) \
             is available, so orders cannot be published and wait in the outbox; the cluster lists 2 brokers"
        );
    }

    #[test]
    fn without_a_spec_factor_each_partition_needs_its_own_replicas() {
        let replication = Replication {
            brokers: vec![1],
            partitions: vec![partition(0, 1, &[1], &[1])],
            min_insync_replicas: 1,
        };
        let verdict = assess("orders", None, &replication);
        assert!(!verdict.reduced);
        assert_eq!(
            verdict.message,
            "the 1 partition of topic orders has the topic's replicas in sync (min.insync.replicas 1)"
        );
        // The spec asks for more replicas than the topic has: fewer are in sync than it needs.
        let verdict = assess("orders", Some(3), &replication);
        assert_eq!(verdict.reason, Reason::UnderReplicated, "{}", verdict.message);
    }

    #[test]
    fn a_min_insync_replicas_above_the_replicas_refuses_every_write() {
        let mut replication = cluster(&[2, 3, 4], without(&[]));
        replication.min_insync_replicas = 4;
        let verdict = assess("orders", Some(3), &replication);
        assert_eq!(
            verdict.reason,
            Reason::BelowMinInsyncReplicas,
            "{}",
            verdict.message
        );
    }
}
