//! Order in-process against the real broker and database, on a fresh schema owned by its own role.

pub use ordersystem_testkit::kafka::create_topic;
use ordersystem_testkit::schema::{self, ServiceDb};
use ordersystem_testkit::service;
pub use ordersystem_testkit::service::Running;

pub const PARTITIONS: i32 = 3;

pub async fn spawn_order(bootstrap: &str, topic: &str) -> Running {
    let db = schema::fresh_schema("order").await;
    let config = ordersystem_order::config::Config {
        http: service::http_args(),
        database: service::database_args(&db),
        kafka: service::kafka_args(bootstrap, topic),
        log: service::log_args(),
        outbox_message_timeout_ms: 120_000,
        outbox_poll_ms: 200,
        outbox_keep_sent_s: 3_600,
    };
    Running::start(db, |listener, waiter| {
        ordersystem_order::run(config, listener, waiter)
    })
    .await
}

/// A metric's value from the service's `/metrics` (sum over label sets), 0 when absent.
pub async fn metric(running: &Running, name: &str) -> f64 {
    running.metric(name).await
}

pub async fn count(db: &ServiceDb, sql: &str) -> i64 {
    db.count(sql).await
}
