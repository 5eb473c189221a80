//! The end-to-end scenario, one script for both modes (`ordersystem_e2e::mode`): the operator runs as a pod
//! from its image under its own ServiceAccount and the chart's RBAC and turns an `OrderSystem` into a topic,
//! schemas and the three services. Orders flow through the real services; scaling, partitions, an image
//! change, a crash and deletion follow the spec. It runs here on the test bed's real node (the images of
//! `e2e/images/build-images.sh`, Kafka and PostgreSQL reached on the node's bridge by the names its CoreDNS
//! serves), and on a kind cluster through `e2e/kind.sh test`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_api::names::{Service as ShopService, child_name};
use ordersystem_contract::wiring::HTTP_PORT;
use ordersystem_e2e::cluster::{
    OnFailure, READY_WITHIN, create_namespace, delete_namespace_and_wait, is_ready, pods, ready_pods,
};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::shop::{Service, SteadyLoad, all_stored_once, order_body, place_orders};
use ordersystem_e2e::{env, names, wait};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

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

/// Waits up to `within` until `members` have `partitions` assigned between them.
async fn all_assigned(what: &str, members: &[Service], partitions: i64, within: Duration) {
    wait::until_ok(what, within, || async {
        let sum = assigned_partitions(members).await?;
        if sum == partitions {
            Ok(())
        } else {
            Err(format!("{sum} assigned"))
        }
    })
    .await;
}

/// Partitions of the topic as the broker reports them (the host reaches the test bed's broker directly).
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

/// Waits until `service` runs as one Ready pod of `image` that is none of `old` (the old pods are gone).
async fn rolled(
    client: &kube::Client,
    ns: &str,
    system: &str,
    service: &str,
    old: &BTreeSet<String>,
    image: &str,
) {
    wait::until_ok(&format!("{service} rolled to {image}"), READY_WITHIN, || async {
        let now = pods(client, ns, system, service).await;
        let done = now.len() == 1
            && is_ready(&now[0])
            && !old.contains(now[0].metadata.uid.as_deref().unwrap_or_default())
            && now[0]
                .spec
                .as_ref()
                .is_some_and(|s| s.containers[0].image.as_deref() == Some(image));
        done.then_some(()).ok_or(format!("{} {service} pods", now.len()))
    })
    .await;
}

#[tokio::test]
async fn shop_comes_up_takes_orders_scales_rolls_survives_a_crash_and_is_deleted() {
    let client = ordersystem_e2e::kube::client().await;
    let mode = Mode::from_env(&client).await;
    let operator_ns = names::unique("ordersystem-system");
    let shop_ns = names::unique("shop");
    let system = "shop";
    let topic = names::unique("orders");
    create_namespace(&client, &shop_ns, mode.namespace_annotations()).await;

    // 1. The operator, as users install it: a pod of its image with the chart's ServiceAccount and
    //    least-privilege RBAC (in kind mode, kind.sh installed it).
    if let Mode::Real(_) = mode {
        create_namespace(&client, &operator_ns, mode.namespace_annotations()).await;
    }
    let operator_ns = mode.install_operator(&operator_ns, &shop_ns);
    let _on_failure = OnFailure {
        shop_ns: shop_ns.clone(),
        operator_ns: operator_ns.clone(),
    };
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), &operator_ns);
    wait::until_ok("the operator pod Ready", READY_WITHIN, || async {
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
    wait::until_ok("OrderSystem Ready=True", READY_WITHIN, || async {
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
    // A pod on the node finds the order service by its cluster DNS name and places an order through the
    // Service (kube-proxy's rules, CoreDNS): the way the shop's own users inside the cluster reach it.
    if let Mode::Real(node) = &mode {
        let host = format!(
            "{}.{shop_ns}.svc.cluster.local",
            child_name(system, ShopService::Order)
        );
        let url = format!("http://{host}:{HTTP_PORT}/api/orders");
        let body = order_body(1000).to_string();
        let script = format!(
            "nslookup {host} && wget -q -O - --header 'Content-Type: application/json' --post-data '{body}' {url}"
        );
        let output = node
            .run_to_completion(&client, &shop_ns, "probe", &["sh", "-c", &script])
            .await;
        let created = output.lines().last().unwrap_or_default();
        let id = serde_json::from_str::<serde_json::Value>(created)
            .ok()
            .and_then(|v| v["id"].as_i64())
            .unwrap_or_else(|| panic!("no order id in the probe's output: {output}"));
        eprintln!("the probe pod placed order {id} through {url}");
        placed.insert(id);
    }
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
    all_assigned(
        "5 partitions shared by 3 invoicing members",
        &members,
        5,
        Duration::from_secs(90),
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
    wait::until_ok("the topic has 8 partitions", Duration::from_secs(60), || async {
        let status = systems.get(system).await.map_err(|e| e.to_string())?.status;
        let n = status.and_then(|s| s.topic).map_or(0, |t| t.partitions);
        if n == 8 {
            Ok(())
        } else {
            Err(format!("status says {n} partitions"))
        }
    })
    .await;
    if let Mode::Real(_) = mode {
        assert_eq!(topic_partitions(&topic).await, 8, "the broker has 8 partitions");
    }
    all_assigned(
        "8 partitions assigned to invoicing",
        &members,
        8,
        Duration::from_secs(120),
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
    let rolled_image = mode.rolled_image("shipping");
    systems
        .patch(
            system,
            &patch,
            &Patch::Merge(json!({"spec": {"shipping": {"image": &rolled_image}}})),
        )
        .await
        .expect("new shipping image");
    rolled(
        &client,
        &shop_ns,
        system,
        "shipping",
        &shipping_uids,
        &rolled_image,
    )
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

    // 7. A roll of order loses no request: orders go to the order Service at a steady rate, each on a new
    //    connection, while a new order image rolls out; every one of them is answered 201.
    let front = mode
        .service_of(&client, &shop_ns, &child_name(system, ShopService::Order))
        .await
        .without_keep_alive();
    let order_uids = before("order").await;
    let load = SteadyLoad::start(front, 2000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let order_image = mode.rolled_image("order");
    systems
        .patch(
            system,
            &patch,
            &Patch::Merge(json!({"spec": {"order": {"image": &order_image}}})),
        )
        .await
        .expect("new order image");
    rolled(&client, &shop_ns, system, "order", &order_uids, &order_image).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    placed.extend(load.stop("the roll of order", 40).await);
    let order = mode.service(&ready_pods(&client, &shop_ns, system, "order", 1).await[0]);

    // 8. kill -9 a consumer process: it is restarted and nothing is lost.
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
    wait::until_ok(
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

    // 9. Delete: workloads go, topic and schemas stay (deletionPolicy Retain by default).
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
    wait::until_ok(
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
    if let Mode::Real(_) = mode {
        assert_eq!(topic_partitions(&topic).await, 8, "the topic is retained");
    }
    assert_eq!(
        mode.existing_schemas(&schemas).await,
        3,
        "the schemas are retained"
    );

    mode.uninstall_operator(&operator_ns);
    delete_namespace_and_wait(&client, &shop_ns).await;
    if let Mode::Real(_) = mode {
        delete_namespace_and_wait(&client, &operator_ns).await;
    }
}
