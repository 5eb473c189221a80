//! The `operator-scale` scenario: one operator with N `OrderSystem`s, at rest. The operator's release
//! binary runs as a process of this machine with the chart's RBAC (a kubeconfig that impersonates its
//! ServiceAccount) against an API server of this run's own (`control-plane.sh` with `CP_INSTANCE` and
//! `CP_AUDIT=all`: etcd and kube-apiserver, an audit log of every request, no controller manager and no
//! node), and the test bed's shared Kafka and PostgreSQL. Each `OrderSystem` gets its topic, three schemas
//! and roles, its Secrets and three Deployments; the first asks for one replica of each service and the
//! others for none, and no pod runs at all (no node and no controller manager: a Deployment stays an
//! object). Measured over a window at rest: the operator's RSS, its CPU (`/proc/<pid>/stat`), its API
//! requests (the audit log, by its User-Agent), its lag reads (its own debug log, `controller::lag`), and
//! the API server's CPU beside it; then the time from a spec change on the last resource until its
//! Deployment shows it. Everything is created with `deletionPolicy: Delete` and deleted through the
//! operator at the end; the instance is wiped.

use crate::meter::mib;
use crate::{audit, oplog, procfs};
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ordersystem_api::conditions::{DATABASE_READY, TOPIC_READY};
use ordersystem_api::crd::OrderSystem;
use ordersystem_api::names::{Service, child_name};
use ordersystem_e2e::chart_rbac::ChartRbac;
use ordersystem_e2e::control_plane::{create_admin_secret, install_crd};
use ordersystem_testkit::own_instance::OwnInstance;
use ordersystem_testkit::{env, names};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The own instance's name; its ports come from `--ports`.
const INSTANCE: &str = "bench-scale";
/// Every request of the operator carries `ordersystem-operator/<version> (<identity>)`.
const AGENT: &str = "ordersystem-operator/";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// OrderSystems under the one operator (the first asks for one replica per service, the others for
    /// none; no pod runs).
    #[arg(long, default_value_t = 20)]
    resources: usize,
    /// OrderSystems created at once; the next batch once these have their topic, schemas and
    /// Deployments. Keeps the reconciles at creation (each with a PostgreSQL connection) within the test
    /// database's connection limit.
    #[arg(long, default_value_t = 25)]
    batch: usize,
    /// Seconds to wait once all are created, before the window at rest (the creation's requeues die down).
    #[arg(long, default_value_t = 45)]
    settle: u64,
    /// Seconds at rest that are measured. At rest each OrderSystem is looked at again every 30 s (its
    /// consumer-lag interval), so 120 s holds four rounds.
    #[arg(long, default_value_t = 120)]
    rest: u64,
    /// Spec changes timed on the last OrderSystem (its invoicing replicas up, then down again, and so on).
    #[arg(long, default_value_t = 6)]
    changes: usize,
    /// Ports of the own etcd (client, peer) and kube-apiserver: three free ports of this machine.
    #[arg(long, value_delimiter = ',', default_value = "12479,12480,16543")]
    ports: Vec<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub resources: usize,
    pub commit: String,
    pub kubernetes: String,
    pub operator_version: String,
    /// First create → the last one has its topic, schemas and Deployments.
    pub create_all_s: f64,
    pub rest_window_s: f64,
    pub rss_mib: f64,
    /// The operator's peak RSS over its life (`VmHWM`), creation included.
    pub rss_peak_mib: f64,
    pub cpu_s_per_min: f64,
    pub api_requests_per_min: f64,
    pub api_requests: audit::Requests,
    pub apiserver_cpu_s_per_min: f64,
    pub lag: oplog::LagReads,
    /// Where the looks at rest spent their time, step by step.
    pub steps: oplog::LookSteps,
    /// Patch of the last resource's spec → its Deployment shows it, each change.
    pub change_to_child_ms: Vec<f64>,
    pub change_to_child_median_ms: f64,
    pub load_average_before: String,
    pub load_average_after: String,
}

