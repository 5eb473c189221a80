//! The `operator` scenario: the operator's image installed with helm (the chart's ServiceAccount and RBAC,
//! watching one namespace of its own) on the test bed's real node, which runs the services' pods from their
//! images; the shared Kafka and PostgreSQL, reached by the pods on the node's bridge. Measures apply →
//! `Ready` of a first `OrderSystem` with running pods; for spec changes (replicas up and down, partitions up)
//! the time until the child object shows the change (the Deployment's `spec.replicas`, the topic's partition
//! count at the broker) and until `Ready=True` for the new generation with every replica ready; the
//! operator's RSS idle and with N `OrderSystem`s (the extra ones with zero replicas: topics, schemas, roles,
//! Secrets and Deployments, no pods), read from the host's `/proc` for the container's process. Changes are
//! observed by polling every 10 ms. Everything is created with `deletionPolicy: Delete` and removed at the
//! end.

use crate::meter::mib;
use crate::procfs;
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_api::names::{Service, child_name};
use ordersystem_e2e::cluster::{create_namespace, delete_namespace_and_wait, is_ready};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::real_node::host_process;
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(10);
const PATIENCE: Duration = Duration::from_secs(180);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// OrderSystems for the memory figure (the first runs its pods; the others have zero replicas).
    #[arg(long, default_value_t = 20)]
    systems: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub change: String,
    /// Patch sent → the child object shows it.
    pub child_updated_ms: f64,
    /// Patch sent → `Ready=True` for the new generation, every replica ready.
    pub ready_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub operator_rss_idle_mib: f64,
    /// Apply of the first OrderSystem → `Ready=True` (topic, schemas, roles, three pods started and ready).
    pub first_ready_ms: f64,
    pub changes: Vec<Change>,
    pub systems: usize,
    /// Apply of the other systems → all `Ready=True`.
    pub all_ready_ms: f64,
    pub operator_rss_with_systems_mib: f64,
    pub operator_rss_peak_mib: f64,
    pub operator_cpu_s: f64,
    pub load_average_before: String,
    pub load_average_after: String,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn ready_for_generation(os: &OrderSystem) -> bool {
    let generation = os.metadata.generation;
    let Some(status) = &os.status else { return false };
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation);
    let services = status.services.as_ref().is_some_and(|s| {
        [&s.order, &s.invoicing, &s.shipping]
            .iter()
            .all(|one| one.ready == one.desired)
    });
    ready && services && status.observed_generation == generation
}

async fn poll_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        if Instant::now() > deadline {
            bail!("timed out after {PATIENCE:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

fn system(name: &str, topic: &str, replicas: i32) -> Result<OrderSystem> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": name},
        "spec": {
            "kafka": {"bootstrapServers": env::kafka_node_bootstrap(),
                      "topic": {"name": topic, "partitions": 5, "replicationFactor": 1}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}, "sslMode": "disable"},
            "order": {"replicas": replicas}, "invoicing": {"replicas": replicas},
            "shipping": {"replicas": replicas},
            "deletionPolicy": "Delete"
        }
    }))?)
}

fn topic_partitions(topic: &str) -> usize {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create::<BaseConsumer>()
    else {
        return 0;
    };
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()
        .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
        .unwrap_or(0)
}

pub async fn run(args: &Args) -> Result<Report> {
    let load_before = procfs::load_average();
    let client = ordersystem_e2e::kube::client().await;
    let mode = Mode::real(&client).await;
    let ns = names::unique("bench");
    let operator_ns = names::unique("bench-operator");
    for namespace in [&ns, &operator_ns] {
        create_namespace(&client, namespace, mode.namespace_annotations()).await;
    }
    let outcome = measure(args, &client, &mode, &ns, &operator_ns).await;
    // Delete the systems first (the operator drops topics and schemas), then the operator and the namespaces.
    let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &ns);
    let _ = systems
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await;
    let _ = poll_until("the OrderSystems deleted", || async {
        systems
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
    mode.uninstall_operator(&operator_ns);
    for namespace in [&ns, &operator_ns] {
        delete_namespace_and_wait(&client, namespace).await;
    }
    let mut report = outcome?;
    report.load_average_before = load_before;
    report.load_average_after = procfs::load_average();
    Ok(report)
}

/// Installs the operator as users do (its image, the chart's ServiceAccount and RBAC) with the admin
/// Secret its systems need, and returns the host pid of its process once its pod is Ready.
async fn install_operator(client: &kube::Client, mode: &Mode, ns: &str, operator_ns: &str) -> Result<u32> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &mode.admin_secret(client, "pg-admin").await,
        )
        .await?;
    mode.install_operator(operator_ns, ns);
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), operator_ns);
    poll_until("the operator pod Ready", || async {
        operator_pods
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.iter().any(is_ready))
    })
    .await?;
    let pod = operator_pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(is_ready)
        .context("the operator pod")?;
    let container = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.container_id)
        .context("the operator's container")?;
    Ok(host_process(&container).pid)
}

/// Waits until OrderSystem `name` is Ready for its current generation.
async fn wait_system_ready(systems: &Api<OrderSystem>, what: &str, name: &str) -> Result<()> {
    poll_until(what, || async {
        systems.get(name).await.is_ok_and(|os| ready_for_generation(&os))
    })
    .await
}

