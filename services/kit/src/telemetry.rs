//! The process's subscriber and trace context (`ordersystem-telemetry`, shared with the operator), and the
//! carriers a service reads trace context from: an HTTP request's headers, a Kafka record's headers.

use opentelemetry::propagation::Extractor;
pub use ordersystem_telemetry::{TraceContext, continue_from, shutdown};

/// Install the global subscriber of the service `name`, in the configured format; spans are exported over
/// OTLP when the standard `OTEL_EXPORTER_OTLP_*` variables are set.
pub fn init(format: crate::config::LogFormat, name: &str) {
    ordersystem_telemetry::init(
        match format {
            crate::config::LogFormat::Json => ordersystem_telemetry::LogFormat::Json,
            crate::config::LogFormat::Text => ordersystem_telemetry::LogFormat::Text,
        },
        name,
    );
}

/// HTTP request headers as a carrier of trace context.
pub struct HttpHeaders<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// A Kafka record's headers as a carrier of trace context.
pub struct KafkaHeaders<'a, H>(pub &'a H);

impl<H: rdkafka::message::Headers> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}
