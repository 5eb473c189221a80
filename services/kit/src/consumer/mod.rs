//! The consumer loop of invoicing and shipping, written once. A service supplies a `Handler` naming the
//! view of the event it reads (`Handler::Event`, a tolerant reader: only the fields that service stores)
//! and storing such events with one writing statement on the connection it is given, returning what it
//! wrote (`Written`); the loop owns delivery and everything beyond the service's own tables:
//!
//! - each record is decoded as the handler's view, so a field a service does not read (prices, for
//!   shipping) can be missing or new without that service dead-lettering the event;
//! - the offset is stored only after the records' writes committed (`enable.auto.offset.store=false`; the
//!   background auto-commit sends stored offsets), so a crash redelivers, and the handler's
//!   `ON CONFLICT (order_id) DO NOTHING` makes redelivery harmless;
//! - a record that cannot be decoded or is rejected by the database's rules is dead-lettered (raw bytes,
//!   partition, offset, error), counted and logged, and the offset moves on;
//! - the loop judges each event from what the handler wrote (`judge`): new, a duplicate, or, for the same
//!   order id with different content, dead-lettered as `ConflictingDuplicate`, first version kept;
//! - a transient failure (database unreachable) pauses the partition, the loop keeps polling (so the member
//!   never exceeds `max.poll.interval.ms`), and after a backoff it seeks back to the failed record and resumes
//!   (`partitions`);
//! - records already fetched are stored together, in one handler call whose one writing statement is
//!   atomic on its own (one round trip and one commit for the batch, no `BEGIN`/`COMMIT` around it, on a
//!   connection kept from batch to batch: `db::WarmConnections`); when anything in it fails, its records
//!   are processed one by one, each in a transaction and as above (what the batch stored is a duplicate
//!   then);
//! - on shutdown it finishes the records in hand, commits the stored offsets and leaves the group, a
//!   static member too (`leave`);
//! - a fatal consumer error (another member took this one's instance id) ends the loop with an error, so
//!   the process exits instead of consuming nothing.

mod outcome;
mod partitions;
pub mod redrive;
pub mod store;

pub use outcome::Written;

use crate::config::{ConsumerArgs, KafkaArgs, Membership};
use crate::db::WarmConnections;
use crate::kafka::{KafkaContext, consumer_config};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::telemetry::{self, KafkaHeaders};
use futures::FutureExt;
use opentelemetry::trace::TraceContextExt;
use ordersystem_contract::EventView;
use outcome::{Outcome, Stored, judge};
use partitions::Partitions;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::time::{Duration, Instant};
use store::DeadLetter;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Most records stored in one statement: those already fetched when the loop takes the next record.
/// Under load this turns one commit per record into one per batch; idle, a batch is one record. A batch
/// costs about the same whatever its size (one statement and its commit), so a member that fell behind
/// catches up by taking more at once; 1,000 events are about 1 MiB in hand.
const MAX_BATCH: usize = 1000;
/// Pause after a failed receive; short, so shutdown is not held up.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Longest a static member waits on shutdown for its partitions to be revoked after it unsubscribed.
const LEAVE_WITHIN: Duration = Duration::from_secs(5);
/// How long a static member goes on serving librdkafka's events once its assignment is empty: the
/// LeaveGroup request is sent from librdkafka's own thread after the revocation, and closing before
/// that would suppress it (a static member sends none on close).
const LEAVE_GRACE: Duration = Duration::from_millis(500);

/// Dead-letter reason of a record that is not a valid `OrderPlaced` as the handler's view reads it.
pub const REASON_UNDECODABLE: &str = "Undecodable";
/// Dead-letter reason of an event whose order id is stored with different content.
pub const REASON_CONFLICT: &str = "ConflictingDuplicate";
/// Dead-letter reason of an event the database refused for good (a constraint or data error).
pub const REASON_REJECTED: &str = "Rejected";

