//! All SQL of the order service: seed data, catalogue reads, placing an order together with its outbox row
//! in one transaction, and reading orders back.

use crate::domain::NewOrder;
use chrono::{DateTime, Utc};
use ordersystem_contract::partition::record_key;
use ordersystem_contract::{Address, Customer, Item, OrderLine, OrderPlaced, Price};
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown customer {0}")]
    UnknownCustomer(i64),
    #[error("unknown item {0}")]
    UnknownItem(i64),
    #[error("the event of order {id} cannot be encoded")]
    Encode {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("database access failed")]
    Database(#[from] sqlx::Error),
}

/// The design's seed data. Keyed by email and item name, so a restart adds nothing.
pub async fn seed(pool: &PgPool) -> Result<(), sqlx::Error> {
    let customers = [
        ("Eberhard", "Wolff", "eberhard.wolff@gmail.com"),
        ("Rod", "Johnson", "rod@somewhere.com"),
    ];
    for (firstname, name, email) in customers {
        sqlx::query("INSERT INTO customers (firstname, name, email) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
            .bind(firstname)
            .bind(name)
            .bind(email)
            .execute(pool)
            .await?;
    }
    let items = [
        ("iPod", "42.00"),
        ("iPod touch", "21.00"),
        ("iPod nano", "1.00"),
        ("Apple TV", "100.00"),
    ];
    for (name, price) in items {
        sqlx::query("INSERT INTO items (name, price) VALUES ($1, $2::numeric) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(price)
            .execute(pool)
            .await?;
    }
    Ok(())
}

pub async fn customers(pool: &PgPool) -> Result<Vec<Customer>, sqlx::Error> {
    let rows = sqlx::query("SELECT customer_id, name, firstname, email FROM customers ORDER BY customer_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Customer {
                customer_id: r.try_get(0)?,
                name: r.try_get(1)?,
                firstname: r.try_get(2)?,
                email: r.try_get(3)?,
            })
        })
        .collect()
}

pub async fn items(pool: &PgPool) -> Result<Vec<Item>, sqlx::Error> {
    let rows = sqlx::query("SELECT item_id, name, price FROM items ORDER BY item_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Item {
                item_id: r.try_get(0)?,
                name: r.try_get(1)?,
                price: Price(r.try_get(2)?),
            })
        })
        .collect()
}

