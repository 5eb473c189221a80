//! With its Kafka stopped, an `OrderSystem` shows the outage in a condition, and with `Retain` it is
//! still deleted (the finalizer never waits for Kafka). Runs its own broker instance, never the shared one.

#[path = "support/operator.rs"]
mod operator;

use kube::api::{Api, PostParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{delete_and_wait, minimal_json, poke, to_os, wait_condition, wait_event};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_operator::controller::{postgres, validate};
use ordersystem_operator::crd::OrderSystem;

const PORT: u16 = 19292;
const CONTROLLER_PORT: u16 = 19293;

#[tokio::test]
async fn with_kafka_stopped_a_retained_resource_shows_the_outage_and_is_still_deleted() {
    let broker = OwnInstance::kafka("op-outage", PORT, CONTROLLER_PORT)
        .start_fresh()
        .await;
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "ctl-outage").await;
    let _operator = operator::start(&client, &ns.name, Default::default()).await;
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let mut os = minimal_json("shop", &ordersystem_e2e::names::unique("outage"));
    os["spec"]["kafka"]["bootstrapServers"] = format!("127.0.0.1:{PORT}").into();
    os["spec"]["deletionPolicy"] = "Retain".into();
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");
    let os = wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;

    broker.run("stop").await;
    poke(&api).await;
    wait_condition(&api, "TopicReady", "False", "KafkaUnavailable").await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns.name);
    let failed = wait_event(&events, "shop", "ReconcileFailed").await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));

    delete_and_wait(&api, 60, "resource deleted with Kafka down").await;

    // Retain kept the schemas: remove them.
    let spec = validate::validate(&os).expect("valid");
    let admin = postgres::read_admin(&client, &ns.name, "pg-admin")
        .await
        .expect("admin");
    postgres::drop_all(&admin, &spec)
        .await
        .expect("drop retained schemas");
}