/// A service's domain: what it reads of an event, and how it stores events on the connection given. The
/// loop and a redrive of a dead letter (`redrive`) use the same handler.
pub trait Handler: Send + Sync + 'static {
    /// The fields of `OrderPlaced` this service needs; records are decoded as this and nothing more. The
    /// handler's fingerprints must come from what it stores, so an event differing only in a field the
    /// view ignores is a duplicate.
    type Event: EventView + Send + Sync;

    /// What the service does with an order, as a conflict's detail says it: "order 7 already invoiced
    /// with different content".
    const DONE: &'static str;

    /// Stores `events` (in delivery order; the same order id may occur twice), the first of each order id
    /// unless one is stored already, and returns what it wrote (`Written`), from which the loop judges
    /// each event. All writing is one statement (reads may follow it): `conn` is in a transaction the
    /// loop commits, or, for a batch, in none, where that statement is atomic on its own. An error from
    /// the writing statement means nothing of it was stored.
    fn store(
        &self,
        conn: &mut PgConnection,
        events: &[Self::Event],
    ) -> impl Future<Output = Result<Written, sqlx::Error>> + Send;
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
    #[error(
        "the Kafka consumer stopped for good (with static membership: another member joined with this one's \
         instance id)"
    )]
    Fatal {
        #[source]
        source: KafkaError,
    },
}

