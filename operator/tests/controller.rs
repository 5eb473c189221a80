//! The controller end to end against the real API server (with kube-controller-manager), Kafka and
//! Postgres, running in-process as the chart's ServiceAccount under the chart's RBAC. No nodes run pods
//! here, so Deployments get ReplicaSets and Pods stay Pending: `ServicesAvailable=False` is the truth.

#[path = "support/operator.rs"]
mod operator;
#[path = "support/setup.rs"]
mod setup;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use ordersystem_e2e::control_plane::{connect_as, schema_exists};
use ordersystem_e2e::order_system::{
    condition, generation, poke, shop_json, to_os, wait_any_event, wait_condition,
};
use ordersystem_e2e::wait;
use ordersystem_operator::controller::kafka::{self, ConfigOp, KafkaClients};
use ordersystem_operator::names::{Service, pg_identifier};
use serde_json::json;
use setup::setup;
use std::time::Duration;

/// The test's shop with `deletionPolicy: policy` and one managed topic config.
fn spec_json(s: &setup::Setup, policy: &str) -> serde_json::Value {
    let mut os = shop_json(&s.topic, &s.bootstrap, policy);
    os["spec"]["kafka"]["topic"]["config"] = json!({"retention.ms": "3600000"});
    os
}

fn env_value(d: &Deployment, name: &str) -> Option<String> {
    let pod = d.spec.as_ref()?.template.spec.as_ref()?;
    pod.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test]
