//! Latency percentiles (nearest rank over all samples, no histogram buckets) and the exactly-once check.

use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// p50/p90/p99/max of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From latencies in microseconds.
    pub fn of(mut micros: Vec<i64>) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p of the samples at or below it.
            let index = ((p * micros.len() as f64).ceil() as usize).clamp(1, micros.len()) - 1;
            micros[index] as f64 / 1000.0
        };
        Latency {
            samples: micros.len(),
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: micros[micros.len() - 1] as f64 / 1000.0,
        }
    }
}

/// Whether every order the service stored produced exactly one invoice and one shipment, and every order
/// the load generator saw accepted was stored.
#[derive(Debug, Clone, Serialize)]
pub struct ExactlyOnce {
    pub accepted: usize,
    pub orders_stored: usize,
    pub invoices: usize,
    pub shipments: usize,
    pub dead_letters: i64,
    /// Empty when the check passed; otherwise what is wrong.
    pub problems: Vec<String>,
}

impl ExactlyOnce {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Prints the check as the last row of a report's table.
pub fn print_check(e: &ExactlyOnce) {
    if e.passed() {
        println!(
            "  exactly once          OK: {} orders, {} invoices, {} shipments, {} dead letters",
            e.orders_stored, e.invoices, e.shipments, e.dead_letters
        );
    } else {
        println!("  exactly once          FAILED: {}", e.problems.join("; "));
    }
}

/// A run that lost or duplicated anything is a failure, not a result.
pub fn require(e: &ExactlyOnce) -> anyhow::Result<()> {
    if !e.passed() {
        anyhow::bail!("exactly-once check failed: {}", e.problems.join("; "));
    }
    Ok(())
}

/// Compares what was accepted and stored by order with what invoicing and shipping stored. `invoices` and
/// `shipments` hold one entry per stored row (so a duplicate would show twice).
pub fn exactly_once(
    accepted: &BTreeSet<i64>,
    orders: &BTreeSet<i64>,
    invoices: &[i64],
    shipments: &[i64],
    dead_letters: i64,
) -> ExactlyOnce {
    let mut problems = Vec::new();
    let lost: Vec<&i64> = accepted.difference(orders).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} accepted orders are not in the order service's table, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    for (what, rows) in [("invoice", invoices), ("shipment", shipments)] {
        let mut seen: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
        for id in rows {
            *seen.entry(*id).or_default() += 1;
        }
        let twice: Vec<i64> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .take(5)
            .collect();
        if !twice.is_empty() {
            problems.push(format!("orders with more than one {what}, e.g. {twice:?}"));
        }
        let missing: Vec<&i64> = orders.iter().filter(|id| !seen.contains_key(id)).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} of {} orders have no {what}, e.g. {:?}",
                missing.len(),
                orders.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        let unknown: Vec<&i64> = seen.keys().filter(|id| !orders.contains(id)).take(5).collect();
        if !unknown.is_empty() {
            problems.push(format!("{what}s for orders that do not exist, e.g. {unknown:?}"));
        }
    }
    if dead_letters > 0 {
        problems.push(format!("{dead_letters} dead letters"));
    }
    ExactlyOnce {
        accepted: accepted.len(),
        orders_stored: orders.len(),
        invoices: invoices.len(),
        shipments: shipments.len(),
        dead_letters,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::of((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p90_ms, 90.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Latency::of(vec![]), Latency::default());
        assert_eq!(Latency::of(vec![1500]).p99_ms, 1.5);
    }

    #[test]
    fn exactly_once_names_lost_duplicated_and_unknown_orders() {
        let set = |ids: &[i64]| ids.iter().copied().collect::<BTreeSet<i64>>();
        let ok = exactly_once(&set(&[1, 2]), &set(&[1, 2, 3]), &[1, 2, 3], &[3, 2, 1], 0);
        assert!(ok.passed(), "{:?}", ok.problems);
        let lost = exactly_once(&set(&[1, 2, 4]), &set(&[1, 2]), &[1, 2], &[1, 2], 0);
        assert!(lost.problems[0].contains("1 accepted orders are not"));
        let twice = exactly_once(&set(&[1]), &set(&[1]), &[1, 1], &[1], 0);
        assert!(twice.problems[0].contains("more than one invoice"));
        let missing = exactly_once(&set(&[1, 2]), &set(&[1, 2]), &[1, 2], &[1], 1);
        assert!(missing.problems[0].contains("1 of 2 orders have no shipment"));
        assert!(missing.problems[1].contains("1 dead letters"));
        let unknown = exactly_once(&set(&[1]), &set(&[1]), &[1, 9], &[1], 0);
        assert!(unknown.problems[0].contains("invoices for orders that do not exist"));
    }
}
