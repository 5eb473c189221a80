//! The invoicing pages (`/`, `/{id}`) and JSON API (`/api/invoices`, `/api/invoices/{id}`). Read-only.
//! Errors are problem+json on the API and the message page on the pages (`ordersystem_service_kit::problem`).

use crate::domain::Invoice;
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
        .route("/api/invoices", get(list_api))
        .route("/api/invoices/{id}", get(detail_api))
        .with_state(pool)
}

#[derive(Template)]
#[template(path = "invoicelist.html")]
struct ListPage {
    invoices: Vec<store::InvoiceSummary>,
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct DetailPage {
    total: String,
    invoice: Invoice,
}

async fn list_page(State(pool): State<PgPool>) -> Response {
    pages::answer(store::list(&pool).await, |invoices| {
        render(StatusCode::OK, &ListPage { invoices })
    })
}

async fn detail_page(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    pages::one_page(store::get(&pool, id).await, ("invoice", id), |invoice| {
        let total = invoice.total().to_string();
        render(StatusCode::OK, &DetailPage { total, invoice })
    })
}

async fn list_api(State(pool): State<PgPool>) -> Response {
    pages::answer_json(store::list(&pool).await, |invoices| {
        Json(invoices).into_response()
    })
}

/// The invoice as stored, with its `totalAmount`.
async fn detail_api(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    pages::one_json(store::get(&pool, id).await, ("invoice", id), |invoice| {
        let mut value = serde_json::to_value(&invoice).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "totalAmount".into(),
                serde_json::Value::String(invoice.total().to_string()),
            );
        }
        Json(value).into_response()
    })
}
