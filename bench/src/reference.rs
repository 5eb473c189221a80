//! The `reference` scenario: the same load against the reference implementation this system follows, the
//! Spring Boot services of "Microservices - A Practical Guide" (github.com/ewolff/microservice-kafka), run
//! from jars the user built, beside the same broker and the same PostgreSQL: a topic with the same
//! partitions, a schema and login role per service (as the operator provisions ours), the JVM options of
//! the reference's own Dockerfiles.
//!
//! The reference keeps no time of its own for a stored invoice or shipment, so its end-to-end latency is
//! read from PostgreSQL's commit timestamps (`track_commit_timestamp = on` is required): the later commit
//! of an order's invoice and shipment minus the order's `updated`, which the order service sets while
//! handling the `POST`. The exactly-once check ends every run as for this system, with one difference:
//! the reference's answer names no order, so orders accepted but not stored are found by number. Its
//! tables key invoices and shipments by the order's id, so a duplicate cannot be stored; a lost one shows.
//!
//! The topic's name is fixed in the reference's code: one reference run per broker at a time.

use crate::load::Api;
use crate::procfs;
use crate::run::{self, Figures, Plan, Stored};
use crate::stack::{self, ServiceProcess};
use crate::stats;
use anyhow::{Context, Result, bail};
use ordersystem_testkit::schema::{ServiceDb, fresh_schema};
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The reference's topic: its order service names it in code.
const TOPIC: &str = "order";
const SERVICES: [&str; 3] = ["order", "invoicing", "shipping"];

/// The scenario's settings (see `ordersystem-bench reference --help`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub plan: Plan,
    pub reference_dir: PathBuf,
    pub java: PathBuf,
    pub java_options: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub implementation: &'static str,
    pub java_options: Vec<String>,
    /// End to end: the order saved (its `updated`) → invoice and shipment committed; "stored within the
    /// window" means committed within it.
    #[serde(flatten)]
    pub figures: Figures,
}

/// The reference's jar of `service` under its build directory (`mvn package` puts it in `target/`).
fn jar(reference_dir: &Path, service: &str) -> Result<PathBuf> {
    let target = reference_dir.join(format!("microservice-kafka-{service}/target"));
    let prefix = format!("microservice-kafka-{service}-");
    std::fs::read_dir(&target)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".jar"))
        })
        .with_context(|| {
            format!(
                "no {prefix}*.jar in {}: build the reference first (see BENCHMARKS.md, \"Side by side\")",
                target.display()
            )
        })
}

/// The running reference: its topic, schemas and JVMs.
struct ReferenceStack {
    bootstrap: String,
    dbs: Vec<ServiceDb>,
    processes: Vec<ServiceProcess>,
    /// When the first JVM was started.
    started: Instant,
}

impl ReferenceStack {
    /// Provisions topic and schemas and starts `jars` (one per entry of `SERVICES`).
    async fn start(settings: &Settings, jars: &[PathBuf]) -> Result<ReferenceStack> {
        std::fs::create_dir_all(&settings.plan.log_dir)
            .with_context(|| format!("log directory {}", settings.plan.log_dir.display()))?;
        let bootstrap = env::kafka_bootstrap();
        create_topic(&bootstrap, settings.plan.partitions).await?;
        let mut stack = ReferenceStack {
            bootstrap,
            dbs: Vec::new(),
            processes: Vec::new(),
            started: Instant::now(), // set again when the first JVM starts
        };
        for service in SERVICES {
            stack.dbs.push(fresh_schema(&format!("ref_{service}")).await);
        }
        let groups = [names::unique("ref.invoicing"), names::unique("ref.shipping")];
        stack.started = Instant::now();
        for (i, service) in SERVICES.iter().enumerate() {
            let replicas = if *service == "order" {
                1
            } else {
                settings.plan.replicas
            };
            for replica in 1..=replicas {
                let group = (i > 0).then(|| groups[i - 1].as_str());
                stack.spawn(settings, &jars[i], i, replica, group)?;
            }
        }
        Ok(stack)
    }

