//! Starting invoicing in-process against the real broker and database (its own schema and role), and the
//! events the tests send.

use ordersystem_service_kit::config::{ConsumerArgs, GroupProtocol};
pub use ordersystem_testkit::events::order_placed as event;
pub use ordersystem_testkit::kafka::create_topic;
use ordersystem_testkit::names;
use ordersystem_testkit::schema::{self, ServiceDb};
use ordersystem_testkit::service::{self, Running};

/// Start with the database reached at `db_addr` (the real one, or a proxy in front of it).
pub async fn start(
    db: ServiceDb,
    db_addr: (String, u16),
    bootstrap: &str,
    topic: &str,
    consumer: ConsumerArgs,
) -> Running {
    let mut config = service::consumer_config(&db, bootstrap, topic, consumer);
    (config.database.host, config.database.port) = db_addr;
    Running::start(db, |listener, waiter| {
        ordersystem_invoicing::run(config, listener, waiter)
    })
    .await
}

/// Start against the real database.
pub async fn start_direct(db: ServiceDb, bootstrap: &str, topic: &str, consumer: ConsumerArgs) -> Running {
    let addr = (db.host.clone(), db.port);
    start(db, addr, bootstrap, topic, consumer).await
}

/// Start against the real database in a new group of `protocol`.
pub async fn start_in_new_group(
    db: ServiceDb,
    bootstrap: &str,
    topic: &str,
    protocol: GroupProtocol,
) -> Running {
    let group = service::consumer_args(&names::unique("inv"), protocol);
    start_direct(db, bootstrap, topic, group).await
}

/// Start on a fresh schema in a new group of `protocol`.
pub async fn start_fresh(bootstrap: &str, topic: &str, protocol: GroupProtocol) -> Running {
    start_in_new_group(
        schema::fresh_schema("invoicing").await,
        bootstrap,
        topic,
        protocol,
    )
    .await
}
