//! The order service's HTTP surface: the JSON API and the HTML pages. Both place orders through
//! `place_order`, so the rules are the same, and both answer its refusals with the same `Problem`: as
//! problem+json on the API, on the form or the message page for a person.

mod api;
mod pages;

use crate::domain::{Invalid, NewOrder, OrderInput};
use crate::placer::Placer;
use crate::store::StoreError;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::metrics::Metrics;
use ordersystem_service_kit::problem::{Kind, Problem};
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::Notify;

/// Bodies above this are refused with 413: an order form or JSON order is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Stores orders, several at a time under load.
    pub placer: Placer,
    pub metrics: Metrics,
    /// Wakes the relay after an order committed.
    pub relay_wake: Arc<Notify>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Why a stored order was refused, as the problem the client sees. An unknown customer or item is a
/// validation problem naming the field (`items` are the order's item ids in line order, to name the line);
/// a database outage, overload or shutdown stored nothing and is `Unavailable`, so the client retries.
fn store_problem(error: StoreError, items: &[i64]) -> Problem {
    match error {
        StoreError::UnknownCustomer(_) => Problem::validation(error.to_string(), Some("customerId".into())),
        StoreError::UnknownItem(id) => Problem::validation(
            error.to_string(),
            items
                .iter()
                .position(|item| *item == id)
                .map(|line| format!("orderLine[{line}].itemId")),
        ),
        StoreError::Database(source) => Problem::database(&source),
        StoreError::Stopped => {
            tracing::warn!(%error, "order refused");
            Problem::unavailable("The service is shutting down; please retry.")
        }
        StoreError::Encode { .. } => {
            tracing::error!(%error, cause = ?std::error::Error::source(&error), "request failed");
            Problem::internal()
        }
    }
}

/// A refused order (the domain's or the form's), each refused field with its own message.
fn invalid_order(invalid: Invalid) -> Problem {
    Problem::invalid(invalid.0)
}

/// A JSON body axum could not read, as a problem: axum's text says what was wrong (syntax, missing field,
/// wrong type, too large, no JSON content type) and its status gives the kind. A body of the wrong shape is a
/// validation problem naming the field at fault, from the path axum reports.
fn unreadable(rejection: &JsonRejection) -> Problem {
    let detail = rejection.body_text();
    match Kind::from_status(rejection.status()) {
        Kind::Validation => {
            let field = json_field(&detail);
            Problem::validation(detail, field)
        }
        kind => Problem::new(kind, detail),
    }
}

/// The field of axum's "Failed to deserialize the JSON body into the target type: {path}: {error}", where
/// the path is absent at the top level and a missing field is named only in the error.
fn json_field(text: &str) -> Option<String> {
    let rest = text.strip_prefix("Failed to deserialize the JSON body into the target type: ")?;
    let (path, error) = match rest.split_once(": ") {
        Some((path, error)) if !path.contains(char::is_whitespace) => (Some(path), error),
        _ => (None, rest),
    };
    let missing = error
        .strip_prefix("missing field `")
        .and_then(|name| name.split_once('`'))
        .map(|(name, _)| name);
    match (path, missing) {
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (None, Some(name)) => Some(name.into()),
        (path, None) => path.map(Into::into),
    }
}

