//! The API server restarted under a running operator: the operator process rides it out, its watches come
//! back, a spec change made after the restart is applied, nothing exists twice, and deletion still runs its
//! finalizer. The API server is this test's own (`control-plane.sh` with `CP_INSTANCE`: etcd and
//! kube-apiserver on 12379/12380/16443); the shared control plane is never touched.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ordersystem_e2e::chart_rbac::ChartRbac;
use ordersystem_e2e::control_plane::{OperatorProcess, create_admin_secret, install_crd};
use ordersystem_e2e::order_system::{delete_and_wait, shop_json, to_os, wait_condition};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_e2e::wait;
use ordersystem_operator::crd::OrderSystem;
use serde_json::json;

const INSTANCE: &str = "op-apiserver-restart";

async fn deployment_names(api: &Api<Deployment>) -> Result<BTreeSet<String>, kube::Error> {
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect())
}

#[tokio::test]
async fn an_api_server_restart_under_the_operator_is_ridden_out_and_later_changes_apply() {
    let own = OwnInstance::control_plane(INSTANCE, 12379, 12380, 16443)
        .start_fresh()
        .await;
    let kubeconfig_path = own.run("kubeconfig").await;
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client of the own API server");
    install_crd(&client).await;
    let ns = ordersystem_e2e::names::unique("apiserver");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
        )
        .await
        .expect("namespace");
    create_admin_secret(&client, &ns, "pg-admin").await;
    // The RBAC lives and dies with the own control plane.
    let rbac = ChartRbac::install(&client, std::path::Path::new(&kubeconfig_path), &ns)
        .await
        .expect("the chart's RBAC installs");
    let dir = std::env::temp_dir().join(ordersystem_e2e::names::unique("apiserver-restart"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let operator_kubeconfig = dir.join("kubeconfig");
    rbac.write_kubeconfig(&operator_kubeconfig)
        .expect("kubeconfig written");
    let mut operator = OperatorProcess::start(
        Path::new(env!("CARGO_BIN_EXE_ordersystem-operator")),
        &operator_kubeconfig,
        &ns,
        &dir.join("operator.log"),
    );

    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let topic = ordersystem_e2e::names::unique("apiserver");
    let os = shop_json(&topic, &ordersystem_e2e::env::kafka_bootstrap(), "Delete");
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;
    wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    wait::until_some("three Deployments", Duration::from_secs(90), || async {
        (deployment_names(&deployments).await.ok()?.len() == 3).then_some(())
    })
    .await;
    let before = deployment_names(&deployments).await.expect("list");

    // The API server goes away and comes back over the same etcd.
    own.run("stop-apiserver").await;
    // Long enough for the operator's watches and requeues to hit the closed port.
    tokio::time::sleep(Duration::from_secs(10)).await;
    own.run("start").await;
    assert!(
        operator.is_running(),
        "the operator rode out the API server restart"
    );

    // A change after the restart is seen (the watch is back) and applied.
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"invoicing": {"replicas": 3}}})),
    )
    .await
    .expect("scale invoicing");
    wait::until_some(
        "invoicing scaled to 3 after the restart",
        Duration::from_secs(90),
        || async {
            let invoicing = deployments.get("shop-invoicing").await.ok()?;
            (invoicing.spec?.replicas == Some(3)).then_some(())
        },
    )
    .await;
    assert_eq!(
        deployment_names(&deployments).await.expect("list"),
        before,
        "the same Deployments, none twice"
    );
    let secret_names: BTreeSet<String> = secrets
        .list(&ListParams::default())
        .await
        .expect("secrets")
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(
        secret_names.len(),
        4,
        "admin + three service Secrets: {secret_names:?}"
    );
    assert!(operator.is_running());

    // Deletion runs the finalizer: the topic and the schemas go.
    delete_and_wait(&api, 90, "the resource deleted through its finalizer").await;
    drop(operator);
    drop(rbac);
    let _ = std::fs::remove_dir_all(&dir);
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .expect("own control plane removed");
}
