//! The end-to-end scenario, one script for both modes (`ordersystem_e2e::mode`): the operator runs as a pod
//! under its own ServiceAccount and the chart's RBAC and turns an `OrderSystem` into a topic, schemas and
//! the three services. Orders flow through the real services; scaling, partitions, an image change, a
//! crash and deletion follow the spec. Local mode runs here (the node agent runs the pods as processes of
//! the locally built binaries); kind mode runs it on a kind cluster: `e2e/kind.sh test`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ordersystem_e2e::cluster::{READY_WITHIN, create_namespace, helm, is_ready, pods, ready_pods};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::shop::{Service, all_stored_once, place_orders};
use ordersystem_e2e::{env, names, wait};
use ordersystem_operator::crd::OrderSystem;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

/// Prints the agent's and the pods' logs when the scenario fails.
struct LogsOnFailure<'a>(&'a Mode);
impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.logs());
        }
    }
}

/// Sum of the `assigned_partitions` gauges of some consumer pods.
async fn assigned_partitions(members: &[Service]) -> Result<i64, String> {
    let mut sum = 0;
    for member in members {
        let metrics = member.metrics().await?;
        let value = metrics
            .lines()
            .find(|line| !line.starts_with('#') && line.contains("assigned_partitions"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("no assigned_partitions gauge")?;
        sum += value as i64;
    }
    Ok(sum)
}

/// Partitions of the topic as the broker reports them (local mode reaches the broker directly).
async fn topic_partitions(topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0].partitions().len()
}

#[tokio::test]
async fn shop_comes_up_takes_orders_scales_rolls_survives_a_crash_and_is_deleted() {
    let client = ordersystem_e2e::kube::client().await;
    let mode = Mode::from_env(&client).await;
    let _logs = LogsOnFailure(&mode);
    let operator_ns = names::unique("ordersystem-system");
    let shop_ns = names::unique("shop");
    let system = "shop";
    let topic = names::unique("orders");
    create_namespace(&client, &shop_ns, mode.namespace_annotations()).await;

    // 1. The operator, as users install it: a pod with the chart's ServiceAccount and least-privilege RBAC
    //    (in kind mode, kind.sh installed it).
    let operator_ns = if mode.installs_operator() {
        create_namespace(&client, &operator_ns, mode.namespace_annotations()).await;
        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ordersystem-operator");
        let watch = format!("watchNamespace={shop_ns}");
        helm(&[
            "install",
            &operator_ns,
            chart,
            "--namespace",
            &operator_ns,
            "--set",
            &watch,
        ]);
        operator_ns
    } else {
        env::require("E2E_OPERATOR_NAMESPACE")
    };
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), &operator_ns);
    wait::until("the operator pod Ready", READY_WITHIN, || async {
        let list = operator_pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .any(is_ready)
            .then_some(())
            .ok_or(format!("{} pods, none Ready", list.items.len()))
    })
    .await;

    // 2. The shop.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &shop_ns);
    secrets
        .create(
            &PostParams::default(),
            &mode.admin_secret(&client, "pg-admin").await,
        )
        .await
        .expect("admin secret");
    let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &shop_ns);
    let resource: OrderSystem = serde_json::from_value(json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": system},
        "spec": {
            "kafka": {"bootstrapServers": mode.kafka_bootstrap(),
                      "topic": {"name": topic, "partitions": 5, "replicationFactor": 1}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}, "sslMode": "disable"},
            "order": {"replicas": 1}, "invoicing": {"replicas": 1}, "shipping": {"replicas": 1}
        }
    }))
    .expect("OrderSystem");
    systems
        .create(&PostParams::default(), &resource)
        .await
        .expect("create OrderSystem");
    wait::until("OrderSystem Ready=True", READY_WITHIN, || async {
        let current = systems.get(system).await.map_err(|e| e.to_string())?;
        let conditions = current.status.map(|s| s.conditions).unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        match ready {
            Some(c) if c.status == "True" => Ok(()),
            _ => Err(format!("{conditions:?}")),
        }
    })
    .await;

    // 3. Orders through the API and the form: each invoiced and shipped exactly once.
    let order = mode.service(&ready_pods(&client, &shop_ns, system, "order", 1).await[0]);
    let mut placed = place_orders(&order, 0..200).await;
    for _ in 0..3 {
        placed.insert(order.place_order_by_form().await.expect("form order accepted"));
    }
    let invoicing = mode.service(&ready_pods(&client, &shop_ns, system, "invoicing", 1).await[0]);
    let shipping = mode.service(&ready_pods(&client, &shop_ns, system, "shipping", 1).await[0]);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;

    // 4. Scale invoicing 1 -> 3 through the spec: three consumer processes share the five partitions.
    let patch = PatchParams::default();
    systems
        .patch(
            system,
            &patch,
            &Patch::Merge(json!({"spec": {"invoicing": {"replicas": 3}}})),
        )
        .await
        .expect("scale invoicing");
    let members: Vec<Service> = ready_pods(&client, &shop_ns, system, "invoicing", 3)
        .await
        .iter()
        .map(|p| mode.service(p))
        .collect();
    wait::until(
        "5 partitions shared by 3 invoicing members",
        Duration::from_secs(90),
        || async {
            let sum = assigned_partitions(&members).await?;
            if sum == 5 {
                Ok(())
            } else {
                Err(format!("{sum} assigned"))
            }
        },
    )
    .await;
    placed.extend(place_orders(&order, 200..250).await);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;

    // 5. Partitions 5 -> 8: the topic grows and the consumers pick the new partitions up.
    systems
        .patch(
            system,
            &patch,
            &Patch::Merge(json!({"spec": {"kafka": {"topic": {"partitions": 8}}}})),
        )
        .await
        .expect("raise partitions");
    wait::until("the topic has 8 partitions", Duration::from_secs(60), || async {
        let status = systems.get(system).await.map_err(|e| e.to_string())?.status;
        let n = status.and_then(|s| s.topic).map_or(0, |t| t.partitions);
        if n == 8 {
            Ok(())
        } else {
            Err(format!("status says {n} partitions"))
        }
    })
    .await;
    if matches!(mode, Mode::Local(_)) {
        assert_eq!(topic_partitions(&topic).await, 8, "the broker has 8 partitions");
    }
    wait::until(
        "8 partitions assigned to invoicing",
        Duration::from_secs(120),
        || async {
            let sum = assigned_partitions(&members).await?;
            if sum == 8 {
                Ok(())
            } else {
                Err(format!("{sum} assigned"))
            }
        },
    )
    .await;

    // 6. A new shipping image rolls shipping only.
    let before = |service: &'static str| {
        let client = client.clone();
        let ns = shop_ns.clone();
        async move {
            pods(&client, &ns, system, service)
                .await
                .into_iter()
                .filter_map(|p| p.metadata.uid)
                .collect::<BTreeSet<_>>()
        }
    };
    let (order_uids, invoicing_uids) = (before("order").await, before("invoicing").await);
    let shipping_uids = before("shipping").await;
    systems
        .patch(
            system,
            &patch,
            &Patch::Merge(
                json!({"spec": {"shipping": {"image": "ghcr.io/ordersystem/shipping:e2e-rolled"}}}),
            ),
        )
        .await
        .expect("new shipping image");
    wait::until("shipping rolled to the new image", READY_WITHIN, || async {
        let now = pods(&client, &shop_ns, system, "shipping").await;
        let rolled = now.len() == 1
            && is_ready(&now[0])
            && !shipping_uids.contains(now[0].metadata.uid.as_deref().unwrap_or_default())
            && now[0].spec.as_ref().is_some_and(|s| {
                s.containers[0].image.as_deref() == Some("ghcr.io/ordersystem/shipping:e2e-rolled")
            });
        rolled.then_some(()).ok_or(format!("{} shipping pods", now.len()))
    })
    .await;
    assert_eq!(
        before("order").await,
        order_uids,
        "order must not roll for a shipping image change"
    );
    assert_eq!(
        before("invoicing").await,
        invoicing_uids,
        "invoicing must not roll for a shipping image change"
    );

    // 7. kill -9 a consumer process: it is restarted and nothing is lost.
    let victim = ready_pods(&client, &shop_ns, system, "invoicing", 3)
        .await
        .remove(0);
    let victim_name = victim.metadata.name.clone().expect("name");
    let status = victim
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .expect("container status");
    let restarts = status[0].restart_count;
    mode.crash(&victim);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &shop_ns);
    wait::until(
        "the killed consumer restarted and Ready",
        READY_WITHIN,
        || async {
            let pod = pod_api.get(&victim_name).await.map_err(|e| e.to_string())?;
            let count = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c[0].restart_count);
            (count > restarts && is_ready(&pod))
                .then_some(())
                .ok_or(format!("restartCount {count}"))
        },
    )
    .await;
    placed.extend(place_orders(&order, 250..300).await);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    let shipping = mode.service(&ready_pods(&client, &shop_ns, system, "shipping", 1).await[0]);
    all_stored_once(&shipping, "/api/shipments", &placed).await;

    // 8. Delete: workloads go, topic and schemas stay (deletionPolicy Retain by default).
    let schemas: Vec<String> = systems
        .get(system)
        .await
        .expect("OrderSystem")
        .status
        .map(|s| s.schemas.into_iter().map(|schema| schema.schema).collect())
        .unwrap_or_default();
    assert_eq!(schemas.len(), 3, "status lists the three schemas");
    systems
        .delete(system, &DeleteParams::default())
        .await
        .expect("delete OrderSystem");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &shop_ns);
    wait::until(
        "the OrderSystem and its Deployments gone",
        READY_WITHIN,
        || async {
            let left = deployments
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let resource = systems.get_opt(system).await.map_err(|e| e.to_string())?;
            (left == 0 && resource.is_none())
                .then_some(())
                .ok_or(format!("{left} deployments left"))
        },
    )
    .await;
    if matches!(mode, Mode::Local(_)) {
        assert_eq!(topic_partitions(&topic).await, 8, "the topic is retained");
    }
    assert_eq!(
        mode.existing_schemas(&schemas).await,
        3,
        "the schemas are retained"
    );

    let mut ours = vec![shop_ns.clone()];
    if mode.installs_operator() {
        helm(&["uninstall", &operator_ns, "--namespace", &operator_ns]);
        ours.push(operator_ns.clone());
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in &ours {
        namespaces
            .delete(ns, &DeleteParams::default())
            .await
            .expect("delete namespace");
    }
    // The agent finalizes the pods' deletion, so it stops only after they are gone.
    wait::until("the test namespaces gone", READY_WITHIN, || async {
        let mut left = Vec::new();
        for ns in &ours {
            if namespaces.get_opt(ns).await.map_err(|e| e.to_string())?.is_some() {
                left.push(ns.clone());
            }
        }
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
}
