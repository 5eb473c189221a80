//! The consumer loop of invoicing and shipping, written once. A service supplies a `Handler` naming the
//! view of the event it reads (`Handler::Event`, a tolerant reader: only the fields that service stores)
//! and storing such events with one writing statement on the connection it is given; the loop owns
//! delivery:
//!
//! - each record is decoded as the handler's view, so a field a service does not read (prices, for
//!   shipping) can be missing or new without that service dead-lettering the event;
//! - the offset is stored only after the records' writes committed (`enable.auto.offset.store=false`; the
//!   background auto-commit sends stored offsets), so a crash redelivers, and the handler's
//!   `ON CONFLICT (order_id) DO NOTHING` makes redelivery harmless;
//! - a record that cannot be decoded or is rejected by the database's rules is dead-lettered (raw bytes,
//!   partition, offset, error), counted and logged, and the offset moves on;
//! - the same order id with different content is dead-lettered as `ConflictingDuplicate`, first version kept;
//! - a transient failure (database unreachable) pauses the partition, the loop keeps polling (so the member
//!   never exceeds `max.poll.interval.ms`), and after a backoff it seeks back to the failed record and resumes;
//! - records already fetched are stored together, in one handler call whose one writing statement is
//!   atomic on its own (one round trip and one commit for the batch, no `BEGIN`/`COMMIT` around it, on a
//!   connection kept from batch to batch: `db::WarmConnections`); when anything in it fails, its records
//!   are processed one by one, each in a transaction and as above (what the batch stored is a duplicate
//!   then);
//! - on shutdown it finishes the records in hand, commits the stored offsets and leaves the group.

pub mod store;

use crate::config::{ConsumerArgs, KafkaArgs};
use crate::db::WarmConnections;
use crate::kafka::{KafkaContext, consumer_config};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use futures::FutureExt;
use ordersystem_contract::EventView;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use store::DeadLetter;

/// Most records stored in one statement: those already fetched when the loop takes the next record.
/// Under load this turns one commit per record into one per batch; idle, a batch is one record. A batch
/// costs about the same whatever its size (one statement and its commit), so a member that fell behind
/// catches up by taking more at once; 1,000 events are about 1 MiB in hand.
const MAX_BATCH: usize = 1000;
/// Pause after a failed receive; short, so shutdown is not held up.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Dead-letter reason of a record that is not a valid `OrderPlaced` as the handler's view reads it.
pub const REASON_UNDECODABLE: &str = "Undecodable";
/// Dead-letter reason of an event whose order id is stored with different content.
pub const REASON_CONFLICT: &str = "ConflictingDuplicate";
/// Dead-letter reason of an event the database refused for good (a constraint or data error).
pub const REASON_REJECTED: &str = "Rejected";

/// What the handler did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A new invoice or shipment.
    New,
    /// The order id was stored before with the same content: nothing written.
    Duplicate,
    /// The order id was stored before with different content: nothing written; the loop dead-letters it.
    Conflict { detail: String },
}

/// A service's domain: what it reads of an event, and how it stores events on the connection given.
pub trait Handler: Send + Sync + 'static {
    /// The fields of `OrderPlaced` this service needs; records are decoded as this and nothing more. The
    /// handler's duplicate/conflict fingerprint must come from what it stores, so an event differing only
    /// in a field the view ignores is a duplicate.
    type Event: EventView + Send + Sync;

    /// Stores `events` (in delivery order; the same order id may occur twice) and returns one outcome per
    /// event, in the same order. All writing is one statement (reads may follow it): `conn` is in a
    /// transaction the loop commits, or, for a batch, in none, where that statement is atomic on its own.
    /// An error from the writing statement means nothing of it was stored.
    fn store(
        &self,
        conn: &mut PgConnection,
        events: &[Self::Event],
    ) -> impl Future<Output = Result<Vec<Stored>, sqlx::Error>> + Send;
}

/// The handler gave fewer outcomes than events: a bug in the handler, treated as a failed store.
fn missing_outcome() -> sqlx::Error {
    sqlx::Error::Protocol("the handler returned fewer outcomes than events".into())
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("failed to create the Kafka consumer")]
    Create {
        #[source]
        source: KafkaError,
    },
    #[error("failed to subscribe to topic {topic}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// A partition paused after a transient failure: where to seek back to, and when.
