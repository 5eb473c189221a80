//! The operator's HTTP endpoints: `/healthz` (the process runs), `/readyz` (the OrderSystem cache has
//! synced) and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct WebState {
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<WebState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "cache not synced")
    }
}

async fn metrics(
    State(state): State<WebState>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(state: WebState, path: &str) -> (StatusCode, String) {
        let response = router(state)
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_follows_the_cache_and_metrics_count_reconciles() {
        let state = WebState {
            ready: Arc::new(AtomicBool::new(false)),
            metrics: Arc::new(Metrics::default()),
        };
        assert_eq!(get(state.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(state.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(state.clone(), "/readyz").await.0, StatusCode::OK);
        drop(state.metrics.count_and_measure());
        state.metrics.count_failure("kafka");
        let (status, text) = get(state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("ordersystem_operator_reconciles_total 1"), "{text}");
        assert!(
            text.contains("ordersystem_operator_reconcile_failures_total{error=\"kafka\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ordersystem_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
