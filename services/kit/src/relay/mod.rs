//! The outbox relay of the order service: publishes outbox rows with the idempotent producer and marks them
//! sent only after the broker acknowledged, in the same transaction that locked them. A crash between the
//! acknowledgement and the commit publishes a row again (consumers are idempotent); no row is ever skipped.
//! Several relays (order replicas) share the work through `FOR UPDATE SKIP LOCKED` and keep each key's rows
//! in order (see `store::Round::lock_next`); one relay's overlapping rounds do the same with each other.

pub mod store;

use crate::config::KafkaArgs;
use crate::db::WarmConnections;
use crate::kafka::{KafkaContext, producer_config};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::telemetry::{self, TraceContext};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use store::{OutboxRow, Round};
use tokio::sync::Notify;
use tokio::time::Sleep;

/// Rows per round; one per key, so also the most keys in one round. With a backlog, rounds this large are
/// what lets the relay keep up with about 3,000 orders/s on 2 cores (`BENCHMARKS.md`).
pub const BATCH: i64 = 500;
const BATCH_ROWS: usize = BATCH as usize;
/// Rounds under way at once: one locking and publishing, the others awaiting their acknowledgements. Each
/// holds a connection (its row locks) until it commits, and the relay keeps them warm between rounds, so
/// this many are taken from the HTTP side.
const ROUNDS_IN_FLIGHT: usize = 3;
/// Pause after a failed round, so a database or Kafka outage does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How long a row waits for room in the producer's local queue before it counts as not acknowledged.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
const QUEUE_RETRY: Duration = Duration::from_millis(10);

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
/// How often published rows older than `RelaySettings::keep_sent` are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

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

/// Deletes published rows once they are `keep_sent` old, so the outbox holds the rows on their way and
/// the latest hour or so, not every event ever sent. A failure only waits for the next interval.
async fn prune_sent(pool: PgPool, keep_sent: Duration, mut shutdown: Shutdown) {
    loop {
        match store::delete_sent_before(&pool, keep_sent).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "published outbox rows deleted"),
            Err(error) => tracing::warn!(%error, "deleting published outbox rows failed"),
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
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
    /// How long a published row stays in the outbox before it is deleted.
    pub keep_sent: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            message_timeout: Duration::from_secs(60),
            idle_poll: Duration::from_millis(500),
            keep_sent: Duration::from_secs(3_600),
        }
    }
}

/// A round whose rows are locked and handed to the producer (or failed to be).
struct Published {
    round: Round,
    rows: Vec<OutboxRow>,
    deliveries: Vec<Result<DeliveryFuture, KafkaError>>,
}

/// When `Relay::run` starts its next round: what its loop knows between one event and the next.
struct Pace {
    /// A round may find rows.
    due: bool,
    /// The next settled round may have made waiting rows eligible: a round saw rows waiting behind locked
    /// ones, or found nothing while others were still settling (their keys' next rows may be what it
    /// missed).
    look_after_settle: bool,
    /// Set after a failure: no new round until it elapses.
    backoff: Option<Pin<Box<Sleep>>>,
    /// Shutdown has begun: no new round; the loop ends when the rounds under way have settled.
    stopping: bool,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            due: true,
            look_after_settle: false,
            backoff: None,
            stopping: false,
        }
    }
}

impl Pace {
    /// A round may start: one is due, no failure is being waited out, none is publishing and there is room
    /// among the rounds awaiting their acknowledgements.
    fn may_start(&self, publishing: bool, settling: usize) -> bool {
        !self.stopping && self.due && self.backoff.is_none() && !publishing && settling < ROUNDS_IN_FLIGHT
    }

    /// A full round leaves more rows; rows waiting behind locked ones wait for a round to settle.
    fn published(&mut self, published: &Published) {
        self.due |= published.rows.len() >= BATCH_ROWS;
        self.look_after_settle |= published.round.rows_wait_behind();
    }

    /// A round found no rows it could take; those of the rounds still settling may follow theirs.
    fn found_nothing(&mut self, others_settling: bool) {
        self.look_after_settle |= others_settling;
    }

    fn settled(&mut self) {
        self.due |= std::mem::take(&mut self.look_after_settle);
    }

    fn failed(&mut self, error: &RelayError) {
        tracing::warn!(%error, "outbox round failed, retrying");
        self.backoff = Some(Box::pin(tokio::time::sleep(ERROR_PAUSE)));
    }
}

