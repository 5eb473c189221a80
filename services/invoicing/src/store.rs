//! All SQL of the invoicing service: store invoices idempotently with one writing statement per batch,
//! and read invoices for the pages and the API.

use crate::domain::{Invoice, InvoiceLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::keyed::FirstWins;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashSet;

/// One invoice per order, first write wins (`keyed::insert_all` stores a batch with one writing statement).
impl FirstWins for Invoice {
    const STORED_FINGERPRINTS: &'static str =
        "SELECT order_id, fingerprint FROM invoices WHERE order_id = ANY($1)";

    fn order_id(&self) -> i64 {
        self.order_id
    }

    fn fingerprint(&self) -> String {
        Invoice::fingerprint(self)
    }

    async fn insert_new(
        conn: &mut PgConnection,
        firsts: &[(&Invoice, &str)],
    ) -> Result<HashSet<i64>, sqlx::Error> {
        let column = |f: fn(&Invoice) -> &str| firsts.iter().map(|(i, _)| f(i)).collect::<Vec<_>>();
        // The lines of every first go along; only those of the invoices this statement inserted are stored.
        let lines: Vec<(i64, i32, &InvoiceLine)> = firsts
            .iter()
            .flat_map(|(i, _)| (1i32..).zip(&i.lines).map(|(no, line)| (i.order_id, no, line)))
            .collect();
        let inserted = sqlx::query_scalar(
            "WITH new AS (
                 INSERT INTO invoices (order_id, customer_id, firstname, name, email, billing_street, billing_zip,
                                       billing_city, updated, fingerprint)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::timestamptz[], $10::text[])
                 ON CONFLICT (order_id) DO NOTHING RETURNING order_id
             ), new_lines AS (
                 INSERT INTO invoice_lines (order_id, line_no, count, item_id, item_name, price)
                 SELECT l.* FROM UNNEST($11::bigint[], $12::int[], $13::int[], $14::bigint[], $15::text[],
                                        $16::numeric[]) AS l (order_id, line_no, count, item_id, item_name, price)
                 WHERE l.order_id IN (SELECT order_id FROM new)
             )
             SELECT order_id FROM new",
        )
        .bind(firsts.iter().map(|(i, _)| i.order_id).collect::<Vec<_>>())
        .bind(firsts.iter().map(|(i, _)| i.customer_id).collect::<Vec<_>>())
        .bind(column(|i| &i.firstname))
        .bind(column(|i| &i.name))
        .bind(column(|i| &i.email))
        .bind(column(|i| &i.billing_address.street))
        .bind(column(|i| &i.billing_address.zip))
        .bind(column(|i| &i.billing_address.city))
        .bind(firsts.iter().map(|(i, _)| i.updated).collect::<Vec<_>>())
        .bind(firsts.iter().map(|(_, f)| *f).collect::<Vec<_>>())
        .bind(lines.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
        .bind(lines.iter().map(|(_, no, _)| *no).collect::<Vec<_>>())
        .bind(lines.iter().map(|(_, _, l)| l.count).collect::<Vec<_>>())
        .bind(lines.iter().map(|(_, _, l)| l.item_id).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|(_, _, l)| l.item_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(lines.iter().map(|(_, _, l)| l.price).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?
        .into_iter()
        .collect();
        Ok(inserted)
    }
}

/// One row of the invoice list.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSummary {
    pub order_id: i64,
    pub customer: String,
    pub total_amount: Decimal,
}

pub async fn list(pool: &PgPool) -> Result<Vec<InvoiceSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT i.order_id, i.firstname || ' ' || i.name, COALESCE(SUM(l.count * l.price), 0)
         FROM invoices i LEFT JOIN invoice_lines l USING (order_id)
         GROUP BY i.order_id ORDER BY i.order_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InvoiceSummary {
                order_id: r.try_get(0)?,
                customer: r.try_get(1)?,
                total_amount: r.try_get(2)?,
            })
        })
        .collect()
}

pub async fn get(pool: &PgPool, order_id: i64) -> Result<Option<Invoice>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT order_id, customer_id, firstname, name, email, billing_street, billing_zip, billing_city, updated
         FROM invoices WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(
        "SELECT count, item_id, item_name, price FROM invoice_lines WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|l| {
        Ok(InvoiceLine {
            count: l.try_get(0)?,
            item_id: l.try_get(1)?,
            item_name: l.try_get(2)?,
            price: l.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(Invoice {
        order_id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        firstname: row.try_get(2)?,
        name: row.try_get(3)?,
        email: row.try_get(4)?,
        billing_address: Address {
            street: row.try_get(5)?,
            zip: row.try_get(6)?,
            city: row.try_get(7)?,
        },
        updated: row.try_get(8)?,
        lines,
    }))
}
