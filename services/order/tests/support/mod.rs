//! Starting the three services in-process against the real broker and database, each with a fresh topic,
//! group and schema (owned by its own role), and waiting on conditions with a deadline.

#![allow(dead_code, unused_imports)] // Each test file uses a different part of this module.

pub mod process;

use ordersystem_service_kit::config::{
    ConsumerArgs, DatabaseArgs, GroupProtocol, HttpArgs, KafkaArgs, LogArgs, LogFormat,
};
use ordersystem_service_kit::shutdown::{self, Trigger};
pub use ordersystem_testkit::kafka::create_topic;
use ordersystem_testkit::names;
use ordersystem_testkit::schema::{self, ServiceDb};
pub use ordersystem_testkit::wait::until as wait_until;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

pub const PARTITIONS: i32 = 3;

pub fn database_args(db: &ServiceDb) -> DatabaseArgs {
    DatabaseArgs {
        host: db.host.clone(),
        port: db.port,
        name: db.name.clone(),
        user: db.user.clone(),
        password: db.password.clone().into(),
        schema: db.schema.clone(),
        sslmode: "prefer".into(),
        sslrootcert: None,
        max_connections: 5,
    }
}

pub fn kafka_args(bootstrap: &str, topic: &str) -> KafkaArgs {
    KafkaArgs {
        bootstrap_servers: bootstrap.into(),
        topic: topic.into(),
        metadata_refresh_ms: 5_000,
        security: Default::default(),
    }
}

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

fn http_args() -> HttpArgs {
    HttpArgs {
        listen_addr: "127.0.0.1:0".parse().expect("address"),
    }
}

fn log_args() -> LogArgs {
    LogArgs {
        log_format: LogFormat::Text,
    }
}

/// A service running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub db: ServiceDb,
    stop: Trigger,
    task: JoinHandle<()>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful shutdown, as on SIGTERM; waits until the service returned.
    pub async fn stop(self) {
        self.stop.fire();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("service stopped within 30 s")
            .expect("service task");
    }
}

async fn spawn_with<F, Fut, E>(db: ServiceDb, run: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, shutdown::Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Debug,
{
    ordersystem_service_kit::telemetry::init(LogFormat::Text);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, waiter) = shutdown::channel();
    let future = run(listener, waiter);
    let task = tokio::spawn(async move { future.await.expect("service ran") });
    let running = Running { addr, db, stop, task };
    wait_ready(&running).await;
    running
}

async fn wait_ready(running: &Running) {
    let client = reqwest::Client::new();
    let url = running.url("/readyz");
    wait_until("service ready", Duration::from_secs(30), || {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
}

pub async fn spawn_order(bootstrap: &str, topic: &str) -> Running {
    spawn_order_in(schema::fresh_schema("order").await, bootstrap, topic).await
}

pub async fn spawn_order_in(db: ServiceDb, bootstrap: &str, topic: &str) -> Running {
    let config = ordersystem_order::config::Config {
        http: http_args(),
        database: database_args(&db),
        kafka: kafka_args(bootstrap, topic),
        log: log_args(),
        outbox_message_timeout_ms: 120_000,
        outbox_poll_ms: 200,
        outbox_keep_sent_s: 3_600,
    };
    spawn_with(db, |listener, waiter| {
        ordersystem_order::run(config, listener, waiter)
    })
    .await
}

pub async fn spawn_invoicing(db: ServiceDb, bootstrap: &str, topic: &str, consumer: ConsumerArgs) -> Running {
    let config = ordersystem_invoicing::config::Config {
        http: http_args(),
        database: database_args(&db),
        kafka: kafka_args(bootstrap, topic),
        consumer,
        log: log_args(),
    };
    spawn_with(db, |listener, waiter| {
        ordersystem_invoicing::run(config, listener, waiter)
    })
    .await
}

pub async fn spawn_shipping(db: ServiceDb, bootstrap: &str, topic: &str, consumer: ConsumerArgs) -> Running {
    let config = ordersystem_shipping::config::Config {
        http: http_args(),
        database: database_args(&db),
        kafka: kafka_args(bootstrap, topic),
        consumer,
        log: log_args(),
    };
    spawn_with(db, |listener, waiter| {
        ordersystem_shipping::run(config, listener, waiter)
    })
    .await
}

/// Invoicing and shipping on `topic`, each with a fresh schema and its own new group of the KIP-848
/// `consumer` protocol the services use by default.
pub async fn spawn_consumers(bootstrap: &str, topic: &str) -> (Running, Running) {
    let invoicing = spawn_invoicing(
        schema::fresh_schema("invoicing").await,
        bootstrap,
        topic,
        consumer_args(&names::unique("invoicing"), GroupProtocol::Consumer),
    )
    .await;
    let shipping = spawn_shipping(
        schema::fresh_schema("shipping").await,
        bootstrap,
        topic,
        consumer_args(&names::unique("shipping"), GroupProtocol::Consumer),
    )
    .await;
    (invoicing, shipping)
}

/// A metric's value from the service's `/metrics` (sum over label sets), 0 when absent.
pub async fn metric(running: &Running, name: &str) -> f64 {
    ordersystem_testkit::metrics::scrape(&running.url("/metrics"), name).await
}

pub async fn count(db: &ServiceDb, sql: &str) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .expect("count query")
}
