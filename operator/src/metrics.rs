//! Prometheus metrics of the operator: reconciles, failures by error kind, reconcile duration, the
//! consumer-group lag and the status conditions of every system, what was done to the services' Kafka
//! identities, whether this replica leads, and the build it runs. The duration is recorded by a drop guard, so an early `?` cannot
//! skip it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

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
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub namespace: String,
    pub name: String,
    pub service: String,
}

/// One condition of one `OrderSystem`, as its status has it (kube-state-metrics' shape: the sample is 1 and
/// the status and reason are labels, so an alert selects `status="False"` or a `reason`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub name: String,
    pub r#type: String,
    pub status: String,
    pub reason: String,
}

pub struct Metrics {
    pub reconciles: Counter,
    /// `ordersystem_operator_condition`: 1 for each condition of each system, as last written.
    pub conditions: Family<ConditionLabels, Gauge>,
    /// The label sets of `conditions` written for each system, so a condition whose status or reason
    /// changed leaves no stale sample behind.
    written_conditions: Mutex<HashMap<(String, String), Vec<ConditionLabels>>>,
    pub consumer_lag: Family<LagLabels, Gauge>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub kafka_identity_changes: Family<IdentityChangeLabels, Counter>,
    /// SCRAM users found on the broker with the credential their Secret holds (nothing applied).
    pub kafka_identity_checks: Counter,
    /// 1 while this replica leads (or runs without leader election), 0 while it stands by.
    pub leader: Gauge,
    /// DELETEs of children the spec no longer wants, by kind.
    pub child_deletions: Family<KindLabels, Counter>,
    /// Server-side applies sent of Deployments, Services, ServiceAccounts and PDBs, by kind.
    pub child_applies: Family<KindLabels, Counter>,
    /// Their applies skipped: the child was as this replica last applied it (`controller::applied`).
    pub child_applies_skipped: Family<KindLabels, Counter>,
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
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "condition",
            "1 for each status condition of each OrderSystem, labelled with its type, status and reason",
            conditions.clone(),
        );
        let child_deletions = Family::<KindLabels, Counter>::default();
        registry.register(
            "child_deletions",
            "DELETE requests for children the spec no longer wants (PDBs, Ingresses, HTTPRoutes, NetworkPolicies), by \
             kind; one this replica already deleted is not asked again until it was applied",
            child_deletions.clone(),
        );
        let child_applies = Family::<KindLabels, Counter>::default();
        registry.register(
            "child_applies",
            "Server-side applies sent for Deployments, Services, ServiceAccounts and PodDisruptionBudgets, by kind",
            child_applies.clone(),
        );
        let child_applies_skipped = Family::<KindLabels, Counter>::default();
        registry.register(
            "child_applies_skipped",
            "Applies not sent, by kind: the child was as this replica last applied it and untouched since",
            child_applies_skipped.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (it holds the lease, or leader election is off), 0 on standby",
            leader.clone(),
        );
        Self {
            reconciles,
            conditions,
            written_conditions: Mutex::default(),
            consumer_lag,
            failures,
            duration,
            kafka_identity_changes,
            kafka_identity_checks,
            leader,
            child_deletions,
            child_applies,
            child_applies_skipped,
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

    /// Records the conditions of one system's status as written, replacing those written before.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[Condition]) {
        let now: Vec<ConditionLabels> = conditions
            .iter()
            .map(|c| ConditionLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
                r#type: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
            })
            .collect();
        let mut written = self
            .written_conditions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.to_string(), name.to_string());
        for old in written.remove(&key).unwrap_or_default() {
            if !now.contains(&old) {
                self.conditions.remove(&old);
            }
        }
        for labels in &now {
            self.conditions.get_or_create(labels).set(1);
        }
        written.insert(key, now);
    }

    /// Forgets the lag and the conditions of a deleted system.
    pub fn forget(&self, namespace: &str, name: &str) {
        for service in ["invoicing", "shipping"] {
            self.consumer_lag.remove(&lag_labels(namespace, name, service));
        }
        self.set_conditions(namespace, name, &[]);
        self.written_conditions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(namespace.to_string(), name.to_string()));
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

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        }
    }

    fn condition_lines(metrics: &Metrics) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("ordersystem_operator_condition{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_changed_condition_replaces_its_sample_and_a_forgotten_system_has_none() {
        let metrics = Metrics::default();
        metrics.set_conditions("shop", "a", &[condition("Ready", "False", "Progressing")]);
        metrics.set_conditions("shop", "b", &[condition("Ready", "True", "Ready")]);
        metrics.set_conditions(
            "shop",
            "a",
            &[
                condition("Ready", "True", "Ready"),
                condition("Degraded", "True", "ConsumerLagGrowing"),
            ],
        );
        let lines = condition_lines(&metrics);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines.iter().any(|l| l
                .contains(r#"name="a",type="Degraded",status="True",reason="ConsumerLagGrowing""#)
                && l.ends_with(" 1")),
            "{lines:#?}"
        );
        assert!(!lines.iter().any(|l| l.contains("Progressing")), "{lines:#?}");
        metrics.forget("shop", "a");
        let lines = condition_lines(&metrics);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains(r#"name="b""#), "{lines:#?}");
    }
}
