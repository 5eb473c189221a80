//! drain: ordering-safe partition increases. Adding partitions re-maps keys, so an order whose earlier
//! events still wait unread on its old partition could have its next event read first from the new one.
//! `partitionIncrease: Drain` closes that window: it scales the order service (the only producer; its
//! outbox relay runs in the same pods) to zero, waits until no order pod is left, waits until invoicing
//! and shipping have read everything (lag 0), and only then adds the partitions; the next reconcile
//! scales order back. Outbox rows written before the stop are published after it, all with the new
//! mapping, after every earlier event was read. `Reject` refuses an increase and says so.
//!
//! Nothing here is remembered between reconciles, and nothing here reads or writes: every step is
//! decided again from what `observe` found in Kafka and the API server, so a restart of the operator
//! mid-drain carries on where it was.

use std::collections::BTreeMap;

use super::error::describe_error;
use super::lag;
use super::observe::World;
use super::validate::{ValidSpec, ValidTopic};
use crate::crd::{OrderSystem, PartitionIncrease};
use crate::names::Service;

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

/// Decides the gate for `spec` from what `world` holds: the topic, the order pods and the consumer lag.
pub fn gate(os: &OrderSystem, spec: &ValidSpec, world: &World) -> Gate {
    let policy = os.spec.kafka.topic.partition_increase;
    // In conflict nothing is written, so nothing is held either.
    let (PartitionIncrease::Drain | PartitionIncrease::Reject, false, Some(kafka)) =
        (policy, spec.paused, &world.kafka)
    else {
        return Gate::Open;
    };
    let seen = match kafka {
        Ok(seen) => seen,
        Err(failure) => return Gate::Unknown(describe_error(&failure.error)),
    };
    let Some(topic) = &seen.topic else {
        return Gate::Open;
    };
    let (current, wanted) = (topic.partitions, spec.topic.partitions);
    if current >= wanted {
        return Gate::Open;
    }
    if policy == PartitionIncrease::Reject {
        return Gate::Rejected {
            current,
            spec: wanted,
        };
    }
    match drain_step(world.order_pods.as_ref(), seen.lag.as_ref()) {
        Ok(step) => Gate::Draining {
            current,
            spec: wanted,
            step,
        },
        Err(message) => Gate::Unknown(message),
    }
}

/// The drain's next step: intake stops first, then the consumers read everything.
fn drain_step(
    order_pods: Option<&Result<usize, kube::Error>>,
    lag: Option<&Result<BTreeMap<Service, i64>, lag::Error>>,
) -> Result<Step, String> {
    match order_pods {
        Some(Ok(0)) => {}
        Some(Ok(pods)) => return Ok(Step::StoppingIntake { pods: *pods }),
        Some(Err(error)) => return Err(describe_error(error)),
        None => return Err("the order pods were not looked at".into()),
    }
    let lags = match lag {
        Some(Ok(lags)) => lags,
        Some(Err(error)) => return Err(describe_error(error)),
        None => return Err("the consumer lag was not looked at".into()),
    };
    let lag_of = |service| lags.get(&service).copied().unwrap_or_default();
    let (invoicing, shipping) = (lag_of(Service::Invoicing), lag_of(Service::Shipping));
    Ok(if invoicing == 0 && shipping == 0 {
        Step::Drained
    } else {
        Step::WaitingForConsumers { invoicing, shipping }
    })
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

    /// A world with the topic at `current` partitions, `pods` order pods (when looked at) and the
    /// consumers' lag (when read); the spec asks for 3 (MINIMAL) or what `yaml` says.
    fn world(current: i32, pods: Option<usize>, lag: Option<(i64, i64)>) -> World {
        let admin = crate::controller::kafka::KafkaClients::default()
            .admin("127.0.0.1:1")
            .expect("an admin client needs no broker to exist");
        let description = ordersystem_kafka_admin::TopicDescription {
            topic_id: "id".into(),
            partitions: current,
            replication_factor: 1,
        };
        let lags = lag.map(|(invoicing, shipping)| {
            Ok(BTreeMap::from([
                (Service::Invoicing, invoicing),
                (Service::Shipping, shipping),
            ]))
        });
        World {
            conflict: None,
            kafka: Some(Ok(crate::controller::observe::KafkaSeen {
                admin,
                security: crate::controller::kafka::ClientSecurity::plaintext(),
                cluster_id: "cluster".into(),
                claim: None,
                topic: Some(description),
                lag: lags,
            })),
            recorded_topic_id: Ok(None),
            order_pods: pods.map(Ok),
            deployments: Ok(Vec::new()),
            deployment_states: Vec::new(),
            postgres_admin: None,
            database_secrets: None,
            kafka_secrets: None,
        }
    }

    fn decided(policy: &str, world: &World) -> Gate {
        use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
        let yaml = MINIMAL.replace(
            "partitions: 3,",
            &format!("partitions: 3, partitionIncrease: {policy},"),
        );
        let os = os_from_yaml(&yaml);
        let spec = crate::controller::validate::validate(&os).expect("valid");
        gate(&os, &spec, world)
    }

    #[test]
    fn the_gate_is_decided_from_what_was_observed_alone() {
        assert_eq!(decided("Immediate", &world(2, None, None)), Gate::Open);
        assert_eq!(
            decided("Drain", &world(3, None, None)),
            Gate::Open,
            "nothing to add"
        );
        assert_eq!(
            decided("Reject", &world(2, None, None)),
            Gate::Rejected { current: 2, spec: 3 }
        );
        let draining = |step| Gate::Draining {
            current: 2,
            spec: 3,
            step,
        };
        assert_eq!(
            decided("Drain", &world(2, Some(1), Some((0, 0)))),
            draining(Step::StoppingIntake { pods: 1 })
        );
        assert_eq!(
            decided("Drain", &world(2, Some(0), Some((4, 0)))),
            draining(Step::WaitingForConsumers {
                invoicing: 4,
                shipping: 0
            })
        );
        assert_eq!(
            decided("Drain", &world(2, Some(0), Some((0, 0)))),
            draining(Step::Drained)
        );
        // What could not be looked at holds the topic as it is.
        assert!(matches!(
            decided("Drain", &world(2, Some(0), None)),
            Gate::Unknown(message) if message.contains("lag")
        ));
    }
}