/// Everything the loop needs besides the Kafka client.
pub struct ConsumerLoop<H> {
    /// Shared with the dead letters' redrive (`dead_letters`).
    pub handler: std::sync::Arc<H>,
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
        // Every reason's count exists from the start, at 0: a rate or increase over it sees the first dead
        // letter, which it would miss if the series began at 1.
        self.metrics
            .start_dead_letter_counts(&[REASON_UNDECODABLE, REASON_CONFLICT, REASON_REJECTED]);
        let context = KafkaContext::new(self.metrics.clone());
        let consumer = subscribe(kafka, args, args.group(self.default_group), context.clone())?;
        let warm = WarmConnections::new(self.pool.clone());
        let mut partitions = Partitions::new(&consumer, args.backoff());
        loop {
            partitions.forget(context.take_revoked());
            let next_resume = partitions.next_resume();
            let resume_due = async {
                match next_resume {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                () = resume_due => partitions.resume_due(),
                received = consumer.recv() => match received {
                    Ok(message) => {
                        // Whatever else is already fetched joins it, up to MAX_BATCH: one commit for all.
                        let mut batch = vec![message];
                        while batch.len() < MAX_BATCH {
                            match consumer.recv().now_or_never() {
                                Some(Ok(message)) => batch.push(message),
                                _ => break,
                            }
                        }
                        self.consume(&warm, &mut partitions, batch).await;
                    }
                    Err(source @ KafkaError::MessageConsumptionFatal(_)) => {
                        return Err(ConsumerError::Fatal { source });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "kafka receive failed");
                        // Errors can repeat back to back while the broker is away; don't spin on them.
                        tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    }
                },
            }
        }
        // Stored offsets reach the broker before the member leaves (dropping the consumer closes it, which
        // leaves the group).
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed, leaving the group"),
            // Nothing stored since the last commit (the automatic one may have just run): all committed.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                tracing::info!(already = true, "offsets committed, leaving the group");
            }
            Err(error) => tracing::warn!(
                %error,
                "offsets not committed on shutdown: records since the last commit will be delivered again"
            ),
        }
        if let Membership::Static { .. } = args.membership() {
            leave(&consumer).await;
        }
        Ok(())
    }

    /// Store `batch` together and then its offsets; if that failed, one record at a time.
    async fn consume(
        &self,
        warm: &WarmConnections,
        partitions: &mut Partitions<'_>,
        mut batch: Vec<BorrowedMessage<'_>>,
    ) {
        // Fetched before a pause took effect: read again after the seek back.
        batch.retain(|m| !partitions.is_paused(m));
        if batch.is_empty() {
            return;
        }
        if self.process_batch(warm, &batch).await.is_ok() {
            self.metrics.batch_records.observe(batch.len() as f64);
            for message in &batch {
                partitions.stored(message);
            }
            return;
        }
        // One at a time, in a transaction each: the batch failed, so the record at fault is found and
        // retried or dead-lettered alone (what the batch stored before it failed is a duplicate now, what
        // it dead-lettered was not committed). A transient failure means the database is unusable, not
        // the record: the partitions of the records after it are paused too, untried, so one pass never
        // waits out a connection timeout per partition (which could outlast max.poll.interval.ms).
        let mut unusable: Option<Duration> = None;
        for message in &batch {
            if partitions.is_paused(message) {
                continue;
            }
            if let Some(delay) = unusable {
                partitions.pause(message, delay);
                continue;
            }
            match self.process(message).await {
                Ok(()) => {
                    self.metrics.batch_records.observe(1.0);
                    partitions.stored(message);
                }
                Err(error) => unusable = Some(partitions.failed(message, &error)),
            }
        }
    }

    /// Store one record, in its own span (`record_span`). `Err` means transient: nothing was committed
    /// and the record must be retried.
    async fn process(&self, message: &BorrowedMessage<'_>) -> Result<(), sqlx::Error> {
        let span = record_span(message);
        self.process_in_span(message).instrument(span).await
    }

    async fn process_in_span(&self, message: &BorrowedMessage<'_>) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let event = match H::Event::decode(message.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(error) => {
                let error = error.to_string();
                return self
                    .dead_letter(&DeadLetter::of(message, REASON_UNDECODABLE, &error), started)
                    .await;
            }
        };
        let mut tx = self.pool.begin().await?;
        let stored = match self.store(&mut tx, std::slice::from_ref(&event)).await {
            Ok(mut stored) => stored.remove(0),
            Err(error) if is_transient(&error) => return Err(error),
            Err(error) => {
                drop(tx);
                let error = error.to_string();
                return self
                    .dead_letter(&DeadLetter::of(message, REASON_REJECTED, &error), started)
                    .await;
            }
        };
        if let Stored::Conflict { detail } = &stored {
            store::insert_dead_letter(&mut tx, &DeadLetter::of(message, REASON_CONFLICT, detail)).await?;
        }
        tx.commit().await?;
        self.observe_age(message, &stored);
        let order_id = event.order_id();
        let span = tracing::Span::current();
        self.report(
            [(
                Outcome::Judged {
                    order_id,
                    stored: &stored,
                },
                &span,
            )],
            started,
        );
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
        // Each record in its own span, continuing its trace; the one statement storing them all in a span
        // linked to each.
        let spans: Vec<tracing::Span> = messages.iter().map(record_span).collect();
        let batch_span = tracing::info_span!("store_batch", records = messages.len());
        for span in &spans {
            batch_span.add_link(span.context().span().span_context().clone());
        }
        let mut events = Vec::with_capacity(messages.len());
        let mut decoded = Vec::with_capacity(messages.len());
        let mut undecodable = Vec::new();
        for (message, span) in messages.iter().zip(&spans) {
            match H::Event::decode(message.payload().unwrap_or_default()) {
                Ok(event) => {
                    events.push(event);
                    decoded.push((message, span));
                }
                Err(error) => undecodable.push((message, span, error.to_string())),
            }
        }
        let mut conn = warm.take().await?;
        let stored = if events.is_empty() {
            Vec::new()
        } else {
            self.store(&mut conn, &events).instrument(batch_span).await?
        };
        let undecodable: Vec<(DeadLetter<'_>, &tracing::Span)> = undecodable
            .iter()
            .map(|(message, span, error)| (DeadLetter::of(*message, REASON_UNDECODABLE, error), *span))
            .collect();
        let conflicts = stored
            .iter()
            .zip(&decoded)
            .filter_map(|(stored, (message, _))| match stored {
                Stored::Conflict { detail } => Some(DeadLetter::of(*message, REASON_CONFLICT, detail)),
                _ => None,
            });
        let letters: Vec<DeadLetter<'_>> = undecodable
            .iter()
            .map(|(letter, _)| letter.clone())
            .chain(conflicts)
            .collect();
        if !letters.is_empty() {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for letter in &letters {
                store::insert_dead_letter(&mut tx, letter).await?;
            }
            tx.commit().await?;
        }
        warm.put_back(conn);
        for ((message, _), stored) in decoded.iter().zip(&stored) {
            self.observe_age(message, stored);
        }
        let judged = events
            .iter()
            .zip(&stored)
            .zip(&decoded)
            .map(|((event, stored), (_, span))| {
                let outcome = Outcome::Judged {
                    order_id: event.order_id(),
                    stored,
                };
                (outcome, *span)
            });
        let dead = undecodable
            .iter()
            .map(|(letter, span)| (Outcome::DeadLettered(letter), *span));
        self.report(dead.chain(judged), started);
        Ok(())
    }

    /// The handler's write of `events` on `conn`, judged: one outcome per event, in order.
    async fn store(&self, conn: &mut PgConnection, events: &[H::Event]) -> Result<Vec<Stored>, sqlx::Error> {
        let written = self.handler.store(conn, events).await?;
        if written.fingerprints.len() != events.len() {
            // A bug in the handler, treated as a failed store.
            return Err(sqlx::Error::Protocol(format!(
                "the handler wrote {} events of {}",
                written.fingerprints.len(),
                events.len()
            )));
        }
        Ok(judge(&written, H::DONE))
    }

    /// Dead-letter one record on a connection of its own.
    async fn dead_letter(&self, letter: &DeadLetter<'_>, started: Instant) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        store::insert_dead_letter(&mut conn, letter).await?;
        let span = tracing::Span::current();
        self.report([(Outcome::DeadLettered(letter), &span)], started);
        Ok(())
    }

    /// For an event stored for the first time: the time from its record's Kafka timestamp (when the relay
    /// produced it) to now, after its commit.
    fn observe_age(&self, message: &BorrowedMessage<'_>, stored: &Stored) {
        if let (Stored::New, Some(produced)) = (stored, message.timestamp().to_millis()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            // Clocks of different machines: a negative age counts as none.
            self.metrics
                .event_age_seconds
                .observe((now - produced).max(0) as f64 / 1000.0);
        }
    }

    /// Count and log `outcomes`, committed, each in its record's span, and the time since `started` for
    /// each.
    fn report<'a>(
        &self,
        outcomes: impl IntoIterator<Item = (Outcome<'a>, &'a tracing::Span)>,
        started: Instant,
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        for (outcome, span) in outcomes {
            span.in_scope(|| outcome.report(&self.metrics));
            self.metrics.processing_seconds.observe(elapsed);
        }
    }
}

