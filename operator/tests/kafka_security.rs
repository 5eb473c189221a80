//! Against a real SASL_SSL broker with the StandardAuthorizer (its own instance, never the shared one):
//! the operator connects with the CA and the SCRAM identity its Secrets hold, creates the topic, gives
//! each service its own SCRAM user and ACLs that the broker enforces, the three services carry an order
//! through with nothing but those identities, and `TopicReady` says when the password or the CA is
//! wrong, with librdkafka's account of the refusal. The SCRAM users are applied only when missing or
//! changed, and go with their ACLs when the resource is deleted with `deletionPolicy: Delete`, also when
//! the broker was away at first.
//!
//! Both tests start the broker on the same ports: nextest runs them one after the other (test group
//! `secure-broker` in `.config/nextest.toml`).

#[path = "support/operator.rs"]
mod operator;
#[path = "support/secure_shop.rs"]
mod secure_shop;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{
    delete_and_wait, minimal_json, poke, topic_message, wait_condition, wait_event,
};
use ordersystem_e2e::secure_kafka::{ADMIN_PASSWORD, ADMIN_USER, SecureBroker};
use ordersystem_e2e::wait;
use ordersystem_operator::controller::kafka::identities::{self, ScramMechanism};
use ordersystem_operator::controller::kafka::{Admin, ClientSecurity, KafkaClients};
use ordersystem_operator::crd::SaslMechanism;
use ordersystem_operator::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use secure_shop::{SERVICES, Shop};

/// Produces one record as the user; the broker's verdict. The idempotent producer (order's) needs no more
/// than WRITE on the topic; a plain one gets the refusal of the record itself as its error.
async fn produce_as(
    broker: &SecureBroker,
    user: &str,
    password: &str,
    topic: &str,
    idempotent: bool,
) -> Result<(), KafkaError> {
    let producer: FutureProducer = broker
        .client_config(user, password)
        .set("enable.idempotence", idempotent.to_string())
        .set("message.timeout.ms", "15000")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(topic).key("1").payload("{}"),
            Duration::from_secs(20),
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

/// Consumes as the user in `group`, as invoicing and shipping do, until a record arrives (`Ok`) or the
/// broker refuses (`Err`).
fn consume_as(
    broker: &SecureBroker,
    user: &str,
    password: &str,
    topic: &str,
    group: &str,
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = broker
        .client_config(user, password)
        .set("group.id", group)
        // KIP-848, where the broker checks READ on the group in every heartbeat.
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => return Ok(()),
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
    panic!("{user} got neither a record nor a refusal in group {group} within 60s");
}

/// The broker's verdict on a login: `Ok` once it answers a metadata request, else the error librdkafka
/// reports (`Authentication` for a refused SCRAM login).
fn login(broker: &SecureBroker, user: &str, password: &str) -> Result<(), KafkaError> {
    let client: BaseConsumer = broker.client_config(user, password).create().expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(Err(error)) = client.poll(Duration::from_millis(200)) {
            return Err(error);
        }
        if client.fetch_metadata(None, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
    }
    panic!("{user}'s login was neither accepted nor refused within 30s");
}

fn code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_only_their_own_rights_on_a_sasl_ssl_broker_and_bad_credentials_are_named() {
    let broker = SecureBroker::start("op-sasl-ssl", 19392, 19393).await;
    let client = ordersystem_e2e::kube::client().await;
    let (ns, _operator) = secured_namespace(&client, &broker, "ctl-sasl", Default::default()).await;
    let api = ns.systems();
    let topic = ordersystem_e2e::names::unique("secure");
    ns.create_system(secured_json("shop", &topic, &broker)).await;
    let os = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(os.status.and_then(|s| s.topic).map(|t| t.partitions), Some(3));

    let identity = |service: &'static str| {
        let ns = &ns;
        async move {
            let name = format!("shop-{service}-kafka");
            (
                ns.secret_value(&name, "username").await,
                ns.secret_value(&name, "password").await,
            )
        }
    };
    let (order, order_pw) = identity("order").await;
    let (invoicing, invoicing_pw) = identity("invoicing").await;
    let (shipping, _) = identity("shipping").await;
    assert_eq!(invoicing, format!("{}.shop.invoicing", ns.name));
    let invoicing_group = format!("{}.shop.invoicing", ns.name);
    let shipping_group = format!("{}.shop.shipping", ns.name);
    assert_eq!(shipping, shipping_group);

    produce_as(&broker, &order, &order_pw, &topic, true)
        .await
        .expect("order may write the topic");
    let refused = produce_as(&broker, &invoicing, &invoicing_pw, &topic, false)
        .await
        .expect_err("invoicing may not write the topic");
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{refused}"
    );
    let (b, u, p, t) = (&broker, invoicing.clone(), invoicing_pw.clone(), topic.clone());
    let foreign = tokio::task::block_in_place(|| consume_as(b, &u, &p, &t, &shipping_group))
        .expect_err("invoicing may not use shipping's group");
    assert_eq!(
        code(&foreign),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "{foreign}"
    );
    tokio::task::block_in_place(|| consume_as(b, &u, &p, &t, &invoicing_group))
        .expect("invoicing reads the topic in its own group");
    let (o, op) = (order.clone(), order_pw.clone());
    let order_reading = tokio::task::block_in_place(|| consume_as(b, &o, &op, &t, &invoicing_group))
        .expect_err("order may not read");
    assert!(
        matches!(
            code(&order_reading),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed | RDKafkaErrorCode::TopicAuthorizationFailed)
        ),
        "{order_reading}"
    );

    // The whole flow with nothing but these identities, configured as the operator configures the pods.
    let mut kafka = BTreeMap::new();
    for service in SERVICES {
        let secret = format!("shop-{service}-kafka");
        let value = |key: &'static str| ns.secret_value(&secret, key);
        kafka.insert(
            service,
            vec![
                "--kafka-security-protocol=sasl_ssl".into(),
                format!("--kafka-ssl-ca-location={}", broker.ca_path().display()),
                "--kafka-sasl-mechanism=SCRAM-SHA-512".into(),
                format!("--kafka-sasl-username={}", value("username").await),
                format!("--kafka-sasl-password={}", value("password").await),
            ],
        );
    }
    let shop = Shop::start(&client, &ns.name, &broker.bootstrap(), &topic, &kafka).await;
    shop.order_reaches_invoicing_and_shipping().await;
    shop.stop().await;

    // A wrong password: the broker's refusal, not a timeout.
    ns.put_login("kafka-admin", ADMIN_USER, "wrong").await;
    poke(&api).await;
    let os = wait_condition(&api, "TopicReady", "False", "KafkaAuthenticationFailed").await;
    let message = topic_message(&os);
    assert!(message.contains("Authentication failed"), "{message}");
    assert!(
        !message.contains("wrong"),
        "the password must not reach the status: {message}"
    );

    // The right password but another CA: the handshake fails and says why.
    ns.put_kafka_admin().await;
    let other_ca = std::fs::read_to_string(ordersystem_e2e::env::postgres_ca()).expect("another test CA");
    ns.put_secret("kafka-ca", "Opaque", &[("ca.crt", &other_ca)])
        .await;
    poke(&api).await;
    let os = wait_condition(&api, "TopicReady", "False", "KafkaTlsFailed").await;
    let message = topic_message(&os);
    assert!(message.contains("certificate verify failed"), "{message}");
}

