//! The operator binary killed with SIGKILL in the middle of its first reconcile (the service Secrets are
//! being written, the Deployments do not exist yet) and started again: it converges to the spec, and
//! nothing exists twice or half: one topic, three schemas and roles whose passwords are the ones in their
//! Secrets, three Deployments, Services and Secrets, each owned once by the resource. The process runs as
//! the chart's ServiceAccount (impersonation, with the chart's rendered RBAC).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ListParams, PostParams};
use ordersystem_e2e::chart_rbac::ChartRbac;
use ordersystem_e2e::control_plane::{OperatorProcess, TestNamespace, connect_as, connect_as_admin};
use ordersystem_e2e::order_system::{delete_and_wait, shop_json, to_os, wait_condition};
use ordersystem_e2e::wait;
use ordersystem_operator::crd::OrderSystem;

const SERVICES: [&str; 3] = ["order", "invoicing", "shipping"];

async fn names<K>(api: &Api<K>) -> BTreeSet<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

async fn count_in_postgres(sql: &str, prefix: &str) -> i64 {
    let mut conn = connect_as_admin().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(format!("{prefix}%"))
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

#[tokio::test]
async fn an_operator_killed_mid_reconcile_converges_after_a_restart_with_nothing_twice() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "op-crash").await;
    let admin_kubeconfig = ordersystem_e2e::env::require(ordersystem_e2e::kube::KUBECONFIG);
    let rbac = ChartRbac::install(&client, std::path::Path::new(&admin_kubeconfig), &ns.name)
        .await
        .expect("the chart's RBAC installs");
    let dir = std::env::temp_dir().join(ordersystem_e2e::names::unique("op-crash"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    rbac.write_kubeconfig(&kubeconfig).expect("kubeconfig written");
    let log = dir.join("operator.log");
    let operator = OperatorProcess::start(
        Path::new(env!("CARGO_BIN_EXE_ordersystem-operator")),
        &kubeconfig,
        &ns.name,
        &log,
    );

    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let topic = ordersystem_e2e::names::unique("op-crash");
    let os = shop_json(&topic, &ordersystem_e2e::env::kafka_bootstrap(), "Delete");
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");

    // Kill as soon as the first service Secret exists: provisioning has begun, nothing is deployed yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if names(&secrets).await.len() > 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator wrote no service Secret within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    operator.kill9();
    let (secrets_at_kill, deployments_at_kill) = (names(&secrets).await, names(&deployments).await);
    eprintln!(
        "killed with {} Secrets and {} Deployments",
        secrets_at_kill.len(),
        deployments_at_kill.len()
    );
    assert!(
        deployments_at_kill.len() < SERVICES.len(),
        "killed mid-reconcile: not every Deployment existed yet"
    );

    let _operator = OperatorProcess::start(
        Path::new(env!("CARGO_BIN_EXE_ordersystem-operator")),
        &kubeconfig,
        &ns.name,
        &log,
    );
    let os = wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;
    wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    wait::until_some("three Deployments", Duration::from_secs(90), || async {
        (names(&deployments).await.len() == SERVICES.len()).then_some(())
    })
    .await;
    let uid = os.metadata.uid.clone().expect("uid");

    // Exactly the objects of the spec, each once, each owned once by the resource.
    let expected =
        |suffix: &str| -> BTreeSet<String> { SERVICES.iter().map(|s| format!("shop-{s}{suffix}")).collect() };
    assert_eq!(names(&deployments).await, expected(""));
    let mut expected_secrets = expected("-db");
    expected_secrets.insert("pg-admin".into());
    assert_eq!(names(&secrets).await, expected_secrets);
    assert_eq!(names(&services).await, expected(""));
    for deployment in deployments.list(&ListParams::default()).await.expect("list") {
        let owners = deployment.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners.len(), 1, "one owner");
        assert_eq!(owners[0].uid, uid);
    }
    // One role and schema per service, and each role's password is the one its Secret holds: a Secret
    // written before the kill was reused, not regenerated behind the role's back.
    let schemas = os.status.clone().expect("status").schemas;
    assert_eq!(schemas.len(), SERVICES.len());
    for service in SERVICES {
        let secret = format!("shop-{service}-db");
        let user = ns.secret_value(&secret, "username").await;
        let password = ns.secret_value(&secret, "password").await;
        connect_as(&user, &password)
            .await
            .unwrap_or_else(|e| panic!("{service}'s role takes its Secret's password: {e}"));
    }
    let prefix = schemas[0]
        .schema
        .rsplit_once('_')
        .map(|(p, _)| p.to_string())
        .expect("schema name has a service suffix");
    assert_eq!(
        count_in_postgres("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", &prefix).await,
        3,
        "three roles"
    );
    assert_eq!(
        count_in_postgres("SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1", &prefix).await,
        3,
        "three schemas"
    );

    // The log: JSON lines, each reconcile a trace, its lines naming the trace and the span (the
    // reconcile's, or one of its steps' within it).
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .expect("the operator's log")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let in_reconciles: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|span| span["name"] == "reconcile"))
        })
        .collect();
    assert!(!in_reconciles.is_empty(), "reconcile lines in the log");
    for line in &in_reconciles {
        let trace = line["trace_id"].as_str().unwrap_or_default();
        assert!(
            trace.len() == 32 && line["span_id"].as_str().is_some_and(|id| id.len() == 16),
            "a reconcile's line names its trace and span: {line}"
        );
    }
    let traces: BTreeSet<&str> = in_reconciles
        .iter()
        .filter_map(|line| line["trace_id"].as_str())
        .collect();
    assert!(
        traces.len() > 1,
        "each reconcile is a trace of its own: {traces:?}"
    );
    // And the traces left the process: the collector has reconcile spans of the operator in them, with
    // a span for each step of the pipeline, so a slow look shows which step it waited in.
    let exported = || -> BTreeSet<String> {
        ordersystem_e2e::otlp::spans_mentioning("ordersystem-operator")
            .into_iter()
            .filter(|span| span.service == "ordersystem-operator")
            .filter(|span| traces.contains(span.trace_id.as_str()))
            .map(|span| span.name)
            .collect()
    };
    ordersystem_e2e::wait::until(
        "the collector has the operator's reconcile spans and their steps",
        Duration::from_secs(30),
        || async {
            let names = exported();
            [
                "reconcile",
                "observe",
                "ensure",
                "postgres",
                "apply",
                "publish_status",
            ]
            .into_iter()
            .all(|step| names.contains(step))
        },
    )
    .await;

    delete_and_wait(&api, 90, "the resource deleted with its schemas and topic").await;
    assert_eq!(
        count_in_postgres("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", &prefix).await,
        0,
        "Delete dropped the roles"
    );
    drop(rbac);
    let _ = std::fs::remove_dir_all(&dir);
}
