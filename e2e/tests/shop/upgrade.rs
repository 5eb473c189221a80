//! Upgrading the database: the kit's tables (the outbox, dead letters) come from the kit's own migrations,
//! run after each service's own, each set with its own history table. A database the previous binaries
//! migrated (each service's migrations alone, which made the kit's tables too) starts under these binaries,
//! keeps its history and its rows, and the kit's tables work; the kit's migrations make exactly the tables
//! the services' shipped ones made; and no shipped migration changes (sqlx refuses to start when an applied
//! one did).

use crate::support::*;
use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_service_kit::consumer;
use ordersystem_service_kit::relay;
use ordersystem_testkit::kafka::produce;
use ordersystem_testkit::schema::{self, ServiceDb};
use ordersystem_testkit::{env, names, orders};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use std::time::Duration;

/// An order the previous order binary committed but had not published when it was replaced.
const LEFT_UNSENT: i64 = 900_001;

/// A fresh schema migrated as the previous binaries did it: the service's own migrations alone, in
/// `_sqlx_migrations`. They are the files the previous binaries embedded: shipped migrations never change
/// (`shipped_migrations_are_never_edited`).
async fn migrated_by_the_previous_binary(prefix: &str, own: &Migrator) -> ServiceDb {
    let db = schema::fresh_schema(prefix).await;
    own.run(&mut db.connect().await)
        .await
        .expect("the service's own migrations");
    db
}

async fn execute(db: &ServiceDb, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut db.connect().await)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// (version, checksum, success) of each migration recorded in `history`.
async fn history(db: &ServiceDb, history: &str) -> Vec<(i64, Vec<u8>, bool)> {
    let sql = format!("SELECT version, checksum, success FROM {history} ORDER BY version");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut db.connect().await)
        .await
        .unwrap_or_else(|e| panic!("{history}: {e}"))
}

fn event(id: i64) -> Value {
    json!({
        "id": id,
        "customer": {"customerId": 2, "name": "Johnson", "firstname": "Rod", "email": "rod@somewhere.com"},
        "updated": "2023-05-26T09:02:12Z",
        "shippingAddress": {"street": "Market Street 1", "zip": "94105", "city": "San Francisco"},
        "billingAddress": {"street": "Billing Road 2", "zip": "94000", "city": "Oakland"},
        "orderLine": [{"count": 2, "item": {"itemId": 4, "name": "Apple TV", "price": 100.0}}]
    })
}

async fn place_order(order: &Running) -> i64 {
    let body = json!({
        "customerId": 2,
        "shippingAddress": {"street": "Market Street 1", "zip": "94105", "city": "San Francisco"},
        "billingAddress": {"street": "Billing Road 2", "zip": "94000", "city": "Oakland"},
        "orderLine": [{"count": 1, "itemId": 4}]
    });
    let created = orders::place(&reqwest::Client::new(), &order.url(""), &body).await;
    created["id"].as_i64().expect("id")
}

