//! What the operator's own JSON log says about its lag reads: each look logs `lag read` at debug level
//! (`ordersystem_operator::controller::lag`) with its duration and the Kafka requests it sends; and about
//! where a look's time goes: each logs `look steps` (`ordersystem_operator::controller::steps`) with the
//! duration of observe, the Kafka and PostgreSQL writers, the rotation's step, apply and the status. A
//! look counts in the window its line's timestamp falls in.

use anyhow::{Context, Result};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
struct Line {
    timestamp: Option<String>,
    message: Option<String>,
    elapsed_us: Option<u64>,
    requests: Option<u64>,
    ok: Option<bool>,
    #[serde(flatten)]
    steps: StepLine,
}

/// The fields of a `look steps` line, in µs.
#[derive(Debug, Default, Deserialize)]
struct StepLine {
    total_us: Option<u64>,
    observe_us: Option<u64>,
    kafka_us: Option<u64>,
    postgres_us: Option<u64>,
    rotation_us: Option<u64>,
    apply_us: Option<u64>,
    status_us: Option<u64>,
}

/// Median and 95th percentile of one step over the window's looks, in ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    pub median_ms: f64,
    pub p95_ms: f64,
}

/// Where the looks of one window spent their time (`look steps` lines).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LookSteps {
    pub looks: u64,
    pub total: Spread,
    pub observe: Spread,
    pub kafka: Spread,
    pub postgres: Spread,
    pub rotation: Spread,
    pub apply: Spread,
    pub status: Spread,
}

/// The `look steps` lines of `log` from byte `offset` on, logged in `[from, to)`.
pub fn look_steps(log: &Path, offset: u64, from: Timestamp, to: Timestamp) -> Result<LookSteps> {
    let mut file = std::fs::File::open(log).with_context(|| format!("open {}", log.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(summarize_steps(&text, from, to))
}

fn in_window(line: &Line, from: Timestamp, to: Timestamp) -> bool {
    line.timestamp
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t >= from && t < to)
}

/// The `q` quantile of sorted milliseconds, to 0.1 ms.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).map_or(0.0, |ms| (ms * 10.0).round() / 10.0)
}

fn spread(mut ms: Vec<f64>) -> Spread {
    ms.sort_by(f64::total_cmp);
    Spread {
        median_ms: quantile(&ms, 0.5),
        p95_ms: quantile(&ms, 0.95),
    }
}

fn summarize_steps(text: &str, from: Timestamp, to: Timestamp) -> LookSteps {
    let lines: Vec<StepLine> = text
        .lines()
        .filter(|l| l.contains("\"look steps\""))
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter(|line| line.message.as_deref() == Some("look steps") && in_window(line, from, to))
        .map(|line| line.steps)
        .collect();
    let of = |field: fn(&StepLine) -> Option<u64>| {
        spread(
            lines
                .iter()
                .map(|l| field(l).unwrap_or(0) as f64 / 1000.0)
                .collect(),
        )
    };
    LookSteps {
        looks: lines.len() as u64,
        total: of(|l| l.total_us),
        observe: of(|l| l.observe_us),
        kafka: of(|l| l.kafka_us),
        postgres: of(|l| l.postgres_us),
        rotation: of(|l| l.rotation_us),
        apply: of(|l| l.apply_us),
        status: of(|l| l.status_us),
    }
}

/// The lag reads logged in one window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LagReads {
    pub looks: u64,
    pub failed: u64,
    pub looks_per_min: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    /// Time spent in lag reads per minute, summed over the looks (they run in parallel for different
    /// resources, so this is no share of one core).
    pub ms_per_min: f64,
    pub requests_per_look: u64,
    pub kafka_requests_per_min: f64,
}

