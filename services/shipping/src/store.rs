//! All SQL of the shipping service: store shipments idempotently with one writing statement per batch,
//! and read shipments for the pages and the API.

use crate::domain::{Shipment, ShipmentLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::batch::Batch;
use ordersystem_service_kit::keyed::{self, FirstWins};
use ordersystem_service_kit::paging::{Page, Paging};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

/// One shipment per order, first write wins (`keyed::insert_all` stores a batch with one writing statement).
impl FirstWins for Shipment {
    const TABLE: &'static str = "shipments";
    const LINES: &'static str = "shipment_lines";
    type Line = ShipmentLine;

    fn order_id(&self) -> i64 {
        self.order_id
    }

    fn fingerprint(&self) -> String {
        Shipment::fingerprint(self)
    }

    fn lines(&self) -> &[ShipmentLine] {
        &self.lines
    }

    fn columns(shipments: &[&Shipment], batch: &mut Batch) {
        batch.column("customer_id", shipments.iter().map(|s| s.customer_id));
        batch.column("firstname", shipments.iter().map(|s| s.firstname.as_str()));
        batch.column("name", shipments.iter().map(|s| s.name.as_str()));
        batch.column(
            "shipping_street",
            shipments.iter().map(|s| s.shipping_address.street.as_str()),
        );
        batch.column(
            "shipping_zip",
            shipments.iter().map(|s| s.shipping_address.zip.as_str()),
        );
        batch.column(
            "shipping_city",
            shipments.iter().map(|s| s.shipping_address.city.as_str()),
        );
        batch.column("updated", shipments.iter().map(|s| s.updated));
    }

    fn line_columns(lines: &[&ShipmentLine], batch: &mut Batch) {
        batch.column("count", lines.iter().map(|l| l.count));
        batch.column("item_id", lines.iter().map(|l| l.item_id));
        batch.column("item_name", lines.iter().map(|l| l.item_name.as_str()));
    }

    fn from_row(row: &PgRow, lines: Vec<ShipmentLine>) -> Result<Shipment, sqlx::Error> {
        Ok(Shipment {
            order_id: row.try_get("order_id")?,
            customer_id: row.try_get("customer_id")?,
            firstname: row.try_get("firstname")?,
            name: row.try_get("name")?,
            shipping_address: Address {
                street: row.try_get("shipping_street")?,
                zip: row.try_get("shipping_zip")?,
                city: row.try_get("shipping_city")?,
            },
            updated: row.try_get("updated")?,
            lines,
        })
    }

    fn line_from_row(row: &PgRow) -> Result<ShipmentLine, sqlx::Error> {
        Ok(ShipmentLine {
            count: row.try_get("count")?,
            item_id: row.try_get("item_id")?,
            item_name: row.try_get("item_name")?,
        })
    }
}

/// One row of the shipment list.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentSummary {
    pub order_id: i64,
    pub customer: String,
}

/// The page of the shipment list `paging` asks for.
pub async fn list(pool: &PgPool, paging: &Paging) -> Result<Page<ShipmentSummary>, sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT order_id, firstname || ' ' || name AS customer FROM shipments
         WHERE order_id > $1 ORDER BY order_id LIMIT $2",
    )
    .bind(paging.after_key())
    .bind(paging.fetch())
    .fetch_all(pool)
    .await?;
    Ok(paging.page(rows, |row: &ShipmentSummary| row.order_id))
}

pub async fn get(pool: &PgPool, order_id: i64) -> Result<Option<Shipment>, sqlx::Error> {
    keyed::get(pool, order_id).await
}
