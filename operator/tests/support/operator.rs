//! Runs the controller in-process for one test, authenticated as the chart's ServiceAccount (the client
//! impersonates it) bound by the chart's own rendered RBAC, never as cluster admin.
//! Included by each test that runs it (`#[path]`); what is not about the operator's code is in
//! `ordersystem-e2e`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ordersystem_e2e::chart_rbac::ChartRbac;
use ordersystem_operator::leader::LeaseConfig;
use ordersystem_operator::metrics::Metrics;
use ordersystem_operator::run::{Elected, run_elected};

/// The controller's task, aborted on drop, and the RBAC it runs under.
pub struct Operator {
    task: tokio::task::JoinHandle<()>,
    _rbac: ChartRbac,
}

/// Installs the chart's RBAC for `namespace` and starts the controller there as its ServiceAccount,
/// counting into `metrics`.
#[allow(
    dead_code,
    reason = "each test binary including this module uses its own subset"
)]
pub async fn start(admin: &kube::Client, namespace: &str, metrics: Arc<Metrics>) -> Operator {
    start_with_default_image_tag(
        admin,
        namespace,
        metrics,
        ordersystem_operator::names::DEFAULT_IMAGE_TAG,
    )
    .await
}

/// [`start`] for an operator whose default service image tag is `default_image_tag`, as
/// `--default-image-tag` sets it: a test's stand-in for another release of the operator.
#[allow(
    dead_code,
    reason = "each test binary including this module uses its own subset"
)]
pub async fn start_with_default_image_tag(
    admin: &kube::Client,
    namespace: &str,
    metrics: Arc<Metrics>,
    default_image_tag: &str,
) -> Operator {
    let elected = Elected {
        namespace: Some(namespace.to_string()),
        images: ordersystem_operator::names::ServiceImages {
            default_tag: default_image_tag.to_string(),
            ..Default::default()
        },
        lease: None,
    };
    launch(admin, elected, metrics).await
}

/// [`start`] for one of several replicas competing for `lease`, as `--leader-election-lease` runs them.
#[allow(
    dead_code,
    reason = "each test binary including this module uses its own subset"
)]
pub async fn start_elected(admin: &kube::Client, lease: LeaseConfig, metrics: Arc<Metrics>) -> Operator {
    let elected = Elected {
        namespace: Some(lease.namespace.clone()),
        images: Default::default(),
        lease: Some(lease),
    };
    launch(admin, elected, metrics).await
}

async fn launch(admin: &kube::Client, elected: Elected, metrics: Arc<Metrics>) -> Operator {
    let namespace = elected
        .namespace
        .clone()
        .expect("tests watch their own namespace");
    let kubeconfig = ordersystem_e2e::env::require(ordersystem_e2e::kube::KUBECONFIG);
    let rbac = ChartRbac::install(admin, Path::new(&kubeconfig), &namespace)
        .await
        .expect("the chart's RBAC installs");
    let client = rbac
        .client()
        .await
        .expect("a client acting as the chart's ServiceAccount");
    // The operator's log goes to the test's output, which nextest shows when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("ordersystem_operator=info"))
        .with_test_writer()
        .try_init();
    let ready = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(async move {
        run_elected(client, elected, metrics, ready).await;
    });
    Operator { task, _rbac: rbac }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
