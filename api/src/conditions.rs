//! The conditions an `OrderSystem`'s status carries, and every reason the operator gives them. The
//! operator writes these words and the tests and users read them: each is defined once, here.

/// The condition types, in the order the status lists them.
pub const READY: &str = "Ready";
pub const TOPIC_READY: &str = "TopicReady";
pub const DATABASE_READY: &str = "DatabaseReady";
pub const SERVICES_AVAILABLE: &str = "ServicesAvailable";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// True while the topic's partitions have fewer in-sync replicas than the spec asks for.
pub const DURABILITY_REDUCED: &str = "DurabilityReduced";
pub const PAUSED: &str = "Paused";

/// Why a condition has the status it has: the condition's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // Ready
    Ready,
    InvalidSpec,
    Conflict,
    TopicNotReady,
    DatabaseNotReady,
    ServicesUnavailable,
    // TopicReady
    TopicReady,
    NotObserved,
    KafkaUnavailable,
    KafkaTlsFailed,
    KafkaAuthenticationFailed,
    KafkaCredentialsMissing,
    PartitionIncreaseRejected,
    TopicDeleted,
    TopicIdChanged,
    Missing,
    NotSupported,
    ReplicationFactorMismatch,
    ReplicationFactorTooLarge,
    // DatabaseReady (and `Conflict`, `NotObserved`)
    PostgresUnavailable,
    PostgresTlsFailed,
    SchemasReady,
    SchemasNotReady,
    // ServicesAvailable
    AllAvailable,
    Unavailable,
    // Progressing
    DrainingForPartitionIncrease,
    RotatingCredentials,
    WaitingForTopic,
    WaitingForDatabase,
    WaitingForConsumers,
    RolloutComplete,
    RollingOut,
    // Degraded (and `NotSupported`)
    TransientError,
    TopicMissing,
    TopicRecreated,
    ConsumersExceedPartitions,
    ConsumerLagGrowing,
    InvalidRotationRequest,
    CompactionLosesHistory,
    AsExpected,
    // DurabilityReduced (and `NotObserved`)
    FullyReplicated,
    UnderReplicated,
    BelowMinInsyncReplicas,
    PartitionsOffline,
    // Paused
    Paused,
    Reconciling,
}

impl Reason {
    /// Every reason, in the order the enum declares them. A test holds it to the enum.
    pub const ALL: [Self; 46] = [
        Self::Ready,
        Self::InvalidSpec,
        Self::Conflict,
        Self::TopicNotReady,
        Self::DatabaseNotReady,
        Self::ServicesUnavailable,
        Self::TopicReady,
        Self::NotObserved,
        Self::KafkaUnavailable,
        Self::KafkaTlsFailed,
        Self::KafkaAuthenticationFailed,
        Self::KafkaCredentialsMissing,
        Self::PartitionIncreaseRejected,
        Self::TopicDeleted,
        Self::TopicIdChanged,
        Self::Missing,
        Self::NotSupported,
        Self::ReplicationFactorMismatch,
        Self::ReplicationFactorTooLarge,
        Self::PostgresUnavailable,
        Self::PostgresTlsFailed,
        Self::SchemasReady,
        Self::SchemasNotReady,
        Self::AllAvailable,
        Self::Unavailable,
        Self::DrainingForPartitionIncrease,
        Self::RotatingCredentials,
        Self::WaitingForTopic,
        Self::WaitingForDatabase,
        Self::WaitingForConsumers,
        Self::RolloutComplete,
        Self::RollingOut,
        Self::TransientError,
        Self::TopicMissing,
        Self::TopicRecreated,
        Self::ConsumersExceedPartitions,
        Self::ConsumerLagGrowing,
        Self::InvalidRotationRequest,
        Self::CompactionLosesHistory,
        Self::AsExpected,
        Self::FullyReplicated,
        Self::UnderReplicated,
        Self::BelowMinInsyncReplicas,
        Self::PartitionsOffline,
        Self::Paused,
        Self::Reconciling,
    ];

    /// The reasons of `Degraded=True`. The chart's PrometheusRule has an alert for each (a test holds the
    /// two together), and one for the operator's own degraded verdicts (a test holds this list to them).
    pub const DEGRADED: [Self; 8] = [
        Self::TransientError,
        Self::NotSupported,
        Self::TopicMissing,
        Self::TopicRecreated,
        Self::ConsumersExceedPartitions,
        Self::ConsumerLagGrowing,
        Self::InvalidRotationRequest,
        Self::CompactionLosesHistory,
    ];

