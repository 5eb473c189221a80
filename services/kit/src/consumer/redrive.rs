//! A redrive: one dead letter run through the same handler as the loop runs its records, after its cause
//! was fixed. It stores the event exactly once: the dead letter is locked while it is redriven and marked
//! with the outcome in the same transaction as the handler's write, so a second redrive of it finds it
//! marked; and the handler keeps the first write of an order id, as for any redelivery. A conflict stays a
//! conflict: nothing is written and the dead letter stays as it is.

use super::outcome::{Stored, judge};
use super::store::{self, StoredDeadLetter};
use super::{Handler, REASON_CONFLICT, REASON_REJECTED, REASON_UNDECODABLE, is_transient};
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use ordersystem_contract::EventView;
use sqlx::PgPool;

/// A redrive's outcome, as counted (`ordersystem_dead_letter_redrives_total{outcome}`) and kept with the
/// dead letter.
pub const STORED: &str = "Stored";
/// The order was stored meanwhile (by a later record of it) with the same content: nothing written.
pub const DUPLICATE: &str = "Duplicate";
/// The dead letter was redriven before.
pub const ALREADY_REDRIVEN: &str = "AlreadyRedriven";

/// A redrive that stored the event or found it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub id: i64,
    pub order_id: i64,
    /// [`STORED`] or [`DUPLICATE`].
    pub outcome: &'static str,
    pub at: DateTime<Utc>,
}

/// Why a redrive stored nothing; the dead letter stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("dead letter {0} not found")]
    NotFound(i64),
    #[error("dead letter {id} was redriven at {at} ({outcome})")]
    AlreadyRedriven {
        id: i64,
        at: DateTime<Utc>,
        outcome: String,
    },
    /// Still not an event this service reads: its bytes are what they were.
    #[error("dead letter {id} is still undecodable: {error}")]
    Undecodable { id: i64, error: String },
    /// The order is stored with different content, as when it was dead-lettered.
    #[error("dead letter {id} still conflicts: {detail}")]
    Conflict { id: i64, detail: String },
    /// The database refused the write for good (a constraint or data error).
    #[error("dead letter {id} was refused again by the database: {error}")]
    Rejected { id: i64, error: String },
    /// The database could not be reached or failed transiently: nothing changed, a retry may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
}

impl RedriveError {
    /// The outcome counted for it; `None` for what says nothing about the dead letter.
    fn outcome(&self) -> Option<&'static str> {
        match self {
            Self::NotFound(_) | Self::Unavailable(_) => None,
            Self::AlreadyRedriven { .. } => Some(ALREADY_REDRIVEN),
            Self::Undecodable { .. } => Some(REASON_UNDECODABLE),
            Self::Conflict { .. } => Some(REASON_CONFLICT),
            Self::Rejected { .. } => Some(REASON_REJECTED),
        }
    }
}

/// Redrives dead letter `id` through `handler`, counting the outcome in `metrics`.
pub async fn redrive<H: Handler>(
    pool: &PgPool,
    handler: &H,
    metrics: &Metrics,
    id: i64,
) -> Result<Redriven, RedriveError> {
    let result = attempt(pool, handler, id).await;
    let outcome = match &result {
        Ok(redriven) => Some(redriven.outcome),
        Err(error) => error.outcome(),
    };
    if let Some(outcome) = outcome {
        metrics.redrive(outcome);
    }
    match &result {
        Ok(redriven) => tracing::info!(
            dead_letter = id,
            order_id = redriven.order_id,
            outcome = redriven.outcome,
            "dead letter redriven"
        ),
        Err(RedriveError::Unavailable(error)) => tracing::warn!(dead_letter = id, %error, "redrive failed"),
        Err(error) => tracing::info!(dead_letter = id, %error, "redrive stored nothing"),
    }
    result
}

async fn attempt<H: Handler>(pool: &PgPool, handler: &H, id: i64) -> Result<Redriven, RedriveError> {
    let unavailable = RedriveError::Unavailable;
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let letter: StoredDeadLetter = store::lock(&mut tx, id)
        .await
        .map_err(unavailable)?
        .ok_or(RedriveError::NotFound(id))?;
    if let Some(at) = letter.redriven_at {
        return Err(RedriveError::AlreadyRedriven {
            id,
            at,
            outcome: letter.redrive_outcome.unwrap_or_default(),
        });
    }
    let event = H::Event::decode(letter.payload.as_deref().unwrap_or_default()).map_err(|error| {
        RedriveError::Undecodable {
            id,
            error: error.to_string(),
        }
    })?;
    let written = handler
        .store(&mut tx, std::slice::from_ref(&event))
        .await
        .map_err(|error| {
            if is_transient(&error) {
                RedriveError::Unavailable(error)
            } else {
                RedriveError::Rejected {
                    id,
                    error: error.to_string(),
                }
            }
        })?;
    let outcome = match judge(&written, H::DONE).into_iter().next() {
        Some(Stored::New) => STORED,
        Some(Stored::Duplicate) => DUPLICATE,
        Some(Stored::Conflict { detail }) => return Err(RedriveError::Conflict { id, detail }),
        None => {
            return Err(RedriveError::Rejected {
                id,
                error: "the handler wrote nothing for the event".into(),
            });
        }
    };
    let at = store::mark_redriven(&mut tx, id, outcome)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(Redriven {
        id,
        order_id: event.order_id(),
        outcome,
        at,
    })
}
