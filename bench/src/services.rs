//! The `services` scenario: orders over HTTP into the order service, end to end through the outbox relay,
//! Kafka and both consumers into their tables; latency per order, sustained throughput, RSS and CPU per
//! service, and at the end the exactly-once check (a run that loses or duplicates anything fails).
//!
//! Latency of one order = (the later of its invoice's and its shipment's `created_at`) − (the wall-clock
//! time the load generator sent its `POST`). `created_at` is the consumer transaction's `now()`, stamped by
//! Postgres from the same clock; the commit that follows it (one WAL flush) is not included. Nothing is
//! polled while the load runs except each service's `/metrics` once a second for the progress line.

use crate::load::{self, Accepted, Pace, Progress};
use crate::meter::{self, Meter, Usage, round1};
use crate::procfs;
use crate::stack::{Stack, StackConfig};
use crate::stats::{self, ExactlyOnce, Latency};
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
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// The scenario's settings (see `--help` of `ordersystem-bench services`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub pace: Pace,
    pub count: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub replicas: usize,
    pub partitions: i32,
    pub drain_timeout: Duration,
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub mode: String,
    pub replicas: usize,
    pub partitions: i32,
    /// From starting the processes until every one answered `/readyz` and every consumer held partitions.
    pub startup_s: f64,
    pub warmup_s: f64,
    /// Length of the measured window (after the warm-up, until the last order was sent).
    pub window_s: f64,
    pub sent: u64,
    pub accepted: usize,
    pub failed: u64,
    pub failure_examples: Vec<String>,
    /// Orders accepted per second in the window.
    pub accepted_per_s: f64,
    /// Orders whose invoice and shipment were both stored within the window, per second.
    pub end_to_end_per_s: f64,
    /// Sent → invoice and shipment stored, orders sent in the window.
    pub end_to_end_latency: Latency,
    /// `POST /api/orders` round trip, orders sent in the window.
    pub accept_latency: Latency,
    /// Where the end-to-end time goes, orders sent in the window: the order's transaction → the relay
    /// round that published its outbox row began (`outbox.sent_at - created_at`, both `now()` of their
    /// transactions), and that round → both rows stored (Kafka, the consumers, their transactions).
    pub outbox_wait: Latency,
    pub relay_to_stored: Latency,
    /// From the last order sent until every order was stored.
    pub drain_s: f64,
    #[serde(flatten)]
    pub usage: Usage,
    pub load_average_before: String,
    pub load_average_after: String,
    pub exactly_once: ExactlyOnce,
    pub durability: serde_json::Value,
}

/// Durability settings in force: Postgres server settings, the topic's replication and configs, and the
/// relay producer's settings exactly as the service builds them.
async fn durability(stack: &Stack) -> Result<serde_json::Value> {
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
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .create()?;
    let mut topic = serde_json::Map::new();
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(&stack.topic)], &AdminOptions::new())
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
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&stack.topic), Duration::from_secs(10))?;
    let replication = metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().first())
        .map_or(0, |p| p.replicas().len());
    topic.insert("replication_factor".into(), replication.into());
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
        r = settings.replicas,
        p = settings.partitions
    );
    let mut stack = Stack::start(&StackConfig {
        bin_dir: settings.bin_dir.clone(),
        partitions: settings.partitions,
        consumer_replicas: settings.replicas,
        log_dir: settings.log_dir.clone(),
    })
    .await?;
    let outcome = measure(settings, &mut stack, load_before).await;
    if outcome.is_ok() {
        stack.teardown().await.context("teardown")?;
    } else {
        eprintln!("[bench] logs of the services: {}", settings.log_dir.display());
    }
    outcome
}