/// The span of one record: a child of the trace context in its headers (the relay's `publish` span), or a
/// trace of its own when it has none (the reference system's events).
fn record_span(message: &BorrowedMessage<'_>) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        partition = message.partition(),
        offset = message.offset()
    );
    if let Some(headers) = message.headers() {
        telemetry::continue_from(&span, &KafkaHeaders(headers));
    }
    span
}

/// A static member's explicit leave: unsubscribing revokes its partitions and sends a LeaveGroup, so the
/// others take them over now rather than after the session timeout (librdkafka sends none when a static
/// member closes, per KIP-345). Waits until the revocation was served here (`recv` serves librdkafka's
/// events; records that still arrive are dropped, their offsets not stored), then `LEAVE_GRACE` for the
/// request to go out. A restart in the same pod rebalances twice then, as a dynamic member does; static
/// membership is for the restart after a kill, when no leave was possible.
async fn leave(consumer: &StreamConsumer<KafkaContext>) {
    consumer.unsubscribe();
    let until = tokio::time::Instant::now() + LEAVE_WITHIN;
    let mut revoked_at = None;
    loop {
        let now = tokio::time::Instant::now();
        let empty = consumer.assignment().map_or(true, |a| a.count() == 0);
        if empty && revoked_at.is_none() {
            revoked_at = Some(now);
        }
        let deadline = match revoked_at {
            Some(at) => (at + LEAVE_GRACE).min(until.max(now)),
            None => until,
        };
        if now >= deadline {
            break;
        }
        let _ =
            tokio::time::timeout_at(deadline.min(now + Duration::from_millis(100)), consumer.recv()).await;
    }
    if revoked_at.is_some() {
        tracing::info!("partitions revoked, left the group as a static member");
    } else {
        tracing::warn!(
            within = ?LEAVE_WITHIN,
            "the partitions were not revoked in time; the group takes them over when the session expires"
        );
    }
}

/// A consumer of `kafka.topic` in `group`, subscribed.
fn subscribe(
    kafka: &KafkaArgs,
    args: &ConsumerArgs,
    group: String,
    context: KafkaContext,
) -> Result<StreamConsumer<KafkaContext>, ConsumerError> {
    let consumer: StreamConsumer<KafkaContext> = consumer_config(kafka, args, &group)
        .create_with_context(context)
        .map_err(|source| ConsumerError::Create { source })?;
    consumer
        .subscribe(&[&kafka.topic])
        .map_err(|source| ConsumerError::Subscribe {
            topic: kafka.topic.clone(),
            source,
        })?;
    match args.membership() {
        Membership::Dynamic => {}
        Membership::Static { instance_id } => tracing::info!(
            %instance_id,
            "static group membership: after a crash the restarted container takes its partitions back at once"
        ),
        Membership::NotUnderConsumerProtocol { instance_id } => tracing::info!(
            %instance_id,
            "the group instance id is not used under the consumer protocol: the broker would refuse it after a \
             crash until the session expires; a killed member's partitions wait for the broker's session timeout"
        ),
    }
    tracing::info!(topic = %kafka.topic, group = %group, protocol = args.protocol().as_str(), "consumer started");
    Ok(consumer)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_loss_is_transient_and_bad_data_is_not() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(!is_transient(&sqlx::Error::Decode("bad".into())));
    }
}
