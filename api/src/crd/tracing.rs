//! `spec.tracing`: where the services send their spans, so one order can be followed as one trace from the
//! order form through Kafka into invoicing and shipping.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The OpenTelemetry collector the services export their spans to, over OTLP/HTTP (protobuf). When absent
/// nothing is exported; every log line inside a span still names its `trace_id` and `span_id`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// The collector's OTLP/HTTP base URL, e.g. `http://otel-collector.observability:4318`; the services
    /// send to `<otlpEndpoint>/v1/traces`. Set as the services' `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    )]
    pub otlp_endpoint: String,
    /// The percentage of orders traced (the services sample `parentbased_traceidratio`, so a trace is kept
    /// or dropped whole, as its first service decided). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub sample_percent: Option<u8>,
}
