//! The conditions an `OrderSystem`'s status carries, and every reason the operator gives them. The
//! operator writes these words and the tests and users read them: each is defined once, here.

/// The condition types, in the order the status lists them.
pub const READY: &str = "Ready";
pub const TOPIC_READY: &str = "TopicReady";
pub const DATABASE_READY: &str = "DatabaseReady";
pub const SERVICES_AVAILABLE: &str = "ServicesAvailable";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
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
    // Paused
    Paused,
    Reconciling,
}

impl Reason {
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
        for reason in [
            Reason::Ready,
            Reason::KafkaTlsFailed,
            Reason::WaitingForConsumers,
            Reason::Reconciling,
        ] {
            assert_eq!(reason.as_str(), format!("{reason:?}"));
        }
    }
}
