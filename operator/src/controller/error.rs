//! The one error a reconcile returns, with the retry delay that follows it. Every step's error converts
//! into it; the first failure of a reconcile is returned after its status was written.

use std::time::Duration;

use kube::runtime::finalizer;

use super::{apply, kafka, lag, postgres, rotation};

/// First retry delay after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile failed.
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
    #[error("failed to patch the status of {name}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot tell whether partitions may be added: {0}")]
    Drain(String),
    #[error("the topic is missing and whether this resource created it is unknown: {0}")]
    TopicUnconfirmed(String),
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
            Self::TopicUnconfirmed(_) => "topic",
            Self::Rotation(_) => "rotation",
            Self::Postgres(_) => "postgres",
            Self::Apply(_) => "apply",
            Self::Status { .. } => "status",
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
/// error of the operator carries one). An error the API server answered ends the text with its own
/// sentence: kube's rendering of it adds a `Debug` dump of the whole response.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(kube::Error::Api(answer)) = error.downcast_ref::<kube::Error>() {
            parts.push(match answer.message.as_str() {
                "" => format!("the API server answered {} {}", answer.code, answer.reason),
                message => message.to_string(),
            });
            break;
        }
        parts.push(error.to_string());
        next = error.source();
    }
    parts.join(": ")
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
    fn an_api_server_answer_is_described_by_its_message_without_a_debug_dump() {
        let status =
            kube::core::Status::failure("secrets \"no-such-secret\" not found", "NotFound").with_code(404);
        let error = super::super::postgres::Error::ReadAdminSecret {
            name: "no-such-secret".into(),
            source: kube::Error::Api(Box::new(status)),
        };
        assert_eq!(
            describe_error(&error),
            "failed to read admin Secret no-such-secret: secrets \"no-such-secret\" not found"
        );
    }

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
