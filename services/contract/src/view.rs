//! Narrower readers' views of `OrderPlaced` (design 2.1, tolerant reader): each names only the fields one
//! consumer needs, with the same wire names, timestamp and address rules as the full event in `event`.
//! Everything else on the wire is ignored, present or not.

use crate::event::{
    Address, Customer, DecodeError, EventView, OrderLine, read_timestamp, validate_counts,
    validate_priced_lines,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// What invoicing reads: customer with email, billing address, lines with exact prices. No shipping
/// address: an event lacking it is still a valid invoice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView {
    pub id: i64,
    pub customer: Customer,
    #[serde(deserialize_with = "read_timestamp")]
    pub updated: DateTime<Utc>,
    pub billing_address: Address,
    pub order_line: Vec<OrderLine>,
}

impl EventView for InvoiceView {
    fn order_id(&self) -> i64 {
        self.id
    }

    fn validate(&self) -> Result<(), DecodeError> {
        validate_priced_lines(self.id, &self.order_line)
    }
}

/// What shipping reads: customer id and name, shipping address, lines of count and item id and name. No
/// email, no billing address, no prices: an event lacking them is still a valid shipment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentView {
    pub id: i64,
    pub customer: ShipmentCustomer,
    #[serde(deserialize_with = "read_timestamp")]
    pub updated: DateTime<Utc>,
    pub shipping_address: Address,
    pub order_line: Vec<ShipmentLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentCustomer {
    pub customer_id: i64,
    /// Family name (the reference's `name`).
    pub name: String,
    pub firstname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShipmentLine {
    pub count: i32,
    pub item: ShipmentItem,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentItem {
    pub item_id: i64,
    pub name: String,
}

impl EventView for ShipmentView {
    fn order_id(&self) -> i64 {
        self.id
    }

    /// At least one line, every count in 1..=MAX_LINE_COUNT; prices are not read, so not checked.
    fn validate(&self) -> Result<(), DecodeError> {
        validate_counts(self.id, self.order_line.iter().map(|line| line.count))
    }
}
