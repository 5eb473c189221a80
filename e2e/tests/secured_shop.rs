//! The shop on secured backends, on the test bed's real node. The operator, installed with helm as a pod of
//! its image under the chart's RBAC, reaches a SASL_SSL broker with the StandardAuthorizer (this test's own
//! instance, ports 19692-19694) through SCRAM and the test CA, on the broker's bridge listener by the name
//! the node's CoreDNS serves, and gives each service its own SCRAM user and ACLs. The three services run as
//! pods with only those identities, the mounted CAs, and their database logins over `sslmode=verify-full`
//! against the name the PostgreSQL certificate carries. Every order is invoiced and shipped exactly once;
//! deleting the resource (`deletionPolicy: Delete`) removes what it made.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_e2e::cluster::{
    OnFailure, READY_WITHIN, create_namespace, delete_namespace_and_wait, ready_pods,
};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::secure_kafka::{ADMIN_PASSWORD, ADMIN_USER, SecureBroker};
use ordersystem_e2e::shop::{all_stored_once, place_orders};
use ordersystem_e2e::{env, names, wait};
use serde_json::json;

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
    let mode = Mode::real(&client).await;
    let operator_ns = names::unique("sec-system");
    let shop_ns = names::unique("sec-shop");
    let _on_failure = OnFailure {
        shop_ns: shop_ns.clone(),
        operator_ns: operator_ns.clone(),
    };
    let system = "shop";
    let topic = names::unique("sec-orders");
    create_namespace(&client, &shop_ns, mode.namespace_annotations()).await;
    create_namespace(&client, &operator_ns, mode.namespace_annotations()).await;
    mode.install_operator(&operator_ns, &shop_ns);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &shop_ns);
    let pg_ca = std::fs::read_to_string(env::postgres_ca()).expect("the PostgreSQL test CA");
    // The admin Secret names PostgreSQL as the pods reach it, the name its certificate carries (verify-full).
    let admin = mode.admin_secret(&client, "pg-admin").await;
    for created in [
        admin,
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
            "kafka": {"bootstrapServers": broker.node_bootstrap(),
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
    wait::until_ok("OrderSystem Ready=True", READY_WITHIN, || async {
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
    let order = mode.service(order_pod);
    let invoicing = mode.service(&ready_pods(&client, &shop_ns, system, "invoicing", 1).await[0]);
    let shipping = mode.service(&ready_pods(&client, &shop_ns, system, "shipping", 1).await[0]);
    let placed = place_orders(&order, 0..30).await;
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;

    systems
        .delete(system, &DeleteParams::default())
        .await
        .expect("delete");
    wait::until_ok("the OrderSystem gone", READY_WITHIN, || async {
        let left = systems.get_opt(system).await.map_err(|e| e.to_string())?;
        left.is_none().then_some(()).ok_or("still there".to_string())
    })
    .await;
    mode.uninstall_operator(&operator_ns);
    for ns in [&shop_ns, &operator_ns] {
        delete_namespace_and_wait(&client, ns).await;
    }
}
