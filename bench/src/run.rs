//! One measured run, the same for this system and for the reference: the processes idle for a moment,
//! the load while they are watched, the wait until everything is stored, and the figures every report
//! has.

use crate::load::{self, Accepted, Api, LoadResult, Pace, Progress};
use crate::meter::{self, Meter, Usage, round1};
use crate::procfs;
use crate::stack::{self, ServiceProcess};
use crate::stats::{self, ExactlyOnce, Latency};
use anyhow::Result;
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// How orders are sent and how long, and what runs: the same for every scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pace: Pace,
    pub count: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Replicas of invoicing and of shipping (order runs one).
    pub replicas: usize,
    pub partitions: i32,
    pub drain_timeout: Duration,
    pub log_dir: PathBuf,
}

/// What a run measured before the scenario adds what only it can tell.
pub struct Measured {
    pub load: LoadResult,
    pub sent: u64,
    /// Unix µs: the first order sent, the start of the measured window, the last order sent.
    pub start_us: i64,
    pub window_start_us: i64,
    pub end_us: i64,
    pub drain: Duration,
    pub usage: Usage,
    pub load_average_after: String,
}

impl Measured {
    pub fn window_s(&self) -> f64 {
        (self.end_us - self.window_start_us) as f64 / 1e6
    }

    /// The accepted orders sent within the window.
    pub fn in_window(&self) -> impl Iterator<Item = &Accepted> {
        self.load
            .accepted
            .iter()
            .filter(|a| a.sent_us >= self.window_start_us)
    }
}

/// Ends a scenario's run: after a good measurement the stack is stopped and removed (a failed teardown is
/// reported; the figures stand); after a failed one it is left as it is, for its logs in `log_dir`.
pub async fn finish<T>(
    outcome: Result<T>,
    teardown: impl Future<Output = Result<()>>,
    log_dir: &Path,
) -> Result<T> {
    if outcome.is_ok() {
        if let Err(error) = teardown.await {
            eprintln!("[bench] teardown failed (the figures stand): {error:#}");
        }
    } else {
        eprintln!("[bench] logs of the services: {}", log_dir.display());
    }
    outcome
}

/// Lets the ready `processes` idle for 3 s, sends the load to `order_url` while printing progress once a
/// second (`status()` adds the scenario's own part), then waits until `stored()` — (orders, invoices,
/// shipments) — shows everything stored, and lets it settle.
pub async fn measure(
    api: Api,
    order_url: &str,
    plan: &Plan,
    processes: &[ServiceProcess],
    mut status: impl AsyncFnMut() -> String,
    stored: impl AsyncFnMut() -> Result<(i64, i64, i64)>,
) -> Result<Measured> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut meter = Meter::start(processes);
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let start_us = load::unix_micros(SystemTime::now());
    let load = tokio::spawn({
        let (url, pace, count, progress) = (order_url.to_string(), plan.pace, plan.count, progress.clone());
        let total = plan.warmup + plan.duration;
        async move { load::run(api, &url, pace, count, total, progress).await }
    });
    let mut last_accepted = 0;
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack::check_alive(processes)?;
        meter.sample();
        let accepted = progress.accepted.load(Ordering::Relaxed);
        let phase = if started.elapsed() < plan.warmup {
            "warm-up"
        } else {
            "measure"
        };
        eprintln!(
            "[bench] {:>5.1}s {phase:<7} sent {:>7} accepted {:>7} ({:>5}/s) failed {}{} load {}",
            started.elapsed().as_secs_f64(),
            progress.sent.load(Ordering::Relaxed),
            accepted,
            accepted - last_accepted,
            progress.failed.load(Ordering::Relaxed),
            status().await,
            procfs::load_average(),
        );
        last_accepted = accepted;
    }
    let load = load.await?;
    let end_us = load::unix_micros(SystemTime::now());
    let drain = drain(plan.drain_timeout, &mut meter, stored).await?;
    let usage = meter.finish(load.accepted.len());
    let load_average_after = procfs::load_average();
    // Settle, then the exactly-once check sees everything a redelivery might still add.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack::check_alive(processes)?;
    Ok(Measured {
        load,
        sent: progress.sent.load(Ordering::Relaxed),
        start_us,
        window_start_us: load::window_start(start_us, end_us, plan.warmup),
        end_us,
        drain,
        usage,
        load_average_after,
    })
}