/// One spec change of `shop`: invoicing's replicas (while `partitions` stays 5) or the topic's partitions;
/// how long until the child (Deployment or topic) changed and until the system was Ready again.
async fn change_shop(
    systems: &Api<OrderSystem>,
    deployments: &Api<Deployment>,
    topic: &str,
    (replicas, partitions): (i32, i32),
) -> Result<Change> {
    let invoicing = child_name("shop", Service::Invoicing);
    let (label, patch) = if partitions == 5 {
        (
            format!("invoicing replicas → {replicas}"),
            json!({"spec": {"invoicing": {"replicas": replicas}}}),
        )
    } else {
        (
            format!("partitions → {partitions}"),
            json!({"spec": {"kafka": {"topic": {"partitions": partitions}}}}),
        )
    };
    let started = Instant::now();
    systems
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    if partitions == 5 {
        poll_until(&label, || async {
            deployments
                .get(&invoicing)
                .await
                .is_ok_and(|d| d.spec.and_then(|s| s.replicas) == Some(replicas))
        })
        .await?;
    } else {
        let expected = usize::try_from(partitions).unwrap_or(0);
        poll_until(&label, || async { topic_partitions(topic) == expected }).await?;
    }
    let child = started.elapsed();
    wait_system_ready(systems, &label, "shop").await?;
    let ready = started.elapsed();
    eprintln!(
        "[bench] {label}: child updated {:.0} ms, Ready {:.0} ms",
        ms(child),
        ms(ready)
    );
    Ok(Change {
        change: label,
        child_updated_ms: ms(child),
        ready_ms: ms(ready),
    })
}

/// Applies `count - 1` more OrderSystems (no replicas) beside `shop`; how long until all were Ready.
async fn apply_many(systems: &Api<OrderSystem>, topic: &str, count: usize) -> Result<Duration> {
    let started = Instant::now();
    for i in 1..count {
        let name = format!("shop-{i}");
        systems
            .create(
                &PostParams::default(),
                &system(&name, &format!("{topic}-{i}"), 0)?,
            )
            .await?;
    }
    poll_until("every OrderSystem Ready", || async {
        systems
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.len() == count && l.items.iter().all(ready_for_generation))
    })
    .await?;
    Ok(started.elapsed())
}

/// Deletes every OrderSystem while the operator still runs: it releases the finalizers after dropping the
/// backends.
async fn delete_all(systems: &Api<OrderSystem>) -> Result<()> {
    systems
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    poll_until("the OrderSystems deleted", || async {
        systems
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await
}

async fn measure(
    args: &Args,
    client: &kube::Client,
    mode: &Mode,
    ns: &str,
    operator_ns: &str,
) -> Result<Report> {
    let pid = install_operator(client, mode, ns, operator_ns).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_idle = procfs::rss_bytes(pid).unwrap_or(0);
    let mut rss_peak = rss_idle;
    eprintln!("[bench] operator idle: {:.1} MiB RSS", mib(rss_idle));

    let systems: Api<OrderSystem> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let topic = names::unique("bench-op");
    let started = Instant::now();
    systems
        .create(&PostParams::default(), &system("shop", &topic, 1)?)
        .await?;
    wait_system_ready(&systems, "shop Ready", "shop").await?;
    let first_ready = started.elapsed();
    eprintln!("[bench] apply → Ready (pods running): {:.0} ms", ms(first_ready));
    rss_peak = rss_peak.max(procfs::rss_bytes(pid).unwrap_or(0));

    let mut changes = Vec::new();
    for step in [(3, 5), (1, 5), (1, 6), (1, 7)] {
        changes.push(change_shop(&systems, &deployments, &topic, step).await?);
        rss_peak = rss_peak.max(procfs::rss_bytes(pid).unwrap_or(0));
    }

    let all_ready = apply_many(&systems, &topic, args.systems).await?;
    eprintln!(
        "[bench] {} OrderSystems Ready after {:.0} ms",
        args.systems,
        ms(all_ready)
    );
    // Settle: the periodic requeue and watches idle again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_with = procfs::rss_bytes(pid).unwrap_or(0);
    rss_peak = rss_peak.max(rss_with);
    let cpu = procfs::cpu_time(pid, procfs::clock_ticks()).unwrap_or_default();
    delete_all(&systems).await?;
    Ok(Report {
        scenario: "operator",
        operator_rss_idle_mib: mib(rss_idle),
        first_ready_ms: ms(first_ready),
        changes,
        systems: args.systems,
        all_ready_ms: ms(all_ready),
        operator_rss_with_systems_mib: mib(rss_with),
        operator_rss_peak_mib: mib(rss_peak),
        operator_cpu_s: (cpu.as_secs_f64() * 10.0).round() / 10.0,
        load_average_before: String::new(),
        load_average_after: String::new(),
    })
}

pub fn print(report: &Report) {
    println!("operator");
    println!(
        "  RSS idle                    {:>8.1} MiB",
        report.operator_rss_idle_mib
    );
    println!("  apply → Ready (pods run)    {:>8.0} ms", report.first_ready_ms);
    println!("  {:<28} {:>14} {:>10}", "spec change", "child updated", "Ready");
    for c in &report.changes {
        println!(
            "  {:<28} {:>11.0} ms {:>7.0} ms",
            c.change, c.child_updated_ms, c.ready_ms
        );
    }
    println!(
        "  {} OrderSystems: all Ready {:.0} ms after apply; RSS {:.1} MiB (peak {:.1} MiB); operator CPU {:.1} s in all",
        report.systems,
        report.all_ready_ms,
        report.operator_rss_with_systems_mib,
        report.operator_rss_peak_mib,
        report.operator_cpu_s
    );
    println!(
        "  load average before {} after {}",
        report.load_average_before, report.load_average_after
    );
}
