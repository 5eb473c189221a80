//! `/healthz` (alive; never checks dependencies), `/readyz` (database reachable and migrated — for order
//! too: Kafka being down must not take order out of service, the outbox exists for that) and `/metrics`;
//! plus the middleware counting every request.

use crate::db::Database;
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::telemetry::{self, HttpHeaders};
use axum::Router;
use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ordersystem_contract::wiring::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use tracing::Instrument;

#[derive(Clone)]
struct HealthState {
    db: Database,
    metrics: Metrics,
}

/// The probe and metrics routes, to merge into a service's router.
pub fn router(db: Database, metrics: Metrics) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok" }))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics_text))
        .with_state(HealthState { db, metrics })
}

async fn readyz(State(state): State<HealthState>) -> Response {
    if state.db.is_ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database not reachable or not migrated",
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<HealthState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Counts requests by method, matched route (not the raw path, which would explode the label set) and status,
/// times them by method and route, and writes the access log: one line per request with method, route,
/// path, status and duration (`debug` for probes and `/metrics`, which come every few seconds; `info` for
/// the rest). The same middleware measures and logs, so the log and the metrics never disagree. Each request
/// but a probe runs in a `request` span, continuing the client's trace when it sent one.
pub async fn count_requests(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // As requested: under a public path, the router sees the path without it (`public::serve_site`).
    let requested = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().path().to_string(), |o| o.0.path().to_string());
    let probe = [HEALTHZ_PATH, READYZ_PATH, METRICS_PATH].contains(&path.as_str());
    // A request starts a trace, or continues the client's (W3C `traceparent`); probes are not traced.
    let span = if probe {
        tracing::Span::none()
    } else {
        let span = tracing::info_span!("request", otel.kind = "server", method, route = %path);
        telemetry::continue_from(&span, &HttpHeaders(request.headers()));
        span
    };
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let _in_request = span.enter();
    if probe {
        tracing::debug!(method, route = %path, path = %requested, status, duration_ms, "request");
    } else {
        tracing::info!(method, route = %path, path = %requested, status, duration_ms, "request");
    }
    metrics
        .http_request_duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            path: path.clone(),
        })
        .observe(elapsed.as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&HttpLabels { method, path, status })
        .inc();
    response
}

/// Serve `app` (with request counting) on `listener` under `site`'s path until `shutdown` fires; in-flight
/// requests finish. Its pages show `site`'s navigation and links.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    metrics: Metrics,
    site: crate::public::Site,
    mut shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<()> {
    let app = app
        .merge(crate::pages::assets())
        .layer(axum::middleware::from_fn_with_state(metrics, count_requests));
    // Around the router, not a route layer: the path must be rewritten before routing.
    let strip = axum::middleware::from_fn_with_state(std::sync::Arc::new(site), crate::public::serve_site);
    let app = tower::Layer::layer(&strip, app);
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}
