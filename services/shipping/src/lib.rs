//! The shipping service: consumes OrderPlaced events in its own consumer group (the shared loop of the
//! service kit) and keeps one shipment per order in its own schema; shows them as pages and JSON.

pub mod config;
pub mod consumer;
pub mod domain;
pub mod http;
pub mod store;

use config::Config;
use ordersystem_service_kit::consumer_service::ConsumerService;
pub use ordersystem_service_kit::process::RunError;
use ordersystem_service_kit::shutdown::Shutdown;
use tokio::net::TcpListener;

/// The service's own tables (`migrations/`); the kit's dead-letter table is migrated after them
/// (`ConsumerService`).
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| ordersystem_service_kit::db::expand_only(sqlx::migrate!("./migrations")));

/// The shipping service as the kit runs it: its handler, tables, pages and name.
pub fn service() -> ConsumerService<consumer::ShipmentHandler> {
    ConsumerService {
        handler: consumer::ShipmentHandler,
        migrator: &MIGRATOR,
        pages: http::router,
        name: "shipping",
    }
}

/// Serve on `listener` and consume until `shutdown` fires.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), RunError> {
    service().run(&config, listener, shutdown).await
}
