//! The shop in local mode on secured backends. The operator, installed with helm as a pod under the
//! chart's RBAC, reaches a SASL_SSL broker with the StandardAuthorizer (this test's own instance, ports
//! 19692/19693) through SCRAM and the test CA, and gives each service its own SCRAM user and ACLs. The
//! three services run as pods of this test's node agent (pod IPs `127.93.0.x`) with only those identities,
//! the mounted CAs, and their database logins over `sslmode=verify-full`. Every order is invoiced and
//! shipped exactly once; deleting the resource (`deletionPolicy: Delete`) removes what it made.

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use ordersystem_e2e::cluster::{READY_WITHIN, create_namespace, helm, ready_pods};
use ordersystem_e2e::local_node::{LocalNode, OnFailure};
use ordersystem_e2e::secure_kafka::{ADMIN_PASSWORD, ADMIN_USER, SecureBroker};
use ordersystem_e2e::shop::{Service, all_stored_once, place_orders};
use ordersystem_e2e::{env, names, wait};
use ordersystem_operator::crd::OrderSystem;
use serde_json::json;

/// This test's pod-IP octet.
const OCTET: u8 = 93;

fn service(pod: &Pod) -> Service {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    Service::new(format!("http://{ip}:8080"))
}

fn secret(name: &str, data: serde_json::Value) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).expect("secret")
}

/// The env var `name` of the pod's first container, as written in the pod spec.
fn env_of(pod: &Pod, name: &str) -> serde_json::Value {
    let container = &pod.spec.as_ref().expect("spec").containers[0];
    let var = container
        .env
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} in the pod spec"));
    serde_json::to_value(var).expect("json")
}

#[tokio::test]
async fn the_shop_runs_as_pods_on_a_sasl_ssl_broker_and_postgres_over_tls_with_per_service_identities() {
    let broker = SecureBroker::start("e2e-secured", 19692, 19693).await;
    let client = ordersystem_e2e::kube::client().await;
    let node = LocalNode::start(&client, &names::unique("e2e-sec"), OCTET).await;
    let operator_ns = names::unique("sec-system");
    let shop_ns = names::unique("sec-shop");
    let _cleanup = OnFailure {
        node: &node,
        shop_ns: shop_ns.clone(),
        operator_ns: operator_ns.clone(),
    };
    let system = "shop";
    let topic = names::unique("sec-orders");
    create_namespace(&client, &shop_ns, node.pin_annotations()).await;
    create_namespace(&client, &operator_ns, node.pin_annotations()).await;
    // Helm never upgrades a CRD that exists: apply this tree's, as the documented upgrade path does.
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/");
    let applied = std::process::Command::new("kubectl")
        .args(["apply", "--server-side", "--force-conflicts", "-f", crds])
        .output()
        .expect("kubectl on PATH");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ordersystem-operator");
    let watch = format!("watchNamespace={shop_ns}");
    helm(&[
        "install",
        &operator_ns,
        chart,
        "--namespace",
        &operator_ns,
        "--set",
        &watch,
    ]);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &shop_ns);
    let url = env::database_url();
    let rest = url.split_once("://").map(|(_, r)| r).expect("scheme");
    let (credentials, location) = rest.rsplit_once('@').expect("credentials");
    let (user, password) = credentials.split_once(':').expect("password");
    let (_, dbname) = location.split_once('/').expect("database");
    let pg_ca = std::fs::read_to_string(env::postgres_ca()).expect("the PostgreSQL test CA");
    for created in [
        // The address the server's certificate names, for verify-full.
        secret(
            "pg-admin",
            json!({"host": "127.0.0.1", "port": "5432", "dbname": dbname.split('?').next().unwrap_or(dbname),
                   "username": user, "password": password}),
        ),
        secret("pg-ca", json!({"ca.crt": pg_ca})),
        secret("kafka-ca", json!({"ca.crt": broker.ca_pem()})),
        secret(
            "kafka-admin",
            json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}),
        ),
    ] {
        secrets
            .create(&PostParams::default(), &created)
            .await
            .expect("secret");
    }
    let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &shop_ns);
    let resource: OrderSystem = serde_json::from_value(json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": system},
        "spec": {
            "kafka": {"bootstrapServers": broker.bootstrap(),
                      "topic": {"name": topic, "partitions": 3, "replicationFactor": 1},
                      "tls": {"caSecretRef": {"name": "kafka-ca"}},
                      "sasl": {"mechanism": "SCRAM-SHA-512", "credentialsSecretRef": {"name": "kafka-admin"}}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}, "sslMode": "verify-full",
                         "caSecretRef": {"name": "pg-ca"}},
            "deletionPolicy": "Delete"
        }
    }))
    .expect("OrderSystem");
    systems
        .create(&PostParams::default(), &resource)
        .await
        .expect("create");
    wait::until("OrderSystem Ready=True", READY_WITHIN, || async {
        let os = systems.get(system).await.map_err(|e| e.to_string())?;
        let conditions = os.status.map(|s| s.conditions).unwrap_or_default();
        match conditions.iter().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == "True" => Ok(()),
            _ => Err(format!("{conditions:?}")),
        }
    })
    .await;

    // Each pod logs in to Kafka as its own service, with the password only as a Secret reference.
    let order_pod = &ready_pods(&client, &shop_ns, system, "order", 1).await[0];
    let username = env_of(order_pod, "KAFKA_SASL_USERNAME");
    assert_eq!(
        username["valueFrom"]["secretKeyRef"]["name"], "shop-order-kafka",
        "{username}"
    );
    assert!(
        env_of(order_pod, "KAFKA_SASL_PASSWORD")["value"].is_null(),
        "no password in the pod spec"
    );
    let order = service(order_pod);
    let invoicing = service(&ready_pods(&client, &shop_ns, system, "invoicing", 1).await[0]);
    let shipping = service(&ready_pods(&client, &shop_ns, system, "shipping", 1).await[0]);
    let placed = place_orders(&order, 0..30).await;
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;

    systems
        .delete(system, &DeleteParams::default())
        .await
        .expect("delete");
    wait::until("the OrderSystem gone", READY_WITHIN, || async {
        let left = systems.get_opt(system).await.map_err(|e| e.to_string())?;
        left.is_none().then_some(()).ok_or("still there".to_string())
    })
    .await;
    helm(&["uninstall", &operator_ns, "--namespace", &operator_ns]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&shop_ns, &operator_ns] {
        namespaces
            .delete(ns, &DeleteParams::default())
            .await
            .expect("delete namespace");
    }
}
