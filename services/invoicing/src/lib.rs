//! The invoicing service: consumes OrderPlaced events in its own consumer group (the shared loop of the
//! service kit) and keeps one invoice per order in its own schema; shows them as pages and JSON.

pub mod config;
pub mod consumer;
pub mod domain;
pub mod http;
pub mod store;

use config::Config;
use ordersystem_service_kit::consumer::{ConsumerError, ConsumerLoop};
use ordersystem_service_kit::db::{Database, DbError};
use ordersystem_service_kit::health;
use ordersystem_service_kit::metrics::Metrics;
use ordersystem_service_kit::shutdown::Shutdown;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("database configuration is invalid")]
    Database(#[from] DbError),
    #[error("the consumer failed")]
    Consumer(#[from] ConsumerError),
    #[error("the HTTP server failed")]
    Serve(#[from] std::io::Error),
}

/// Serve on `listener` and consume until `shutdown` fires.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let db = Database::connect_lazy(&config.database)?;
    let app = http::router(db.pool.clone()).merge(health::router(db.clone(), metrics.clone()));
    let server = tokio::spawn(health::serve(listener, app, metrics.clone(), shutdown.clone()));
    // Consume only once the tables exist; until then /readyz says not ready.
    if db.migrate(&MIGRATOR, shutdown.clone()).await {
        let consumer = ConsumerLoop {
            handler: consumer::InvoiceHandler,
            pool: db.pool.clone(),
            metrics,
            default_group: "invoicing",
        };
        if let Err(error) = consumer.run(&config.kafka, &config.consumer, shutdown).await {
            // A service that cannot consume must not look alive: stop serving and exit with the error.
            server.abort();
            return Err(error.into());
        }
    }
    match server.await {
        Ok(result) => result?,
        Err(join) => tracing::error!(error = %join, "HTTP server task failed"),
    }
    Ok(())
}
