//! The relay's SQL over the outbox table. The kit creates that table itself (`MIGRATOR`, the one definition,
//! in `migrations/outbox`) rather than the relay moving into order: the relay and the SQL it runs are
//! written once here, so the table they depend on is too, and the next service with an outbox gets it by
//! running the same migrator. A service writes rows `(record_key, payload, traceparent, tracestate)` in the
//! transaction that stores what the event reports (order's `store::place_all`); the trace context is that
//! of the request, for the relay to send on.

use crate::db::{self, WarmConnections};
use crate::telemetry::TraceContext;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row};
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

/// Creates the outbox table. A service runs it after its own migrations (`db::Database::migrate`): order's,
/// shipped before the kit had this one, create the same table without `IF NOT EXISTS`, and this one then
/// finds it there. Its history is `_sqlx_migrations_outbox` (`db::with_own_history`).
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| db::with_own_history(sqlx::migrate!("./migrations/outbox"), "_sqlx_migrations_outbox"));

/// One unsent row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub key: String,
    pub payload: Vec<u8>,
    /// The trace context of the request that wrote it, sent on in the record's headers.
    pub trace: Option<TraceContext>,
}

/// A round's transaction: the rows it locked stay locked until [`finish`](Round::finish) marks the
/// acknowledged ones sent and commits. Two round trips from start to end, each one simple query: `BEGIN`
/// with the lock, then the mark with `COMMIT`. A round dropped unfinished (a failure, a round abandoned)
/// closes its connection instead of giving it back, which rolls the transaction back and releases its
/// rows for a later round; the pool opens another connection.
///
/// The transaction commits without waiting for its WAL flush: one flush wait fewer per round. Losing such
/// commits in a database crash loses only marks of rows already on the topic: they are published again,
/// and the consumers skip them as duplicates by order id. A key's marks are lost only from its newest back
/// (a later round's commit is later in the WAL, which survives as a prefix), so its rows are published
/// again in order; unlike after a relay crash (at most one row of a key again), a key may then have several
/// rows again, after later ones, so first deliveries keep per-key order and repeats follow them. `SET
/// LOCAL` ends with the transaction: the connection's next user, an order's insert, commits durably.
pub struct Round {
    /// `None` once finished.
    conn: Option<PoolConnection<Postgres>>,
    rows_wait_behind: bool,
}

