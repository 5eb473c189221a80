//! A consumer service's whole run, written once. Invoicing and shipping differ only in their handler,
//! pages, migrations and name; their configuration (`config::ConsumerConfig`), the process around them, the
//! order of start-up (serve, migrate, then consume) and what happens when consuming fails live here.

use axum::Router;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use std::sync::Arc;

use crate::config::ConsumerConfig;
use crate::consumer::{self, ConsumerLoop, Handler};
use crate::db::Database;
use crate::dead_letters::{self, DeadLetters};
use crate::health;
use crate::metrics::Metrics;
use crate::process::{self, RunError};
use crate::shutdown::Shutdown;

/// What a consumer service brings of its own.
#[derive(Debug)]
pub struct ConsumerService<H> {
    /// Stores one event inside the transaction it is given.
    pub handler: H,
    /// The service's own tables; the kit's dead-letter table is migrated after them.
    pub migrator: &'static Migrator,
    /// Its pages and JSON API; the dead letters' (`dead_letters`) are added to them.
    pub pages: fn(PgPool) -> Router,
    /// The service's name: in its log lines, and its group id when none is configured.
    pub name: &'static str,
}

impl<H: Handler> ConsumerService<H> {
    /// The process: telemetry, listen on the configured address, run until SIGTERM.
    pub async fn run_until_signal(self, config: ConsumerConfig) -> Result<(), RunError> {
        let (name, listen_addr, log_format) = (self.name, config.http.listen_addr, config.log.log_format);
        process::run_until_signal(name, listen_addr, log_format, |listener, shutdown| {
            self.run(&config, listener, shutdown)
        })
        .await
    }

    /// Serve on `listener` and consume until `shutdown` fires.
    pub async fn run(
        self,
        config: &ConsumerConfig,
        listener: tokio::net::TcpListener,
        shutdown: Shutdown,
    ) -> Result<(), RunError> {
        let metrics = Metrics::new();
        let db = Database::connect_lazy(&config.database)?;
        let handler = Arc::new(self.handler);
        let dead_letters = dead_letters::router(DeadLetters {
            pool: db.pool.clone(),
            handler: handler.clone(),
            metrics: metrics.clone(),
        });
        let app = (self.pages)(db.pool.clone())
            .merge(dead_letters)
            .merge(health::router(db.clone(), metrics.clone()));
        let site = config.http.public.site(self.name);
        let server = tokio::spawn(health::serve(
            listener,
            app,
            metrics.clone(),
            site,
            shutdown.clone(),
        ));
        // Consume only once the tables exist; until then /readyz says not ready.
        let migrators = [self.migrator, &*consumer::store::MIGRATOR];
        if db.migrate(&migrators, shutdown.clone()).await {
            let consumer_loop = ConsumerLoop {
                handler,
                pool: db.pool.clone(),
                metrics,
                default_group: self.name,
            };
            if let Err(error) = consumer_loop.run(&config.kafka, &config.consumer, shutdown).await {
                // A service that cannot consume must not look alive: stop serving and exit with the error.
                server.abort();
                return Err(error.into());
            }
        }
        process::served(server).await
    }
}