#[derive(Debug, Clone, Copy)]
struct Paused {
    offset: i64,
    until: tokio::time::Instant,
}

/// Everything the loop needs besides the Kafka client.
pub struct ConsumerLoop<H> {
    pub handler: H,
    pub pool: PgPool,
    pub metrics: Metrics,
    /// Group id when none is configured: the service's name.
    pub default_group: &'static str,
}

impl<H: Handler> ConsumerLoop<H> {
    /// Consume `kafka.topic` in the configured group (or `default_group`) until `shutdown` fires.
    pub async fn run(
        self,
        kafka: &KafkaArgs,
        args: &ConsumerArgs,
        mut shutdown: Shutdown,
    ) -> Result<(), ConsumerError> {
        let group = args.group(self.default_group);
        let context = KafkaContext::new(self.metrics.clone());
        let consumer: StreamConsumer<KafkaContext> = consumer_config(kafka, args, &group)
            .create_with_context(context.clone())
            .map_err(|source| ConsumerError::Create { source })?;
        consumer
            .subscribe(&[&kafka.topic])
            .map_err(|source| ConsumerError::Subscribe {
                topic: kafka.topic.clone(),
                source,
            })?;
        tracing::info!(topic = %kafka.topic, group = %group, protocol = ?args.group_protocol, "consumer started");
        let (first_backoff, max_backoff) = args.backoff();
        let warm = WarmConnections::new(self.pool.clone());
        let mut paused: HashMap<(String, i32), Paused> = HashMap::new();
        let mut failures: HashMap<(String, i32), u32> = HashMap::new();
        loop {
            for key in context.take_revoked() {
                paused.remove(&key);
                failures.remove(&key);
            }
            let next_resume = paused.values().map(|p| p.until).min();
            let resume_due = async {
                match next_resume {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                () = resume_due => resume_due_partitions(&consumer, &mut paused),
                received = consumer.recv() => {
                    let message = match received {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(%error, "kafka receive failed");
                            // Errors can repeat back to back while the broker is away; don't spin on them.
                            tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                            continue;
                        }
                    };
                    // Whatever else is already fetched joins it, up to MAX_BATCH: one commit for all.
                    let mut batch = vec![message];
                    while batch.len() < MAX_BATCH {
                        match consumer.recv().now_or_never() {
                            Some(Ok(message)) => batch.push(message),
                            _ => break,
                        }
                    }
                    // Fetched before a pause took effect: read again after the seek back.
                    batch.retain(|m| !paused.contains_key(&(m.topic().to_string(), m.partition())));
                    if !batch.is_empty() && self.process_batch(&warm, &batch).await.is_ok() {
                        self.metrics.batch_records.observe(batch.len() as f64);
                        for message in &batch {
                            failures.remove(&(message.topic().to_string(), message.partition()));
                            store_offset(&consumer, message);
                        }
                        continue;
                    }
                    // One at a time, in a transaction each: the batch failed, so the record at fault is
                    // found and retried or dead-lettered alone (what the batch stored before it failed is
                    // a duplicate now, what it dead-lettered was not committed). A
                    // transient failure means the database is unusable, not the record: the partitions of
                    // the records after it are paused too, untried, so one pass never waits out a
                    // connection timeout per partition (which could outlast max.poll.interval.ms).
                    let mut unusable: Option<Duration> = None;
                    for message in &batch {
                        let key = (message.topic().to_string(), message.partition());
                        if paused.contains_key(&key) {
                            continue;
                        }
                        if let Some(delay) = unusable {
                            pause_partition(&consumer, &key);
                            paused.insert(key, Paused { offset: message.offset(), until: tokio::time::Instant::now() + delay });
                            continue;
                        }
                        match self.process(message).await {
                            Ok(()) => {
                                self.metrics.batch_records.observe(1.0);
                                failures.remove(&key);
                                store_offset(&consumer, message);
                            }
                            Err(error) => {
                                let attempt = failures.entry(key.clone()).or_insert(0);
                                *attempt += 1;
                                let delay = backoff(first_backoff, max_backoff, *attempt);
                                tracing::warn!(%error, partition = key.1, offset = message.offset(), attempt = *attempt,
                                    retry_in_ms = delay.as_millis() as u64, "transient failure, pausing partition");
                                pause_partition(&consumer, &key);
                                paused.insert(key, Paused { offset: message.offset(), until: tokio::time::Instant::now() + delay });
                                unusable = Some(delay);
                            }
                        }
                    }
                }
            }
        }
        // Stored offsets reach the broker before the member leaves (dropping the consumer closes it, which
        // leaves the group).
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed, leaving the group"),
            Err(error) => tracing::info!(%error, "no offsets to commit on shutdown"),
        }
        Ok(())
    }

    /// Store one record. `Err` means transient: nothing was committed and the record must be retried.
    #[tracing::instrument(skip_all, fields(partition = message.partition(), offset = message.offset()))]
    async fn process(&self, message: &BorrowedMessage<'_>) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let event = match H::Event::decode(message.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(error) => {
                return self
                    .dead_letter(&DeadLetter::of(message, REASON_UNDECODABLE, &error.to_string()))
                    .await;
            }
        };
        let mut tx = self.pool.begin().await?;
        let stored = match self.handler.store(&mut tx, std::slice::from_ref(&event)).await {
            Ok(stored) => stored.into_iter().next().ok_or_else(missing_outcome)?,
            Err(error) if is_transient(&error) => return Err(error),
            Err(error) => {
                drop(tx);
                return self
                    .dead_letter(&DeadLetter::of(message, REASON_REJECTED, &error.to_string()))
                    .await;
            }
        };
        match &stored {
            Stored::New => {
                tx.commit().await?;
                self.metrics.events_consumed.inc();
                tracing::debug!(order_id = event.order_id(), "stored");
            }
            Stored::Duplicate => {
                tx.commit().await?;
                self.metrics.duplicates_skipped.inc();
                tracing::info!(order_id = event.order_id(), "duplicate skipped");
            }
            Stored::Conflict { detail } => {
                store::insert_dead_letter(&mut tx, &DeadLetter::of(message, REASON_CONFLICT, detail)).await?;
                tx.commit().await?;
                self.metrics.dead_letter(REASON_CONFLICT);
                tracing::warn!(
                    order_id = event.order_id(),
                    detail,
                    "conflicting duplicate dead-lettered, first version kept"
                );
            }
        }
        self.metrics
            .processing_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Store the records fetched together, without an explicit transaction: the handler writes all their
    /// events with one statement, atomic on its own, so a batch costs one round trip and one commit
    /// instead of `BEGIN`, the statement and `COMMIT` (at 500 orders/s most batches are one record).
    /// Dead letters (undecodable records, conflicting duplicates) follow in one transaction of their own.
    /// No offset is stored until all of it succeeded: after a crash or any error in between, the records
    /// are processed again (by the one-by-one path here, or after redelivery) and the events already
    /// stored are duplicates then. A dead letter is written again only when its records come again after
    /// it committed, i.e. a crash or a lost partition before the offsets reached the broker, as before.
    /// The connection comes from `warm` and goes back there only when all of it succeeded.
    async fn process_batch(
        &self,
        warm: &WarmConnections,
        messages: &[BorrowedMessage<'_>],
    ) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let mut events = Vec::with_capacity(messages.len());
        let mut undecodable = Vec::new();
        for message in messages {
            match H::Event::decode(message.payload().unwrap_or_default()) {
                Ok(event) => events.push((event, message)),
                Err(error) => undecodable.push((message, error.to_string())),
            }
        }
        let (events, decoded): (Vec<_>, Vec<_>) = events.into_iter().unzip();
        let mut conn = warm.take().await?;
        let stored = if events.is_empty() {
            Vec::new()
        } else {
            self.handler.store(&mut conn, &events).await?
        };
        if stored.len() < events.len() {
            return Err(missing_outcome());
        }
        let letters: Vec<DeadLetter<'_>> = undecodable
            .iter()
            .map(|(message, error)| DeadLetter::of(*message, REASON_UNDECODABLE, error))
            .chain(
                stored
                    .iter()
                    .zip(&decoded)
                    .filter_map(|(stored, message)| match stored {
                        Stored::Conflict { detail } => {
                            Some(DeadLetter::of(*message, REASON_CONFLICT, detail))
                        }
                        _ => None,
                    }),
            )
            .collect();
        if !letters.is_empty() {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for letter in &letters {
                store::insert_dead_letter(&mut tx, letter).await?;
            }
            tx.commit().await?;
        }
        warm.put_back(conn);
        let elapsed = started.elapsed().as_secs_f64();
        for (message, error) in &undecodable {
            self.metrics.dead_letter(REASON_UNDECODABLE);
            tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                reason = REASON_UNDECODABLE,
                error,
                "record dead-lettered"
            );
            self.metrics.processing_seconds.observe(elapsed);
        }
        for (event, stored) in events.iter().zip(stored) {
            let order_id = event.order_id();
            match stored {
                Stored::New => {
                    self.metrics.events_consumed.inc();
                    tracing::debug!(order_id, "stored");
                }
                Stored::Duplicate => {
                    self.metrics.duplicates_skipped.inc();
                    tracing::info!(order_id, "duplicate skipped");
                }
                Stored::Conflict { detail } => {
                    self.metrics.dead_letter(REASON_CONFLICT);
                    tracing::warn!(
                        order_id,
                        detail,
                        "conflicting duplicate dead-lettered, first version kept"
                    );
                }
            }
            self.metrics.processing_seconds.observe(elapsed);
        }
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        store::insert_dead_letter(&mut conn, letter).await?;
        self.metrics.dead_letter(letter.reason);
        tracing::warn!(
            partition = letter.partition,
            offset = letter.offset,
            reason = letter.reason,
            error = letter.error,
            "record dead-lettered"
        );
        Ok(())
    }
}

