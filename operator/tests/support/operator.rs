//! Runs the controller in-process for one test, authenticated as the chart's ServiceAccount (the client
//! impersonates it) bound by the chart's own rendered `templates/rbac.yaml`, never as cluster admin.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::metrics::Metrics;
use serde::Deserialize;
use serde_json::json;

pub struct Operator {
    task: tokio::task::JoinHandle<()>,
    _rbac: Rbac,
    pub metrics: Arc<Metrics>,
}

/// The chart's RBAC applied for one namespace; its cluster-scoped objects are deleted on drop.
pub struct Rbac {
    pub service_account: String,
    cluster_objects: Vec<(ApiResource, String)>,
}

/// Renders `templates/rbac.yaml` with helm for a release in `namespace` watching `namespace`.
fn render_rbac(release: &str, namespace: &str) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ordersystem-operator");
    let helm = std::env::var("HELM").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/ordersystem/bin/helm")
    });
    let output = std::process::Command::new(&helm)
        .args(["template", release])
        .arg(&chart)
        .args([
            "--namespace",
            namespace,
            "--set",
            &format!("watchNamespace={namespace}"),
        ])
        .args(["--show-only", "templates/rbac.yaml"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm at {helm} (set HELM): {e}"));
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm prints UTF-8")
}

fn api_resource(value: &serde_json::Value) -> ApiResource {
    let api_version = value["apiVersion"].as_str().expect("apiVersion");
    let kind = value["kind"].as_str().expect("kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// Installs the chart's RBAC for `namespace` and starts the controller there as its ServiceAccount.
pub async fn start(admin: &kube::Client, namespace: &str) -> Operator {
    let rbac = install_rbac(admin, namespace).await;
    let client = impersonating_client(namespace, &rbac.service_account).await;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(ordersystem_operator::controller::run(
        client,
        Some(namespace.to_string()),
        metrics.clone(),
        ready,
    ));
    Operator {
        task,
        _rbac: rbac,
        metrics,
    }
}

/// Applies the chart's rendered `templates/rbac.yaml` for a release watching `namespace`.
pub async fn install_rbac(admin: &kube::Client, namespace: &str) -> Rbac {
    let release = ordersystem_e2e::names::unique("op");
    let rendered = render_rbac(&release, namespace);
    let mut service_account = None;
    let mut cluster_objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let value =
            serde_json::to_value(serde_yaml::Value::deserialize(document).expect("yaml")).expect("json");
        if value.is_null() {
            continue;
        }
        let resource = api_resource(&value);
        let object: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let name = object.metadata.name.clone().expect("name");
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
        .unwrap_or_else(|e| panic!("apply rendered {} {name}: {e}", resource.kind));
    }
    Rbac {
        service_account: service_account.expect("rbac.yaml renders a ServiceAccount"),
        cluster_objects,
    }
}

/// The test kubeconfig, acting as `service_account` of `namespace` (impersonation), so whatever uses it
/// has the chart's rights and no more.
pub fn impersonating_kubeconfig(namespace: &str, service_account: &str) -> kube::config::Kubeconfig {
    let path = ordersystem_e2e::env::require(ordersystem_e2e::kube::KUBECONFIG);
    impersonating_kubeconfig_at(Path::new(&path), namespace, service_account)
}

/// Like `impersonating_kubeconfig`, from the admin kubeconfig at `path` (a test's own API server).
pub fn impersonating_kubeconfig_at(
    path: &Path,
    namespace: &str,
    service_account: &str,
) -> kube::config::Kubeconfig {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:{namespace}:{service_account}"));
            auth.impersonate_groups = Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]);
        }
    }
    kubeconfig
}

async fn impersonating_client(namespace: &str, service_account: &str) -> kube::Client {
    let kubeconfig = impersonating_kubeconfig(namespace, service_account);
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("impersonating client")
}

impl Operator {
    /// Failed reconciles counted so far, over every error kind.
    pub fn failed_reconciles(&self) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|line| line.starts_with("ordersystem_operator_reconcile_failures"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Rbac {
    fn drop(&mut self) {
        let objects = std::mem::take(&mut self.cluster_objects);
        super::block_on_cleanup(async move {
            let client = ordersystem_e2e::kube::client().await;
            for (resource, name) in objects {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        });
    }
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `seconds` with `what`.
pub async fn wait_for<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `(status, reason)` of one condition.
pub fn condition(os: &OrderSystem, type_: &str) -> Option<(String, String)> {
    let c = os.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Waits until the resource `shop` has the condition; on timeout shows every condition.
pub async fn wait_condition(api: &Api<OrderSystem>, type_: &str, status: &str, reason: &str) -> OrderSystem {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let os = api.get("shop").await.expect("get");
        if condition(&os, type_) == Some((status.into(), reason.into())) {
            return os;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 90s waiting for {type_}={status} reason={reason}; conditions: {:#?}",
            os.status.map(|s| s.conditions)
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Changes an annotation, which triggers a reconcile (Kafka and Postgres send no watch events).
pub async fn poke(api: &Api<OrderSystem>) {
    let value = ordersystem_e2e::names::unique("poke");
    let patch = json!({"metadata": {"annotations": {"test.ordersystem.io/poke": value}}});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("poke");
}
