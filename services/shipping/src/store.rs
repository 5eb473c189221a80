//! All SQL of the shipping service: store shipments idempotently with one writing statement per batch,
//! and read shipments for the pages and the API.

use crate::domain::{Shipment, ShipmentLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::batch::Batch;
use ordersystem_service_kit::keyed::FirstWins;
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
}

/// One row of the shipment list.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentSummary {
    pub order_id: i64,
    pub customer: String,
}

pub async fn list(pool: &PgPool) -> Result<Vec<ShipmentSummary>, sqlx::Error> {
    let rows = sqlx::query("SELECT order_id, firstname || ' ' || name FROM shipments ORDER BY order_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ShipmentSummary {
                order_id: r.try_get(0)?,
                customer: r.try_get(1)?,
            })
        })
        .collect()
}

pub async fn get(pool: &PgPool, order_id: i64) -> Result<Option<Shipment>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT order_id, customer_id, firstname, name, shipping_street, shipping_zip, shipping_city, updated
         FROM shipments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(
        "SELECT count, item_id, item_name FROM shipment_lines WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|l| {
        Ok(ShipmentLine {
            count: l.try_get(0)?,
            item_id: l.try_get(1)?,
            item_name: l.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(Shipment {
        order_id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        firstname: row.try_get(2)?,
        name: row.try_get(3)?,
        shipping_address: Address {
            street: row.try_get(4)?,
            zip: row.try_get(5)?,
            city: row.try_get(6)?,
        },
        updated: row.try_get(7)?,
        lines,
    }))
}
