//! The shipping pages (`/`, `/{id}`) and JSON API (`/api/shipments`, `/api/shipments/{id}`). Read-only.

use crate::domain::Shipment;
use crate::store;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordersystem_service_kit::pages::{self, internal};
use sqlx::PgPool;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/{id}", get(detail_page))
        .route("/api/shipments", get(list_api))
        .route("/api/shipments/{id}", get(detail_api))
        .with_state(pool)
}

#[derive(Template)]
#[template(path = "shipmentlist.html")]
struct ListPage {
    shipments: Vec<store::ShipmentSummary>,
}

#[derive(Template)]
#[template(path = "shipment.html")]
struct DetailPage {
    shipment: Shipment,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: &'static str,
    message: String,
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    pages::html(status, page.render())
}

async fn list_page(State(pool): State<PgPool>) -> Response {
    match store::list(&pool).await {
        Ok(shipments) => render(StatusCode::OK, &ListPage { shipments }),
        Err(error) => internal(&error),
    }
}

async fn detail_page(State(pool): State<PgPool>, Path(id): Path<i64>) -> Response {
    match store::get(&pool, id).await {
        Ok(Some(shipment)) => render(StatusCode::OK, &DetailPage { shipment }),
        Ok(None) => render(
            StatusCode::NOT_FOUND,
            &MessagePage {
                title: "Not found",
                message: format!("shipment {id} not found"),
            },
        ),
        Err(error) => internal(&error),
    }
}

async fn list_api(State(pool): State<PgPool>) -> Response {
    match store::list(&pool).await {
        Ok(shipments) => Json(shipments).into_response(),
        Err(error) => internal(&error),
    }
}

async fn detail_api(State(pool): State<PgPool>, Path(id): Path<i64>) -> Response {
    match store::get(&pool, id).await {
        Ok(Some(shipment)) => Json(shipment).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("shipment {id} not found") })),
        )
            .into_response(),
        Err(error) => internal(&error),
    }
}
