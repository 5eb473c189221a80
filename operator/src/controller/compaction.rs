//! compaction: the sanity check on `cleanup.policy`. A compacted topic keeps only the latest event per key
//! (per order), but invoicing and shipping build their state from every event of an order, and a consumer
//! group that starts anew (a new system on the same topic, a reset schema) replays the topic from the
//! start: it would see the last event of each order and miss the rest. Compaction is still safe once every
//! consumer has read an event, which is what `compact,delete` with `min.compaction.lag.ms` says.

use super::validate::ValidTopic;

/// `Degraded reason=CompactionLosesHistory` message, when the policy lets compaction remove events a
/// consumer may still need.
pub fn warning(topic: &ValidTopic) -> Option<String> {
    let policy = topic.configs.get("cleanup.policy")?;
    if !policy.split(',').any(|p| p.trim() == "compact") {
        return None;
    }
    let explain = "invoicing and shipping replay the order events from the start when their group is new, and \
         compaction keeps only the latest event of each order, so a replay would miss the earlier ones. Use \
         cleanupPolicy delete, or compact,delete with config min.compaction.lag.ms (e.g. 604800000, 7 days) \
         longer than any consumer may fall behind: an event is then compacted only after everyone read it, \
         and retention.ms still bounds the log";
    if policy.contains("delete") {
        (!topic.configs.contains_key("min.compaction.lag.ms"))
            .then(|| format!("cleanupPolicy compact,delete without min.compaction.lag.ms: {explain}"))
    } else {
        Some(format!("cleanupPolicy compact: {explain}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(configs: &[(&str, &str)]) -> ValidTopic {
        ValidTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: None,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn compact_warns_and_compact_delete_warns_until_a_compaction_lag_is_set() {
        assert_eq!(warning(&topic(&[("cleanup.policy", "delete")])), None);
        assert!(warning(&topic(&[("cleanup.policy", "compact")])).is_some());
        let bare = warning(&topic(&[("cleanup.policy", "compact,delete")])).expect("warns");
        assert!(bare.contains("min.compaction.lag.ms"), "{bare}");
        let lagged = topic(&[
            ("cleanup.policy", "compact,delete"),
            ("min.compaction.lag.ms", "604800000"),
        ]);
        assert_eq!(warning(&lagged), None);
    }
}