/// Waits until `stored()` shows an invoice and a shipment for every order, or `timeout` has passed;
/// samples RSS meanwhile. Returns how long it waited.
async fn drain(
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

/// What the stored rows say: the end-to-end latency of each order of the window (µs) and how many
/// orders were completed within it.
pub struct Stored {
    pub end_to_end_us: Vec<i64>,
    pub completed_in_window: usize,
    pub exactly_once: ExactlyOnce,
}

/// The figures every scenario reports (flattened into its JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub mode: String,
    pub replicas: usize,
    pub partitions: i32,
    /// From starting the processes until every one answered its readiness check and every consumer held
    /// partitions.
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
    /// End to end, orders of the window (what the ends are, each scenario says).
    pub end_to_end_latency: Latency,
    /// From when the order was due (open loop) or sent (closed loop) until its `POST` was answered, orders
    /// of the window.
    pub accept_latency: Latency,
    /// How long orders waited after they were due before their `POST` went out (the in-flight limit or a
    /// late timer); all 0 in the closed loop.
    pub queued_latency: Latency,
    /// From the last order sent until every order was stored.
    pub drain_s: f64,
    #[serde(flatten)]
    pub usage: Usage,
    pub load_average_before: String,
    pub load_average_after: String,
    pub exactly_once: ExactlyOnce,
}

impl Figures {
    pub fn new(
        plan: &Plan,
        startup: Duration,
        load_average_before: String,
        run: Measured,
        stored: Stored,
    ) -> Figures {
        let window_s = run.window_s();
        let per_s = |n: usize| round1(n as f64 / window_s.max(1e-9));
        let accept_us: Vec<i64> = run.in_window().map(|a| a.accept_us).collect();
        let queued_us: Vec<i64> = run.in_window().map(|a| a.queued_us).collect();
        Figures {
            mode: load::describe(plan.pace),
            replicas: plan.replicas,
            partitions: plan.partitions,
            startup_s: round1(startup.as_secs_f64()),
            warmup_s: (run.window_start_us - run.start_us) as f64 / 1e6,
            window_s: round1(window_s),
            sent: run.sent,
            accepted: run.load.accepted.len(),
            failed: run.load.failures,
            accepted_per_s: per_s(accept_us.len()),
            end_to_end_per_s: per_s(stored.completed_in_window),
            end_to_end_latency: Latency::of(stored.end_to_end_us),
            accept_latency: Latency::of(accept_us),
            queued_latency: Latency::of(queued_us),
            drain_s: round1(run.drain.as_secs_f64()),
            usage: run.usage,
            load_average_before,
            load_average_after: run.load_average_after,
            exactly_once: stored.exactly_once,
            failure_examples: run.load.failure_examples,
        }
    }

    /// The first rows of a report's table: `title`, throughput and latency (`end_to_end` names the
    /// latency row).
    pub fn print_head(&self, title: &str, end_to_end: &str) {
        println!(
            "{title}: {} | {} invoicing + {} shipping replicas, {} partitions; ready after {:.1} s",
            self.mode, self.replicas, self.replicas, self.partitions, self.startup_s
        );
        println!(
            "  window                {:>8.1} s after {:.1} s warm-up; drain {:.1} s",
            self.window_s, self.warmup_s, self.drain_s
        );
        println!(
            "  orders                {:>8} sent, {} accepted, {} failed",
            self.sent, self.accepted, self.failed
        );
        println!("  accepted              {:>8.1} orders/s", self.accepted_per_s);
        println!(
            "  end to end            {:>8.1} orders/s (invoice and shipment stored within the window)",
            self.end_to_end_per_s
        );
        print_latency(end_to_end, &self.end_to_end_latency);
        print_latency("latency POST accepted", &self.accept_latency);
        print_latency("  of it queued", &self.queued_latency);
    }

    /// The last rows: memory and CPU, the machine, the exactly-once check.
    pub fn print_tail(&self) {
        meter::print(&self.usage);
        println!(
            "  machine CPU busy      {:>8.1} %; load average before {} after {}",
            self.usage.machine_cpu_busy_percent, self.load_average_before, self.load_average_after
        );
        stats::print_check(&self.exactly_once);
    }
}

/// One latency row of a report's table.
pub fn print_latency(name: &str, l: &Latency) {
    println!(
        "  {name:<21} p50 {:>8.1} ms  p90 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} orders)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.samples
    );
}
