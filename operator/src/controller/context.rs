//! What every step of a reconcile shares: the clients and caches (`Context`) and the one error type a
//! reconcile returns (`Error`), with the retry delay that follows it. Steps import from here, never from
//! the pipeline above them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer;
use kube::runtime::reflector::Store;
use tracing::warn;

use super::{apply, kafka, lag, postgres, rotation, status};
use crate::crd::OrderSystem;
use crate::metrics::Metrics;

/// First retry delay after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Shared state of all reconciles.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub kafka: kafka::KafkaClients,
    /// Every OrderSystem the controller sees, for conflict detection.
    pub store: Store<OrderSystem>,
    /// Consecutive failures per object (uid), reset on success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        store: Store<OrderSystem>,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            kafka: kafka::KafkaClients::default(),
            store,
            failures: Mutex::default(),
        }
    }

    /// Counts one more consecutive failure of the object `key` and returns the count.
    pub fn count_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures();
        let count = failures.entry(key.to_string()).or_insert(0);
        *count += 1;
        *count
    }

    /// Forgets the failures of the object `key` after a success.
    pub fn forget_failures(&self, key: &str) {
        self.failures().remove(key);
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes a Kubernetes Event on the resource; failing to publish is logged, never fatal.
    pub async fn event(&self, os: &OrderSystem, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &os.object_ref(&())).await {
            warn!(%error, reason, "failed to publish event");
        }
    }
}

/// Why a reconcile failed. Every step's error converts into it; the first failure of a reconcile is
/// returned after its status was written, so the reconcile is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(transparent)]
    Lag(#[from] lag::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Rotation(#[from] rotation::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Status(#[from] status::Error),
    #[error("cannot tell whether partitions may be added: {0}")]
    Drain(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// Label of the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::Lag(_) => "lag",
            Self::Drain(_) => "drain",
            Self::Rotation(_) => "rotation",
            Self::Postgres(_) => "postgres",
            Self::Apply(_) => "apply",
            Self::Status(_) => "status",
            Self::Finalizer(_) => "finalizer",
        }
    }

    /// Whether retrying can help. Everything that reaches here is: an invalid spec never becomes an
    /// error (it is a condition and waits for a change); a broker, database or API server that is away
    /// may come back.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Finalizer(inner) => !matches!(
                **inner,
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer
            ),
            _ => true,
        }
    }
}

/// An error with its sources, `: `-separated, for conditions and Events (never contains passwords: no
/// error of the operator carries one).
pub fn describe_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// `min(5 s · 2^(failures-1), 5 min)` plus `jitter` (0..1) times 10 % of it.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE.saturating_mul(1u32 << exponent).min(BACKOFF_MAX);
    base + base.mul_f64(0.1 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_and_stops_at_five_minutes() {
        assert_eq!(backoff_delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(2, 0.0), Duration::from_secs(10));
        assert_eq!(backoff_delay(4, 0.0), Duration::from_secs(40));
        assert_eq!(backoff_delay(7, 0.0), Duration::from_secs(300));
        assert_eq!(backoff_delay(40, 0.0), Duration::from_secs(300));
        assert_eq!(backoff_delay(1, 1.0), Duration::from_millis(5500));
    }
}