/// The operator binary as a process of this run; killed (by its pid) when dropped.
struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    fn start(binary: &Path, kubeconfig: &Path, namespace: &str, log: &Path) -> Result<Self> {
        let file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let port = ordersystem_testkit::process::free_port();
        let child = Command::new(binary)
            .env_clear()
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACE", namespace)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            // The lag reads' own debug line (`lag read`) and each look's steps (`look steps`) are what
            // `oplog` measures them by.
            .env(
                "RUST_LOG",
                "info,ordersystem_operator::controller::lag=debug,ordersystem_operator::controller::steps=debug",
            )
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the operator exited with {status}; its log: {}",
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn system(index: usize, topic: &str) -> Result<OrderSystem> {
    let replicas = i32::from(index == 0);
    Ok(serde_json::from_value(json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": name(index)},
        "spec": {
            "kafka": {"bootstrapServers": env::kafka_bootstrap(),
                      "topic": {"name": format!("{topic}-{index}"), "partitions": 5, "replicationFactor": 1}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}},
            "order": {"replicas": replicas}, "invoicing": {"replicas": replicas},
            "shipping": {"replicas": replicas},
            "deletionPolicy": "Delete"
        }
    }))?)
}

fn name(index: usize) -> String {
    format!("shop-{index}")
}

/// The operator has made what this resource asks for: topic and schemas ready for its generation.
fn provisioned(os: &OrderSystem) -> bool {
    let Some(status) = &os.status else { return false };
    let holds = |type_: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    status.observed_generation == os.metadata.generation && holds(TOPIC_READY) && holds(DATABASE_READY)
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

fn per_minute(value: f64, window: Duration) -> f64 {
    (value * 60.0 / window.as_secs_f64() * 100.0).round() / 100.0
}

/// What one command prints, trimmed (empty when it cannot run).
fn output_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub async fn run(args: &Args, bin_dir: &Path) -> Result<Report> {
    let [etcd, peer, apiserver] = args.ports[..] else {
        bail!("--ports takes three ports: etcd, etcd peer, kube-apiserver");
    };
    if args.resources == 0 || args.batch == 0 {
        bail!("--resources and --batch must be at least 1");
    }
    let binary = bin_dir.join("ordersystem-operator");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build --release -p ordersystem-operator, or pass --bin-dir",
            binary.display()
        );
    }
    let load_before = procfs::load_average();
    eprintln!(
        "[scale] starting the API server of this run ({INSTANCE}: etcd {etcd}/{peer}, apiserver {apiserver})"
    );
    let own = OwnInstance::control_plane(INSTANCE, etcd, peer, apiserver)
        .with_env("CP_AUDIT", "all")
        // Three Services per OrderSystem: more than the shared /24 range holds.
        .with_env("CP_SERVICE_CIDR", "10.96.0.0/16")
        .start_fresh()
        .await;
    let kubeconfig = PathBuf::from(own.run("kubeconfig").await);
    let instance_dir = kubeconfig
        .parent()
        .context("the instance's directory")?
        .to_path_buf();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    install_crd(&client).await;
    let ns = names::unique("scale");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    create_admin_secret(&client, &ns, "pg-admin").await;
    let rbac = ChartRbac::install(&client, &kubeconfig, &ns).await?;
    let log_dir = env::state().join("bench").join(names::unique("scale"));
    std::fs::create_dir_all(&log_dir)?;
    let operator_kubeconfig = log_dir.join("kubeconfig");
    rbac.write_kubeconfig(&operator_kubeconfig)?;
    let log = log_dir.join("operator.log");
    eprintln!("[scale] operator log: {}", log.display());
    let mut operator = OperatorProcess::start(&binary, &operator_kubeconfig, &ns, &log)?;
    let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &ns);
    let kubernetes = client_version(&client).await;
    let outcome = measure(args, &client, &systems, &mut operator, &instance_dir, &log).await;
    eprintln!("[scale] deleting the OrderSystems through the operator (it drops topics, schemas and roles)");
    if let Err(error) = delete_all(&systems, args.resources).await {
        eprintln!("[scale] {error:#}: topics and schemas named {ns}/shop-* may be left behind");
    }
    drop(operator);
    drop(rbac);
    drop(own);
    let mut report = outcome?;
    report.kubernetes = kubernetes;
    report.operator_version = output_of(&binary.to_string_lossy(), &["--version"]);
    report.commit = output_of("git", &["rev-parse", "--short=12", "HEAD"]);
    report.load_average_before = load_before;
    report.load_average_after = procfs::load_average();
    Ok(report)
}

