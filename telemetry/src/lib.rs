//! The one tracing subscriber of every process of the project, the operator and the three services: level
//! from RUST_LOG (default `info`), JSON or text lines of one shape (an event's fields at the top level), and
//! every span an OpenTelemetry span, so a trace runs from an order's request through the outbox and Kafka
//! into invoicing and shipping, and an operator's reconcile is one trace. Every log line written inside a
//! span names its `trace_id` and `span_id`.
//!
//! Trace context crosses process boundaries as W3C `traceparent`/`tracestate` ([`TraceContext`],
//! [`continue_from`]); the carriers of HTTP and Kafka headers are the service kit's.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (in a cluster).
    Json,
    /// Human-readable lines (on a laptop).
    Text,
}

/// Install the global subscriber. A second call (tests spawning several apps) keeps the first one.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = SdkTracerProvider::builder().build();
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
    if tracing::dispatcher::set_global_default(dispatch.clone()).is_ok() {
        let _ = DISPATCH.set(dispatch.downgrade());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
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
