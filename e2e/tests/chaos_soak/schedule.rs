//! The soak's schedule: which fault comes next, with what parameters, after what pause, drawn from one seed
//! by a small deterministic generator (SplitMix64), so a run is replayed by its seed alone. Pure: no clock,
//! no cluster; the soak runs the steps in order until its time is up.

use std::fmt;
use std::time::Duration;

/// A service of the shop, by the name its Deployment, pods and Secrets carry.
pub const SERVICES: [&str; 3] = ["order", "invoicing", "shipping"];

/// The most invoicing members a scale asks for (the topic starts with more partitions than that).
pub const MAX_INVOICING: i32 = 3;

/// One fault, each one a test of this workspace already proves on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the first container of a pod of this service (its host process, named by crictl).
    KillPod(&'static str),
    /// One broker of the own cluster down and started again: SIGKILL (`kill`) or a controlled shutdown.
    RestartBroker { id: i32, kill: bool },
    /// The own PostgreSQL stopped (fast shutdown) for this long, then started.
    RestartPostgres { down: Duration },
    /// `kill -9` of the operator's container.
    KillOperator,
    /// `spec.invoicing.replicas` set to this.
    ScaleInvoicing(i32),
    /// `spec.kafka.topic.partitions` raised to this, with `partitionIncrease: Drain`.
    AddPartitions(i32),
    /// `ordersystem.io/rotate-credentials: <service>`.
    Rotate(&'static str),
}

/// How many kinds of fault there are: every round of the schedule has each once.
pub const KINDS: usize = 7;

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillPod(service) => write!(f, "kill -9 a pod of {service}"),
            Fault::RestartBroker { id, kill: true } => write!(f, "SIGKILL broker {id}, start it again"),
            Fault::RestartBroker { id, kill: false } => {
                write!(f, "stop broker {id} (SIGTERM), start it again")
            }
            Fault::RestartPostgres { down } => {
                write!(f, "stop PostgreSQL for {}s, start it again", down.as_secs())
            }
            Fault::KillOperator => write!(f, "kill -9 the operator"),
            Fault::ScaleInvoicing(n) => write!(f, "scale invoicing to {n}"),
            Fault::AddPartitions(n) => write!(f, "raise the partitions to {n} (Drain)"),
            Fault::Rotate(service) => write!(f, "rotate {service}'s credentials"),
        }
    }
}

/// A fault and the pause before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub pause: Duration,
    pub fault: Fault,
}

/// SplitMix64 (Steele, Lea, Flood 2014): a full-period 64-bit generator in three lines, enough to draw a
/// schedule; the workspace has no random-number crate to depend on here.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is below 2^-60 for the small `n` here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

/// The endless schedule of one seed: rounds of the seven kinds in a shuffled order, each fault's parameters
/// drawn in turn and following the state the steps before it left (invoicing's replicas, the partitions).
#[derive(Debug, Clone)]
pub struct Schedule {
    rng: SplitMix64,
    round: Vec<usize>,
    longest_pause: u64,
    brokers: i32,
    invoicing: i32,
    partitions: i32,
}

impl Schedule {
    /// The schedule of `seed` for a shop of `invoicing` members on `partitions` partitions and a cluster of
    /// `brokers` brokers, with pauses of 1 to `longest_pause` seconds before each fault.
    pub fn new(seed: u64, longest_pause: u64, brokers: i32, invoicing: i32, partitions: i32) -> Self {
        Self {
            rng: SplitMix64(seed),
            round: Vec::new(),
            longest_pause: longest_pause.max(1),
            brokers,
            invoicing,
            partitions,
        }
    }

    fn fault(&mut self, kind: usize) -> Fault {
        match kind {
            0 => Fault::KillPod(SERVICES[self.rng.below(3) as usize]),
            1 => Fault::RestartBroker {
                id: 1 + self.rng.below(self.brokers as u64) as i32,
                kill: self.rng.below(2) == 0,
            },
            2 => Fault::RestartPostgres {
                down: Duration::from_secs(self.rng.between(3, 15)),
            },
            3 => Fault::KillOperator,
            4 => {
                // Another count than now, from 1 to MAX_INVOICING.
                let others: Vec<i32> = (1..=MAX_INVOICING).filter(|n| *n != self.invoicing).collect();
                self.invoicing = others[self.rng.below(others.len() as u64) as usize];
                Fault::ScaleInvoicing(self.invoicing)
            }
            5 => {
                self.partitions += 1 + self.rng.below(2) as i32;
                Fault::AddPartitions(self.partitions)
            }
            _ => Fault::Rotate(SERVICES[self.rng.below(3) as usize]),
        }
    }
}

impl Iterator for Schedule {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        if self.round.is_empty() {
            // Fisher-Yates; popped from the end.
            self.round = (0..KINDS).collect();
            for i in (1..KINDS).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                self.round.swap(i, j);
            }
        }
        let kind = self.round.pop()?;
        let pause = Duration::from_secs(self.rng.between(1, self.longest_pause));
        Some(Step {
            pause,
            fault: self.fault(kind),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(fault: &Fault) -> usize {
        match fault {
            Fault::KillPod(_) => 0,
            Fault::RestartBroker { .. } => 1,
            Fault::RestartPostgres { .. } => 2,
            Fault::KillOperator => 3,
            Fault::ScaleInvoicing(_) => 4,
            Fault::AddPartitions(_) => 5,
            Fault::Rotate(_) => 6,
        }
    }

    #[test]
    fn one_seed_gives_one_schedule_and_another_seed_another() {
        let a: Vec<Step> = Schedule::new(7, 20, 3, 1, 3).take(50).collect();
        let b: Vec<Step> = Schedule::new(7, 20, 3, 1, 3).take(50).collect();
        let c: Vec<Step> = Schedule::new(8, 20, 3, 1, 3).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_round_has_each_kind_once() {
        let steps: Vec<Step> = Schedule::new(42, 5, 3, 1, 3).take(KINDS * 20).collect();
        for round in steps.chunks(KINDS) {
            let mut kinds: Vec<usize> = round.iter().map(|s| kind(&s.fault)).collect();
            kinds.sort_unstable();
            assert_eq!(kinds, (0..KINDS).collect::<Vec<_>>(), "{round:?}");
        }
    }

    #[test]
    fn parameters_stay_in_range_and_follow_the_state_before_them() {
        let (mut invoicing, mut partitions) = (1, 3);
        for step in Schedule::new(3, 10, 3, invoicing, partitions).take(KINDS * 50) {
            assert!((1..=10).contains(&step.pause.as_secs()), "{step:?}");
            match step.fault {
                Fault::ScaleInvoicing(n) => {
                    assert!(
                        n != invoicing && (1..=MAX_INVOICING).contains(&n),
                        "{invoicing} -> {n}"
                    );
                    invoicing = n;
                }
                Fault::AddPartitions(n) => {
                    assert!(n == partitions + 1 || n == partitions + 2, "{partitions} -> {n}");
                    partitions = n;
                }
                Fault::RestartBroker { id, .. } => assert!((1..=3).contains(&id)),
                Fault::RestartPostgres { down } => assert!((3..=15).contains(&down.as_secs())),
                _ => {}
            }
        }
    }

    #[test]
    fn splitmix64_matches_its_reference_output() {
        // The first outputs for seed 1234567 of the reference implementation (Vigna, splitmix64.c).
        let mut rng = SplitMix64(1_234_567);
        assert_eq!(rng.next(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next(), 3_203_168_211_198_807_973);
    }
}
