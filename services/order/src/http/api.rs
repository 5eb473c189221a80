//! The JSON API: `POST/GET /api/orders`, `GET /api/orders/{id}`, `GET /api/customers`, `GET /api/items`.
//! Orders are returned in the event's shape (design 2.1) plus their total; every error is a `Problem`
//! (problem+json).

use super::{AppState, place_order, unreadable};
use crate::domain::OrderInput;
use crate::store;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::problem::Problem;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orders", get(list).post(create))
        .route("/api/orders/{id}", get(show))
        .route("/api/customers", get(customers))
        .route("/api/items", get(items))
}

fn with_total(order: &OrderPlaced) -> serde_json::Value {
    let mut value = serde_json::to_value(order).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "totalPrice".into(),
            serde_json::Value::String(order.total().to_string()),
        );
    }
    value
}

async fn create(
    State(state): State<AppState>,
    body: Result<Json<OrderInput>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(input) = body.map_err(|rejection| unreadable(&rejection))?;
    let event = place_order(&state, input).await?;
    let location = format!("/api/orders/{}", event.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(with_total(&event)),
    )
        .into_response())
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<store::OrderSummary>>, Problem> {
    Ok(Json(store::list(&state.pool).await?))
}

async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Path(id) = id?;
    let order = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| Problem::not_found("order", id))?;
    Ok(Json(with_total(&order)))
}

async fn customers(
    State(state): State<AppState>,
) -> Result<Json<Vec<ordersystem_contract::Customer>>, Problem> {
    Ok(Json(store::customers(&state.pool).await?))
}

async fn items(State(state): State<AppState>) -> Result<Json<Vec<ordersystem_contract::Item>>, Problem> {
    Ok(Json(store::items(&state.pool).await?))
}
