use super::*;
use crate::controller::build::{Observed, build};
use crate::controller::validate::{tests::*, validate};

/// min 1, max 6, 100 events per replica, 60 s cooldown.
fn policy() -> LagPolicy {
    LagPolicy {
        min: 1,
        max: 6,
        target_lag_per_replica: 100,
        cooldown_seconds: 60,
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("a valid time")
}

/// `lag` on 4 partitions, the Deployment at `current`, last scaled at 0, looked at `now`.
fn seen(lag: i64, current: i32, now: i64) -> Observation {
    Observation {
        lag: Some(lag),
        partitions: Some(4),
        current: Some(current),
        last_scale: Some(at(0)),
        last_busy: None,
        now: at(now),
    }
}

fn replicas(seen: &Observation) -> (i32, ScaleReason) {
    let (replicas, reason, _) = decide_lag(Service::Invoicing, &policy(), seen);
    (replicas, reason)
}

#[test]
fn desired_replicas_are_the_lag_over_the_target_rounded_up() {
    assert_eq!(replicas(&seen(100, 1, 1)), (1, ScaleReason::Steady));
    assert_eq!(replicas(&seen(101, 1, 1)), (2, ScaleReason::ScaledUp));
    assert_eq!(replicas(&seen(300, 2, 1)), (3, ScaleReason::ScaledUp));
}

#[test]
fn min_and_max_bound_the_lag_and_the_partitions_cap_them_both() {
    // No lag: minReplicas.
    let mut at_min = LagPolicy { min: 2, ..policy() };
    assert_eq!(decide_lag(Service::Invoicing, &at_min, &seen(0, 2, 1)).0, 2);
    // 10 000 events would need 100 pods: the topic's 4 partitions cap them (below maxReplicas 6).
    assert_eq!(
        replicas(&seen(10_000, 1, 1)),
        (4, ScaleReason::ScaledUp),
        "up to the partitions"
    );
    assert_eq!(
        replicas(&seen(10_000, 4, 1)),
        (4, ScaleReason::CappedByPartitions)
    );
    // With more partitions maxReplicas is the bound.
    let wide = Observation {
        partitions: Some(12),
        ..seen(10_000, 4, 1)
    };
    assert_eq!(replicas(&wide), (6, ScaleReason::ScaledUp));
    // The cap wins over minReplicas too: a pod beyond the partitions would idle.
    at_min.min = 5;
    assert_eq!(decide_lag(Service::Invoicing, &at_min, &seen(0, 4, 1)).0, 4);
}

#[test]
fn the_cap_follows_partitions_as_they_grow() {
    let mut grown = seen(10_000, 4, 1);
    grown.partitions = Some(8);
    assert_eq!(replicas(&grown), (6, ScaleReason::ScaledUp));
}

#[test]
fn scale_down_waits_for_the_cooldown_after_the_last_scaling_and_scale_up_never_waits() {
    // 30 s after the last scaling, lag 0: held at 3.
    assert_eq!(
        replicas(&seen(0, 3, 30)),
        (3, ScaleReason::CooldownHoldsScaleDown)
    );
    // 60 s after: down to the minimum at once.
    assert_eq!(replicas(&seen(0, 3, 60)), (1, ScaleReason::ScaledDown));
    // Never scaled by the operator (it took over fixed replicas): nothing to wait for.
    let fresh = Observation {
        last_scale: None,
        ..seen(0, 3, 1)
    };
    assert_eq!(replicas(&fresh), (1, ScaleReason::ScaledDown));
    // Scaling up 1 s after the last scaling.
    assert_eq!(replicas(&seen(400, 3, 1)), (4, ScaleReason::ScaledUp));
}

#[test]
fn a_look_that_needed_every_pod_starts_the_cooldown_again() {
    // Scaled at 0, the lag still needed all 3 pods at 50: at 70 the quiet look keeps them, at 110 not.
    let quiet = |now| Observation {
        last_busy: Some(at(50)),
        ..seen(0, 3, now)
    };
    assert_eq!(replicas(&quiet(70)), (3, ScaleReason::CooldownHoldsScaleDown));
    assert_eq!(replicas(&quiet(110)), (1, ScaleReason::ScaledDown));
    // Busy: the lag asks for at least the pods running (after the cap); not busy below, or unknown.
    assert!(busy(&policy(), &seen(300, 3, 1)));
    assert!(busy(&policy(), &seen(10_000, 4, 1)), "capped at the 4 running");
    assert!(!busy(&policy(), &seen(200, 3, 1)));
    let unknown = Observation {
        lag: None,
        ..seen(300, 3, 1)
    };
    assert!(!busy(&policy(), &unknown));
}

#[test]
fn pods_above_the_partitions_or_the_maximum_go_at_once_even_in_the_cooldown() {
    // 6 running on a topic of 4 partitions, in the cooldown: down to 4 now, the rest after it.
    let (replicas, reason, message) = decide_lag(Service::Invoicing, &policy(), &seen(0, 6, 10));
    assert_eq!((replicas, reason), (4, ScaleReason::ScaledDown));
    assert!(message.contains("waits for the cooldown of 60 s"), "{message}");
}

#[test]
fn without_a_lag_reading_the_replicas_stay_within_the_bounds() {
    let unknown = Observation {
        lag: None,
        ..seen(0, 3, 1)
    };
    assert_eq!(replicas(&unknown), (3, ScaleReason::LagUnknown));
    let not_deployed = Observation {
        current: None,
        ..unknown.clone()
    };
    assert_eq!(replicas(&not_deployed), (1, ScaleReason::LagUnknown));
    let above_cap = Observation {
        current: Some(9),
        ..unknown
    };
    assert_eq!(replicas(&above_cap).0, 4);
}

#[test]
fn messages_are_sentences_with_the_lag_and_the_bounds() {
    let (_, _, up) = decide_lag(Service::Invoicing, &policy(), &seen(250, 1, 1));
    assert_eq!(
        up,
        "Scaled invoicing up from 1 to 3 replicas: a lag of 250 events at 100 per replica needs 3 \
         (bounds 1-6, 4 partitions)."
    );
    let (_, _, held) = decide_lag(Service::Shipping, &policy(), &seen(0, 2, 5));
    assert_eq!(
        held,
        "Shipping keeps 2 replicas: a lag of 0 events at 100 per replica needs 0 (bounds 1-6, 4 \
         partitions), but a scale-down waits for the cooldown of 60 s since the last scaling or the last \
         look that needed them all."
    );
}

const AUTOSCALED: &str =
    "invoicing: {autoscaling: {minReplicas: 1, maxReplicas: 6, targetLagPerReplica: 100}}";
const EXTERNAL: &str = "invoicing: {autoscaling: {external: true}}";

#[test]
fn the_spec_gives_lag_scaling_with_its_defaults_or_external_mode() {
    let spec = validate(&os_from_yaml(
        &MINIMAL.replace("invoicing: {replicas: 2}", AUTOSCALED),
    ))
    .expect("valid");
    assert_eq!(
        spec.plan(Service::Invoicing).scaling,
        Scaling::Lag(LagPolicy {
            min: 1,
            max: 6,
            target_lag_per_replica: 100,
            cooldown_seconds: DEFAULT_SCALE_DOWN_COOLDOWN_SECONDS,
        })
    );
    assert_eq!(spec.plan(Service::Shipping).scaling, Scaling::Fixed);
    assert_eq!(spec.plan(Service::Order).scaling, Scaling::Fixed);
    let spec = validate(&os_from_yaml(
        &MINIMAL.replace("invoicing: {replicas: 2}", EXTERNAL),
    ))
    .expect("valid");
    assert_eq!(spec.plan(Service::Invoicing).scaling, Scaling::External);
}

#[test]
fn replicas_beside_autoscaling_and_a_missing_maximum_are_refused_naming_the_field() {
    let both = MINIMAL.replace(
        "invoicing: {replicas: 2}",
        "invoicing: {replicas: 2, autoscaling: {maxReplicas: 3}}\n  shipping: {autoscaling: {minReplicas: 2}}",
    );
    let text = validate(&os_from_yaml(&both)).expect_err("invalid").to_string();
    assert!(
        text.contains("spec.invoicing.replicas and spec.invoicing.autoscaling are mutually exclusive"),
        "{text}"
    );
    assert!(
        text.contains("spec.shipping.autoscaling.maxReplicas is required"),
        "{text}"
    );
}

#[test]
fn external_mode_leaves_replicas_out_of_the_deployment_and_fixed_keeps_them() {
    let spec = validate(&os_from_yaml(
        &MINIMAL.replace("invoicing: {replicas: 2}", EXTERNAL),
    ))
    .expect("valid");
    let observed = Observed {
        secret_hashes: Service::ALL.into_iter().map(|s| (s, "h".to_string())).collect(),
        topic_ready: true,
        schemas_ready: Service::ALL.into_iter().collect(),
        deployed: Service::ALL.into_iter().collect(),
        ..Default::default()
    };
    let desired = build(&spec, &observed);
    let replicas = |name: &str| {
        let deployment = desired
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .expect("built");
        deployment.spec.as_ref().and_then(|s| s.replicas)
    };
    assert_eq!(replicas("shop-invoicing"), None);
    assert_eq!(replicas("shop-shipping"), Some(1));
}
