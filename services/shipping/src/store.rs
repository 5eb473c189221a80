//! All SQL of the shipping service: store shipments idempotently with one writing statement per batch,
//! and read shipments for the pages and the API.

use crate::domain::{Shipment, ShipmentLine};
use ordersystem_contract::Address;
use ordersystem_service_kit::keyed::FirstWins;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashSet;

/// One shipment per order, first write wins (`keyed::insert_all` stores a batch with one writing statement).
impl FirstWins for Shipment {
    const STORED_FINGERPRINTS: &'static str =
        "SELECT order_id, fingerprint FROM shipments WHERE order_id = ANY($1)";

    fn order_id(&self) -> i64 {
        self.order_id
    }

    fn fingerprint(&self) -> String {
        Shipment::fingerprint(self)
    }

    async fn insert_new(
        conn: &mut PgConnection,
        firsts: &[(&Shipment, &str)],
    ) -> Result<HashSet<i64>, sqlx::Error> {
        let column = |f: fn(&Shipment) -> &str| firsts.iter().map(|(s, _)| f(s)).collect::<Vec<_>>();
        // The lines of every first go along; only those of the shipments this statement inserted are stored.
        let lines: Vec<(i64, i32, &ShipmentLine)> = firsts
            .iter()
            .flat_map(|(s, _)| (1i32..).zip(&s.lines).map(|(no, line)| (s.order_id, no, line)))
            .collect();
        let inserted = sqlx::query_scalar(
            "WITH new AS (
                 INSERT INTO shipments (order_id, customer_id, firstname, name, shipping_street, shipping_zip,
                                        shipping_city, updated, fingerprint)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::timestamptz[], $9::text[])
                 ON CONFLICT (order_id) DO NOTHING RETURNING order_id
             ), new_lines AS (
                 INSERT INTO shipment_lines (order_id, line_no, count, item_id, item_name)
                 SELECT l.* FROM UNNEST($10::bigint[], $11::int[], $12::int[], $13::bigint[], $14::text[])
                     AS l (order_id, line_no, count, item_id, item_name)
                 WHERE l.order_id IN (SELECT order_id FROM new)
             )
             SELECT order_id FROM new",
        )
        .bind(firsts.iter().map(|(s, _)| s.order_id).collect::<Vec<_>>())
        .bind(firsts.iter().map(|(s, _)| s.customer_id).collect::<Vec<_>>())
        .bind(column(|s| &s.firstname))
        .bind(column(|s| &s.name))
        .bind(column(|s| &s.shipping_address.street))
        .bind(column(|s| &s.shipping_address.zip))
        .bind(column(|s| &s.shipping_address.city))
        .bind(firsts.iter().map(|(s, _)| s.updated).collect::<Vec<_>>())
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
        .fetch_all(conn)
        .await?
        .into_iter()
        .collect();
        Ok(inserted)
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