    fn spawn(
        &mut self,
        settings: &Settings,
        jar: &Path,
        service: usize,
        replica: usize,
        group: Option<&str>,
    ) -> Result<()> {
        let db = &self.dbs[service];
        let port = stack::free_port()?;
        let name = format!("ref-{}-{replica}", SERVICES[service]);
        let log_path = settings.plan.log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("{}", log_path.display()))?;
        let mut command = Command::new(&settings.java);
        // Spring Boot reads its settings from the environment too; the password stays off the command line.
        command
            .args(&settings.java_options)
            // The order's `updated` is written in the JVM's zone as a timestamp without one, and read
            // back as UTC: whatever the options say, the JVM runs in UTC (the last option wins).
            .arg("-Duser.timezone=UTC")
            .arg("-jar")
            .arg(jar)
            .env("TZ", "UTC")
            .env("SERVER_PORT", port.to_string())
            .env("SPRING_KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env(
                "SPRING_DATASOURCE_URL",
                format!(
                    "jdbc:postgresql://{}:{}/{}?currentSchema={}",
                    db.host, db.port, db.name, db.schema
                ),
            )
            .env("SPRING_DATASOURCE_USERNAME", &db.user)
            .env("SPRING_DATASOURCE_PASSWORD", &db.password)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        if let Some(group) = group {
            command.env("SPRING_KAFKA_CONSUMER_GROUP_ID", group);
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {name} with {}", settings.java.display()))?;
        self.processes.push(ServiceProcess::new(
            name,
            SERVICES[service],
            format!("http://127.0.0.1:{port}"),
            child,
        ));
        Ok(())
    }

