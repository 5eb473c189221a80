//! The consumer loop's own SQL: the dead-letter table. Each consumer service creates it in its schema with
//! this shape (see its migrations):
//!
//! ```sql
//! CREATE TABLE dead_letters (id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, partition INT NOT NULL,
//!   "offset" BIGINT NOT NULL, record_key BYTEA, payload BYTEA, reason TEXT NOT NULL, error TEXT NOT NULL,
//!   created_at TIMESTAMPTZ NOT NULL DEFAULT now());
//! ```

use rdkafka::Message;
use sqlx::PgConnection;

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