async fn client_version(client: &kube::Client) -> String {
    client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_default()
}

/// Creates the resources batch by batch, each batch provisioned before the next.
async fn create_all(
    args: &Args,
    systems: &Api<OrderSystem>,
    operator: &mut OperatorProcess,
) -> Result<Duration> {
    let topic = names::unique("scale");
    let started = Instant::now();
    let mut created = 0;
    while created < args.resources {
        let upto = (created + args.batch).min(args.resources);
        for index in created..upto {
            systems
                .create(&PostParams::default(), &system(index, &topic)?)
                .await?;
        }
        created = upto;
        wait_provisioned(systems, created, operator).await?;
        eprintln!(
            "[scale] {created}/{} OrderSystems provisioned ({:.0} s)",
            args.resources,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(started.elapsed())
}

/// Waits until `count` resources are provisioned, each with its three Deployments.
async fn wait_provisioned(
    systems: &Api<OrderSystem>,
    count: usize,
    operator: &mut OperatorProcess,
) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(systems.clone().into_client(), namespace_of(systems));
    let deadline = Instant::now() + Duration::from_secs(120 + 2 * count as u64);
    loop {
        operator.check_alive()?;
        let listed = systems.list(&ListParams::default()).await?;
        let ready = listed.items.iter().filter(|os| provisioned(os)).count();
        let children = deployments
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if ready == count && children == 3 * count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready} of {count} OrderSystems provisioned and {children} Deployments after the deadline"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn namespace_of(systems: &Api<OrderSystem>) -> &str {
    systems.namespace().unwrap_or("default")
}

async fn measure(
    args: &Args,
    client: &kube::Client,
    systems: &Api<OrderSystem>,
    operator: &mut OperatorProcess,
    instance_dir: &Path,
    log: &Path,
) -> Result<Report> {
    let created = create_all(args, systems, operator).await?;
    eprintln!("[scale] settling for {} s", args.settle);
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    operator.check_alive()?;

    let pid = operator.pid();
    let ticks = procfs::clock_ticks();
    let apiserver_pid: u32 = std::fs::read_to_string(instance_dir.join("kube-apiserver.pid"))?
        .trim()
        .parse()?;
    let log_offset = std::fs::metadata(log)?.len();
    let (from, window_start) = (Timestamp::now(), Instant::now());
    let cpu_before = procfs::cpu_time(pid, ticks).context("the operator's CPU time")?;
    let apiserver_before = procfs::cpu_time(apiserver_pid, ticks).unwrap_or_default();
    eprintln!("[scale] at rest: measuring {} s", args.rest);
    let rest = Duration::from_secs(args.rest);
    while window_start.elapsed() < rest {
        tokio::time::sleep(Duration::from_secs(30).min(rest.saturating_sub(window_start.elapsed()))).await;
        eprintln!(
            "[scale]   {:.0}/{} s",
            window_start.elapsed().as_secs_f64(),
            args.rest
        );
    }
    let cpu = procfs::cpu_time(pid, ticks)
        .context("the operator's CPU time")?
        .saturating_sub(cpu_before);
    let apiserver_cpu = procfs::cpu_time(apiserver_pid, ticks)
        .unwrap_or_default()
        .saturating_sub(apiserver_before);
    let (to, window) = (Timestamp::now(), window_start.elapsed());
    let rss = procfs::rss_bytes(pid).unwrap_or(0);
    let rss_peak = procfs::peak_rss_bytes(pid).unwrap_or(0);
    // The audit log is written as requests complete: give the window's last ones a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = audit::requests(&instance_dir.join("logs"), AGENT, from, to)?;
    let lag = oplog::lag_reads(log, log_offset, from, to)?;
    let steps = oplog::look_steps(log, log_offset, from, to)?;

    let changes = change_last(args, client, systems).await?;
    let mut sorted = changes.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Report {
        scenario: "operator-scale",
        resources: args.resources,
        commit: String::new(),
        kubernetes: String::new(),
        operator_version: String::new(),
        create_all_s: seconds(created),
        rest_window_s: seconds(window),
        rss_mib: mib(rss),
        rss_peak_mib: mib(rss_peak),
        cpu_s_per_min: per_minute(cpu.as_secs_f64(), window),
        api_requests_per_min: per_minute(requests.total as f64, window),
        api_requests: requests,
        apiserver_cpu_s_per_min: per_minute(apiserver_cpu.as_secs_f64(), window),
        lag,
        steps,
        change_to_child_median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
        change_to_child_ms: changes,
        load_average_before: String::new(),
        load_average_after: String::new(),
    })
}

