//! The HTML pages, recognisably the reference's: order list (`/`), form (`/form.html`, "Add Line" posts to
//! `/line`, "Submit" to `/`), and detail (`/{id}`). A refused order re-renders the form with the reason
//! and the person's input, never a stack trace; any other error is the message page with the status, title
//! and detail the JSON API gives the same error.

use super::{AppState, invalid_order, place_order};
use crate::domain::{AddressInput, LineInput, OrderInput};
use crate::store;
use askama::Template;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use ordersystem_contract::{Customer, Item, OrderPlaced};
use ordersystem_service_kit::pages::render;
use ordersystem_service_kit::problem::{Kind, Problem, with_retry_after};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(list).post(submit))
        .route("/form.html", get(form))
        .route("/line", post(add_line))
        .route("/{id}", get(detail))
}

#[derive(Template)]
#[template(path = "orderlist.html")]
struct ListPage {
    orders: Vec<store::OrderSummary>,
}

#[derive(Template)]
#[template(path = "orderform.html")]
struct FormPage {
    customers: Vec<Customer>,
    items: Vec<Item>,
    form: FormValues,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "order.html")]
struct DetailPage {
    total: String,
    order: OrderPlaced,
}

#[derive(Template)]
#[template(path = "success.html")]
struct SuccessPage {
    id: i64,
}

/// The form's fields as typed, so a refused form comes back with the person's input.
#[derive(Debug, Default)]
struct FormValues {
    customer: i64,
    shipping: AddressInput,
    billing: AddressInput,
    lines: Vec<FormLine>,
}

#[derive(Debug)]
struct FormLine {
    count: String,
    item: i64,
}

async fn list(State(state): State<AppState>) -> Response {
    match store::list(&state.pool).await {
        Ok(orders) => render(StatusCode::OK, &ListPage { orders }),
        Err(error) => Problem::database(&error).page(),
    }
}

async fn form_page(
    state: &AppState,
    status: StatusCode,
    form: FormValues,
    error: Option<String>,
) -> Response {
    let catalogue = async {
        Ok::<_, sqlx::Error>((
            store::customers(&state.pool).await?,
            store::items(&state.pool).await?,
        ))
    };
    match catalogue.await {
        Ok((customers, items)) => render(
            status,
            &FormPage {
                customers,
                items,
                form,
                error,
            },
        ),
        Err(error) => Problem::database(&error).page(),
    }
}

async fn form(State(state): State<AppState>) -> Response {
    form_page(&state, StatusCode::OK, FormValues::default(), None).await
}

/// "Add Line": nothing is stored; the form comes back with one more line (count 1, first item).
async fn add_line(
    State(state): State<AppState>,
    fields: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let mut values = match read_form(fields) {
        Ok(values) => values,
        Err(problem) => return problem.page(),
    };
    let first_item = store::items(&state.pool)
        .await
        .ok()
        .and_then(|items| items.first().map(|i| i.item_id));
    values.lines.push(FormLine {
        count: "1".into(),
        item: first_item.unwrap_or_default(),
    });
    form_page(&state, StatusCode::OK, values, None).await
}

async fn submit(
    State(state): State<AppState>,
    fields: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let values = match read_form(fields) {
        Ok(values) => values,
        Err(problem) => return problem.page(),
    };
    let result = match to_input(&values) {
        Ok(input) => place_order(&state, input).await,
        Err(message) => Err(invalid_order(message)),
    };
    match result {
        Ok(event) => render(StatusCode::OK, &SuccessPage { id: event.id }),
        // A refused order and a retryable refusal come back on the form, with the person's input.
        Err(problem) if problem.status().is_client_error() || problem.kind == Kind::Unavailable => {
            let page = form_page(&state, problem.status(), values, Some(problem.detail)).await;
            with_retry_after(problem.kind, page)
        }
        Err(problem) => problem.page(),
    }
}

async fn detail(State(state): State<AppState>, id: Result<Path<i64>, PathRejection>) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    match store::get(&state.pool, id).await {
        Ok(Some(order)) => render(
            StatusCode::OK,
            &DetailPage {
                total: order.total().to_string(),
                order,
            },
        ),
        Ok(None) => Problem::not_found("order", id).page(),
        Err(error) => Problem::database(&error).page(),
    }
}

/// The posted form's values; a body that is no form is a 400.
fn read_form(fields: Result<Form<Vec<(String, String)>>, FormRejection>) -> Result<FormValues, Problem> {
    let Form(fields) = fields.map_err(|_| Problem::new(Kind::BadRequest, "The form could not be read."))?;
    Ok(form_values(&fields))
}

/// The reference's field names: `customer`, `shippingAddress.street`, `orderLine[0].count`, `orderLine[0].item`.
fn form_values(fields: &[(String, String)]) -> FormValues {
    let mut values = FormValues::default();
    let mut lines: BTreeMap<usize, FormLine> = BTreeMap::new();
    for (name, value) in fields {
        match name.as_str() {
            "customer" => values.customer = value.trim().parse().unwrap_or_default(),
            "shippingAddress.street" => values.shipping.street.clone_from(value),
            "shippingAddress.zip" => values.shipping.zip.clone_from(value),
            "shippingAddress.city" => values.shipping.city.clone_from(value),
            "billingAddress.street" => values.billing.street.clone_from(value),
            "billingAddress.zip" => values.billing.zip.clone_from(value),
            "billingAddress.city" => values.billing.city.clone_from(value),
            other => {
                let Some((index, field)) = other
                    .strip_prefix("orderLine[")
                    .and_then(|rest| rest.split_once("]."))
                    .and_then(|(index, field)| Some((index.parse::<usize>().ok()?, field)))
                else {
                    continue;
                };
                let line = lines.entry(index).or_insert(FormLine {
                    count: String::new(),
                    item: 0,
                });
                match field {
                    "count" => line.count.clone_from(value),
                    "item" => line.item = value.trim().parse().unwrap_or_default(),
                    _ => {}
                }
            }
        }
    }
    values.lines = lines.into_values().collect();
    values
}

fn to_input(values: &FormValues) -> Result<OrderInput, String> {
    let order_line = values
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let count = line
                .count
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("line {}: count must be a whole number", index + 1))?;
            Ok(LineInput {
                count,
                item_id: line.item,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(OrderInput {
        customer_id: values.customer,
        shipping_address: values.shipping.clone(),
        billing_address: values.billing.clone(),
        order_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_field_names_are_read_into_lines_in_index_order() {
        let fields: Vec<(String, String)> = [
            ("customer", "2"),
            ("shippingAddress.city", "Berlin"),
            ("orderLine[1].count", "3"),
            ("orderLine[1].item", "4"),
            ("orderLine[0].count", "1"),
            ("orderLine[0].item", "2"),
            ("submit", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let values = form_values(&fields);
        assert_eq!(values.customer, 2);
        assert_eq!(values.shipping.city, "Berlin");
        let input = to_input(&values).unwrap();
        assert_eq!(
            input
                .order_line
                .iter()
                .map(|l| (l.count, l.item_id))
                .collect::<Vec<_>>(),
            vec![(1, 2), (3, 4)]
        );
    }

    #[test]
    fn a_non_numeric_count_names_its_line() {
        let values = FormValues {
            lines: vec![FormLine {
                count: "two".into(),
                item: 1,
            }],
            ..FormValues::default()
        };
        assert_eq!(
            to_input(&values).unwrap_err(),
            "line 1: count must be a whole number"
        );
    }
}
