//! steps: how long each step of one look took. Each step also runs in a tracing span of its own
//! (`observe`, `ensure` with `kafka`, `postgres`, `rotation` and `apply` inside, `publish_status`),
//! which the operator exports over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without a collector
//! the same durations are logged once per look at debug level (`look steps`, target
//! `ordersystem_operator::controller::steps`), so what a look spends its time on at scale can be read
//! from the operator's own log (`bench operator-scale`). Nothing per object: one line per look.

use std::time::{Duration, Instant};

use tracing::debug;

/// The durations of one look's steps; a step that did not run stays zero.
#[derive(Debug, Default, Clone, Copy)]
pub struct Times {
    /// Every read, the consumer-lag read included (which logs its own `lag read` line too).
    pub observe: Duration,
    pub kafka: Duration,
    pub postgres: Duration,
    /// A credential rotation's step, which at rest checks each service's alternate login.
    pub rotation: Duration,
    pub apply: Duration,
    pub status: Duration,
}

/// Runs `step` and adds its duration to `into`.
pub async fn timed<T>(into: &mut Duration, step: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = step.await;
    *into += started.elapsed();
    result
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Times {
    /// Logs the steps of the look that started at `started`, at debug level.
    pub fn log(&self, started: Instant) {
        debug!(
            total_us = micros(started.elapsed()),
            observe_us = micros(self.observe),
            kafka_us = micros(self.kafka),
            postgres_us = micros(self.postgres),
            rotation_us = micros(self.rotation),
            apply_us = micros(self.apply),
            status_us = micros(self.status),
            "look steps"
        );
    }
}
