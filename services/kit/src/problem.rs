//! The one error answer of the services' JSON APIs: an RFC 9457 problem (`application/problem+json`) whose
//! `type` names the kind of error, so a client can branch on it instead of on the wording, and the same
//! error as the message page for a person. Internal causes (database messages) are logged here, never sent.

use crate::pages::{Message, render};
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of a problem document (RFC 9457, section 3).
pub const CONTENT_TYPE: &str = "application/problem+json";

/// Seconds a client is asked to wait before retrying a 503: longer than the database pool's acquire timeout,
/// so a retry does not meet the same full pool.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Every kind of error the services answer with; the `type` URI, status and title of each are fixed here,
/// and clients may rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request could not be read: malformed JSON, a form that is no form, an id that is no number.
    BadRequest,
    /// The request was read but its content is refused; `errors` names the fields.
    Validation,
    /// The body is larger than the service accepts.
    TooLarge,
    /// The body is not of the media type the endpoint reads.
    UnsupportedMediaType,
    /// The record asked for does not exist.
    NotFound,
    /// The record's state does not allow what was asked: a dead letter redriven before, or whose redrive
    /// would still conflict or still fail; nothing was changed.
    Conflict,
    /// The database is unreachable or busy, or the service is shutting down: nothing was changed and a
    /// retry after `Retry-After` seconds may well succeed.
    Unavailable,
    /// Anything else; the cause is in the service's log.
    Internal,
}

impl Kind {
    pub const ALL: [Self; 8] = [
        Self::BadRequest,
        Self::Validation,
        Self::TooLarge,
        Self::UnsupportedMediaType,
        Self::NotFound,
        Self::Conflict,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The stable `type` URI (a relative reference, as RFC 9457 allows).
    pub const fn uri(self) -> &'static str {
        match self {
            Self::BadRequest => "/problems/bad-request",
            Self::Validation => "/problems/validation",
            Self::TooLarge => "/problems/too-large",
            Self::UnsupportedMediaType => "/problems/unsupported-media-type",
            Self::NotFound => "/problems/not-found",
            Self::Conflict => "/problems/conflict",
            Self::Unavailable => "/problems/unavailable",
            Self::Internal => "/problems/internal",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The same for every occurrence of the kind (RFC 9457, section 3.1.3).
    pub const fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::Validation => "Invalid request",
            Self::TooLarge => "Request too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
        }
    }

    /// The kind whose status is `status`; statuses without a kind of their own are a bad request (4xx) or
    /// internal (anything else).
    pub fn from_status(status: StatusCode) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.status() == status)
            .unwrap_or(if status.is_client_error() {
                Self::BadRequest
            } else {
                Self::Internal
            })
    }
}

/// One refused field of a request, named as the client sent it (`customerId`, `orderLine[0].count`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answer: problem+json from a JSON route (`into_response`), the message page from an HTML route
/// (`page`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Problem {
    pub kind: Kind,
    /// What went wrong in this occurrence, as a sentence a client may show.
    pub detail: String,
    /// The request path the problem occurred at.
    pub instance: Option<String>,
    /// The refused fields of a validation problem.
    pub errors: Vec<FieldError>,
}

/// The problem document as sent.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            instance: None,
            errors: Vec::new(),
        }
    }

    /// A refused request; `field`, when known, is the field the `detail` is about.
    pub fn validation(detail: impl Into<String>, field: Option<String>) -> Self {
        let detail = detail.into();
        let errors = field
            .map(|field| FieldError {
                field,
                message: detail.clone(),
            })
            .into_iter()
            .collect();
        Self {
            errors,
            ..Self::new(Kind::Validation, detail)
        }
    }

    /// A refused request naming each refused field with its own message; the detail is the messages in
    /// order, joined by "; ".
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(Kind::Validation, detail)
        }
    }

    /// `what` `id` does not exist.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(Kind::NotFound, format!("{what} {id} not found"))
    }

    /// A retryable refusal; nothing was changed.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(Kind::Unavailable, detail)
    }

    /// The generic 500; the caller has logged the cause.
    pub fn internal() -> Self {
        Self::new(Kind::Internal, "The request failed; please try again.")
    }

    /// A failed database call, logged once here: an unreachable or busy database is `Unavailable`,
    /// anything else `Internal`. The database's own message stays in the log.
    pub fn database(error: &sqlx::Error) -> Self {
        if is_unavailable(error) {
            tracing::warn!(%error, "database unavailable");
            Self::unavailable("The database is busy or unavailable; please retry.")
        } else {
            tracing::error!(%error, "request failed");
            Self::internal()
        }
    }

    /// The same problem, reported at `path`.
    #[must_use]
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.instance = Some(path.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The problem as the message page, with the same status, title and detail, and `Retry-After` on a 503.
    pub fn page(&self) -> Response {
        let page = Message {
            title: self.kind.title().into(),
            message: self.detail.clone(),
        };
        with_retry_after(self.kind, render(self.status(), &page))
    }

    /// The problem document.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Document {
            kind: self.kind.uri(),
            title: self.kind.title(),
            status: self.status().as_u16(),
            detail: &self.detail,
            instance: self.instance.as_deref(),
            errors: &self.errors,
        })
        .unwrap_or_default()
    }
}

