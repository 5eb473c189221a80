//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's rules: a candidate takes the
//! lease only when its record (holder and renew time) has not changed for `lease_duration` by the
//! candidate's own clock, so clocks of different machines never have to agree; every write carries the
//! `resourceVersion` it read, so of two candidates the API server lets one win; the leader counts itself
//! leading only until `renew_deadline` after the start of its last successful renewal, which is shorter
//! than `lease_duration`: it has stopped before anyone else may start.
//!
//! `Leadership::is_leading` reads that deadline against the monotonic clock, which keeps running while the
//! process is stopped (SIGSTOP): a leader stopped past its lease finds itself no longer leading the moment
//! it runs again, before it renews anything.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// How a replica takes part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica, as the lease records it (the pod name, made unique per process).
    pub identity: String,
    /// How long a record must stay unchanged before another candidate may take the lease.
    pub lease_duration: Duration,
    /// How long after the start of its last successful renewal the leader still counts itself leading.
    pub renew_deadline: Duration,
    /// Time between two attempts to take or renew the lease.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s, 10 s and 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether this replica leads, as the election loop last found it.
#[derive(Clone)]
pub struct Leadership {
    until: watch::Receiver<Option<Instant>>,
}

impl Leadership {
    /// True while the last successful renewal is recent enough.
    pub fn is_leading(&self) -> bool {
        matches!(*self.until.borrow(), Some(until) if Instant::now() < until)
    }

    /// Waits until this replica leads.
    pub async fn acquired(&mut self) {
        while !self.is_leading() {
            if self.until.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until this replica no longer leads: a renewal failed for longer than the deadline, or the
    /// election loop ended.
    pub async fn lost(&mut self) {
        loop {
            let until = *self.until.borrow_and_update();
            let Some(until) = until.filter(|until| Instant::now() < *until) else {
                return;
            };
            tokio::select! {
                changed = self.until.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// What a candidate does with the lease as it found it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// No lease yet: create it, holding it.
    Create,
    /// Held by this candidate: renew it.
    Renew,
    /// Held by another whose record has not changed for the lease duration, or by nobody: take it.
    TakeOver,
    /// Held by another, recently renewed.
    Follow,
}

/// The record of a lease a candidate watches for change: holder and renew time.
type Record = (Option<String>, Option<String>);

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed = spec.renew_time.map(|t| t.0.to_string());
    (spec.holder_identity, renewed)
}

/// The step for `lease`, given when (by this candidate's clock) its record was last seen to change.
fn step(lease: Option<&Lease>, identity: &str, unchanged_for: Duration, lease_duration: Duration) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    match record(lease).0.filter(|holder| !holder.is_empty()) {
        Some(holder) if holder == identity => Step::Renew,
        Some(_) if unchanged_for < lease_duration => Step::Follow,
        _ => Step::TakeOver,
    }
}

/// Starts the election loop for `config`; it runs until the process ends or the returned handle aborts it
/// (then no renewal is sent again, as when the process is killed).
pub fn elect(client: kube::Client, config: LeaseConfig) -> (Leadership, tokio::task::AbortHandle) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run(client, config, tx));
    (Leadership { until: rx }, task.abort_handle())
}

async fn run(client: kube::Client, config: LeaseConfig, leading: watch::Sender<Option<Instant>>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    // The record last seen and when it was first seen, by this process's clock.
    let mut seen: Option<(Record, Instant)> = None;
    loop {
        let attempt = Instant::now();
        let found = match api.get_opt(&config.name).await {
            Ok(found) => Some(found),
            Err(error) => {
                warn!(%error, lease = %config.name, "reading the lease failed");
                None
            }
        };
        let renewed = match found {
            Some(lease) => {
                if let Some(lease) = &lease {
                    let now_record = record(lease);
                    if seen.as_ref().map(|(r, _)| r) != Some(&now_record) {
                        seen = Some((now_record, attempt));
                    }
                }
                let unchanged_for = seen.as_ref().map_or(Duration::ZERO, |(_, at)| attempt - *at);
                let step = step(
                    lease.as_ref(),
                    &config.identity,
                    unchanged_for,
                    config.lease_duration,
                );
                write(&api, &config, lease, &step).await
            }
            None => false,
        };
        let was_leading = leading.borrow().is_some_and(|until| Instant::now() < until);
        if renewed {
            if !was_leading {
                info!(lease = %config.name, identity = %config.identity, "leading");
            }
            leading.send_replace(Some(attempt + config.renew_deadline));
        } else if was_leading && Instant::now() >= leading.borrow().unwrap_or(attempt) {
            warn!(lease = %config.name, "lost the lease");
            leading.send_replace(None);
        }
        tokio::time::sleep_until(attempt + config.retry_period).await;
    }
}

/// Writes the lease for `step`; true when this candidate holds it now.
async fn write(api: &Api<Lease>, config: &LeaseConfig, found: Option<Lease>, step: &Step) -> bool {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let duration = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let result = match (step, found) {
        (Step::Follow, _) => return false,
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (Step::Renew | Step::TakeOver, Some(mut lease)) => {
            let mut spec = lease.spec.take().unwrap_or_default();
            if *step == Step::TakeOver {
                spec.holder_identity = Some(config.identity.clone());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(duration);
            spec.renew_time = Some(now);
            lease.spec = Some(spec);
            // `replace` sends the resourceVersion read: a lease changed meanwhile is refused (409).
            api.replace(&config.name, &PostParams::default(), &lease).await
        }
        (Step::Renew | Step::TakeOver, None) => return false,
    };
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(answer)) if answer.code == 409 => false,
        Err(error) => {
            warn!(%error, lease = %config.name, "writing the lease failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    const DURATION: Duration = Duration::from_secs(15);

    #[test]
    fn a_candidate_creates_a_missing_lease_and_renews_its_own() {
        assert_eq!(step(None, "a", Duration::ZERO, DURATION), Step::Create);
        assert_eq!(
            step(Some(&held_by("a")), "a", DURATION * 10, DURATION),
            Step::Renew
        );
    }

    #[test]
    fn another_holders_lease_is_taken_only_after_its_record_stood_still_for_the_duration() {
        let lease = held_by("b");
        assert_eq!(
            step(Some(&lease), "a", DURATION - Duration::from_millis(1), DURATION),
            Step::Follow
        );
        assert_eq!(step(Some(&lease), "a", DURATION, DURATION), Step::TakeOver);
        assert_eq!(
            step(Some(&held_by("")), "a", Duration::ZERO, DURATION),
            Step::TakeOver
        );
    }

    #[tokio::test]
    async fn leadership_ends_at_its_deadline_without_any_news() {
        let (tx, rx) = watch::channel(None);
        let mut leadership = Leadership { until: rx };
        assert!(!leadership.is_leading());
        let deadline = Duration::from_millis(300);
        tx.send_replace(Some(Instant::now() + deadline));
        leadership.acquired().await;
        assert!(leadership.is_leading());
        let start = Instant::now();
        leadership.lost().await;
        assert!(Instant::now() - start >= deadline - Duration::from_millis(50));
        assert!(!leadership.is_leading());
    }
}
