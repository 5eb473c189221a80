//! status: turns what the pipeline observed into `OrderSystemStatus` (pure `compute`) and writes it only
//! when its content changed (`patch`), so the operator never wakes itself in a loop. Reports what exists,
//! not what was asked for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::kafka::TopicState;
use crate::conditions::Reason;
use crate::crd::{AutoscalingStatus, OrderSystem, OrderSystemStatus, ServiceStatus, ServicesStatus};
use crate::names::{self, Service};

mod report;

pub use crate::conditions::{
    DATABASE_READY, DEGRADED, DURABILITY_REDUCED, PAUSED, PROGRESSING, READY, SERVICES_AVAILABLE, TOPIC_READY,
};
pub use report::{Failure, Report};

/// One condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Verdict {
    status: bool,
    reason: Reason,
    message: String,
}

impl Verdict {
    fn new(status: bool, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }

    /// The condition of a step that failed.
    fn failed(failure: &Failure) -> Self {
        Self::new(false, failure.reason, failure.message.clone())
    }
}

/// The status for `report`, keeping each condition's `lastTransitionTime` while its status is unchanged.
/// Long on purpose: the eight conditions in the order they are listed, then the facts.
pub fn compute(os: &OrderSystem, report: &Report, now: Time) -> OrderSystemStatus {
    let previous = os.status.clone().unwrap_or_default();
    let generation = os.metadata.generation;
    let topic = topic_verdict(report);
    let database = database_verdict(report);
    let services = services_verdict(report);
    let progressing = progressing_verdict(report);
    let degraded = degraded_verdict(report);
    let durability = durability_verdict(report, &previous.conditions);
    let ready = ready_verdict(report, &topic, &database, &services);
    let paused = if report.paused {
        Verdict::new(
            true,
            Reason::Paused,
            "spec.paused is true: nothing is changed until it is false".to_string(),
        )
    } else {
        Verdict::new(false, Reason::Reconciling, "changes are applied".to_string())
    };
    let verdicts = [
        (READY, ready),
        (TOPIC_READY, topic),
        (DATABASE_READY, database),
        (SERVICES_AVAILABLE, services),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
        (DURABILITY_REDUCED, durability),
        (PAUSED, paused),
    ];
    let conditions = verdicts
        .into_iter()
        .map(
            |(
                type_,
                Verdict {
                    status,
                    reason,
                    message,
                },
            )| {
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
                    reason: reason.as_str().to_string(),
                    status,
                    type_: type_.to_string(),
                }
            },
        )
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
        // Kept while the spec is invalid: it records the images the services were deployed with.
        services: services_status(report, previous.services.as_ref(), &now).or(previous.services),
        consumer_lag: report.lag.clone().or(previous.consumer_lag),
    }
}

/// Long on purpose: one arm per topic state, each with its sentence.
fn topic_verdict(report: &Report) -> Verdict {
    if let Some(failure) = &report.topic_error {
        return Verdict::failed(failure);
    }
    let Some(topic) = &report.topic else {
        return Verdict::new(false, Reason::NotObserved, "the topic was not checked");
    };
    if let Some(message) = &report.partitions_rejected
        && topic.state == TopicState::Ready
    {
        return Verdict::new(false, Reason::PartitionIncreaseRejected, message.clone());
    }
    match &topic.state {
        TopicState::Ready => Verdict::new(
            true,
            Reason::TopicReady,
            "the topic exists with the spec's partitions and configs",
        ),
        TopicState::Deleted { topic_id } => Verdict::new(
            false,
            Reason::TopicDeleted,
            format!(
                "the topic (id {topic_id}) was deleted; it is not recreated under the consumers without \
                 the annotation {}={topic_id}",
                names::RECREATE_TOPIC_ANNOTATION
            ),
        ),
        TopicState::IdChanged { known, actual } => Verdict::new(
            false,
            Reason::TopicIdChanged,
            format!(
                "the topic was recreated by someone else (id {known} became {actual}); it is left alone until \
                 the annotation {}={known} accepts it",
                names::RECREATE_TOPIC_ANNOTATION
            ),
        ),
        TopicState::Missing => Verdict::new(
            false,
            Reason::Missing,
            "the topic does not exist (paused: not created)",
        ),
        TopicState::MorePartitionsThanSpec { spec, actual } => Verdict::new(
            false,
            Reason::NotSupported,
            format!(
                "the topic has {actual} partitions, the spec asks for {spec}; Kafka cannot remove partitions"
            ),
        ),
        TopicState::ReplicationFactorMismatch { spec, actual } => Verdict::new(
            false,
            Reason::ReplicationFactorMismatch,
            format!(
                "the topic has replication factor {actual}, the spec asks for {spec}; reassignment is not supported"
            ),
        ),
        TopicState::ReplicationFactorTooLarge { spec, brokers } => Verdict::new(
            false,
            Reason::ReplicationFactorTooLarge,
            format!("replication factor {spec} needs {spec} brokers, the cluster has {brokers}"),
        ),
    }
}

