//! The `services` scenario: orders over HTTP into the order service, end to end through the outbox relay,
//! Kafka and both consumers into their tables; latency per order, sustained throughput, RSS and CPU per
//! service, and at the end the exactly-once check (a run that loses or duplicates anything fails).
//!
//! Latency of one order = (the later of its invoice's and its shipment's `created_at`) − (the wall-clock
//! time the load generator sent its `POST`). `created_at` is the consumer transaction's `now()`, stamped by
//! Postgres from the same clock; the commit that follows it (one WAL flush) is not included. Nothing is
//! polled while the load runs except each service's `/metrics` once a second for the progress line.

use crate::load::Api;
use crate::procfs;
use crate::run::{self, Figures, Measured, Plan, Stored};
use crate::stack::{self, Stack, StackConfig};
use crate::stats::{self, Latency};
use anyhow::{Context, Result};
use ordersystem_testkit::schema::ServiceDb;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// The scenario's settings (see `--help` of `ordersystem-bench services`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub plan: Plan,
    pub bin_dir: PathBuf,
    /// The collector the services export their spans to; none when `None`.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// End to end: the `POST` sent → invoice and shipment stored (the later `created_at`).
    #[serde(flatten)]
    pub figures: Figures,
    /// Where the end-to-end time goes, orders sent in the window: the order's transaction → the relay
    /// round that published its outbox row began (`outbox.sent_at - created_at`, both `now()` of their
    /// transactions), and that round → both rows stored (Kafka, the consumers, their transactions).
    pub outbox_wait: Latency,
    pub relay_to_stored: Latency,
    pub durability: serde_json::Value,
}

/// Durability settings in force: Postgres server settings, the topic's replication and configs, and the
/// relay producer's settings exactly as the service builds them.
async fn durability(stack: &Stack) -> Result<serde_json::Value> {
    let postgres = postgres_durability().await?;
    let topic = topic_durability(&stack.bootstrap, &stack.topic).await?;
    let kafka = ordersystem_service_kit::config::KafkaArgs {
        bootstrap_servers: stack.bootstrap.clone(),
        topic: stack.topic.clone(),
        metadata_refresh_ms: 30_000,
        security: Default::default(),
    };
    let producer = ordersystem_service_kit::kafka::producer_config(&kafka, 60_000);
    let mut relay = serde_json::Map::new();
    for key in ["acks", "enable.idempotence", "linger.ms"] {
        relay.insert(
            key.into(),
            producer.get(key).unwrap_or("(librdkafka default)").into(),
        );
    }
    Ok(serde_json::json!({"postgres": postgres, "topic": topic, "relay_producer": relay}))
}

/// The PostgreSQL settings a commit's durability depends on.
async fn postgres_durability() -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut conn = PgConnection::connect(&ordersystem_testkit::env::database_url()).await?;
    let mut postgres = serde_json::Map::new();
    for name in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "full_page_writes",
        "wal_sync_method",
    ] {
        let value: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = $1")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        postgres.insert(name.into(), value.into());
    }
    Ok(postgres)
}

/// The topic's settings a record's durability depends on, and its replication factor.
async fn topic_durability(bootstrap: &str, name: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let mut topic = serde_json::Map::new();
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &AdminOptions::new())
        .await?;
    for resource in configs.into_iter().flatten() {
        for entry in resource.entries {
            if [
                "min.insync.replicas",
                "unclean.leader.election.enable",
                "flush.messages",
                "flush.ms",
            ]
            .contains(&entry.name.as_str())
            {
                topic.insert(entry.name.clone(), entry.value.unwrap_or_default().into());
            }
        }
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(10))?;
    let replication = metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().first())
        .map_or(0, |p| p.replicas().len());
    topic.insert("replication_factor".into(), replication.into());
    Ok(topic)
}

/// (order id, unix µs of `created_at`) of every row of `table` in `db`'s schema.
async fn stored_at(db: &ServiceDb, table: &str) -> Result<Vec<(i64, i64)>> {
    let mut conn = db.connect().await;
    let query = format!("SELECT order_id, (extract(epoch FROM created_at) * 1000000)::bigint FROM {table}");
    let rows = sqlx::query(sqlx::AssertSqlSafe(query))
        .fetch_all(&mut conn)
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

async fn count(db: &ServiceDb, table: &str) -> Result<i64> {
    let mut conn = db.connect().await;
    let query = format!("SELECT count(*) FROM {table}");
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .fetch_one(&mut conn)
        .await?)
}

pub async fn run(settings: &Settings) -> Result<Report> {
    let load_before = procfs::load_average();
    eprintln!(
        "[bench] starting 1 order, {r} invoicing, {r} shipping ({p} partitions); load average {load_before}",
        r = settings.plan.replicas,
        p = settings.plan.partitions
    );
    let mut stack = Stack::start(&StackConfig {
        bin_dir: settings.bin_dir.clone(),
        partitions: settings.plan.partitions,
        consumer_replicas: settings.plan.replicas,
        log_dir: settings.plan.log_dir.clone(),
        otlp_endpoint: settings.otlp_endpoint.clone(),
    })
    .await?;
    let outcome = measure(settings, &mut stack, load_before).await;
    run::finish(outcome, stack.teardown(), &settings.plan.log_dir).await
}