async fn start_all(order: ServiceDb, invoicing: ServiceDb, shipping: ServiceDb, topic: &str) -> [Running; 3] {
    let bootstrap = env::kafka_bootstrap();
    // The group ids are kept across restarts in the schemas' names: one group per service and test.
    let group = |db: &ServiceDb| consumer_args(&db.schema, GroupProtocol::Consumer);
    let (invoicing_group, shipping_group) = (group(&invoicing), group(&shipping));
    [
        spawn_order_in(order, &bootstrap, topic).await,
        spawn_invoicing(invoicing, &bootstrap, topic, invoicing_group).await,
        spawn_shipping(shipping, &bootstrap, topic, shipping_group).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn databases_the_previous_binaries_migrated_start_under_these_and_the_kits_tables_work() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("upgrade");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let order_db = migrated_by_the_previous_binary("order", &ordersystem_order::MIGRATOR).await;
    let invoicing_db = migrated_by_the_previous_binary("invoicing", &ordersystem_invoicing::MIGRATOR).await;
    let shipping_db = migrated_by_the_previous_binary("shipping", &ordersystem_shipping::MIGRATOR).await;
    // What the previous binaries left in the kit's tables: an order's outbox row not yet published, and a
    // dead letter in each consumer's schema.
    sqlx::query("INSERT INTO outbox (record_key, payload) VALUES ($1, $2)")
        .bind(LEFT_UNSENT.to_string())
        .bind(event(LEFT_UNSENT).to_string().into_bytes())
        .execute(&mut order_db.connect().await)
        .await
        .expect("an unsent outbox row");
    let old_letter = r#"INSERT INTO dead_letters (topic, partition, "offset", payload, reason, error)
                        VALUES ('earlier', 0, 0, 'null', 'Undecodable', 'before the upgrade')"#;
    execute(&invoicing_db, old_letter).await;
    execute(&shipping_db, old_letter).await;
    let order_history = history(&order_db, "_sqlx_migrations").await;
    let invoicing_history = history(&invoicing_db, "_sqlx_migrations").await;
    let shipping_history = history(&shipping_db, "_sqlx_migrations").await;

    // Each start waits for /readyz, which the services report only once every migration ran.
    let running = start_all(
        order_db.clone(),
        invoicing_db.clone(),
        shipping_db.clone(),
        &topic,
    )
    .await;
    let placed = place_order(&running[0]).await;
    produce(&bootstrap, &topic, "poison", b"not an event").await;

    // The outbox: the row left unsent and the new order's row published and marked sent.
    wait_until("both outbox rows sent", Duration::from_secs(60), || async {
        count(&order_db, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").await == 2
    })
    .await;
    for (db, table) in [(&invoicing_db, "invoices"), (&shipping_db, "shipments")] {
        let stored = format!("SELECT count(*) FROM {table} WHERE order_id IN ({LEFT_UNSENT}, {placed})");
        wait_until(
            &format!("both orders in {table}"),
            Duration::from_secs(60),
            || async { count(db, &stored).await == 2 },
        )
        .await;
        // Dead letters: the earlier one kept, the poison record added beside it.
        wait_until(
            "the poison record dead-lettered",
            Duration::from_secs(60),
            || async {
                count(
                    db,
                    "SELECT count(*) FROM dead_letters WHERE payload = 'not an event'",
                )
                .await
                    == 1
            },
        )
        .await;
        assert_eq!(count(db, "SELECT count(*) FROM dead_letters").await, 2);
    }

    // The services' histories are as the previous binaries left them; the kit's are apart from them.
    assert_eq!(history(&order_db, "_sqlx_migrations").await, order_history);
    assert_eq!(
        history(&invoicing_db, "_sqlx_migrations").await,
        invoicing_history
    );
    assert_eq!(history(&shipping_db, "_sqlx_migrations").await, shipping_history);
    let applied = |set: &Migrator| {
        set.iter()
            .map(|m| (m.version, m.checksum.to_vec(), true))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        history(&order_db, "_sqlx_migrations_outbox").await,
        applied(&relay::store::MIGRATOR)
    );
    for db in [&invoicing_db, &shipping_db] {
        assert_eq!(
            history(db, "_sqlx_migrations_dead_letters").await,
            applied(&consumer::store::MIGRATOR)
        );
    }

    // And they start again, now with every set recorded.
    for service in running {
        service.stop().await;
    }
    let running = start_all(order_db, invoicing_db, shipping_db, &topic).await;
    for service in running {
        service.stop().await;
    }
}

/// A table's shape: its columns (name, type, nullability, default) and its indexes' definitions, the
/// schema's name left out.
async fn shape(db: &ServiceDb, table: &str) -> (Vec<(String, String, String, Option<String>)>, Vec<String>) {
    let mut conn = db.connect().await;
    let columns = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text, column_default::text
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(&db.schema)
    .bind(table)
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT replace(indexdef, $1 || '.', '') FROM pg_indexes
         WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname",
    )
    .bind(&db.schema)
    .bind(table)
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    assert!(!columns.is_empty(), "{table} exists in {}", db.schema);
    (columns, indexes)
}

/// A fresh schema with `sets` run in order, as a service runs its own and the kit's.
async fn migrated(prefix: &str, sets: &[&Migrator]) -> ServiceDb {
    let db = schema::fresh_schema(prefix).await;
    let mut conn = db.connect().await;
    for set in sets {
        set.run(&mut conn).await.expect("migrations");
    }
    db
}

#[tokio::test]
async fn the_kits_migrations_make_the_tables_the_services_shipped_migrations_made() {
    let outbox = &*relay::store::MIGRATOR;
    let by_the_kit_alone = shape(&migrated("outbox", &[outbox]).await, "outbox").await;
    let by_order = migrated("order", &[&ordersystem_order::MIGRATOR, outbox]).await;
    assert_eq!(shape(&by_order, "outbox").await, by_the_kit_alone);

    let dead_letters = &*consumer::store::MIGRATOR;
    let by_the_kit_alone = shape(&migrated("dead_letters", &[dead_letters]).await, "dead_letters").await;
    for own in [&ordersystem_invoicing::MIGRATOR, &ordersystem_shipping::MIGRATOR] {
        let by_service = migrated("consumer", &[own, dead_letters]).await;
        assert_eq!(shape(&by_service, "dead_letters").await, by_the_kit_alone);
    }
}

/// sqlx records each applied migration's checksum (SHA-384 of its SQL) and refuses to start when a
/// migration it applied has changed: every database already migrated would stop starting.
#[test]
fn shipped_migrations_are_never_edited() {
    let shipped: [(&str, &Migrator, &[&str]); 5] = [
        (
            "order",
            &ordersystem_order::MIGRATOR,
            &[
                "39143b1a7a6831c7339cecf1ad6cb8e3721d5ecd78b1e9164db114d2e33810b9bdfdc3fe5d3a2ecd13490c382c46e995",
                "33de68019a021903bcd63d42345e44380a55830ca76140a0f5350297dfde42171410db143c8b1e2aef59eaa48ad9b18e",
                "f8e62fafd3f6e4d5e3128e8492c6acf59e23b38ebbc6fa64c6c8226d9a9a7560556159dd59d77fc2b251606759496ba9",
            ],
        ),
        (
            "invoicing",
            &ordersystem_invoicing::MIGRATOR,
            &[
                "cd97593f4d4983adf3032540afa43faf593834cbf9b96b6c59be59aa1e51284e22f2fbcd7de7dabca7547030e7a85d82",
            ],
        ),
        (
            "shipping",
            &ordersystem_shipping::MIGRATOR,
            &[
                "020f146529bf12936028780d0eafe83eba2032af2b494bc3c27c316547896e66698ec6bc570764b0d3dc80264762b7e6",
            ],
        ),
        (
            "the kit's outbox",
            &relay::store::MIGRATOR,
            &[
                "19c4ee5ccd5181ab5ba27b8c3abe5f4de611326488b6d9e7949f77daa970af70b9a689a74da93e9293a9df16647b1966",
            ],
        ),
        (
            "the kit's dead letters",
            &consumer::store::MIGRATOR,
            &[
                "5540f7e587e4f91c24deae1ea583ff372d1dfd587ad3ad9aedb8886fff7658c8162ecb8a9c30f31c27a66bde9ecee104",
            ],
        ),
    ];
    for (set, migrator, checksums) in shipped {
        let actual: Vec<String> = migrator
            .iter()
            .map(|m| m.checksum.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        for (version, expected) in (1..).zip(checksums) {
            assert_eq!(
                actual.get(version - 1).map(String::as_str),
                Some(*expected),
                "{set} migration {version} changed after it shipped: add a new migration instead"
            );
        }
    }
}
