//! Kafka stopped under a running `OrderSystem` and started again: `TopicReady=False reason=KafkaUnavailable`
//! with the client's error, failed reconciles retried with backoff, and the resource back to `TopicReady=True`
//! by itself (no poke) once the broker returns, with the same topic (same id, not recreated). Runs its own
//! broker (`KAFKA_INSTANCE=op-kafka-recovery`, ports 19492/19493), never the shared one.

#[path = "support/operator.rs"]
mod operator;

use kube::api::{Api, PostParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{
    delete_and_wait, failed_reconciles, minimal_json, poke, to_os, wait_condition,
};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_e2e::wait;
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

const PORT: u16 = 19492;
const CONTROLLER_PORT: u16 = 19493;

fn topic_id(os: &OrderSystem) -> Option<String> {
    os.status.as_ref()?.topic.as_ref()?.topic_id.clone()
}

#[tokio::test]
async fn a_stopped_broker_is_a_condition_and_the_resource_recovers_by_itself_with_the_same_topic() {
    let broker = OwnInstance::kafka("op-kafka-recovery", PORT, CONTROLLER_PORT)
        .start_fresh()
        .await;
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "kafka-recovery").await;
    let metrics = Arc::new(Metrics::default());
    let operator = operator::start(&client, &ns.name, metrics.clone()).await;
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let mut os = minimal_json("shop", &ordersystem_e2e::names::unique("recovery"));
    os["spec"]["kafka"]["bootstrapServers"] = format!("127.0.0.1:{PORT}").into();
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
    os["spec"]["deletionPolicy"] = "Delete".into();
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");
    let before = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;
    let id = topic_id(&before).expect("the topic id in status");

    broker.run("stop").await;
    poke(&api).await;
    let down = wait_condition(&api, "TopicReady", "False", "KafkaUnavailable").await;
    let message = down
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "TopicReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    eprintln!("broker down: {message}");
    let failures = failed_reconciles(&metrics.encode());
    wait::until_some(
        "a failed reconcile retried with backoff",
        Duration::from_secs(120),
        || async { (failed_reconciles(&metrics.encode()) > failures).then_some(()) },
    )
    .await;

    broker.run("start").await;
    // No poke: the backoff requeue finds the broker back.
    let after = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(
        topic_id(&after).as_deref(),
        Some(id.as_str()),
        "the same topic, not a recreated one"
    );

    delete_and_wait(&api, 90, "the resource deleted with its topic and schemas").await;
    drop(operator);
    tokio::task::spawn_blocking(move || drop(broker))
        .await
        .expect("own broker removed");
}