fn database_verdict(report: &Report) -> Verdict {
    if let Some(failure) = &report.postgres_error {
        return Verdict::failed(failure);
    }
    let Some(pg) = &report.postgres else {
        return Verdict::new(false, Reason::NotObserved, "the database was not checked");
    };
    if !pg.conflicts.is_empty() {
        return Verdict::new(false, Reason::Conflict, pg.conflicts.join("; "));
    }
    if pg.ready.len() == Service::ALL.len() {
        Verdict::new(
            true,
            Reason::SchemasReady,
            "every service has its own schema and role; isolation verified",
        )
    } else {
        let missing: Vec<_> = Service::ALL
            .iter()
            .filter(|s| !pg.ready.contains(s))
            .map(|s| s.as_str())
            .collect();
        Verdict::new(
            false,
            Reason::SchemasNotReady,
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
        Verdict::new(
            true,
            Reason::AllAvailable,
            "every service has its desired replicas ready",
        )
    } else {
        Verdict::new(false, Reason::Unavailable, unavailable.join("; "))
    }
}

fn progressing_verdict(report: &Report) -> Verdict {
    if let Some(message) = &report.draining {
        return Verdict::new(true, Reason::DrainingForPartitionIncrease, message.clone());
    }
    if !report.rotation.in_progress.is_empty() {
        return Verdict::new(
            true,
            Reason::RotatingCredentials,
            report.rotation.in_progress.join("; "),
        );
    }
    if let Some((service, reason)) = report.waiting.first() {
        return Verdict::new(
            true,
            *reason,
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
        Verdict::new(
            false,
            Reason::RolloutComplete,
            "every Deployment runs its latest template",
        )
    } else {
        Verdict::new(
            true,
            Reason::RollingOut,
            format!("rolling out: {}", rolling.join(", ")),
        )
    }
}

fn degraded_verdict(report: &Report) -> Verdict {
    if let Some(error) = report
        .apply_error
        .as_ref()
        .or(report.topic_error.as_ref().map(|f| &f.message))
        .or(report.postgres_error.as_ref().map(|f| &f.message))
        .or(report.lag_error.as_ref())
    {
        return Verdict::new(true, Reason::TransientError, error.clone());
    }
    match report.topic.as_ref().map(|t| &t.state) {
        Some(TopicState::MorePartitionsThanSpec { .. }) => {
            return Verdict::new(
                true,
                Reason::NotSupported,
                "the topic has more partitions than the spec",
            );
        }
        // The identity guard: the topic's history is gone; the consumers wait for a decision.
        Some(TopicState::Deleted { topic_id }) => {
            return Verdict::new(
                true,
                Reason::TopicMissing,
                format!(
                    "the topic (id {topic_id}) disappeared under the running system; annotate \
                     {}={topic_id} to create it anew, empty",
                    names::RECREATE_TOPIC_ANNOTATION
                ),
            );
        }
        Some(TopicState::IdChanged { known, actual }) => {
            return Verdict::new(
                true,
                Reason::TopicRecreated,
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
        return Verdict::new(true, Reason::ConsumersExceedPartitions, message);
    }
    if let Some(message) = &report.lag_growing {
        return Verdict::new(true, Reason::ConsumerLagGrowing, message.clone());
    }
    if let Some(message) = &report.rotation.invalid_request {
        return Verdict::new(true, Reason::InvalidRotationRequest, message.clone());
    }
    if let Some(message) = &report.compaction {
        return Verdict::new(true, Reason::CompactionLosesHistory, message.clone());
    }
    Verdict::new(false, Reason::AsExpected, "no problems found")
}

/// `DurabilityReduced` from this reconcile's look at the topic's replicas. Without one (Kafka could not be
/// asked, the topic is missing) the last verdict stands: nothing shows the replicas recovered.
fn durability_verdict(report: &Report, previous: &[Condition]) -> Verdict {
    if let Some(durability) = &report.durability {
        return Verdict::new(durability.reduced, durability.reason, durability.message.clone());
    }
    let last = previous.iter().find(|c| c.type_ == DURABILITY_REDUCED);
    match last.and_then(|c| Some((c, Reason::ALL.into_iter().find(|r| r.as_str() == c.reason)?))) {
        Some((condition, reason)) => {
            Verdict::new(condition.status == "True", reason, condition.message.clone())
        }
        None => Verdict::new(
            false,
            Reason::NotObserved,
            "the topic's replicas were not checked",
        ),
    }
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
        return Verdict::new(false, Reason::InvalidSpec, message.clone());
    }
    if let Some(message) = &report.conflict {
        return Verdict::new(false, Reason::Conflict, message.clone());
    }
    if database.reason == Reason::Conflict {
        return Verdict::new(false, Reason::Conflict, database.message.clone());
    }
    for (verdict, reason) in [
        (topic, Reason::TopicNotReady),
        (database, Reason::DatabaseNotReady),
        (services, Reason::ServicesUnavailable),
    ] {
        if !verdict.status {
            return Verdict::new(false, reason, verdict.message.clone());
        }
    }
    Verdict::new(true, Reason::Ready, "topic, schemas and services are ready")
}

/// Replicas as the Deployments report them. The image is the record `validate` keeps a service on: the
/// one this reconcile applied; else (paused, in conflict, the apply failed, the service waits for its
/// first rollout) the one recorded before, so a hand edit the operator has not yet undone is never
/// taken for the service's image; else the one found, or the one planned.
fn services_status(report: &Report, previous: Option<&ServicesStatus>, now: &Time) -> Option<ServicesStatus> {
    let one = |service: Service| {
        let (_, desired, planned) = report.desired.iter().find(|(s, ..)| *s == service)?.clone();
        let state = report.deployments.iter().find(|d| d.service == service);
        let ready = state.map_or(0, |d| d.ready);
        let recorded = previous
            .map(|p| &p.of(service).image)
            .filter(|image| !image.is_empty());
        let image = match (state, recorded) {
            (Some(state), _) if report.applied.contains(&service) => state.image.clone(),
            (_, Some(recorded)) => recorded.clone(),
            (Some(state), None) => state.image.clone(),
            (None, None) => planned,
        };
        Some(ServiceStatus {
            desired,
            ready,
            image,
            replicas: format!("{ready}/{desired}"),
            autoscaling: autoscaling_status(report, service, previous, now),
        })
    };
    Some(ServicesStatus {
        order: one(Service::Order)?,
        invoicing: one(Service::Invoicing)?,
        shipping: one(Service::Shipping)?,
    })
}

/// The last scaling decision of an autoscaled `service`. `lastScaleTime` moves only when this reconcile
/// changed a running Deployment's replicas, `lastBusyTime` only when this look's lag asked for every pod
/// running; otherwise the recorded ones are kept, so the cooldown counts from real events.
fn autoscaling_status(
    report: &Report,
    service: Service,
    previous: Option<&ServicesStatus>,
    now: &Time,
) -> Option<AutoscalingStatus> {
    let decision = report.scaling.iter().find(|d| d.service == service)?;
    let recorded = previous
        .and_then(|p| p.of(service).autoscaling.as_ref())
        .filter(|a| a.mode == decision.mode);
    let scaled = report.scaled().any(|d| d.service == service);
    let last_scale_time = if scaled {
        Some(now.clone())
    } else {
        recorded.and_then(|a| a.last_scale_time.clone())
    };
    let last_busy_time = if decision.busy {
        Some(now.clone())
    } else {
        recorded.and_then(|a| a.last_busy_time.clone())
    };
    Some(AutoscalingStatus {
        mode: decision.mode,
        current_replicas: decision.current.unwrap_or(0),
        desired_replicas: decision.desired,
        last_scale_time,
        last_busy_time,
        reason: decision.reason.as_str().to_string(),
        message: decision.message.clone(),
    })
}

/// Writes `status` when it differs from what the object has; returns whether it wrote.
pub async fn patch(
    client: &kube::Client,
    os: &OrderSystem,
    status: OrderSystemStatus,
) -> Result<bool, kube::Error> {
    if os.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &os.namespace().unwrap_or_default());
    // With the version it was computed from: the API server refuses it (409) if the object changed since.
    let body = json!({
        "apiVersion": "ordersystem.io/v1alpha1",
        "kind": "OrderSystem",
        "metadata": {"resourceVersion": os.resource_version()},
        "status": status,
    });
    api.patch_status(
        &os.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| true)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "messages_tests.rs"]
mod messages_tests;
