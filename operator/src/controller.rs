//! The reconciler of `OrderSystem`, read top to bottom as the pipeline (`reconcile_apply`):
//! validate → drain gate → backends → rotation → build → apply → status. Each step is a module;
//! `validate`, `build` and `status::compute` are pure, and the writers are `backends` (Kafka, PostgreSQL,
//! the services' Secrets, through `kafka` and `postgres`), `rotation` (logins, a Secret, the request's
//! annotation), `apply` and `status::patch`. `docs/architecture.md` draws it. Errors are typed; an
//! invalid spec is a condition, not an error; transient failures requeue with per-object exponential
//! backoff.

pub mod apply;
pub mod build;
pub mod compaction;
pub mod drain;
pub mod kafka;
pub mod lag;
pub mod postgres;
pub mod rotation;
pub mod status;
pub mod validate;

mod backends;
mod cleanup;
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer;
use kube::runtime::reflector::Store;
use tracing::{info, instrument, warn};

use crate::crd::OrderSystem;
use crate::metrics::Metrics;
use crate::names::FINALIZER;

pub use run::run;

/// Periodic requeue: Kafka and Postgres send no watch events, so drift there is found by looking again.
pub const RESYNC: Duration = Duration::from_secs(120);
/// How often a drain for a partition increase looks at its progress.
const DRAIN_POLL: Duration = Duration::from_secs(5);
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

    fn failure_count(&self, key: &str, increment: bool) -> u32 {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if increment {
            let count = failures.entry(key.to_string()).or_insert(0);
            *count += 1;
            *count
        } else {
            failures.remove(key);
            0
        }
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

/// Entry point of one reconcile: the finalizer decides between `apply` and `cleanup`.
#[instrument(skip_all, fields(namespace = %os.namespace().unwrap_or_default(), name = %os.name_any()))]
pub async fn reconcile(os: Arc<OrderSystem>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.count_and_measure();
    let namespace = os.namespace().unwrap_or_default();
    let api = kube::Api::<OrderSystem>::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer::finalizer(&api, FINALIZER, os.clone(), |event| async {
        match event {
            finalizer::Event::Apply(os) => reconcile_apply(&os, &ctx).await,
            finalizer::Event::Cleanup(os) => cleanup::cleanup(&os, &ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => {
            ctx.failure_count(&os.uid().unwrap_or_default(), false);
            Ok(action)
        }
        Err(finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error)) => Err(error),
        Err(other) => Err(Error::Finalizer(Box::new(other))),
    }
}

/// Logs and counts the failure, then retries after `min(5 s · 2^n, 5 min)` plus up to 10 % jitter, where
/// `n` counts this object's consecutive failures.
pub fn error_policy(os: Arc<OrderSystem>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count_failure(error.metric_label());
    let transient = error.is_transient();
    let failures = ctx.failure_count(&os.uid().unwrap_or_default(), true);
    let delay = backoff_delay(failures, rand::random::<f64>());
    warn!(error = %error, error_kind = error.metric_label(), failures, retry_in = ?delay, "reconcile failed");
    // error_policy is synchronous; the Event is published on the side. The recorder folds Events of the
    // same reason and action into one series that keeps its first note for a while (as client-go does),
    // so a failing deletion gets its own reason: its error is not hidden behind an earlier apply failure.
    let (reason, action) = failure_reason(&os);
    let note = describe_error(error);
    tokio::spawn(async move {
        ctx.event(&os, EventType::Warning, reason, action, note).await;
    });
    if transient {
        Action::requeue(delay)
    } else {
        Action::await_change()
    }
}

/// Reason and action of the Warning Event for a failed reconcile: the cleanup of a resource being
/// deleted, or the apply of a live one.
fn failure_reason(os: &OrderSystem) -> (&'static str, &'static str) {
    if os.metadata.deletion_timestamp.is_some() {
        ("CleanupFailed", "Delete")
    } else {
        ("ReconcileFailed", "Reconcile")
    }
}

/// `min(5 s · 2^(failures-1), 5 min)` plus `jitter` (0..1) times 10 % of it.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE.saturating_mul(1u32 << exponent).min(BACKOFF_MAX);
    base + base.mul_f64(0.1 * jitter.clamp(0.0, 1.0))
}

/// The pipeline for a live resource. A failed backend does not stop the others or the status: its error
/// is shown in a condition, and returned at the end so the reconcile is retried with backoff.
async fn reconcile_apply(os: &OrderSystem, ctx: &Context) -> Result<Action, Error> {
    // validate (pure): a bad spec stops here, before any write, and waits for a change.
    let spec = match validate::validate(os) {
        Ok(spec) => spec,
        Err(invalid) => {
            let report = status::Report {
                invalid: Some(invalid.to_string()),
                paused: os.spec.paused,
                ..Default::default()
            };
            publish_status(ctx, os, &report).await?;
            return Ok(Action::await_change());
        }
    };
    // partitions: whether an increase may be applied now; a drain holds intake (order at zero replicas).
    let gate = drain::gate(ctx, os, &spec).await;
    let spec = drain::hold_intake(spec, &gate);
    // backends (writes Kafka, Postgres and the service Secrets unless paused or in conflict).
    let mut backends = backends::ensure(ctx, os, &spec, &gate).await;
    // credentials: a requested rotation switches a Secret here, so this reconcile already rolls it.
    if !spec.paused && backends.report.conflict.is_none() {
        match rotation::step(ctx, os, &spec, &mut backends.observed).await {
            Ok(rotation) => {
                if let Some(pg) = backends.report.postgres.as_mut() {
                    rotation.record_logins(&mut pg.schemas);
                }
                backends.report.rotation = rotation;
            }
            Err(error) => {
                backends.report.postgres_error = Some(describe_error(&error));
                backends.first_error.get_or_insert(error.into());
            }
        }
    }
    // build (pure): from the valid spec and what the backends observed.
    let desired = build::build(&spec, &backends.observed);
    // apply (writes Kubernetes), skipped while paused or in conflict.
    if !spec.paused
        && backends.report.conflict.is_none()
        && let Err(error) = apply::apply(&ctx.client, &spec, &desired).await
    {
        backends.report.apply_error = Some(describe_error(&error));
        backends.first_error.get_or_insert(error.into());
    }
    backends.report.waiting = desired.waiting.clone();
    backends.report.compaction = compaction::warning(&spec.topic);
    backends.report.deployments = apply::observe_deployments(&ctx.client, &spec).await?;
    // status: patched only when it changed.
    publish_status(ctx, os, &backends.report).await?;
    if let Some(lag) = &backends.report.lag {
        ctx.metrics.set_lag(&spec.namespace, &spec.name, lag);
    }
    match backends.first_error {
        Some(error) => Err(error),
        // A drain advances on Kafka's and the pods' progress, which send no event here.
        None if gate.holds_intake() => Ok(Action::requeue(DRAIN_POLL)),
        // Lag changes without any watch event: look again at the configured interval.
        None => Ok(Action::requeue(RESYNC.min(lag_interval(os)))),
    }
}

/// Seconds between two lag observations, from the spec.
fn lag_interval(os: &OrderSystem) -> Duration {
    Duration::from_secs(u64::try_from(os.spec.consumer_lag.interval_seconds.max(1)).unwrap_or(30))
}

/// Computes and patches the status; emits Events when Ready or Degraded change.
async fn publish_status(ctx: &Context, os: &OrderSystem, report: &status::Report) -> Result<(), Error> {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::compute(os, report, now);
    let old = os.status.clone().unwrap_or_default();
    for type_ in [status::READY, status::DEGRADED] {
        let before = old.conditions.iter().find(|c| c.type_ == type_);
        let Some(after) = new.conditions.iter().find(|c| c.type_ == type_) else {
            continue;
        };
        if before.map(|c| (&c.status, &c.reason)) != Some((&after.status, &after.reason)) {
            let warning = (type_ == status::READY && after.status == "False")
                || (type_ == status::DEGRADED && after.status == "True");
            let event_type = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            info!(condition = type_, status = %after.status, reason = %after.reason, "condition changed");
            ctx.event(os, event_type, &after.reason, type_, after.message.clone())
                .await;
        }
    }
    status::patch(&ctx.client, os, new).await?;
    Ok(())
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

    #[test]
    fn a_failure_while_deleting_is_a_cleanup_failure_with_its_own_event_series() {
        let mut os = validate::tests::os_from_yaml(validate::tests::MINIMAL);
        assert_eq!(failure_reason(&os), ("ReconcileFailed", "Reconcile"));
        os.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert_eq!(failure_reason(&os), ("CleanupFailed", "Delete"));
    }
}
