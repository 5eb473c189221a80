//! One container's life: start, probe, restart with crash-loop backoff, stop.
//!
//! A supervisor task owns the container's process and writes what happens into the shared [`Record`];
//! the pod worker reads the records to build the pod status and is woken through `changed`. The
//! supervisor never talks to the API server. Restarts follow the pod's `restartPolicy`; like the kubelet,
//! the first restart is immediate and each further quick crash doubles the wait (base 10 s, cap 5 min),
//! and a container that ran for 10 minutes starts over with no delay.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{Notify, oneshot, watch};
use tracing::{info, warn};

use crate::probes::{self, Timing};
use crate::process::{self, Exit, Launch};
use crate::status::{Record, State};

/// Longest crash-loop wait (the kubelet's).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A run this long resets the backoff (the kubelet's).
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// Exit code reported when the process could not even be spawned.
const SPAWN_FAILED_EXIT_CODE: i32 = 128;

/// The record of one container, shared with the pod worker.
#[derive(Debug, Clone)]
pub struct Shared {
    record: Arc<Mutex<Record>>,
    changed: Arc<Notify>,
}

impl Shared {
    pub fn new(record: Record, changed: Arc<Notify>) -> Self {
        Shared {
            record: Arc::new(Mutex::new(record)),
            changed,
        }
    }

    pub fn snapshot(&self) -> Record {
        self.lock().clone()
    }

    /// Changes the record and wakes the pod worker.
    pub fn update(&self, change: impl FnOnce(&mut Record)) {
        change(&mut self.lock());
        self.changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        // Every update is a single assignment-like closure, so a poisoned record is still consistent.
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the supervisor needs to run one container.
#[derive(Debug, Clone)]
pub struct Supervised {
    pub container: Container,
    pub launch: Launch,
    pub pod_ip: IpAddr,
    pub restart_policy: String,
    pub backoff_base: Duration,
    /// Grace for a restart forced by a failing liveness probe.
    pub termination_grace: Duration,
}

/// Runs the container until it ends for good or `stop` carries a grace period.
pub async fn supervise(spec: Supervised, shared: Shared, mut stop: watch::Receiver<Option<Duration>>) {
    let name = spec.container.name.clone();
    let mut quick_crashes = 0u32;
    if spec.container.startup_probe.is_some() {
        info!(container = %name, "override: startupProbe not run in local mode, container counts as started");
    }
    loop {
        let started_at = Utc::now();
        let started = Instant::now();
        let (exit, stopping) = match process::spawn(&spec.launch) {
            Ok(mut running) => {
                info!(container = %name, pid = running.pid(), "container started");
                shared.update(|r| {
                    r.state = State::Running { started_at };
                    r.pid = Some(running.pid());
                    r.ready = spec.container.readiness_probe.is_none();
                });
                let (liveness_failed, probe_task) = start_probes(&spec, &shared);
                let outcome = tokio::select! {
                    exit = running.wait() => (exit, None),
                    _ = liveness_failed => {
                        warn!(container = %name, "liveness probe failed, restarting the container");
                        (running.stop(spec.termination_grace).await, None)
                    }
                    grace = stop_requested(&mut stop) => (running.stop(grace).await, Some(grace)),
                };
                probe_task.abort();
                let (exit, grace) = outcome;
                let exit = exit.unwrap_or_else(|error| {
                    warn!(container = %name, %error, "lost track of the process");
                    Exit {
                        code: SPAWN_FAILED_EXIT_CODE,
                        signal: None,
                    }
                });
                (exit, grace.is_some())
            }
            Err(error) => {
                warn!(container = %name, error = %crate::error_chain(&error), "container failed to start");
                shared.update(|r| {
                    r.state = State::Waiting {
                        reason: "RunContainerError".into(),
                        message: error.to_string(),
                    }
                });
                (
                    Exit {
                        code: SPAWN_FAILED_EXIT_CODE,
                        signal: None,
                    },
                    false,
                )
            }
        };
        info!(container = %name, exit_code = exit.code, signal = ?exit.signal, "container exited");
        let terminated = State::Terminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason: if exit.code == 0 { "Completed" } else { "Error" }.into(),
            started_at,
            finished_at: Utc::now(),
        };
        shared.update(|r| {
            r.state = terminated.clone();
            r.ready = false;
        });
        if stopping || !restarts(&spec.restart_policy, exit) || stop.borrow().is_some() {
            return;
        }
        if started.elapsed() >= BACKOFF_RESET_AFTER {
            quick_crashes = 0;
        }
        let delay = backoff(quick_crashes, spec.backoff_base);
        quick_crashes += 1;
        if !delay.is_zero() {
            let message = format!("back-off {}s restarting failed container={name}", delay.as_secs());
            shared.update(|r| {
                r.last_state = Some(terminated.clone());
                r.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message,
                };
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop_requested(&mut stop) => return,
            }
        }
        shared.update(|r| {
            r.last_state = Some(terminated);
            r.restart_count += 1;
        });
    }
}

/// Whether the policy restarts a container that ended with `exit`.
fn restarts(policy: &str, exit: Exit) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit.code != 0,
        _ => true,
    }
}

