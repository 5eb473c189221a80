//! Autoscaling on consumer lag on the test bed's real node, under a real order load: the operator runs as a
//! pod of its image (installed with helm), the services as pods of theirs. Invoicing's pods are held to
//! 50 millicores so that one of them cannot keep up with the orders a few clients place; the operator
//! sees the lag grow, scales invoicing out (never past the topic's partitions), the backlog drains, and
//! after the cooldown it scales back in. Every order is invoiced and shipped exactly once throughout.
//!
//! The figures it prints (the lag and the replicas second by second, the time from the load step to the
//! new pods Ready) are the ones in BENCHMARKS.md; nothing here asserts a duration.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use ordersystem_e2e::cluster::READY_WITHIN;
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::shop::{Service, all_stored_once};
use ordersystem_e2e::wait;
use serde_json::json;

const PARTITIONS: i32 = 3;
/// Long enough that the new pods, slow to start at 50 millicores, are Ready before a scale-in.
const COOLDOWN_SECONDS: i64 = 60;
/// The load step: `CLIENTS` clients place orders one after another for `LOAD_FOR`.
const CLIENTS: u32 = 10;
const LOAD_FOR: Duration = Duration::from_secs(30);

/// One second of the run: since the load started, invoicing's lag in status, its Deployment's replicas
/// (desired, ready).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    lag: i64,
    desired: i32,
    ready: i32,
}

/// Every `spec.replicas` the watch of Deployment `name` delivers, in order, until the task is aborted.
fn watch_replicas(
    deployments: &Api<Deployment>,
    name: &str,
) -> (Arc<Mutex<Vec<i32>>>, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(deployments.clone(), config);
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(stream);
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event {
                let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(0);
                into.lock().expect("lock").push(replicas);
            }
        }
    });
    (seen, task)
}

/// Places orders `client`, `client + CLIENTS`, … one by one through `order` until `until`, retrying a
/// 503 as a client should.
async fn place(order: Service, client: u32, until: Instant) -> BTreeSet<i64> {
    let mut placed = BTreeSet::new();
    let mut n = client;
    while Instant::now() < until {
        n += CLIENTS;
        placed.insert(order.place_order_retrying(n).await);
    }
    placed
}

