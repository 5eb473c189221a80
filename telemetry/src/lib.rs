//! The one tracing subscriber of every process of the project, the operator and the three services: level
//! from RUST_LOG (default `info`), JSON or text lines of one shape (an event's fields at the top level), and
//! every span an OpenTelemetry span, so a trace runs from an order's request through the outbox and Kafka
//! into invoicing and shipping, and an operator's reconcile is one trace. Every log line written inside a
//! span names its `trace_id` and `span_id`.
//!
//! Trace context crosses process boundaries as W3C `traceparent`/`tracestate` ([`TraceContext`],
//! [`continue_from`]); the carriers of HTTP and Kafka headers are the service kit's.
//!
//! Spans leave the process over OTLP (HTTP/protobuf) when the standard variables ask for it
//! ([`OtlpExport::from_env`]); [`shutdown`] sends what is still buffered when the process ends.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use ordersystem_contract::wiring::env;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry};

/// The W3C trace context header carrying the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace context header carrying vendor state; passed on as it came.
pub const TRACESTATE: &str = "tracestate";

/// The process's subscriber, for the log formatter to find a span's trace and span ids.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// The process's tracer provider when it exports spans, for [`shutdown`] to flush.
static EXPORTING: OnceLock<SdkTracerProvider> = OnceLock::new();

/// How long [`shutdown`] waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (in a cluster).
    Json,
    /// Human-readable lines (on a laptop).
    Text,
}

/// Install the global subscriber of the process named `service` (the spans' `service.name` unless
/// `OTEL_SERVICE_NAME` says otherwise), exporting spans over OTLP when the environment asks for it. A second
/// call (tests spawning several apps) keeps the first one.
pub fn init(format: LogFormat, service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (provider, export) = tracer_provider(service);
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("ordersystem"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds(Formatter::Json(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            )))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(WithTraceIds(Formatter::Text(tracing_subscriber::fmt::format())))
            .boxed(),
    };
    let subscriber = Registry::default().with(filter).with(otel).with(fmt);
    let dispatch = Dispatch::new(subscriber);
    if tracing::dispatcher::set_global_default(dispatch.clone()).is_err() {
        return;
    }
    let _ = DISPATCH.set(dispatch.downgrade());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    match export {
        Ok(Some(export)) => {
            let _ = EXPORTING.set(provider);
            tracing::info!(endpoint = %export.endpoint, "spans are exported over OTLP/HTTP");
        }
        Ok(None) => {}
        Err(reason) => tracing::warn!("spans are not exported: {reason}"),
    }
}

/// Sends the spans not exported yet and stops exporting; a process calls it once, when its work is done.
/// Nothing to do when spans are not exported.
pub fn shutdown() {
    if let Some(provider) = EXPORTING.get()
        && let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
    {
        tracing::warn!("the last spans were not all exported: {error}");
    }
}

/// The tracer provider: ids for every span, and a batch exporter when the environment asks for one; with
/// what was decided about exporting.
fn tracer_provider(service: &str) -> (SdkTracerProvider, Result<Option<OtlpExport>, String>) {
    let builder = SdkTracerProvider::builder();
    let export = OtlpExport::from_env(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    let Ok(Some(_)) = &export else {
        return (builder.build(), export);
    };
    match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => {
            let name = std::env::var(env::OTEL_SERVICE_NAME).unwrap_or_else(|_| service.to_string());
            let resource = Resource::builder().with_service_name(name).build();
            let provider = builder
                .with_resource(resource)
                .with_batch_exporter(exporter)
                .build();
            (provider, export)
        }
        Err(error) => (
            builder.build(),
            Err(format!("the OTLP exporter cannot be built: {error}")),
        ),
    }
}

