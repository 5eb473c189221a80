//! The system under test: a topic, three schemas with a login role each (provisioned as the operator does),
//! and the three release binaries run as processes, configured only through the environment names the
//! operator sets (`ordersystem_contract::wiring::env`). Everything is removed again on `teardown`.

use anyhow::{Context, Result, bail};
use ordersystem_contract::wiring::env as wiring;
pub use ordersystem_testkit::process::ServiceProcess;
use ordersystem_testkit::process::{self};
use ordersystem_testkit::schema::{ServiceDb, fresh_schema};
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fails naming the first process that is no longer running.
pub fn check_alive(processes: &[ServiceProcess]) -> Result<()> {
    for process in processes {
        if let Some(exit) = process.exited() {
            bail!("{} exited with {exit} during the run (see its log)", process.name);
        }
    }
    Ok(())
}

/// Delete `topic` and drop the schemas and login roles of `dbs`.
pub async fn remove(bootstrap: &str, topic: &str, dbs: &[&ServiceDb]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    admin.delete_topics(&[topic], &AdminOptions::new()).await?;
    let mut conn = PgConnection::connect(&env::database_url()).await?;
    for db in dbs {
        // Names come from `names::unique` ([a-z0-9_]); quoted anyway.
        for statement in [
            format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", db.schema),
            format!("DROP ROLE IF EXISTS \"{}\"", db.user),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await?;
        }
    }
    Ok(())
}

/// What `Stack::start` needs.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub bin_dir: PathBuf,
    pub partitions: i32,
    pub consumer_replicas: usize,
    pub log_dir: PathBuf,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` of every service: their spans go there.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug)]
pub struct Stack {
    pub topic: String,
    pub bootstrap: String,
    pub order_db: ServiceDb,
    pub invoicing_db: ServiceDb,
    pub shipping_db: ServiceDb,
    pub processes: Vec<ServiceProcess>,
    /// From starting the first process until every one was ready and every consumer held its partitions.
    pub startup: Duration,
}

/// Waits until every process answers `GET <path>` with a success, failing early for one that exited.
pub async fn wait_ready(processes: &[ServiceProcess], path: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for process in processes {
        let left = deadline.saturating_duration_since(Instant::now());
        process
            .wait_answering(path, left)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

const SERVICES: [&str; 3] = ["order", "invoicing", "shipping"];

fn binary(bin_dir: &Path, service: &str) -> Result<PathBuf> {
    let path = bin_dir.join(format!("ordersystem-{service}"));
    if !path.is_file() {
        bail!(
            "{} is missing: build the release binaries first (cargo build --release --workspace --bins) \
             or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}

impl Stack {
    /// Provision and start everything, and wait until every process answers `/readyz`.
    pub async fn start(config: &StackConfig) -> Result<Stack> {
        for service in SERVICES {
            binary(&config.bin_dir, service)?;
        }
        let bootstrap = env::kafka_bootstrap();
        let topic = names::unique("bench");
        ordersystem_testkit::kafka::create_topic(&bootstrap, &topic, config.partitions).await;
        let mut stack = Stack {
            topic,
            bootstrap,
            order_db: fresh_schema("bench_order").await,
            invoicing_db: fresh_schema("bench_invoicing").await,
            shipping_db: fresh_schema("bench_shipping").await,
            processes: Vec::new(),
            startup: Duration::ZERO,
        };
        std::fs::create_dir_all(&config.log_dir)
            .with_context(|| format!("log directory {}", config.log_dir.display()))?;
        // Consumers first, as the operator gates it: order starts once its readers are there.
        let groups = (names::unique("bench.invoicing"), names::unique("bench.shipping"));
        let starting = Instant::now();
        for replica in 1..=config.consumer_replicas {
            stack.spawn(config, "invoicing", replica, Some(&groups.0))?;
            stack.spawn(config, "shipping", replica, Some(&groups.1))?;
        }
        stack.spawn(config, "order", 1, None)?;
        wait_ready(&stack.processes, "/readyz", Duration::from_secs(60)).await?;
        stack.wait_assigned(config, Duration::from_secs(60)).await?;
        stack.startup = starting.elapsed();
        Ok(stack)
    }

    /// Wait until each consumer group has every partition assigned and, where there are enough partitions,
    /// every member holds some: a rebalance in the middle of the measurement would be measured instead.
    async fn wait_assigned(&self, config: &StackConfig, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        let partitions = f64::from(config.partitions);
        for service in ["invoicing", "shipping"] {
            loop {
                let mut held = Vec::new();
                for process in self.processes.iter().filter(|p| p.service == service) {
                    held.push(scrape_one(&http, &process.url(""), "ordersystem_assigned_partitions").await);
                }
                let everyone = held.len() > config.partitions as usize || held.iter().all(|n| *n > 0.0);
                if held.iter().sum::<f64>() == partitions && everyone {
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

    fn spawn(
        &mut self,
        config: &StackConfig,
        service: &'static str,
        replica: usize,
        group: Option<&str>,
    ) -> Result<()> {
        let db = match service {
            "order" => &self.order_db,
            "invoicing" => &self.invoicing_db,
            _ => &self.shipping_db,
        };
        let port = process::free_port();
        let mut env = process::wiring(port, db, &self.bootstrap, &self.topic);
        env.push((wiring::LOG_FORMAT.into(), "json".into()));
        if let Some(endpoint) = &config.otlp_endpoint {
            env.push((wiring::OTEL_EXPORTER_OTLP_ENDPOINT.into(), endpoint.clone()));
        }
        if let Some(group) = group {
            env.push((wiring::KAFKA_GROUP_ID.into(), group.into()));
            env.push((wiring::KAFKA_GROUP_PROTOCOL.into(), "consumer".into()));
        }
        let name = format!("{service}-{replica}");
        let bin = binary(&config.bin_dir, service)?;
        let mut process = ServiceProcess::launch(service, bin, db.clone(), port, env)
            .logging_to(name.clone(), &config.log_dir)
            .with_context(|| format!("log of {name} in {}", config.log_dir.display()))?;
        process.try_start(&[]).with_context(|| format!("start {name}"))?;
        self.processes.push(process);
        Ok(())
    }

    /// Stop every process, then remove topic, schemas and roles.
    pub async fn teardown(mut self) -> Result<()> {
        process::terminate_all(&mut self.processes).await;
        remove(
            &self.bootstrap,
            &self.topic,
            &[&self.order_db, &self.invoicing_db, &self.shipping_db],
        )
        .await
    }
}

/// Sum of `metric` over the processes at `base_urls`, as their `/metrics` report it.
pub async fn scrape(http: &reqwest::Client, base_urls: &[String], metric: &str) -> f64 {
    let mut sum = 0.0;
    for url in base_urls {
        sum += scrape_one(http, url, metric).await;
    }
    sum
}

/// `metric` as one process's `/metrics` reports it (summed over labels; 0 when unreachable).
async fn scrape_one(http: &reqwest::Client, base_url: &str, metric: &str) -> f64 {
    let Ok(response) = http.get(format!("{base_url}/metrics")).send().await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with(metric))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
