//! An `OrderSystem` as the control-plane tests write and read it: the JSON of a valid one, its conditions
//! and Events waited on with a deadline (a timeout shows what it has instead), a poke that makes the
//! controller reconcile, and deletion through its finalizer.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use ordersystem_api::crd::OrderSystem;
use serde_json::json;

use crate::{names, wait};

/// How long a condition may take to appear.
const CONDITION_WITHIN: Duration = Duration::from_secs(90);

/// How long an Event may take to appear.
const EVENT_WITHIN: Duration = Duration::from_secs(60);

/// A valid `OrderSystem` as JSON, for tests that mutate it before sending.
pub fn minimal_json(name: &str, topic: &str) -> serde_json::Value {
    json!({
        "apiVersion": "ordersystem.io/v1alpha1",
        "kind": "OrderSystem",
        "metadata": {"name": name},
        "spec": {
            "kafka": {"bootstrapServers": "127.0.0.1:19092", "topic": {"name": topic, "partitions": 3}},
            "postgres": {"adminSecretRef": {"name": crate::control_plane::ADMIN_SECRET}}
        }
    })
}

/// `shop` on `topic` at `bootstrap` as most controller tests use it: replication factor 1 (one test
/// broker), invoicing at 2 replicas, and the given `deletionPolicy`.
pub fn shop_json(topic: &str, bootstrap: &str, deletion_policy: &str) -> serde_json::Value {
    let mut os = minimal_json("shop", topic);
    os["spec"]["kafka"]["bootstrapServers"] = bootstrap.into();
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
    os["spec"]["invoicing"] = json!({"replicas": 2});
    os["spec"]["deletionPolicy"] = deletion_policy.into();
    os
}

/// The typed `OrderSystem` of a JSON one.
pub fn to_os(value: serde_json::Value) -> OrderSystem {
    serde_json::from_value(value).expect("test OrderSystem deserializes")
}

/// `(status, reason)` of one condition.
pub fn condition(os: &OrderSystem, type_: &str) -> Option<(String, String)> {
    let c = os.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// The message of the `TopicReady` condition.
pub fn topic_message(os: &OrderSystem) -> String {
    os.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "TopicReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Failed reconciles over every error kind, in the operator's metrics (the Prometheus text format).
pub fn failed_reconciles(metrics: &str) -> f64 {
    crate::metrics::sum(metrics, "ordersystem_operator_reconcile_failures")
}

/// A Deployment's `metadata.generation`: it rises exactly when its spec was changed.
pub fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or_default()
}

/// Waits until the resource `shop` has the condition; on timeout shows every condition.
pub async fn wait_condition(api: &Api<OrderSystem>, type_: &str, status: &str, reason: &str) -> OrderSystem {
    let what = format!("{type_}={status} reason={reason}");
    wait::until_ok(&what, CONDITION_WITHIN, || async {
        let os = api.get("shop").await.map_err(|e| e.to_string())?;
        if condition(&os, type_) == Some((status.into(), reason.into())) {
            Ok(os)
        } else {
            Err(format!("conditions: {:#?}", os.status.map(|s| s.conditions)))
        }
    })
    .await
}

/// Waits for `TopicReady=False reason=KafkaTlsFailed` observed at `generation`: the verdict on that spec,
/// not an earlier one.
pub async fn tls_failed_at(api: &Api<OrderSystem>, generation: Option<i64>) -> OrderSystem {
    wait::until_some(
        "KafkaTlsFailed at the new generation",
        CONDITION_WITHIN,
        || async {
            let os = api.get("shop").await.ok()?;
            let topic = os
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "TopicReady")?;
            (topic.reason == "KafkaTlsFailed" && topic.observed_generation == generation)
                .then_some(os.clone())
        },
    )
    .await
}

/// Merges `spec` into `shop`'s spec and waits for the verdict [`tls_failed_at`] on it; its message.
pub async fn tls_failure_after(api: &Api<OrderSystem>, spec: serde_json::Value) -> String {
    let patched = patch_spec(api, spec).await;
    topic_message(&tls_failed_at(api, patched.metadata.generation).await)
}

/// Waits until the object `regarding` has an Event with `reason`; on timeout shows the Events it has.
pub async fn wait_event(events: &Api<Event>, regarding: &str, reason: &str) -> Event {
    let what = format!("a {reason} Event of {regarding}");
    wait::until_ok(&what, EVENT_WITHIN, || async {
        let own: Vec<Event> = events
            .list(&Default::default())
            .await
            .map(|list| list.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .collect();
        if let Some(event) = own.iter().find(|e| e.reason.as_deref() == Some(reason)) {
            return Ok(event.clone());
        }
        let seen: Vec<String> = own
            .iter()
            .map(|e| format!("{:?}/{:?}: {:?}", e.reason, e.action, e.note))
            .collect();
        Err(format!("it has: {seen:#?}"))
    })
    .await
}

/// Waits until some Event of the namespace matches `wanted`.
pub async fn wait_any_event(events: &Api<Event>, seconds: u64, what: &str, wanted: impl Fn(&Event) -> bool) {
    wait::until_some(what, Duration::from_secs(seconds), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.iter().any(&wanted).then_some(())
    })
    .await;
}

/// Changes an annotation, which triggers a reconcile (Kafka and Postgres send no watch events).
pub async fn poke(api: &Api<OrderSystem>) {
    let value = names::unique("poke");
    let patch = json!({"metadata": {"annotations": {"test.ordersystem.io/poke": value}}});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("poke");
}

/// Merges `spec` into `shop`'s spec; the patched resource.
pub async fn patch_spec(api: &Api<OrderSystem>, spec: serde_json::Value) -> OrderSystem {
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": spec })),
    )
    .await
    .expect("patch spec")
}

/// Deletes `shop` and waits up to `seconds` until its finalizer released it.
pub async fn delete_and_wait(api: &Api<OrderSystem>, seconds: u64, what: &str) {
    api.delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until_some(what, Duration::from_secs(seconds), || async {
        api.get_opt("shop").await.ok()?.is_none().then_some(())
    })
    .await;
}
