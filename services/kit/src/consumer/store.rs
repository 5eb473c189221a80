//! The consumer loop's own SQL: the dead-letter table. The kit creates that table itself (`MIGRATOR`, the
//! one definition, in `migrations/dead_letters`): the loop that writes it is shared by every consumer
//! service, so its table is defined with it instead of once per service.

use super::Stored;
use crate::db;
use rdkafka::Message;
use sqlx::PgConnection;
use sqlx::migrate::Migrator;
use std::collections::{HashMap, HashSet};
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

/// The fingerprints `table` holds for the order ids in `firsts` that the batch's INSERT did not take
/// (`inserted`): what `outcomes` judges their events against. `table` is the service's own constant
/// table name, never input.
/// What a batch's `INSERT … ON CONFLICT (order_id) DO NOTHING` into `table` did with each event of `rows`
/// ((order id, fingerprint), in delivery order), `inserted` holding the order ids it took: reads the
/// fingerprints stored for the others (only when there are any) and judges each event with `outcomes`.
pub async fn judge(
    conn: &mut PgConnection,
    table: &'static str,
    rows: &[(i64, String)],
    inserted: &HashSet<i64>,
    done: &str,
) -> Result<Vec<Stored>, sqlx::Error> {
    let order_ids = crate::keyed::first_of_each(rows, |(order_id, _)| *order_id)
        .into_iter()
        .map(|i| rows[i].0);
    let stored = stored_fingerprints(conn, table, order_ids, inserted).await?;
    Ok(outcomes(rows, inserted, &stored, done))
}

async fn stored_fingerprints(
    tx: &mut PgConnection,
    table: &'static str,
    firsts: impl IntoIterator<Item = i64>,
    inserted: &HashSet<i64>,
) -> Result<HashMap<i64, String>, sqlx::Error> {
    let earlier: Vec<i64> = firsts.into_iter().filter(|id| !inserted.contains(id)).collect();
    if earlier.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!("SELECT order_id, fingerprint FROM {table} WHERE order_id = ANY($1)");
    let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&earlier)
        .fetch_all(tx)
        .await?;
    Ok(rows.into_iter().collect())
}

/// What a batch stored with `INSERT … ON CONFLICT (order_id) DO NOTHING` (first write wins) did with each
/// of its events, in order: `inserted` holds the order ids the INSERT took, `stored` the fingerprints
/// already stored for the others. Same fingerprint as what is stored: a duplicate; another: a conflict,
/// described as "order N already `done` with different content".
fn outcomes(
    rows: &[(i64, String)],
    inserted: &HashSet<i64>,
    stored: &HashMap<i64, String>,
    done: &str,
) -> Vec<Stored> {
    let mut kept: HashMap<i64, &str> = stored.iter().map(|(id, f)| (*id, f.as_str())).collect();
    rows.iter()
        .map(|(order_id, fingerprint)| match kept.get(order_id) {
            None if inserted.contains(order_id) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
        pairs.iter().map(|(id, f)| (*id, f.to_string())).collect()
    }

    #[test]
    fn a_batch_inserts_the_first_event_of_each_order_and_judges_the_rest_against_what_is_kept() {
        let rows = rows(&[(1, "a"), (2, "b"), (1, "a"), (3, "c"), (1, "x"), (4, "d")]);
        // 1 and 3 are new; 2 and 4 were stored before, 2 alike and 4 differently.
        let inserted = HashSet::from([1, 3]);
        let stored = HashMap::from([(2, "b".to_string()), (4, "old".to_string())]);
        let outcomes = outcomes(&rows, &inserted, &stored, "invoiced");
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
