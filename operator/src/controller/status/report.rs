//! The input of `status::compute`: everything one reconcile learned, gathered in one place from the
//! plan, what was observed and what the writers did. Each failure arrives here as a typed error and
//! leaves as a reason and a sentence.

use super::super::apply::{self, DeploymentState};
use super::super::autoscale::Decision;
use super::super::decide::Plan;
use super::super::durability::{self, Durability};
use super::super::ensure::{Outcome, TopicFailure};
use super::super::error::describe_error;
use super::super::kafka::{self, TopicObserved};
use super::super::observe::{KafkaFailure, World};
use super::super::postgres::{self, PostgresObserved};
use super::super::rotation::{self, RotationReport};
use super::super::{compaction, lag};
use crate::conditions::Reason;
use crate::crd::{ConsumerLagStatus, OrderSystem};
use crate::names::Service;

/// A step that failed: the condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn kafka(failure: &KafkaFailure) -> Self {
        let reason = match (&failure.connection, &failure.error) {
            (Some(connection), _) => connection.kind.reason(),
            (None, kafka::Error::ServiceCredentialsMissing { .. }) => Reason::KafkaCredentialsMissing,
            (None, _) => Reason::KafkaUnavailable,
        };
        Self::new(reason, failure.describe())
    }

    pub fn postgres(error: &postgres::Error) -> Self {
        let reason = if error.is_tls() {
            Reason::PostgresTlsFailed
        } else {
            Reason::PostgresUnavailable
        };
        Self::new(reason, describe_error(error))
    }

    fn rotation(error: &rotation::Error) -> Self {
        Self::new(Reason::PostgresUnavailable, describe_error(error))
    }
}

/// Everything one reconcile learned; the input of `compute`.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub paused: bool,
    /// The spec is invalid (message): nothing else was looked at.
    pub invalid: Option<String>,
    /// Another resource claims the same topic.
    pub conflict: Option<String>,
    pub topic: Option<TopicObserved>,
    pub topic_error: Option<Failure>,
    pub postgres: Option<PostgresObserved>,
    pub postgres_error: Option<Failure>,
    pub apply_error: Option<String>,
    pub deployments: Vec<DeploymentState>,
    /// The services whose Deployment this reconcile applied: their pod template has the image the plan
    /// decided. Any other Deployment's image is as found, which may be a hand edit.
    pub applied: Vec<Service>,
    pub waiting: Vec<(Service, Reason)>,
    /// Desired replicas and image per service, from the spec (autoscaled: as decided).
    pub desired: Vec<(Service, i32, String)>,
    /// The decisions for the autoscaled consumers.
    pub scaling: Vec<Decision>,
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
    /// `DurabilityReduced`, from `durability::assess`, when the topic's replicas were looked at.
    pub durability: Option<Durability>,
}

impl Report {
    /// The autoscaling decisions that changed a running Deployment's replicas in this reconcile: decided
    /// and applied (not while paused, nor when the apply failed).
    pub fn scaled(&self) -> impl Iterator<Item = &Decision> {
        self.scaling
            .iter()
            .filter(|d| d.scales() && self.applied.contains(&d.service))
    }

    /// Whether the topic has fewer in-sync replicas than the spec asks for, as last looked at.
    pub fn durability_reduced(&self) -> bool {
        self.durability.as_ref().is_some_and(|d| d.reduced)
    }

    /// The report of a spec that did not validate.
    pub fn invalid(os: &OrderSystem, message: String) -> Self {
        Self {
            invalid: Some(message),
            paused: os.spec.paused,
            ..Self::default()
        }
    }

