//! All SQL of the invoicing service: store an invoice idempotently inside the consumer loop's transaction,
//! and read invoices for the pages and the API.

use crate::domain::{Invoice, InvoiceLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::consumer::Stored;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};

/// First write wins: `ON CONFLICT (order_id) DO NOTHING`, then the stored fingerprint decides between a
/// duplicate (same content) and a conflict (different content).
pub async fn insert(tx: &mut PgConnection, invoice: &Invoice) -> Result<Stored, sqlx::Error> {
    let fingerprint = invoice.fingerprint();
    let a = &invoice.billing_address;
    let inserted = sqlx::query(
        "INSERT INTO invoices (order_id, customer_id, firstname, name, email, billing_street, billing_zip,
                               billing_city, updated, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(invoice.order_id)
    .bind(invoice.customer_id)
    .bind(&invoice.firstname)
    .bind(&invoice.name)
    .bind(&invoice.email)
    .bind(&a.street)
    .bind(&a.zip)
    .bind(&a.city)
    .bind(invoice.updated)
    .bind(&fingerprint)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let stored: String = sqlx::query_scalar("SELECT fingerprint FROM invoices WHERE order_id = $1")
            .bind(invoice.order_id)
            .fetch_one(&mut *tx)
            .await?;
        return Ok(if stored == fingerprint {
            Stored::Duplicate
        } else {
            Stored::Conflict {
                detail: format!(
                    "order {} already invoiced with different content: {stored}",
                    invoice.order_id
                ),
            }
        });
    }
    for (line_no, line) in (1i32..).zip(&invoice.lines) {
        sqlx::query(
            "INSERT INTO invoice_lines (order_id, line_no, count, item_id, item_name, price) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(invoice.order_id)
        .bind(line_no)
        .bind(line.count)
        .bind(line.item_id)
        .bind(&line.item_name)
        .bind(line.price)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Stored::New)
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