impl Round {
    /// Begin a round on a connection from `warm` and lock up to `limit` unsent rows, at most one per key
    /// and only the oldest unsent row of its key. With no row eligible the round is still open: finish it.
    ///
    /// Why this keeps per-key order with several relays: a row is eligible only when no older row of its
    /// key is unsent. While relay A holds key k's oldest row (locked, still unsent), relay B skips that row
    /// (SKIP LOCKED) and cannot take k's next row (an older one is unsent); it becomes eligible only after
    /// A marked the older row sent, i.e. after the broker acknowledged it.
    ///
    /// How it decides that in bounded time: it reads the oldest `window_for(limit)` unsent rows (locked
    /// ones included) and keeps the first row of each key among them. Any older unsent row of the same key
    /// has a smaller id, so it is in the window too: the check is complete without looking further. Only
    /// then are the chosen rows locked, skipping those another round holds. The window is materialized and
    /// the chosen ids become one array, so the plan is an ordered index scan with a limit, then
    /// primary-key lookups, its cost proportional to the window whatever the planner's statistics say. A
    /// `NOT EXISTS` per candidate let the planner, working from statistics taken while nearly every row
    /// was sent, pick a nested loop that scanned the whole backlog for every candidate: rounds then took
    /// seconds, the backlog grew, and rounds got slower.
    pub async fn lock_next(
        warm: &WarmConnections,
        limit: i64,
    ) -> Result<(Round, Vec<OutboxRow>), sqlx::Error> {
        let mut round = Round {
            conn: Some(warm.take().await?),
            rows_wait_behind: false,
        };
        // Both numbers are the relay's own integers, not input.
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit = off;
             WITH oldest AS MATERIALIZED (
                 SELECT id, record_key FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT {window}),
             heads AS MATERIALIZED (SELECT DISTINCT ON (record_key) id FROM oldest ORDER BY record_key, id)
             SELECT id, record_key, payload,
                    (SELECT count(*) = {window} OR count(*) > (SELECT count(*) FROM heads) FROM oldest),
                    traceparent, tracestate
             FROM outbox
             WHERE id = ANY(ARRAY(SELECT id FROM heads)) AND sent_at IS NULL
             ORDER BY id
             LIMIT {limit}
             FOR UPDATE SKIP LOCKED",
            window = window_for(limit),
        );
        let rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(&mut *round).await?;
        if let Some(first) = rows.first() {
            round.rows_wait_behind = first.try_get(3)?;
        }
        let rows = rows
            .into_iter()
            .map(|row| {
                let traceparent: Option<String> = row.try_get(4)?;
                Ok(OutboxRow {
                    id: row.try_get(0)?,
                    key: row.try_get(1)?,
                    payload: row.try_get(2)?,
                    trace: traceparent.map(|traceparent| TraceContext {
                        traceparent,
                        tracestate: row.try_get(5).ok().flatten(),
                    }),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((round, rows))
    }

    /// Whether unsent rows wait behind the ones rounds hold: later rows of a key (eligible once the round
    /// holding the key's older row finished) or rows beyond a full window (reached as rounds finish). A
    /// finished round is then a reason to look again.
    pub fn rows_wait_behind(&self) -> bool {
        self.rows_wait_behind
    }

    /// Mark `acked` (rows of this round the broker acknowledged) sent and commit, which releases the
    /// locks of the others for a later round; the connection goes back to `warm`.
    pub async fn finish(mut self, warm: &WarmConnections, acked: &[i64]) -> Result<(), sqlx::Error> {
        let sql = if acked.is_empty() {
            "COMMIT".to_string()
        } else {
            // Integers only, written here: nothing to escape.
            let ids: Vec<String> = acked.iter().map(i64::to_string).collect();
            format!(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY('{{{}}}'::bigint[]); COMMIT",
                ids.join(",")
            )
        };
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *self).await?;
        if let Some(conn) = self.conn.take() {
            warm.put_back(conn);
        }
        Ok(())
    }
}

impl Deref for Round {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn
            .as_deref()
            .expect("a round's connection is there until it finished")
    }
}

impl DerefMut for Round {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a round's connection is there until it finished")
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// How many of the oldest unsent rows `Round::lock_next` looks at for `limit` rows: room for the rows
/// other rounds hold (this relay's overlapping rounds, other replicas' relays) besides a full round. Rows
/// beyond the window wait for a later round, never out of order; only if this many of the oldest rows
/// could not be published (a broker refusing them) would they hold back the rest too.
fn window_for(limit: i64) -> i64 {
    limit.saturating_mul(4)
}

/// Most rows one statement of `delete_sent_before` deletes, so no statement holds many row locks or
/// writes a large WAL burst at once.
const DELETE_BATCH: i64 = 5_000;

/// Delete the rows published more than `age` ago that come before every row still unsent or younger
/// (by id); returns how many. Rows are sent in about id order, so that is nearly all of them; a row sent
/// late only keeps the rows after it a while longer. The first row to keep is found by an ordered scan
/// from the oldest id that stops there, so it reads about what is deleted, never the whole table; then
/// at most [`DELETE_BATCH`] rows a statement, so none holds many row locks or writes a large WAL burst.
pub async fn delete_sent_before(pool: &sqlx::PgPool, age: std::time::Duration) -> Result<u64, sqlx::Error> {
    let first_kept: Option<i64> = sqlx::query_scalar(
        "SELECT coalesce(
             (SELECT id FROM outbox
              WHERE sent_at IS NULL OR sent_at >= now() - make_interval(secs => $1)
              ORDER BY id LIMIT 1),
             (SELECT max(id) + 1 FROM outbox))",
    )
    .bind(age.as_secs_f64())
    .fetch_one(pool)
    .await?;
    let Some(first_kept) = first_kept else {
        return Ok(0);
    };
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE id = ANY(ARRAY(
                 SELECT id FROM outbox WHERE id < $1 ORDER BY id LIMIT $2))",
        )
        .bind(first_kept)
        .bind(DELETE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += done;
        if done < DELETE_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Rows not yet acknowledged.
pub async fn backlog(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
}
