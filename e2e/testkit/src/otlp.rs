//! The test bed's tracing backend (`e2e/infra/otelcol.sh`): an OpenTelemetry Collector whose OTLP receiver
//! listens on loopback and whose file exporter appends every batch of spans it receives to one file, as a
//! line of OTLP JSON. A test points the services at the receiver and reads their spans back from the file.

use crate::env;
use ordersystem_contract::wiring::env as wiring;
use serde_json::Value;
use std::collections::BTreeMap;

/// The collector's OTLP/HTTP endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub const OTLP_ENDPOINT: &str = "OTLP_ENDPOINT";
/// The file the collector writes the spans to.
pub const OTLP_SPANS_FILE: &str = "OTLP_SPANS_FILE";

/// The environment that makes a service export its spans to the collector, flushed every 100 ms rather
/// than the SDK's 5 s, so a test sees them soon.
pub fn exporting() -> Vec<(&'static str, String)> {
    vec![
        (wiring::OTEL_EXPORTER_OTLP_ENDPOINT, env::require(OTLP_ENDPOINT)),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ]
}

/// One span as the collector received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// `service.name` of the process that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// The parent's span id; `None` for a trace's root.
    pub parent: Option<String>,
    pub start_nanos: u128,
    pub end_nanos: u128,
    /// The `(trace id, span id)` of every span it links to.
    pub links: Vec<(String, String)>,
    /// Its string, integer and boolean attributes, as text.
    pub attributes: BTreeMap<String, String>,
}

/// Every span the collector has written so far, of the batches that mention `text` (a trace id, say: only
/// those are parsed, however much the collector holds); every span when `text` is empty.
///
/// # Panics
/// When the file cannot be read or holds a line that is no OTLP JSON.
pub fn spans_mentioning(text: &str) -> Vec<Span> {
    let path = env::require(OTLP_SPANS_FILE);
    let content = match std::fs::read_to_string(&path) {
        Ok(content) => content,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => panic!("cannot read the collector's spans from {path}: {error}"),
    };
    // The last line may be one the collector is still writing: only whole lines are read.
    content
        .split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .filter(|line| !line.trim().is_empty() && line.contains(text))
        .flat_map(|line| {
            let batch: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{path} holds no OTLP JSON line ({e}): {line}"));
            parse(&batch)
        })
        .collect()
}

/// The spans of trace `trace_id`.
pub fn trace(trace_id: &str) -> Vec<Span> {
    spans_mentioning(trace_id)
        .into_iter()
        .filter(|span| span.trace_id == trace_id)
        .collect()
}

fn parse(batch: &Value) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource_spans in batch["resourceSpans"].as_array().into_iter().flatten() {
        let resource = attributes(&resource_spans["resource"]["attributes"]);
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope_spans["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_string();
                let nanos = |key: &str| text(key).parse().unwrap_or_default();
                spans.push(Span {
                    service: service.clone(),
                    name: text("name"),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent: Some(text("parentSpanId")).filter(|parent| !parent.is_empty()),
                    start_nanos: nanos("startTimeUnixNano"),
                    end_nanos: nanos("endTimeUnixNano"),
                    links: span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|link| {
                            let id = |key: &str| link[key].as_str().unwrap_or_default().to_string();
                            (id("traceId"), id("spanId"))
                        })
                        .collect(),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    spans
}

/// OTLP's `[{key, value: {stringValue | intValue | boolValue}}]` as a map of text.
fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|attribute| {
            let value = &attribute["value"];
            let text = value["stringValue"]
                .as_str()
                .map(str::to_string)
                .or_else(|| value["intValue"].as_str().map(str::to_string))
                .or_else(|| value["intValue"].as_i64().map(|n| n.to_string()))
                .or_else(|| value["boolValue"].as_bool().map(|b| b.to_string()))?;
            Some((attribute["key"].as_str()?.to_string(), text))
        })
        .collect()
}