/// The `lag read` lines of `log` from byte `offset` on, logged in `[from, to)`.
pub fn lag_reads(log: &Path, offset: u64, from: Timestamp, to: Timestamp) -> Result<LagReads> {
    let mut file = std::fs::File::open(log).with_context(|| format!("open {}", log.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(summarize(&text, from, to))
}

fn summarize(text: &str, from: Timestamp, to: Timestamp) -> LagReads {
    let mut elapsed = Vec::new();
    let (mut failed, mut requests) = (0, 0);
    for line in text.lines().filter(|l| l.contains("\"lag read\"")) {
        let Ok(line) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        if line.message.as_deref() != Some("lag read") || !in_window(&line, from, to) {
            continue;
        }
        elapsed.push(line.elapsed_us.unwrap_or(0) as f64 / 1000.0);
        requests = requests.max(line.requests.unwrap_or(0));
        if line.ok == Some(false) {
            failed += 1;
        }
    }
    elapsed.sort_by(f64::total_cmp);
    let at = |q: f64| quantile(&elapsed, q);
    let minutes = Duration::try_from(to.duration_since(from))
        .unwrap_or_default()
        .as_secs_f64()
        / 60.0;
    let looks = elapsed.len() as u64;
    let round = |v: f64| (v * 10.0).round() / 10.0;
    LagReads {
        looks,
        failed,
        looks_per_min: round(looks as f64 / minutes),
        median_ms: at(0.5),
        p95_ms: at(0.95),
        ms_per_min: round(elapsed.iter().sum::<f64>() / minutes),
        requests_per_look: requests,
        kafka_requests_per_min: round((looks * requests) as f64 / minutes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lag_read_lines_within_the_window_count() {
        let line = |at: &str, elapsed: u32, ok: bool| {
            format!(
                r#"{{"timestamp":"2026-01-01T00:{at}Z","level":"DEBUG","message":"lag read","elapsed_us":{elapsed},"requests":12,"ok":{ok}}}"#
            )
        };
        let text = [
            line("00:10", 2000, true),
            line("00:20", 4000, false),
            r#"{"timestamp":"2026-01-01T00:00:30Z","level":"INFO","message":"reconciled","note":"lag read"}"#
                .to_string(),
            line("00:40", 3000, true),
            // after the window
            line("02:01", 9000, true),
        ]
        .join("\n");
        let from: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-01-01T00:02:00Z".parse().unwrap();
        let reads = summarize(&text, from, to);
        assert_eq!(reads.looks, 3);
        assert_eq!(reads.failed, 1);
        assert_eq!(reads.looks_per_min, 1.5);
        assert_eq!(reads.median_ms, 3.0);
        assert_eq!(reads.requests_per_look, 12);
        assert_eq!(reads.kafka_requests_per_min, 18.0);
    }

    #[test]
    fn look_steps_within_the_window_give_each_steps_median() {
        let line = |at: &str, observe: u32, postgres: u32| {
            format!(
                r#"{{"timestamp":"2026-01-01T00:{at}Z","level":"DEBUG","message":"look steps","total_us":{},"observe_us":{observe},"kafka_us":100,"postgres_us":{postgres},"rotation_us":20,"apply_us":0,"status_us":100}}"#,
                observe + postgres + 220
            )
        };
        let text = [
            line("00:10", 2000, 1000),
            line("00:20", 4000, 3000),
            r#"{"timestamp":"2026-01-01T00:00:30Z","level":"DEBUG","message":"lag read","elapsed_us":5}"#
                .to_string(),
            line("00:40", 6000, 5000),
            // after the window
            line("02:01", 90000, 90000),
        ]
        .join("\n");
        let from: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-01-01T00:02:00Z".parse().unwrap();
        let steps = summarize_steps(&text, from, to);
        assert_eq!(steps.looks, 3);
        assert_eq!(steps.observe.median_ms, 4.0);
        assert_eq!(steps.observe.p95_ms, 6.0);
        assert_eq!(steps.postgres.median_ms, 3.0);
        assert_eq!(steps.kafka.median_ms, 0.1);
        assert_eq!(steps.rotation.median_ms, 0.0);
        assert_eq!(steps.apply.median_ms, 0.0);
        assert_eq!(steps.total.median_ms, 7.2);
    }
}
