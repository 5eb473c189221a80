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
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("this replica no longer holds the leader lease, so it writes nothing more")]
    NotLeader,
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
            Self::NotLeader => "not_leader",
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
/// error of the operator carries one). Many errors print their source inside their own text as well
/// (sqlx, rdkafka, kube, the finalizer): that copy is cut, so each part is said once. An error the API
/// server answered ends with its own sentence: kube's rendering of it adds a `Debug` dump of the whole
/// response. A Secret the spec names and that does not exist is followed by what to do about it.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let text = describe_chain(error);
    match advice(error) {
        Some(advice) => format!("{text}; {advice}"),
        None => text,
    }
}

/// What to do about a Secret named in the spec that does not exist.
fn advice(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    // `Error` and `rotation::Error` wrap these transparently: their chain skips the wrapped error.
    let wrapped = error.downcast_ref::<Error>();
    let postgres = error
        .downcast_ref::<postgres::Error>()
        .or(match error.downcast_ref::<rotation::Error>() {
            Some(rotation::Error::Postgres(inner)) => Some(inner),
            _ => None,
        })
        .or(match wrapped {
            Some(Error::Postgres(inner) | Error::Rotation(rotation::Error::Postgres(inner))) => Some(inner),
            _ => None,
        });
    let kafka = error.downcast_ref::<kafka::Error>().or(match wrapped {
        Some(Error::Kafka(inner)) => Some(inner),
        _ => None,
    });
    let missing = |source: &kube::Error| matches!(source, kube::Error::Api(answer) if answer.code == 404);
    match (postgres, kafka) {
        (Some(postgres::Error::ReadAdminSecret { source, .. }), _) if missing(source) => Some(
            "create it in this resource's namespace, or name the Secret that holds the admin connection in \
             spec.postgres.adminSecretRef",
        ),
        (Some(postgres::Error::ReadCaSecret { source, .. }), _) if missing(source) => Some(
            "create it in this resource's namespace with the CA certificate in ca.crt, or correct \
             spec.postgres.caSecretRef",
        ),
        (_, Some(kafka::Error::ReadSecret { source, .. })) if missing(source) => Some(
            "create it in this resource's namespace, or correct the Secret named in spec.kafka.tls or \
             spec.kafka.sasl",
        ),
        _ => None,
    }
}

/// The error and its sources, each said once.
fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        next = error.source();
        let text = match error.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(answer)) => {
                parts.push(match answer.message.as_str() {
                    "" => format!("the API server answered {} {}", answer.code, answer.reason),
                    message => message.to_string(),
                });
                break;
            }
            // kube names these by its variant ("ServiceError: ..."); their sources say what happened.
            Some(kube::Error::Service(_) | kube::Error::HyperError(_)) => {
                "the request to the API server failed".to_string()
            }
            _ => match error.downcast_ref::<sqlx::Error>() {
                // The server's sentence, without the line of PostgreSQL's own source code that sqlx adds.
                Some(sqlx::Error::Database(answer)) => {
                    parts.push(format!("error returned from database: {}", answer.message()));
                    break;
                }
                _ => error.to_string(),
            },
        };
        let own = match next.map(ToString::to_string) {
            Some(inner) if !inner.is_empty() => match text.strip_suffix(inner.as_str()) {
                Some(head) => head.trim_end_matches([':', ' ']).to_string(),
                None => text,
            },
            _ => text,
        };
        if !own.is_empty() {
            parts.push(own);
        }
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
        let described = describe_error(&error);
        assert_eq!(
            described,
            "failed to read admin Secret no-such-secret: secrets \"no-such-secret\" not found; create it in \
             this resource's namespace, or name the Secret that holds the admin connection in \
             spec.postgres.adminSecretRef"
        );
        assert_eq!(
            describe_error(&Error::Postgres(error)),
            described,
            "the failure Event says the same"
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
