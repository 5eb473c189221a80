//! All SQL of the order service: seed data, catalogue reads, placing an order together with its outbox row
//! in one transaction, and reading orders back.

use crate::domain::NewOrder;
use chrono::{DateTime, Utc};
use ordersystem_contract::partition::record_key;
use ordersystem_contract::{Address, Customer, Item, OrderLine, OrderPlaced, Price};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};

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

/// Store the order, its lines and its outbox row in one transaction; returns the event that was queued.
pub async fn place(pool: &PgPool, order: &NewOrder, now: DateTime<Utc>) -> Result<OrderPlaced, StoreError> {
    let mut tx = pool.begin().await?;
    let customer =
        sqlx::query("SELECT customer_id, name, firstname, email FROM customers WHERE customer_id = $1")
            .bind(order.customer_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::UnknownCustomer(order.customer_id))?;
    let customer = Customer {
        customer_id: customer.try_get(0)?,
        name: customer.try_get(1)?,
        firstname: customer.try_get(2)?,
        email: customer.try_get(3)?,
    };
    let mut lines = Vec::with_capacity(order.lines.len());
    for line in &order.lines {
        let item = sqlx::query("SELECT item_id, name, price FROM items WHERE item_id = $1")
            .bind(line.item_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::UnknownItem(line.item_id))?;
        let item = Item {
            item_id: item.try_get(0)?,
            name: item.try_get(1)?,
            price: Price(item.try_get(2)?),
        };
        lines.push(OrderLine {
            count: line.count,
            item,
        });
    }
    let (ship, bill) = (&order.shipping_address, &order.billing_address);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (customer_id, updated, shipping_street, shipping_zip, shipping_city,
                             billing_street, billing_zip, billing_city)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(customer.customer_id)
    .bind(now)
    .bind(&ship.street)
    .bind(&ship.zip)
    .bind(&ship.city)
    .bind(&bill.street)
    .bind(&bill.zip)
    .bind(&bill.city)
    .fetch_one(&mut *tx)
    .await?;
    insert_lines(&mut tx, id, &lines).await?;
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
    sqlx::query("INSERT INTO outbox (record_key, payload) VALUES ($1, $2)")
        .bind(record_key(id))
        .bind(payload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(event)
}

async fn insert_lines(tx: &mut PgConnection, order_id: i64, lines: &[OrderLine]) -> Result<(), sqlx::Error> {
    for (line_no, line) in (1i32..).zip(lines) {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, count, item_id, item_name, price) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(order_id)
        .bind(line_no)
        .bind(line.count)
        .bind(line.item.item_id)
        .bind(&line.item.name)
        .bind(line.item.price.0)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
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
