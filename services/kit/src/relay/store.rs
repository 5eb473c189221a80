//! The relay's SQL over the order service's outbox table, which order's migrations create with this shape:
//!
//! ```sql
//! CREATE TABLE outbox (id BIGSERIAL PRIMARY KEY, record_key TEXT NOT NULL, payload BYTEA NOT NULL,
//!   created_at TIMESTAMPTZ NOT NULL DEFAULT now(), sent_at TIMESTAMPTZ);
//! CREATE INDEX outbox_unsent ON outbox (record_key, id) WHERE sent_at IS NULL;
//! CREATE INDEX outbox_unsent_by_id ON outbox (id) WHERE sent_at IS NULL;
//! ```
//!
//! `outbox_unsent` answers "is an older row of this key unsent"; `outbox_unsent_by_id` lets `lock_next`
//! find the oldest unsent rows without walking every row ever sent.

use sqlx::{PgConnection, PgPool, Row};

/// One unsent row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Lock up to `limit` unsent rows, at most one per key and only the oldest unsent row of its key.
///
/// Why this keeps per-key order with several relays: a row is eligible only when no older row of its key is
/// unsent. While relay A holds key k's oldest row (locked, still unsent), relay B skips that row (SKIP
/// LOCKED) and cannot take k's next row (an older one is unsent); it becomes eligible only after A marked
/// the older row sent, i.e. after the broker acknowledged it.
pub async fn lock_next(tx: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT o.id, o.record_key, o.payload FROM outbox o
         WHERE o.sent_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM outbox p
                           WHERE p.record_key = o.record_key AND p.sent_at IS NULL AND p.id < o.id)
         ORDER BY o.id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
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
