//! Pod volumes as host directories: what a container would see at its `volumeMounts`.
//!
//! Each supported volume becomes `<pod dir>/volumes/<name>/`, written here and bind-mounted by
//! `process` in the container's own mount namespace. Supported: `secret`, `configMap`, `downwardAPI`,
//! `emptyDir`, `hostPath`, and `projected` (the `kube-api-access-*` volume that ServiceAccount admission
//! injects: a token from the TokenRequest API bound to the pod, the cluster CA from the `kube-root-ca.crt`
//! ConfigMap, and the namespace). Other types are logged as overrides and left unmounted. Files are
//! replaced by rename, so a refresh never shows a half-written token through an existing bind mount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccount, Volume};
use kube::api::{Api, PostParams};
use tracing::warn;

use crate::env::{PodFacts, Sources, field_value};

/// The kubelet's default for projected tokens without `expirationSeconds`.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read a volume source")]
    Source(#[from] crate::env::Error),
    #[error("failed to request a token for ServiceAccount {account}")]
    RequestToken {
        account: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} {name} for volume {volume} not found")]
    Missing {
        volume: String,
        kind: &'static str,
        name: String,
    },
}

/// Writes every supported volume of `pod` under `pod_dir/volumes`; returns volume name → host directory.
pub async fn materialize(
    client: &kube::Client,
    sources: &mut Sources,
    pod: &Pod,
    facts: &PodFacts,
    pod_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, Error> {
    let mut dirs = BTreeMap::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        let dir = pod_dir.join("volumes").join(&volume.name);
        if let Some(host) = &volume.host_path {
            dirs.insert(volume.name.clone(), PathBuf::from(&host.path));
            continue;
        }
        let files = match volume_files(client, sources, pod, facts, volume).await? {
            Some(files) => files,
            None => {
                warn!(volume = %volume.name, "override: volume type not supported in local mode, not mounted");
                continue;
            }
        };
        create_dir(&dir)?;
        for (relative, content) in files {
            write_atomically(&dir.join(relative), content.as_bytes())?;
        }
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(dirs)
}

/// The files of one volume (path relative to the volume → content); `None` for unsupported types.
async fn volume_files(
    client: &kube::Client,
    sources: &mut Sources,
    pod: &Pod,
    facts: &PodFacts,
    volume: &Volume,
) -> Result<Option<Vec<(String, String)>>, Error> {
    let mut files = Vec::new();
    if volume.empty_dir.is_some() {
        return Ok(Some(files));
    }
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        files = keyed(sources, &volume.name, "Secret", &name, &s.items, s.optional).await?;
    } else if let Some(c) = &volume.config_map {
        files = keyed(sources, &volume.name, "ConfigMap", &c.name, &c.items, c.optional).await?;
    } else if let Some(d) = &volume.downward_api {
        files = downward(pod, facts, d.items.as_deref().unwrap_or_default());
    } else if let Some(p) = &volume.projected {
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let seconds = t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
                let token = request_token(client, pod, t.audience.as_deref(), seconds).await?;
                files.push((t.path.clone(), token));
            }
            if let Some(c) = &source.config_map {
                files.extend(keyed(sources, &volume.name, "ConfigMap", &c.name, &c.items, c.optional).await?);
            }
            if let Some(s) = &source.secret {
                files.extend(keyed(sources, &volume.name, "Secret", &s.name, &s.items, s.optional).await?);
            }
            if let Some(d) = &source.downward_api {
                files.extend(downward(pod, facts, d.items.as_deref().unwrap_or_default()));
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

/// Secret or ConfigMap keys as files: all keys, or only `items` under their paths.
async fn keyed(
    sources: &mut Sources,
    volume: &str,
    kind: &'static str,
    name: &str,
    items: &Option<Vec<KeyToPath>>,
    optional: Option<bool>,
) -> Result<Vec<(String, String)>, Error> {
    let Some(data) = sources.data(kind, name).await? else {
        return if optional.unwrap_or(false) {
            Ok(Vec::new())
        } else {
            Err(Error::Missing {
                volume: volume.to_string(),
                kind,
                name: name.to_string(),
            })
        };
    };
    Ok(match items {
        Some(items) => items
            .iter()
            .filter_map(|item| data.get(&item.key).map(|v| (item.path.clone(), v.clone())))
            .collect(),
        None => data.into_iter().collect(),
    })
}

fn downward(pod: &Pod, facts: &PodFacts, items: &[DownwardAPIVolumeFile]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|item| {
            let value = item.field_ref.as_ref().and_then(|f| field_value(pod, f, facts));
            if value.is_none() {
                warn!(path = %item.path, "override: downward API item not supported in local mode, skipped");
            }
            value.map(|v| (item.path.clone(), v))
        })
        .collect()
}

/// A token for the pod's ServiceAccount, bound to the pod so it dies with it.
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    seconds: i64,
) -> Result<String, Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            // No audiences means the API server's own, which is what in-cluster clients need.
            audiences: audience.map(|a| vec![a.to_string()]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let response = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|source| Error::RequestToken {
            account: format!("{namespace}/{account}"),
            source,
        })?;
    Ok(response.status.and_then(|s| s.token).unwrap_or_default())
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Write to a sibling temp file, then rename over the target.
fn write_atomically(path: &Path, content: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    let tmp = path.with_extension("agent-tmp");
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
