//! The `operator` scenario: the release operator binary as a process against the API server (as the
//! chart's ServiceAccount under the chart's rendered RBAC, watching one namespace of its own), a local-mode node agent running the pods, the shared
//! Kafka and Postgres. Measures apply → `Ready` of a first `OrderSystem` with running pods; for spec
//! changes (replicas up and down, partitions up) the time until the child object shows the change (the
//! Deployment's `spec.replicas`, the topic's partition count at the broker) and until `Ready=True` for the
//! new generation with every replica ready; the operator's RSS idle and with N `OrderSystem`s (the extra
//! ones with zero replicas: topics, schemas, roles, Secrets and Deployments, no pods). Changes are observed
//! by polling every 10 ms. Everything is created with `deletionPolicy: Delete` and removed at the end.

use crate::meter::mib;
use crate::procfs;
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordersystem_e2e::chart_rbac::ChartRbac;
use ordersystem_e2e::local_node::LocalNode;
use ordersystem_e2e::mode::Mode;
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::names::{Service, child_name};
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CRD_YAML: &str = include_str!("../../crds/ordersystem.io_ordersystems.yaml");
const POLL: Duration = Duration::from_millis(10);
const PATIENCE: Duration = Duration::from_secs(180);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// OrderSystems for the memory figure (the first runs its pods; the others have zero replicas).
    #[arg(long, default_value_t = 20)]
    systems: usize,
    /// Second octet of the node agent's pod IPs (127.<octet>.0.x).
    #[arg(long, default_value_t = 50)]
    octet: u8,
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

/// The operator process, stopped with SIGTERM on drop.
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.0.wait();
    }
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
            "kafka": {"bootstrapServers": env::kafka_bootstrap(),
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

pub async fn run(args: &Args, bin_dir: &Path) -> Result<Report> {
    let load_before = procfs::load_average();
    let client = ordersystem_e2e::kube::client().await;
    // The committed CRD, applied as the operator tests do (the same content, so concurrent runs agree).
    let crd: CustomResourceDefinition = serde_yaml::from_str(CRD_YAML).context("crds/ parses")?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            "ordersystems.ordersystem.io",
            &PatchParams::apply("ordersystem-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("apply the CRD")?;
    let node = LocalNode::start_with_bins(
        &client,
        &names::unique("bench"),
        args.octet,
        bin_dir.to_path_buf(),
    )
    .await;
    let mode = Mode::Local(node);
    let ns = names::unique("bench");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": ns, "annotations": mode.namespace_annotations()}}),
            )?,
        )
        .await?;
    let outcome = measure(args, bin_dir, &client, &mode, &ns).await;
    // Delete the systems first (the operator drops topics and schemas), then the namespace.
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
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    poll_until("the namespace gone", || async {
        namespaces.get_opt(&ns).await.is_ok_and(|n| n.is_none())
    })
    .await?;
    drop(mode);
    let mut report = outcome?;
    report.load_average_before = load_before;
    report.load_average_after = procfs::load_average();
    Ok(report)
}

async fn measure(
    args: &Args,
    bin_dir: &Path,
    client: &kube::Client,
    mode: &Mode,
    ns: &str,
) -> Result<Report> {
    // ServiceAccount admission refuses pods until kube-controller-manager created `default`.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    poll_until("the default ServiceAccount", || async {
        accounts.get_opt("default").await.is_ok_and(|a| a.is_some())
    })
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &mode.admin_secret(client, "pg-admin").await,
        )
        .await?;

    // The operator runs as the chart's ServiceAccount under the chart's RBAC, as installed by helm.
    let rbac = ChartRbac::install(client, Path::new(&env::require("KUBECONFIG")), ns).await?;
    let kubeconfig = format!("/tmp/ordersystem/{ns}.operator.kubeconfig");
    rbac.write_kubeconfig(Path::new(&kubeconfig))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(format!("/tmp/ordersystem/{ns}.operator.log"))?;
    let operator = OperatorProcess(
        Command::new(bin_dir.join("ordersystem-operator"))
            .env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("WATCH_NAMESPACE", ns)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("start ordersystem-operator")?,
    );
    let pid = operator.0.id();
    let http = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    poll_until("the operator ready", || async {
        http.get(&readyz)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
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
    poll_until("shop Ready", || async {
        systems
            .get("shop")
            .await
            .is_ok_and(|os| ready_for_generation(&os))
    })
    .await?;
    let first_ready = started.elapsed();
    eprintln!("[bench] apply → Ready (pods running): {:.0} ms", ms(first_ready));
    rss_peak = rss_peak.max(procfs::rss_bytes(pid).unwrap_or(0));

    let mut changes = Vec::new();
    let invoicing = child_name("shop", Service::Invoicing);
    for (replicas, partitions) in [(3, 5), (1, 5), (1, 6), (1, 7)] {
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
            poll_until(&label, || async { topic_partitions(&topic) == expected }).await?;
        }
        let child = started.elapsed();
        poll_until(&label, || async {
            systems
                .get("shop")
                .await
                .is_ok_and(|os| ready_for_generation(&os))
        })
        .await?;
        let ready = started.elapsed();
        eprintln!(
            "[bench] {label}: child updated {:.0} ms, Ready {:.0} ms",
            ms(child),
            ms(ready)
        );
        rss_peak = rss_peak.max(procfs::rss_bytes(pid).unwrap_or(0));
        changes.push(Change {
            change: label,
            child_updated_ms: ms(child),
            ready_ms: ms(ready),
        });
    }

    let started = Instant::now();
    for i in 1..args.systems {
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
            .is_ok_and(|l| l.items.len() == args.systems && l.items.iter().all(ready_for_generation))
    })
    .await?;
    let all_ready = started.elapsed();
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
    // Deletion runs while the operator still runs: it releases the finalizers after dropping the backends.
    systems
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    poll_until("the OrderSystems deleted", || async {
        systems
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await?;
    drop(operator);
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
