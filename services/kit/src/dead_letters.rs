//! The dead letters of a consumer service, for a person and for a client, and their redrive
//! (`consumer::redrive`): pages at `/dead-letters` and `/dead-letters/{id}` (with a "Redrive" button that
//! posts to `/dead-letters/{id}/redrive` and comes back to the page), and the JSON API at
//! `/api/dead-letters`, `/api/dead-letters/{id}` and `POST /api/dead-letters/{id}/redrive`. Each shows the
//! reason, the error, where the record was (topic, partition, offset), its key and payload as text where
//! they are text (hexadecimal where not), when it was set aside, and whether and how it was redriven.

use crate::consumer::Handler;
use crate::consumer::redrive::{self, RedriveError, Redriven};
use crate::consumer::store::{self, StoredDeadLetter};
use crate::metrics::Metrics;
use crate::pages::{self, render};
use crate::paging::{Page, PagePaging, Paging};
use crate::problem::{Kind, Problem};
use crate::public;
use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;

/// The query a redrive from the page redirects to, to say it was done.
const REDRIVEN: &str = "redriven";

/// What the routes share: the service's pool, its handler (the loop's) and its metrics.
pub struct DeadLetters<H> {
    pub pool: PgPool,
    pub handler: Arc<H>,
    pub metrics: Metrics,
}

impl<H> Clone for DeadLetters<H> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            handler: self.handler.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The routes, to merge into the service's router.
pub fn router<H: Handler>(state: DeadLetters<H>) -> Router {
    Router::new()
        .route("/dead-letters", get(list_page::<H>))
        .route("/dead-letters/{id}", get(detail_page::<H>))
        .route("/dead-letters/{id}/redrive", post(redrive_page::<H>))
        .route("/api/dead-letters", get(list_api::<H>))
        .route("/api/dead-letters/{id}", get(detail_api::<H>))
        .route("/api/dead-letters/{id}/redrive", post(redrive_api::<H>))
        .with_state(state)
}

/// A dead letter as the JSON API and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub error: String,
    /// The record's key as text (an order id), when it has one that is text.
    pub key: Option<String>,
    /// The payload as text, when it is UTF-8.
    pub payload: Option<String>,
    /// The payload in hexadecimal, when it is not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
    pub payload_bytes: usize,
    pub created_at: DateTime<Utc>,
    pub redriven_at: Option<DateTime<Utc>>,
    /// What the redrive came to: `Stored`, or `Duplicate` when the order was stored meanwhile.
    pub redrive_outcome: Option<String>,
}

impl From<StoredDeadLetter> for DeadLetterView {
    fn from(letter: StoredDeadLetter) -> Self {
        let payload = letter.payload.unwrap_or_default();
        let payload_bytes = payload.len();
        let (payload, payload_hex) = match String::from_utf8(payload) {
            Ok(text) => (Some(text), None),
            Err(bytes) => (
                None,
                Some(bytes.as_bytes().iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        Self {
            id: letter.id,
            topic: letter.topic,
            partition: letter.partition,
            offset: letter.offset,
            reason: letter.reason,
            error: letter.error,
            key: letter.record_key.and_then(|key| String::from_utf8(key).ok()),
            payload,
            payload_hex,
            payload_bytes,
            created_at: letter.created_at,
            redriven_at: letter.redriven_at,
            redrive_outcome: letter.redrive_outcome,
        }
    }
}

impl DeadLetterView {
    /// Where the person sees it.
    pub fn href(&self) -> String {
        public::local(&format!("/dead-letters/{}", self.id))
    }
}

/// The answer of a redrive through the API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RedriveAnswer {
    id: i64,
    order_id: i64,
    outcome: &'static str,
    redriven_at: DateTime<Utc>,
}

impl From<RedriveError> for Problem {
    fn from(error: RedriveError) -> Self {
        match error {
            RedriveError::NotFound(id) => Problem::not_found("dead letter", id),
            RedriveError::Unavailable(source) => Problem::database(&source),
            other => Problem::new(Kind::Conflict, other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "deadletters.html")]
struct ListPage {
    letters: Page<DeadLetterView>,
}

#[derive(Template)]
#[template(path = "deadletter.html")]
struct DetailPage {
    letter: DeadLetterView,
    /// Shown above it: that it was just redriven, or why a redrive stored nothing.
    notice: Option<String>,
    error: Option<String>,
    redrive_action: String,
}

async fn read_page(pool: &PgPool, paging: &Paging) -> Result<Page<DeadLetterView>, sqlx::Error> {
    Ok(store::list(pool, paging).await?.map(DeadLetterView::from))
}

async fn list_page<H: Handler>(
    State(state): State<DeadLetters<H>>,
    PagePaging(paging): PagePaging,
) -> Response {
    pages::answer(read_page(&state.pool, &paging).await, |letters| {
        render(StatusCode::OK, &ListPage { letters })
    })
}

fn detail(
    letter: DeadLetterView,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let redrive_action = public::local(&format!("/dead-letters/{}/redrive", letter.id));
    render(
        status,
        &DetailPage {
            letter,
            notice,
            error,
            redrive_action,
        },
    )
}

async fn detail_page<H: Handler>(
    State(state): State<DeadLetters<H>>,
    id: Result<Path<i64>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    let redriven = pages::has_flag(query.as_deref(), REDRIVEN);
    pages::one_page(store::get(&state.pool, id).await, ("dead letter", id), |letter| {
        let letter = DeadLetterView::from(letter);
        let notice = redriven.then(|| match &letter.redrive_outcome {
            Some(outcome) if outcome == redrive::DUPLICATE => {
                "Redriven: the order was stored meanwhile with the same content; nothing was written."
                    .to_string()
            }
            _ => "Redriven: the event was stored.".to_string(),
        });
        detail(letter, notice, None, StatusCode::OK)
    })
}

/// The "Redrive" button: back to the dead letter's page (Post/Redirect/Get), or the page with why nothing
/// was stored.
async fn redrive_page<H: Handler>(
    State(state): State<DeadLetters<H>>,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    match redrive::redrive(&state.pool, &*state.handler, &state.metrics, id).await {
        Ok(_) => Redirect::to(&public::local(&format!("/dead-letters/{id}?{REDRIVEN}"))).into_response(),
        Err(error) => {
            let problem = Problem::from(error);
            match (problem.kind, store::get(&state.pool, id).await) {
                (Kind::Conflict, Ok(Some(letter))) => detail(
                    letter.into(),
                    None,
                    Some(problem.detail.clone()),
                    problem.status(),
                ),
                _ => problem.page(),
            }
        }
    }
}

async fn list_api<H: Handler>(State(state): State<DeadLetters<H>>, paging: Paging) -> Response {
    pages::answer_json(read_page(&state.pool, &paging).await, IntoResponse::into_response)
}

async fn detail_api<H: Handler>(
    State(state): State<DeadLetters<H>>,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    pages::one_json(store::get(&state.pool, id).await, ("dead letter", id), |letter| {
        Json(DeadLetterView::from(letter)).into_response()
    })
}

async fn redrive_api<H: Handler>(
    State(state): State<DeadLetters<H>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<RedriveAnswer>, Problem> {
    let Path(id) = id?;
    let Redriven {
        id,
        order_id,
        outcome,
        at,
    } = redrive::redrive(&state.pool, &*state.handler, &state.metrics, id).await?;
    Ok(Json(RedriveAnswer {
        id,
        order_id,
        outcome,
        redriven_at: at,
    }))
}
