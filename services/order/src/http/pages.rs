//! The HTML pages, recognisably the reference's: order list (`/`), form (`/form.html`, "Add Line" posts to
//! `/line`, "Submit" to `/`), and detail (`/{id}`). A placed order redirects to its page (Post/Redirect/Get:
//! reloading that page places nothing). A refused order re-renders the form with the person's input and
//! each refused field marked with its own message, never a stack trace; any other error is the message
//! page with the status, title and detail the JSON API gives the same error.

use super::{AppState, invalid_order, place_order};
use crate::domain::{AddressInput, Invalid, LineInput, NewOrder, OrderInput};
use crate::store;
use askama::Template;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use ordersystem_contract::{Customer, Item, OrderPlaced};
use ordersystem_service_kit::money::Money;
use ordersystem_service_kit::pages::{self, render};
use ordersystem_service_kit::paging::{Page, PagePaging};
use ordersystem_service_kit::problem::{FieldError, Kind, Problem, with_retry_after};
use ordersystem_service_kit::public::{self, Link};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(list).post(submit))
        .route("/form.html", get(form))
        .route("/line", post(add_line))
        .route("/{id}", get(detail))
}

/// The query the order page is redirected to after the order was placed, to say so.
const PLACED: &str = "placed";

#[derive(Template)]
#[template(path = "orderlist.html")]
struct ListPage {
    orders: Page<store::OrderSummary>,
}

#[derive(Template)]
#[template(path = "orderform.html")]
struct FormPage {
    customers: Vec<Customer>,
    items: Vec<Item>,
    form: FormValues,
    /// What was refused, as one sentence, when something was.
    error: Option<String>,
    /// Each refused field's own message, by the field's JSON name (`shippingAddress.zip`).
    errors: BTreeMap<String, String>,
}

impl FormPage {
    /// The message of the refused field `field` (its JSON name), if it was refused.
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// The message of field `field` (`count`, `itemId`) of line `index` (from 0), if it was refused.
    fn line_error(&self, index: &usize, field: &str) -> Option<&str> {
        self.error(&format!("orderLine[{index}].{field}"))
    }

    /// The two address blocks of the form, in order.
    fn addresses(&self) -> [AddressBlock<'_>; 2] {
        [
            AddressBlock {
                legend: "Shipping Address",
                name: "shippingAddress",
                id: "shipping",
                values: &self.form.shipping,
            },
            AddressBlock {
                legend: "Billing Address",
                name: "billingAddress",
                id: "billing",
                values: &self.form.billing,
            },
        ]
    }
}

/// One address of the form: its fields are `{name}.street` and so on, their element ids `{id}-street`, and
/// `{id}` is also the browser's autofill section (`shipping street-address`).
struct AddressBlock<'a> {
    legend: &'static str,
    name: &'static str,
    id: &'static str,
    values: &'a AddressInput,
}

/// An address field: its name, label and autofill token.
struct AddressField {
    name: &'static str,
    label: &'static str,
    autocomplete: &'static str,
}

const ADDRESS_FIELDS: [AddressField; 3] = [
    AddressField {
        name: "street",
        label: "Street",
        autocomplete: "street-address",
    },
    AddressField {
        name: "zip",
        label: "ZIP",
        autocomplete: "postal-code",
    },
    AddressField {
        name: "city",
        label: "City",
        autocomplete: "address-level2",
    },
];

impl AddressBlock<'_> {
    fn value(&self, field: &AddressField) -> &str {
        match field.name {
            "street" => &self.values.street,
            "zip" => &self.values.zip,
            _ => &self.values.city,
        }
    }
}

#[derive(Template)]
#[template(path = "order.html")]
struct DetailPage {
    order: OrderPlaced,
    /// Whether the person was just redirected here from placing it.
    placed: bool,
    /// Its invoice and shipment, where invoicing and shipping are published.
    related: Vec<Link>,
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

async fn list(State(state): State<AppState>, PagePaging(paging): PagePaging) -> Response {
    match store::list(&state.pool, &paging).await {
        Ok(orders) => render(StatusCode::OK, &ListPage { orders }),
        Err(error) => Problem::database(&error).page(),
    }
}

async fn form_page(
    state: &AppState,
    status: StatusCode,
    form: FormValues,
    refused: Option<&Problem>,
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
                error: refused.map(|problem| problem.detail.clone()),
                errors: refused
                    .iter()
                    .flat_map(|problem| &problem.errors)
                    .map(|e| (e.field.clone(), e.message.clone()))
                    .collect(),
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
        Err(invalid) => Err(invalid_order(invalid)),
    };
    match result {
        // See Other: the browser shows the order with a GET, so a reload places nothing.
        Ok(event) => Redirect::to(&format!("{}?{PLACED}", event.id)).into_response(),
        // A refused order and a retryable refusal come back on the form, with the person's input.
        Err(problem) if problem.status().is_client_error() || problem.kind == Kind::Unavailable => {
            let page = form_page(&state, problem.status(), values, Some(&problem)).await;
            with_retry_after(problem.kind, page)
        }
        Err(problem) => problem.page(),
    }
}

async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return Problem::from(rejection).page(),
    };
    let placed = pages::has_flag(query.as_deref(), PLACED);
    match store::get(&state.pool, id).await {
        Ok(Some(order)) => render(
            StatusCode::OK,
            &DetailPage {
                related: public::related(order.id),
                placed,
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

/// The form as an order. A count that is no whole number is refused here, naming its line, together with
/// whatever else the order's rules refuse, so the person fixes everything at once.
fn to_input(values: &FormValues) -> Result<OrderInput, Invalid> {
    let mut unreadable = Vec::new();
    let order_line = values
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let count = line.count.trim().parse::<i64>().unwrap_or_else(|_| {
                unreadable.push(FieldError {
                    field: format!("orderLine[{index}].count"),
                    message: format!("line {}: count must be a whole number", index + 1),
                });
                1
            });
            LineInput {
                count,
                item_id: line.item,
            }
        })
        .collect();
    let input = OrderInput {
        customer_id: values.customer,
        shipping_address: values.shipping.clone(),
        billing_address: values.billing.clone(),
        order_line,
    };
    if unreadable.is_empty() {
        return Ok(input);
    }
    let mut refused = unreadable;
    if let Err(Invalid(more)) = NewOrder::parse(input) {
        refused.extend(more);
    }
    Err(Invalid(refused))
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
        let refused = to_input(&values).unwrap_err();
        let fields: Vec<&str> = refused.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(refused.0[0].message, "line 1: count must be a whole number");
        assert_eq!(
            fields,
            [
                "orderLine[0].count",
                "shippingAddress.street",
                "shippingAddress.zip",
                "shippingAddress.city",
                "billingAddress.street",
                "billingAddress.zip",
                "billingAddress.city"
            ],
            "the blank addresses are named too"
        );
    }
}