/// Store the record's offset for the background commit.
fn store_offset(consumer: &StreamConsumer<KafkaContext>, message: &BorrowedMessage<'_>) {
    if let Err(error) = consumer.store_offset(message.topic(), message.partition(), message.offset()) {
        // The partition was revoked meanwhile; its new owner redelivers, harmlessly.
        tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "offset not stored");
    }
}

/// Connection and availability problems pass; data and constraint errors (SQLSTATE classes 22, 23) and
/// decoding problems would fail again on every retry, so they are not transient.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            !(code.starts_with("22") || code.starts_with("23"))
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => false,
        _ => true,
    }
}

/// Exponential: first × 2^(attempt-1), capped at max.
fn backoff(first: Duration, max: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max)
}

fn single(topic: &str, partition: i32, offset: Offset) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    // Only fails for Offset values librdkafka cannot represent; Offset::Offset(n >= 0) always is.
    let _ = list.add_partition_offset(topic, partition, offset);
    list
}

fn pause_partition(consumer: &StreamConsumer<KafkaContext>, (topic, partition): &(String, i32)) {
    // Pausing discards what was prefetched for the partition; the seek on resume fetches it again.
    if let Err(error) = consumer.pause(&single(topic, *partition, Offset::Invalid)) {
        tracing::warn!(%error, partition, "pause failed");
    }
}

