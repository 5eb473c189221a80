//! The Prometheus metrics every service exposes on `/metrics`, registered once. Services only increment
//! them; the names are the same in all three so one dashboard fits all.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// All metrics of a service. Cloning shares them (the metric types are reference-counted).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub orders_accepted: Counter,
    pub events_produced: Counter,
    pub relay_rounds_overlapped: Counter,
    pub events_consumed: Counter,
    pub duplicates_skipped: Counter,
    pub dead_letters: Family<ReasonLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub kafka_connected: Gauge,
    pub rebalances: Counter,
    pub assigned_partitions: Gauge,
    pub processing_seconds: Histogram,
    pub batch_records: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ordersystem");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let orders_accepted = Counter::default();
        let events_produced = Counter::default();
        let relay_rounds_overlapped = Counter::default();
        let events_consumed = Counter::default();
        let duplicates_skipped = Counter::default();
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        let outbox_backlog = Gauge::default();
        let kafka_connected = Gauge::default();
        let rebalances = Counter::default();
        let assigned_partitions = Gauge::default();
        // 0.5 ms .. ~4 s: a stored event takes a few milliseconds; the tail shows database trouble.
        let processing_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        // 1 .. 256 records per transaction.
        let batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "orders_accepted",
            "Orders stored with their outbox row",
            orders_accepted.clone(),
        );
        registry.register(
            "events_produced",
            "Events acknowledged by Kafka",
            events_produced.clone(),
        );
        registry.register(
            "relay_rounds_overlapped",
            "Outbox relay rounds published while an earlier round still awaited its acknowledgements",
            relay_rounds_overlapped.clone(),
        );
        registry.register(
            "events_consumed",
            "Events stored (new invoices or shipments)",
            events_consumed.clone(),
        );
        registry.register(
            "duplicates_skipped",
            "Redelivered events skipped because the order id was stored",
            duplicates_skipped.clone(),
        );
        registry.register(
            "dead_letters",
            "Records moved to the dead-letter table, by reason",
            dead_letters.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet acknowledged by Kafka",
            outbox_backlog.clone(),
        );
        registry.register(
            "kafka_connected",
            "1 while Kafka is reachable, 0 after the client reported all brokers down",
            kafka_connected.clone(),
        );
        registry.register(
            "rebalances",
            "Partition assignments and revocations seen by this member",
            rebalances.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions this member owns after the last rebalance",
            assigned_partitions.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time to store one consumed event",
            processing_seconds.clone(),
        );
        registry.register(
            "batch_records",
            "Records stored per transaction (one commit): orders placed together, or events consumed",
            batch_records.clone(),
        );
        Self {
            registry: Arc::new(registry),
            http_requests,
            orders_accepted,
            events_produced,
            relay_rounds_overlapped,
            events_consumed,
            duplicates_skipped,
            dead_letters,
            outbox_backlog,
            kafka_connected,
            rebalances,
            assigned_partitions,
            processing_seconds,
            batch_records,
        }
    }

    pub fn dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