/// Wait before restart number `quick_crashes + 1`: none, then base, 2×base, … up to [`MAX_BACKOFF`].
fn backoff(quick_crashes: u32, base: Duration) -> Duration {
    match quick_crashes {
        0 => Duration::ZERO,
        n => base.saturating_mul(1 << (n - 1).min(16)).min(MAX_BACKOFF),
    }
}

/// Resolves with the grace period once a stop is requested; a dropped sender means stop now.
async fn stop_requested(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    match stop.wait_for(Option::is_some).await {
        Ok(grace) => grace.unwrap_or_default(),
        Err(_) => Duration::ZERO,
    }
}

/// Starts the readiness and liveness loops; the receiver fires when liveness fails.
fn start_probes(spec: &Supervised, shared: &Shared) -> (oneshot::Receiver<()>, tokio::task::JoinHandle<()>) {
    let (failed_tx, failed_rx) = oneshot::channel();
    let mut failed_tx = Some(failed_tx);
    let readiness = spec.container.readiness_probe.clone();
    let liveness = spec.container.liveness_probe.clone();
    let (container, ip, shared) = (spec.container.clone(), spec.pod_ip, shared.clone());
    let task = tokio::spawn(async move {
        let ready_loop = async {
            if let Some(probe) = &readiness {
                run_probe(probe, &container, ip, |ok| shared.update(|r| r.ready = ok)).await;
            }
        };
        let live_loop = async {
            if let Some(probe) = &liveness {
                run_probe(probe, &container, ip, |ok| {
                    // Only the first failure matters: the supervisor restarts the container.
                    if !ok && let Some(tx) = failed_tx.take() {
                        let _ = tx.send(());
                    }
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        // Both loops run until the supervisor aborts this task when the process ends.
        tokio::join!(ready_loop, live_loop);
    });
    (failed_rx, task)
}

/// Probes every period; calls `report(true)` after `successThreshold` successes in a row and
/// `report(false)` after `failureThreshold` failures in a row, until aborted.
async fn run_probe(probe: &Probe, container: &Container, ip: IpAddr, mut report: impl FnMut(bool)) {
    let timing = Timing::of(probe);
    if let Some(reason) = probes::unsupported(probe) {
        info!(container = %container.name, reason, "override: probe not checked in local mode, counts as passing");
        report(true);
        return std::future::pending().await;
    }
    tokio::time::sleep(timing.initial_delay).await;
    let (mut successes, mut failures, mut reported) = (0u32, 0u32, None);
    loop {
        match probes::check(probe, container, ip).await {
            Ok(()) => (successes, failures) = (successes + 1, 0),
            Err(error) => {
                (successes, failures) = (0, failures + 1);
                tracing::debug!(container = %container.name, %error, "probe failed");
            }
        }
        if successes >= timing.success_threshold && reported != Some(true) {
            reported = Some(true);
            report(true);
        }
        if failures >= timing.failure_threshold && reported != Some(false) {
            reported = Some(false);
            report(false);
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_up_to_five_minutes() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(0, base), Duration::ZERO);
        assert_eq!(backoff(1, base), Duration::from_secs(10));
        assert_eq!(backoff(3, base), Duration::from_secs(40));
        assert_eq!(backoff(30, base), MAX_BACKOFF);
    }

    #[test]
    fn restart_policy_decides_which_exits_restart() {
        let ok = Exit {
            code: 0,
            signal: None,
        };
        let crash = Exit {
            code: 137,
            signal: Some(9),
        };
        assert!(restarts("Always", ok) && restarts("Always", crash));
        assert!(!restarts("OnFailure", ok) && restarts("OnFailure", crash));
        assert!(!restarts("Never", crash));
    }
}