/// The shop's namespace with the Secrets a secured `OrderSystem` names, and an operator for it counting
/// into `metrics`.
async fn secured_namespace(
    client: &kube::Client,
    broker: &SecureBroker,
    prefix: &str,
    metrics: Arc<Metrics>,
) -> (TestNamespace, operator::Operator) {
    let ns = TestNamespace::with_admin_secret(client, prefix).await;
    ns.put_kafka_ca(broker).await;
    ns.put_kafka_admin().await;
    let operator = operator::start(client, &ns.name, metrics).await;
    (ns, operator)
}

/// An `OrderSystem` on the secured broker with SCRAM-SHA-512.
fn secured_json(name: &str, topic: &str, broker: &SecureBroker) -> serde_json::Value {
    let mut os = minimal_json(name, topic);
    os["spec"]["kafka"]["bootstrapServers"] = broker.bootstrap().into();
    os["spec"]["kafka"]["tls"] = serde_json::json!({"caSecretRef": {"name": "kafka-ca"}});
    os["spec"]["kafka"]["sasl"] =
        serde_json::json!({"mechanism": "SCRAM-SHA-512", "credentialsSecretRef": {"name": "kafka-admin"}});
    os
}

/// The test's own admin client on the secured broker (the super user).
fn broker_admin(broker: &SecureBroker) -> std::sync::Arc<Admin> {
    let security = ClientSecurity::new(
        "sasl_ssl",
        Some(broker.ca_pem()),
        None,
        Some((
            SaslMechanism::ScramSha512,
            ADMIN_USER.into(),
            ADMIN_PASSWORD.into(),
        )),
    );
    KafkaClients::default()
        .admin_with(&broker.bootstrap(), &security)
        .expect("admin client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_are_applied_only_when_missing_or_changed_and_deleted_with_the_resource() {
    let broker = SecureBroker::start("op-sasl-ssl", 19392, 19393).await;
    let client = ordersystem_e2e::kube::client().await;
    let metrics = Arc::new(Metrics::default());
    let (ns, _operator) = secured_namespace(&client, &broker, "ctl-scram", metrics.clone()).await;
    let api = ns.systems();
    let (topic, kept_topic) = (
        ordersystem_e2e::names::unique("scram"),
        ordersystem_e2e::names::unique("kept"),
    );
    for (name, topic, policy) in [("shop", &topic, "Delete"), ("kept", &kept_topic, "Retain")] {
        let mut os = secured_json(name, topic, &broker);
        os["spec"]["deletionPolicy"] = policy.into();
        ns.create_system(os).await;
    }
    wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    let applied = || metrics.kafka_identity_change_count("user_applied");
    // Both resources, three services each.
    wait::until_some("six SCRAM users applied", Duration::from_secs(90), || async {
        (applied() == 6).then_some(())
    })
    .await;
    let admin = broker_admin(&broker);
    let user = |name: &str, service: &str| format!("{}.{name}.{service}", ns.name);
    for service in ["order", "invoicing", "shipping"] {
        assert_eq!(
            identities::scram_mechanisms(&admin, &user("shop", service))
                .await
                .expect("describe"),
            vec![ScramMechanism::Sha512],
            "{service}"
        );
    }

    // Two more reconciles look at each user and leave it alone.
    for round in 1..=2u64 {
        let checked = metrics.kafka_identity_checks.get();
        poke(&api).await;
        wait::until_some(
            &format!("reconcile {round} checked the three users"),
            Duration::from_secs(60),
            || async { (metrics.kafka_identity_checks.get() >= checked + 3).then_some(()) },
        )
        .await;
    }
    assert_eq!(applied(), 6, "no credential applied again");

    // A user deleted behind the operator's back is applied again, with the Secret's password.
    let invoicing = user("shop", "invoicing");
    identities::delete_scram_user(&admin, &invoicing, vec![ScramMechanism::Sha512])
        .await
        .expect("delete user");
    poke(&api).await;
    wait::until_some(
        "the deleted user applied again",
        Duration::from_secs(60),
        || async { (applied() == 7).then_some(()) },
    )
    .await;
    let password = ns.secret_value("shop-invoicing-kafka", "password").await;
    tokio::task::block_in_place(|| login(&broker, &invoicing, &password))
        .expect("the re-created user logs in with its Secret's password");

    // A password edited by hand is applied (once) and authenticates; the old one no longer does; order's
    // pod template gets the Secret's new hash (a rollout), the others keep theirs.
    let kafka_hash = |service: &'static str| {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
        async move {
            deployments
                .get_opt(&format!("shop-{service}"))
                .await
                .ok()??
                .spec?
                .template
                .metadata?
                .annotations?
                .get("ordersystem.io/kafka-secret-hash")
                .cloned()
        }
    };
    let mut hashes = BTreeMap::new();
    for service in ["order", "invoicing", "shipping"] {
        let hash = wait::until_some(
            &format!("shop-{service} with the Kafka Secret's hash"),
            Duration::from_secs(60),
            || kafka_hash(service),
        )
        .await;
        hashes.insert(service, hash);
    }
    let (order, old_password) = (
        user("shop", "order"),
        ns.secret_value("shop-order-kafka", "password").await,
    );
    ns.put_secret(
        "shop-order-kafka",
        "Opaque",
        &[("password", "edited-by-hand-0123456789")],
    )
    .await;
    poke(&api).await;
    wait::until_some("the edited password applied", Duration::from_secs(60), || async {
        (applied() == 8).then_some(())
    })
    .await;
    produce_as(&broker, &order, "edited-by-hand-0123456789", &topic, true)
        .await
        .expect("order writes with the edited password");
    wait::until_some(
        "order's template with the edited Secret's hash",
        Duration::from_secs(60),
        || async {
            kafka_hash("order")
                .await
                .filter(|hash| *hash != hashes["order"])
                .map(|_| ())
        },
    )
    .await;
    for service in ["invoicing", "shipping"] {
        assert_eq!(
            kafka_hash(service).await.as_ref(),
            Some(&hashes[service]),
            "{service} not rolled"
        );
    }
    let refused = tokio::task::block_in_place(|| login(&broker, &order, &old_password))
        .expect_err("the old password is gone");
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::Authentication),
        "{refused}"
    );

    // Delete: the users and their ACLs go before the finalizer is released; Retain keeps them.
    let principals: Vec<String> = ["order", "invoicing", "shipping"]
        .iter()
        .map(|s| format!("User:{}", user("shop", s)))
        .collect();
    let mut acls = 0;
    for principal in &principals {
        acls += identities::acl_count(&admin, principal).await.expect("acls");
    }
    assert_eq!(acls, 5, "order: WRITE; each consumer: READ topic, READ group");
    let kept_password = ns.secret_value("kept-order-kafka", "password").await;
    // With the broker away, Retain lets go at once; Delete keeps its finalizer and retries the cleanup.
    broker.stop().await;
    for name in ["shop", "kept"] {
        api.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    wait::until_some("kept gone", Duration::from_secs(60), || async {
        api.get_opt("kept").await.ok()?.is_none().then_some(())
    })
    .await;
    // Its own Warning (never folded into an earlier `ReconcileFailed` series) names the failed call.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let cleanup_failed = wait_event(&events, "shop", "CleanupFailed").await;
    assert_eq!(cleanup_failed.type_.as_deref(), Some("Warning"));
    assert_eq!(cleanup_failed.action.as_deref(), Some("Delete"));
    let note = cleanup_failed.note.unwrap_or_default();
    assert!(
        note.contains("DescribeUserScramCredentials")
            && note.contains(&format!("SCRAM user {}.shop.", ns.name)),
        "the cleanup's error names the call and the user: {note}"
    );
    let held = api
        .get_opt("shop")
        .await
        .expect("get")
        .expect("shop waits for its cleanup");
    assert!(held.metadata.deletion_timestamp.is_some());
    broker.resume().await;
    wait::until_some(
        "shop gone once the broker is back",
        Duration::from_secs(90),
        || async { api.get_opt("shop").await.ok()?.is_none().then_some(()) },
    )
    .await;
    for service in ["order", "invoicing", "shipping"] {
        assert!(
            identities::scram_mechanisms(&admin, &user("shop", service))
                .await
                .expect("describe")
                .is_empty(),
            "shop's {service} user deleted"
        );
        assert_eq!(
            identities::scram_mechanisms(&admin, &user("kept", service))
                .await
                .expect("describe"),
            vec![ScramMechanism::Sha512],
            "kept's {service} user kept"
        );
    }
    for principal in &principals {
        assert_eq!(
            identities::acl_count(&admin, principal).await.expect("acls"),
            0,
            "{principal}"
        );
    }
    assert_eq!(
        identities::acl_count(&admin, &format!("User:{}", user("kept", "order")))
            .await
            .expect("acls"),
        1,
        "kept's ACLs kept"
    );
    assert_eq!(metrics.kafka_identity_change_count("user_deleted"), 3);
    assert_eq!(metrics.kafka_identity_change_count("acl_deleted"), 5);
    let refused = tokio::task::block_in_place(|| login(&broker, &order, "edited-by-hand-0123456789"))
        .expect_err("the deleted user cannot log in");
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::Authentication),
        "{refused}"
    );

    // `kept` created again takes back its users and ACLs: its collected Secret is replaced by one with a
    // new password, which the user then has; the ACLs are the same ones, not doubled.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    wait::until_some("kept's Secret collected", Duration::from_secs(60), || async {
        secrets
            .get_opt("kept-order-kafka")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let mut kept = secured_json("kept", &kept_topic, &broker);
    kept["spec"]["deletionPolicy"] = "Retain".into();
    ns.create_system(kept).await;
    let kept_order = user("kept", "order");
    let new_password = wait::until_some("kept's new Secret", Duration::from_secs(60), || async {
        let secret = secrets.get_opt("kept-order-kafka").await.ok()??;
        let password = secret.data?.get("password")?.0.clone();
        String::from_utf8(password).ok()
    })
    .await;
    assert_ne!(new_password, kept_password);
    wait::until_some(
        "kept's order user takes the new Secret's password",
        Duration::from_secs(60),
        || async {
            produce_as(&broker, &kept_order, &new_password, &kept_topic, true)
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(
        identities::acl_count(&admin, &format!("User:{kept_order}"))
            .await
            .expect("acls"),
        1,
        "kept's ACL taken back, not doubled"
    );
    let refused = tokio::task::block_in_place(|| login(&broker, &kept_order, &kept_password))
        .expect_err("the collected Secret's password no longer logs in");
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::Authentication),
        "{refused}"
    );
}

