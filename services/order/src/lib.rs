//! The order service: takes orders through the web form and the JSON API, stores each with an outbox row in
//! one transaction, and runs the outbox relay that publishes them. Readiness depends on the database only,
//! so orders are still taken while Kafka is down; the backlog drains when it returns.

pub mod config;
pub mod domain;
pub mod http;
pub mod placer;
pub mod store;

use config::Config;
use ordersystem_service_kit::db::Database;
use ordersystem_service_kit::health;
use ordersystem_service_kit::metrics::Metrics;
use ordersystem_service_kit::process;
pub use ordersystem_service_kit::process::RunError;
use ordersystem_service_kit::relay::{self, Relay, RelaySettings};
use ordersystem_service_kit::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;

/// The service's own tables (`migrations/`); the kit's outbox table is migrated after them (`run`).
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| ordersystem_service_kit::db::expand_only(sqlx::migrate!("./migrations")));

/// The process: telemetry, listen on the configured address, run until SIGTERM.
pub async fn run_until_signal(config: Config) -> Result<(), RunError> {
    let (listen_addr, log_format) = (config.http.listen_addr, config.log.log_format);
    process::run_until_signal("order", listen_addr, log_format, |listener, shutdown| {
        run(config, listener, shutdown)
    })
    .await
}

/// Serve on `listener` and relay the outbox until `shutdown` fires.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let db = Database::connect_lazy(&config.database)?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let settings = RelaySettings {
        message_timeout: Duration::from_millis(config.outbox_message_timeout_ms),
        idle_poll: Duration::from_millis(config.outbox_poll_ms),
        keep_sent: Duration::from_secs(config.outbox_keep_sent_s),
    };
    let relay = Relay::new(
        &config.kafka,
        &settings,
        db.pool.clone(),
        metrics.clone(),
        Arc::clone(&wake),
    )?;
    let state = http::AppState {
        pool: db.pool.clone(),
        placer: placer::Placer::start(db.pool.clone(), metrics.clone()),
        metrics: metrics.clone(),
        relay_wake: wake,
    };
    let app = http::router(state).merge(health::router(db.clone(), metrics.clone()));
    let site = config.http.public.site("order");
    let server = tokio::spawn(health::serve(listener, app, metrics, site, shutdown.clone()));
    // Migrate and seed before relaying; the server answers /healthz (and /readyz "not ready") meanwhile.
    let seed = |pool: sqlx::PgPool| async move { store::seed(&pool).await };
    let migrators = [&*MIGRATOR, &*relay::store::MIGRATOR];
    if db.migrate_and_prepare(&migrators, shutdown.clone(), seed).await {
        relay.run(shutdown).await;
    }
    process::served(server).await
}
