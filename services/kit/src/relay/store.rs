//! The relay's SQL over the order service's outbox table, which order's migrations create with this shape:
//!
//! ```sql
//! CREATE TABLE outbox (id BIGSERIAL PRIMARY KEY, record_key TEXT NOT NULL, payload BYTEA NOT NULL,
//!   created_at TIMESTAMPTZ NOT NULL DEFAULT now(), sent_at TIMESTAMPTZ);
//! CREATE INDEX outbox_unsent_by_id ON outbox (id) WHERE sent_at IS NULL;
//! ```
//!
//! `outbox_unsent_by_id` lets `lock_next` find the oldest unsent rows without walking every row ever sent.

use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

/// One unsent row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Begins a round's transaction, which commits without waiting for its WAL flush: one flush wait fewer per
/// round. Losing such commits in a database crash loses only marks of rows already on the topic: they are
/// published again, and the consumers skip them as duplicates by order id. A key's marks are lost only from
/// its newest back (a later round's commit is later in the WAL, which survives as a prefix), so its rows
/// are published again in order; unlike after a relay crash (at most one row of a key again), a key may
/// then have several rows again, after later ones, so first deliveries keep per-key order and repeats
/// follow them. `SET LOCAL` ends with the transaction: the pooled connection's next user, an order's
/// insert, commits durably. One simple query, one round trip.
pub async fn begin_round(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await
}

/// Lock up to `limit` unsent rows, at most one per key and only the oldest unsent row of its key.
///
/// Why this keeps per-key order with several relays: a row is eligible only when no older row of its key is
/// unsent. While relay A holds key k's oldest row (locked, still unsent), relay B skips that row (SKIP
/// LOCKED) and cannot take k's next row (an older one is unsent); it becomes eligible only after A marked
/// the older row sent, i.e. after the broker acknowledged it.
///
/// How it decides that in bounded time: it reads the oldest `window_for(limit)` unsent rows (locked ones
/// included) and keeps the first row of each key among them. Any older unsent row of the same key has a
/// smaller id, so it is in the window too: the check is complete without looking further. Only then are
/// the chosen rows locked, skipping those another round holds. Each statement has one sensible plan (an
/// ordered index scan with a limit, then primary-key lookups), so its cost stays proportional to the
/// window whatever the planner's statistics say. A single statement with `NOT EXISTS` let the planner,
/// working from statistics taken while nearly every row was sent, pick a nested loop that scanned the
/// whole backlog for every candidate: rounds then took seconds, the backlog grew, and rounds got slower.
pub async fn lock_next(tx: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let window: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, record_key FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1")
            .bind(window_for(limit))
            .fetch_all(&mut *tx)
            .await?;
    // The first row of each key; all go to the locking statement, which takes the first `limit` that
    // no other round holds.
    let heads: Vec<i64> = crate::keyed::first_of_each(&window, |(_, key)| key.as_str())
        .into_iter()
        .map(|i| window[i].0)
        .collect();
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT id, record_key, payload FROM outbox
         WHERE id = ANY($1) AND sent_at IS NULL
         ORDER BY id
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(&heads)
    .bind(limit)
    .fetch_all(tx)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(OutboxRow {
                id: row.try_get(0)?,
                key: row.try_get(1)?,
                payload: row.try_get(2)?,
            })
        })
        .collect()
}

/// How many of the oldest unsent rows `lock_next` looks at for `limit` rows: room for the rows other
/// rounds hold (this relay's overlapping rounds, other replicas' relays) besides a full round. Rows beyond
/// the window wait for a later round, never out of order; only if this many of the oldest rows could not
/// be published (a broker refusing them) would they hold back the rest too.
fn window_for(limit: i64) -> i64 {
    limit.saturating_mul(4)
}

/// Mark rows the broker acknowledged.
pub async fn mark_sent(tx: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(tx)
        .await?;
    Ok(())
}

/// Rows not yet acknowledged.
pub async fn backlog(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
}
