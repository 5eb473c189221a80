//! What the services' pages and JSON APIs share: a rendered page as a response, the message page, and the
//! answers to a record that is not there and to a failed database call (a `Problem`, as problem+json or as
//! the message page). The templates `base.html` (every page extends it) and `message.html` are in this
//! crate's `templates/`; each service's `askama.toml` lists that directory after its own.

use crate::problem::Problem;
use askama::Template;
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

/// What a read found, shown by `show` as a page; a failed read is the message page of `Problem::database`.
pub fn answer<T>(read: Result<T, sqlx::Error>, show: impl FnOnce(T) -> Response) -> Response {
    read.map_or_else(|error| Problem::database(&error).page(), show)
}

/// What a read found, shown by `show` in the JSON API; a failed read is `Problem::database` as problem+json.
pub fn answer_json<T>(read: Result<T, sqlx::Error>, show: impl FnOnce(T) -> Response) -> Response {
    read.map_or_else(|error| Problem::database(&error).into_response(), show)
}

/// The record `what` `id` that a read looked for, as a page: shown by `show` when found, the message page
/// "{what} {id} not found" (404) when not, the message page of `Problem::database` when the read failed.
pub fn one_page<T>(
    read: Result<Option<T>, sqlx::Error>,
    (what, id): (&str, i64),
    show: impl FnOnce(T) -> Response,
) -> Response {
    answer(read, |found| {
        found.map_or_else(|| Problem::not_found(what, id).page(), show)
    })
}

/// The record `what` `id` that a read looked for, in the JSON API: `show`n when found, a not-found problem
/// (404) when not, `Problem::database` when the read failed.
pub fn one_json<T>(
    read: Result<Option<T>, sqlx::Error>,
    (what, id): (&str, i64),
    show: impl FnOnce(T) -> Response,
) -> Response {
    answer_json(read, |found| {
        found.map_or_else(|| Problem::not_found(what, id).into_response(), show)
    })
}
