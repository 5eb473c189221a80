//! Prometheus metrics of the operator: reconciles, failures by error kind, reconcile duration, the
//! consumer-group lag of every system, what was done to the services' Kafka identities, and whether this
//! replica leads. The duration is recorded by a drop guard, so an early `?` cannot
//! skip it.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

/// What was done to a Kafka identity: `user_applied` (a SCRAM credential created or replaced),
/// `user_deleted` (a SCRAM credential removed), `acl_deleted` (one ACL binding removed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityChangeLabels {
    pub change: String,
}

/// One consumer group of one `OrderSystem`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub namespace: String,
    pub name: String,
    pub service: String,
}

pub struct Metrics {
    pub reconciles: Counter,
    pub consumer_lag: Family<LagLabels, Gauge>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub kafka_identity_changes: Family<IdentityChangeLabels, Counter>,
    /// SCRAM users found on the broker with the credential their Secret holds (nothing applied).
    pub kafka_identity_checks: Counter,
    /// 1 while this replica leads (or runs without leader election), 0 while it stands by.
    pub leader: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        // 10 ms to about 40 s: a reconcile that waits on Kafka or Postgres timeouts lands in the top buckets.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.01, 2.0, 12,
        ));
        let consumer_lag = Family::<LagLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("ordersystem_operator");
        registry.register(
            "build",
            "The version this binary was compiled as and the revision its image was built from",
            prometheus_client::metrics::info::Info::new(ordersystem_contract::build::labels()),
        );
        registry.register(
            "consumer_lag",
            "Events the invoicing or shipping consumer group has not read yet, at the last observation",
            consumer_lag.clone(),
        );
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            duration.clone(),
        );
        let kafka_identity_changes = Family::<IdentityChangeLabels, Counter>::default();
        registry.register(
            "kafka_identity_changes",
            "Changes made to the services' SCRAM users and ACLs on the broker, by kind",
            kafka_identity_changes.clone(),
        );
        let kafka_identity_checks = Counter::default();
        registry.register(
            "kafka_identity_checks",
            "SCRAM users found in place with the credential their Secret holds, so left alone",
            kafka_identity_checks.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (it holds the lease, or leader election is off), 0 on standby",
            leader.clone(),
        );
        Self {
            reconciles,
            consumer_lag,
            failures,
            duration,
            kafka_identity_changes,
            kafka_identity_checks,
            leader,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and measures it until the guard is dropped.
    pub fn count_and_measure(&self) -> ReconcileMeasurer {
        self.reconciles.inc();
        ReconcileMeasurer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    pub fn count_failure(&self, label: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: label.to_string(),
            })
            .inc();
    }

    pub fn count_kafka_identity_change(&self, change: &str) {
        self.kafka_identity_changes
            .get_or_create(&IdentityChangeLabels {
                change: change.to_string(),
            })
            .inc();
    }

    /// How many changes of one kind were made to Kafka identities.
    pub fn kafka_identity_change_count(&self, change: &str) -> u64 {
        self.kafka_identity_changes
            .get_or_create(&IdentityChangeLabels {
                change: change.to_string(),
            })
            .get()
    }

    /// Records the lag of both consumer groups of one system.
    pub fn set_lag(&self, namespace: &str, name: &str, lag: &crate::crd::ConsumerLagStatus) {
        for (service, group) in [("invoicing", &lag.invoicing), ("shipping", &lag.shipping)] {
            self.consumer_lag
                .get_or_create(&lag_labels(namespace, name, service))
                .set(group.lag);
        }
    }

    /// Forgets the lag of a deleted system.
    pub fn remove_lag(&self, namespace: &str, name: &str) {
        for service in ["invoicing", "shipping"] {
            self.consumer_lag.remove(&lag_labels(namespace, name, service));
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn lag_labels(namespace: &str, name: &str, service: &str) -> LagLabels {
    LagLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
        service: service.to_string(),
    }
}

pub struct ReconcileMeasurer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileMeasurer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_names_the_version_and_the_images_revision() {
        let text = Metrics::default().encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("ordersystem_operator_build_info{"))
            .unwrap_or_else(|| panic!("no build_info in:\n{text}"));
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(line.contains("revision=\""), "{line}");
        assert!(line.ends_with(" 1"), "{line}");
    }
}
