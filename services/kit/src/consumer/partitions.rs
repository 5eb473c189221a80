//! The consumer loop's bookkeeping per partition: offsets stored once records committed, and the pause
//! after a transient failure. A paused partition fetches nothing while the loop keeps polling (so the
//! member never exceeds `max.poll.interval.ms`); once its backoff is over (longer with each failure in a
//! row), the loop seeks back to the failed record and resumes it.

use crate::kafka::KafkaContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// A partition of the subscribed topic: (topic, partition), as the rebalance callback names it.
type Key = (String, i32);

/// How long a partition stays paused when seeking back to its failed record failed; short, as the cause
/// is the client's state, not the database.
const SEEK_RETRY: Duration = Duration::from_secs(1);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// A partition paused after a transient failure: where to seek back to, and when.
#[derive(Debug, Clone, Copy)]
struct Paused {
    offset: i64,
    until: Instant,
}

/// The partitions of one consumer: which are paused until when, and how many failures in a row each had.
pub(super) struct Partitions<'c> {
    consumer: &'c StreamConsumer<KafkaContext>,
    first_backoff: Duration,
    max_backoff: Duration,
    paused: HashMap<Key, Paused>,
    failures: HashMap<Key, u32>,
}

impl<'c> Partitions<'c> {
    /// `backoff`: the first pause after a failure and the longest (`ConsumerArgs::backoff`).
    pub(super) fn new(consumer: &'c StreamConsumer<KafkaContext>, backoff: (Duration, Duration)) -> Self {
        let (first_backoff, max_backoff) = backoff;
        Self {
            consumer,
            first_backoff,
            max_backoff,
            paused: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// Forget the partitions the group took away: their new owner starts from the committed offset.
    pub(super) fn forget(&mut self, revoked: Vec<Key>) {
        for key in revoked {
            self.paused.remove(&key);
            self.failures.remove(&key);
        }
    }

    /// When the first paused partition is due to resume, if any is paused.
    pub(super) fn next_resume(&self) -> Option<Instant> {
        self.paused.values().map(|p| p.until).min()
    }

    /// Whether `message`'s partition is paused: a record fetched before the pause took effect is read
    /// again after the seek back.
    pub(super) fn is_paused(&self, message: &BorrowedMessage<'_>) -> bool {
        self.paused.contains_key(&key_of(message))
    }

    /// `message` committed: its partition's failures start again from none, and its offset is stored for
    /// the background commit.
    pub(super) fn stored(&mut self, message: &BorrowedMessage<'_>) {
        self.failures.remove(&key_of(message));
        if let Err(error) = self
            .consumer
            .store_offset(message.topic(), message.partition(), message.offset())
        {
            // The partition was revoked meanwhile; its new owner redelivers, harmlessly.
            tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "offset not stored");
        }
    }

    /// `message` failed transiently: pause its partition for a backoff that doubles with each failure in
    /// a row; returns that backoff.
    pub(super) fn failed(&mut self, message: &BorrowedMessage<'_>, error: &sqlx::Error) -> Duration {
        let attempt = self.failures.entry(key_of(message)).or_insert(0);
        *attempt += 1;
        let delay = backoff(self.first_backoff, self.max_backoff, *attempt);
        tracing::warn!(%error, partition = message.partition(), offset = message.offset(), attempt = *attempt,
            retry_in_ms = delay.as_millis() as u64, "transient failure, pausing partition");
        self.pause(message, delay);
        delay
    }

    /// Pause `message`'s partition for `delay`, seeking back to `message` when it is over.
    pub(super) fn pause(&mut self, message: &BorrowedMessage<'_>, delay: Duration) {
        let key = key_of(message);
        // Pausing discards what was prefetched for the partition; the seek on resume fetches it again.
        if let Err(error) = self.consumer.pause(&single(&key, Offset::Invalid)) {
            tracing::warn!(%error, partition = key.1, "pause failed");
        }
        let paused = Paused {
            offset: message.offset(),
            until: Instant::now() + delay,
        };
        self.paused.insert(key, paused);
    }

    /// Seek back and resume the partitions whose pause is over.
    pub(super) fn resume_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(Key, Paused)> = self
            .paused
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        for (key, state) in due {
            let partition = key.1;
            if let Err(error) =
                self.consumer
                    .seek(&key.0, partition, Offset::Offset(state.offset), SEEK_TIMEOUT)
            {
                // Still paused: try again after another short wait rather than consume past the failed record.
                tracing::warn!(%error, partition, "seek back failed, staying paused");
                if let Some(p) = self.paused.get_mut(&key) {
                    p.until = now + SEEK_RETRY;
                }
                continue;
            }
            if let Err(error) = self.consumer.resume(&single(&key, Offset::Invalid)) {
                tracing::warn!(%error, partition, "resume failed");
            }
            tracing::info!(partition, offset = state.offset, "partition resumed");
            self.paused.remove(&key);
        }
    }
}

fn key_of(message: &BorrowedMessage<'_>) -> Key {
    (message.topic().to_string(), message.partition())
}

fn single((topic, partition): &Key, offset: Offset) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    // Only fails for Offset values librdkafka cannot represent; Offset::Offset(n >= 0) always is.
    let _ = list.add_partition_offset(topic, *partition, offset);
    list
}

/// Exponential: first × 2^(attempt-1), capped at max.
fn backoff(first: Duration, max: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max)
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
}
