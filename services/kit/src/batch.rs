//! batch: one statement writes a whole batch of rows. Each column is bound as one array and the arrays are
//! unnested in SQL (`INSERT INTO t (a, b) SELECT * FROM UNNEST($1::INT8[], $2::TEXT[]) AS u (a, b)`), so a
//! batch costs one round trip whatever its size. A caller names each column once, next to its values; the
//! placeholders, their numbers and their array types follow from that.

use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe, Encode, Postgres, SqlSafeStr, SqlStr, Type, TypeInfo};

/// The arrays bound to one statement, for all the tables it writes, in the order they were added.
#[derive(Default)]
pub struct Batch {
    arguments: PgArguments,
    /// The first value that could not be encoded; the statement is not run then.
    error: Option<BoxDynError>,
    /// The columns added since the last `table`: name and placeholder.
    columns: Vec<(&'static str, String)>,
}

/// The columns of one table and the rows that fill them, as SQL fragments.
#[derive(Debug)]
pub struct Unnested {
    /// `a, b`
    pub columns: String,
    /// `UNNEST($1::INT8[], $2::TEXT[])`
    pub arrays: String,
}

impl Unnested {
    /// `INSERT INTO {table} (a, b) SELECT * FROM UNNEST(…) AS u (a, b)`; a `WHERE` on `u.a` may follow.
    pub fn insert_into(&self, table: &str) -> String {
        let Self { columns, arrays } = self;
        format!("INSERT INTO {table} ({columns}) SELECT * FROM {arrays} AS u ({columns})")
    }
}

impl Batch {
    /// Binds `values` as the column `name` of the table being described.
    pub fn column<T>(&mut self, name: &'static str, values: impl IntoIterator<Item = T>)
    where
        Vec<T>: for<'q> Encode<'q, Postgres> + Type<Postgres>,
    {
        let placeholder = format!(
            "${}::{}",
            self.arguments.len() + 1,
            <Vec<T> as Type<Postgres>>::type_info().name()
        );
        if let Err(error) = self.arguments.add(values.into_iter().collect::<Vec<T>>()) {
            self.error.get_or_insert(error);
        }
        self.columns.push((name, placeholder));
    }

    /// The lines of each order in `orders` (its id and its lines), numbered from 1 within the order: binds
    /// the columns `order_id` and `line_no` and returns the lines, whose own columns follow.
    pub fn lines<'a, L>(&mut self, orders: impl Iterator<Item = (i64, &'a [L])>) -> Vec<&'a L> {
        let numbered: Vec<(i64, i32, &L)> = orders
            .flat_map(|(order_id, lines)| (1..).zip(lines).map(move |(no, line)| (order_id, no, line)))
            .collect();
        self.column("order_id", numbered.iter().map(|(order_id, _, _)| *order_id));
        self.column("line_no", numbered.iter().map(|(_, no, _)| *no));
        numbered.into_iter().map(|(_, _, line)| line).collect()
    }

    /// The columns added since the last call, as one table's fragments; the next columns describe the next
    /// table.
    pub fn table(&mut self) -> Unnested {
        let (names, placeholders): (Vec<_>, Vec<_>) = self.columns.drain(..).unzip();
        Unnested {
            columns: names.join(", "),
            arrays: format!("UNNEST({})", placeholders.join(", ")),
        }
    }

    /// `sql`, written from this batch's tables, with the arrays bound; an array that could not be encoded
    /// is the error.
    pub fn statement(self, sql: String) -> Result<(SqlStr, PgArguments), sqlx::Error> {
        match self.error {
            Some(error) => Err(sqlx::Error::Encode(error)),
            // Only table and column names from the code and numbered placeholders are written into `sql`.
            None => Ok((AssertSqlSafe(sql).into_sql_str(), self.arguments)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_column_is_numbered_and_typed_in_the_order_added() {
        let mut batch = Batch::default();
        batch.column("order_id", [1i64, 2]);
        batch.column("name", ["a", "b"]);
        let orders = batch.table();
        assert_eq!(
            orders.insert_into("orders"),
            "INSERT INTO orders (order_id, name) SELECT * FROM UNNEST($1::INT8[], $2::TEXT[]) \
             AS u (order_id, name)"
        );
        batch.column("count", [3i32]);
        let lines = batch.table();
        assert_eq!(lines.columns, "count");
        assert_eq!(lines.arrays, "UNNEST($3::INT4[])");
    }

    #[test]
    fn lines_are_numbered_from_one_within_each_order() {
        let mut batch = Batch::default();
        let lines = batch.lines([(7, &["a", "b"][..]), (9, &["c"][..])].into_iter());
        assert_eq!(lines, [&"a", &"b", &"c"]);
        let table = batch.table();
        assert_eq!(table.columns, "order_id, line_no");
        assert_eq!(table.arrays, "UNNEST($1::INT8[], $2::INT4[])");
    }
}
