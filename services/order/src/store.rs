//! All SQL of the order service: seed data, catalogue reads, placing an order together with its outbox row
//! in one transaction, and reading orders back.

use crate::domain::NewOrder;
use chrono::{DateTime, Utc};
use ordersystem_contract::partition::record_key;
use ordersystem_contract::{Address, Customer, Item, OrderLine, OrderPlaced, Price};
use ordersystem_service_kit::batch::Batch;
use ordersystem_service_kit::paging::{Page, Paging};
use ordersystem_service_kit::telemetry::TraceContext;
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
    #[error("the service is shutting down")]
    Stopped,
}

/// The design's seed data, with the ids the design gives it (customer 1 is Eberhard Wolff, item 1 the
/// iPod). Explicit ids, so replicas seeding an empty schema at once agree on them (a generated id is used
/// up by an insert that then conflicts); a restart adds nothing.
pub async fn seed(pool: &PgPool) -> Result<(), sqlx::Error> {
    let customers = [
        (1_i64, "Eberhard", "Wolff", "eberhard.wolff@gmail.com"),
        (2, "Rod", "Johnson", "rod@somewhere.com"),
    ];
    for (id, firstname, name, email) in customers {
        sqlx::query(
            "INSERT INTO customers (customer_id, firstname, name, email) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(firstname)
        .bind(name)
        .bind(email)
        .execute(pool)
        .await?;
    }
    let items = [
        (1_i64, "iPod", "42.00"),
        (2, "iPod touch", "21.00"),
        (3, "iPod nano", "1.00"),
        (4, "Apple TV", "100.00"),
    ];
    for (id, name, price) in items {
        sqlx::query(
            "INSERT INTO items (item_id, name, price) VALUES ($1, $2, $3::numeric) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(price)
        .execute(pool)
        .await?;
    }
    // The sequences start after the seed, for whatever is added later.
    for statement in [
        "SELECT setval(pg_get_serial_sequence('customers', 'customer_id'), (SELECT max(customer_id) FROM customers))",
        "SELECT setval(pg_get_serial_sequence('items', 'item_id'), (SELECT max(item_id) FROM items))",
    ] {
        sqlx::query(statement).execute(pool).await?;
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

/// An order to store, with the trace context of the request that placed it: its outbox row keeps that
/// context, and the relay sends it on with the event.
#[derive(Debug, Clone)]
pub struct ToPlace {
    pub order: NewOrder,
    pub trace: Option<TraceContext>,
}

/// Store one order, its lines and its outbox row atomically; returns the event that was queued.
pub async fn place(pool: &PgPool, order: &ToPlace, now: DateTime<Utc>) -> Result<OrderPlaced, StoreError> {
    let mut conn = pool.acquire().await?;
    place_all(&mut conn, std::slice::from_ref(order), now)
        .await?
        .pop()
        .unwrap_or_else(|| Err(StoreError::Database(sqlx::Error::RowNotFound)))
}

/// Store several orders, each with its lines and its outbox row, in one transaction; one outcome per order,
/// in the same order. An unknown customer or item refuses only its own order; `Err` means nothing was
/// stored.
///
/// Two round trips to the database however many orders, because every order pays for each one (on a busy
/// machine each is a wait for the CPU): one reads the customers and items and draws the order ids (the
/// events carry them), the other writes orders, lines and outbox rows in one statement, which commits as one
/// transaction. The foreign keys still refuse a customer or item removed in between.
pub async fn place_all(
    conn: &mut PgConnection,
    placements: &[ToPlace],
    now: DateTime<Utc>,
) -> Result<Vec<Result<OrderPlaced, StoreError>>, StoreError> {
    if placements.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<&NewOrder> = placements.iter().map(|p| &p.order).collect();
    let customer_ids: Vec<i64> = orders.iter().map(|o| o.customer_id).collect();
    let item_ids: Vec<i64> = orders
        .iter()
        .flat_map(|o| o.lines.iter().map(|line| line.item_id))
        .collect();
    let catalogue = sqlx::query(
        "SELECT (SELECT array_agg(nextval(pg_get_serial_sequence('orders', 'id'))) FROM generate_series(1, $1)),
                c.ids, c.names, c.firstnames, c.emails, i.ids, i.names, i.prices
         FROM (SELECT array_agg(customer_id) ids, array_agg(name) names, array_agg(firstname) firstnames,
                      array_agg(email) emails
               FROM customers WHERE customer_id = ANY($2)) c,
              (SELECT array_agg(item_id) ids, array_agg(name) names, array_agg(price) prices
               FROM items WHERE item_id = ANY($3)) i",
    )
    .bind(i32::try_from(orders.len()).unwrap_or(i32::MAX))
    .bind(&customer_ids)
    .bind(&item_ids)
    .fetch_one(&mut *conn)
    .await?;
    let ids: Vec<i64> = catalogue.try_get::<Option<_>, _>(0)?.unwrap_or_default();
    if ids.len() != orders.len() {
        return Err(StoreError::Database(sqlx::Error::RowNotFound));
    }
    let customers = Catalogue::<Customer>::customers(
        catalogue.try_get::<Option<_>, _>(1)?.unwrap_or_default(),
        catalogue.try_get::<Option<_>, _>(2)?.unwrap_or_default(),
        catalogue.try_get::<Option<_>, _>(3)?.unwrap_or_default(),
        catalogue.try_get::<Option<_>, _>(4)?.unwrap_or_default(),
    );
    let items = Catalogue::<Item>::items(
        catalogue.try_get::<Option<_>, _>(5)?.unwrap_or_default(),
        catalogue.try_get::<Option<_>, _>(6)?.unwrap_or_default(),
        catalogue.try_get::<Option<_>, _>(7)?.unwrap_or_default(),
    );
    // The event carries what the database keeps (microseconds), so a re-read order equals its event.
    let updated = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let outcomes: Vec<Result<(OrderPlaced, Vec<u8>), StoreError>> = orders
        .iter()
        .zip(ids)
        .map(|(order, id)| event_of(order, id, updated, &customers, &items))
        .collect();
    let placed: Vec<Queued<'_>> = outcomes
        .iter()
        .zip(placements)
        .filter_map(|(outcome, placement)| {
            let (event, payload) = outcome.as_ref().ok()?;
            Some(Queued {
                event,
                payload,
                trace: placement.trace.as_ref(),
            })
        })
        .collect();
    if !placed.is_empty() {
        insert(conn, &placed, now).await?;
    }
    Ok(outcomes.into_iter().map(|o| o.map(|(event, _)| event)).collect())
}

/// Rows of the catalogue looked up for a batch, by id.
struct Catalogue<T>(std::collections::HashMap<i64, T>);

impl Catalogue<Customer> {
    fn customers(ids: Vec<i64>, names: Vec<String>, firstnames: Vec<String>, emails: Vec<String>) -> Self {
        let rows = ids.into_iter().zip(names).zip(firstnames).zip(emails);
        Self(
            rows.map(|(((customer_id, name), firstname), email)| {
                let customer = Customer {
                    customer_id,
                    name,
                    firstname,
                    email,
                };
                (customer_id, customer)
            })
            .collect(),
        )
    }
}

impl Catalogue<Item> {
    fn items(ids: Vec<i64>, names: Vec<String>, prices: Vec<Decimal>) -> Self {
        let rows = ids.into_iter().zip(names).zip(prices);
        Self(
            rows.map(|((item_id, name), price)| {
                let item = Item {
                    item_id,
                    name,
                    price: Price(price),
                };
                (item_id, item)
            })
            .collect(),
        )
    }
}

/// The event of `order` with id `id`, and its encoded payload, from the catalogue looked up.
fn event_of(
    order: &NewOrder,
    id: i64,
    updated: DateTime<Utc>,
    customers: &Catalogue<Customer>,
    items: &Catalogue<Item>,
) -> Result<(OrderPlaced, Vec<u8>), StoreError> {
    let customer = customers
        .0
        .get(&order.customer_id)
        .ok_or(StoreError::UnknownCustomer(order.customer_id))?;
    let order_line = order
        .lines
        .iter()
        .map(|line| {
            let item = items
                .0
                .get(&line.item_id)
                .ok_or(StoreError::UnknownItem(line.item_id))?;
            Ok(OrderLine {
                count: line.count,
                item: item.clone(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let event = OrderPlaced {
        id,
        customer: customer.clone(),
        updated,
        shipping_address: order.shipping_address.clone(),
        billing_address: order.billing_address.clone(),
        number_of_lines: order_line.len(),
        order_line,
    };
    let payload = event
        .encode()
        .map_err(|source| StoreError::Encode { id, source })?;
    Ok((event, payload))
}

/// An order about to be written: its event, the event's bytes for the outbox, the request's trace context.
struct Queued<'a> {
    event: &'a OrderPlaced,
    payload: &'a [u8],
    trace: Option<&'a TraceContext>,
}

/// Writes the orders, their lines and their outbox rows in one statement (one transaction); the outbox rows
/// in the orders' order, which is the order the relay publishes them in.
async fn insert(
    conn: &mut PgConnection,
    placed: &[Queued<'_>],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let events: Vec<&OrderPlaced> = placed.iter().map(|queued| queued.event).collect();
    let mut batch = Batch::default();
    let orders = orders_table(&mut batch, &events, now);
    let order_lines = lines_table(&mut batch, &events);
    batch.column("record_key", events.iter().map(|e| record_key(e.id)));
    batch.column("payload", placed.iter().map(|queued| queued.payload));
    batch.column(
        "traceparent",
        placed
            .iter()
            .map(|queued| queued.trace.map(|t| t.traceparent.clone())),
    );
    batch.column(
        "tracestate",
        placed
            .iter()
            .map(|queued| queued.trace.and_then(|t| t.tracestate.clone())),
    );
    let outbox = batch.table();
    let (sql, arguments) = batch.statement(format!(
        "WITH placed AS ({orders} RETURNING id),
              lines AS ({order_lines} WHERE u.order_id IN (SELECT id FROM placed))
         INSERT INTO outbox ({columns})
         SELECT {columns} FROM {arrays} WITH ORDINALITY AS u ({columns}, n)
         WHERE EXISTS (SELECT 1 FROM placed)
         ORDER BY u.n",
        columns = outbox.columns,
        arrays = outbox.arrays,
    ))?;
    sqlx::query_with(sql, arguments).execute(conn).await?;
    Ok(())
}

/// `INSERT INTO orders` of `events`, all stored at `now`.
fn orders_table(batch: &mut Batch, events: &[&OrderPlaced], now: DateTime<Utc>) -> String {
    batch.column("id", events.iter().map(|e| e.id));
    batch.column("customer_id", events.iter().map(|e| e.customer.customer_id));
    batch.column("updated", events.iter().map(|_| now));
    batch.column(
        "shipping_street",
        events.iter().map(|e| e.shipping_address.street.as_str()),
    );
    batch.column(
        "shipping_zip",
        events.iter().map(|e| e.shipping_address.zip.as_str()),
    );
    batch.column(
        "shipping_city",
        events.iter().map(|e| e.shipping_address.city.as_str()),
    );
    batch.column(
        "billing_street",
        events.iter().map(|e| e.billing_address.street.as_str()),
    );
    batch.column(
        "billing_zip",
        events.iter().map(|e| e.billing_address.zip.as_str()),
    );
    batch.column(
        "billing_city",
        events.iter().map(|e| e.billing_address.city.as_str()),
    );
    batch.table().insert_into("orders")
}

/// `INSERT INTO order_lines` of the lines of `events`, numbered from 1 in each order.
fn lines_table(batch: &mut Batch, events: &[&OrderPlaced]) -> String {
    let lines = batch.lines(events.iter().map(|e| (e.id, e.order_line.as_slice())));
    batch.column("count", lines.iter().map(|l| l.count));
    batch.column("item_id", lines.iter().map(|l| l.item.item_id));
    batch.column("item_name", lines.iter().map(|l| l.item.name.as_str()));
    batch.column("price", lines.iter().map(|l| l.item.price.0));
    batch.table().insert_into("order_lines")
}

/// One row of the order list.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    pub id: i64,
    pub customer: String,
    #[serde(serialize_with = "ordersystem_service_kit::money::serialize")]
    pub total_price: Decimal,
}

/// The page of the order list `paging` asks for.
pub async fn list(pool: &PgPool, paging: &Paging) -> Result<Page<OrderSummary>, sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT o.id, c.firstname || ' ' || c.name AS customer,
                COALESCE(SUM(l.count * l.price), 0) AS total_price
         FROM (SELECT id, customer_id FROM orders WHERE id > $1 ORDER BY id LIMIT $2) o
         JOIN customers c USING (customer_id) LEFT JOIN order_lines l ON l.order_id = o.id
         GROUP BY o.id, c.firstname, c.name ORDER BY o.id",
    )
    .bind(paging.after_key())
    .bind(paging.fetch())
    .fetch_all(pool)
    .await?;
    Ok(paging.page(rows, |row: &OrderSummary| row.id))
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
