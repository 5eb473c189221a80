//! autoscale (pure, no client, no clock of its own): the replicas of invoicing and shipping when their
//! spec says `autoscaling`. With lag scaling the operator runs ceil(lag / target) pods within the spec's
//! bounds, never more than the topic's partitions (a consumer beyond them gets no partition and reads
//! nothing), scales up at once and down only after the cooldown. In external mode it decides nothing and
//! reports the Deployment's own count; `build` then leaves `replicas` out and `apply` hands the field
//! over.
//!
//! The cooldown counts from the later of the last scaling and the last look at which the lag still asked
//! for every pod running (like the HPA's scale-down stabilization window): a lag that touches zero for
//! one look in the middle of a busy period does not take pods away. Nothing else is remembered between
//! reconciles, and both times are in the status (`status.services.<service>.autoscaling.lastScaleTime`,
//! `lastBusyTime`): a restarted operator keeps the cooldown.

use std::fmt;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::observe::World;
use super::validate::ValidSpec;
use crate::crd::{AutoscalingSpec, AutoscalingStatus, OrderSystem, ScalingMode};
use crate::names::Service;

/// Fewest pods of a lag-scaled consumer when `minReplicas` is absent.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;
/// Lag one pod is expected to work off when `targetLagPerReplica` is absent: the default
/// `consumerLag.threshold`, so a group the lag watch calls "behind" gets a second pod.
pub const DEFAULT_TARGET_LAG_PER_REPLICA: i64 = 1000;
/// Seconds after the last scaling before a scale-down when `scaleDownCooldownSeconds` is absent: long
/// enough that a backlog drained between two bursts of orders does not bounce the pods (each start
/// costs a consumer-group rebalance).
pub const DEFAULT_SCALE_DOWN_COOLDOWN_SECONDS: i32 = 300;

/// Who decides a service's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// `replicas` in the spec (1 when absent).
    Fixed,
    /// The operator, from the consumer group's lag.
    Lag(LagPolicy),
    /// An autoscaler of the user's; the operator never writes `replicas`.
    External,
}

impl Scaling {
    /// The scaling `autoscaling` asks for, with the documented defaults filled in.
    pub fn from_spec(autoscaling: Option<&AutoscalingSpec>) -> Self {
        match autoscaling {
            None => Self::Fixed,
            Some(spec) if spec.external => Self::External,
            Some(spec) => {
                let min = spec.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS);
                Self::Lag(LagPolicy {
                    min,
                    // The schema requires it; a missing one (an object the schema never saw) means no room.
                    max: spec.max_replicas.unwrap_or(min),
                    target_lag_per_replica: spec
                        .target_lag_per_replica
                        .unwrap_or(DEFAULT_TARGET_LAG_PER_REPLICA),
                    cooldown_seconds: spec
                        .scale_down_cooldown_seconds
                        .unwrap_or(DEFAULT_SCALE_DOWN_COOLDOWN_SECONDS),
                })
            }
        }
    }
}

/// The bounds of lag scaling, validated (`min <= max`, `target >= 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagPolicy {
    pub min: i32,
    pub max: i32,
    pub target_lag_per_replica: i64,
    pub cooldown_seconds: i32,
}

/// What one decision looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The group's lag; `None` when it could not be read.
    pub lag: Option<i64>,
    /// The topic's partitions as Kafka reports them; `None` when the topic was not seen.
    pub partitions: Option<i32>,
    /// The Deployment's `spec.replicas`; `None` before its first rollout.
    pub current: Option<i32>,
    /// When the operator last changed the replicas (from status).
    pub last_scale: Option<Timestamp>,
    /// The last look at which the lag asked for at least the replicas running (from status).
    pub last_busy: Option<Timestamp>,
    pub now: Timestamp,
}

/// Why the replicas are what they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleReason {
    ScaledUp,
    ScaledDown,
    Steady,
    /// The lag asks for fewer pods, but the cooldown since the last scaling has not passed.
    CooldownHoldsScaleDown,
    /// The lag asks for more pods than the topic has partitions.
    CappedByPartitions,
    /// The lag could not be read: the replicas stay as they are.
    LagUnknown,
    /// An external autoscaler decides.
    External,
}