#[tokio::test]
async fn invoicing_scales_out_under_load_within_the_partitions_and_back_in_after_the_cooldown_exactly_once() {
    let shop = NodeShop::namespaces("as").await;
    let (client, mode) = (&shop.client, &shop.mode);
    let shop_ns = shop.shop_ns.clone();
    let system = "shop";
    shop.install_operator(&[]);
    shop.create_system(
        system,
        PARTITIONS,
        json!({
            "consumerLag": {"intervalSeconds": 5, "threshold": 100000},
            "shipping": {"replicas": 2},
            "invoicing": {
                // maxReplicas above the partitions: the partitions are the bound that shows.
                "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "targetLagPerReplica": 20,
                                "scaleDownCooldownSeconds": COOLDOWN_SECONDS},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "50m", "memory": "128Mi"}}
            }
        }),
    )
    .await;
    let systems = shop.systems();
    shop.ready(system).await;
    let order = mode.service_of(client, &shop_ns, "shop-order").await;
    let invoicing = mode.service_of(client, &shop_ns, "shop-invoicing").await;
    let shipping = mode.service_of(client, &shop_ns, "shop-shipping").await;

    // The sampler: once a second, the lag the operator reported and the Deployment's replicas.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &shop_ns);
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let start = Instant::now();
    let sampler = {
        let (systems, deployments, samples) = (systems.clone(), deployments.clone(), samples.clone());
        tokio::spawn(async move {
            loop {
                let lag = systems
                    .get(system)
                    .await
                    .ok()
                    .and_then(|os| os.status?.consumer_lag)
                    .map_or(-1, |lag| lag.invoicing.lag);
                if let Ok(d) = deployments.get("shop-invoicing").await {
                    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1);
                    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                    let at = start.elapsed();
                    samples.lock().expect("lock").push(Sample {
                        at,
                        lag,
                        desired,
                        ready,
                    });
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // Every spec.replicas the Deployment's watch delivers: the bound holds at every change, not only at
    // the sampler's seconds.
    let (invoicing_replicas, watch) = watch_replicas(&deployments, "shop-invoicing");

    // The load step: CLIENTS clients place orders as fast as the order service takes them.
    let until = start + LOAD_FOR;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(place(order.clone(), c, until)))
        .collect();
    let mut placed = BTreeSet::new();
    for client in clients {
        placed.extend(client.await.expect("a client finished"));
    }
    let load_seconds = start.elapsed();
    eprintln!("{} orders placed in {load_seconds:?}", placed.len());
    wait::until_some(
        "invoicing scaled out to the partitions, all Ready",
        READY_WITHIN,
        || async {
            let d = deployments.get("shop-invoicing").await.ok()?;
            let ready = d.status.as_ref()?.ready_replicas?;
            (ready == PARTITIONS).then_some(())
        },
    )
    .await;
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;
    let drained = start.elapsed();

    // Back in after the cooldown.
    let scaled_in = wait::until_some("invoicing back at 1", READY_WITHIN, || async {
        let d = deployments.get("shop-invoicing").await.ok()?;
        (d.spec.as_ref()?.replicas? == 1).then(|| start.elapsed())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampler.abort();
    watch.abort();
    let os = systems.get(system).await.expect("shop");
    let scaling = os
        .status
        .and_then(|s| s.services)
        .and_then(|s| s.invoicing.autoscaling)
        .expect("invoicing's autoscaling status");
    eprintln!("status.services.invoicing.autoscaling: {scaling:?}");

    let samples = samples.lock().expect("lock").clone();
    eprintln!("second  lag  replicas(desired/ready)");
    for s in &samples {
        eprintln!("{:6.1} {:5} {}/{}", s.at.as_secs_f64(), s.lag, s.desired, s.ready);
    }
    let first = |wanted: &dyn Fn(&Sample) -> bool| samples.iter().find(|s| wanted(s)).map(|s| s.at);
    eprintln!(
        "load step at 0 s ({} orders, {CLIENTS} clients, placed in {:.1} s, load ended then); lag first seen above one \
         replica's target at {:?}; scaled (spec) above 1 at {:?}; {PARTITIONS} Ready at {:?}; all \
         invoiced and shipped at {:.1} s; back at 1 replica at {:.1} s",
        placed.len(),
        load_seconds.as_secs_f64(),
        first(&|s| s.lag > 20),
        first(&|s| s.desired > 1),
        first(&|s| s.ready == PARTITIONS),
        drained.as_secs_f64(),
        scaled_in.as_secs_f64(),
    );
    let most = invoicing_replicas
        .lock()
        .expect("lock")
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    assert_eq!(
        most, PARTITIONS,
        "scaled out to the partitions and never past them"
    );
    assert!(
        samples.iter().any(|s| s.lag > 20),
        "the load made lag a consumer could not keep up with"
    );
    assert_eq!(scaling.desired_replicas, 1);
    assert!(
        scaling.reason == "Steady" || scaling.reason == "ScaledDown",
        "{scaling:?}"
    );

    // Shipping, running 2 pods under load, is handed to an external autoscaler: its replicas never fall.
    let (shipping_replicas, shipping_watch) = watch_replicas(&deployments, "shop-shipping");
    let until = Instant::now() + Duration::from_secs(15);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(place(order.clone(), 1_000_000 + c, until)))
        .collect();
    systems
        .patch(
            system,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"shipping": {"replicas": null, "autoscaling": {"external": true}}}}),
            ),
        )
        .await
        .expect("shipping to external mode");
    let mut more = BTreeSet::new();
    for client in clients {
        more.extend(client.await.expect("a client finished"));
    }
    wait::until_some(
        "status reports shipping's external mode",
        READY_WITHIN,
        || async {
            let os = systems.get(system).await.ok()?;
            let scaling = os.status?.services?.shipping.autoscaling?;
            (scaling.mode == ordersystem_api::crd::ScalingMode::External).then_some(())
        },
    )
    .await;
    all_stored_once(&invoicing, "/api/invoices", &more).await;
    all_stored_once(&shipping, "/api/shipments", &more).await;
    shipping_watch.abort();
    let shipping_seen = shipping_replicas.lock().expect("lock").clone();
    eprintln!(
        "shipping spec.replicas through the switch to external mode ({} more orders): {shipping_seen:?}",
        more.len()
    );
    assert!(
        !shipping_seen.is_empty() && shipping_seen.iter().all(|r| *r == 2),
        "shipping kept 2 replicas through the switch: {shipping_seen:?}"
    );

    shop.delete_and_uninstall(system).await;
}
