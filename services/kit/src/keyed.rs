//! keyed: rows that share a key (an order id) where only the first of each counts. The consumers insert
//! the first event of each order in a batch and judge the others against it (`insert_all`, given a
//! service's `FirstWins` rows). (The relay's first unsent row of each key is chosen in SQL,
//! `relay::store::Round::lock_next`.)

use crate::batch::Batch;
use crate::consumer::Written;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// The indices of the first item of each key in `items`, in their order.
pub fn first_of_each<'a, T, K: Hash + Eq>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<usize> {
    let mut seen = HashSet::new();
    (0..items.len())
        .filter(|&i| seen.insert(key(&items[i])))
        .collect()
}

/// A row a consumer service stores once per order (an invoice, a shipment), with its numbered lines: the
/// first event of an order is stored, a later one is judged against the stored one's fingerprint. A service
/// states its tables and columns; the statements are written here.
pub trait FirstWins: Sized + Sync {
    /// The table of the rows: `order_id` is its key, `fingerprint` holds `fingerprint()`.
    const TABLE: &'static str;
    /// The table of their lines, keyed by `(order_id, line_no)`, `line_no` counting from 1.
    const LINES: &'static str;
    type Line: Sync;

    fn order_id(&self) -> i64;

    /// What a second event for the same order must match to be a duplicate.
    fn fingerprint(&self) -> String;

    fn lines(&self) -> &[Self::Line];

    /// Adds the columns of `rows` but `order_id` and `fingerprint` to `batch`.
    fn columns(rows: &[&Self], batch: &mut Batch);

    /// Adds the columns of `lines` but `order_id` and `line_no` to `batch`.
    fn line_columns(lines: &[&Self::Line], batch: &mut Batch);

    /// The row read back from `row` (all columns of its table, by name) with its `lines`.
    fn from_row(row: &PgRow, lines: Vec<Self::Line>) -> Result<Self, sqlx::Error>;

    /// A line read back from `row` (all columns of its table, by name).
    fn line_from_row(row: &PgRow) -> Result<Self::Line, sqlx::Error>;
}

/// The row stored for `order_id` with its lines in their order; `None` when there is none.
pub async fn get<R: FirstWins>(pool: &PgPool, order_id: i64) -> Result<Option<R>, sqlx::Error> {
    let sql = format!("SELECT * FROM {} WHERE order_id = $1", R::TABLE);
    let query = sqlx::query(AssertSqlSafe(sql)).bind(order_id);
    let Some(row) = query.fetch_optional(pool).await? else {
        return Ok(None);
    };
    let sql = format!("SELECT * FROM {} WHERE order_id = $1 ORDER BY line_no", R::LINES);
    let lines = sqlx::query(AssertSqlSafe(sql))
        .bind(order_id)
        .fetch_all(pool)
        .await?;
    let lines = lines.iter().map(R::line_from_row).collect::<Result<_, _>>()?;
    R::from_row(&row, lines).map(Some)
}

/// Stores `rows` (delivery order; an order id may repeat), first write wins, in at most two statements
/// whatever their number: one inserts the first of each order id (`insert_new`); only when some were stored
/// before, a second reads their fingerprints. Returns what it wrote, for the consumer loop to judge each
/// event by.
pub async fn insert_all<R: FirstWins>(conn: &mut PgConnection, rows: &[R]) -> Result<Written, sqlx::Error> {
    let fingerprints: Vec<(i64, String)> = rows.iter().map(|r| (r.order_id(), r.fingerprint())).collect();
    let firsts: Vec<(&R, &str)> = first_of_each(&fingerprints, |(order_id, _)| *order_id)
        .into_iter()
        .map(|i| (&rows[i], fingerprints[i].1.as_str()))
        .collect();
    if firsts.is_empty() {
        return Ok(Written::default());
    }
    let inserted = insert_new(conn, &firsts).await?;
    let before: Vec<i64> = firsts
        .iter()
        .map(|(first, _)| first.order_id())
        .filter(|order_id| !inserted.contains(order_id))
        .collect();
    let stored_before = stored_fingerprints::<R>(conn, &before).await?;
    Ok(Written {
        fingerprints,
        inserted,
        stored_before,
    })
}

/// Inserts `firsts` (one per order id, each with its fingerprint) with their lines, but none whose order id
/// is stored already, in one statement; returns the order ids it inserted.
async fn insert_new<R: FirstWins>(
    conn: &mut PgConnection,
    firsts: &[(&R, &str)],
) -> Result<HashSet<i64>, sqlx::Error> {
    let rows: Vec<&R> = firsts.iter().map(|(row, _)| *row).collect();
    let mut batch = Batch::default();
    batch.column("order_id", rows.iter().map(|r| r.order_id()));
    R::columns(&rows, &mut batch);
    batch.column("fingerprint", firsts.iter().map(|(_, f)| *f));
    let new = batch.table().insert_into(R::TABLE);
    // The lines of every first go along; only those of the rows this statement inserted are stored.
    let lines = batch.lines(rows.iter().map(|r| (r.order_id(), r.lines())));
    R::line_columns(&lines, &mut batch);
    let new_lines = batch.table().insert_into(R::LINES);
    let (sql, arguments) = batch.statement(format!(
        "WITH new AS ({new} ON CONFLICT (order_id) DO NOTHING RETURNING order_id),
              new_lines AS ({new_lines} WHERE u.order_id IN (SELECT order_id FROM new))
         SELECT order_id FROM new"
    ))?;
    let inserted: Vec<i64> = sqlx::query_scalar_with(sql, arguments).fetch_all(conn).await?;
    Ok(inserted.into_iter().collect())
}

/// The fingerprints stored for `order_ids`; no round trip when there are none.
async fn stored_fingerprints<R: FirstWins>(
    conn: &mut PgConnection,
    order_ids: &[i64],
) -> Result<HashMap<i64, String>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT order_id, fingerprint FROM {} WHERE order_id = ANY($1)",
        R::TABLE
    );
    let rows: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(order_ids)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_key_in_order_and_nothing_else() {
        let items = [(3, "a"), (5, "b"), (8, "a"), (9, "c"), (12, "b"), (13, "d")];
        assert_eq!(first_of_each(&items, |(_, key)| *key), vec![0, 1, 3, 5]);
        assert_eq!(first_of_each(&items, |(id, _)| id % 2), vec![0, 2]);
        assert!(first_of_each(&[] as &[(i64, &str)], |(_, key)| *key).is_empty());
    }
}
