//! The Prometheus metrics every service exposes on `/metrics`, registered once. Services only increment
//! them; the names are the same in all three so one dashboard fits all.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// One route: the method and the matched path (never the raw path, which would explode the label set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub path: String,
}

/// Buckets of `http_request_duration_seconds`: 1 ms .. ~8 s; a page or an order takes a few milliseconds,
/// the tail shows a slow database.
fn request_duration() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// All metrics of a service. Cloning shares them (the metric types are reference-counted).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub orders_accepted: Counter,
    pub events_produced: Counter,
    pub relay_rounds_overlapped: Counter,
    pub events_consumed: Counter,
    pub duplicates_skipped: Counter,
    pub dead_letters: Family<ReasonLabels, Counter>,
    pub dead_letter_redrives: Family<OutcomeLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub kafka_connected: Gauge,
    pub rebalances: Counter,
    pub assigned_partitions: Gauge,
    pub processing_seconds: Histogram,
    pub event_age_seconds: Histogram,
    pub batch_records: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registered(Registry::with_prefix("ordersystem"));
        let r = &mut registry;
        r.0.register(
            "build",
            "The version this binary was compiled as and the revision its image was built from",
            Info::new(ordersystem_contract::build::labels()),
        );
        Self {
            http_requests: r.add("http_requests", "HTTP requests by method, route and status"),
            http_request_duration: r.register(
                "http_request_duration_seconds",
                "Time from a request's arrival to its response's head, by method and route",
                Family::new_with_constructor(request_duration),
            ),
            orders_accepted: r.add("orders_accepted", "Orders stored with their outbox row"),
            events_produced: r.add("events_produced", "Events acknowledged by Kafka"),
            relay_rounds_overlapped: r.add(
                "relay_rounds_overlapped",
                "Outbox relay rounds published while an earlier round still awaited its acknowledgements",
            ),
            events_consumed: r.add("events_consumed", "Events stored (new invoices or shipments)"),
            duplicates_skipped: r.add(
                "duplicates_skipped",
                "Redelivered events skipped because the order id was stored",
            ),
            dead_letters: r.add(
                "dead_letters",
                "Records moved to the dead-letter table, by reason",
            ),
            dead_letter_redrives: r.add(
                "dead_letter_redrives",
                "Redrives of dead letters asked for, by outcome (Stored, Duplicate, Conflict, Undecodable, Rejected, \
                 AlreadyRedriven)",
            ),
            outbox_backlog: r.add("outbox_backlog", "Outbox rows not yet acknowledged by Kafka"),
            kafka_connected: r.add(
                "kafka_connected",
                "1 while Kafka is reachable, 0 after the client reported all brokers down",
            ),
            rebalances: r.add(
                "rebalances",
                "Partition assignments and revocations seen by this member",
            ),
            assigned_partitions: r.add(
                "assigned_partitions",
                "Partitions this member owns after the last rebalance",
            ),
            // 0.5 ms .. ~4 s: a stored event takes a few milliseconds; the tail shows database trouble.
            processing_seconds: r.register(
                "processing_seconds",
                "Time to store one consumed event",
                Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            ),
            // 1 ms .. ~33 s: from the relay's produce to the consumer's commit, the end-to-end latency of an
            // order past its outbox; the top buckets show a consumer that fell behind.
            event_age_seconds: r.register(
                "event_age_seconds",
                "Time from an event's Kafka timestamp (its produce by the order service's relay) to its commit here",
                Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ),
            // 1 .. 256 records per transaction.
            batch_records: r.register(
                "batch_records",
                "Records stored per transaction (one commit): orders placed together, or events consumed",
                Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            ),
            // Last: every metric above is registered by now.
            registry: Arc::new(registry.0),
        }
    }

    pub fn dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Makes the dead-letter count of each of `reasons` exist, at 0.
    pub fn redrive(&self, outcome: &str) {
        self.dead_letter_redrives
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn start_dead_letter_counts(&self, reasons: &[&str]) {
        for reason in reasons {
            let _count = self.dead_letters.get_or_create(&ReasonLabels {
                reason: (*reason).to_string(),
            });
        }
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The registry being filled: each metric is registered where it is made.
struct Registered(Registry);

impl Registered {
    /// A new metric of its kind's default, registered as `name` with `help`.
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        self.register(name, help, M::default())
    }

    /// `metric`, registered as `name` with `help`; the returned clone shares it.
    fn register<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_names_the_version_and_the_images_revision() {
        let text = Metrics::new().encode().expect("encode");
        let line = text
            .lines()
            .find(|l| l.starts_with("ordersystem_build_info{"))
            .unwrap_or_else(|| panic!("no build_info in:\n{text}"));
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        // Outside an image the revision is unknown unless the variable says otherwise.
        let revision = std::env::var(ordersystem_contract::build::REVISION_ENV)
            .unwrap_or_else(|_| ordersystem_contract::build::UNKNOWN_REVISION.to_string());
        assert!(line.contains(&format!("revision=\"{revision}\"")), "{line}");
        assert!(line.ends_with(" 1"), "{line}");
    }
}