/// A namespace being deleted removes the Kafka credentials Secret too: the cleanup cannot reach Kafka
/// any more and must not hold the resource (and the namespace) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_resource_whose_kafka_secret_is_gone_is_released_with_a_warning() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "ctl-kafka-gone").await;
    ns.put_login("kafka-admin", "u", "p").await;
    let _operator = operator::start(&client, &ns.name, Default::default()).await;
    let api = ns.systems();
    let mut os = minimal_json("shop", &ordersystem_e2e::names::unique("gone"));
    // Nothing listens there: the resource never reaches Kafka.
    os["spec"]["kafka"]["bootstrapServers"] = "127.0.0.1:1".into();
    os["spec"]["kafka"]["sasl"] =
        serde_json::json!({"mechanism": "SCRAM-SHA-512", "credentialsSecretRef": {"name": "kafka-admin"}});
    os["spec"]["deletionPolicy"] = "Delete".into();
    ns.create_system(os).await;
    wait::until_some("the finalizer in place", Duration::from_secs(60), || async {
        let os = api.get("shop").await.ok()?;
        (!os.metadata.finalizers.unwrap_or_default().is_empty()).then_some(())
    })
    .await;
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .delete("kafka-admin", &DeleteParams::default())
        .await
        .expect("delete the Kafka Secret");
    delete_and_wait(&api, 60, "shop released").await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let notes: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CleanupSkipped"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("Kafka Secret kafka-admin is gone")),
        "{notes:?}"
    );
}

