//! The outbox relay of the order service: publishes outbox rows with the idempotent producer and marks them
//! sent only after the broker acknowledged, in the same transaction that locked them. A crash between the
//! acknowledgement and the commit publishes a row again (consumers are idempotent); no row is ever skipped.
//! Several relays (order replicas) share the work through `FOR UPDATE SKIP LOCKED` and keep each key's rows
//! in order (see `store::lock_next`).

pub mod store;

use crate::config::KafkaArgs;
use crate::kafka::{KafkaContext, producer_config};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Rows per round; one per key, so also the most keys in flight at once.
const BATCH: i64 = 200;
/// Pause after a failed round, so a database or Kafka outage does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("failed to create the Kafka producer")]
    Create {
        #[source]
        source: KafkaError,
    },
    #[error("outbox database access failed")]
    Database {
        #[from]
        source: sqlx::Error,
    },
    #[error("{failed} of {total} events were not acknowledged by Kafka")]
    Unacknowledged { failed: usize, total: usize },
}

/// How often the outbox backlog gauge is refreshed.
const BACKLOG_INTERVAL: Duration = Duration::from_secs(1);

async fn report_backlog(pool: PgPool, metrics: Metrics, mut shutdown: Shutdown) {
    loop {
        if let Ok(backlog) = store::backlog(&pool).await {
            metrics.outbox_backlog.set(backlog);
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(BACKLOG_INTERVAL) => {}
        }
    }
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long to wait for a delivery before the row is retried in a later round.
    pub message_timeout: Duration,
    /// Polling interval when idle and not woken.
    pub idle_poll: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            message_timeout: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
        }
    }
}

pub struct Relay {
    pool: PgPool,
    metrics: Metrics,
    topic: String,
    producer: FutureProducer<KafkaContext>,
    wake: Arc<Notify>,
    idle_poll: Duration,
}

impl Relay {
    /// `wake` is notified by whoever writes an outbox row, so events leave without waiting for the poll.
    pub fn new(
        kafka: &KafkaArgs,
        settings: &RelaySettings,
        pool: PgPool,
        metrics: Metrics,
        wake: Arc<Notify>,
    ) -> Result<Self, RelayError> {
        let timeout_ms = u32::try_from(settings.message_timeout.as_millis()).unwrap_or(u32::MAX);
        let producer = producer_config(kafka, timeout_ms)
            .create_with_context(KafkaContext::new(metrics.clone()))
            .map_err(|source| RelayError::Create { source })?;
        Ok(Self {
            pool,
            metrics,
            topic: kafka.topic.clone(),
            producer,
            wake,
            idle_poll: settings.idle_poll,
        })
    }

    /// Publish until `shutdown` fires; the round in hand is finished first.
    pub async fn run(self, mut shutdown: Shutdown) {
        tracing::info!(topic = %self.topic, "outbox relay started");
        // The backlog is counted on its own clock: a round waiting for an absent broker must not freeze it.
        let gauge = tokio::spawn(report_backlog(
            self.pool.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        loop {
            let pause = match self.round().await {
                Ok(0) => self.idle_poll,
                Ok(_) => Duration::ZERO,
                Err(error) => {
                    tracing::warn!(%error, "outbox round failed, retrying");
                    ERROR_PAUSE
                }
            };
            if shutdown.is_fired() {
                break;
            }
            if !pause.is_zero() {
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        gauge.abort();
        tracing::info!("outbox relay stopped");
    }

    /// One batch: lock, produce, await acknowledgements, mark the acknowledged rows, commit. Returns how
    /// many rows were published.
    pub async fn round(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows = store::lock_next(&mut tx, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        crate::failpoint!(crate::failpoints::RELAY_BEFORE_PUBLISH);
        let deliveries = rows.iter().map(|row| {
            let record = FutureRecord::to(&self.topic)
                .key(row.key.as_bytes())
                .payload(&row.payload);
            // Waits for room in the local queue rather than failing when it is full.
            self.producer.send(record, Duration::from_secs(5))
        });
        let results = futures::future::join_all(deliveries).await;
        let mut acked = Vec::with_capacity(rows.len());
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(delivery) => {
                    tracing::debug!(outbox_id = row.id, key = %row.key, partition = delivery.partition, offset = delivery.offset, "published");
                    acked.push(row.id);
                }
                Err((error, _)) => {
                    tracing::warn!(outbox_id = row.id, key = %row.key, %error, "not acknowledged")
                }
            }
        }
        crate::failpoint!(crate::failpoints::RELAY_ACKNOWLEDGED);
        store::mark_sent(&mut tx, &acked).await?;
        tx.commit().await?;
        self.metrics.events_produced.inc_by(acked.len() as u64);
        if !acked.is_empty() {
            self.metrics.kafka_connected.set(1);
        }
        if acked.len() < rows.len() {
            return Err(RelayError::Unacknowledged {
                failed: rows.len() - acked.len(),
                total: rows.len(),
            });
        }
        Ok(acked.len())
    }
}