    /// The report of a reconcile that got past validation.
    pub fn gather(os: &OrderSystem, plan: &Plan, world: &World, outcome: Option<&Outcome>) -> Self {
        let spec = &plan.spec;
        let mut report = Self {
            paused: spec.paused,
            conflict: world.conflict.clone(),
            desired: spec
                .services
                .iter()
                .map(|p| (p.service, p.replicas, p.image.clone()))
                .collect(),
            scaling: plan.scaling.clone(),
            partitions_rejected: plan.gate.rejected_message(),
            draining: plan.gate.progress_message(),
            compaction: compaction::warning(&spec.topic),
            deployments: world.deployment_states.clone(),
            ..Self::default()
        };
        report.observed(os, plan, world);
        if let Some(outcome) = outcome {
            report.outcome(plan, outcome);
        }
        report
    }

    /// What the reads found: their failures, and the consumer lag.
    fn observed(&mut self, os: &OrderSystem, plan: &Plan, world: &World) {
        match (&world.kafka, &world.kafka_secrets) {
            (Some(Err(failure)), _) => self.topic_error = Some(Failure::kafka(failure)),
            (_, Some(Err(error))) => {
                self.topic_error = Some(Failure::new(Reason::KafkaUnavailable, describe_error(error)));
            }
            _ => {}
        }
        match (&world.postgres_admin, &world.database_secrets) {
            (Some(Err(error)), _) | (_, Some(Err(error))) => {
                self.postgres_error = Some(Failure::postgres(error))
            }
            _ => {}
        }
        match world.lag() {
            Some(Ok(lags)) => {
                let previous = os.status.as_ref().and_then(|s| s.consumer_lag.as_ref());
                let groups = plan.spec.consumer_groups();
                let lag = lag::status(previous, lags, &groups, &os.spec.consumer_lag);
                self.lag_growing = lag::growing_message(&lag, &os.spec.consumer_lag);
                self.lag = Some(lag);
            }
            // The topic itself is fine: the last observed lag stays in status.
            Some(Err(error)) => self.lag_error = Some(describe_error(error)),
            None => {}
        }
        if let Err(error) = &world.deployments {
            self.apply_error = Some(describe_error(error));
        }
    }

    /// What the writers did.
    fn outcome(&mut self, plan: &Plan, outcome: &Outcome) {
        match &outcome.topic {
            Some(Ok(topic)) => {
                self.durability = topic.replication.as_ref().map(|replication| {
                    durability::assess(&plan.topic.name, plan.topic.replication_factor, replication)
                });
                self.topic = Some(topic.clone());
            }
            Some(Err(TopicFailure::Kafka(failure))) => self.topic_error = Some(Failure::kafka(failure)),
            Some(Err(TopicFailure::Undecided(message))) => {
                let message = format!("cannot tell whether partitions may be added: {message}");
                self.topic_error = Some(Failure::new(Reason::KafkaUnavailable, message));
            }
            Some(Err(TopicFailure::Unconfirmed(message))) => {
                let message = format!("the topic is missing and is not created yet: {message}");
                self.topic_error = Some(Failure::new(Reason::NotObserved, message));
            }
            None => {}
        }
        match &outcome.postgres {
            Some(Ok(pg)) => self.postgres = Some(pg.clone()),
            Some(Err(error)) => self.postgres_error = Some(Failure::postgres(error)),
            None => {}
        }
        match &outcome.rotation {
            Some(Ok(rotation)) => {
                if let Some(pg) = self.postgres.as_mut() {
                    rotation.record_logins(&mut pg.schemas);
                }
                self.rotation = rotation.clone();
            }
            Some(Err(error)) => self.postgres_error = Some(Failure::rotation(error)),
            None => {}
        }
        self.waiting = outcome.desired.waiting.clone();
        match &outcome.applied {
            Some(Ok(applied)) => {
                let fresh = apply::states(&plan.spec, applied);
                self.applied = fresh.iter().map(|f| f.service).collect();
                self.deployments
                    .retain(|d| !fresh.iter().any(|f| f.service == d.service));
                self.deployments.extend(fresh);
                self.deployments.sort_by_key(|d| d.service);
            }
            Some(Err(error)) => self.apply_error = Some(describe_error(error)),
            None => {}
        }
    }
}
