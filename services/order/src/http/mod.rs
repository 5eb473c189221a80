//! The order service's HTTP surface: the JSON API, the HTML pages, and the shared error type. Both the API
//! and the form place orders through `place_order`, so the rules are the same.

mod api;
mod pages;

use crate::domain::{NewOrder, OrderInput};
use crate::placer::Placer;
use crate::store::StoreError;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::metrics::Metrics;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::Notify;

/// Bodies above this are refused with 413: an order form or JSON order is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Stores orders, several at a time under load.
    pub placer: Placer,
    pub metrics: Metrics,
    /// Wakes the relay after an order committed.
    pub relay_wake: Arc<Notify>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An HTTP error: 4xx carry their message to the client, 5xx a generic text (the cause is logged once here).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Client { status: StatusCode, message: String },
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ApiError {
    pub fn client(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Client {
            status,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text a person or client may see.
    pub fn public_message(&self) -> String {
        match self {
            Self::Client { message, .. } => message.clone(),
            Self::Internal(_) => "internal error, please try again".into(),
        }
    }

    fn log_if_internal(&self) {
        if let Self::Internal(source) = self {
            tracing::error!(error = %source, cause = ?std::error::Error::source(source), "request failed");
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownCustomer(_) | StoreError::UnknownItem(_) => {
                Self::client(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            }
            // Overload, a database outage or shutdown: nothing was stored and a retry may well succeed.
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) | StoreError::Stopped => {
                tracing::warn!(%error, "database unavailable");
                Self::client(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the order database is busy or unavailable, please retry",
                )
            }
            other => Self::Internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(StoreError::Database(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_internal();
        (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.public_message() })),
        )
            .into_response()
    }
}

/// Validate, store with the outbox row, count, wake the relay.
#[tracing::instrument(skip_all, fields(customer_id = input.customer_id))]
async fn place_order(state: &AppState, input: OrderInput) -> Result<OrderPlaced, ApiError> {
    let order =
        NewOrder::parse(input).map_err(|e| ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, e.0))?;
    let event = state.placer.place(order).await?;
    ordersystem_service_kit::failpoint!(ordersystem_service_kit::failpoints::ORDER_COMMITTED);
    state.metrics.orders_accepted.inc();
    state.relay_wake.notify_one();
    tracing::info!(order_id = event.id, "order accepted");
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_a_retryable_503_and_unknown_items_a_422() {
        assert_eq!(
            ApiError::from(StoreError::Database(sqlx::Error::PoolTimedOut)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(StoreError::UnknownItem(9)).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::from(StoreError::UnknownItem(9)).public_message(),
            "unknown item 9"
        );
        let internal = ApiError::from(StoreError::Database(sqlx::Error::RowNotFound));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !internal.public_message().contains("RowNotFound"),
            "internals stay in the log"
        );
    }
}
