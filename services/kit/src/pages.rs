//! What the services' pages and JSON APIs share: a rendered page as a response, the message page, the
//! stylesheet, and the answers to a record that is not there and to a failed database call (a `Problem`,
//! as problem+json or as the message page). The templates `base.html` (every page extends it) and
//! `message.html` are in this crate's `templates/`, the stylesheet in `static/`; each service's
//! `askama.toml` lists the templates after its own.

use crate::problem::Problem;
use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::fmt::Display;

/// Where every service serves the pages' stylesheet (under its public path, when it has one).
pub const STYLESHEET_PATH: &str = "/static/style.css";

/// The stylesheet: the service's own, so the pages need nothing from elsewhere.
const STYLESHEET: &str = include_str!("../static/style.css");

/// The routes of what the pages load: the stylesheet, cacheable for an hour.
pub fn assets() -> Router {
    Router::new().route(
        STYLESHEET_PATH,
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                STYLESHEET,
            )
        }),
    )
}

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

/// Whether the query string `query` holds the bare flag `flag` (`?placed`, `?a=1&redriven`): what a
/// redirect after a POST adds to say what was done.
pub fn has_flag(query: Option<&str>, flag: &str) -> bool {
    query.is_some_and(|query| query.split('&').any(|pair| pair == flag))
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