async fn measure(settings: &Settings, stack: &mut Stack, load_before: String) -> Result<Report> {
    let durability = durability(stack).await?;
    let order_url = stack
        .processes
        .iter()
        .find(|p| p.service == "order")
        .map(|p| p.base_url.clone())
        .context("no order process")?;
    // Idle: ready, connected, nothing to do for a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut meter = Meter::start(&stack.processes);
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let total = settings.warmup + settings.duration;
    let load = tokio::spawn({
        let (url, pace, count, progress) =
            (order_url.clone(), settings.pace, settings.count, progress.clone());
        async move { load::run(load::Api::OrderSystem, &url, pace, count, total, progress).await }
    });
    let http = reqwest::Client::new();
    let mut last_accepted = 0;
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.check_alive()?;
        meter.sample();
        let accepted = progress.accepted.load(Ordering::Relaxed);
        let phase = if started.elapsed() < settings.warmup {
            "warm-up"
        } else {
            "measure"
        };
        eprintln!(
            "[bench] {:>5.1}s {phase:<7} sent {:>7} accepted {:>7} ({:>5}/s) failed {} invoiced {:>7} shipped {:>7} load {}",
            started.elapsed().as_secs_f64(),
            progress.sent.load(Ordering::Relaxed),
            accepted,
            accepted - last_accepted,
            progress.failed.load(Ordering::Relaxed),
            stack
                .scrape(&http, "invoicing", "ordersystem_events_consumed_total")
                .await,
            stack
                .scrape(&http, "shipping", "ordersystem_events_consumed_total")
                .await,
            procfs::load_average(),
        );
        last_accepted = accepted;
    }
    let result = load.await?;
    let load_end_wall = SystemTime::now();

    let drain = drain(settings.drain_timeout, &mut meter, async || {
        Ok((
            count(&stack.order_db, "orders").await?,
            count(&stack.invoicing_db, "invoices").await?,
            count(&stack.shipping_db, "shipments").await?,
        ))
    })
    .await?;
    let usage = meter.finish(result.accepted.len());
    let load_after = procfs::load_average();
    // Settle, then the exactly-once check sees everything a redelivery might still add.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.check_alive()?;

    let order_ids: BTreeSet<i64> = stored_at_ids(&stack.order_db).await?;
    let invoices = stored_at(&stack.invoicing_db, "invoices").await?;
    let shipments = stored_at(&stack.shipping_db, "shipments").await?;
    let dead_letters =
        count(&stack.invoicing_db, "dead_letters").await? + count(&stack.shipping_db, "dead_letters").await?;
    let accepted_ids: BTreeSet<i64> = result.accepted.iter().filter_map(|a| a.order_id).collect();
    let check = stats::exactly_once(
        &accepted_ids,
        &order_ids,
        &invoices.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        &shipments.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        dead_letters,
    );

    let start_us = load::unix_micros(started_wall);
    let end_us = load::unix_micros(load_end_wall);
    let window_start = load::window_start(start_us, end_us, settings.warmup);
    let window_s = (end_us - window_start) as f64 / 1e6;
    let stored: BTreeMap<i64, i64> = {
        let ships: BTreeMap<i64, i64> = shipments.into_iter().collect();
        invoices
            .into_iter()
            .filter_map(|(id, at)| ships.get(&id).map(|s| (id, at.max(*s))))
            .collect()
    };
    let in_window: Vec<&Accepted> = result
        .accepted
        .iter()
        .filter(|a| a.sent_us >= window_start)
        .collect();
    let e2e: Vec<i64> = in_window
        .iter()
        .filter_map(|a| a.order_id.and_then(|id| stored.get(&id)).map(|at| at - a.sent_us))
        .collect();
    let outbox = outbox_times(&stack.order_db).await?;
    let (mut outbox_wait, mut relay_to_stored) = (Vec::new(), Vec::new());
    for a in &in_window {
        let Some(id) = a.order_id else { continue };
        if let (Some((created, sent)), Some(at)) = (outbox.get(&id), stored.get(&id)) {
            outbox_wait.push(sent - created);
            relay_to_stored.push(at - sent);
        }
    }
    let completed_in_window = stored
        .values()
        .filter(|at| **at >= window_start && **at <= end_us)
        .count();

    Ok(Report {
        scenario: "services",
        mode: load::describe(settings.pace),
        replicas: settings.replicas,
        partitions: settings.partitions,
        startup_s: round1(stack.startup.as_secs_f64()),
        warmup_s: (window_start - start_us) as f64 / 1e6,
        window_s: round1(window_s),
        sent: progress.sent.load(Ordering::Relaxed),
        accepted: result.accepted.len(),
        failed: result.failures,
        failure_examples: result.failure_examples,
        accepted_per_s: round1(in_window.len() as f64 / window_s.max(1e-9)),
        end_to_end_per_s: round1(completed_in_window as f64 / window_s.max(1e-9)),
        end_to_end_latency: Latency::of(e2e),
        accept_latency: Latency::of(in_window.iter().map(|a| a.accept_us).collect()),
        outbox_wait: Latency::of(outbox_wait),
        relay_to_stored: Latency::of(relay_to_stored),
        drain_s: round1(drain.as_secs_f64()),
        usage,
        load_average_before: load_before,
        load_average_after: load_after,
        exactly_once: check,
        durability,
    })
}

/// Waits until `stored()` — (orders, invoices, shipments) — shows an invoice and a shipment for every
/// order, or `timeout` has passed; samples RSS meanwhile. Returns how long it waited.
pub async fn drain(
    timeout: Duration,
    meter: &mut Meter,
    mut stored: impl AsyncFnMut() -> Result<(i64, i64, i64)>,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let (orders, invoices, shipments) = stored().await?;
        meter.sample();
        if invoices >= orders && shipments >= orders {
            break;
        }
        if started.elapsed() > timeout {
            eprintln!(
                "[bench] drain timed out after {timeout:?}: {invoices} invoices, {shipments} shipments of {orders} orders"
            );
            break;
        }
        eprintln!("[bench] draining: {invoices} invoices, {shipments} shipments of {orders} orders");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(started.elapsed())
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
    let l = &report.end_to_end_latency;
    let a = &report.accept_latency;
    println!(
        "services: {} | {} invoicing + {} shipping replicas, {} partitions; ready after {:.1} s",
        report.mode, report.replicas, report.replicas, report.partitions, report.startup_s
    );
    println!(
        "  window                {:>8.1} s after {:.1} s warm-up; drain {:.1} s",
        report.window_s, report.warmup_s, report.drain_s
    );
    println!(
        "  orders                {:>8} sent, {} accepted, {} failed",
        report.sent, report.accepted, report.failed
    );
    println!("  accepted              {:>8.1} orders/s", report.accepted_per_s);
    println!(
        "  end to end            {:>8.1} orders/s (invoice and shipment stored within the window)",
        report.end_to_end_per_s
    );
    println!(
        "  latency end to end    p50 {:>8.1} ms  p90 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} orders)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.samples
    );
    println!(
        "  latency POST accepted p50 {:>8.1} ms  p90 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
        a.p50_ms, a.p90_ms, a.p99_ms, a.max_ms
    );
    for (name, l) in [
        ("  of which outbox wait", &report.outbox_wait),
        ("  relay round → stored", &report.relay_to_stored),
    ] {
        println!(
            "{name:<23} p50 {:>8.1} ms  p90 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        );
    }
    meter::print(&report.usage);
    println!(
        "  machine CPU busy      {:>8.1} %; load average before {} after {}",
        report.usage.machine_cpu_busy_percent, report.load_average_before, report.load_average_after
    );
    stats::print_check(&report.exactly_once);
}
