//! decide (pure, no client): from the valid spec and what `observe` found, what this reconcile may
//! write. A partition increase may be held back (`drain::gate`), and while a drain holds intake the order
//! service has no replicas. In conflict nothing is written at all.

use super::drain::{self, Gate};
use super::observe::World;
use super::validate::{ValidSpec, ValidTopic};
use crate::crd::OrderSystem;

/// What the writers are to bring about.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The spec to write: as validated, with order at zero replicas while a drain holds intake.
    pub spec: ValidSpec,
    /// Whether the spec's partitions may be applied now.
    pub gate: Gate,
    /// The topic as it may be applied now: the spec's, with the partitions the gate allows.
    pub topic: ValidTopic,
}

pub fn decide(os: &OrderSystem, spec: ValidSpec, world: &World) -> Plan {
    let gate = drain::gate(os, &spec, world);
    let topic = gate.topic(&spec.topic);
    Plan {
        spec: drain::hold_intake(spec, &gate),
        gate,
        topic,
    }
}
