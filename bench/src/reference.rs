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

mod jvm;

use crate::load::Api;
use crate::procfs;
use crate::run::{self, Figures, Measured, Plan, Stored};
use crate::stats::{self, ExactlyOnce};
use anyhow::{Context, Result, bail};
use jvm::{ReferenceStack, jar};
use ordersystem_testkit::env;
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

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

async fn count(conn: &mut PgConnection, table: &str) -> Result<i64> {
    let query = format!("SELECT count(*) FROM {table}");
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .fetch_one(conn)
        .await?)
}

async fn ids(conn: &mut PgConnection, table: &str) -> Result<Vec<i64>> {
    let query = format!("SELECT id FROM {table}");
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .fetch_all(conn)
        .await?)
}

/// The load against the reference's order service; its progress read from the three `tables` (orders,
/// invoices, shipments). Nothing is polled while the load runs: the reference has no counter to read
/// cheaply.
async fn run_load(
    settings: &Settings,
    stack: &ReferenceStack,
    conn: &mut PgConnection,
    [orders, invoices, shipments]: &[String; 3],
) -> Result<Measured> {
    let order = stack
        .processes
        .iter()
        .find(|p| p.service == "order")
        .context("no order process")?;
    run::measure(
        Api::Reference,
        &order.url(""),
        &settings.plan,
        &stack.processes,
        async || String::new(),
        async || {
            Ok((
                count(conn, orders).await?,
                count(conn, invoices).await?,
                count(conn, shipments).await?,
            ))
        },
    )
    .await
}

/// Every stored order invoiced and shipped once. The order service's answer names no order, so what was
/// accepted is checked by number.
async fn exactly_once(
    conn: &mut PgConnection,
    [orders, invoices, shipments]: &[String; 3],
    accepted: usize,
) -> Result<ExactlyOnce> {
    let order_ids: BTreeSet<i64> = ids(conn, orders).await?.into_iter().collect();
    let mut exactly_once = stats::exactly_once(
        &order_ids,
        &order_ids,
        &ids(conn, invoices).await?,
        &ids(conn, shipments).await?,
        0,
    );
    exactly_once.accepted = accepted;
    if exactly_once.accepted > exactly_once.orders_stored {
        exactly_once.problems.push(format!(
            "{} orders accepted, {} stored by the order service",
            exactly_once.accepted, exactly_once.orders_stored
        ));
    }
    Ok(exactly_once)
}

/// (order saved, invoice and shipment both committed), unix µs, of every order.
async fn saved_and_stored(
    conn: &mut PgConnection,
    [orders, invoices, shipments]: &[String; 3],
) -> Result<Vec<(i64, i64)>> {
    let query = format!(
        "SELECT (extract(epoch FROM o.updated) * 1000000)::bigint,
                (extract(epoch FROM greatest(pg_xact_commit_timestamp(i.xmin),
                                             pg_xact_commit_timestamp(s.xmin))) * 1000000)::bigint
         FROM {orders} o JOIN {invoices} i ON i.id = o.id JOIN {shipments} s ON s.id = o.id"
    );
    let mut saved_stored = Vec::new();
    for row in sqlx::query(sqlx::AssertSqlSafe(query)).fetch_all(conn).await? {
        saved_stored.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?));
    }
    if let Some((saved, stored)) = saved_stored.iter().find(|(saved, stored)| stored < saved) {
        bail!(
            "an invoice or shipment committed before its order was saved ({stored} < {saved} µs): the \
             clocks or time zones of the JVM and PostgreSQL disagree"
        );
    }
    Ok(saved_stored)
}

async fn measure(
    settings: &Settings,
    stack: &ReferenceStack,
    load_before: String,
    startup: Duration,
) -> Result<Report> {
    let mut conn = PgConnection::connect(&env::database_url()).await?;
    let tables = [
        stack.table(0, "ordertable"),
        stack.table(1, "invoice"),
        stack.table(2, "shipment"),
    ];
    let run = run_load(settings, stack, &mut conn, &tables).await?;
    let exactly_once = exactly_once(&mut conn, &tables, run.load.accepted.len()).await?;
    let saved_stored = saved_and_stored(&mut conn, &tables).await?;
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
