//! The invoicing pages (`/`, `/{id}`) and JSON API (`/api/invoices`, `/api/invoices/{id}`). Read-only.

use crate::domain::Invoice;
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
        Ok(invoices) => render(StatusCode::OK, &ListPage { invoices }),
        Err(error) => internal(&error),
    }
}

async fn detail_page(State(pool): State<PgPool>, Path(id): Path<i64>) -> Response {
    match store::get(&pool, id).await {
        Ok(Some(invoice)) => render(
            StatusCode::OK,
            &DetailPage {
                total: invoice.total().to_string(),
                invoice,
            },
        ),
        Ok(None) => render(
            StatusCode::NOT_FOUND,
            &MessagePage {
                title: "Not found",
                message: format!("invoice {id} not found"),
            },
        ),
        Err(error) => internal(&error),
    }
}

async fn list_api(State(pool): State<PgPool>) -> Response {
    match store::list(&pool).await {
        Ok(invoices) => Json(invoices).into_response(),
        Err(error) => internal(&error),
    }
}

async fn detail_api(State(pool): State<PgPool>, Path(id): Path<i64>) -> Response {
    match store::get(&pool, id).await {
        Ok(Some(invoice)) => {
            let mut value = serde_json::to_value(&invoice).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert(
                    "totalAmount".into(),
                    serde_json::Value::String(invoice.total().to_string()),
                );
            }
            Json(value).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("invoice {id} not found") })),
        )
            .into_response(),
        Err(error) => internal(&error),
    }
}