pub struct Relay {
    pool: PgPool,
    /// The rounds' connections, kept from one round to the next.
    warm: WarmConnections,
    metrics: Metrics,
    topic: String,
    producer: FutureProducer<KafkaContext>,
    wake: Arc<Notify>,
    idle_poll: Duration,
    keep_sent: Duration,
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
            warm: WarmConnections::new(pool.clone()),
            pool,
            metrics,
            topic: kafka.topic.clone(),
            producer,
            wake,
            idle_poll: settings.idle_poll,
            keep_sent: settings.keep_sent,
        })
    }

    /// Publish until `shutdown` fires; the rounds under way are finished first.
    ///
    /// Rounds overlap: as soon as one round's rows are handed to the producer the next round locks and
    /// publishes, while earlier ones still wait for their acknowledgements (at most [`ROUNDS_IN_FLIGHT`]).
    /// Each round marks and commits only its own acknowledged rows, so a failure in one round leaves its
    /// rows unsent for a later round and touches no other round's rows; per-key order holds for the same
    /// reason it holds between several relays (`store::Round::lock_next`).
    ///
    /// A round starts only when it may find rows: after a wake-up (an order written here), a full round
    /// (rows were left behind), a settled round that may have made later rows of its keys eligible, a
    /// failure's pause, or the idle poll (rows other replicas wrote). So at a few orders at a time a round
    /// follows each wake-up, not an empty round after every round.
    pub async fn run(self, mut shutdown: Shutdown) {
        tracing::info!(topic = %self.topic, "outbox relay started");
        // The backlog is counted on its own clock: a round waiting for an absent broker must not freeze it.
        let gauge = tokio::spawn(report_backlog(
            self.pool.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let prune = tokio::spawn(prune_sent(self.pool.clone(), self.keep_sent, shutdown.clone()));
        // Everything runs in this one task (no spawns): a failpoint that parks it stops every round at once.
        let mut publishing: Option<BoxFuture<'_, Result<Option<Published>, RelayError>>> = None;
        let mut settling = FuturesUnordered::new();
        let mut pace = Pace::default();
        let poll = tokio::time::sleep(self.idle_poll);
        tokio::pin!(poll);
        loop {
            if pace.may_start(publishing.is_some(), settling.len()) {
                pace.due = false;
                poll.as_mut().reset(tokio::time::Instant::now() + self.idle_poll);
                publishing = Some(Box::pin(self.publish()));
            }
            if pace.stopping && publishing.is_none() && settling.is_empty() {
                break;
            }
            tokio::select! {
                () = shutdown.wait(), if !pace.stopping => pace.stopping = true,
                published = async { publishing.as_mut().expect("guarded").await }, if publishing.is_some() => {
                    publishing = None;
                    match published {
                        Ok(Some(published)) => {
                            if !settling.is_empty() {
                                self.metrics.relay_rounds_overlapped.inc();
                            }
                            pace.published(&published);
                            settling.push(self.settle(published));
                        }
                        Ok(None) => pace.found_nothing(!settling.is_empty()),
                        Err(error) => pace.failed(&error),
                    }
                }
                Some(settled) = settling.next(), if !settling.is_empty() => match settled {
                    Ok(_) => pace.settled(),
                    Err(error) => pace.failed(&error),
                },
                () = async { pace.backoff.as_mut().expect("guarded").await }, if pace.backoff.is_some() => {
                    pace.backoff = None;
                    pace.due = true;
                }
                () = self.wake.notified(), if !pace.due => pace.due = true,
                () = &mut poll, if !pace.due => pace.due = true,
            }
        }
        gauge.abort();
        prune.abort();
        tracing::info!("outbox relay stopped");
    }

    /// One round start to end: lock, publish, await acknowledgements, mark the acknowledged rows, commit.
    /// Returns how many rows were published.
    pub async fn round(&self) -> Result<usize, RelayError> {
        match self.publish().await? {
            Some(round) => self.settle(round).await,
            None => Ok(0),
        }
    }

    /// Lock the next rows and hand them to the producer; `None` when no row is eligible.
    async fn publish(&self) -> Result<Option<Published>, RelayError> {
        let (round, rows) = Round::lock_next(&self.warm, BATCH).await?;
        if rows.is_empty() {
            round.finish(&self.warm, &[]).await?;
            return Ok(None);
        }
        crate::failpoint!(crate::failpoints::RELAY_BEFORE_PUBLISH);
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            deliveries.push(self.enqueue(row).await);
        }
        Ok(Some(Published {
            round,
            rows,
            deliveries,
        }))
    }

    /// Hand one row to the producer, waiting (up to [`QUEUE_WAIT`]) for room in its local queue. The
    /// record continues the trace of the request that wrote the row: a `publish` span, child of it, whose
    /// context goes out in the record's `traceparent` and `tracestate` headers.
    async fn enqueue(&self, row: &OutboxRow) -> Result<DeliveryFuture, KafkaError> {
        let span = tracing::info_span!("publish", otel.kind = "producer", record_key = %row.key);
        if let Some(trace) = &row.trace {
            telemetry::continue_from(&span, trace);
        }
        let headers = TraceContext::of(&span).map(|trace| {
            trace
                .headers()
                .fold(OwnedHeaders::new(), |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                })
        });
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        loop {
            let mut record = FutureRecord::to(&self.topic)
                .key(row.key.as_bytes())
                .payload(&row.payload);
            if let Some(headers) = &headers {
                record = record.headers(headers.clone());
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(QUEUE_RETRY).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Await the round's acknowledgements, mark the acknowledged rows sent and commit (which releases the
    /// locks of the rows that were not, for a later round).
    async fn settle(&self, published: Published) -> Result<usize, RelayError> {
        let Published {
            round,
            rows,
            deliveries,
        } = published;
        let mut acked = Vec::with_capacity(rows.len());
        for (row, delivery) in rows.iter().zip(deliveries) {
            let result = match delivery {
                Ok(future) => match future.await {
                    Ok(Ok(delivery)) => Ok(delivery),
                    Ok(Err((error, _))) => Err(error),
                    // Only when the producer is gone, which it is not while `self` lives.
                    Err(_canceled) => Err(KafkaError::Canceled),
                },
                Err(error) => Err(error),
            };
            match result {
                Ok(delivery) => {
                    tracing::debug!(outbox_id = row.id, key = %row.key, partition = delivery.partition, offset = delivery.offset, "published");
                    acked.push(row.id);
                }
                Err(error) => {
                    tracing::warn!(outbox_id = row.id, key = %row.key, %error, "not acknowledged")
                }
            }
        }
        crate::failpoint!(crate::failpoints::RELAY_ACKNOWLEDGED);
        round.finish(&self.warm, &acked).await?;
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