/// Validate, store with the outbox row, count, wake the relay.
#[tracing::instrument(skip_all, fields(customer_id = input.customer_id))]
async fn place_order(state: &AppState, input: OrderInput) -> Result<OrderPlaced, Problem> {
    let items: Vec<i64> = input.order_line.iter().map(|line| line.item_id).collect();
    let order = NewOrder::parse(input).map_err(invalid_order)?;
    let event = state
        .placer
        .place(order)
        .await
        .map_err(|error| store_problem(error, &items))?;
    ordersystem_service_kit::failpoint!(ordersystem_service_kit::failpoints::ORDER_COMMITTED);
    state.metrics.orders_accepted.inc();
    state.relay_wake.notify_one();
    tracing::info!(order_id = event.id, "order accepted");
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AddressInput, LineInput};
    use axum::Json;
    use axum::body::Body;
    use axum::extract::FromRequest;
    use axum::http::{Request, StatusCode};

    #[test]
    fn an_unreachable_database_or_shutdown_is_unavailable_and_unknown_items_name_their_line() {
        let unavailable = store_problem(StoreError::Database(sqlx::Error::PoolTimedOut), &[]);
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(store_problem(StoreError::Stopped, &[]).kind, Kind::Unavailable);
        let unknown = store_problem(StoreError::UnknownItem(9), &[3, 9]);
        assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(unknown.detail, "unknown item 9");
        assert_eq!(unknown.errors[0].field, "orderLine[1].itemId");
        assert_eq!(
            store_problem(StoreError::UnknownCustomer(4), &[]).errors[0].field,
            "customerId"
        );
        let internal = store_problem(StoreError::Database(sqlx::Error::RowNotFound), &[]);
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !internal.detail.contains("RowNotFound"),
            "internals stay in the log"
        );
    }

    fn valid() -> OrderInput {
        let address = AddressInput {
            street: "Ohlauer Str. 43".into(),
            zip: "10999".into(),
            city: "Berlin".into(),
        };
        OrderInput {
            customer_id: 1,
            shipping_address: address.clone(),
            billing_address: address,
            order_line: vec![LineInput { count: 1, item_id: 1 }; 2],
        }
    }

    /// The fields named for what the domain actually refuses, so a reworded message shows up here.
    #[test]
    fn refused_orders_name_their_field() {
        let field = |change: fn(&mut OrderInput)| {
            let mut input = valid();
            change(&mut input);
            let invalid = NewOrder::parse(input).expect_err("refused");
            invalid_order(invalid).errors.first().map(|e| e.field.clone())
        };
        assert_eq!(field(|i| i.order_line.clear()).as_deref(), Some("orderLine"));
        assert_eq!(
            field(|i| i.order_line = vec![LineInput { count: 1, item_id: 1 }; 101]).as_deref(),
            Some("orderLine")
        );
        assert_eq!(
            field(|i| i.order_line[1].count = 0).as_deref(),
            Some("orderLine[1].count")
        );
        assert_eq!(
            field(|i| i.shipping_address.zip = " ".into()).as_deref(),
            Some("shippingAddress.zip")
        );
        assert_eq!(
            field(|i| i.billing_address.city = "a\u{0}b".into()).as_deref(),
            Some("billingAddress.city")
        );
        assert_eq!(
            field(|i| i.billing_address.street = "s".repeat(201)).as_deref(),
            Some("billingAddress.street")
        );
    }

    async fn rejected(body: &str) -> Problem {
        let request = Request::post("/api/orders")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let rejection = Json::<OrderInput>::from_request(request, &())
            .await
            .expect_err("rejected");
        unreadable(&rejection)
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_shape_names_the_field_and_malformed_json_is_a_bad_request() {
        let wrong_type =
            rejected(r#"{"customerId": "one", "shippingAddress": {}, "billingAddress": {}}"#).await;
        assert_eq!(wrong_type.kind, Kind::Validation);
        assert_eq!(wrong_type.errors[0].field, "customerId");
        let line = rejected(
            r#"{"customerId": 1, "shippingAddress": {}, "billingAddress": {}, "orderLine": [{"count": 1}]}"#,
        )
        .await;
        assert_eq!(line.errors[0].field, "orderLine[0].itemId");
        let missing = rejected(r#"{"shippingAddress": {}, "billingAddress": {}}"#).await;
        assert_eq!(missing.errors[0].field, "customerId");
        let malformed = rejected(r#"{"customerId": "#).await;
        assert_eq!(malformed.kind, Kind::BadRequest);
        assert!(malformed.detail.contains("EOF"), "{}", malformed.detail);
    }
}
