//! Day-two operations on the running shop on the test bed's real node: the operator installed with helm runs
//! as a pod of its image, the services as pods of theirs. Orders flow while the lag is watched, invoicing's
//! credentials are rotated and a partition increase is drained.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_e2e::cluster::{LogFollower, READY_WITHIN, pod_log, pods, ready_pods, run};
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::shop::{Service, all_stored_once};
use ordersystem_e2e::{env, wait};
use serde_json::json;

/// Places orders one by one, each retried while the service is busy ([`Service::place_order_retrying`]).
async fn place_orders(order: &Service, range: std::ops::Range<u32>) -> BTreeSet<i64> {
    let mut placed = BTreeSet::new();
    for n in range {
        placed.insert(order.place_order_retrying(n).await);
    }
    placed
}

fn uids(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect()
}

async fn secret_text(secrets: &Api<Secret>, name: &str, key: &str) -> String {
    let secret = secrets.get(name).await.expect("secret");
    let bytes = secret.data.and_then(|d| d.get(key).cloned()).expect("key");
    String::from_utf8(bytes.0).expect("utf-8")
}

async fn can_log_in(user: &str, password: &str) -> bool {
    use sqlx::Connection;
    let options: sqlx::postgres::PgConnectOptions = env::database_url().parse().expect("DATABASE_URL");
    sqlx::PgConnection::connect_with(&options.username(user).password(password))
        .await
        .is_ok()
}

fn condition(os: &OrderSystem, type_: &str) -> Option<(String, String, String)> {
    let c = os.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn kubectl_get(ns: &str) -> String {
    // Fully qualified: the chart-upgrade test serves the same plural in a group of its own.
    run("kubectl", &["get", "ordersystems.ordersystem.io", "-n", ns])
}

#[tokio::test]
async fn lag_rotation_and_a_drained_partition_increase_on_the_running_shop() {
    let shop = NodeShop::namespaces("ops").await;
    let (client, mode, shop_ns) = (shop.client.clone(), &shop.mode, shop.shop_ns.clone());
    let system = "shop";
    shop.install_operator(&[]);
    shop.create_system(
        system,
        2,
        json!({
            "kafka": {"topic": {"partitionIncrease": "Drain"}},
            "consumerLag": {"intervalSeconds": 5}
        }),
    )
    .await;
    let systems = shop.systems();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &shop_ns);
    shop.ready(system).await;

    // 1. Orders flow; once invoicing and shipping committed them, the lag is 0.
    let order = mode.service(&ready_pods(&client, &shop_ns, system, "order", 1).await[0]);
    let invoicing_pod = ready_pods(&client, &shop_ns, system, "invoicing", 1)
        .await
        .remove(0);
    let invoicing = mode.service(&invoicing_pod);
    let shipping = mode.service(&ready_pods(&client, &shop_ns, system, "shipping", 1).await[0]);
    let mut placed = place_orders(&order, 0..40).await;
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;
    wait::until_ok("lag 0 in status", Duration::from_secs(90), || async {
        let os = systems.get(system).await.map_err(|e| e.to_string())?;
        let lag = os.status.and_then(|s| s.consumer_lag).ok_or("no lag yet")?;
        (lag.total == 0).then_some(()).ok_or(format!("lag {lag:?}"))
    })
    .await;
    eprintln!("$ kubectl get ordersystems\n{}", kubectl_get(&shop_ns));

    // 2. Rotate invoicing's credentials while orders keep coming: only invoicing rolls, the old login is
    //    disabled after the rollout, and every order is still invoiced exactly once.
    let old_user = secret_text(&secrets, "shop-invoicing-db", "username").await;
    let old_password = secret_text(&secrets, "shop-invoicing-db", "password").await;
    let before = |service: &'static str| {
        let (client, ns) = (client.clone(), shop_ns.clone());
        async move { uids(&pods(&client, &ns, system, service).await) }
    };
    let (order_uids, shipping_uids) = (before("order").await, before("shipping").await);
    let invoicing_uids = before("invoicing").await;
    // The old pod's log, kept as it is written: the pod and its log are gone once the rotation rolled it.
    let old_invoicing_log =
        LogFollower::start(&shop_ns, invoicing_pod.metadata.name.as_deref().expect("name"));
    let annotate = json!({"metadata": {"annotations": {"ordersystem.io/rotate-credentials": "invoicing"}}});
    systems
        .patch(system, &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("annotate");
    placed.extend(place_orders(&order, 40..80).await);
    wait::until_ok("rotation acknowledged", READY_WITHIN, || async {
        let os = systems.get(system).await.map_err(|e| e.to_string())?;
        let pending = os.annotations().contains_key("ordersystem.io/rotate-credentials");
        (!pending)
            .then_some(())
            .ok_or(format!("{:?}", condition(&os, "Progressing")))
    })
    .await;
    let new_user = secret_text(&secrets, "shop-invoicing-db", "username").await;
    let new_password = secret_text(&secrets, "shop-invoicing-db", "password").await;
    assert_eq!(new_user, format!("{old_user}_b"));
    assert!(
        !can_log_in(&old_user, &old_password).await,
        "the old login is disabled"
    );
    assert!(can_log_in(&new_user, &new_password).await, "the new login works");
    let rolled = ready_pods(&client, &shop_ns, system, "invoicing", 1).await;
    assert!(uids(&rolled).is_disjoint(&invoicing_uids), "invoicing rolled");
    assert_eq!(before("order").await, order_uids, "order not rolled");
    assert_eq!(before("shipping").await, shipping_uids, "shipping not rolled");
    let invoicing = mode.service(&rolled[0]);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    let logs =
        old_invoicing_log.text() + &pod_log(&shop_ns, rolled[0].metadata.name.as_deref().expect("name"));
    assert!(!logs.is_empty(), "the invoicing pods' logs were read");
    let refused = logs
        .lines()
        .filter(|line| line.contains("password authentication failed"))
        .count();
    assert_eq!(
        refused, 0,
        "no invoicing pod, old or new, was refused a connection"
    );
    all_stored_once(&shipping, "/api/shipments", &placed).await;

    // 3. Partitions 2 -> 4 with Drain: order stops, the consumers read everything, then the partitions
    //    are added and order comes back.
    systems
        .patch(
            system,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"kafka": {"topic": {"partitions": 4}}}})),
        )
        .await
        .expect("raise partitions");
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        let os = systems.get(system).await.expect("get");
        if let Some((_, reason, message)) = condition(&os, "Progressing")
            && seen.last() != Some(&message)
        {
            eprintln!("Progressing {reason}: {message}");
            seen.push(message);
        }
        if os
            .status
            .as_ref()
            .and_then(|s| s.topic.as_ref())
            .map(|t| t.partitions)
            == Some(4)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions never added: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        seen.iter().any(|m| m.contains("intake stopped")),
        "the drain was visible in Progressing: {seen:?}"
    );
    let order = mode.service(&ready_pods(&client, &shop_ns, system, "order", 1).await[0]);
    placed.extend(place_orders(&order, 80..100).await);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;
    eprintln!("$ kubectl get ordersystems\n{}", kubectl_get(&shop_ns));

    // Delete: topic, schemas and both logins go (deletionPolicy Delete).
    shop.delete(system).await;
    assert!(
        !can_log_in(&new_user, &new_password).await,
        "the rotated login is dropped"
    );
    shop.uninstall().await;
}
