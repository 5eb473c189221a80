//! Autoscaling on consumer lag against the real API server, Kafka and PostgreSQL, with the controller
//! in-process as the chart's ServiceAccount. No nodes run pods here: the test plays the invoicing
//! consumers itself (with the KIP-848 `consumer` protocol; the lag read is the same for the classic groups
//! of the services' pods) and watches the Deployment's `spec.replicas`, which is what the operator
//! decides. The real-pod version under a real order load is the e2e suite's.

#[path = "support/operator.rs"]
mod operator;
#[path = "support/replicas.rs"]
mod replicas;
#[path = "support/setup.rs"]
mod setup;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use ordersystem_e2e::order_system::{minimal_json, poke, wait_event};
use ordersystem_e2e::wait;
use ordersystem_operator::crd::{AutoscalingStatus, OrderSystem};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use replicas::ReplicaLog;
use serde_json::json;
use setup::{Setup, setup};

/// The scale-down cooldown of the test: long against the 5 s lag interval, so a scale-down that ignores
/// it shows.
const COOLDOWN_SECONDS: i64 = 20;

impl Setup {
    /// `shop` on 2 partitions; invoicing scales on lag between 1 and 3 pods at 4 events per pod; lag is
    /// looked at every 5 s.
    fn spec(&self) -> serde_json::Value {
        let mut os = minimal_json("shop", &self.topic);
        os["spec"]["kafka"]["bootstrapServers"] = self.bootstrap.clone().into();
        os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
        os["spec"]["kafka"]["topic"]["partitions"] = 2.into();
        os["spec"]["deletionPolicy"] = "Delete".into();
        os["spec"]["consumerLag"] = json!({"threshold": 1000, "intervalSeconds": 5});
        os["spec"]["invoicing"] = json!({"autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetLagPerReplica": 4,
            "scaleDownCooldownSeconds": COOLDOWN_SECONDS,
        }});
        os
    }

    /// Produces `n` records with distinct keys, starting at `from`.
    async fn produce(&self, from: usize, n: usize) {
        for i in from..from + n {
            ordersystem_e2e::kafka::produce(&self.bootstrap, &self.topic, &format!("order-{i}"), b"{}").await;
        }
    }

    /// Waits until the status reports invoicing's autoscaling as `wanted` says, poking the resource.
    async fn wait_scaling(
        &self,
        what: &str,
        wanted: impl Fn(&AutoscalingStatus) -> bool,
    ) -> AutoscalingStatus {
        wait::until_some(what, Duration::from_secs(120), || async {
            poke(&self.api).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let os: OrderSystem = self.api.get("shop").await.ok()?;
            let scaling = os.status?.services?.invoicing.autoscaling?;
            wanted(&scaling).then_some(scaling)
        })
        .await
    }

    async fn invoicing_replicas(&self) -> Option<i32> {
        self.deployment("shop-invoicing").await?.spec?.replicas
    }
}

/// Reads `n` records as a member of invoicing's group and commits their offsets.
async fn consume_and_commit(s: &Setup, n: usize) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &s.bootstrap)
        .set("group.id", format!("{}.shop.invoicing", s.ns.name))
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&s.topic]).expect("subscribe");
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a record within 60s")
            .expect("record");
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
}

#[tokio::test]
async fn invoicing_follows_its_lag_up_to_the_partitions_and_back_down_after_the_cooldown() {
    let s = setup("autoscale").await;
    s.create(s.spec()).await;
    wait::until_some("invoicing deployed at 1", Duration::from_secs(90), || async {
        (s.invoicing_replicas().await? == 1).then_some(())
    })
    .await;
    let log = ReplicaLog::start(&s.client, &s.ns.name, "shop-invoicing").await;
    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.ns.name);

    // 6 events unread: 2 pods at 4 per pod.
    s.produce(0, 6).await;
    let up = s
        .wait_scaling("scaled up to 2", |a| {
            a.desired_replicas == 2 && a.current_replicas == 2
        })
        .await;
    eprintln!("after 6 events: {up:?}");
    let event = wait_event(&events, "shop", "ScaledUp").await;
    let note = event.note.unwrap_or_default();
    eprintln!("ScaledUp Event: {note}");
    assert!(
        note.starts_with("Scaled invoicing up from 1 to 2 replicas"),
        "{note}"
    );

    // 16 unread would need 4, maxReplicas is 3, the topic has 2 partitions: it stays at 2.
    s.produce(6, 10).await;
    let capped = s
        .wait_scaling("capped by the partitions", |a| a.reason == "CappedByPartitions")
        .await;
    eprintln!("after 16 events: {capped:?}");
    assert_eq!(capped.desired_replicas, 2);
    assert_eq!(s.invoicing_replicas().await, Some(2));

    // Partitions grow to 4: the cap with them, up to maxReplicas.
    s.patch_spec(json!({"kafka": {"topic": {"partitions": 4}}})).await;
    let grown = s
        .wait_scaling("scaled up to maxReplicas once partitions grew", |a| {
            a.current_replicas == 3 && a.desired_replicas == 3
        })
        .await;
    eprintln!("after 4 partitions: {grown:?}");

    // Everything read: lag 0 asks for 1, which waits for the cooldown since the last scaling and the
    // last look that needed all 3.
    consume_and_commit(&s, 16).await;
    let held = s
        .wait_scaling("the scale-down held by the cooldown", |a| {
            a.reason == "CooldownHoldsScaleDown"
        })
        .await;
    eprintln!("lag 0: {held:?}");
    let cooldown_from = held
        .last_scale_time
        .clone()
        .max(held.last_busy_time.clone())
        .expect("a scaling time")
        .0;
    let down = s
        .wait_scaling("scaled down to 1 after the cooldown", |a| {
            a.current_replicas == 1 && a.desired_replicas == 1
        })
        .await;
    eprintln!("after the cooldown: {down:?}");
    let scaled_down_at = down.last_scale_time.expect("a scaling time").0;
    let waited = scaled_down_at.duration_since(cooldown_from);
    assert!(
        waited.as_secs() >= COOLDOWN_SECONDS,
        "scaled down {waited:?} after the cooldown started, before the cooldown of {COOLDOWN_SECONDS} s"
    );
    let note = wait_event(&events, "shop", "ScaledDown")
        .await
        .note
        .unwrap_or_default();
    eprintln!("ScaledDown Event: {note}");
    assert!(
        note.starts_with("Scaled invoicing down from 3 to 1 replica"),
        "{note}"
    );

    let values = log.values();
    eprintln!("invoicing spec.replicas throughout: {values:?}");
    let first_at = |n| values.iter().position(|v| *v == Some(n));
    let (two, three) = (first_at(2), first_at(3));
    assert!(
        two.is_some() && three.is_some() && two < three,
        "up to 2, then 3: {values:?}"
    );
    // Never above the partitions: 2 until the topic had 4.
    assert!(
        values[..three.unwrap_or(0)]
            .iter()
            .all(|v| v.is_some_and(|n| n <= 2)),
        "{values:?}"
    );
    assert!(
        values.iter().all(|v| v.is_some_and(|n| (1..=3).contains(&n))),
        "{values:?}"
    );
    assert_eq!(values.last(), Some(&Some(1)));
    s.delete_shop_and_wait(90, "shop gone").await;
}
