//! What the operator's own JSON log says about its lag reads: each look logs `lag read` at debug level
//! (`ordersystem_operator::controller::lag`) with its duration and the Kafka requests it sends; a look
//! counts in the window its line's timestamp falls in.

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
    let in_window = |line: &Line| {
        line.timestamp
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| t >= from && t < to)
    };
    let mut elapsed = Vec::new();
    let (mut failed, mut requests) = (0, 0);
    for line in text.lines().filter(|l| l.contains("\"lag read\"")) {
        let Ok(line) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        if line.message.as_deref() != Some("lag read") || !in_window(&line) {
            continue;
        }
        elapsed.push(line.elapsed_us.unwrap_or(0) as f64 / 1000.0);
        requests = requests.max(line.requests.unwrap_or(0));
        if line.ok == Some(false) {
            failed += 1;
        }
    }
    elapsed.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((elapsed.len() as f64 - 1.0) * q).round() as usize;
        elapsed.get(index).map_or(0.0, |ms| (ms * 10.0).round() / 10.0)
    };
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
}