/// Where spans go when they leave the process: an OTLP/HTTP endpoint, as the OpenTelemetry SDK's standard
/// variables name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// The collector's URL, as configured (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is;
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/traces` appended by the exporter).
    pub endpoint: String,
}

impl OtlpExport {
    /// The export the variables `var` reads ask for: none unless an OTLP endpoint is set; none when
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; an error, to be logged, for what this build
    /// cannot do (another exporter or protocol, an endpoint that is no http(s) URL).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        if var(env::OTEL_SDK_DISABLED).is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var(env::OTEL_TRACES_EXPORTER).as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER is {other:?}; this build exports over otlp only (or none)"
                ));
            }
        }
        let Some(endpoint) =
            var(env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).or_else(|| var(env::OTEL_EXPORTER_OTLP_ENDPOINT))
        else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "the OTLP endpoint {endpoint:?} is not an http:// or https:// URL"
            ));
        }
        let protocol =
            var(env::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL).or_else(|| var(env::OTEL_EXPORTER_OTLP_PROTOCOL));
        match protocol.as_deref() {
            None | Some("http/protobuf") => Ok(Some(Self { endpoint })),
            Some(other) => Err(format!(
                "the OTLP protocol {other:?} is not supported; this build speaks http/protobuf (port 4318)"
            )),
        }
    }
}

/// A span's place in a trace as W3C trace context, to carry it where a span cannot go: an outbox row, a
/// Kafka record's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// `span`'s context; `None` when it belongs to no trace (no subscriber, or a disabled span).
    pub fn of(span: &tracing::Span) -> Option<Self> {
        let mut headers = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut Headers(&mut headers));
        Some(Self {
            traceparent: headers.remove(TRACEPARENT)?,
            tracestate: headers.remove(TRACESTATE).filter(|state| !state.is_empty()),
        })
    }

    /// The current span's context.
    pub fn current() -> Option<Self> {
        Self::of(&tracing::Span::current())
    }

    /// The headers to send it in, `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once((TRACEPARENT, self.traceparent.as_str()))
            .chain(self.tracestate.as_deref().map(|state| (TRACESTATE, state)))
    }
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(&self.traceparent),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.headers().map(|(name, _)| name).collect()
    }
}

/// Makes `span` a child of the trace context `carrier` holds (W3C), if it holds a valid one; otherwise
/// `span` stays what it was (a new trace, or a child of the current span).
pub fn continue_from(span: &tracing::Span, carrier: &impl Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// A `HashMap` as a carrier of trace context.
struct Headers<'a>(&'a mut HashMap<String, String>);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// The text or JSON format of a log line.
enum Formatter {
    Json(Format<Json>),
    Text(Format),
}

/// A log line as `Formatter` writes it, with the `trace_id` and `span_id` of the span it was written in.
struct WithTraceIds(Formatter);

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let ids = ctx
            .lookup_current()
            .and_then(|span| {
                let dispatch = DISPATCH.get()?.upgrade()?;
                tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
            })
            .map(|context| context.span().span_context().clone())
            .filter(opentelemetry::trace::SpanContext::is_valid);
        match &self.0 {
            Formatter::Json(format) => {
                let mut line = String::new();
                format.format_event(ctx, Writer::new(&mut line), event)?;
                match (ids, line.strip_prefix('{')) {
                    (Some(ids), Some(rest)) => write!(
                        writer,
                        "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                        ids.trace_id(),
                        ids.span_id()
                    ),
                    _ => writer.write_str(&line),
                }
            }
            Formatter::Text(format) => {
                if let Some(ids) = ids {
                    write!(writer, "trace_id={} span_id={} ", ids.trace_id(), ids.span_id())?;
                }
                format.format_event(ctx, writer, event)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OtlpExport;

    fn export(vars: &[(&str, &str)]) -> Result<Option<OtlpExport>, String> {
        OtlpExport::from_env(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    fn to(endpoint: &str) -> Result<Option<OtlpExport>, String> {
        Ok(Some(OtlpExport {
            endpoint: endpoint.to_string(),
        }))
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        assert_eq!(export(&[]), Ok(None));
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
            Ok(None)
        );
        assert_eq!(export(&[("OTEL_TRACES_EXPORTER", "otlp")]), Ok(None));
    }

    #[test]
    fn an_endpoint_turns_export_on_the_traces_one_first() {
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
            to("http://collector:4318")
        );
        assert_eq!(
            export(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://traces.example/v1/traces"
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
            to("https://traces.example/v1/traces")
        );
    }

    #[test]
    fn disabled_or_none_exports_nothing() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(export(&[endpoint, ("OTEL_SDK_DISABLED", "true")]), Ok(None));
        assert_eq!(export(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]), Ok(None));
        assert_eq!(export(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]), Ok(None));
        assert_eq!(
            export(&[endpoint, ("OTEL_SDK_DISABLED", "false")]),
            to("http://collector:4318")
        );
    }

    #[test]
    fn what_this_build_cannot_do_is_named() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let grpc = export(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(
            grpc.contains("\"grpc\" is not supported") && grpc.contains("http/protobuf"),
            "{grpc}"
        );
        let traces_grpc = export(&[endpoint, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")]).unwrap_err();
        assert!(traces_grpc.contains("grpc"), "{traces_grpc}");
        let zipkin = export(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(zipkin.contains("\"zipkin\""), "{zipkin}");
        let bare = export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert!(bare.contains("not an http:// or https:// URL"), "{bare}");
    }
}