/// Store the order, its lines and its outbox row atomically; returns the event that was queued.
///
/// Two round trips to the database, because every order pays for each one (on a busy machine each is a
/// wait for the CPU): one reads the customer and the items and draws the order id (the event carries it),
/// the other writes order, lines and outbox row in one statement, which commits as one transaction. The
/// foreign keys still refuse a customer or item removed in between.
pub async fn place(pool: &PgPool, order: &NewOrder, now: DateTime<Utc>) -> Result<OrderPlaced, StoreError> {
    let item_ids: Vec<i64> = order.lines.iter().map(|line| line.item_id).collect();
    let catalogue = sqlx::query(
        "SELECT nextval(pg_get_serial_sequence('orders', 'id')),
                c.customer_id, c.name, c.firstname, c.email, i.ids, i.names, i.prices
         FROM (SELECT 1) one
         LEFT JOIN customers c ON c.customer_id = $1
         CROSS JOIN LATERAL (SELECT array_agg(item_id) ids, array_agg(name) names, array_agg(price) prices
                             FROM items WHERE item_id = ANY($2)) i",
    )
    .bind(order.customer_id)
    .bind(&item_ids)
    .fetch_one(pool)
    .await?;
    let id: i64 = catalogue.try_get(0)?;
    let customer_id: Option<i64> = catalogue.try_get(1)?;
    if customer_id.is_none() {
        return Err(StoreError::UnknownCustomer(order.customer_id));
    }
    let customer = Customer {
        customer_id: order.customer_id,
        name: catalogue.try_get(2)?,
        firstname: catalogue.try_get(3)?,
        email: catalogue.try_get(4)?,
    };
    let found_ids: Vec<i64> = catalogue.try_get::<Option<_>, _>(5)?.unwrap_or_default();
    let names: Vec<String> = catalogue.try_get::<Option<_>, _>(6)?.unwrap_or_default();
    let prices: Vec<Decimal> = catalogue.try_get::<Option<_>, _>(7)?.unwrap_or_default();
    let mut lines = Vec::with_capacity(order.lines.len());
    for line in &order.lines {
        let found = found_ids
            .iter()
            .position(|item_id| *item_id == line.item_id)
            .ok_or(StoreError::UnknownItem(line.item_id))?;
        lines.push(OrderLine {
            count: line.count,
            item: Item {
                item_id: line.item_id,
                name: names[found].clone(),
                price: Price(prices[found]),
            },
        });
    }
    let (ship, bill) = (&order.shipping_address, &order.billing_address);
    let event = OrderPlaced {
        id,
        customer,
        // The event carries what the database keeps (microseconds), so a re-read order equals its event.
        updated: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now),
        shipping_address: ship.clone(),
        billing_address: bill.clone(),
        number_of_lines: lines.len(),
        order_line: lines,
    };
    let payload = event
        .encode()
        .map_err(|source| StoreError::Encode { id, source })?;
    let lines = &event.order_line;
    sqlx::query(
        "WITH placed AS (
             INSERT INTO orders (id, customer_id, updated, shipping_street, shipping_zip, shipping_city,
                                 billing_street, billing_zip, billing_city)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id),
         lines AS (
             INSERT INTO order_lines (order_id, line_no, count, item_id, item_name, price)
             SELECT placed.id, l.line_no, l.count, l.item_id, l.item_name, l.price
             FROM placed, unnest($10::int[], $11::int[], $12::bigint[], $13::text[], $14::numeric[])
                  AS l(line_no, count, item_id, item_name, price))
         INSERT INTO outbox (record_key, payload) SELECT $15, $16 FROM placed",
    )
    .bind(id)
    .bind(order.customer_id)
    .bind(now)
    .bind(&ship.street)
    .bind(&ship.zip)
    .bind(&ship.city)
    .bind(&bill.street)
    .bind(&bill.zip)
    .bind(&bill.city)
    .bind((1i32..).take(lines.len()).collect::<Vec<i32>>())
    .bind(lines.iter().map(|l| l.count).collect::<Vec<i32>>())
    .bind(lines.iter().map(|l| l.item.item_id).collect::<Vec<i64>>())
    .bind(lines.iter().map(|l| l.item.name.clone()).collect::<Vec<String>>())
    .bind(lines.iter().map(|l| l.item.price.0).collect::<Vec<Decimal>>())
    .bind(record_key(id))
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(event)
}

/// One row of the order list.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    pub id: i64,
    pub customer: String,
    pub total_price: Decimal,
}

pub async fn list(pool: &PgPool) -> Result<Vec<OrderSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT o.id, c.firstname || ' ' || c.name, COALESCE(SUM(l.count * l.price), 0)
         FROM orders o JOIN customers c USING (customer_id) LEFT JOIN order_lines l ON l.order_id = o.id
         GROUP BY o.id, c.firstname, c.name ORDER BY o.id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OrderSummary {
                id: r.try_get(0)?,
                customer: r.try_get(1)?,
                total_price: r.try_get(2)?,
            })
        })
        .collect()
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<OrderPlaced>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT o.id, o.updated, o.shipping_street, o.shipping_zip, o.shipping_city, o.billing_street,
                o.billing_zip, o.billing_city, c.customer_id, c.name, c.firstname, c.email
         FROM orders o JOIN customers c USING (customer_id) WHERE o.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(
        "SELECT count, item_id, item_name, price FROM order_lines WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|l| {
        Ok(OrderLine {
            count: l.try_get(0)?,
            item: Item {
                item_id: l.try_get(1)?,
                name: l.try_get(2)?,
                price: Price(l.try_get(3)?),
            },
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(OrderPlaced {
        id: row.try_get(0)?,
        updated: row.try_get(1)?,
        shipping_address: Address {
            street: row.try_get(2)?,
            zip: row.try_get(3)?,
            city: row.try_get(4)?,
        },
        billing_address: Address {
            street: row.try_get(5)?,
            zip: row.try_get(6)?,
            city: row.try_get(7)?,
        },
        customer: Customer {
            customer_id: row.try_get(8)?,
            name: row.try_get(9)?,
            firstname: row.try_get(10)?,
            email: row.try_get(11)?,
        },
        number_of_lines: lines.len(),
        order_line: lines,
    }))
}
