//! One controller test's world: its own namespace with the admin Secret, the controller running there as
//! the chart's ServiceAccount, and a fresh topic name for the `shop` OrderSystem. Included with
//! `support/operator.rs` by the tests that share it (`#[path]`).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system;
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::metrics::Metrics;

use crate::operator::{self, Operator};

pub struct Setup {
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub api: Api<OrderSystem>,
    pub topic: String,
    pub bootstrap: String,
    #[allow(
        dead_code,
        reason = "each test binary including this module reads its own subset"
    )]
    pub metrics: Arc<Metrics>,
    _operator: Operator,
}

pub async fn setup(prefix: &str) -> Setup {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, prefix).await;
    let metrics = Arc::new(Metrics::default());
    let operator = operator::start(&client, &ns.name, metrics.clone()).await;
    Setup {
        api: ns.systems(),
        client,
        topic: ordersystem_e2e::names::unique(prefix),
        bootstrap: ordersystem_e2e::env::kafka_bootstrap(),
        ns,
        metrics,
        _operator: operator,
    }
}

impl Setup {
    /// Creates the OrderSystem described by `os` (JSON, as in the YAML a user applies).
    pub async fn create(&self, os: serde_json::Value) {
        self.ns.create_system(os).await;
    }

    /// Merges `spec` into `shop`'s spec.
    pub async fn patch_spec(&self, spec: serde_json::Value) {
        order_system::patch_spec(&self.api, spec).await;
    }

    /// Deletes `shop` and waits until its finalizer released it.
    pub async fn delete_shop_and_wait(&self, seconds: u64, what: &str) {
        order_system::delete_and_wait(&self.api, seconds, what).await;
    }

    /// The Deployment `name` in this namespace, if it exists.
    #[allow(
        dead_code,
        reason = "each test binary including this module uses its own subset"
    )]
    pub async fn deployment(&self, name: &str) -> Option<Deployment> {
        self.ns.deployment(name).await
    }
}