impl ScaleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaledUp => "ScaledUp",
            Self::ScaledDown => "ScaledDown",
            Self::Steady => "Steady",
            Self::CooldownHoldsScaleDown => "CooldownHoldsScaleDown",
            Self::CappedByPartitions => "CappedByPartitions",
            Self::LagUnknown => "LagUnknown",
            Self::External => "External",
        }
    }
}

impl fmt::Display for ScaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service's decision, for `build` (through the plan's replicas), status and the Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub service: Service,
    pub mode: ScalingMode,
    /// The Deployment's replicas before this reconcile; `None` before its first rollout.
    pub current: Option<i32>,
    pub desired: i32,
    pub reason: ScaleReason,
    /// A sentence: the reason with the lag and the bounds it was decided from.
    pub message: String,
    /// The lag of this look asked for at least the replicas running: the cooldown starts again.
    pub busy: bool,
}

impl Decision {
    /// True when the operator changes a running Deployment's replicas in this reconcile.
    pub fn scales(&self) -> bool {
        self.mode == ScalingMode::Lag && self.current.is_some_and(|current| current != self.desired)
    }
}

/// The replicas lag scaling wants for `service` now, with the reason and its sentence.
/// Long on purpose: one rule after another, each with its sentence.
pub fn decide_lag(service: Service, policy: &LagPolicy, seen: &Observation) -> (i32, ScaleReason, String) {
    let name = service.as_str();
    let cap = cap(policy, seen.partitions);
    let bounds = match seen.partitions {
        Some(partitions) => format!(
            "bounds {}-{}, {partitions} partition{}",
            policy.min,
            policy.max,
            plural(partitions)
        ),
        None => format!("bounds {}-{}", policy.min, policy.max),
    };
    let Some(lag) = seen.lag else {
        let keep = seen.current.unwrap_or(policy.min).clamp(policy.min.min(cap), cap);
        let message = format!(
            "The lag of {name} could not be read, so it keeps {keep} replica{} ({bounds}).",
            plural(keep)
        );
        return (keep, ScaleReason::LagUnknown, message);
    };
    let per = policy.target_lag_per_replica.max(1);
    let wanted = wanted(policy, lag);
    let bounded = wanted.clamp(policy.min, policy.max);
    // The cap wins over minReplicas too: a pod beyond the partitions would only idle.
    let target = bounded.min(cap);
    let need = format!(
        "a lag of {lag} event{} at {per} per replica needs {wanted} ({bounds})",
        plural_i64(lag)
    );
    let capped = bounded > cap;
    let Some(current) = seen.current else {
        let message = format!("{name} starts with {target} replica{}: {need}.", plural(target));
        let reason = if capped {
            ScaleReason::CappedByPartitions
        } else {
            ScaleReason::Steady
        };
        return (target, reason, capitalize(&message));
    };
    if target > current {
        let message = format!(
            "Scaled {name} up from {current} to {target} replica{}: {need}{}.",
            plural(target),
            if capped { "; capped by the partitions" } else { "" }
        );
        return (target, ScaleReason::ScaledUp, message);
    }
    if target < current {
        // Above the cap or the maximum a pod goes at once; below them only after the cooldown.
        let ceiling = current.min(cap).min(policy.max);
        let since = seen.last_scale.max(seen.last_busy);
        let cooled = since.is_none_or(|last| {
            seen.now.duration_since(last) >= SignedDuration::from_secs(i64::from(policy.cooldown_seconds))
        });
        if !cooled && ceiling > target {
            let message = if ceiling < current {
                format!(
                    "Scaled {name} down from {current} to {ceiling} replica{}, the most maxReplicas and the \
                     partitions allow; {need}, and the rest waits for the cooldown of {} s since the last scaling or the last look that \
                     needed them all.",
                    plural(ceiling),
                    policy.cooldown_seconds
                )
            } else {
                format!(
                    "{name} keeps {current} replica{}: {need}, but a scale-down waits for the cooldown of {} \
                     s since the last scaling or the last look that needed them all.",
                    plural(current),
                    policy.cooldown_seconds
                )
            };
            let reason = if ceiling < current {
                ScaleReason::ScaledDown
            } else {
                ScaleReason::CooldownHoldsScaleDown
            };
            return (ceiling, reason, capitalize(&message));
        }
        let message = format!(
            "Scaled {name} down from {current} to {target} replica{}: {need}.",
            plural(target)
        );
        return (target, ScaleReason::ScaledDown, message);
    }
    if capped {
        let message = format!(
            "{name} runs {current} replica{}, one per partition: {need}.",
            plural(current)
        );
        return (current, ScaleReason::CappedByPartitions, capitalize(&message));
    }
    let message = format!("{name} runs {current} replica{}: {need}.", plural(current));
    (current, ScaleReason::Steady, capitalize(&message))
}

