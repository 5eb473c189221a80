//! Kafka stopped under a running `OrderSystem` and started again: `TopicReady=False reason=KafkaUnavailable`
//! with the client's error, failed reconciles retried with backoff, and the resource back to `TopicReady=True`
//! by itself (no poke) once the broker returns, with the same topic (same id, not recreated). Runs its own
//! broker (`KAFKA_INSTANCE=op-kafka-recovery`, ports 19492/19493), never the shared one.

mod support;

use kube::api::{Api, DeleteParams, PostParams};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_operator::crd::OrderSystem;
use support::operator::{poke, wait_condition, wait_for};

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
    support::install_crd(&client).await;
    let ns = support::TestNamespace::create(&client, "kafka-recovery").await;
    support::create_admin_secret(&client, &ns.name, "pg-admin").await;
    let operator = support::operator::start(&client, &ns.name).await;
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let mut os = support::minimal_json("shop", &ordersystem_e2e::names::unique("recovery"));
    os["spec"]["kafka"]["bootstrapServers"] = format!("127.0.0.1:{PORT}").into();
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
    os["spec"]["deletionPolicy"] = "Delete".into();
    api.create(&PostParams::default(), &support::to_os(os))
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
    let failures = operator.failed_reconciles();
    wait_for(120, "a failed reconcile retried with backoff", || async {
        (operator.failed_reconciles() > failures).then_some(())
    })
    .await;

    broker.run("start").await;
    // No poke: the backoff requeue finds the broker back.
    let after = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    assert_eq!(
        topic_id(&after).as_deref(),
        Some(id.as_str()),
        "the same topic, not a recreated one"
    );

    api.delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(90, "the resource deleted with its topic and schemas", || async {
        api.get_opt("shop").await.ok()?.is_none().then_some(())
    })
    .await;
    drop(operator);
    tokio::task::spawn_blocking(move || drop(broker))
        .await
        .expect("own broker removed");
}
