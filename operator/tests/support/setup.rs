//! One controller test's world: its own namespace with the admin Secret, the controller running there as
//! the chart's ServiceAccount, and a fresh topic name for the `shop` OrderSystem.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use ordersystem_operator::crd::OrderSystem;
use serde_json::json;

use super::operator::wait_for;

pub struct Setup {
    pub client: kube::Client,
    pub ns: super::TestNamespace,
    pub api: Api<OrderSystem>,
    pub topic: String,
    pub bootstrap: String,
    pub operator: super::operator::Operator,
}

pub async fn setup(prefix: &str) -> Setup {
    let client = ordersystem_e2e::kube::client().await;
    super::install_crd(&client).await;
    let ns = super::TestNamespace::create(&client, prefix).await;
    super::create_admin_secret(&client, &ns.name, "pg-admin").await;
    let operator = super::operator::start(&client, &ns.name).await;
    let api = Api::namespaced(client.clone(), &ns.name);
    Setup {
        client,
        api,
        topic: ordersystem_e2e::names::unique(prefix),
        bootstrap: ordersystem_e2e::env::kafka_bootstrap(),
        ns,
        operator,
    }
}

impl Setup {
    /// Creates the OrderSystem described by `os` (JSON, as in the YAML a user applies).
    pub async fn create(&self, os: serde_json::Value) {
        self.api
            .create(&PostParams::default(), &super::to_os(os))
            .await
            .expect("create");
    }

    /// Merges `spec` into `shop`'s spec.
    pub async fn patch_spec(&self, spec: serde_json::Value) {
        self.api
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
    }

    /// Deletes `shop` and waits until its finalizer released it.
    pub async fn delete_shop_and_wait(&self, seconds: u64, what: &str) {
        self.api
            .delete("shop", &DeleteParams::default())
            .await
            .expect("delete");
        wait_for(seconds, what, || async {
            self.api.get_opt("shop").await.ok()?.is_none().then_some(())
        })
        .await;
    }

    /// The Deployment `name` in this namespace, if it exists.
    pub async fn deployment(&self, name: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.client.clone(), &self.ns.name)
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }
}

/// A Deployment's `metadata.generation`: it rises exactly when its spec was changed.
pub fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or_default()
}
