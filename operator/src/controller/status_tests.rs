use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::controller::apply::DeploymentState;
use crate::controller::kafka::security::{ConnectionFailure, FailureKind};
use crate::controller::kafka::{TopicObserved, TopicState};
use crate::controller::observe::KafkaFailure;
use crate::controller::postgres::{self, PostgresObserved};
use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
use crate::crd::TopicStatus;

fn time(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid timestamp"))
}

fn topic(state: TopicState, partitions: i32) -> TopicObserved {
    TopicObserved {
        state,
        status: Some(TopicStatus {
            name: "orders".into(),
            partitions,
            replication_factor: 1,
            ..Default::default()
        }),
        created: false,
        partitions_added: false,
        configs_changed: vec![],
        replication: None,
    }
}

fn healthy() -> Report {
    let deployment = |service, desired| DeploymentState {
        service,
        desired,
        ready: desired,
        available: true,
        image: "img".into(),
        rolled_out: true,
    };
    Report {
        topic: Some(topic(TopicState::Ready, 3)),
        postgres: Some(PostgresObserved {
            ready: Service::ALL.into_iter().collect(),
            ..Default::default()
        }),
        deployments: vec![
            deployment(Service::Order, 1),
            deployment(Service::Invoicing, 2),
            deployment(Service::Shipping, 1),
        ],
        desired: vec![
            (Service::Order, 1, "img".into()),
            (Service::Invoicing, 2, "img".into()),
            (Service::Shipping, 1, "img".into()),
        ],
        ..Default::default()
    }
}

fn get<'a>(status: &'a OrderSystemStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn everything_ready_makes_ready_true_with_printer_strings() {
    let status = compute(&os_from_yaml(MINIMAL), &healthy(), time(1));
    assert_eq!(get(&status, READY).status, "True");
    assert_eq!(get(&status, DEGRADED).status, "False");
    assert_eq!(
        status.services.as_ref().map(|s| s.invoicing.replicas.as_str()),
        Some("2/2")
    );
    assert_eq!(status.conditions.len(), 8);
}

#[test]
fn a_topic_larger_than_the_spec_is_not_supported() {
    let mut report = healthy();
    report.topic = Some(topic(
        TopicState::MorePartitionsThanSpec { spec: 3, actual: 5 },
        5,
    ));
    let status = compute(&os_from_yaml(MINIMAL), &report, time(1));
    assert_eq!(
        (
            get(&status, TOPIC_READY).status.as_str(),
            get(&status, TOPIC_READY).reason.as_str()
        ),
        ("False", "NotSupported")
    );
    assert_eq!(get(&status, READY).reason, "TopicNotReady");
}

#[test]
fn more_consumers_than_partitions_degrades() {
    let mut report = healthy();
    report.desired[2].1 = 4;
    let status = compute(&os_from_yaml(MINIMAL), &report, time(1));
    let degraded = get(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ConsumersExceedPartitions")
    );
    assert!(
        degraded.message.contains("shipping has 4 replicas"),
        "{}",
        degraded.message
    );
}

#[test]
fn transition_time_is_kept_while_a_condition_does_not_change() {
    let mut os = os_from_yaml(MINIMAL);
    let first = compute(&os, &healthy(), time(1));
    os.status = Some(first);
    let second = compute(&os, &healthy(), time(2));
    assert_eq!(get(&second, READY).last_transition_time, time(1));
    assert_eq!(
        os.status.as_ref(),
        Some(&second),
        "unchanged content: nothing to patch"
    );
    let mut failing = healthy();
    failing.postgres_error = Some(Failure::postgres(&postgres::Error::ConnectTimeout {
        host: "db".into(),
        port: 5432,
    }));
    let third = compute(&os, &failing, time(3));
    assert_eq!(get(&third, DATABASE_READY).last_transition_time, time(3));
    assert_eq!(get(&third, DATABASE_READY).reason, "PostgresUnavailable");
}

#[test]
fn invalid_and_conflict_win_over_everything_else() {
    let mut report = healthy();
    report.conflict = Some("topic claimed".into());
    assert_eq!(
        get(&compute(&os_from_yaml(MINIMAL), &report, time(1)), READY).reason,
        "Conflict"
    );
    report.invalid = Some("bad".into());
    assert_eq!(
        get(&compute(&os_from_yaml(MINIMAL), &report, time(1)), READY).reason,
        "InvalidSpec"
    );
}

