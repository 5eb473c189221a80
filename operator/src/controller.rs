//! The reconciler of `OrderSystem`. `reconcile_apply` is the pipeline, read top to bottom:
//! validate → observe → decide → ensure → status. `validate`, `decide`, `build` and `status::compute`
//! are pure; `observe` does every read of the world once, before anything is written; the writers
//! (`ensure`: Kafka, PostgreSQL, a rotation's step, then `apply` for Kubernetes) each keep their typed
//! result; the status is computed from all of it and patched once. `docs/architecture.md` draws it. An
//! invalid spec is a condition, not an error; a failure requeues with per-object exponential backoff.
//! Each step runs in a tracing span of its own, and each look logs how long its steps took (`steps`).

pub mod applied;
pub mod apply;
pub mod autoscale;
pub mod build;
pub mod compaction;
pub mod context;
pub mod decide;
pub mod drain;
pub mod durability;
pub mod ensure;
pub mod error;
pub mod kafka;
pub mod lag;
pub mod observe;
pub mod postgres;
pub mod rotation;
pub mod secrets;
pub mod status;
pub mod steps;
pub mod validate;

mod cleanup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer;
use tracing::{info, instrument, warn};

pub use context::Context;
pub use error::{Error, describe_error};

use crate::crd::OrderSystem;
use crate::names::FINALIZER;

/// Periodic requeue: Kafka and Postgres send no watch events, so drift there is found by looking again.
pub const RESYNC: Duration = Duration::from_secs(120);
/// How often a drain for a partition increase looks at its progress.
const DRAIN_POLL: Duration = Duration::from_secs(5);
/// How often the topic's replicas are looked at again while fewer are in sync than the spec asks for, so
/// `DurabilityReduced` clears soon after the brokers are back (they send no event here).
const DURABILITY_POLL: Duration = Duration::from_secs(10);

