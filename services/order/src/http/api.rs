//! The JSON API: `POST/GET /api/orders`, `GET /api/orders/{id}`, `GET /api/customers`, `GET /api/items`.
//! Orders are returned in the event's shape (design 2.1) plus their total, money as `Money` (`"42.00"`); the
//! order list comes a page at a time (`ordersystem_service_kit::paging`); every error is a `Problem`
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
use ordersystem_service_kit::money;
use ordersystem_service_kit::paging::{Page, Paging};
use ordersystem_service_kit::problem::Problem;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orders", get(list).post(create))
        .route("/api/orders/{id}", get(show))
        .route("/api/customers", get(customers))
        .route("/api/items", get(items))
}

/// The order in the event's shape, its prices and `totalPrice` as `Money`.
fn with_total(order: &OrderPlaced) -> serde_json::Value {
    let mut value = serde_json::to_value(order).unwrap_or_default();
    if let Some(lines) = value["orderLine"].as_array_mut() {
        for (json, line) in lines.iter_mut().zip(&order.order_line) {
            json["item"]["price"] = money::text(line.item.price.0);
        }
    }
    value["totalPrice"] = money::text(order.total());
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

async fn list(State(state): State<AppState>, paging: Paging) -> Result<Page<store::OrderSummary>, Problem> {
    Ok(store::list(&state.pool, &paging).await?)
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

/// The catalogue, prices as `Money`.
async fn items(State(state): State<AppState>) -> Result<Json<Vec<serde_json::Value>>, Problem> {
    let items = store::items(&state.pool).await?;
    Ok(Json(
        items
            .iter()
            .map(|item| {
                let mut value = serde_json::to_value(item).unwrap_or_default();
                value["price"] = money::text(item.price.0);
                value
            })
            .collect(),
    ))
}