    /// The word in the condition, the same as the variant's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::InvalidSpec => "InvalidSpec",
            Self::Conflict => "Conflict",
            Self::TopicNotReady => "TopicNotReady",
            Self::DatabaseNotReady => "DatabaseNotReady",
            Self::ServicesUnavailable => "ServicesUnavailable",
            Self::TopicReady => "TopicReady",
            Self::NotObserved => "NotObserved",
            Self::KafkaUnavailable => "KafkaUnavailable",
            Self::KafkaTlsFailed => "KafkaTlsFailed",
            Self::KafkaAuthenticationFailed => "KafkaAuthenticationFailed",
            Self::KafkaCredentialsMissing => "KafkaCredentialsMissing",
            Self::PartitionIncreaseRejected => "PartitionIncreaseRejected",
            Self::TopicDeleted => "TopicDeleted",
            Self::TopicIdChanged => "TopicIdChanged",
            Self::Missing => "Missing",
            Self::NotSupported => "NotSupported",
            Self::ReplicationFactorMismatch => "ReplicationFactorMismatch",
            Self::ReplicationFactorTooLarge => "ReplicationFactorTooLarge",
            Self::PostgresUnavailable => "PostgresUnavailable",
            Self::PostgresTlsFailed => "PostgresTlsFailed",
            Self::SchemasReady => "SchemasReady",
            Self::SchemasNotReady => "SchemasNotReady",
            Self::AllAvailable => "AllAvailable",
            Self::Unavailable => "Unavailable",
            Self::DrainingForPartitionIncrease => "DrainingForPartitionIncrease",
            Self::RotatingCredentials => "RotatingCredentials",
            Self::WaitingForTopic => "WaitingForTopic",
            Self::WaitingForDatabase => "WaitingForDatabase",
            Self::WaitingForConsumers => "WaitingForConsumers",
            Self::RolloutComplete => "RolloutComplete",
            Self::RollingOut => "RollingOut",
            Self::TransientError => "TransientError",
            Self::TopicMissing => "TopicMissing",
            Self::TopicRecreated => "TopicRecreated",
            Self::ConsumersExceedPartitions => "ConsumersExceedPartitions",
            Self::ConsumerLagGrowing => "ConsumerLagGrowing",
            Self::InvalidRotationRequest => "InvalidRotationRequest",
            Self::CompactionLosesHistory => "CompactionLosesHistory",
            Self::AsExpected => "AsExpected",
            Self::FullyReplicated => "FullyReplicated",
            Self::UnderReplicated => "UnderReplicated",
            Self::BelowMinInsyncReplicas => "BelowMinInsyncReplicas",
            Self::PartitionsOffline => "PartitionsOffline",
            Self::Paused => "Paused",
            Self::Reconciling => "Reconciling",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn each_reason_is_written_as_its_variant_name() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str(), format!("{reason:?}"));
        }
    }

    #[test]
    fn all_lists_every_variant_of_the_enum_once_in_its_order() {
        let source = include_str!("conditions.rs");
        let body = &source[source.find("pub enum Reason {").expect("the enum")..];
        let body = &body[..body.find("\n}").expect("its end")];
        let declared: Vec<&str> = body
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|line| !line.starts_with("//") && !line.is_empty())
            .map(|line| line.trim_end_matches(','))
            .collect();
        let listed: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(listed, declared, "Reason::ALL must list every variant of Reason");
    }

    /// Every `Verdict::new(true, Reason::…` of the operator's `degraded_verdict` is listed, and each
    /// listed reason is used there.
    #[test]
    fn degraded_lists_every_reason_the_operator_sets_degraded_with() {
        let status = include_str!("../../operator/src/controller/status.rs");
        let body = &status[status.find("fn degraded_verdict").expect("degraded_verdict")..];
        let body = &body[..body.find("\n}\n").expect("its end")];
        let mut used: Vec<&str> = body
            .split("Verdict::new(")
            .skip(1)
            .filter_map(|call| {
                let call = call.trim_start().strip_prefix("true,")?.trim_start();
                let reason = call.strip_prefix("Reason::")?;
                Some(&reason[..reason.find(|c: char| !c.is_alphanumeric())?])
            })
            .collect();
        used.sort_unstable();
        used.dedup();
        let mut listed: Vec<&str> = Reason::DEGRADED.iter().map(|r| r.as_str()).collect();
        listed.sort_unstable();
        assert_eq!(listed, used);
    }
}