/// Entry point of one reconcile: the finalizer decides between `apply` and `cleanup`.
#[instrument(skip_all, fields(namespace = %os.namespace().unwrap_or_default(), name = %os.name_any()))]
pub async fn reconcile(os: Arc<OrderSystem>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.count_and_measure();
    // With leader election, each phase that writes looks first whether this replica still leads.
    if !ctx.may_write() {
        return Err(Error::NotLeader);
    }
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
            ctx.forget_failures(&os.uid().unwrap_or_default());
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
    let failures = ctx.count_failure(&os.uid().unwrap_or_default());
    let delay = error::backoff_delay(failures, rand::random::<f64>());
    warn!(error = %error, error_kind = error.metric_label(), failures, retry_in = ?delay, "reconcile failed");
    // error_policy is synchronous; the Event is published on the side. The recorder folds Events of the
    // same reason and action into one series that keeps its first note for a while (as client-go does),
    // so a failing deletion gets its own reason: its error is not hidden behind an earlier apply failure.
    let (reason, action) = failure_reason(&os);
    let note = describe_error(error);
    let transient = error.is_transient();
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

/// The pipeline for a live resource. A failed read or write does not stop the others or the status: it
/// is shown in a condition, and the first one is returned at the end so the reconcile is retried.
async fn reconcile_apply(os: &OrderSystem, ctx: &Context) -> Result<Action, Error> {
    // validate: a bad spec stops here, before any read or write, and waits for a change.
    let spec = match validate::validate_with(os, &ctx.images) {
        Ok(spec) => spec,
        Err(invalid) => {
            let report = status::Report::invalid(os, invalid.to_string());
            publish_status(ctx, os, &report).await?;
            return Ok(Action::await_change());
        }
    };
    let (started, mut times) = (Instant::now(), steps::Times::default());
    // observe: every read of Kafka, PostgreSQL's admin Secret and the cluster, once.
    let world = steps::timed(&mut times.observe, observe::observe(ctx, os, &spec)).await;
    // decide: whether partitions may be added now, the spec to write while a drain holds intake, and the
    // replicas of the consumers that scale on lag.
    let now = k8s_openapi::jiff::Timestamp::now();
    let plan = decide::decide(os, spec, &world, now);
    // ensure: the writers (nothing in conflict; only looks while paused).
    if !ctx.may_write() {
        return Err(Error::NotLeader);
    }
    let outcome = ensure::ensure(ctx, os, &plan, &world, &mut times).await;
    // status: computed from all of the above, patched when it changed.
    let report = status::Report::gather(os, &plan, &world, outcome.as_ref());
    let published = steps::timed(&mut times.status, publish_status(ctx, os, &report)).await;
    times.log(started);
    for scaled in report.scaled() {
        let reason = scaled.reason.as_str();
        ctx.event(os, EventType::Normal, reason, "Scale", scaled.message.clone())
            .await;
    }
    if let Some(lag) = &report.lag {
        ctx.metrics.set_lag(&plan.spec.namespace, &plan.spec.name, lag);
    }
    let failed = world
        .into_first_error()
        .or_else(|| outcome.and_then(ensure::Outcome::into_first_error));
    match (failed, published) {
        (Some(error), published) => {
            if let Err(status_error) = published {
                warn!(error = %describe_error(&status_error), "status not written either");
            }
            Err(error)
        }
        (None, Err(error)) => Err(error),
        // A drain advances on Kafka's and the pods' progress, which send no event here.
        (None, Ok(())) if plan.gate.holds_intake() => Ok(Action::requeue(DRAIN_POLL)),
        (None, Ok(())) if report.durability_reduced() => {
            Ok(Action::requeue(DURABILITY_POLL.min(lag_interval(os))))
        }
        // Lag changes without any watch event: look again at the configured interval.
        (None, Ok(())) => Ok(Action::requeue(RESYNC.min(lag_interval(os)))),
    }
}

/// Seconds between two lag observations, from the spec.
fn lag_interval(os: &OrderSystem) -> Duration {
    Duration::from_secs(u64::try_from(os.spec.consumer_lag.interval_seconds.max(1)).unwrap_or(30))
}

/// Computes and patches the status; emits Events when Ready, Degraded or DurabilityReduced changed. The patch carries the
/// version of the object the status was computed from, and the API server refuses it when the object has
/// changed since: most often by the last reconcile's own status write, not yet in the cache, or by this
/// reconcile's own annotation patch (a finished rotation). A status from that older copy could drop what
/// was recorded meanwhile, such as the topic's id; so it is computed once more from the object as the API
/// server has it now.
#[instrument(skip_all)]
async fn publish_status(ctx: &Context, os: &OrderSystem, report: &status::Report) -> Result<(), Error> {
    if !ctx.may_write() {
        return Err(Error::NotLeader);
    }
    let error = |source| Error::Status {
        name: os.name_any(),
        source,
    };
    let changed = match write_status(ctx, os, report).await {
        Err(kube::Error::Api(answer)) if answer.code == 409 => {
            let api: Api<OrderSystem> =
                Api::namespaced(ctx.client.clone(), &os.namespace().unwrap_or_default());
            let fresh = api.get(&os.name_any()).await.map_err(error)?;
            write_status(ctx, &fresh, report).await
        }
        written => written,
    }
    .map_err(error)?;
    for after in changed {
        let warning = (after.type_ == status::READY && after.status == "False")
            || (after.type_ == status::DEGRADED && after.status == "True")
            || (after.type_ == status::DURABILITY_REDUCED && after.status == "True");
        let event_type = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        info!(condition = %after.type_, status = %after.status, reason = %after.reason, "condition changed");
        ctx.event(os, event_type, &after.reason, &after.type_, after.message)
            .await;
    }
    Ok(())
}

/// Patches the status computed for `os`; returns the Ready, Degraded and DurabilityReduced conditions that
/// changed.
async fn write_status(
    ctx: &Context,
    os: &OrderSystem,
    report: &status::Report,
) -> Result<Vec<Condition>, kube::Error> {
    let new = status::compute(os, report, Time(k8s_openapi::jiff::Timestamp::now()));
    let old = os.status.clone().unwrap_or_default();
    let changed = [status::READY, status::DEGRADED, status::DURABILITY_REDUCED]
        .into_iter()
        .filter_map(|type_| {
            let before = old.conditions.iter().find(|c| c.type_ == type_);
            let after = new.conditions.iter().find(|c| c.type_ == type_)?;
            let changed = before.map(|c| (&c.status, &c.reason)) != Some((&after.status, &after.reason));
            changed.then(|| after.clone())
        })
        .collect();
    let conditions = new.conditions.clone();
    status::patch(&ctx.client, os, new).await?;
    ctx.metrics
        .set_conditions(&os.namespace().unwrap_or_default(), &os.name_any(), &conditions);
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
