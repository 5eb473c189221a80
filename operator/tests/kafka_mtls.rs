//! Against a real broker whose listener requires client certificates (mutual TLS, its own instance): the
//! operator connects with the client certificate its Secret holds and creates the topic, the three
//! services carry an order through with that same certificate, and `TopicReady` names the broker's refusal
//! when the certificate is missing or comes from another CA.
//!
//! The certificate's principal (`User:shop`) is no super user: it holds exactly the ACLs README.md lists
//! for mutual TLS without SASL, which the broker's admin grants here as a Kafka admin would.

#[path = "support/operator.rs"]
mod operator;
#[path = "support/secure_shop.rs"]
mod secure_shop;

use std::collections::BTreeMap;

use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{minimal_json, tls_failure_after, wait_condition};
use ordersystem_e2e::secure_kafka::SecureBroker;
use secure_shop::{SERVICES, Shop};

/// The CN of the client certificate the operator and the services share.
const CLIENT: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_required_used_by_operator_and_services_and_a_missing_or_foreign_one_is_named()
 {
    let broker = SecureBroker::start_mutual_tls("op-mtls", 19592, 19593, &[CLIENT]).await;
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "ctl-mtls").await;
    let topic = ordersystem_e2e::names::unique("mtls");
    grant_shared_principal(&broker, &topic, &format!("{}.shop.", ns.name)).await;
    ns.put_kafka_ca(&broker).await;
    let (cert, key) = broker.client_cert_pem(CLIENT);
    ns.put_kafka_client_certificate(&cert, &key).await;
    let _operator = operator::start(&client, &ns.name, Default::default()).await;
    let api = ns.systems();
    let mut os = minimal_json("shop", &topic);
    os["spec"]["kafka"]["bootstrapServers"] = broker.bootstrap().into();
    os["spec"]["kafka"]["tls"] = serde_json::json!({
        "caSecretRef": {"name": "kafka-ca"},
        "clientCertificateSecretRef": {"name": "kafka-client"},
    });
    ns.create_system(os).await;
    let os = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(os.status.and_then(|s| s.topic).map(|t| t.partitions), Some(3));

    // The services with the same certificate, as the operator mounts it into every pod.
    let (cert_path, key_path) = broker.client_cert_paths(CLIENT);
    let flags = vec![
        "--kafka-security-protocol=ssl".to_string(),
        format!("--kafka-ssl-ca-location={}", broker.ca_path().display()),
        format!("--kafka-ssl-certificate-location={}", cert_path.display()),
        format!("--kafka-ssl-key-location={}", key_path.display()),
    ];
    let kafka: BTreeMap<&'static str, Vec<String>> = SERVICES.iter().map(|s| (*s, flags.clone())).collect();
    let shop = Shop::start(&client, &ns.name, &broker.bootstrap(), &topic, &kafka).await;
    shop.order_reaches_invoicing_and_shipping().await;
    shop.stop().await;

    // No client certificate: the broker ends the handshake.
    let message = tls_failure_after(
        &api,
        serde_json::json!({"kafka": {"tls": {"clientCertificateSecretRef": null}}}),
    )
    .await;
    eprintln!("without a client certificate: {message}");
    assert!(
        message.contains("SSL routines") && message.contains("alert"),
        "{message}"
    );

    // A certificate with the same CN from another CA: refused as well.
    let (foreign_cert, foreign_key) = self_signed(CLIENT);
    ns.put_kafka_client_certificate(&foreign_cert, &foreign_key).await;
    let message = tls_failure_after(
        &api,
        serde_json::json!({"kafka": {"tls": {"clientCertificateSecretRef": {"name": "kafka-client"}}}}),
    )
    .await;
    eprintln!("with a foreign client certificate: {message}");
    assert!(
        message.contains("SSL routines") && message.contains("alert"),
        "{message}"
    );
    assert!(
        !message.contains("PRIVATE KEY"),
        "no key material in the status: {message}"
    );
}

/// The ACLs of the principal an `OrderSystem` and its services share under mutual TLS: the operator's
/// rights on the topic, order's WRITE, the consumers' READ on the topic and on the groups under
/// `group_prefix`.
async fn grant_shared_principal(broker: &SecureBroker, topic: &str, group_prefix: &str) {
    let principal = format!("User:{CLIENT}");
    let mut topic_acl = vec!["--add", "--allow-principal", &principal, "--topic", topic];
    for operation in [
        "Create",
        "Describe",
        "DescribeConfigs",
        "AlterConfigs",
        "Alter",
        "Delete",
        "Write",
        "Read",
    ] {
        topic_acl.extend(["--operation", operation]);
    }
    let group_acl = [
        "--add",
        "--allow-principal",
        &principal,
        "--operation",
        "Read",
        "--resource-pattern-type",
        "prefixed",
        "--group",
        group_prefix,
    ];
    tokio::join!(broker.acl(&topic_acl), broker.acl(&group_acl));
}

/// A self-signed certificate and key for `cn`, made by openssl: the right name from the wrong CA.
fn self_signed(cn: &str) -> (String, String) {
    let dir = std::env::temp_dir().join(ordersystem_e2e::names::unique("foreign-cert"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("foreign.crt"), dir.join("foreign.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl made the foreign certificate");
    let read = |path| std::fs::read_to_string(path).expect("readable");
    let pair = (read(&cert), read(&key));
    let _ = std::fs::remove_dir_all(&dir);
    pair
}
