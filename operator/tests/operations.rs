//! Day-two operations against the real API server, Kafka and Postgres, with the controller running
//! in-process as the chart's ServiceAccount: consumer-group lag in status, `kubectl get` and metrics;
//! ordering-safe partition increases; compaction warnings; the topic identity guard. No nodes run pods
//! here: the test itself plays the consumers, with the KIP-848 `consumer` protocol (the lag read is the same
//! for the classic groups of the services' pods).

#[path = "support/operator.rs"]
mod operator;
#[path = "support/setup.rs"]
mod setup;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_e2e::control_plane::{connect_as, role_exists};
use ordersystem_e2e::order_system::{
    condition, generation, minimal_json, poke, wait_any_event, wait_condition,
};
use ordersystem_e2e::wait;
use ordersystem_operator::controller::kafka::{self, KafkaClients};
use ordersystem_operator::crd::OrderSystem;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use serde_json::json;
use setup::{Setup, setup};

impl Setup {
    /// `shop` on this test's topic: one partition per consumer, deleted with the resource, lag looked at
    /// every 5 s and called growing after 2 observations above 3 events.
    fn spec(&self) -> serde_json::Value {
        let mut os = minimal_json("shop", &self.topic);
        os["spec"]["kafka"]["bootstrapServers"] = self.bootstrap.clone().into();
        os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
        os["spec"]["kafka"]["topic"]["partitions"] = 2.into();
        os["spec"]["deletionPolicy"] = "Delete".into();
        os["spec"]["consumerLag"] = json!({"threshold": 3, "observations": 2, "intervalSeconds": 5});
        os
    }

    fn group(&self, service: &str) -> String {
        format!("{}.shop.{service}", self.ns.name)
    }

    /// Produces `n` records with distinct keys.
    async fn produce(&self, n: usize) {
        for i in 0..n {
            ordersystem_e2e::kafka::produce(&self.bootstrap, &self.topic, &format!("order-{i}"), b"{}").await;
        }
    }

    /// Waits until the status reports this total lag, polling the resource.
    async fn wait_lag(&self, total: i64) -> OrderSystem {
        wait::until_some(
            &format!("status lag {total}"),
            Duration::from_secs(90),
            || async {
                poke(&self.api).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let os = self.api.get("shop").await.ok()?;
                let lag = os.status.as_ref()?.consumer_lag.as_ref()?.total;
                (lag == total).then_some(os)
            },
        )
        .await
    }

