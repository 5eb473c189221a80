//! The consumer loop's own SQL: the dead-letter table. The kit creates that table itself (`MIGRATOR`, the
//! one definition, in `migrations/dead_letters`): the loop that writes it is shared by every consumer
//! service, so its table is defined with it instead of once per service.

use crate::db;
use rdkafka::Message;
use sqlx::PgConnection;
use sqlx::migrate::Migrator;
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
