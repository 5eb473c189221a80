//! The chart's own RBAC (`templates/rbac.yaml`, `claims-rbac.yaml` and, with leader election on,
//! `leader-election.yaml`, rendered with helm) applied for one namespace, and a
//! kubeconfig that acts as its ServiceAccount through impersonation: an operator run with it has the
//! chart's rights and no more, so a missing rule fails a test or a benchmark instead of hiding behind
//! admin credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde::Deserialize;

/// The rendered RBAC of one release watching one namespace; its cluster-scoped objects are deleted on
/// drop (the namespaced ones go with the namespace).
pub struct ChartRbac {
    pub namespace: String,
    pub service_account: String,
    admin_kubeconfig: PathBuf,
    cluster_objects: Vec<(ApiResource, String)>,
}

impl ChartRbac {
    /// Renders and applies the chart's RBAC for a release watching `namespace` with `admin`, the client
    /// of the admin kubeconfig at `admin_kubeconfig` (the base of the impersonating one).
    pub async fn install(admin: &kube::Client, admin_kubeconfig: &Path, namespace: &str) -> Result<Self> {
        let release = crate::names::unique("op");
        let rendered = render(&release, namespace)?;
        let mut service_account = None;
        let mut cluster_objects = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&rendered) {
            let value = serde_json::to_value(serde_yaml::Value::deserialize(document)?)?;
            if value.is_null() {
                continue;
            }
            let resource = api_resource(&value)?;
            let object: DynamicObject = serde_json::from_value(value)?;
            let name = object
                .metadata
                .name
                .clone()
                .context("a rendered object without a name")?;
            let api: Api<DynamicObject> = match &object.metadata.namespace {
                Some(ns) => Api::namespaced_with(admin.clone(), ns, &resource),
                None => {
                    cluster_objects.push((resource.clone(), name.clone()));
                    Api::all_with(admin.clone(), &resource)
                }
            };
            if resource.kind == "ServiceAccount" {
                service_account = Some(name.clone());
            }
            api.patch(
                &name,
                &PatchParams::apply("ordersystem-tests").force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("apply the rendered {} {name}", resource.kind))?;
        }
        Ok(Self {
            namespace: namespace.to_string(),
            service_account: service_account.context("rbac.yaml renders no ServiceAccount")?,
            admin_kubeconfig: admin_kubeconfig.to_path_buf(),
            cluster_objects,
        })
    }

    /// The admin kubeconfig with every user impersonating this ServiceAccount.
    pub fn kubeconfig(&self) -> Result<Kubeconfig> {
        let mut kubeconfig = read(&self.admin_kubeconfig)?;
        let namespace = &self.namespace;
        for user in &mut kubeconfig.auth_infos {
            if let Some(auth) = user.auth_info.as_mut() {
                auth.impersonate = Some(format!(
                    "system:serviceaccount:{namespace}:{}",
                    self.service_account
                ));
                auth.impersonate_groups = Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ]);
            }
        }
        Ok(kubeconfig)
    }

    /// [`Self::kubeconfig`] written to `path`, for a process.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_yaml::to_string(&self.kubeconfig()?)?)
            .with_context(|| format!("write {}", path.display()))
    }

    /// A client acting as this ServiceAccount.
    pub async fn client(&self) -> Result<kube::Client> {
        client(self.kubeconfig()?).await
    }
}

impl Drop for ChartRbac {
    fn drop(&mut self) {
        let objects = std::mem::take(&mut self.cluster_objects);
        let kubeconfig = self.admin_kubeconfig.clone();
        // On a thread and runtime of its own: the caller's runtime may be shutting down (a panicking test).
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                let delete = async {
                    let admin = client(read(&kubeconfig).ok()?).await.ok()?;
                    for (resource, name) in objects {
                        let api: Api<DynamicObject> = Api::all_with(admin.clone(), &resource);
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    }
                    Some(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(30), delete).await;
            });
        });
        let _ = cleanup.join();
    }
}

fn read(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).with_context(|| format!("read kubeconfig {}", path.display()))
}

async fn client(kubeconfig: Kubeconfig) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// `helm template` of the chart's RBAC templates for `release` in `namespace`, watching `namespace`.
fn render(release: &str, namespace: &str) -> Result<String> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ordersystem-operator");
    // The test bed's helm is on PATH (`. /tmp/ordersystem/env`), as for `cluster::install_operator`.
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".to_string());
    let output = std::process::Command::new(&helm)
        .args(["template", release])
        .arg(&chart)
        .args(["--namespace", namespace])
        .args(["--set", &format!("watchNamespace={namespace}")])
        .args(["--show-only", "templates/rbac.yaml"])
        .args(["--show-only", "templates/claims-rbac.yaml"])
        // The Lease rights too, for the tests that run replicas with leader election.
        .args(["--set", "leaderElection.enabled=true"])
        .args(["--show-only", "templates/leader-election.yaml"])
        .output()
        .with_context(|| format!("cannot run {helm} (is the test bed's PATH set, or HELM?)"))?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn api_resource(value: &serde_json::Value) -> Result<ApiResource> {
    let api_version = value["apiVersion"]
        .as_str()
        .context("a rendered object without apiVersion")?;
    let kind = value["kind"].as_str().context("a rendered object without kind")?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Ok(ApiResource::from_gvk(&GroupVersionKind::gvk(
        group, version, kind,
    )))
}
