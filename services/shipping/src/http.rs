//! The shipping pages (`/`, `/{id}`) and JSON API (`/api/shipments`, `/api/shipments/{id}`). Read-only.
//! Errors are problem+json on the API and the message page on the pages (`ordersystem_service_kit::problem`).

use crate::domain::Shipment;
use crate::store;
use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordersystem_service_kit::pages::{self, render};
use ordersystem_service_kit::problem::Problem;
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

async fn list_page(State(pool): State<PgPool>) -> Response {
    pages::answer(store::list(&pool).await, |shipments| {
        render(StatusCode::OK, &ListPage { shipments })
    })
}

async fn detail_page(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    pages::one_page(store::get(&pool, id).await, ("shipment", id), |shipment| {
        render(StatusCode::OK, &DetailPage { shipment })
    })
}

async fn list_api(State(pool): State<PgPool>) -> Response {
    pages::answer_json(store::list(&pool).await, |shipments| {
        Json(shipments).into_response()
    })
}

async fn detail_api(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    pages::one_json(store::get(&pool, id).await, ("shipment", id), |shipment| {
        Json(shipment).into_response()
    })
}
