//! From a pod spec to process launches: the pod's volumes on disk, then for each container the image's
//! binary, its env, arguments, mounts, working directory and log file.
//!
//! Reads Secrets and ConfigMaps and requests tokens; writes only under the pod's own directory. An error
//! here means "cannot start yet" (a missing Secret, an unmapped image): the pod worker shows it as the
//! containers' waiting reason and retries.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use tracing::{info, warn};

use crate::env::{self, Sources};
use crate::process::{self, Launch, Mount};
use crate::{Agent, images, volumes};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to prepare volumes")]
    Volumes(#[from] volumes::Error),
    #[error("failed to resolve env")]
    Env(#[from] env::Error),
    #[error("failed to resolve the image")]
    Image(#[from] images::Error),
}

impl Error {
    /// The container `waiting` reason a kubelet would show for this.
    pub fn waiting_reason(&self) -> &'static str {
        match self {
            Error::Image(_) => "ImageNotMapped",
            Error::Volumes(_) | Error::Env(_) => "CreateContainerConfigError",
        }
    }
}

/// One pod's setup on this node.
pub struct PodSetup<'a> {
    pub agent: &'a Agent,
    pub pod: &'a Pod,
    pub ip: Ipv4Addr,
    /// `<state dir>/pods/<uid>`: volumes live under it.
    pub pod_dir: &'a Path,
}

impl PodSetup<'_> {
    /// Writes the volumes, then builds each container's launch, in spec order.
    pub async fn launches(&self, containers: &[Container]) -> Result<Vec<Launch>, Error> {
        let mut sources = Sources::new(self.agent.client.clone(), self.namespace());
        let volumes = self.write_volumes_with(&mut sources).await?;
        let mut launches = Vec::with_capacity(containers.len());
        if self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .is_some()
            || containers.iter().any(|c| c.security_context.is_some())
        {
            // Users, capabilities and seccomp need a container runtime; a read-only root does not.
            info!(pod = %self.name(), "override: securityContext applied only for readOnlyRootFilesystem, processes run as the agent's user");
        }
        for container in containers {
            let program = self
                .agent
                .images
                .resolve(container.image.as_deref().unwrap_or(""))?;
            let facts = self.facts();
            let mut vars = env::resolve(&mut sources, self.pod, container, &facts).await?;
            for name in env::bind_wildcards_to_pod_ip(&mut vars, &facts.pod_ip) {
                info!(container = %container.name, var = %name, pod_ip = %facts.pod_ip,
                    "override: wildcard listen address bound to the pod IP (pods share the host's network)");
            }
            if !vars.iter().any(|(k, _)| k == "HOSTNAME") {
                vars.push(("HOSTNAME".into(), self.name().to_string()));
            }
            launches.push(Launch {
                args: arguments(container, &vars),
                mounts: mounts(container, &volumes),
                read_only_root: container
                    .security_context
                    .as_ref()
                    .and_then(|s| s.read_only_root_filesystem)
                    .unwrap_or(false),
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

    /// Rewrites every volume (fresh tokens, current Secret and ConfigMap data).
    pub async fn write_volumes(&self) -> Result<BTreeMap<String, PathBuf>, Error> {
        let mut sources = Sources::new(self.agent.client.clone(), self.namespace());
        self.write_volumes_with(&mut sources).await
    }

    async fn write_volumes_with(&self, sources: &mut Sources) -> Result<BTreeMap<String, PathBuf>, Error> {
        std::fs::create_dir_all(self.pod_dir).map_err(|source| volumes::Error::Write {
            path: self.pod_dir.to_path_buf(),
            source,
        })?;
        let facts = self.facts();
        Ok(volumes::materialize(&self.agent.client, sources, self.pod, &facts, self.pod_dir).await?)
    }

    /// The spec's `workingDir` when it exists on the host, else the pod's own directory.
    fn working_dir(&self, container: &Container) -> PathBuf {
        match container.working_dir.as_deref().map(PathBuf::from) {
            Some(dir) if dir.is_dir() => dir,
            Some(dir) => {
                info!(container = %container.name, dir = %dir.display(), "override: workingDir missing on the host, using the pod directory");
                self.pod_dir.to_path_buf()
            }
            None => self.pod_dir.to_path_buf(),
        }
    }

    fn facts(&self) -> env::PodFacts {
        env::PodFacts {
            pod_ip: self.ip.to_string(),
            host_ip: Ipv4Addr::LOCALHOST.to_string(),
            service_host: self.agent.api_host.clone(),
            service_port: self.agent.api_port,
        }
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }
}

/// `command[1..] + args`, `$(VAR)`-expanded. `command[0]` names a path inside the image, so the mapped
/// binary replaces it (logged).
fn arguments(container: &Container, vars: &[(String, String)]) -> Vec<String> {
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

/// Each `volumeMount` whose volume exists on disk, with `subPath` applied.
fn mounts(container: &Container, volumes: &BTreeMap<String, PathBuf>) -> Vec<Mount> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).expect("container")
    }

    #[test]
    fn command_head_is_replaced_and_the_rest_expanded_before_args() {
        let c = container(serde_json::json!({
            "name": "c", "command": ["/app/server", "--listen=$(ADDR)"], "args": ["run", "$(MISSING)"],
        }));
        let vars = vec![("ADDR".to_string(), "127.0.0.5:8080".to_string())];
        assert_eq!(
            arguments(&c, &vars),
            ["--listen=127.0.0.5:8080", "run", "$(MISSING)"]
        );
    }

    #[test]
    fn mounts_apply_sub_path_and_skip_unknown_volumes() {
        let c = container(serde_json::json!({
            "name": "c", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/app/app.toml", "subPath": "app.toml", "readOnly": true},
                {"name": "unknown", "mountPath": "/data"},
            ],
        }));
        let volumes = BTreeMap::from([("cfg".to_string(), PathBuf::from("/state/pods/u/volumes/cfg"))]);
        assert_eq!(
            mounts(&c, &volumes),
            [Mount {
                source: PathBuf::from("/state/pods/u/volumes/cfg/app.toml"),
                target: PathBuf::from("/etc/app/app.toml"),
                read_only: true,
            }]
        );
    }
}
