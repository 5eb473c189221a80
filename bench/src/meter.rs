//! What a run costs: each process's RSS idle and at its peak, the CPU time of each process, of all
//! PostgreSQL processes and of the Kafka broker per 1,000 orders, and how busy the machine was. Read from
//! `/proc` only, so measuring costs the measured processes nothing.

use crate::procfs;
use crate::stack::ServiceProcess;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub name: String,
    pub rss_idle_mib: f64,
    pub rss_peak_mib: f64,
    /// CPU milliseconds (user + system) from the first order sent until every order was stored, per
    /// 1,000 orders.
    pub cpu_ms_per_1000_orders: f64,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub processes: Vec<ProcessFigures>,
    /// CPU of the shared infrastructure over the same span (includes whatever else ran on it).
    pub infra_cpu_ms_per_1000_orders: BTreeMap<String, f64>,
    /// Busy share of all cores over the run.
    pub machine_cpu_busy_percent: f64,
}

/// CPU time per process (and for the infrastructure) at one moment.
struct CpuSnapshot {
    processes: Vec<Duration>,
    postgres: Duration,
    kafka: Duration,
    machine: (u64, u64),
}

fn kafka_pid() -> Option<u32> {
    let pidfile =
        std::env::var("ORDERSYSTEM_STATE").unwrap_or_else(|_| "/tmp/ordersystem".into()) + "/kafka/pid";
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

impl CpuSnapshot {
    fn take(pids: &[u32], ticks: u64) -> CpuSnapshot {
        CpuSnapshot {
            processes: pids
                .iter()
                .map(|pid| procfs::cpu_time(*pid, ticks).unwrap_or_default())
                .collect(),
            postgres: procfs::cpu_time_sum(&procfs::pids_named("postgres"), ticks),
            kafka: kafka_pid()
                .and_then(|pid| procfs::cpu_time(pid, ticks))
                .unwrap_or_default(),
            machine: procfs::machine_jiffies(),
        }
    }
}

pub fn mib(bytes: u64) -> f64 {
    round1(bytes as f64 / 1024.0 / 1024.0)
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Measures from `start` (the processes idle, just before the first order) to `finish`.
pub struct Meter {
    names: Vec<String>,
    pids: Vec<u32>,
    idle: Vec<u64>,
    peak: Vec<u64>,
    ticks: u64,
    start: CpuSnapshot,
}

impl Meter {
    /// Reads every process's idle RSS and the CPU times so far.
    pub fn start(processes: &[ServiceProcess]) -> Meter {
        let pids: Vec<u32> = processes.iter().map(ServiceProcess::pid).collect();
        let idle: Vec<u64> = pids
            .iter()
            .map(|pid| procfs::rss_bytes(*pid).unwrap_or(0))
            .collect();
        let ticks = procfs::clock_ticks();
        Meter {
            names: processes.iter().map(|p| p.name.clone()).collect(),
            peak: idle.clone(),
            start: CpuSnapshot::take(&pids, ticks),
            pids,
            idle,
            ticks,
        }
    }

    /// Records each process's RSS if it is the highest so far (called about once a second).
    pub fn sample(&mut self) {
        for (peak, pid) in self.peak.iter_mut().zip(&self.pids) {
            *peak = (*peak).max(procfs::rss_bytes(*pid).unwrap_or(0));
        }
    }

    /// The figures from `start` until now, CPU per 1,000 of `orders`.
    pub fn finish(mut self, orders: usize) -> Usage {
        self.sample();
        let end = CpuSnapshot::take(&self.pids, self.ticks);
        let orders = orders.max(1) as f64;
        let per_1000 = |d: Duration| round1(d.as_secs_f64() * 1000.0 / orders * 1000.0);
        let processes = self
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| ProcessFigures {
                name: name.clone(),
                rss_idle_mib: mib(self.idle[i]),
                rss_peak_mib: mib(self.peak[i]),
                cpu_ms_per_1000_orders: per_1000(end.processes[i].saturating_sub(self.start.processes[i])),
            })
            .collect();
        let mut infra = BTreeMap::new();
        infra.insert(
            "postgres (all backends)".to_string(),
            per_1000(end.postgres.saturating_sub(self.start.postgres)),
        );
        infra.insert(
            "kafka broker".to_string(),
            per_1000(end.kafka.saturating_sub(self.start.kafka)),
        );
        let busy = end.machine.0.saturating_sub(self.start.machine.0);
        let all = end.machine.1.saturating_sub(self.start.machine.1);
        Usage {
            processes,
            infra_cpu_ms_per_1000_orders: infra,
            machine_cpu_busy_percent: round1(busy as f64 * 100.0 / all.max(1) as f64),
        }
    }
}

/// Prints the figures as the rows of a table.
pub fn print(usage: &Usage) {
    println!(
        "  {:<24} {:>10} {:>10} {:>18}",
        "process", "RSS idle", "RSS peak", "CPU ms/1000 orders"
    );
    for p in &usage.processes {
        println!(
            "  {:<24} {:>6.1} MiB {:>6.1} MiB {:>18.1}",
            p.name, p.rss_idle_mib, p.rss_peak_mib, p.cpu_ms_per_1000_orders
        );
    }
    for (name, cpu) in &usage.infra_cpu_ms_per_1000_orders {
        println!("  {:<24} {:>10} {:>10} {:>18.1}", name, "", "", cpu);
    }
}
