//! The three services in-process against the real broker and database, each with a fresh schema (owned by
//! its own role) and, for the consumers, a group of its own.

use ordersystem_service_kit::config::{ConsumerArgs, ConsumerConfig, GroupProtocol, HttpArgs};
use ordersystem_service_kit::public::PublicUrls;
pub use ordersystem_testkit::kafka::create_topic;
use ordersystem_testkit::schema::{self, ServiceDb};
pub use ordersystem_testkit::service::{Running, consumer_args};
pub use ordersystem_testkit::wait::until as wait_until;
use ordersystem_testkit::{names, service};

pub const PARTITIONS: i32 = 3;

pub async fn spawn_order(bootstrap: &str, topic: &str) -> Running {
    spawn_order_in(schema::fresh_schema("order").await, bootstrap, topic).await
}

pub async fn spawn_order_in(db: ServiceDb, bootstrap: &str, topic: &str) -> Running {
    spawn_order_published(db, bootstrap, topic, Published::unpublished().await).await
}

/// Where a service listens and the public URLs it is told (`spec.expose`).
pub struct Published {
    pub listener: tokio::net::TcpListener,
    pub urls: PublicUrls,
}

impl Published {
    /// Any free port on loopback, no public URLs.
    pub async fn unpublished() -> Self {
        Self::on("127.0.0.1", PublicUrls::default()).await
    }

    /// Any free port on `ip`, telling the service `urls`.
    pub async fn on(ip: &str, urls: PublicUrls) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        Self { listener, urls }
    }
}

/// Order, told the services' public URLs (`spec.expose`): it serves its pages under its own URL's path
/// and links an order's invoice and shipment.
pub async fn spawn_order_published(db: ServiceDb, bootstrap: &str, topic: &str, at: Published) -> Running {
    let config = ordersystem_order::config::Config {
        http: HttpArgs {
            public: at.urls,
            ..service::http_args()
        },
        database: service::database_args(&db),
        kafka: service::kafka_args(bootstrap, topic),
        log: service::log_args(),
        outbox_message_timeout_ms: 120_000,
        outbox_poll_ms: 200,
        outbox_keep_sent_s: 3_600,
    };
    Running::start_on(at.listener, db, |listener, waiter| {
        ordersystem_order::run(config, listener, waiter)
    })
    .await
}

pub async fn spawn_invoicing(db: ServiceDb, bootstrap: &str, topic: &str, consumer: ConsumerArgs) -> Running {
    spawn_invoicing_published(db, bootstrap, topic, consumer, Published::unpublished().await).await
}

/// Invoicing, told the services' public URLs, as order by `spawn_order_published`.
pub async fn spawn_invoicing_published(
    db: ServiceDb,
    bootstrap: &str,
    topic: &str,
    consumer: ConsumerArgs,
    at: Published,
) -> Running {
    let config = consumer_config(&db, bootstrap, topic, consumer, at.urls);
    Running::start_on(at.listener, db, |listener, waiter| {
        ordersystem_invoicing::run(config, listener, waiter)
    })
    .await
}

/// A consumer service's configuration, told `urls`.
fn consumer_config(
    db: &ServiceDb,
    bootstrap: &str,
    topic: &str,
    consumer: ConsumerArgs,
    urls: PublicUrls,
) -> ConsumerConfig {
    let mut config = service::consumer_config(db, bootstrap, topic, consumer);
    config.http.public = urls;
    config
}

pub async fn spawn_shipping(db: ServiceDb, bootstrap: &str, topic: &str, consumer: ConsumerArgs) -> Running {
    spawn_shipping_published(db, bootstrap, topic, consumer, Published::unpublished().await).await
}

/// Shipping, told the services' public URLs, as order by `spawn_order_published`.
pub async fn spawn_shipping_published(
    db: ServiceDb,
    bootstrap: &str,
    topic: &str,
    consumer: ConsumerArgs,
    at: Published,
) -> Running {
    let config = consumer_config(&db, bootstrap, topic, consumer, at.urls);
    Running::start_on(at.listener, db, |listener, waiter| {
        ordersystem_shipping::run(config, listener, waiter)
    })
    .await
}

/// Invoicing and shipping on `topic`, each with a fresh schema and its own new group of the KIP-848
/// `consumer` protocol, the services' default without an instance id.
pub async fn spawn_consumers(bootstrap: &str, topic: &str) -> (Running, Running) {
    let fresh = async |service| {
        let group = consumer_args(&names::unique(service), GroupProtocol::Consumer);
        (schema::fresh_schema(service).await, group)
    };
    let (db, group) = fresh("invoicing").await;
    let invoicing = spawn_invoicing(db, bootstrap, topic, group).await;
    let (db, group) = fresh("shipping").await;
    (invoicing, spawn_shipping(db, bootstrap, topic, group).await)
}

/// A metric's value from the service's `/metrics` (sum over label sets), 0 when absent.
pub async fn metric(running: &Running, name: &str) -> f64 {
    running.metric(name).await
}

pub async fn count(db: &ServiceDb, sql: &str) -> i64 {
    db.count(sql).await
}

/// The body of `GET url`.
pub async fn text(client: &reqwest::Client, url: String) -> String {
    let response = client.get(&url).send().await;
    let response = response.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}