/// Changes the last resource's invoicing replicas, up by one and back, `args.changes` times; the time of
/// each from the patch until its Deployment's `spec.replicas` shows it (polled every 10 ms).
async fn change_last(args: &Args, client: &kube::Client, systems: &Api<OrderSystem>) -> Result<Vec<f64>> {
    let last = args.resources - 1;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace_of(systems));
    let deployment = child_name(&name(last), Service::Invoicing);
    let base = i32::from(last == 0);
    let mut times = Vec::new();
    for change in 0..args.changes {
        let replicas = base + i32::from(change % 2 == 0);
        let started = Instant::now();
        systems
            .patch(
                &name(last),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"invoicing": {"replicas": replicas}}})),
            )
            .await?;
        loop {
            let shown = deployments.get(&deployment).await?.spec.and_then(|s| s.replicas);
            if shown == Some(replicas) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{deployment} did not show replicas {replicas} within 60 s (it has {shown:?})");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        eprintln!(
            "[scale] {} invoicing replicas → {replicas}: Deployment after {ms:.0} ms",
            name(last)
        );
        times.push(ms);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(times)
}

/// Deletes every OrderSystem while the operator still runs, and waits until its finalizers released them.
async fn delete_all(systems: &Api<OrderSystem>, resources: usize) -> Result<()> {
    systems
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120 + 2 * resources as u64);
    let mut reported = Instant::now();
    loop {
        let left = systems.list_metadata(&ListParams::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} OrderSystems not deleted in time");
        }
        if reported.elapsed() > Duration::from_secs(15) {
            eprintln!("[scale]   {left} OrderSystems still being deleted");
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn print(report: &Report) {
    println!("operator at scale: {} OrderSystems", report.resources);
    println!("  created and provisioned     {:>8.1} s", report.create_all_s);
    println!("  at rest, over {:.0} s:", report.rest_window_s);
    println!(
        "    RSS                       {:>8.1} MiB (peak {:.1} MiB)",
        report.rss_mib, report.rss_peak_mib
    );
    println!(
        "    CPU                       {:>8.2} s/min",
        report.cpu_s_per_min
    );
    println!(
        "    API requests              {:>8.1} /min",
        report.api_requests_per_min
    );
    for (kind, count) in &report.api_requests.by_kind {
        println!("      {kind:<32} {count:>6}");
    }
    println!(
        "    API server CPU            {:>8.2} s/min",
        report.apiserver_cpu_s_per_min
    );
    let lag = &report.lag;
    println!(
        "    lag reads                 {:>8.1} /min, {:.1} ms each (median; p95 {:.1} ms), {} Kafka requests each, {:.0} Kafka requests/min",
        lag.looks_per_min, lag.median_ms, lag.p95_ms, lag.requests_per_look, lag.kafka_requests_per_min
    );
    let steps = &report.steps;
    println!(
        "    looks (steps logged)      {:>8} in the window; median / p95 ms:",
        steps.looks
    );
    for (step, spread) in [
        ("whole look", &steps.total),
        ("observe (lag read included)", &steps.observe),
        ("ensure: Kafka", &steps.kafka),
        ("ensure: PostgreSQL", &steps.postgres),
        ("ensure: rotation step", &steps.rotation),
        ("ensure: apply", &steps.apply),
        ("status", &steps.status),
    ] {
        println!(
            "      {step:<32} {:>8.1} / {:.1}",
            spread.median_ms, spread.p95_ms
        );
    }
    println!(
        "  spec change on the last → Deployment: median {:.0} ms of {:?}",
        report.change_to_child_median_ms, report.change_to_child_ms
    );
    println!(
        "  operator {}, Kubernetes {}, commit {}; load average before {} after {}",
        report.operator_version,
        report.kubernetes,
        report.commit,
        report.load_average_before,
        report.load_average_after
    );
}
