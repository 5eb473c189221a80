//! The test control plane is a real kube-apiserver on etcd with a real kube-controller-manager.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use ordersystem_e2e::names;
use ordersystem_e2e::versions::{compiled_kubernetes_minor, minor_of, pinned};
use serde_json::json;

const MANAGER: &str = "ordersystem-infra-test";

async fn temp_namespace(client: &kube::Client) -> String {
    let name = names::unique("smoke");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &name,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
            })),
        )
        .await
        .expect("create namespace");
    name
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

#[tokio::test]
async fn api_server_version_matches_compiled_k8s_openapi_feature() {
    let client = ordersystem_e2e::kube::client().await;
    let info = client.apiserver_version().await.expect("GET /version");
    let served: u32 = info.minor.trim_end_matches('+').parse().expect("numeric minor");
    assert_eq!(
        served,
        compiled_kubernetes_minor(),
        "API server {} vs compiled k8s-openapi",
        info.git_version
    );
    assert_eq!(Some(served), minor_of(&pinned()["KUBERNETES_VERSION"]));
}

#[tokio::test]
async fn config_map_is_applied_and_read_back() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = temp_namespace(&client).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    config_maps
        .patch("smoke", &PatchParams::apply(MANAGER), &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "smoke"}, "data": {"greeting": "hello"}
        })))
        .await
        .expect("server-side apply");
    let read = config_maps.get("smoke").await.expect("get");
    assert_eq!(read.data.unwrap()["greeting"], "hello");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deployment_gets_a_replica_set_from_the_controller_manager() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = temp_namespace(&client).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "smoke",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "smoke"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "smoke"}},
                    "template": {
                        "metadata": {"labels": {"app": "smoke"}},
                        "spec": {"containers": [{"name": "main", "image": "example.invalid/smoke:1"}]}
                    }
                }
            })),
        )
        .await
        .expect("apply deployment");

    // Only kube-controller-manager creates ReplicaSets; wait for one owned by our Deployment.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let owned = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let list = replica_sets
                .list(&ListParams::default())
                .await
                .expect("list replicasets");
            let owned = list.items.into_iter().find(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Deployment" && o.name == "smoke")
            });
            if let Some(rs) = owned {
                return rs;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("kube-controller-manager created no ReplicaSet within 60 s: is it running? see its log");
    assert_eq!(owned.spec.unwrap().replicas, Some(2));
    delete_namespace(&client, &ns).await;
}
