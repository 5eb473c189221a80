//! decide (pure, no client; the clock comes in as `now`): from the valid spec and what `observe` found,
//! what this reconcile may write. A partition increase may be held back (`drain::gate`), and while a
//! drain holds intake the order service has no replicas. An autoscaled consumer gets the replicas its lag
//! asks for (`autoscale`). In conflict nothing is written at all.

use k8s_openapi::jiff::Timestamp;

use super::autoscale::{self, Decision};
use super::drain::{self, Gate};
use super::observe::World;
use super::validate::{ValidSpec, ValidTopic};
use crate::crd::OrderSystem;

/// What the writers are to bring about.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The spec to write: as validated, with order at zero replicas while a drain holds intake and the
    /// autoscaled consumers at the replicas decided for them.
    pub spec: ValidSpec,
    /// Whether the spec's partitions may be applied now.
    pub gate: Gate,
    /// The topic as it may be applied now: the spec's, with the partitions the gate allows.
    pub topic: ValidTopic,
    /// One decision per autoscaled consumer (none with fixed replicas).
    pub scaling: Vec<Decision>,
}

pub fn decide(os: &OrderSystem, mut spec: ValidSpec, world: &World, now: Timestamp) -> Plan {
    let gate = drain::gate(os, &spec, world);
    let topic = gate.topic(&spec.topic);
    let scaling = autoscale::decide(os, &mut spec, world, now);
    Plan {
        spec: drain::hold_intake(spec, &gate),
        gate,
        topic,
        scaling,
    }
}
