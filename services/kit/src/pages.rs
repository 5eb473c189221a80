//! What the services' pages and JSON APIs share: a rendered page as a response, the message page, the
//! answer to a record that is not there, and the one answer to a failed database call. The templates
//! `base.html` (every page extends it) and `message.html` are in this crate's `templates/`; each service's
//! `askama.toml` lists that directory after its own.

use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Display;

/// A page that says one thing: an error, or that something is not there.
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub title: String,
    pub message: String,
}

/// `page` rendered, with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    html(status, page.render())
}

/// The page `rendered` with `status`; a template that failed to render is logged and answered with a 500.
pub fn html<E: Display>(status: StatusCode, rendered: Result<String, E>) -> Response {
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A database failure: logged once here, generic to the client.
pub fn internal(error: &sqlx::Error) -> Response {
    tracing::error!(%error, "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error, please try again",
    )
        .into_response()
}

/// What a read found, shown by `show`; a failed read is `internal`.
pub fn answer<T>(read: Result<T, sqlx::Error>, show: impl FnOnce(T) -> Response) -> Response {
    read.map_or_else(|error| internal(&error), show)
}

/// The record `what` `id` that a read looked for, as a page: shown by `show` when found, the message page
/// "{what} {id} not found" (404) when not, `internal` when the read failed.
pub fn one_page<T>(
    read: Result<Option<T>, sqlx::Error>,
    (what, id): (&str, i64),
    show: impl FnOnce(T) -> Response,
) -> Response {
    let message = Message {
        title: "Not found".into(),
        message: format!("{what} {id} not found"),
    };
    one(read, show, || render(StatusCode::NOT_FOUND, &message))
}

/// The record `what` `id` that a read looked for, in the JSON API: `show`n when found,
/// `{"error": "{what} {id} not found"}` (404) when not, `internal` when the read failed.
pub fn one_json<T>(
    read: Result<Option<T>, sqlx::Error>,
    (what, id): (&str, i64),
    show: impl FnOnce(T) -> Response,
) -> Response {
    let error = serde_json::json!({ "error": format!("{what} {id} not found") });
    one(read, show, || {
        (StatusCode::NOT_FOUND, Json(error)).into_response()
    })
}

fn one<T>(
    read: Result<Option<T>, sqlx::Error>,
    show: impl FnOnce(T) -> Response,
    not_found: impl FnOnce() -> Response,
) -> Response {
    answer(read, |found| found.map_or_else(not_found, show))
}