async fn a_valid_resource_provisions_everything_and_changes_touch_exactly_the_right_objects() {
    let s = setup("ctl-main").await;
    s.create(spec_json(&s, "Delete")).await;

    let os = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    assert_eq!(
        condition(&os, "TopicReady"),
        Some(("True".into(), "TopicReady".into()))
    );
    let order = wait::until_some(
        "order Deployment after the consumers",
        Duration::from_secs(90),
        || s.deployment("shop-order"),
    )
    .await;
    let invoicing = s.deployment("shop-invoicing").await.expect("invoicing deployed");
    let shipping = s.deployment("shop-shipping").await.expect("shipping deployed");
    assert_eq!(invoicing.spec.as_ref().and_then(|d| d.replicas), Some(2));
    assert_eq!(
        env_value(&invoicing, "KAFKA_TOPIC").as_deref(),
        Some(s.topic.as_str())
    );
    assert_eq!(
        env_value(&invoicing, "KAFKA_GROUP_ID"),
        Some(format!("{}.shop.invoicing", s.ns.name))
    );
    let os = wait_condition(&s.api, "ServicesAvailable", "False", "Unavailable").await;
    assert_eq!(
        condition(&os, "Ready").map(|c| c.1),
        Some("ServicesUnavailable".into())
    );
    let status = os.status.clone().expect("status");
    assert_eq!(status.observed_generation, os.metadata.generation);
    assert!(status.schemas.iter().all(|s| s.privileges_verified) && status.schemas.len() == 3);

    // The topic, checked with the Admin API.
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    let described = kafka::describe(&admin, &s.topic)
        .await
        .expect("describe")
        .expect("topic exists");
    assert_eq!(described.partitions, 3);
    assert_eq!(
        status.topic.as_ref().and_then(|t| t.topic_id.clone()),
        Some(described.topic_id.clone())
    );
    assert_eq!(
        status
            .topic
            .as_ref()
            .and_then(|t| t.managed_configs.get("retention.ms").cloned())
            .as_deref(),
        Some("3600000")
    );

    // Each role logs in with its Secret's password.
    for service in ["order", "invoicing", "shipping"] {
        let secret = format!("shop-{service}-db");
        let user = s.ns.secret_value(&secret, "username").await;
        let password = s.ns.secret_value(&secret, "password").await;
        connect_as(&user, &password)
            .await
            .unwrap_or_else(|e| panic!("{service} role logs in: {e}"));
    }

    // Change replicas, partitions, a config and an image: exactly those objects change.
    s.patch_spec(json!({
        "invoicing": {"replicas": 3},
        "shipping": {"image": "ghcr.io/ordersystem/shipping:test"},
        "kafka": {"topic": {"partitions": 4, "config": {"retention.ms": "7200000"}}}
    }))
    .await;
    wait::until_some("invoicing scaled to 3", Duration::from_secs(60), || async {
        let d = s.deployment("shop-invoicing").await?;
        (d.spec.as_ref()?.replicas == Some(3)).then_some(())
    })
    .await;
    let shipping_after = wait::until_some("shipping image changed", Duration::from_secs(60), || async {
        let d = s.deployment("shop-shipping").await?;
        let image = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .clone()?;
        (image == "ghcr.io/ordersystem/shipping:test").then_some(d)
    })
    .await;
    wait::until_some(
        "partitions and retention.ms in status",
        Duration::from_secs(60),
        || async {
            let topic = s.api.get("shop").await.ok()?.status?.topic?;
            (topic.partitions == 4
                && topic.managed_configs.get("retention.ms").map(String::as_str) == Some("7200000"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .map(|d| d.partitions),
        Some(4)
    );
    let order_after = s.deployment("shop-order").await.expect("order");
    assert_eq!(generation(&order_after), generation(&order), "order untouched");
    assert_eq!(
        generation(&shipping_after),
        generation(&shipping) + 1,
        "shipping changed once"
    );
    let secret_api = Api::<Secret>::namespaced(s.client.clone(), &s.ns.name);
    assert!(secret_api.get("shop-order-db").await.is_ok());

    // Someone else sets a config we do not manage: it survives and is reported.
    kafka::alter_configs(
        &admin,
        &s.topic,
        &[("max.message.bytes".into(), ConfigOp::Set("123456".into()))],
    )
    .await
    .expect("out of band");
    poke(&s.api).await;
    wait::until_some("unmanaged config reported", Duration::from_secs(60), || async {
        let topic = s.api.get("shop").await.ok()?.status?.topic?;
        (topic
            .unmanaged_configs
            .get("max.message.bytes")
            .map(String::as_str)
            == Some("123456"))
        .then_some(())
    })
    .await;

    // The topic grown out of band: NotSupported, and nothing is deleted.
    let grow = rdkafka::admin::NewPartitions::new(&s.topic, 6);
    admin
        .create_partitions([&grow], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("grow out of band");
    poke(&s.api).await;
    wait_condition(&s.api, "TopicReady", "False", "NotSupported").await;
    assert_eq!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .map(|d| d.partitions),
        Some(6)
    );

    let metrics = s.metrics.encode();
    assert!(
        !metrics.contains("ordersystem_operator_reconciles_total 0"),
        "reconciles counted: {metrics}"
    );

    // Delete with deletionPolicy Delete: topic and schemas go.
    let schema = pg_identifier(&s.ns.name, "shop", Service::Invoicing);
    assert!(schema_exists(&schema).await);
    s.delete_shop_and_wait(90, "resource gone").await;
    assert!(!schema_exists(&schema).await, "schema dropped");
    wait::until_some("topic deleted", Duration::from_secs(30), || async {
        kafka::describe(&admin, &s.topic)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn retain_keeps_topic_and_schemas_after_delete() {
    let s = setup("ctl-retain").await;
    s.create(spec_json(&s, "Retain")).await;
    let os = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    s.delete_shop_and_wait(90, "resource gone").await;
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_some(),
        "topic kept"
    );
    let schema = pg_identifier(&s.ns.name, "shop", Service::Order);
    assert!(schema_exists(&schema).await, "schema kept");
    // Clean up what Retain kept.
    kafka::delete_topic(&admin, &s.topic).await.expect("delete topic");
    let spec = ordersystem_operator::controller::validate::validate(&os).expect("valid");
    let admin_pg = ordersystem_operator::controller::postgres::read_admin(&s.client, &s.ns.name, "pg-admin")
        .await
        .expect("admin");
    ordersystem_operator::controller::postgres::drop_all(&admin_pg, &spec)
        .await
        .expect("drop");
}

#[tokio::test]
async fn a_second_resource_on_the_same_topic_of_the_same_cluster_is_a_conflict_whatever_the_address() {
    let s = setup("ctl-conflict").await;
    s.create(spec_json(&s, "Delete")).await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    // The same brokers through another address: the claim is keyed by the cluster id they report.
    let mut second = spec_json(&s, "Delete");
    second["metadata"]["name"] = "shop2".into();
    let other_address = s.bootstrap.replace("127.0.0.1", "localhost");
    assert_ne!(
        other_address, s.bootstrap,
        "the test broker is reached by IP address"
    );
    second["spec"]["kafka"]["bootstrapServers"] = other_address.into();
    s.api
        .create(&PostParams::default(), &to_os(second))
        .await
        .expect("create second");
    let os = wait::until_some("shop2 Ready=False Conflict", Duration::from_secs(90), || async {
        let os = s.api.get("shop2").await.ok()?;
        (condition(&os, "Ready") == Some(("False".into(), "Conflict".into()))).then_some(os)
    })
    .await;
    let message = os
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains(&format!("already claimed by OrderSystem {}/shop", s.ns.name)),
        "{message}"
    );
    assert!(
        s.deployment("shop2-invoicing").await.is_none(),
        "the loser deploys nothing"
    );
    s.api
        .delete("shop2", &DeleteParams::default())
        .await
        .expect("delete second");
    wait::until_some("shop2 gone", Duration::from_secs(60), || async {
        s.api.get_opt("shop2").await.ok()?.is_none().then_some(())
    })
    .await;
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_some(),
        "the loser's delete keeps the winner's topic"
    );
    s.delete_shop_and_wait(90, "shop gone").await;
}

#[tokio::test]
async fn consumers_beyond_partitions_degrade_with_a_warning_and_paused_changes_nothing() {
    let s = setup("ctl-warn").await;
    let mut os = spec_json(&s, "Delete");
    os["spec"]["shipping"] = json!({"replicas": 5});
    s.create(os).await;
    wait_condition(&s.api, "Degraded", "True", "ConsumersExceedPartitions").await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.client.clone(), &s.ns.name);
    wait_any_event(&events, 30, "ConsumersExceedPartitions event", |e| {
        e.reason.as_deref() == Some("ConsumersExceedPartitions") && e.type_.as_deref() == Some("Warning")
    })
    .await;
    wait::until_some("shipping deployed", Duration::from_secs(60), || {
        s.deployment("shop-shipping")
    })
    .await;

    // Paused: a replica change is not applied, status says Paused.
    s.patch_spec(json!({"paused": true, "shipping": {"replicas": 1}}))
        .await;
    wait_condition(&s.api, "Paused", "True", "Paused").await;
    let shipping = s.deployment("shop-shipping").await.expect("shipping");
    assert_eq!(
        shipping.spec.and_then(|d| d.replicas),
        Some(5),
        "paused: nothing changed"
    );
    s.delete_shop_and_wait(90, "gone while paused").await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_written() {
    let s = setup("ctl-invalid").await;
    let mut os = spec_json(&s, "Delete");
    os["spec"]["kafka"]["bootstrapServers"] = "no-port-here".into();
    s.create(os).await;
    let os = wait_condition(&s.api, "Ready", "False", "InvalidSpec").await;
    let message = os
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message);
    assert!(message.is_some_and(|m| m.contains("not host:port")));
    let secrets = Api::<Secret>::namespaced(s.client.clone(), &s.ns.name);
    assert!(
        secrets.get_opt("shop-order-db").await.expect("get").is_none(),
        "no Secret written"
    );
    assert!(s.deployment("shop-order").await.is_none());
    s.delete_shop_and_wait(60, "gone").await;
}

#[tokio::test]
async fn a_recreated_secret_gets_a_new_password_that_works_and_rolls_only_its_service() {
    let s = setup("ctl-rotate").await;
    s.create(spec_json(&s, "Delete")).await;
    let order = wait::until_some("all three deployed", Duration::from_secs(90), || {
        s.deployment("shop-order")
    })
    .await;
    let invoicing = s.deployment("shop-invoicing").await.expect("invoicing");
    let shipping = s.deployment("shop-shipping").await.expect("shipping");
    let old_password = s.ns.secret_value("shop-shipping-db", "password").await;

    let secrets = Api::<Secret>::namespaced(s.client.clone(), &s.ns.name);
    secrets
        .delete("shop-shipping-db", &DeleteParams::default())
        .await
        .expect("delete Secret");
    poke(&s.api).await;
    let rolled = wait::until_some("shipping template rolled", Duration::from_secs(60), || async {
        let d = s.deployment("shop-shipping").await?;
        (generation(&d) > generation(&shipping)).then_some(d)
    })
    .await;
    let new_password = s.ns.secret_value("shop-shipping-db", "password").await;
    assert_ne!(new_password, old_password, "a new Secret has a new password");
    let user = s.ns.secret_value("shop-shipping-db", "username").await;
    connect_as(&user, &new_password)
        .await
        .expect("the role took the new password");
    assert!(
        connect_as(&user, &old_password).await.is_err(),
        "the old password no longer works"
    );
    let annotation = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("ordersystem.io/secret-hash")
            .cloned()
    };
    assert_ne!(annotation(&rolled), annotation(&shipping));
    let order_after = s.deployment("shop-order").await.expect("order");
    let invoicing_after = s.deployment("shop-invoicing").await.expect("invoicing");
    assert_eq!(generation(&order_after), generation(&order), "order not rolled");
    assert_eq!(
        generation(&invoicing_after),
        generation(&invoicing),
        "invoicing not rolled"
    );
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn a_replication_factor_above_the_broker_count_is_a_condition_and_nothing_is_deployed() {
    let s = setup("ctl-rf").await;
    let mut os = spec_json(&s, "Delete");
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 3.into();
    s.create(os).await;
    let os = wait_condition(&s.api, "TopicReady", "False", "ReplicationFactorTooLarge").await;
    assert_eq!(
        condition(&os, "Progressing"),
        Some(("True".into(), "WaitingForTopic".into()))
    );
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_none(),
        "no topic created"
    );
    assert!(
        s.deployment("shop-invoicing").await.is_none(),
        "consumers wait for the topic"
    );
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn a_deleted_topic_is_recreated_only_after_the_annotation_acknowledges_its_old_id() {
    let s = setup("ctl-identity").await;
    s.create(spec_json(&s, "Delete")).await;
    let os = wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    let old_id = os
        .status
        .and_then(|st| st.topic)
        .and_then(|t| t.topic_id)
        .expect("topic id recorded");
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    kafka::delete_topic(&admin, &s.topic)
        .await
        .expect("delete out of band");
    wait::until_some("topic gone", Duration::from_secs(30), || async {
        kafka::describe(&admin, &s.topic)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    poke(&s.api).await;
    wait_condition(&s.api, "TopicReady", "False", "TopicDeleted").await;
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_none(),
        "not recreated silently"
    );

    let ack = json!({"metadata": {"annotations": {"ordersystem.io/recreate-topic": old_id}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&ack))
        .await
        .expect("acknowledge");
    let os = wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    let new_id = os
        .status
        .and_then(|st| st.topic)
        .and_then(|t| t.topic_id)
        .expect("new id");
    assert_ne!(new_id, old_id);
    assert_eq!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .map(|d| d.topic_id),
        Some(new_id)
    );
    s.delete_shop_and_wait(90, "gone").await;
}
