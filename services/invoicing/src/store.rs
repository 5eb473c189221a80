//! All SQL of the invoicing service: store invoices idempotently with one writing statement per batch,
//! and read invoices for the pages and the API.

use crate::domain::{Invoice, InvoiceLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::batch::Batch;
use ordersystem_service_kit::keyed::{self, FirstWins};
use ordersystem_service_kit::paging::{Page, Paging};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
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

    fn from_row(row: &PgRow, lines: Vec<InvoiceLine>) -> Result<Invoice, sqlx::Error> {
        Ok(Invoice {
            order_id: row.try_get("order_id")?,
            customer_id: row.try_get("customer_id")?,
            firstname: row.try_get("firstname")?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            billing_address: Address {
                street: row.try_get("billing_street")?,
                zip: row.try_get("billing_zip")?,
                city: row.try_get("billing_city")?,
            },
            updated: row.try_get("updated")?,
            lines,
        })
    }

    fn line_from_row(row: &PgRow) -> Result<InvoiceLine, sqlx::Error> {
        Ok(InvoiceLine {
            count: row.try_get("count")?,
            item_id: row.try_get("item_id")?,
            item_name: row.try_get("item_name")?,
            price: row.try_get("price")?,
        })
    }
}

/// One row of the invoice list.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSummary {
    pub order_id: i64,
    pub customer: String,
    #[serde(serialize_with = "ordersystem_service_kit::money::serialize")]
    pub total_amount: Decimal,
}

/// The page of the invoice list `paging` asks for.
pub async fn list(pool: &PgPool, paging: &Paging) -> Result<Page<InvoiceSummary>, sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT i.order_id, i.firstname || ' ' || i.name AS customer,
                COALESCE(SUM(l.count * l.price), 0) AS total_amount
         FROM (SELECT order_id, firstname, name FROM invoices WHERE order_id > $1 ORDER BY order_id LIMIT $2) i
         LEFT JOIN invoice_lines l USING (order_id)
         GROUP BY i.order_id, i.firstname, i.name ORDER BY i.order_id",
    )
    .bind(paging.after_key())
    .bind(paging.fetch())
    .fetch_all(pool)
    .await?;
    Ok(paging.page(rows, |row: &InvoiceSummary| row.order_id))
}

pub async fn get(pool: &PgPool, order_id: i64) -> Result<Option<Invoice>, sqlx::Error> {
    keyed::get(pool, order_id).await
}
