//! With its Kafka stopped, an `OrderSystem` shows the outage in a condition, and with `Retain` it is
//! still deleted (the finalizer never waits for Kafka). Runs its own broker instance, never the shared one.

mod support;

use kube::api::{Api, DeleteParams, PostParams};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_operator::controller::{postgres, validate};
use ordersystem_operator::crd::OrderSystem;
use support::operator::{poke, wait_condition, wait_event, wait_for};

const PORT: u16 = 19292;
const CONTROLLER_PORT: u16 = 19293;

#[tokio::test]
async fn with_kafka_stopped_a_retained_resource_shows_the_outage_and_is_still_deleted() {
    let broker = OwnInstance::kafka("op-outage", PORT, CONTROLLER_PORT)
        .start_fresh()
        .await;
    let client = ordersystem_e2e::kube::client().await;
    support::install_crd(&client).await;
    let ns = support::TestNamespace::create(&client, "ctl-outage").await;
    support::create_admin_secret(&client, &ns.name, "pg-admin").await;
    let _operator = support::operator::start(&client, &ns.name).await;
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let mut os = support::minimal_json("shop", &ordersystem_e2e::names::unique("outage"));
    os["spec"]["kafka"]["bootstrapServers"] = format!("127.0.0.1:{PORT}").into();
    os["spec"]["deletionPolicy"] = "Retain".into();
    api.create(&PostParams::default(), &support::to_os(os))
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

    api.delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(60, "resource deleted with Kafka down", || async {
        api.get_opt("shop").await.ok()?.is_none().then_some(())
    })
    .await;

    // Retain kept the schemas: remove them.
    let spec = validate::validate(&os).expect("valid");
    let admin = postgres::read_admin(&client, &ns.name, "pg-admin")
        .await
        .expect("admin");
    postgres::drop_all(&admin, &spec)
        .await
        .expect("drop retained schemas");
}
