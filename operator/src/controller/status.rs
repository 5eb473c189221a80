//! status: turns what the pipeline observed into `OrderSystemStatus` (pure `compute`) and writes it only
//! when its content changed (`patch`), so the operator never wakes itself in a loop. Reports what exists,
//! not what was asked for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::apply::DeploymentState;
use super::kafka::{TopicObserved, TopicState};
use super::postgres::PostgresObserved;
use super::rotation::RotationReport;
use crate::crd::{ConsumerLagStatus, OrderSystem, OrderSystemStatus, ServiceStatus, ServicesStatus};
use crate::names::{self, Service};

pub const READY: &str = "Ready";
pub const TOPIC_READY: &str = "TopicReady";
pub const DATABASE_READY: &str = "DatabaseReady";
pub const SERVICES_AVAILABLE: &str = "ServicesAvailable";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "Paused";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to patch the status of {name}")]
    Patch {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Everything one reconcile learned; the input of `compute`.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub paused: bool,
    /// The spec is invalid (message): nothing else was looked at.
    pub invalid: Option<String>,
    /// Another resource claims the same topic or schemas.
    pub conflict: Option<String>,
    pub topic: Option<TopicObserved>,
    pub topic_error: Option<String>,
    /// Condition reason for `topic_error` when it has a more precise one than `KafkaUnavailable`
    /// (a failed TLS handshake or SASL login).
    pub topic_error_reason: Option<&'static str>,
    pub postgres: Option<PostgresObserved>,
    pub postgres_error: Option<String>,
    /// Condition reason for `postgres_error` when more precise than `PostgresUnavailable` (TLS refused).
    pub postgres_error_reason: Option<&'static str>,
    pub apply_error: Option<String>,
    pub deployments: Vec<DeploymentState>,
    pub waiting: Vec<(Service, &'static str)>,
    /// Desired replicas per service, from the spec.
    pub desired: Vec<(Service, i32, String)>,
    /// Consumer-group lag, when it was observed.
    pub lag: Option<ConsumerLagStatus>,
    /// The lag could not be observed (message).
    pub lag_error: Option<String>,
    /// `Degraded reason=ConsumerLagGrowing` message, from `lag::growing_message`.
    pub lag_growing: Option<String>,
    /// A partition increase refused by `partitionIncrease: Reject` (message).
    pub partitions_rejected: Option<String>,
    /// A drain for a partition increase in progress (message).
    pub draining: Option<String>,
    /// Credential rotations under way, and a request naming no service.
    pub rotation: RotationReport,
    /// `Degraded reason=CompactionLosesHistory` message, from `compaction::warning`.
    pub compaction: Option<String>,
}

/// One condition: (status, reason, message).
type Verdict = (bool, &'static str, String);

/// The status for `report`, keeping each condition's `lastTransitionTime` while its status is unchanged.
pub fn compute(os: &OrderSystem, report: &Report, now: Time) -> OrderSystemStatus {
    let previous = os.status.clone().unwrap_or_default();
    let generation = os.metadata.generation;
    let topic = topic_verdict(report);
    let database = database_verdict(report);
    let services = services_verdict(report);
    let progressing = progressing_verdict(report);
    let degraded = degraded_verdict(report);
    let ready = ready_verdict(report, &topic, &database, &services);
    let paused = if report.paused {
        (
            true,
            "Paused",
            "spec.paused is true: nothing is changed until it is false".to_string(),
        )
    } else {
        (false, "Reconciling", "changes are applied".to_string())
    };
    let verdicts = [
        (READY, ready),
        (TOPIC_READY, topic),
        (DATABASE_READY, database),
        (SERVICES_AVAILABLE, services),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
        (PAUSED, paused),
    ];
    let conditions = verdicts
        .into_iter()
        .map(|(type_, (status, reason, message))| {
            let status = if status { "True" } else { "False" }.to_string();
            let unchanged = previous
                .conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status);
            Condition {
                last_transition_time: unchanged
                    .map_or_else(|| now.clone(), |c| c.last_transition_time.clone()),
                message,
                observed_generation: generation,
                reason: reason.to_string(),
                status,
                type_: type_.to_string(),
            }
        })
        .collect();
    let topic_status = report
        .topic
        .as_ref()
        .and_then(|t| t.status.clone())
        .or(previous.topic);
    let schemas = report
        .postgres
        .as_ref()
        .map_or(previous.schemas, |p| p.schemas.clone());
    OrderSystemStatus {
        observed_generation: generation,
        conditions,
        topic: topic_status,
        schemas,
        services: services_status(report),
        consumer_lag: report.lag.clone().or(previous.consumer_lag),
    }
}

fn topic_verdict(report: &Report) -> Verdict {
    if let Some(error) = &report.topic_error {
        let reason = report.topic_error_reason.unwrap_or("KafkaUnavailable");
        return (false, reason, error.clone());
    }
    let Some(topic) = &report.topic else {
        return (false, "NotObserved", "the topic was not checked".into());
    };
    if let Some(message) = &report.partitions_rejected
        && topic.state == TopicState::Ready
    {
        return (false, "PartitionIncreaseRejected", message.clone());
    }
    match &topic.state {
        TopicState::Ready => (
            true,
            "TopicReady",
            "the topic exists with the spec's partitions and configs".into(),
        ),
        TopicState::Deleted { topic_id } => (
            false,
            "TopicDeleted",
            format!(
                "the topic (id {topic_id}) was deleted; it is not recreated under the consumers without \
                 the annotation {}={topic_id}",
                names::RECREATE_TOPIC_ANNOTATION
            ),
        ),
        TopicState::IdChanged { known, actual } => (
            false,
            "TopicIdChanged",
            format!(
                "the topic was recreated by someone else (id {known} became {actual}); it is left alone until \
                 the annotation {}={known} accepts it",
                names::RECREATE_TOPIC_ANNOTATION
            ),
        ),
        TopicState::Missing => (
            false,
            "Missing",
            "the topic does not exist (paused: not created)".into(),
        ),
        TopicState::MorePartitionsThanSpec { spec, actual } => (
            false,
            "NotSupported",
            format!(
                "the topic has {actual} partitions, the spec asks for {spec}; Kafka cannot remove partitions"
            ),
        ),
        TopicState::ReplicationFactorMismatch { spec, actual } => (
            false,
            "ReplicationFactorMismatch",
            format!(
                "the topic has replication factor {actual}, the spec asks for {spec}; reassignment is not supported"
            ),
        ),
        TopicState::ReplicationFactorTooLarge { spec, brokers } => (
            false,
            "ReplicationFactorTooLarge",
            format!("replication factor {spec} needs {spec} brokers, the cluster has {brokers}"),
        ),
    }
}

fn database_verdict(report: &Report) -> Verdict {
    if let Some(error) = &report.postgres_error {
        let reason = report.postgres_error_reason.unwrap_or("PostgresUnavailable");
        return (false, reason, error.clone());
    }
    let Some(pg) = &report.postgres else {
        return (false, "NotObserved", "the database was not checked".into());
    };
    if !pg.conflicts.is_empty() {
        return (false, "Conflict", pg.conflicts.join("; "));
    }
    if pg.ready.len() == Service::ALL.len() {
        (
            true,
            "SchemasReady",
            "every service has its own schema and role; isolation verified".into(),
        )
    } else {
        let missing: Vec<_> = Service::ALL
            .iter()
            .filter(|s| !pg.ready.contains(s))
            .map(|s| s.as_str())
            .collect();
        (
            false,
            "SchemasNotReady",
            format!("not ready or not isolated: {}", missing.join(", ")),
        )
    }
}

fn services_verdict(report: &Report) -> Verdict {
    let unavailable: Vec<String> = report
        .desired
        .iter()
        .filter_map(|(service, desired, _)| {
            let state = report.deployments.iter().find(|d| d.service == *service);
            match state {
                Some(d) if d.available || *desired == 0 => None,
                Some(d) => Some(format!("{} {}/{} ready", service.as_str(), d.ready, desired)),
                None => Some(format!("{} not deployed", service.as_str())),
            }
        })
        .collect();
    if unavailable.is_empty() {
        (
            true,
            "AllAvailable",
            "every service has its desired replicas ready".into(),
        )
    } else {
        (false, "Unavailable", unavailable.join("; "))
    }
}

fn progressing_verdict(report: &Report) -> Verdict {
    if let Some(message) = &report.draining {
        return (true, "DrainingForPartitionIncrease", message.clone());
    }
    if !report.rotation.in_progress.is_empty() {
        return (
            true,
            "RotatingCredentials",
            report.rotation.in_progress.join("; "),
        );
    }
    if let Some((service, reason)) = report.waiting.first() {
        return (
            true,
            reason,
            format!("{} waits for its first rollout", service.as_str()),
        );
    }
    let rolling: Vec<_> = report
        .deployments
        .iter()
        .filter(|d| !d.rolled_out)
        .map(|d| d.service.as_str())
        .collect();
    if rolling.is_empty() {
        (
            false,
            "RolloutComplete",
            "every Deployment runs its latest template".into(),
        )
    } else {
        (true, "RollingOut", format!("rolling out: {}", rolling.join(", ")))
    }
}

fn degraded_verdict(report: &Report) -> Verdict {
    if let Some(error) = report
        .apply_error
        .as_ref()
        .or(report.topic_error.as_ref())
        .or(report.postgres_error.as_ref())
        .or(report.lag_error.as_ref())
    {
        return (true, "TransientError", error.clone());
    }
    match report.topic.as_ref().map(|t| &t.state) {
        Some(TopicState::MorePartitionsThanSpec { .. }) => {
            return (
                true,
                "NotSupported",
                "the topic has more partitions than the spec".into(),
            );
        }
        // The identity guard: the topic's history is gone; the consumers wait for a decision.
        Some(TopicState::Deleted { topic_id }) => {
            return (
                true,
                "TopicMissing",
                format!(
                    "the topic (id {topic_id}) disappeared under the running system; annotate \
                     {}={topic_id} to create it anew, empty",
                    names::RECREATE_TOPIC_ANNOTATION
                ),
            );
        }
        Some(TopicState::IdChanged { known, actual }) => {
            return (
                true,
                "TopicRecreated",
                format!(
                    "the topic was replaced (id {known} is now {actual}); the consumers' committed offsets \
                     belong to the old one. Annotate {}={known} to adopt the new topic",
                    names::RECREATE_TOPIC_ANNOTATION
                ),
            );
        }
        _ => {}
    }
    if let Some(message) = consumers_exceed_partitions(report) {
        return (true, "ConsumersExceedPartitions", message);
    }
    if let Some(message) = &report.lag_growing {
        return (true, "ConsumerLagGrowing", message.clone());
    }
    if let Some(message) = &report.rotation.invalid_request {
        return (true, "InvalidRotationRequest", message.clone());
    }
    if let Some(message) = &report.compaction {
        return (true, "CompactionLosesHistory", message.clone());
    }
    (false, "AsExpected", "no problems found".into())
}

/// A warning when invoicing or shipping has more replicas than the topic has partitions.
pub fn consumers_exceed_partitions(report: &Report) -> Option<String> {
    let partitions = report.topic.as_ref()?.status.as_ref()?.partitions;
    let idle: Vec<String> = report
        .desired
        .iter()
        .filter(|(service, replicas, _)| service.is_consumer() && *replicas > partitions)
        .map(|(service, replicas, _)| format!("{} has {replicas} replicas", service.as_str()))
        .collect();
    (!idle.is_empty()).then(|| {
        format!(
            "{} but the topic has {partitions} partitions: extra consumers stay idle",
            idle.join(" and ")
        )
    })
}

fn ready_verdict(report: &Report, topic: &Verdict, database: &Verdict, services: &Verdict) -> Verdict {
    if let Some(message) = &report.invalid {
        return (false, "InvalidSpec", message.clone());
    }
    if let Some(message) = &report.conflict {
        return (false, "Conflict", message.clone());
    }
    if database.1 == "Conflict" {
        return (false, "Conflict", database.2.clone());
    }
    for (verdict, reason) in [
        (topic, "TopicNotReady"),
        (database, "DatabaseNotReady"),
        (services, "ServicesUnavailable"),
    ] {
        if !verdict.0 {
            return (false, reason, verdict.2.clone());
        }
    }
    (true, "Ready", "topic, schemas and services are ready".into())
}

fn services_status(report: &Report) -> Option<ServicesStatus> {
    let one = |service: Service| {
        let (_, desired, image) = report.desired.iter().find(|(s, ..)| *s == service)?.clone();
        let state = report.deployments.iter().find(|d| d.service == service);
        let ready = state.map_or(0, |d| d.ready);
        Some(ServiceStatus {
            desired,
            ready,
            image: state.map_or(image, |d| d.image.clone()),
            replicas: format!("{ready}/{desired}"),
        })
    };
    Some(ServicesStatus {
        order: one(Service::Order)?,
        invoicing: one(Service::Invoicing)?,
        shipping: one(Service::Shipping)?,
    })
}

/// Writes `status` when it differs from what the object has; returns whether it wrote.
pub async fn patch(
    client: &kube::Client,
    os: &OrderSystem,
    status: OrderSystemStatus,
) -> Result<bool, Error> {
    if os.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &os.namespace().unwrap_or_default());
    let body = json!({"apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem", "status": status});
    api.patch_status(
        &os.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| true)
    .map_err(|source| Error::Patch {
        name: os.name_any(),
        source,
    })
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
