//! `OrderPlaced`, the one event on the topic (design 2.1), compatible with the reference implementation's
//! JSON. Readers are tolerant: unknown fields are ignored, `updated` is epoch milliseconds or an ISO-8601
//! string, prices are parsed from the JSON number's text straight into a decimal. Writers emit the
//! reference's shape (`updated` as epoch milliseconds, prices as plain JSON numbers).
//!
//! A consumer decodes an `EventView`: the full `OrderPlaced` (what order writes and invoicing keeps) or a
//! narrower view (`view::InvoiceView`, `view::ShipmentView`), so a field one consumer never reads cannot make it reject
//! an event.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::str::FromStr;

/// Upper bound of `count` on one line: anything larger is a typo or an attack, not an order.
pub const MAX_LINE_COUNT: i32 = 10_000;

/// Why bytes from the topic are not a usable `OrderPlaced`. Such a record is a poison message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an OrderPlaced event: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid OrderPlaced event: {reason}")]
    Invalid { reason: String },
}

/// An order was placed. Immutable fact; the record key is the order id (see `partition::record_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub id: i64,
    pub customer: Customer,
    #[serde(serialize_with = "write_epoch_millis", deserialize_with = "read_timestamp")]
    pub updated: DateTime<Utc>,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub order_line: Vec<OrderLine>,
    /// Redundant with `orderLine.len()`; the reference writes it, so do we. Readers ignore it.
    #[serde(default)]
    pub number_of_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub customer_id: i64,
    /// Family name (the reference's `name`).
    pub name: String,
    pub firstname: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub zip: String,
    pub city: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub count: i32,
    pub item: Item,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub item_id: i64,
    pub name: String,
    pub price: Price,
}

/// An exact price. On the wire a plain JSON number (`42.0`), read from its text, never via `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub Decimal);

/// What one consumer reads of an `OrderPlaced` record: only the fields it needs. Unknown and unread fields
/// are ignored (serde's default; no view may use `deny_unknown_fields`), so the writer can add fields, and
/// a field a reader does not need can be missing, without the reader dead-lettering the event.
pub trait EventView: DeserializeOwned {
    /// The order id, the identity duplicates are detected by.
    fn order_id(&self) -> i64;

    /// The rules this reader relies on, on the fields it read.
    fn validate(&self) -> Result<(), DecodeError>;

    /// Decode and validate bytes from the topic.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event: Self = serde_json::from_slice(bytes).map_err(|source| DecodeError::Json { source })?;
        event.validate()?;
        Ok(event)
    }
}

impl EventView for OrderPlaced {
    fn order_id(&self) -> i64 {
        self.id
    }

    fn validate(&self) -> Result<(), DecodeError> {
        validate_priced_lines(self.id, &self.order_line)
    }
}

/// The rules of priced lines: those of `validate_counts`, and no negative price.
pub(crate) fn validate_priced_lines(order_id: i64, lines: &[OrderLine]) -> Result<(), DecodeError> {
    validate_counts(order_id, lines.iter().map(|line| line.count))?;
    match lines.iter().position(|line| line.item.price.0.is_sign_negative()) {
        Some(index) => Err(DecodeError::Invalid {
            reason: format!("order {order_id} line {index}: negative price"),
        }),
        None => Ok(()),
    }
}

/// The line rules every view shares: at least one line, every count in 1..=MAX_LINE_COUNT.
pub(crate) fn validate_counts(
    order_id: i64,
    counts: impl ExactSizeIterator<Item = i32>,
) -> Result<(), DecodeError> {
    let invalid = |reason: String| Err(DecodeError::Invalid { reason });
    if counts.len() == 0 {
        return invalid(format!("order {order_id} has no lines"));
    }
    for (index, count) in counts.enumerate() {
        if count <= 0 || count > MAX_LINE_COUNT {
            return invalid(format!(
                "order {order_id} line {index}: count {count} is not in 1..={MAX_LINE_COUNT}"
            ));
        }
    }
    Ok(())
}

impl OrderPlaced {
    /// The bytes written to the topic.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Σ count × price, exact.
    pub fn total(&self) -> Decimal {
        self.order_line
            .iter()
            .map(|line| line.item.price.0 * Decimal::from(line.count))
            .sum()
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A Decimal's Display is a valid JSON number ("42.00", "-1.5"), so it goes out verbatim.
        let raw = RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        let text = raw.get().trim();
        // A string price ("42.00") is tolerated; a JSON number is read from its own text.
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        let parsed = if text.contains(['e', 'E']) {
            Decimal::from_scientific(text)
        } else {
            Decimal::from_str(text)
        };
        parsed
            .map(Price)
            .map_err(|e| D::Error::custom(format!("price {text:?} is not a decimal: {e}")))
    }
}

fn write_epoch_millis<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_i64(at.timestamp_millis())
}

/// Epoch milliseconds (Jackson's default for `java.util.Date`) or an ISO-8601 string (the reference's tests).
pub(crate) fn read_timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Millis(i64),
        Text(String),
    }
    match Wire::deserialize(deserializer)? {
        Wire::Millis(ms) => Utc
            .timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| D::Error::custom(format!("updated {ms} is out of range"))),
        Wire::Text(text) => {
            parse_iso8601(&text).ok_or_else(|| D::Error::custom(format!("updated {text:?} is not ISO-8601")))
        }
    }
}

fn parse_iso8601(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    // Jackson's StdDateFormat writes offsets without a colon: 2017-04-20T15:39:30.000+0000.
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    // No offset at all: read as UTC.
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc());
        }
    }
    None
}
