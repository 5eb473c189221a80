//! What the services' HTML pages share: a rendered page as a response, and the one answer to a failed
//! database call. Their templates `base.html` (every page extends it) and `message.html` are in this crate's
//! `templates/`; each service's `askama.toml` lists that directory after its own.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Display;

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
