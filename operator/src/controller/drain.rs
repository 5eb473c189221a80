//! drain: ordering-safe partition increases. Adding partitions re-maps keys, so an order whose earlier
//! events still wait unread on its old partition could have its next event read first from the new one.
//! `partitionIncrease: Drain` closes that window: it scales the order service (the only producer; its
//! outbox relay runs in the same pods) to zero, waits until no order pod is left, waits until invoicing
//! and shipping have read everything (lag 0), and only then adds the partitions; the next reconcile
//! scales order back. Outbox rows written before the stop are published after it, all with the new
//! mapping, after every earlier event was read. `Reject` refuses an increase and says so.
//!
//! Nothing here is remembered between reconciles: every step is decided again from what Kafka and the
//! API server report, so a restart of the operator mid-drain carries on where it was.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::validate::{ValidSpec, ValidTopic};
use super::{Context, describe_error, kafka, lag};
use crate::crd::{OrderSystem, PartitionIncrease};
use crate::names::{self, Service};

/// Whether the spec's partition count may be applied now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Nothing to hold back: no increase pending, or `Immediate`.
    Open,
    /// `Reject`: the increase is refused.
    Rejected { current: i32, spec: i32 },
    /// `Drain` in progress.
    Draining { current: i32, spec: i32, step: Step },
    /// The drain state could not be read: the topic is not touched until it can.
    Unknown(String),
}

/// Where a drain stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Order is scaled to zero; this many order pods still exist.
    StoppingIntake { pods: usize },
    /// No order pod is left; the consumers still have this much to read.
    WaitingForConsumers { invoicing: i64, shipping: i64 },
    /// Everything was read: the partitions are added in this reconcile.
    Drained,
}

impl Gate {
    /// The topic as it may be applied now: while held, with the partitions it already has.
    pub fn topic(&self, topic: &ValidTopic) -> ValidTopic {
        let mut topic = topic.clone();
        match self {
            Self::Rejected { current, .. }
            | Self::Draining {
                current,
                step: Step::StoppingIntake { .. } | Step::WaitingForConsumers { .. },
                ..
            } => topic.partitions = *current,
            Self::Unknown(_) | Self::Open | Self::Draining { .. } => {}
        }
        topic
    }

    /// True while intake must stay stopped.
    pub fn holds_intake(&self) -> bool {
        matches!(self, Self::Draining { .. })
    }

    /// `Progressing` message of a drain.
    pub fn progress_message(&self) -> Option<String> {
        let Self::Draining { current, spec, step } = self else {
            return None;
        };
        let head = format!("partitions {current} -> {spec} (partitionIncrease Drain)");
        Some(match step {
            Step::StoppingIntake { pods } => {
                format!("{head}: intake stopped (order scaled to 0); waiting for {pods} order pod(s) to stop")
            }
            Step::WaitingForConsumers { invoicing, shipping } => format!(
                "{head}: intake stopped; waiting for the consumers to read everything (lag: invoicing \
                 {invoicing}, shipping {shipping})"
            ),
            Step::Drained => format!("{head}: drained; adding partitions, then intake resumes"),
        })
    }

    /// `TopicReady=False reason=PartitionIncreaseRejected` message.
    pub fn rejected_message(&self) -> Option<String> {
        let Self::Rejected { current, spec } = self else {
            return None;
        };
        Some(format!(
            "the spec asks for {spec} partitions, the topic has {current}; partitionIncrease is Reject, so none \
             are added (set partitionIncrease to Drain or Immediate to add them; partitions cannot be lowered)"
        ))
    }
}

/// Decides the gate for `spec` from the topic, the order pods and the consumer lag.
pub async fn gate(ctx: &Context, os: &OrderSystem, spec: &ValidSpec) -> Gate {
    let policy = os.spec.kafka.topic.partition_increase;
    if policy == PartitionIncrease::Immediate || spec.paused {
        return Gate::Open;
    }
    match decide(ctx, spec, policy).await {
        Ok(gate) => gate,
        Err(message) => Gate::Unknown(message),
    }
}

async fn decide(ctx: &Context, spec: &ValidSpec, policy: PartitionIncrease) -> Result<Gate, String> {
    let (admin, security) = super::backends::kafka_admin(ctx, spec)
        .await
        .map_err(|e| describe_error(&e))?;
    let Some(topic) = kafka::describe(&admin, &spec.topic.name)
        .await
        .map_err(|e| describe_error(&e))?
    else {
        return Ok(Gate::Open);
    };
    let (current, wanted) = (topic.partitions, spec.topic.partitions);
    if current >= wanted {
        return Ok(Gate::Open);
    }
    if policy == PartitionIncrease::Reject {
        return Ok(Gate::Rejected {
            current,
            spec: wanted,
        });
    }
    let draining = |step| Gate::Draining {
        current,
        spec: wanted,
        step,
    };
    let pods = order_pods(&ctx.client, spec)
        .await
        .map_err(|e| describe_error(&e))?;
    if pods > 0 {
        return Ok(draining(Step::StoppingIntake { pods }));
    }
    let groups: Vec<(Service, String)> = spec
        .services
        .iter()
        .filter_map(|plan| Some((plan.service, plan.group_id.clone()?)))
        .collect();
    let lags = lag::observe(
        &ctx.kafka,
        &spec.bootstrap_servers,
        &security,
        &spec.topic.name,
        current,
        groups,
    )
    .await
    .map_err(|e| describe_error(&e))?;
    let lag_of = |service| lags.get(&service).copied().unwrap_or_default();
    let (invoicing, shipping) = (lag_of(Service::Invoicing), lag_of(Service::Shipping));
    Ok(if invoicing == 0 && shipping == 0 {
        draining(Step::Drained)
    } else {
        draining(Step::WaitingForConsumers { invoicing, shipping })
    })
}

/// Order pods of this system, running or terminating: a terminating pod's relay may still publish.
async fn order_pods(client: &kube::Client, spec: &ValidSpec) -> Result<usize, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let selector = names::selector_labels(&spec.name, Service::Order)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .len())
}

/// The spec to build from: while a drain holds intake, the order service has no replicas.
pub fn hold_intake(mut spec: ValidSpec, gate: &Gate) -> ValidSpec {
    if gate.holds_intake() {
        for plan in &mut spec.services {
            if plan.service == Service::Order {
                plan.replicas = 0;
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(partitions: i32) -> ValidTopic {
        ValidTopic {
            name: "t".into(),
            partitions,
            replication_factor: None,
            configs: Default::default(),
        }
    }

    #[test]
    fn partitions_are_held_until_drained_and_never_added_when_rejected() {
        let draining = |step| Gate::Draining {
            current: 2,
            spec: 4,
            step,
        };
        assert_eq!(Gate::Open.topic(&topic(4)).partitions, 4);
        assert_eq!(
            Gate::Rejected { current: 2, spec: 4 }.topic(&topic(4)).partitions,
            2
        );
        assert_eq!(
            draining(Step::StoppingIntake { pods: 1 })
                .topic(&topic(4))
                .partitions,
            2
        );
        let waiting = draining(Step::WaitingForConsumers {
            invoicing: 3,
            shipping: 0,
        });
        assert_eq!(waiting.topic(&topic(4)).partitions, 2);
        assert!(
            waiting
                .progress_message()
                .unwrap()
                .contains("invoicing 3, shipping 0")
        );
        assert_eq!(draining(Step::Drained).topic(&topic(4)).partitions, 4);
        assert!(
            draining(Step::Drained).holds_intake(),
            "order resumes only once partitions exist"
        );
    }
}