/// `serviceCredentials: Provided` with SCRAM (Strimzi's User Operator owning the users): the operator logs
/// in with its own identity and creates the topic but writes no SCRAM user and no ACL; it holds the
/// Deployments back naming the Secrets to create, and rolls the services out with exactly those once they
/// exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_provided_credentials_the_operator_writes_no_user_and_waits_for_the_services_secrets() {
    let broker = SecureBroker::start("op-sasl-ssl", 19392, 19393).await;
    let client = ordersystem_e2e::kube::client().await;
    let metrics = Arc::new(Metrics::default());
    let (ns, _operator) = secured_namespace(&client, &broker, "ctl-provided", metrics.clone()).await;
    let api = ns.systems();
    let topic = ordersystem_e2e::names::unique("provided");
    let mut os = secured_json("shop", &topic, &broker);
    os["spec"]["kafka"]["sasl"]["serviceCredentials"] = "Provided".into();
    ns.create_system(os).await;

    let os = wait_condition(&api, "TopicReady", "False", "KafkaCredentialsMissing").await;
    let message = topic_message(&os);
    for service in ["order", "invoicing", "shipping"] {
        assert!(message.contains(&format!("shop-{service}-kafka")), "{message}");
    }
    assert!(message.contains("serviceCredentials: Provided"), "{message}");
    let admin = broker_admin(&broker);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    for service in ["order", "invoicing", "shipping"] {
        let user = format!("{}.shop.{service}", ns.name);
        assert_eq!(
            identities::scram_mechanisms(&admin, &user)
                .await
                .expect("describe"),
            vec![],
            "no SCRAM user for {service}"
        );
        assert!(
            deployments
                .get_opt(&format!("shop-{service}"))
                .await
                .expect("get")
                .is_none(),
            "{service} waits for its Secret"
        );
    }
    assert_eq!(metrics.kafka_identity_change_count("user_applied"), 0);

    for service in ["order", "invoicing", "shipping"] {
        ns.put_login(
            &format!("shop-{service}-kafka"),
            &format!("strimzi-{service}"),
            "from-the-user",
        )
        .await;
    }
    poke(&api).await;
    wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    wait::until_some(
        "the three Deployments with the provided Secrets",
        Duration::from_secs(60),
        || async {
            for service in ["order", "invoicing", "shipping"] {
                let deployment = deployments.get_opt(&format!("shop-{service}")).await.ok()??;
                let text = serde_json::to_string(&deployment.spec?.template).ok()?;
                text.contains(&format!("shop-{service}-kafka")).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    assert_eq!(
        metrics.kafka_identity_change_count("user_applied"),
        0,
        "still no SCRAM user written"
    );
    let secret: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let order = secret.get("shop-order-kafka").await.expect("the user's Secret");
    assert_eq!(
        order.metadata.owner_references, None,
        "the operator neither adopts nor rewrites a provided Secret"
    );
}
