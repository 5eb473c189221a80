//! The invoicing pages (`/`, `/{id}`) and JSON API (`/api/invoices`, `/api/invoices/{id}`). Read-only.
//! Lists come a page at a time (`ordersystem_service_kit::paging`); amounts are `Money`. Errors are
//! problem+json on the API and the message page on the pages (`ordersystem_service_kit::problem`).

use crate::domain::Invoice;
use crate::store;
use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordersystem_service_kit::money::{self, Money};
use ordersystem_service_kit::pages::{self, render};
use ordersystem_service_kit::paging::{Page, PagePaging, Paging};
use ordersystem_service_kit::problem::Problem;
use ordersystem_service_kit::public::{self, Link};
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
    invoices: Page<store::InvoiceSummary>,
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct DetailPage {
    invoice: Invoice,
    /// The same order's pages at order and shipping, where they are published.
    related: Vec<Link>,
}

async fn list_page(State(pool): State<PgPool>, PagePaging(paging): PagePaging) -> Response {
    pages::answer(store::list(&pool, &paging).await, |invoices| {
        render(StatusCode::OK, &ListPage { invoices })
    })
}

async fn detail_page(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    pages::one_page(store::get(&pool, id).await, ("invoice", id), |invoice| {
        let related = public::related(invoice.order_id);
        render(StatusCode::OK, &DetailPage { invoice, related })
    })
}

async fn list_api(State(pool): State<PgPool>, paging: Paging) -> Response {
    pages::answer_json(store::list(&pool, &paging).await, IntoResponse::into_response)
}

/// The invoice as stored, its prices and `totalAmount` as `Money`.
async fn detail_api(State(pool): State<PgPool>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    pages::one_json(store::get(&pool, id).await, ("invoice", id), |invoice| {
        let mut value = serde_json::to_value(&invoice).unwrap_or_default();
        if let Some(lines) = value["lines"].as_array_mut() {
            for (json, line) in lines.iter_mut().zip(&invoice.lines) {
                json["price"] = money::text(line.price);
            }
        }
        value["totalAmount"] = money::text(invoice.total());
        Json(value).into_response()
    })
}
