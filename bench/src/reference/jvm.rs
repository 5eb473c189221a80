//! The reference as processes: its jars found in the user's build, run as JVMs beside the same broker and
//! PostgreSQL, with a topic of the reference's fixed name and a schema and login role per service.

use super::{SERVICES, Settings, TOPIC};
use crate::stack;
use anyhow::{Context, Result, bail};
use ordersystem_testkit::process::{self, ServiceProcess};
use ordersystem_testkit::schema::{ServiceDb, fresh_schema};
use ordersystem_testkit::{env, names};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The reference's jar of `service` under its build directory (`mvn package` puts it in `target/`).
pub(super) fn jar(reference_dir: &Path, service: &str) -> Result<PathBuf> {
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
pub(super) struct ReferenceStack {
    pub(super) bootstrap: String,
    pub(super) dbs: Vec<ServiceDb>,
    pub(super) processes: Vec<ServiceProcess>,
    /// When the first JVM was started.
    pub(super) started: Instant,
}

impl ReferenceStack {
    /// Provisions topic and schemas and starts `jars` (one per entry of `SERVICES`).
    pub(super) async fn start(settings: &Settings, jars: &[PathBuf]) -> Result<ReferenceStack> {
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
        let port = process::free_port();
        let name = format!("ref-{}-{replica}", SERVICES[service]);
        // Spring Boot reads its settings from the environment too; the password stays off the command line.
        let url = format!(
            "jdbc:postgresql://{}:{}/{}?currentSchema={}",
            db.host, db.port, db.name, db.schema
        );
        let mut env = vec![
            ("TZ", "UTC".to_string()),
            ("SERVER_PORT", port.to_string()),
            ("SPRING_KAFKA_BOOTSTRAP_SERVERS", self.bootstrap.clone()),
            ("SPRING_DATASOURCE_URL", url),
            ("SPRING_DATASOURCE_USERNAME", db.user.clone()),
            ("SPRING_DATASOURCE_PASSWORD", db.password.clone()),
        ];
        if let Some(group) = group {
            env.push(("SPRING_KAFKA_CONSUMER_GROUP_ID", group.to_string()));
        }
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        // The order's `updated` is written in the JVM's zone as a timestamp without one, and read back as
        // UTC: whatever the options say, the JVM runs in UTC (the last option wins).
        let mut args = settings.java_options.clone();
        args.extend([
            "-Duser.timezone=UTC".into(),
            "-jar".into(),
            jar.to_string_lossy().into_owned(),
        ]);
        let mut jvm = ServiceProcess::launch(SERVICES[service], settings.java.clone(), db.clone(), port, env)
            .args(&args)
            .inheriting_env()
            .logging_to(name.clone(), &settings.plan.log_dir)
            .with_context(|| format!("log of {name}"))?;
        jvm.try_start(&[])
            .with_context(|| format!("start {name} with {}", settings.java.display()))?;
        self.processes.push(jvm);
        Ok(())
    }

    /// Waits until every JVM answers its health check and each consumer group holds every partition
    /// (as its members' logs say), so no rebalance falls into the measurement.
    pub(super) async fn wait_ready(&self, settings: &Settings, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        stack::wait_ready(&self.processes, "/actuator/health", timeout).await?;
        for service in ["invoicing", "shipping"] {
            loop {
                let held: Vec<usize> = self
                    .processes
                    .iter()
                    .filter(|p| p.service == service)
                    .map(|p| assigned_partitions(p.log_path()))
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
    pub(super) fn table(&self, service: usize, table: &str) -> String {
        format!("\"{}\".{table}", self.dbs[service].schema)
    }

    pub(super) async fn teardown(mut self) -> Result<()> {
        process::terminate_all(&mut self.processes).await;
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
