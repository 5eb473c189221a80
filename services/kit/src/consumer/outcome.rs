//! What became of each record: the loop judges each event from what the handler wrote (`judge`), and
//! counts and logs every record once its writes committed (`Outcome::report`), the same on the batch path
//! and the one-by-one path.

use super::REASON_CONFLICT;
use super::store::DeadLetter;
use crate::metrics::Metrics;
use std::collections::{HashMap, HashSet};

/// What storing an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stored {
    /// A new invoice or shipment.
    New,
    /// The order id was stored before with the same content: nothing written.
    Duplicate,
    /// The order id was stored before with different content: nothing written; the loop dead-letters it.
    Conflict { detail: String },
}

/// What a handler's store wrote for the events it was given: all the loop needs to judge each of them
/// (`judge`). The service's table keeps the first write of an order id (`INSERT … ON CONFLICT (order_id)
/// DO NOTHING`); the handler reads nothing but that table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// One per event, in delivery order: its order id and the fingerprint of what the service stores of
    /// it (that content in canonical form, so an event differing only in a field the service does not
    /// store is a duplicate).
    pub fingerprints: Vec<(i64, String)>,
    /// The order ids this write inserted.
    pub inserted: HashSet<i64>,
    /// The fingerprints stored before, for the order ids of `fingerprints` this write did not insert.
    pub stored_before: HashMap<i64, String>,
}

/// Each event of `written`, judged in order: the first of an order id the write inserted is new; any
/// other is a duplicate when its fingerprint is the one kept for its order id (stored before, or
/// inserted for an earlier event of the batch), otherwise a conflict described as "order N already
/// `done` with different content: <what is kept>".
pub(super) fn judge(written: &Written, done: &str) -> Vec<Stored> {
    let mut kept: HashMap<i64, &str> = written
        .stored_before
        .iter()
        .map(|(id, f)| (*id, f.as_str()))
        .collect();
    written
        .fingerprints
        .iter()
        .map(|(order_id, fingerprint)| match kept.get(order_id) {
            None if written.inserted.contains(order_id) => {
                kept.insert(*order_id, fingerprint);
                Stored::New
            }
            Some(first) if first == fingerprint => Stored::Duplicate,
            first => Stored::Conflict {
                detail: format!(
                    "order {order_id} already {done} with different content: {}",
                    first.copied().unwrap_or("(not found)")
                ),
            },
        })
        .collect()
}

/// What became of one record, counted and logged once its writes committed.
#[derive(Debug)]
pub(super) enum Outcome<'a> {
    /// Decoded and judged; a conflict was dead-lettered.
    Judged { order_id: i64, stored: &'a Stored },
    /// Set aside as it is: undecodable, or refused by the database.
    DeadLettered(&'a DeadLetter<'a>),
}

impl Outcome<'_> {
    pub(super) fn report(&self, metrics: &Metrics) {
        match *self {
            Outcome::Judged { order_id, stored } => match stored {
                Stored::New => {
                    metrics.events_consumed.inc();
                    tracing::debug!(order_id, "stored");
                }
                Stored::Duplicate => {
                    metrics.duplicates_skipped.inc();
                    tracing::info!(order_id, "duplicate skipped");
                }
                Stored::Conflict { detail } => {
                    metrics.dead_letter(REASON_CONFLICT);
                    tracing::warn!(
                        order_id,
                        detail,
                        "conflicting duplicate dead-lettered, first version kept"
                    );
                }
            },
            Outcome::DeadLettered(letter) => {
                metrics.dead_letter(letter.reason);
                tracing::warn!(
                    partition = letter.partition,
                    offset = letter.offset,
                    reason = letter.reason,
                    error = letter.error,
                    "record dead-lettered"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_inserts_the_first_event_of_each_order_and_judges_the_rest_against_what_is_kept() {
        let fingerprints = [(1, "a"), (2, "b"), (1, "a"), (3, "c"), (1, "x"), (4, "d")]
            .iter()
            .map(|(id, f)| (*id, f.to_string()))
            .collect();
        // 1 and 3 are new; 2 and 4 were stored before, 2 alike and 4 differently.
        let written = Written {
            fingerprints,
            inserted: HashSet::from([1, 3]),
            stored_before: HashMap::from([(2, "b".to_string()), (4, "old".to_string())]),
        };
        let outcomes = judge(&written, "invoiced");
        assert_eq!(outcomes[0], Stored::New);
        assert_eq!(outcomes[1], Stored::Duplicate);
        assert_eq!(
            outcomes[2],
            Stored::Duplicate,
            "same order again in the batch, same content"
        );
        assert_eq!(outcomes[3], Stored::New);
        assert_eq!(
            outcomes[4],
            Stored::Conflict {
                detail: "order 1 already invoiced with different content: a".into()
            }
        );
        assert_eq!(
            outcomes[5],
            Stored::Conflict {
                detail: "order 4 already invoiced with different content: old".into()
            }
        );
    }
}
