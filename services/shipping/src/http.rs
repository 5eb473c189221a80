//! The shipping pages (`/`, `/{id}`) and JSON API (`/api/shipments`, `/api/shipments/{id}`). Read-only.
//! Lists come a page at a time (`ordersystem_service_kit::paging`). Errors are problem+json on the API and the message page on the pages (`ordersystem_service_kit::problem`).

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
use ordersystem_service_kit::paging::{Page, PagePaging, Paging};
use ordersystem_service_kit::problem::Problem;
use ordersystem_service_kit::public::{self, Link};
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
    shipments: Page<store::ShipmentSummary>,
}

#[derive(Template)]
#[template(path = "shipment.html")]
struct DetailPage {
    shipment: Shipment,
    /// The same order's pages at order and invoicing, where they are published.
    related: Vec<Link>,
}

async fn list_page(State(pool): State<PgPool>, PagePaging(paging): PagePaging) -> Response {
    pages::answer(store::list(&pool, &paging).await, |shipments| {
        render(StatusCode::OK, &ListPage { shipments })
    })
}

async fn detail_page(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    pages::one_page(store::get(&pool, id).await, ("shipment", id), |shipment| {
        let related = public::related(shipment.order_id);
        render(StatusCode::OK, &DetailPage { shipment, related })
    })
}

async fn list_api(State(pool): State<PgPool>, paging: Paging) -> Response {
    pages::answer_json(store::list(&pool, &paging).await, IntoResponse::into_response)
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
