//! The consumer loop's own SQL: the dead-letter table, written by the loop, read by the dead-letter pages
//! and marked by a redrive. The kit creates that table itself (`MIGRATOR`, the one definition, in
//! `migrations/dead_letters`): the loop that writes it is shared by every consumer service, so its table
//! is defined with it instead of once per service.

use crate::db;
use crate::paging::{Page, Paging};
use chrono::{DateTime, Utc};
use rdkafka::Message;
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};
use std::sync::LazyLock;

/// Creates the dead-letter table. A consumer service runs it after its own migrations
/// (`consumer_service::ConsumerService` does): invoicing's and shipping's, shipped before the kit had this
/// one, create the same table without `IF NOT EXISTS`, and this one then finds it there. Its history is
/// `_sqlx_migrations_dead_letters` (`db::with_own_history`).
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    db::with_own_history(
        sqlx::migrate!("./migrations/dead_letters"),
        "_sqlx_migrations_dead_letters",
    )
});

/// One record that could not be stored as an invoice or shipment, kept byte for byte.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub reason: &'a str,
    pub error: &'a str,
}

impl<'a> DeadLetter<'a> {
    /// `message`, byte for byte, with why it was set aside.
    pub fn of(message: &'a impl Message, reason: &'a str, error: &'a str) -> Self {
        Self {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
            reason,
            error,
        }
    }
}

pub async fn insert_dead_letter(conn: &mut PgConnection, letter: &DeadLetter<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO dead_letters (topic, partition, "offset", record_key, payload, reason, error)
           VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
    )
    .bind(letter.topic)
    .bind(letter.partition)
    .bind(letter.offset)
    .bind(letter.key)
    .bind(letter.payload)
    .bind(letter.reason)
    .bind(letter.error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A dead letter as stored, for the pages, the JSON API and a redrive.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record_key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub redriven_at: Option<DateTime<Utc>>,
    pub redrive_outcome: Option<String>,
}

/// `SELECT` of a `StoredDeadLetter`'s columns from the table, followed by `$rest`: a static string.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            r#"SELECT id, topic, partition, "offset", record_key, payload, reason, error, created_at,
                      redriven_at, redrive_outcome FROM dead_letters "#,
            $rest
        )
    };
}

/// The page of dead letters `paging` asks for, by id (the order they were set aside in).
pub async fn list(pool: &PgPool, paging: &Paging) -> Result<Page<StoredDeadLetter>, sqlx::Error> {
    let rows = sqlx::query_as(select!("WHERE id > $1 ORDER BY id LIMIT $2"))
        .bind(paging.after_key())
        .bind(paging.fetch())
        .fetch_all(pool)
        .await?;
    Ok(paging.page(rows, |row: &StoredDeadLetter| row.id))
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<StoredDeadLetter>, sqlx::Error> {
    sqlx::query_as(select!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Dead letter `id`, locked until `conn`'s transaction ends: two redrives of it take turns.
pub(super) async fn lock(conn: &mut PgConnection, id: i64) -> Result<Option<StoredDeadLetter>, sqlx::Error> {
    sqlx::query_as(select!("WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Marks dead letter `id` redriven now, with what the redrive came to.
pub(super) async fn mark_redriven(
    conn: &mut PgConnection,
    id: i64,
    outcome: &str,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE dead_letters SET redriven_at = now(), redrive_outcome = $2 WHERE id = $1 RETURNING redriven_at",
    )
    .bind(id)
    .bind(outcome)
    .fetch_one(conn)
    .await
}
