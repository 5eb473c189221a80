//! Starting invoicing in-process against the real broker and database (its own schema and role), and the
//! events the tests send.

#![allow(dead_code, unused_imports)] // Each test file uses a different part of this module.

use ordersystem_invoicing::config::Config;
use ordersystem_service_kit::config::{
    ConsumerArgs, DatabaseArgs, GroupProtocol, HttpArgs, KafkaArgs, LogArgs, LogFormat,
};
use ordersystem_service_kit::shutdown::{self, Trigger};
use ordersystem_testkit::schema::ServiceDb;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

pub use ordersystem_testkit::kafka::{create_topic, produce};
pub use ordersystem_testkit::wait::until as wait_until;

pub fn consumer_args(group: &str, protocol: GroupProtocol) -> ConsumerArgs {
    ConsumerArgs {
        group_id: Some(group.into()),
        group_protocol: protocol,
        session_timeout_ms: 6_000,
        max_poll_interval_ms: 10_000,
        retry_backoff_ms: 200,
        retry_backoff_max_ms: 1_000,
    }
}

/// A running invoicing instance.
pub struct Invoicing {
    pub addr: SocketAddr,
    pub db: ServiceDb,
    stop: Trigger,
    task: JoinHandle<()>,
}

impl Invoicing {
    /// Start with the database reached at `db_addr` (the real one, or a proxy in front of it).
    pub async fn start(
        db: ServiceDb,
        db_addr: (String, u16),
        bootstrap: &str,
        topic: &str,
        consumer: ConsumerArgs,
    ) -> Self {
        ordersystem_service_kit::telemetry::init(LogFormat::Text);
        let config = Config {
            http: HttpArgs {
                listen_addr: "127.0.0.1:0".parse().expect("address"),
            },
            database: DatabaseArgs {
                host: db_addr.0,
                port: db_addr.1,
                name: db.name.clone(),
                user: db.user.clone(),
                password: db.password.clone().into(),
                schema: db.schema.clone(),
                sslmode: "prefer".into(),
                sslrootcert: None,
                max_connections: 5,
            },
            kafka: KafkaArgs {
                bootstrap_servers: bootstrap.into(),
                topic: topic.into(),
                metadata_refresh_ms: 5_000,
                security: Default::default(),
            },
            consumer,
            log: LogArgs {
                log_format: LogFormat::Text,
            },
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, waiter) = shutdown::channel();
        let task = tokio::spawn(async move {
            ordersystem_invoicing::run(config, listener, waiter)
                .await
                .expect("invoicing ran")
        });
        let running = Self { addr, db, stop, task };
        let url = running.url("/readyz");
        wait_until("invoicing ready", Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        running
    }

    /// Start against the real database.
    pub async fn start_direct(db: ServiceDb, bootstrap: &str, topic: &str, consumer: ConsumerArgs) -> Self {
        let addr = (db.host.clone(), db.port);
        Self::start(db, addr, bootstrap, topic, consumer).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn metric(&self, name: &str) -> f64 {
        ordersystem_testkit::metrics::scrape(&self.url("/metrics"), name).await
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(self) {
        self.stop.fire();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stopped within 30 s")
            .expect("task");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let mut conn = self.db.connect().await;
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut conn)
            .await
            .expect("count query")
    }

    /// Wait until `sql` (a count) reaches `expected`.
    pub async fn wait_count(&self, sql: &str, expected: i64) {
        wait_until(
            &format!("{sql} = {expected}"),
            Duration::from_secs(60),
            || async { self.count(sql).await == expected },
        )
        .await;
    }
}

/// An OrderPlaced event in the design's format: `count` × iPod (42.0).
pub fn event(id: i64, count: i64) -> Vec<u8> {
    let value: Value = json!({
        "id": id,
        "customer": {"customerId": 1, "name": "Wolff", "firstname": "Eberhard", "email": "eberhard.wolff@gmail.com"},
        "updated": 1_685_091_732_000_i64,
        "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": count, "item": {"itemId": 1, "name": "iPod", "price": 42.0}}],
        "numberOfLines": 1
    });
    serde_json::to_vec(&value).expect("json")
}
