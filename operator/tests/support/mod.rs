//! Shared setup of the control-plane tests: the CRD installed from `crds/`, a namespace per test that is
//! deleted when the test ends, and a minimal valid `OrderSystem`.

#![allow(dead_code)] // each test binary uses a different subset of this module

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use ordersystem_operator::crd::OrderSystem;

const CRD_YAML: &str = include_str!("../../../crds/ordersystem.io_ordersystems.yaml");

/// Installs the committed CRD (server-side apply, so concurrent tests agree) and waits until it is served.
pub async fn install_crd(client: &kube::Client) {
    let crd: CustomResourceDefinition = serde_yaml::from_str(CRD_YAML).expect("crds/ parses");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("CRD has a name");
    api.patch(
        &name,
        &PatchParams::apply("ordersystem-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD from crds/ installs");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established within 30s")
    .expect("watching the CRD");
}

/// Runs a cleanup future to completion from `Drop`, also while a test panics: on its own thread and
/// runtime, because the test's runtime may be shutting down.
pub fn block_on_cleanup<F: std::future::Future<Output = ()> + Send + 'static>(cleanup: F) {
    let thread = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), cleanup).await.ok() });
        }
    });
    let _ = thread.join();
}

/// A namespace deleted on drop, so a failing test still cleans up.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &kube::Client, prefix: &str) -> Self {
        let name = ordersystem_e2e::names::unique(prefix);
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A fresh client: the test's client is driven by the test's runtime, which may be gone.
        block_on_cleanup(async move {
            let client = ordersystem_e2e::kube::client().await;
            // A test that failed midway may leave a finalizer no operator will ever release.
            let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &name);
            if let Ok(list) = systems.list(&Default::default()).await {
                let unblock = serde_json::json!({"metadata": {"finalizers": null}});
                for os in list {
                    let os_name = os.metadata.name.unwrap_or_default();
                    let _ = systems
                        .patch(&os_name, &PatchParams::default(), &Patch::Merge(&unblock))
                        .await;
                }
            }
            let api: Api<Namespace> = Api::all(client);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        });
    }
}

/// A valid `OrderSystem` as JSON, for tests that mutate it before sending.
pub fn minimal_json(name: &str, topic: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "ordersystem.io/v1alpha1",
        "kind": "OrderSystem",
        "metadata": {"name": name},
        "spec": {
            "kafka": {"bootstrapServers": "127.0.0.1:19092", "topic": {"name": topic, "partitions": 3}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}}
        }
    })
}

/// `shop` on `topic` at `bootstrap` as most controller tests use it: replication factor 1 (one test
/// broker), invoicing at 2 replicas, and the given `deletionPolicy`.
pub fn shop_json(topic: &str, bootstrap: &str, deletion_policy: &str) -> serde_json::Value {
    let mut os = minimal_json("shop", topic);
    os["spec"]["kafka"]["bootstrapServers"] = bootstrap.into();
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
    os["spec"]["invoicing"] = serde_json::json!({"replicas": 2});
    os["spec"]["deletionPolicy"] = deletion_policy.into();
    os
}

pub fn to_os(value: serde_json::Value) -> OrderSystem {
    serde_json::from_value(value).expect("test OrderSystem deserializes")
}

/// Creates the admin Secret an `OrderSystem` names, from `DATABASE_URL`
/// (`postgres://user:password@host:port/dbname`), with CloudNativePG's `user` key to prove it is accepted.
pub async fn create_admin_secret(client: &kube::Client, namespace: &str, name: &str) {
    let url = ordersystem_e2e::env::database_url();
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .expect("DATABASE_URL has a scheme");
    let (credentials, location) = rest.rsplit_once('@').expect("DATABASE_URL has credentials");
    let (user, password) = credentials.split_once(':').expect("DATABASE_URL has a password");
    let (hostport, dbname) = location.split_once('/').expect("DATABASE_URL has a database");
    let dbname = dbname.split('?').next().unwrap_or(dbname);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {"host": host, "port": port, "dbname": dbname, "user": user, "password": password},
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create admin secret");
}

pub mod operator;
pub mod operator_process;
pub mod secure_shop;
pub mod setup;

/// A connection as `user` with `password` to the test database.
pub async fn connect_as(user: &str, password: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    let options: sqlx::postgres::PgConnectOptions = ordersystem_e2e::env::database_url()
        .parse()
        .expect("DATABASE_URL parses");
    sqlx::PgConnection::connect_with(&options.username(user).password(password)).await
}

/// The decoded value of one key of a Secret.
pub async fn secret_value(client: &kube::Client, namespace: &str, name: &str, key: &str) -> String {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("secret exists");
    let bytes = secret
        .data
        .and_then(|d| d.get(key).cloned())
        .expect("key present");
    String::from_utf8(bytes.0).expect("utf-8")
}
