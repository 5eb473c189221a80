//! `ordersystem-bench`: measures the order system on one machine against real Kafka, Postgres and (for the
//! operator) the Kubernetes API server. Prints a table, optionally writes JSON, shows progress on stderr.
//! The figures and how they were taken are recorded in BENCHMARKS.md.

mod audit;
mod load;
mod meter;
mod operator;
mod oplog;
mod procfs;
mod reference;
mod run;
mod scale;
mod services;
mod stack;
mod stats;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Benchmarks of the order system: end-to-end throughput and latency, memory, CPU, operator reaction time"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Directory of the release binaries: ordersystem-order, -invoicing and -shipping for the services
    /// scenario, ordersystem-operator for operator-scale. Default: the directory of this binary.
    #[arg(long, global = true, env = "ORDERSYSTEM_BIN_DIR")]
    bin_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Orders over HTTP into order, end to end into invoicing and shipping (release binaries as processes,
    /// the shared Kafka and Postgres from `/tmp/ordersystem/env`).
    Services(ServicesArgs),
    /// The same load against the reference Spring Boot implementation (ewolff/microservice-kafka, built by
    /// you with `mvn package`), beside the same Kafka and Postgres, for a side-by-side comparison.
    Reference(ReferenceArgs),
    /// The operator's image installed with helm on the test bed's real node: spec change → child objects
    /// updated and → Ready; RSS idle and with many OrderSystems.
    Operator(operator::Args),
    /// One operator (the release binary, as a process, with the chart's RBAC) with N OrderSystems against
    /// an API server of this run's own that audits every request, beside the shared Kafka and PostgreSQL:
    /// RSS, CPU and API requests per minute at rest, the lag reads' cost, and spec change → child object.
    /// Needs the test bed (`. /tmp/ordersystem/env`); `e2e/extended.sh --resources N` runs it.
    OperatorScale(scale::Args),
}

/// How orders are sent and how long: the same for this system and for the reference.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Orders per second, open loop. Without it: maximum rate (closed loop, --concurrency clients).
    #[arg(long)]
    rate: Option<f64>,
    /// Clients at maximum rate.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// At a fixed rate: most requests in flight at once (a slower service then lowers the rate achieved).
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Most orders to send.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// Replicas of invoicing and of shipping (order runs one).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 5)]
    partitions: i32,
    /// Longest wait, after the last order was sent, for every invoice and shipment.
    #[arg(long, default_value_t = 300.0)]
    drain_timeout: f64,
    /// Where the services' logs go.
    #[arg(long, default_value = "/tmp/ordersystem/bench")]
    log_dir: PathBuf,
}

impl LoadArgs {
    /// The run these arguments describe; its logs go to a new directory `<log_dir>/<run>-<random>`.
    fn plan(&self, run: &str) -> run::Plan {
        run::Plan {
            pace: match self.rate {
                Some(per_second) => load::Pace::Rate {
                    per_second,
                    max_in_flight: self.max_in_flight,
                },
                None => load::Pace::Max {
                    concurrency: self.concurrency,
                },
            },
            count: self.count,
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            replicas: self.replicas,
            partitions: self.partitions,
            drain_timeout: Duration::from_secs_f64(self.drain_timeout),
            log_dir: self.log_dir.join(ordersystem_testkit::names::unique(run)),
        }
    }
}

#[derive(Debug, Args)]
struct ServicesArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Have the services export their spans to this OpenTelemetry collector (OTLP/HTTP base URL, e.g. the
    /// test bed's `$OTLP_ENDPOINT`), as `spec.tracing.otlpEndpoint` makes the operator do; by default
    /// nothing is exported.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
}

#[derive(Debug, Args)]
struct ReferenceArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// The reference's Maven project (its `microservice-kafka` directory) after `mvn package`: the jars
    /// are taken from each service's `target/`.
    #[arg(long)]
    reference_dir: PathBuf,
    /// The Java runtime to run the jars with.
    #[arg(long, default_value = "java")]
    java: PathBuf,
    /// JVM options, space-separated. Default: those of the reference's own Dockerfiles, without their
    /// `-noverify` (deprecated since Java 13).
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "-Xmx400m -Xms400m -XX:TieredStopAtLevel=1"
    )]
    java_options: String,
}

fn bin_dir(cli: &Cli) -> PathBuf {
    cli.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

fn write_json(path: &Option<PathBuf>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")?;
        eprintln!("[bench] wrote {}", path.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let command: Vec<String> = std::env::args().collect();
    let envelope = |report: serde_json::Value| {
        serde_json::json!({
            "command": command.join(" "),
            "machine": procfs::machine(),
            "version": env!("CARGO_PKG_VERSION"),
            "report": report,
        })
    };
    match &cli.scenario {
        Scenario::Services(args) => {
            let settings = services::Settings {
                plan: args.load.plan("run"),
                bin_dir: bin_dir(&cli),
                otlp_endpoint: args.otlp_endpoint.clone(),
            };
            let report = services::run(&settings).await?;
            services::print(&report);
            write_json(&cli.json, &envelope(serde_json::to_value(&report)?))?;
            stats::require(&report.figures.exactly_once)
        }
        Scenario::Reference(args) => {
            let settings = reference::Settings {
                plan: args.load.plan("reference"),
                reference_dir: args.reference_dir.clone(),
                java: args.java.clone(),
                java_options: args.java_options.split_whitespace().map(String::from).collect(),
            };
            let report = reference::run(&settings).await?;
            reference::print(&report);
            write_json(&cli.json, &envelope(serde_json::to_value(&report)?))?;
            stats::require(&report.figures.exactly_once)
        }
        Scenario::Operator(args) => {
            let report = operator::run(args).await?;
            operator::print(&report);
            write_json(&cli.json, &envelope(serde_json::to_value(&report)?))?;
            Ok(())
        }
        Scenario::OperatorScale(args) => {
            let report = scale::run(args, &bin_dir(&cli)).await?;
            scale::print(&report);
            write_json(&cli.json, &envelope(serde_json::to_value(&report)?))?;
            Ok(())
        }
    }
}
