//! All SQL of the shipping service: store a shipment idempotently inside the consumer loop's transaction,
//! and read shipments for the pages and the API.

use crate::domain::{Shipment, ShipmentLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::consumer::Stored;
use sqlx::{PgConnection, PgPool, Row};

/// First write wins: `ON CONFLICT (order_id) DO NOTHING`, then the stored fingerprint decides between a
/// duplicate (same content) and a conflict (different content).
pub async fn insert(tx: &mut PgConnection, shipment: &Shipment) -> Result<Stored, sqlx::Error> {
    let fingerprint = shipment.fingerprint();
    let a = &shipment.shipping_address;
    let inserted = sqlx::query(
        "INSERT INTO shipments (order_id, customer_id, firstname, name, shipping_street, shipping_zip,
                                shipping_city, updated, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(shipment.order_id)
    .bind(shipment.customer_id)
    .bind(&shipment.firstname)
    .bind(&shipment.name)
    .bind(&a.street)
    .bind(&a.zip)
    .bind(&a.city)
    .bind(shipment.updated)
    .bind(&fingerprint)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let stored: String = sqlx::query_scalar("SELECT fingerprint FROM shipments WHERE order_id = $1")
            .bind(shipment.order_id)
            .fetch_one(&mut *tx)
            .await?;
        return Ok(if stored == fingerprint {
            Stored::Duplicate
        } else {
            Stored::Conflict {
                detail: format!(
                    "order {} already shipped with different content: {stored}",
                    shipment.order_id
                ),
            }
        });
    }
    for (line_no, line) in (1i32..).zip(&shipment.lines) {
        sqlx::query("INSERT INTO shipment_lines (order_id, line_no, count, item_id, item_name) VALUES ($1, $2, $3, $4, $5)")
            .bind(shipment.order_id)
            .bind(line_no)
            .bind(line.count)
            .bind(line.item_id)
            .bind(&line.item_name)
            .execute(&mut *tx)
            .await?;
    }
    Ok(Stored::New)
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