    /// `kubectl get ordersystems` in this namespace, as a user sees it.
    fn kubectl_get(&self) -> String {
        let output = std::process::Command::new("kubectl")
            // Fully qualified: the chart-upgrade test serves the same plural in a group of its own.
            .args(["get", "ordersystems.ordersystem.io", "-n", &self.ns.name])
            .output()
            .expect("kubectl runs (PATH from /tmp/ordersystem/env)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }
}

/// Reads `n` records as a member of `group` with the KIP-848 `consumer` protocol, as a service run without
/// an instance id does, and commits their offsets.
async fn consume_and_commit(bootstrap: &str, topic: &str, group: &str, n: usize) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a record within 60s")
            .expect("record");
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
}

fn condition_message(os: &OrderSystem, type_: &str) -> String {
    os.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn consumer_lag_shows_in_status_kubectl_and_metrics_and_degrades_while_it_does_not_shrink() {
    let s = setup("op-lag").await;
    s.create(s.spec()).await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    let os = s.wait_lag(0).await;
    assert_eq!(
        os.status
            .and_then(|st| st.consumer_lag)
            .map(|l| l.invoicing.group),
        Some(s.group("invoicing"))
    );

    // Five events, nobody reading: each group owes all five.
    s.produce(5).await;
    let os = s.wait_lag(10).await;
    let lag = os.status.and_then(|st| st.consumer_lag).expect("lag");
    assert_eq!((lag.invoicing.lag, lag.shipping.lag), (5, 5));
    let os = wait_condition(&s.api, "Degraded", "True", "ConsumerLagGrowing").await;
    let message = condition_message(&os, "Degraded");
    eprintln!("Degraded=True ConsumerLagGrowing: {message}");
    eprintln!(
        "status.consumerLag: {}",
        serde_json::to_string_pretty(&os.status.as_ref().and_then(|st| st.consumer_lag.clone()))
            .unwrap_or_default()
    );
    assert!(
        message.contains(&format!(
            "invoicing ({}) is 5 events behind",
            s.group("invoicing")
        )),
        "{message}"
    );
    let table = s.kubectl_get();
    eprintln!("$ kubectl get ordersystems\n{table}");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = header.iter().position(|h| *h == "LAG").expect("a LAG column");
    assert_eq!(row.get(column), Some(&"10"), "{table}");
    let metrics = s.metrics.encode();
    let line = format!(
        "ordersystem_operator_consumer_lag{{namespace=\"{}\",name=\"shop\",service=\"shipping\"}} 5",
        s.ns.name
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");

    // Shipping catches up, then invoicing: the lag falls to zero and Degraded clears.
    consume_and_commit(&s.bootstrap, &s.topic, &s.group("shipping"), 5).await;
    let os = s.wait_lag(5).await;
    assert_eq!(
        os.status.and_then(|st| st.consumer_lag).map(|l| l.shipping.lag),
        Some(0)
    );
    consume_and_commit(&s.bootstrap, &s.topic, &s.group("invoicing"), 5).await;
    s.wait_lag(0).await;
    let os = wait_condition(&s.api, "Degraded", "False", "AsExpected").await;
    assert_eq!(
        condition(&os, "Degraded"),
        Some(("False".into(), "AsExpected".into()))
    );
    eprintln!("$ kubectl get ordersystems\n{}", s.kubectl_get());
    s.delete_shop_and_wait(90, "shop gone").await;
    assert!(
        !s.metrics.encode().contains(&s.ns.name),
        "the lag of a deleted system is forgotten"
    );
}

async fn partitions_in_kafka(s: &Setup) -> Option<i32> {
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    kafka::describe(&admin, &s.topic)
        .await
        .ok()?
        .map(|d| d.partitions)
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref()?.replicas
}

#[tokio::test]
async fn a_rejected_partition_increase_changes_nothing_until_the_policy_allows_it() {
    let s = setup("op-reject").await;
    let mut os = s.spec();
    os["spec"]["kafka"]["topic"]["partitionIncrease"] = "Reject".into();
    s.create(os).await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    s.patch_spec(json!({"kafka": {"topic": {"partitions": 3}}})).await;
    let os = wait_condition(&s.api, "TopicReady", "False", "PartitionIncreaseRejected").await;
    let message = condition_message(&os, "TopicReady");
    eprintln!("TopicReady=False PartitionIncreaseRejected: {message}");
    assert!(
        message.contains("asks for 3 partitions, the topic has 2"),
        "{message}"
    );
    assert_eq!(condition(&os, "Ready").map(|c| c.0), Some("False".into()));
    assert_eq!(partitions_in_kafka(&s).await, Some(2), "nothing added");

    s.patch_spec(json!({"kafka": {"topic": {"partitionIncrease": "Immediate"}}}))
        .await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(partitions_in_kafka(&s).await, Some(3));
    s.delete_shop_and_wait(90, "shop gone").await;
}

#[tokio::test]
async fn a_drained_partition_increase_stops_intake_waits_for_lag_zero_then_adds_partitions_and_resumes() {
    let s = setup("op-drain").await;
    let mut os = s.spec();
    os["spec"]["kafka"]["topic"]["partitionIncrease"] = "Drain".into();
    s.create(os).await;
    wait::until_some("order deployed", Duration::from_secs(90), || async {
        let d = s.deployment("shop-order").await?;
        (replicas(&d) == Some(1)).then_some(())
    })
    .await;
    s.produce(3).await;
    s.patch_spec(json!({"kafka": {"topic": {"partitions": 4}}})).await;

    let seen = std::sync::Mutex::new(Vec::<String>::new());
    let waiting = wait::until_some(
        "drain waits for the consumers",
        Duration::from_secs(90),
        || async {
            let os = s.api.get("shop").await.ok()?;
            let message = condition_message(&os, "Progressing");
            let mut seen = seen.lock().expect("lock");
            if seen.last() != Some(&message) {
                eprintln!("Progressing: {message}");
                seen.push(message.clone());
            }
            (condition(&os, "Progressing") == Some(("True".into(), "DrainingForPartitionIncrease".into()))
                && message.contains("lag: invoicing 3, shipping 3"))
            .then_some(message)
        },
    )
    .await;
    assert!(waiting.contains("partitions 2 -> 4"), "{waiting}");
    let order = s.deployment("shop-order").await.expect("order");
    assert_eq!(replicas(&order), Some(0), "intake stopped");
    assert_eq!(
        partitions_in_kafka(&s).await,
        Some(2),
        "nothing added before the consumers caught up"
    );

    consume_and_commit(&s.bootstrap, &s.topic, &s.group("invoicing"), 3).await;
    consume_and_commit(&s.bootstrap, &s.topic, &s.group("shipping"), 3).await;
    wait::until_some("partitions added", Duration::from_secs(90), || async {
        (partitions_in_kafka(&s).await == Some(4)).then_some(())
    })
    .await;
    wait::until_some("intake resumed", Duration::from_secs(90), || async {
        let d = s.deployment("shop-order").await?;
        (replicas(&d) == Some(1)).then_some(())
    })
    .await;
    let os = wait::until_some(
        "status shows 4 partitions, drain over",
        Duration::from_secs(60),
        || async {
            let os = s.api.get("shop").await.ok()?;
            let partitions = os.status.as_ref()?.topic.as_ref()?.partitions;
            let reason = condition(&os, "Progressing")?.1;
            (partitions == 4 && reason != "DrainingForPartitionIncrease").then_some(os)
        },
    )
    .await;
    eprintln!(
        "Progressing after the drain: {}",
        condition_message(&os, "Progressing")
    );
    s.delete_shop_and_wait(90, "shop gone").await;
}

#[tokio::test]
async fn compaction_that_loses_history_is_a_warning_until_a_compaction_lag_protects_it() {
    let s = setup("op-compact").await;
    let mut os = s.spec();
    os["spec"]["kafka"]["topic"]["cleanupPolicy"] = "compact".into();
    s.create(os).await;
    let os = wait_condition(&s.api, "Degraded", "True", "CompactionLosesHistory").await;
    let message = condition_message(&os, "Degraded");
    eprintln!("Degraded=True CompactionLosesHistory: {message}");
    assert!(message.contains("min.compaction.lag.ms"), "{message}");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.client.clone(), &s.ns.name);
    wait_any_event(&events, 30, "CompactionLosesHistory warning event", |e| {
        e.reason.as_deref() == Some("CompactionLosesHistory") && e.type_.as_deref() == Some("Warning")
    })
    .await;

    s.patch_spec(json!({"kafka": {"topic": {
        "cleanupPolicy": "compact,delete",
        "config": {"min.compaction.lag.ms": "604800000"}
    }}}))
    .await;
    wait_condition(&s.api, "Degraded", "False", "AsExpected").await;
    s.delete_shop_and_wait(90, "shop gone").await;
}

#[tokio::test]
async fn a_vanished_then_replaced_topic_degrades_and_is_adopted_only_by_annotation() {
    let s = setup("op-guard").await;
    s.create(s.spec()).await;
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
        partitions_in_kafka(&s).await.is_none().then_some(())
    })
    .await;
    poke(&s.api).await;
    let os = wait_condition(&s.api, "Degraded", "True", "TopicMissing").await;
    eprintln!(
        "Degraded=True TopicMissing: {}",
        condition_message(&os, "Degraded")
    );
    assert_eq!(partitions_in_kafka(&s).await, None, "not recreated silently");