    /// Waits until every JVM answers its health check and each consumer group holds every partition
    /// (as its members' logs say), so no rebalance falls into the measurement.
    async fn wait_ready(&self, settings: &Settings, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        stack::wait_ready(&self.processes, "/actuator/health", timeout).await?;
        for service in ["invoicing", "shipping"] {
            loop {
                let held: Vec<usize> = self
                    .processes
                    .iter()
                    .filter(|p| p.service == service)
                    .map(|p| assigned_partitions(&settings.plan.log_dir.join(format!("{}.log", p.name))))
                    .collect();
                let everyone = held.len() > settings.plan.partitions as usize || held.iter().all(|n| *n > 0);
                if held.iter().sum::<usize>() == settings.plan.partitions as usize && everyone {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{service}: partitions not assigned within {timeout:?} (members hold {held:?})");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// `table` of `SERVICES[service]`, schema-qualified and quoted.
    fn table(&self, service: usize, table: &str) -> String {
        format!("\"{}\".{table}", self.dbs[service].schema)
    }

    async fn teardown(self) -> Result<()> {
        stack::terminate(&self.processes).await?;
        let dbs: Vec<&ServiceDb> = self.dbs.iter().collect();
        stack::remove(&self.bootstrap, TOPIC, &dbs).await
    }
}

/// Partitions a Spring Kafka consumer holds, from the last "partitions assigned: [order-0, …]" or
/// "partitions revoked: […]" line of its log (0 before its first assignment and after a revocation).
fn assigned_partitions(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|line| {
            if line.contains("partitions revoked: [") {
                Some(None)
            } else {
                line.split_once("partitions assigned: [")
                    .map(|(_, rest)| Some(rest))
            }
        })
        .flatten()
        .map_or(0, |rest| {
            let list = rest.split(']').next().unwrap_or_default();
            list.split(',').filter(|p| !p.trim().is_empty()).count()
        })
}

/// Creates the reference's topic; one left over from an interrupted run is deleted first.
async fn create_topic(bootstrap: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let topic = [NewTopic::new(TOPIC, partitions, TopicReplication::Fixed(1))];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let outcome = admin.create_topics(&topic, &AdminOptions::new()).await?;
        match outcome.into_iter().next() {
            Some(Ok(_)) => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if Instant::now() < deadline => {
                eprintln!("[bench] topic {TOPIC} exists (an earlier run?): deleting it");
                let deleted = admin.delete_topics(&[TOPIC], &AdminOptions::new()).await;
                match deleted.map(|mut results| results.pop()) {
                    Ok(Some(Err((_, code)))) => eprintln!("[bench] deleting topic {TOPIC}: {code}"),
                    Err(error) => eprintln!("[bench] deleting topic {TOPIC}: {error}"),
                    _ => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(Err((_, code))) => bail!(
                "topic {TOPIC} not created: {code} (another reference run on this broker, or topic deletion \
                 disabled?)"
            ),
            None => bail!("topic {TOPIC}: the broker gave no answer"),
        }
    }
}

/// Refuses early when the end-to-end latency could not be read afterwards.
async fn require_commit_timestamps() -> Result<()> {
    let mut conn = PgConnection::connect(&env::database_url()).await?;
    let on: String = sqlx::query_scalar("SELECT current_setting('track_commit_timestamp')")
        .fetch_one(&mut conn)
        .await?;
    if on != "on" {
        bail!(
            "PostgreSQL's track_commit_timestamp is off: the reference stores no time of its own, so its \
             end-to-end latency is read from commit timestamps. Turn it on (ALTER SYSTEM SET \
             track_commit_timestamp = on; then restart PostgreSQL) and run again."
        );
    }
    Ok(())
}

pub async fn run(settings: &Settings) -> Result<Report> {
    let jars: Vec<PathBuf> = SERVICES
        .iter()
        .map(|s| jar(&settings.reference_dir, s))
        .collect::<Result<_>>()?;
    require_commit_timestamps().await?;
    let load_before = procfs::load_average();
    eprintln!(
        "[bench] starting the reference: 1 order, {r} invoicing, {r} shipping ({p} partitions); load average {load_before}",
        r = settings.plan.replicas,
        p = settings.plan.partitions
    );
    let stack = ReferenceStack::start(settings, &jars).await?;
    let outcome = async {
        stack.wait_ready(settings, Duration::from_secs(180)).await?;
        let startup = stack.started.elapsed();
        eprintln!(
            "[bench] the reference is ready after {:.1} s",
            startup.as_secs_f64()
        );
        measure(settings, &stack, load_before, startup).await
    }
    .await;
    run::finish(outcome, stack.teardown(), &settings.plan.log_dir).await
}

async fn measure(
    settings: &Settings,
    stack: &ReferenceStack,
    load_before: String,
    startup: Duration,
) -> Result<Report> {
    let mut conn = PgConnection::connect(&env::database_url()).await?;
    let (orders, invoices, shipments) = (
        stack.table(0, "ordertable"),
        stack.table(1, "invoice"),
        stack.table(2, "shipment"),
    );
    let count = async |conn: &mut PgConnection, table: &str| -> Result<i64> {
        let query = format!("SELECT count(*) FROM {table}");
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .fetch_one(conn)
            .await?)
    };
    // Nothing is polled while the load runs: the reference has no counter to read cheaply.
    let run = run::measure(
        Api::Reference,
        &stack
            .processes
            .iter()
            .find(|p| p.service == "order")
            .context("no order process")?
            .base_url,
        &settings.plan,
        &stack.processes,
        async || String::new(),
        async || {
            Ok((
                count(&mut conn, &orders).await?,
                count(&mut conn, &invoices).await?,
                count(&mut conn, &shipments).await?,
            ))
        },
    )
    .await?;

    let ids = async |conn: &mut PgConnection, table: &str| -> Result<Vec<i64>> {
        let query = format!("SELECT id FROM {table}");
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .fetch_all(conn)
            .await?)
    };
    let order_ids: BTreeSet<i64> = ids(&mut conn, &orders).await?.into_iter().collect();
    // The order service's answer names no order, so what was accepted is checked by number.
    let mut exactly_once = stats::exactly_once(
        &order_ids,
        &order_ids,
        &ids(&mut conn, &invoices).await?,
        &ids(&mut conn, &shipments).await?,
        0,
    );
    exactly_once.accepted = run.load.accepted.len();
    if exactly_once.accepted > exactly_once.orders_stored {
        exactly_once.problems.push(format!(
            "{} orders accepted, {} stored by the order service",
            exactly_once.accepted, exactly_once.orders_stored
        ));
    }

    // (order saved, invoice and shipment both committed), unix µs, of every order.
    let query = format!(
        "SELECT (extract(epoch FROM o.updated) * 1000000)::bigint,
                (extract(epoch FROM greatest(pg_xact_commit_timestamp(i.xmin),
                                             pg_xact_commit_timestamp(s.xmin))) * 1000000)::bigint
         FROM {orders} o JOIN {invoices} i ON i.id = o.id JOIN {shipments} s ON s.id = o.id"
    );
    let mut saved_stored = Vec::new();
    for row in sqlx::query(sqlx::AssertSqlSafe(query))
        .fetch_all(&mut conn)
        .await?
    {
        saved_stored.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?));
    }
    if let Some((saved, stored)) = saved_stored.iter().find(|(saved, stored)| stored < saved) {
        bail!(
            "an invoice or shipment committed before its order was saved ({stored} < {saved} µs): the \
             clocks or time zones of the JVM and PostgreSQL disagree"
        );
    }
    let stored = Stored {
        end_to_end_us: saved_stored
            .iter()
            .filter(|(saved, _)| *saved >= run.window_start_us)
            .map(|(saved, stored)| stored - saved)
            .collect(),
        completed_in_window: saved_stored
            .iter()
            .filter(|(_, stored)| *stored >= run.window_start_us && *stored <= run.end_us)
            .count(),
        exactly_once,
    };
    Ok(Report {
        scenario: "reference",
        implementation: "ewolff/microservice-kafka (Spring Boot)",
        java_options: settings.java_options.clone(),
        figures: Figures::new(&settings.plan, startup, load_before, run, stored),
    })
}