async fn measure(settings: &Settings, stack: &mut Stack, load_before: String) -> Result<Report> {
    let durability = durability(stack).await?;
    let run = run_load(settings, stack).await?;
    let (stored, outbox_wait, relay_to_stored) = stored(stack, &run).await?;
    Ok(Report {
        scenario: "services",
        figures: Figures::new(&settings.plan, stack.startup, load_before, run, stored),
        outbox_wait: Latency::of(outbox_wait),
        relay_to_stored: Latency::of(relay_to_stored),
        durability,
    })
}

/// The load against order, its progress read from the consumers' counters and the three tables.
async fn run_load(settings: &Settings, stack: &Stack) -> Result<Measured> {
    let order_url = stack
        .processes
        .iter()
        .find(|p| p.service == "order")
        .map(|p| p.url(""))
        .context("no order process")?;
    let http = reqwest::Client::new();
    let urls = |service: &str| -> Vec<String> {
        stack
            .processes
            .iter()
            .filter(|p| p.service == service)
            .map(|p| p.url(""))
            .collect()
    };
    let (invoicing, shipping) = (urls("invoicing"), urls("shipping"));
    let consumed = "ordersystem_events_consumed_total";
    run::measure(
        Api::OrderSystem,
        &order_url,
        &settings.plan,
        &stack.processes,
        async || {
            format!(
                " invoiced {:>7} shipped {:>7}",
                stack::scrape(&http, &invoicing, consumed).await,
                stack::scrape(&http, &shipping, consumed).await,
            )
        },
        async || {
            Ok((
                count(&stack.order_db, "orders").await?,
                count(&stack.invoicing_db, "invoices").await?,
                count(&stack.shipping_db, "shipments").await?,
            ))
        },
    )
    .await
}

/// What was stored after `run`: exactly once, the end-to-end latencies of the orders sent in the window,
/// and, for each, its wait in the outbox and the time from its relay round to stored.
async fn stored(stack: &Stack, run: &Measured) -> Result<(Stored, Vec<i64>, Vec<i64>)> {
    let order_ids: BTreeSet<i64> = stored_at_ids(&stack.order_db).await?;
    let invoices = stored_at(&stack.invoicing_db, "invoices").await?;
    let shipments = stored_at(&stack.shipping_db, "shipments").await?;
    let dead_letters =
        count(&stack.invoicing_db, "dead_letters").await? + count(&stack.shipping_db, "dead_letters").await?;
    let accepted_ids: BTreeSet<i64> = run.load.accepted.iter().filter_map(|a| a.order_id).collect();
    let exactly_once = stats::exactly_once(
        &accepted_ids,
        &order_ids,
        &invoices.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        &shipments.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        dead_letters,
    );

    // Order id → the later of its invoice's and its shipment's `created_at`.
    let stored: BTreeMap<i64, i64> = {
        let ships: BTreeMap<i64, i64> = shipments.into_iter().collect();
        invoices
            .into_iter()
            .filter_map(|(id, at)| ships.get(&id).map(|s| (id, at.max(*s))))
            .collect()
    };
    let end_to_end_us: Vec<i64> = run
        .in_window()
        .filter_map(|a| a.order_id.and_then(|id| stored.get(&id)).map(|at| at - a.sent_us))
        .collect();
    let outbox = outbox_times(&stack.order_db).await?;
    let (mut outbox_wait, mut relay_to_stored) = (Vec::new(), Vec::new());
    for a in run.in_window() {
        let Some(id) = a.order_id else { continue };
        if let (Some((created, sent)), Some(at)) = (outbox.get(&id), stored.get(&id)) {
            outbox_wait.push(sent - created);
            relay_to_stored.push(at - sent);
        }
    }
    let completed_in_window = stored
        .values()
        .filter(|at| **at >= run.window_start_us && **at <= run.end_us)
        .count();
    let stored = Stored {
        end_to_end_us,
        completed_in_window,
        exactly_once,
    };
    Ok((stored, outbox_wait, relay_to_stored))
}

/// Order id → (unix µs the outbox row was written, unix µs the relay round that published it began).
async fn outbox_times(db: &ServiceDb) -> Result<BTreeMap<i64, (i64, i64)>> {
    let mut conn = db.connect().await;
    let rows = sqlx::query(
        "SELECT record_key, (extract(epoch FROM created_at) * 1000000)::bigint,
                (extract(epoch FROM sent_at) * 1000000)::bigint
         FROM outbox WHERE sent_at IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut times = BTreeMap::new();
    for row in rows {
        let key: String = row.try_get(0)?;
        if let Ok(id) = key.parse::<i64>() {
            times.insert(id, (row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(times)
}

async fn stored_at_ids(db: &ServiceDb) -> Result<BTreeSet<i64>> {
    let mut conn = db.connect().await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM orders")
        .fetch_all(&mut conn)
        .await?;
    Ok(ids.into_iter().collect())
}

/// The report as a table for people.
pub fn print(report: &Report) {
    report.figures.print_head("services", "latency end to end");
    run::print_latency("  of which outbox wait", &report.outbox_wait);
    run::print_latency("relay round → stored", &report.relay_to_stored);
    report.figures.print_tail();
}