    // Someone else creates a topic of that name: it is reported, not used.
    ordersystem_e2e::kafka::create_topic(&s.bootstrap, &s.topic, 2).await;
    poke(&s.api).await;
    let os = wait_condition(&s.api, "Degraded", "True", "TopicRecreated").await;
    eprintln!(
        "Degraded=True TopicRecreated: {}",
        condition_message(&os, "Degraded")
    );
    let new_id = kafka::describe(&admin, &s.topic)
        .await
        .expect("describe")
        .expect("exists")
        .topic_id;
    assert_eq!(
        os.status.and_then(|st| st.topic).and_then(|t| t.topic_id),
        Some(old_id.clone()),
        "the recorded id stays the old one until adopted"
    );

    let adopt = json!({"metadata": {"annotations": {"ordersystem.io/recreate-topic": old_id}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&adopt))
        .await
        .expect("adopt");
    let os = wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(
        os.status.and_then(|st| st.topic).and_then(|t| t.topic_id),
        Some(new_id),
        "adopted the existing topic, not another new one"
    );
    s.delete_shop_and_wait(90, "shop gone").await;
}

async fn current_user(user: &str, password: &str) -> Result<String, sqlx::Error> {
    let mut conn = connect_as(user, password).await?;
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
}

impl Setup {
    async fn request_rotation(&self, service: &str) {
        let patch = json!({"metadata": {"annotations": {"ordersystem.io/rotate-credentials": service}}});
        self.api
            .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }

