//! The system under test: a topic, three schemas with a login role each (provisioned as the operator does),
//! and the three release binaries run as processes, configured only through the environment names the
//! operator sets (`ordersystem_contract::wiring::env`). Everything is removed again on `teardown`.

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordersystem_contract::wiring::env as wiring;
use ordersystem_testkit::schema::{ServiceDb, fresh_schema};
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    /// e.g. `invoicing-2`.
    pub name: String,
    pub service: &'static str,
    pub base_url: String,
    /// Behind a lock so that watching a process (`try_wait`) needs no exclusive borrow of it.
    child: Mutex<Child>,
    pid: u32,
}

impl ServiceProcess {
    pub fn new(name: String, service: &'static str, base_url: String, child: Child) -> ServiceProcess {
        ServiceProcess {
            name,
            service,
            base_url,
            pid: child.id(),
            child: Mutex::new(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child().try_wait()?)
    }
}

impl Drop for ServiceProcess {
    /// A run that failed midway still stops its processes (their schemas stay for inspection).
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fails naming the first process that is no longer running.
pub fn check_alive(processes: &[ServiceProcess]) -> Result<()> {
    for process in processes {
        if let Some(exit) = process.exited()? {
            bail!("{} exited with {exit} during the run (see its log)", process.name);
        }
    }
    Ok(())
}

/// SIGTERM every process (they finish, commit and leave their groups) and wait up to 30 s for each before
/// killing it.
pub async fn terminate(processes: &[ServiceProcess]) -> Result<()> {
    for process in processes.iter() {
        if let Ok(pid) = i32::try_from(process.pid()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for process in processes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while process.exited()?.is_none() {
            if Instant::now() > deadline {
                let _ = process.child().kill();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    for process in processes {
        let url = format!("{}{path}", process.base_url);
        while !http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            if let Some(exit) = process.exited()? {
                bail!(
                    "{} exited with {exit} before it was ready (see its log)",
                    process.name
                );
            }
            if Instant::now() > deadline {
                bail!("{} not ready within {timeout:?}", process.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A free TCP port on loopback for a service to listen on.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
                    held.push(scrape_one(&http, &process.base_url, "ordersystem_assigned_partitions").await);
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
        let port = free_port()?;
        let name = format!("{service}-{replica}");
        let log_path = config.log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("{}", log_path.display()))?;
        let mut command = Command::new(binary(&config.bin_dir, service)?);
        command
            .env_clear()
            .env(wiring::LISTEN_ADDR, format!("127.0.0.1:{port}"))
            .env(wiring::LOG_FORMAT, "json")
            .env(wiring::DATABASE_HOST, &db.host)
            .env(wiring::DATABASE_PORT, db.port.to_string())
            .env(wiring::DATABASE_NAME, &db.name)
            .env(wiring::DATABASE_USER, &db.user)
            .env(wiring::DATABASE_PASSWORD, &db.password)
            .env(wiring::DATABASE_SCHEMA, &db.schema)
            .env(wiring::DATABASE_SSLMODE, "prefer")
            .env(wiring::KAFKA_BOOTSTRAP_SERVERS, &self.bootstrap)
            .env(wiring::KAFKA_TOPIC, &self.topic)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        if let Some(group) = group {
            command
                .env(wiring::KAFKA_GROUP_ID, group)
                .env(wiring::KAFKA_GROUP_PROTOCOL, "consumer");
        }
        let child = command.spawn().with_context(|| format!("start {name}"))?;
        self.processes.push(ServiceProcess::new(
            name,
            service,
            format!("http://127.0.0.1:{port}"),
            child,
        ));
        Ok(())
    }

    /// Stop every process, then remove topic, schemas and roles.
    pub async fn teardown(self) -> Result<()> {
        terminate(&self.processes).await?;
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
