//! One pod bound to this node: prepare it, run its containers, report its status, finalize its deletion.
//!
//! Flow: allocate a loopback IP → build the launches with `launch` (retried every few seconds while a
//! Secret, ConfigMap or binary is missing, with the reason in the containers' `waiting` state) → one
//! supervisor per container → patch `status` whenever a record
//! changes. When the pod gets a `deletionTimestamp` the supervisors stop their processes (SIGTERM, the
//! pod's grace period, SIGKILL); once all are gone the agent deletes the pod with grace 0, which is the
//! kubelet's job and what lets the API server remove the object. This module writes only the pod's
//! status and that final delete; init containers are not run (the agent logs that override).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::container::{Shared, Supervised, supervise};
use crate::launch::PodSetup;
use crate::process::Launch;
use crate::status::{self, Conditions, Record};
use crate::{Agent, error_chain};

/// How often a pod that cannot start yet (missing Secret, binary, …) is retried.
const PREPARE_RETRY: Duration = Duration::from_secs(2);
/// Status is recomputed at least this often, so a write that failed is retried even when nothing changes.
const STATUS_RESYNC: Duration = Duration::from_secs(10);
/// The default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// Longest grace when the agent itself shuts down: tests stop agents and should not wait 30 s per pod.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the dispatcher tells a pod worker.
#[derive(Debug)]
pub enum PodEvent {
    /// The pod object changed (a `deletionTimestamp` starts the graceful stop).
    Updated(Arc<Pod>),
    /// The pod object is gone from the API server: stop, nothing left to finalize.
    Removed,
    /// The agent is shutting down: stop the processes, leave the pod object alone.
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to delete the pod")]
    Delete(#[source] kube::Error),
}

/// How the worker must stop.
#[derive(Debug, Clone, Copy)]
struct Stop {
    grace: Duration,
    /// Delete the pod object once the processes are gone (a graceful deletion).
    finalize: bool,
}

/// Runs the pod until it is deleted or the agent shuts down.
pub async fn run(agent: Arc<Agent>, pod: Arc<Pod>, events: mpsc::UnboundedReceiver<PodEvent>) {
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    let ip = match agent.ips.allocate() {
        Ok(ip) => ip,
        Err(error) => return warn!(pod = %key, error = %error_chain(&error), "pod not started"),
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_dir = agent.state_dir.join("pods").join(&uid);
    info!(pod = %key, %ip, "pod assigned");
    let mut worker = Worker {
        agent: agent.clone(),
        pod,
        ip,
        pod_dir: pod_dir.clone(),
        conditions: Conditions::default(),
        last_status: None,
        started: Utc::now(),
    };
    if let Err(error) = worker.run(events).await {
        warn!(pod = %key, error = %error_chain(&error), "pod worker failed");
    }
    agent.ips.release(ip);
    // Volumes hold tokens and Secret values; logs live elsewhere and stay.
    let _ = std::fs::remove_dir_all(&pod_dir);
    info!(pod = %key, "pod done");
}

struct Worker {
    agent: Arc<Agent>,
    pod: Arc<Pod>,
    ip: Ipv4Addr,
    pod_dir: PathBuf,
    conditions: Conditions,
    last_status: Option<Value>,
    started: chrono::DateTime<Utc>,
}

impl Worker {
    async fn run(&mut self, mut events: mpsc::UnboundedReceiver<PodEvent>) -> Result<(), Error> {
        let changed = Arc::new(Notify::new());
        let containers = self.containers();
        let shared: Vec<Shared> = containers
            .iter()
            .map(|c| {
                let image = c.image.as_deref().unwrap_or("");
                Shared::new(
                    Record::waiting(&c.name, image, "ContainerCreating", ""),
                    changed.clone(),
                )
            })
            .collect();
        let terminal = matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if terminal {
            // Already finished under an earlier agent: nothing to run, only the deletion to finalize.
            return self.wait_and_finalize(&mut events, &[]).await;
        }
        self.report(&shared).await;
        let launches = match self.prepare(&mut events, &shared, &containers).await {
            Ok(launches) => launches,
            Err(stop) => return self.finish(stop, &shared).await,
        };
        match self
            .run_containers(&mut events, &shared, &changed, containers, launches)
            .await
        {
            Some(stop) => self.finish(stop, &shared).await,
            None => Ok(()),
        }
    }

    /// Builds the launches, retrying while something is missing; `Err` if the pod is stopped first.
    async fn prepare(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<PodEvent>,
        shared: &[Shared],
        containers: &[Container],
    ) -> Result<Vec<Launch>, Stop> {
        loop {
            if let Some(stop) = self.stop_from_pod() {
                return Err(stop);
            }
            match self.setup().launches(containers).await {
                Ok(launches) => return Ok(launches),
                Err(error) => {
                    let message = error_chain(&error);
                    warn!(pod = %self.name(), %message, "pod cannot start yet, retrying");
                    let waiting = status::State::Waiting {
                        reason: error.waiting_reason().into(),
                        message,
                    };
                    shared
                        .iter()
                        .for_each(|s| s.update(|r| r.state = waiting.clone()));
                    self.report(shared).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PREPARE_RETRY) => {}
                event = events.recv() => if let Some(stop) = self.handle(event) {
                    return Err(stop);
                },
            }
        }
    }

    /// One supervisor per container; reports status on every change until a stop has ended them all.
    async fn run_containers(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<PodEvent>,
        shared: &[Shared],
        changed: &Notify,
        containers: Vec<Container>,
        launches: Vec<Launch>,
    ) -> Option<Stop> {
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut tasks = JoinSet::new();
        for ((container, launch), shared) in containers.into_iter().zip(launches).zip(shared) {
            let spec = Supervised {
                container,
                launch,
                pod_ip: IpAddr::V4(self.ip),
                restart_policy: self.restart_policy(),
                backoff_base: self.agent.crash_backoff,
                termination_grace: self.grace(),
            };
            tasks.spawn(supervise(spec, shared.clone(), stop_rx.clone()));
        }
        let mut stop: Option<Stop> = None;
        let mut events_open = true;
        let mut refresh = tokio::time::interval_at(
            tokio::time::Instant::now() + self.agent.volume_refresh,
            self.agent.volume_refresh,
        );
        let mut resync = tokio::time::interval(STATUS_RESYNC);
        while !(stop.is_some() && tasks.is_empty()) {
            tokio::select! {
                event = events.recv(), if events_open => {
                    events_open = event.is_some();
                    match (self.handle(event), &mut stop) {
                        (Some(new), None) => {
                            info!(pod = %self.name(), grace_seconds = new.grace.as_secs(), "stopping pod");
                            let _ = stop_tx.send(Some(new.grace));
                            stop = Some(new);
                        }
                        // Removed while stopping: nothing left to finalize.
                        (Some(new), Some(current)) => current.finalize &= new.finalize,
                        (None, _) => {}
                    }
                }
                _ = changed.notified() => self.report(shared).await,
                _ = resync.tick() => self.report(shared).await,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = refresh.tick() => {
                    if let Err(error) = self.setup().write_volumes().await {
                        warn!(pod = %self.name(), error = %error_chain(&error), "volume refresh failed");
                    }
                }
            }
        }
        stop
    }

    /// A pod that has ended for good (or never ran): wait for its deletion, then finalize it.
    async fn wait_and_finalize(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<PodEvent>,
        shared: &[Shared],
    ) -> Result<(), Error> {
        loop {
            if let Some(stop) = self.stop_from_pod() {
                return self.finish(stop, shared).await;
            }
            let event = events.recv().await;
            let closed = event.is_none();
            if let Some(stop) = self.handle(event) {
                return self.finish(stop, shared).await;
            }
            if closed {
                return Ok(());
            }
        }
    }

    /// The processes are gone: report the last status and, for a graceful deletion, delete the pod.
    async fn finish(&mut self, stop: Stop, shared: &[Shared]) -> Result<(), Error> {
        if !stop.finalize {
            return Ok(());
        }
        self.report(shared).await;
        let pods: Api<Pod> = Api::namespaced(self.agent.client.clone(), self.namespace());
        // The uid precondition keeps a late finalize from deleting a new pod with the same name.
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(self.name(), &params).await {
            Ok(_) => {
                info!(pod = %self.name(), "pod deletion finalized");
                Ok(())
            }
            // Already gone, or replaced by a new pod of the same name (uid precondition).
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
            Err(source) => Err(Error::Delete(source)),
        }
    }

    /// Turns an event into a stop request, keeping the newest pod object.
    fn handle(&mut self, event: Option<PodEvent>) -> Option<Stop> {
        match event {
            Some(PodEvent::Updated(pod)) => {
                self.pod = pod;
                self.stop_from_pod()
            }
            Some(PodEvent::Removed) => Some(Stop {
                grace: self.grace(),
                finalize: false,
            }),
            Some(PodEvent::Shutdown) | None => Some(Stop {
                grace: self.grace().min(SHUTDOWN_GRACE),
                finalize: false,
            }),
        }
    }

    /// A stop if the pod is being deleted, with the grace period the deletion asked for.
    fn stop_from_pod(&self) -> Option<Stop> {
        self.pod.metadata.deletion_timestamp.as_ref()?;
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        Some(Stop {
            grace: Duration::from_secs(seconds.max(0) as u64),
            finalize: true,
        })
    }

    /// Patches the pod status when it differs from the last one written.
    async fn report(&mut self, shared: &[Shared]) {
        let records: Vec<Record> = shared.iter().map(Shared::snapshot).collect();
        let facts = status::PodFacts {
            pod_ip: Some(self.ip),
            host_ip: Ipv4Addr::LOCALHOST,
            start_time: self.started,
            restart_policy: self.restart_policy(),
        };
        let status = status::pod_status(&facts, &records, &mut self.conditions, Utc::now());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.agent.client.clone(), self.namespace());
        match pods
            .patch_status(
                self.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                warn!(pod = %self.name(), error = %error_chain(&error), "failed to patch pod status")
            }
        }
    }

    fn containers(&self) -> Vec<Container> {
        let spec = self.pod.spec.as_ref();
        if spec
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|c| !c.is_empty())
        {
            warn!(pod = %self.name(), "override: init containers are not run in local mode");
        }
        spec.map(|s| s.containers.clone()).unwrap_or_default()
    }

    fn setup(&self) -> PodSetup<'_> {
        PodSetup {
            agent: &self.agent,
            pod: &self.pod,
            ip: self.ip,
            pod_dir: &self.pod_dir,
        }
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn grace(&self) -> Duration {
        let seconds = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        Duration::from_secs(seconds.max(0) as u64)
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }
}