/// Decides every autoscaled service of `spec` from what `world` found, sets the replicas `build` writes
/// (for external mode: the Deployment's own, for status and the PodDisruptionBudget), and returns the
/// decisions.
pub fn decide(os: &OrderSystem, spec: &mut ValidSpec, world: &World, now: Timestamp) -> Vec<Decision> {
    let partitions = world
        .kafka
        .as_ref()
        .and_then(|k| k.as_ref().ok())
        .and_then(|seen| seen.topic.as_ref())
        .map(|topic| topic.partitions);
    let lags = world.lag().and_then(|lag| lag.as_ref().ok());
    let mut decisions = Vec::new();
    for plan in &mut spec.services {
        let service = plan.service;
        let current = world
            .deployment_states
            .iter()
            .find(|d| d.service == service)
            .map(|d| d.desired);
        let decision = match &plan.scaling {
            Scaling::Fixed => continue,
            Scaling::External => {
                let desired = current.unwrap_or(1);
                let message = match current {
                    Some(n) => format!(
                        "An external autoscaler sets the replicas of {}; its Deployment has {n}.",
                        service.as_str()
                    ),
                    None => format!(
                        "An external autoscaler sets the replicas of {}; its Deployment starts with 1.",
                        service.as_str()
                    ),
                };
                Decision {
                    service,
                    mode: ScalingMode::External,
                    current,
                    desired,
                    reason: ScaleReason::External,
                    message,
                    busy: false,
                }
            }
            Scaling::Lag(policy) => {
                let recorded = recorded(os, service);
                let seen = Observation {
                    lag: lags.and_then(|l| l.get(&service).copied()),
                    partitions,
                    current,
                    last_scale: recorded.and_then(|a| Some(a.last_scale_time.as_ref()?.0)),
                    last_busy: recorded.and_then(|a| Some(a.last_busy_time.as_ref()?.0)),
                    now,
                };
                let (desired, reason, message) = decide_lag(service, policy, &seen);
                Decision {
                    service,
                    mode: ScalingMode::Lag,
                    current,
                    desired,
                    busy: busy(policy, &seen),
                    reason,
                    message,
                }
            }
        };
        plan.replicas = decision.desired;
        decisions.push(decision);
    }
    decisions
}

/// The autoscaling status recorded for `service`.
fn recorded(os: &OrderSystem, service: Service) -> Option<&AutoscalingStatus> {
    let services = os.status.as_ref()?.services.as_ref()?;
    services.of(service).autoscaling.as_ref()
}

/// Whether the lag `seen` asks for at least the replicas running (bounds and cap applied): such a look
/// starts the scale-down cooldown again. Unknown lag or a Deployment not yet there is not busy.
pub fn busy(policy: &LagPolicy, seen: &Observation) -> bool {
    let (Some(lag), Some(current)) = (seen.lag, seen.current) else {
        return false;
    };
    wanted(policy, lag)
        .clamp(policy.min, policy.max)
        .min(cap(policy, seen.partitions))
        >= current
}

/// ceil(lag / target): the pods the lag alone asks for.
fn wanted(policy: &LagPolicy, lag: i64) -> i32 {
    let per = policy.target_lag_per_replica.max(1);
    // Both positive here: (lag + per - 1) / per rounds up (`i64::div_ceil` is not stable for signed ints).
    i32::try_from((lag.max(0) + per - 1) / per).unwrap_or(i32::MAX)
}

/// The most pods that can read anything: maxReplicas, and no more than the topic's partitions.
fn cap(policy: &LagPolicy, partitions: Option<i32>) -> i32 {
    partitions.map_or(policy.max, |p| policy.max.min(p.max(1)))
}

fn plural(n: i32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn plural_i64(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn capitalize(sentence: &str) -> String {
    let mut chars = sentence.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
#[path = "autoscale_tests.rs"]
mod tests;
