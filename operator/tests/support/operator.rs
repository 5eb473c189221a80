//! Runs the controller in-process for one test, authenticated as the chart's ServiceAccount (the client
//! impersonates it) bound by the chart's own rendered `templates/rbac.yaml`, never as cluster admin.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_e2e::chart_rbac::ChartRbac;
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::metrics::Metrics;
use serde_json::json;

pub struct Operator {
    task: tokio::task::JoinHandle<()>,
    _rbac: ChartRbac,
    pub metrics: Arc<Metrics>,
}

/// Installs the chart's RBAC for `namespace` and starts the controller there as its ServiceAccount.
pub async fn start(admin: &kube::Client, namespace: &str) -> Operator {
    let kubeconfig = ordersystem_e2e::env::require(ordersystem_e2e::kube::KUBECONFIG);
    let rbac = ChartRbac::install(admin, Path::new(&kubeconfig), namespace)
        .await
        .expect("the chart's RBAC installs");
    let client = rbac
        .client()
        .await
        .expect("a client acting as the chart's ServiceAccount");
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(ordersystem_operator::run::run(
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

/// Waits until the object `regarding` has an Event with `reason`; on timeout shows the Events it has.
pub async fn wait_event(events: &Api<Event>, regarding: &str, reason: &str) -> Event {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let own: Vec<Event> = events
            .list(&Default::default())
            .await
            .map(|list| list.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .collect();
        if let Some(event) = own.iter().find(|e| e.reason.as_deref() == Some(reason)) {
            return event.clone();
        }
        let seen: Vec<String> = own
            .iter()
            .map(|e| format!("{:?}/{:?}: {:?}", e.reason, e.action, e.note))
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 60s waiting for a {reason} Event of {regarding}; it has: {seen:#?}"
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
