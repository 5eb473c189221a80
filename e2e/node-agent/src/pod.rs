//! One pod bound to this node: prepare it, run its containers, report its status, finalize its deletion.
//!
//! Flow: allocate a loopback IP → write its volumes and resolve env, image and mounts for each container
//! (retried every few seconds while a Secret, ConfigMap or binary is missing, with the reason in the
//! container's `waiting` state) → one supervisor per container → patch `status` whenever a record
//! changes. When the pod gets a `deletionTimestamp` the supervisors stop their processes (SIGTERM, the
//! pod's grace period, SIGKILL); once all are gone the agent deletes the pod with grace 0, which is the
//! kubelet's job and what lets the API server remove the object. This module writes only the pod's
//! status and that final delete; init containers are not run (the agent logs that override).

use std::collections::BTreeMap;
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
use crate::env::{self, Sources};
use crate::process::{self, Launch, Mount};
use crate::status::{self, Conditions, Record};
use crate::{Agent, error_chain, images, volumes};

/// How often a pod that cannot start yet (missing Secret, binary, …) is retried.
const PREPARE_RETRY: Duration = Duration::from_secs(2);
/// Volumes are rewritten this often: changed Secrets and ConfigMaps show up within about the kubelet's
/// sync period, and projected tokens (1 h by default) are renewed long before they expire.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
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
    #[error("failed to allocate a pod IP")]
    AllocateIp(#[from] crate::ips::Error),
    #[error("failed to prepare volumes")]
    Volumes(#[from] volumes::Error),
    #[error("failed to resolve env")]
    Env(#[from] env::Error),
    #[error("failed to resolve the image")]
    Image(#[from] images::Error),
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
                Shared::new(
                    Record::waiting(&c.name, c.image.as_deref().unwrap_or(""), "ContainerCreating", ""),
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
        let launches = loop {
            if let Some(stop) = self.stop_from_pod() {
                return self.finish(stop, &shared).await;
            }
            match self.prepare(&containers).await {
                Ok(launches) => break launches,
                Err(error) => {
                    let reason = if matches!(error, Error::Image(_)) {
                        "ImageNotMapped"
                    } else {
                        "CreateContainerConfigError"
                    };
                    let message = error_chain(&error);
                    warn!(pod = %self.name(), %message, "pod cannot start yet, retrying");
                    shared.iter().for_each(|s| {
                        s.update(|r| {
                            r.state = status::State::Waiting {
                                reason: reason.into(),
                                message: message.clone(),
                            }
                        })
                    });
                    self.report(&shared).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PREPARE_RETRY) => {}
                event = events.recv() => if let Some(stop) = self.handle(event) {
                    return self.finish(stop, &shared).await;
                },
            }
        };
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut tasks = JoinSet::new();
        for ((container, launch), shared) in containers.into_iter().zip(launches).zip(&shared) {
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
        let mut refresh =
            tokio::time::interval_at(tokio::time::Instant::now() + VOLUME_REFRESH, VOLUME_REFRESH);
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
                _ = changed.notified() => self.report(&shared).await,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = refresh.tick() => {
                    if let Err(error) = self.write_volumes().await {
                        warn!(pod = %self.name(), error = %error_chain(&error), "volume refresh failed");
                    }
                }
            }
        }
        match stop {
            Some(stop) => self.finish(stop, &shared).await,
            None => Ok(()),
        }
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

    /// Volumes, then each container's binary, env, arguments and mounts.
    async fn prepare(&self, containers: &[Container]) -> Result<Vec<Launch>, Error> {
        let mut sources = Sources::new(self.agent.client.clone(), self.namespace());
        let facts = self.facts();
        let volumes = self.write_volumes_with(&mut sources).await?;
        let mut launches = Vec::with_capacity(containers.len());
        for container in containers {
            let program = self
                .agent
                .images
                .resolve(container.image.as_deref().unwrap_or(""))?;
            let mut vars = env::resolve(&mut sources, &self.pod, container, &facts).await?;
            if !vars.iter().any(|(k, _)| k == "HOSTNAME") {
                vars.push(("HOSTNAME".into(), self.name().to_string()));
            }
            launches.push(Launch {
                args: self.arguments(container, &vars),
                mounts: self.mounts(container, &volumes),
                pid_dir: self.agent.state_dir.join("pids"),
                working_dir: self.working_dir(container),
                log_path: process::log_path(
                    &self.agent.state_dir,
                    self.namespace(),
                    self.name(),
                    &container.name,
                ),
                program,
                env: vars,
            });
        }
        Ok(launches)
    }

    /// `command[1..] + args`, `$(VAR)`-expanded. `command[0]` names a path inside the image, so the
    /// mapped binary replaces it (logged).
    fn arguments(&self, container: &Container, vars: &[(String, String)]) -> Vec<String> {
        let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let command = container.command.clone().unwrap_or_default();
        if let Some(entrypoint) = command.first() {
            info!(container = %container.name, %entrypoint, "override: command[0] replaced by the image's local binary");
        }
        command
            .iter()
            .skip(1)
            .chain(container.args.iter().flatten())
            .map(|a| env::expand(a, &lookup))
            .collect()
    }

    fn mounts(&self, container: &Container, volumes: &BTreeMap<String, PathBuf>) -> Vec<Mount> {
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let Some(dir) = volumes.get(&vm.name) else {
                warn!(container = %container.name, volume = %vm.name, "override: volume not available in local mode, mount skipped");
                continue;
            };
            let source = vm
                .sub_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .map_or_else(|| dir.clone(), |p| dir.join(p));
            mounts.push(Mount {
                source,
                target: PathBuf::from(&vm.mount_path),
                read_only: vm.read_only.unwrap_or(false),
            });
        }
        mounts
    }

    /// The spec's `workingDir` when it exists on the host, else the pod's own directory.
    fn working_dir(&self, container: &Container) -> PathBuf {
        match container.working_dir.as_deref().map(PathBuf::from) {
            Some(dir) if dir.is_dir() => dir,
            Some(dir) => {
                info!(container = %container.name, dir = %dir.display(), "override: workingDir missing on the host, using the pod directory");
                self.pod_dir.clone()
            }
            None => self.pod_dir.clone(),
        }
    }

    async fn write_volumes(&self) -> Result<BTreeMap<String, PathBuf>, Error> {
        let mut sources = Sources::new(self.agent.client.clone(), self.namespace());
        self.write_volumes_with(&mut sources).await
    }

    async fn write_volumes_with(&self, sources: &mut Sources) -> Result<BTreeMap<String, PathBuf>, Error> {
        std::fs::create_dir_all(&self.pod_dir).map_err(|source| volumes::Error::Write {
            path: self.pod_dir.clone(),
            source,
        })?;
        Ok(volumes::materialize(
            &self.agent.client,
            sources,
            &self.pod,
            &self.facts(),
            &self.pod_dir,
        )
        .await?)
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

    fn facts(&self) -> env::PodFacts {
        env::PodFacts {
            pod_ip: self.ip.to_string(),
            host_ip: Ipv4Addr::LOCALHOST.to_string(),
            service_host: self.agent.api_host.clone(),
            service_port: self.agent.api_port,
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