    /// Username and password in the invoicing Secret once its username differs from `before`.
    async fn switched_credentials(&self, before: &str) -> (String, String) {
        wait::until_some("the Secret switches logins", Duration::from_secs(60), || async {
            let user = self.ns.secret_value("shop-invoicing-db", "username").await;
            (user != before).then_some(())
        })
        .await;
        let user = self.ns.secret_value("shop-invoicing-db", "username").await;
        let password = self.ns.secret_value("shop-invoicing-db", "password").await;
        (user, password)
    }

    async fn wait_acknowledged(&self) {
        wait::until_some(
            "the rotation request is acknowledged",
            Duration::from_secs(90),
            || async {
                let os = self.api.get("shop").await.ok()?;
                let pending = os.annotations().contains_key("ordersystem.io/rotate-credentials");
                let rotating = condition(&os, "Progressing").is_some_and(|c| c.1 == "RotatingCredentials");
                (!pending && !rotating).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn rotating_credentials_keeps_both_logins_during_the_rollout_rolls_only_that_service_then_disables_the_old()
 {
    let s = setup("op-rotate").await;
    s.create(s.spec()).await;
    wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    let order = wait::until_some("all three deployed", Duration::from_secs(90), || {
        s.deployment("shop-order")
    })
    .await;
    let shipping = s.deployment("shop-shipping").await.expect("shipping");
    let invoicing = s.deployment("shop-invoicing").await.expect("invoicing");
    let owner = s.ns.secret_value("shop-invoicing-db", "username").await;
    let first_password = s.ns.secret_value("shop-invoicing-db", "password").await;

    s.request_rotation("invoicing").await;
    let (login_b, password_b) = s.switched_credentials(&owner).await;
    assert_eq!(login_b, format!("{owner}_b"));
    assert_eq!(
        current_user(&login_b, &password_b)
            .await
            .expect("the new login works"),
        owner,
        "its sessions act as the schema owner"
    );
    // Pods cannot run here, so the rollout stays incomplete: the old login must keep working.
    assert_eq!(
        current_user(&owner, &first_password)
            .await
            .expect("old login still works"),
        owner
    );
    let os = wait_condition(&s.api, "Progressing", "True", "RotatingCredentials").await;
    eprintln!(
        "Progressing=True RotatingCredentials: {}",
        condition_message(&os, "Progressing")
    );
    wait::until_some("invoicing rolled", Duration::from_secs(60), || async {
        let d = s.deployment("shop-invoicing").await?;
        (generation(&d) > generation(&invoicing)).then_some(())
    })
    .await;
    let unchanged = |before: &Deployment, name: &'static str| {
        let before = generation(before);
        let s = &s;
        async move {
            let after = s.deployment(name).await.expect(name);
            assert_eq!(generation(&after), before, "{name} not rolled");
        }
    };
    unchanged(&order, "shop-order").await;
    unchanged(&shipping, "shop-shipping").await;

    // The rollout completes (no replica left on the old template): the old login is disabled.
    s.patch_spec(json!({"invoicing": {"replicas": 0}})).await;
    s.wait_acknowledged().await;
    assert!(
        current_user(&owner, &first_password).await.is_err(),
        "old login disabled"
    );
    assert_eq!(
        current_user(&login_b, &password_b).await.expect("new login"),
        owner
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(s.client.clone(), &s.ns.name);
    let note = wait::until_some("CredentialsRotated event", Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("CredentialsRotated"))
            .and_then(|e| e.note)
    })
    .await;
    eprintln!("Event CredentialsRotated: {note}");
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), &s.ns.name)
        .get("shop-invoicing-db")
        .await
        .expect("secret");
    assert!(!secret.annotations().contains_key("ordersystem.io/retire-login"));
    let login = |os: &OrderSystem| {
        os.status
            .as_ref()?
            .schemas
            .iter()
            .find(|schema| schema.service == "invoicing")?
            .login
            .clone()
    };
    let os = s.api.get("shop").await.expect("get");
    assert_eq!(login(&os), Some(login_b.clone()), "status names the login in use");

    // The next rotation hands back to the owner login with a new password and disables login b.
    s.request_rotation("invoicing").await;
    let (login, password) = s.switched_credentials(&login_b).await;
    assert_eq!(login, owner);
    assert_ne!(password, first_password);
    s.wait_acknowledged().await;
    assert!(
        current_user(&login_b, &password_b).await.is_err(),
        "login b disabled"
    );
    assert_eq!(current_user(&owner, &password).await.expect("owner login"), owner);
    unchanged(&order, "shop-order").await;
    unchanged(&shipping, "shop-shipping").await;

    s.delete_shop_and_wait(90, "shop gone").await;
    assert!(
        !role_exists(&login_b).await,
        "Delete drops the alternate login too"
    );
}