fn reason<'a>(status: &'a OrderSystemStatus, type_: &str) -> (&'a str, &'a str) {
    let c = get(status, type_);
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn a_vanished_or_replaced_topic_degrades_with_the_annotation_to_set() {
    let mut report = healthy();
    report.topic = Some(TopicObserved {
        status: None,
        ..topic(
            TopicState::Deleted {
                topic_id: "old".into(),
            },
            3,
        )
    });
    let status = compute(&os_from_yaml(MINIMAL), &report, time(1));
    assert_eq!(reason(&status, DEGRADED), ("True", "TopicMissing"));
    assert!(
        get(&status, DEGRADED)
            .message
            .contains("ordersystem.io/recreate-topic=old")
    );
    report.topic = Some(TopicObserved {
        status: None,
        ..topic(
            TopicState::IdChanged {
                known: "old".into(),
                actual: "new".into(),
            },
            3,
        )
    });
    let status = compute(&os_from_yaml(MINIMAL), &report, time(1));
    assert_eq!(reason(&status, DEGRADED), ("True", "TopicRecreated"));
    assert_eq!(reason(&status, TOPIC_READY), ("False", "TopicIdChanged"));
}

#[test]
fn partition_gate_rotation_lag_and_compaction_show_in_their_conditions() {
    let os = os_from_yaml(MINIMAL);
    let mut report = healthy();
    report.partitions_rejected = Some("rejected".into());
    let status = compute(&os, &report, time(1));
    assert_eq!(
        reason(&status, TOPIC_READY),
        ("False", "PartitionIncreaseRejected")
    );
    assert_eq!(get(&status, READY).reason, "TopicNotReady");

    let mut report = healthy();
    report.draining = Some("draining".into());
    report.rotation.in_progress = vec!["rotating".into()];
    let status = compute(&os, &report, time(1));
    assert_eq!(
        reason(&status, PROGRESSING),
        ("True", "DrainingForPartitionIncrease")
    );
    report.draining = None;
    let status = compute(&os, &report, time(1));
    assert_eq!(reason(&status, PROGRESSING), ("True", "RotatingCredentials"));

    let mut report = healthy();
    report.compaction = Some("compaction".into());
    let status = compute(&os, &report, time(1));
    assert_eq!(reason(&status, DEGRADED), ("True", "CompactionLosesHistory"));
    report.lag_growing = Some("behind".into());
    let status = compute(&os, &report, time(1));
    assert_eq!(
        reason(&status, DEGRADED),
        ("True", "ConsumerLagGrowing"),
        "lag comes first"
    );
    assert_eq!(
        get(&status, READY).status,
        "True",
        "warnings do not make the system unready"
    );
}

#[test]
fn the_last_observed_lag_is_kept_when_this_reconcile_did_not_look() {
    let mut os = os_from_yaml(MINIMAL);
    let mut report = healthy();
    report.lag = Some(crate::crd::ConsumerLagStatus {
        total: 7,
        ..Default::default()
    });
    os.status = Some(compute(&os, &report, time(1)));
    let mut failed = healthy();
    failed.lag_error = Some("OffsetFetch timed out".into());
    let status = compute(&os, &failed, time(2));
    assert_eq!(status.consumer_lag.as_ref().map(|l| l.total), Some(7));
    assert_eq!(reason(&status, DEGRADED), ("True", "TransientError"));
    assert_eq!(
        reason(&status, TOPIC_READY),
        ("True", "TopicReady"),
        "the topic is fine"
    );
}

#[test]
fn a_failed_step_gives_its_own_reason_and_librdkafkas_account_first() {
    let refused = KafkaFailure {
        error: crate::controller::kafka::Error::DescribeTopic {
            topic: "orders".into(),
            source: ordersystem_kafka_admin::FfiError::Timeout {
                op: "DescribeTopics",
                timeout: std::time::Duration::from_secs(10),
            },
        },
        connection: Some(ConnectionFailure {
            kind: FailureKind::Tls,
            message: "certificate verify failed".into(),
        }),
    };
    let mut report = healthy();
    report.topic_error = Some(Failure::kafka(&refused));
    let status = compute(&os_from_yaml(MINIMAL), &report, time(1));
    let topic = get(&status, TOPIC_READY);
    assert_eq!(
        (topic.status.as_str(), topic.reason.as_str()),
        ("False", "KafkaTlsFailed")
    );
    assert!(
        topic
            .message
            .starts_with("certificate verify failed (then: failed to describe topic orders"),
        "{}",
        topic.message
    );
    assert_eq!(get(&status, READY).reason, "TopicNotReady");
    let unreached = KafkaFailure {
        connection: None,
        ..refused
    };
    assert_eq!(Failure::kafka(&unreached).reason, Reason::KafkaUnavailable);
}

/// The images `status` shows for order, invoicing and shipping.
fn shown_images(status: &OrderSystemStatus) -> [String; 3] {
    let services = status.services.as_ref().expect("services in status");
    [&services.order, &services.invoicing, &services.shipping].map(|s| s.image.clone())
}

/// `healthy()` whose Deployments were found with `found` and planned with `planned`.
fn with_images(found: &str, planned: &str) -> Report {
    let mut report = healthy();
    for state in &mut report.deployments {
        state.image = found.into();
    }
    for (_, _, image) in &mut report.desired {
        *image = planned.into();
    }
    report
}

#[test]
fn the_image_shown_is_the_applied_one_or_else_the_one_recorded_before() {
    let first = compute(&os_from_yaml(MINIMAL), &with_images("found", "planned"), time(1));
    assert_eq!(
        shown_images(&first),
        ["found", "found", "found"].map(String::from)
    );
    let mut os = os_from_yaml(MINIMAL);
    os.status = Some(first);
    // Not applied (paused, say), a Deployment edited by hand: the record stays, the edit is not taken.
    let later = compute(&os, &with_images("edited-by-hand", "planned"), time(2));
    assert_eq!(
        shown_images(&later),
        ["found", "found", "found"].map(String::from)
    );
    // Applied: what the operator wrote on the pod template.
    let mut applied = with_images("planned", "planned");
    applied.applied = vec![Service::Order, Service::Shipping];
    let later = compute(&os, &applied, time(2));
    assert_eq!(
        shown_images(&later),
        ["planned", "found", "planned"].map(String::from)
    );
    // A service not deployed yet, with nothing recorded: the planned image.
    let mut waiting = with_images("found", "planned");
    waiting.deployments.retain(|d| d.service != Service::Order);
    let status = compute(&os_from_yaml(MINIMAL), &waiting, time(1));
    assert_eq!(shown_images(&status)[0], "planned");
}

#[test]
fn an_invalid_spec_keeps_the_services_and_the_images_they_were_deployed_with() {
    let mut os = os_from_yaml(MINIMAL);
    os.status = Some(compute(&os, &healthy(), time(1)));
    let before = os.status.as_ref().and_then(|s| s.services.clone());
    let status = compute(&os, &Report::invalid(&os, "bad".into()), time(2));
    assert_eq!(get(&status, READY).reason, "InvalidSpec");
    assert!(before.is_some());
    assert_eq!(status.services, before);
}

/// `healthy()` with invoicing scaled on lag from `current` to `desired` replicas.
fn autoscaled(current: i32, desired: i32) -> Report {
    use crate::controller::autoscale::{Decision, ScaleReason};
    let mut report = healthy();
    report.desired[1].1 = desired;
    report.scaling = vec![Decision {
        service: Service::Invoicing,
        mode: crate::crd::ScalingMode::Lag,
        current: Some(current),
        desired,
        reason: if desired > current {
            ScaleReason::ScaledUp
        } else {
            ScaleReason::Steady
        },
        message: "Scaled invoicing up.".into(),
        busy: desired >= current,
    }];
    report
}

#[test]
fn a_scaling_applied_records_its_time_and_reason_and_a_steady_look_keeps_that_time() {
    let mut report = autoscaled(2, 4);
    // Decided but not applied (paused, or the apply failed): no scaling happened.
    let status = compute(&os_from_yaml(MINIMAL), &report, time(10));
    let scaling = status
        .services
        .as_ref()
        .and_then(|s| s.invoicing.autoscaling.clone());
    let scaling = scaling.expect("an autoscaled service reports its decision");
    assert_eq!((scaling.current_replicas, scaling.desired_replicas), (2, 4));
    assert_eq!(scaling.last_scale_time, None);

    report.applied = Service::ALL.to_vec();
    let mut os = os_from_yaml(MINIMAL);
    os.status = Some(compute(&os, &report, time(10)));
    let invoicing = |os: &OrderSystem| {
        os.status
            .as_ref()
            .and_then(|s| s.services.as_ref())
            .and_then(|s| s.invoicing.autoscaling.clone())
            .expect("autoscaling status")
    };
    let scaled = invoicing(&os);
    assert_eq!(scaled.reason, "ScaledUp");
    assert_eq!(scaled.last_scale_time, Some(time(10)));
    assert_eq!(
        os.status
            .as_ref()
            .and_then(|s| s.services.as_ref())
            .map(|s| s.invoicing.replicas.as_str()),
        Some("2/4")
    );

    // The next look finds 4 and keeps them: the cooldown still counts from 10.
    let mut steady = autoscaled(4, 4);
    steady.applied = Service::ALL.to_vec();
    os.status = Some(compute(&os, &steady, time(40)));
    assert_eq!(invoicing(&os).last_scale_time, Some(time(10)));
    assert_eq!(invoicing(&os).reason, "Steady");
    // That look needed all 4: the cooldown also counts from it. A quieter look keeps that time.
    assert_eq!(invoicing(&os).last_busy_time, Some(time(40)));
    let mut quiet = autoscaled(4, 4);
    quiet.applied = Service::ALL.to_vec();
    quiet.scaling[0].busy = false;
    os.status = Some(compute(&os, &quiet, time(50)));
    assert_eq!(invoicing(&os).last_busy_time, Some(time(40)));
    // Services with fixed replicas report no autoscaling.
    assert!(
        os.status
            .as_ref()
            .and_then(|s| s.services.as_ref())
            .is_some_and(|s| s.shipping.autoscaling.is_none())
    );
}

/// Two brokers of three gone under min.insync.replicas 2, as `durability::assess` words it.
fn below_min_insync() -> crate::controller::durability::Durability {
    use crate::controller::durability::{PartitionReplicas, Replication, assess};
    let replication = Replication {
        brokers: vec![2],
        partitions: (0..3)
            .map(|partition| PartitionReplicas {
                partition,
                leader: Some(2),
                replicas: vec![2, 3, 4],
                in_sync: vec![2],
            })
            .collect(),
        min_insync_replicas: 2,
    };
    assess("orders", Some(3), &replication)
}

#[test]
fn reduced_durability_is_its_own_condition_and_leaves_degraded_its_reason() {
    let os = os_from_yaml(MINIMAL);
    let mut report = healthy();
    report.desired[2].1 = 4;
    report.durability = Some(below_min_insync());
    let status = compute(&os, &report, time(1));
    assert_eq!(
        reason(&status, DURABILITY_REDUCED),
        ("True", "BelowMinInsyncReplicas")
    );
    assert!(
        get(&status, DURABILITY_REDUCED)
            .message
            .starts_with("3 of 3 partitions of topic orders have fewer in-sync replicas (1)"),
        "{}",
        get(&status, DURABILITY_REDUCED).message
    );
    assert_eq!(reason(&status, DEGRADED), ("True", "ConsumersExceedPartitions"));
    assert_eq!(reason(&status, READY), ("True", "Ready"));
    // Nothing else wrong: Degraded stays False, the durability condition alone says it.
    let mut report = healthy();
    report.durability = Some(below_min_insync());
    let status = compute(&os, &report, time(1));
    assert_eq!(reason(&status, DEGRADED), ("False", "AsExpected"));
    assert_eq!(get(&status, DURABILITY_REDUCED).status, "True");
}

#[test]
fn without_a_look_at_the_replicas_the_last_durability_verdict_stands() {
    let mut os = os_from_yaml(MINIMAL);
    let status = compute(&os, &healthy(), time(1));
    assert_eq!(reason(&status, DURABILITY_REDUCED), ("False", "NotObserved"));
    let mut reduced = healthy();
    reduced.durability = Some(below_min_insync());
    os.status = Some(compute(&os, &reduced, time(2)));
    let status = compute(&os, &healthy(), time(3));
    assert_eq!(
        reason(&status, DURABILITY_REDUCED),
        ("True", "BelowMinInsyncReplicas")
    );
    assert_eq!(get(&status, DURABILITY_REDUCED).last_transition_time, time(2));
}