/// Whether `error` says the database could not be reached or could not serve rather than that the request
/// failed there: the pool is exhausted or closed; the connection broke or could not be made (a server that
/// drops the connection during the handshake shows as a TLS or protocol error); or PostgreSQL refused the
/// connection or is shutting down or starting (SQLSTATE classes 08 and 53, 57P01–57P03).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("53") || ["57P01", "57P02", "57P03"].contains(&&*code)
        }),
        _ => false,
    }
}

/// `response` with `Retry-After` when `kind` is `Unavailable`.
pub fn with_retry_after(kind: Kind, mut response: Response) -> Response {
    if kind == Kind::Unavailable {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let response = (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            body,
        )
            .into_response();
        with_retry_after(self.kind, response)
    }
}

/// An id in the path that is no number, or another path that cannot be read.
impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Self::new(Kind::from_status(rejection.status()), rejection.body_text())
    }
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        Self::database(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn sent(problem: Problem) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = problem.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&bytes).expect("JSON body"),
        )
    }

    #[tokio::test]
    async fn a_validation_problem_is_problem_json_with_its_type_status_and_fields() {
        let problem = Problem::validation("unknown customer 9", Some("customerId".into())).at("/api/orders");
        let (status, headers, body) = sent(problem).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert!(
            headers.get(header::RETRY_AFTER).is_none(),
            "only a 503 asks for a retry"
        );
        assert_eq!(
            body,
            json!({
                "type": "/problems/validation",
                "title": "Invalid request",
                "status": 422,
                "detail": "unknown customer 9",
                "instance": "/api/orders",
                "errors": [{"field": "customerId", "message": "unknown customer 9"}]
            })
        );
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_503_with_retry_after_and_no_database_text() {
        let error = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused by 10.0.0.7:5432",
        ));
        let (status, headers, body) = sent(Problem::database(&error)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(headers[header::RETRY_AFTER], RETRY_AFTER_SECONDS.to_string());
        assert_eq!(body["type"], "/problems/unavailable");
        assert_eq!(body["status"], 503);
        assert!(
            body.get("errors").is_none() && body.get("instance").is_none(),
            "{body}"
        );
        assert!(!body.to_string().contains("10.0.0.7"), "{body}");
    }

    #[test]
    fn a_connection_that_cannot_be_made_is_unavailable_and_a_failed_statement_is_not() {
        let handshake = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert_eq!(Problem::database(&handshake).kind, Kind::Unavailable);
        assert_eq!(
            Problem::database(&sqlx::Error::PoolTimedOut).kind,
            Kind::Unavailable
        );
        assert_eq!(Problem::database(&sqlx::Error::RowNotFound).kind, Kind::Internal);
        assert_eq!(
            Problem::database(&sqlx::Error::ColumnNotFound("id".into())).kind,
            Kind::Internal
        );
    }

    #[tokio::test]
    async fn any_other_database_failure_is_a_generic_500() {
        let (status, headers, body) = sent(Problem::from(sqlx::Error::RowNotFound)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE);
        assert!(headers.get(header::RETRY_AFTER).is_none());
        assert_eq!(body["type"], "/problems/internal");
        assert_eq!(body["title"], "Internal error");
        assert!(!body.to_string().contains("RowNotFound"), "{body}");
    }

    #[tokio::test]
    async fn the_page_shows_the_same_status_title_and_detail_and_keeps_retry_after() {
        let response = Problem::unavailable("The database is busy.").page();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|t| t.starts_with("text/html"))
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let page = String::from_utf8_lossy(&bytes);
        assert!(
            page.contains("Service unavailable") && page.contains("The database is busy."),
            "{page}"
        );
    }

    #[test]
    fn kinds_have_distinct_types_and_statuses_and_map_back_from_their_status() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_status(kind.status()), kind);
            assert_eq!(Kind::ALL.iter().filter(|k| k.uri() == kind.uri()).count(), 1);
        }
        assert_eq!(
            Kind::from_status(StatusCode::METHOD_NOT_ALLOWED),
            Kind::BadRequest
        );
        assert_eq!(Kind::from_status(StatusCode::BAD_GATEWAY), Kind::Internal);
    }

    #[test]
    fn the_services_readme_documents_every_kind() {
        let readme = include_str!("../../README.md");
        for kind in Kind::ALL {
            let row = format!(
                "| `{}` | {} | {} |",
                kind.uri(),
                kind.status().as_u16(),
                kind.title()
            );
            assert!(readme.contains(&row), "services/README.md lacks the row {row}");
        }
    }
}
