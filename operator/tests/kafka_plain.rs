//! SASL PLAIN against a real SASL_SSL broker (its own instance) whose PLAIN users come from its JAAS
//! config: the operator logs in with PLAIN and creates the topic, but cannot create the services' users,
//! so it holds their Deployments back and names the `<name>-<service>-kafka` Secrets the user has to
//! create, in `TopicReady` and in a Warning Event. Once they exist, the services carry an order through
//! with those users and the ACLs their admin granted.
//!
//! The listener also requires a client certificate (mutual TLS under SASL), which the operator and the
//! services share: its principal `User:CN=shop` holds no ACL, so the flow proves that the broker
//! authorizes each service as its own SASL user, not as the certificate.

#[path = "support/operator.rs"]
mod operator;
#[path = "support/secure_shop.rs"]
mod secure_shop;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{
    minimal_json, poke, tls_failure_after, topic_message, wait_any_event, wait_condition,
};
use ordersystem_e2e::secure_kafka::SecureBroker;
use ordersystem_e2e::wait;
use secure_shop::{SERVICES, Shop};
use std::time::Duration;

/// The CN of the client certificate the operator and the services share.
const CLIENT: &str = "shop";

/// The services' PLAIN users as the broker's JAAS config defines them (test-only passwords).
const USERS: [(&str, &str, &str); 3] = [
    ("order", "plain-order", "order-plain-secret"),
    ("invoicing", "plain-invoicing", "invoicing-plain-secret"),
    ("shipping", "plain-shipping", "shipping-plain-secret"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_plain_the_operator_names_the_missing_service_secrets_and_the_flow_runs_once_they_exist() {
    let jaas_users: Vec<(&str, &str)> = USERS.iter().map(|(_, user, pw)| (*user, *pw)).collect();
    let broker = SecureBroker::start_with_plain_users("op-plain", 19692, 19693, &jaas_users, &[CLIENT]).await;
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "ctl-plain").await;
    let topic = ordersystem_e2e::names::unique("plain");
    ns.put_kafka_ca(&broker).await;
    let (cert, key) = broker.client_cert_pem(CLIENT);
    ns.put_kafka_client_certificate(&cert, &key).await;
    ns.put_kafka_admin().await;
    let _operator = operator::start(&client, &ns.name, Default::default()).await;
    let api = ns.systems();
    let mut os = minimal_json("shop", &topic);
    os["spec"]["kafka"]["bootstrapServers"] = broker.bootstrap().into();
    os["spec"]["kafka"]["tls"] = serde_json::json!({
        "caSecretRef": {"name": "kafka-ca"},
        "clientCertificateSecretRef": {"name": "kafka-client"},
    });
    os["spec"]["kafka"]["sasl"] =
        serde_json::json!({"mechanism": "PLAIN", "credentialsSecretRef": {"name": "kafka-admin"}});
    ns.create_system(os).await;

    // The operator's PLAIN login works (the topic exists), the services' Secrets do not.
    let os = wait_condition(&api, "TopicReady", "False", "KafkaCredentialsMissing").await;
    let message = topic_message(&os);
    for service in ["order", "invoicing", "shipping"] {
        assert!(message.contains(&format!("shop-{service}-kafka")), "{message}");
    }
    assert!(message.contains("Kafka credentials are provided"), "{message}");
    let events = Api::<Event>::namespaced(client.clone(), &ns.name);
    wait_any_event(&events, 60, "a Warning Event naming the missing Secrets", |e| {
        e.type_.as_deref() == Some("Warning")
            && e.note.as_deref().is_some_and(|n| n.contains("shop-order-kafka"))
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    for service in ["order", "invoicing", "shipping"] {
        let name = format!("shop-{service}");
        assert!(
            deployments.get_opt(&name).await.expect("get").is_none(),
            "{name} must wait for its Kafka Secret"
        );
    }

    // The broker's admin grants each user its job, the user creates the Secrets.
    grant_least_privilege(&broker, &topic, &ns.name).await;
    for (service, user, password) in USERS {
        ns.put_login(&format!("shop-{service}-kafka"), user, password)
            .await;
    }
    poke(&api).await;
    let os = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(os.status.and_then(|s| s.topic).map(|t| t.partitions), Some(3));
    wait::until_some(
        "the order Deployment with its PLAIN identity",
        Duration::from_secs(30),
        || async {
            let deployment = deployments.get_opt("shop-order").await.ok()??;
            let text = serde_json::to_string(&deployment.spec?.template).ok()?;
            (text.contains("shop-order-kafka") && text.contains("PLAIN")).then_some(())
        },
    )
    .await;

    // The services with those users, configured as the operator configures their pods.
    let (cert_path, key_path) = broker.client_cert_paths(CLIENT);
    let mut kafka: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (service, user, password) in USERS {
        let service = SERVICES.into_iter().find(|s| *s == service).expect("a service");
        kafka.insert(
            service,
            vec![
                "--kafka-security-protocol=sasl_ssl".into(),
                format!("--kafka-ssl-ca-location={}", broker.ca_path().display()),
                format!("--kafka-ssl-certificate-location={}", cert_path.display()),
                format!("--kafka-ssl-key-location={}", key_path.display()),
                "--kafka-sasl-mechanism=PLAIN".into(),
                format!("--kafka-sasl-username={user}"),
                format!("--kafka-sasl-password={password}"),
            ],
        );
    }
    let shop = Shop::start(&client, &ns.name, &broker.bootstrap(), &topic, &kafka).await;
    shop.order_reaches_invoicing_and_shipping().await;
    shop.stop().await;

    // The certificate is no formality: without it the right PLAIN login does not get past TLS.
    let message = tls_failure_after(
        &api,
        serde_json::json!({"kafka": {"tls": {"clientCertificateSecretRef": null}}}),
    )
    .await;
    assert!(
        message.contains("SSL routines") && message.contains("alert"),
        "{message}"
    );
}

/// What README.md asks a Kafka admin to grant with PLAIN: order WRITE on the topic, each consumer READ on
/// the topic and on its own group.
async fn grant_least_privilege(broker: &SecureBroker, topic: &str, namespace: &str) {
    let group = |service: &str| format!("{namespace}.shop.{service}");
    let (invoicing_group, shipping_group) = (group("invoicing"), group("shipping"));
    let order = [
        "--add",
        "--allow-principal",
        "User:plain-order",
        "--operation",
        "Write",
        "--topic",
        topic,
    ];
    let consumer = |user: &'static str, group: &str| {
        let args: Vec<String> = [
            "--add",
            "--allow-principal",
            user,
            "--operation",
            "Read",
            "--topic",
            topic,
            "--group",
            group,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args
    };
    let (invoicing, shipping) = (
        consumer("User:plain-invoicing", &invoicing_group),
        consumer("User:plain-shipping", &shipping_group),
    );
    let (invoicing, shipping) = (strs(&invoicing), strs(&shipping));
    tokio::join!(broker.acl(&order), broker.acl(&invoicing), broker.acl(&shipping));
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
