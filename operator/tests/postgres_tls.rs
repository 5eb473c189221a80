//! TLS to Postgres: with `sslMode: verify-full` and the server's CA from a Secret the operator provisions
//! the schemas; with another CA it refuses the server and says so in `DatabaseReady`. That the wrong CA
//! fails proves the certificate really was verified.

#[path = "support/operator.rs"]
mod operator;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{delete_and_wait, minimal_json, poke, to_os, wait_condition};
use ordersystem_operator::crd::OrderSystem;

async fn put_ca(client: &kube::Client, namespace: &str, pem: &str) {
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "pg-ca"}, "stringData": {"ca.crt": pem}}),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            "pg-ca",
            &PatchParams::apply("ordersystem-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply CA secret");
}

/// A CA that did not sign the server's certificate: made fresh with openssl.
fn unrelated_ca() -> String {
    let dir = std::env::temp_dir().join(ordersystem_e2e::names::unique("other-ca"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=unrelated",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made a CA");
    let pem = std::fs::read_to_string(dir.join("ca.crt")).expect("CA written");
    let _ = std::fs::remove_dir_all(dir);
    pem
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_provisions_and_another_ca_is_refused_with_a_clear_condition() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "ctl-pgtls").await;
    let ca = std::fs::read_to_string(ordersystem_e2e::env::postgres_ca()).expect("the Postgres test CA");
    put_ca(&client, &ns.name, &ca).await;
    let _operator = operator::start(&client, &ns.name, Default::default()).await;
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let mut os = minimal_json("shop", &ordersystem_e2e::names::unique("pgtls"));
    os["spec"]["kafka"]["bootstrapServers"] = ordersystem_e2e::env::kafka_bootstrap().into();
    os["spec"]["postgres"]["sslMode"] = "verify-full".into();
    os["spec"]["postgres"]["caSecretRef"] = serde_json::json!({"name": "pg-ca"});
    os["spec"]["deletionPolicy"] = "Delete".into();
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;

    put_ca(&client, &ns.name, &unrelated_ca()).await;
    poke(&api).await;
    let os = wait_condition(&api, "DatabaseReady", "False", "PostgresTlsFailed").await;
    let message = os
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "DatabaseReady"))
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("certificate"), "{message}");

    // Back to the right CA, so the resource can be deleted with its schemas.
    put_ca(&client, &ns.name, &ca).await;
    poke(&api).await;
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;
    delete_and_wait(&api, 60, "the resource to be gone").await;
}