/// The report as a table for people.
pub fn print(report: &Report) {
    report.figures.print_head(
        &format!("reference ({})", report.implementation),
        "latency saved→stored",
    );
    report.figures.print_tail();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_holds_the_partitions_of_its_last_assignment() {
        let dir = std::env::temp_dir().join(names::unique("ref-log"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("ref-invoicing-1.log");
        assert_eq!(assigned_partitions(&log), 0, "no log yet");
        std::fs::write(&log, "INFO Started InvoiceApp in 12.4 seconds\n").unwrap();
        assert_eq!(assigned_partitions(&log), 0, "not assigned yet");
        std::fs::write(
            &log,
            "INFO o.s.k.l.KafkaMessageListenerContainer : g: partitions assigned: [order-0, order-1, order-2, order-3, order-4]\n\
             INFO o.s.k.l.KafkaMessageListenerContainer : g: partitions revoked: [order-0, order-1, order-2, order-3, order-4]\n\
             INFO o.s.k.l.KafkaMessageListenerContainer : g: partitions assigned: [order-3, order-4]\n",
        )
        .unwrap();
        assert_eq!(assigned_partitions(&log), 2);
        std::fs::write(
            &log,
            "INFO g: partitions assigned: [order-0, order-1]\nINFO g: partitions revoked: [order-0, order-1]\n",
        )
        .unwrap();
        assert_eq!(assigned_partitions(&log), 0, "revoked, not yet assigned again");
        std::fs::write(&log, "INFO g: partitions assigned: []\n").unwrap();
        assert_eq!(assigned_partitions(&log), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_jar_says_how_to_build_it() {
        let error = jar(Path::new("/nonexistent"), "order").unwrap_err().to_string();
        assert!(error.contains("microservice-kafka-order-*.jar"), "{error}");
        assert!(error.contains("build the reference first"), "{error}");
    }
}
