//! All SQL of the invoicing service: store invoices idempotently with one writing statement per batch,
//! and read invoices for the pages and the API.

use crate::domain::{Invoice, InvoiceLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::batch::Batch;
use ordersystem_service_kit::keyed::FirstWins;
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

/// One invoice per order, first write wins (`keyed::insert_all` stores a batch with one writing statement).
impl FirstWins for Invoice {
    const TABLE: &'static str = "invoices";
    const LINES: &'static str = "invoice_lines";
    type Line = InvoiceLine;

    fn order_id(&self) -> i64 {
        self.order_id
    }

    fn fingerprint(&self) -> String {
        Invoice::fingerprint(self)
    }

    fn lines(&self) -> &[InvoiceLine] {
        &self.lines
    }

    fn columns(invoices: &[&Invoice], batch: &mut Batch) {
        batch.column("customer_id", invoices.iter().map(|i| i.customer_id));
        batch.column("firstname", invoices.iter().map(|i| i.firstname.as_str()));
        batch.column("name", invoices.iter().map(|i| i.name.as_str()));
        batch.column("email", invoices.iter().map(|i| i.email.as_str()));
        batch.column(
            "billing_street",
            invoices.iter().map(|i| i.billing_address.street.as_str()),
        );
        batch.column(
            "billing_zip",
            invoices.iter().map(|i| i.billing_address.zip.as_str()),
        );
        batch.column(
            "billing_city",
            invoices.iter().map(|i| i.billing_address.city.as_str()),
        );
        batch.column("updated", invoices.iter().map(|i| i.updated));
    }

    fn line_columns(lines: &[&InvoiceLine], batch: &mut Batch) {
        batch.column("count", lines.iter().map(|l| l.count));
        batch.column("item_id", lines.iter().map(|l| l.item_id));
        batch.column("item_name", lines.iter().map(|l| l.item_name.as_str()));
        batch.column("price", lines.iter().map(|l| l.price));
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