fn resume_due_partitions(
    consumer: &StreamConsumer<KafkaContext>,
    paused: &mut HashMap<(String, i32), Paused>,
) {
    let now = tokio::time::Instant::now();
    let due: Vec<_> = paused
        .iter()
        .filter(|(_, p)| p.until <= now)
        .map(|(k, p)| (k.clone(), *p))
        .collect();
    for ((topic, partition), state) in due {
        if let Err(error) = consumer.seek(
            &topic,
            partition,
            Offset::Offset(state.offset),
            Duration::from_secs(5),
        ) {
            // Still paused: try again after another short wait rather than consume past the failed record.
            tracing::warn!(%error, partition, "seek back failed, staying paused");
            if let Some(p) = paused.get_mut(&(topic, partition)) {
                p.until = now + Duration::from_secs(1);
            }
            continue;
        }
        if let Err(error) = consumer.resume(&single(&topic, partition, Offset::Invalid)) {
            tracing::warn!(%error, partition, "resume failed");
        }
        tracing::info!(partition, offset = state.offset, "partition resumed");
        paused.remove(&(topic, partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (first, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff(first, max, 1), Duration::from_millis(100));
        assert_eq!(backoff(first, max, 2), Duration::from_millis(200));
        assert_eq!(backoff(first, max, 4), Duration::from_millis(800));
        assert_eq!(backoff(first, max, 5), max);
        assert_eq!(backoff(first, max, 60), max);
    }

    #[test]
    fn connection_loss_is_transient_and_bad_data_is_not() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(!is_transient(&sqlx::Error::Decode("bad".into())));
    }
}
