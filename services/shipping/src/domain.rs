//! A shipment: what shipping keeps of an order (customer, shipping address, lines of count and item; no
//! prices, no email), copied from the event's `ShipmentView`. Its fingerprint, computed from exactly what is
//! stored, decides whether a second event with the same order id is a duplicate or a conflict: events that
//! differ only in fields shipping ignores are duplicates.

use chrono::{DateTime, Utc};
use ordersystem_contract::{Address, ShipmentView};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub order_id: i64,
    pub customer_id: i64,
    pub firstname: String,
    pub name: String,
    pub shipping_address: Address,
    pub updated: DateTime<Utc>,
    pub lines: Vec<ShipmentLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentLine {
    pub count: i32,
    pub item_id: i64,
    pub item_name: String,
}

impl Shipment {
    pub fn from_event(event: &ShipmentView) -> Self {
        Self {
            order_id: event.id,
            customer_id: event.customer.customer_id,
            firstname: event.customer.firstname.clone(),
            name: event.customer.name.clone(),
            shipping_address: event.shipping_address.clone(),
            updated: event.updated,
            lines: event
                .order_line
                .iter()
                .map(|line| ShipmentLine {
                    count: line.count,
                    item_id: line.item.item_id,
                    item_name: line.item.name.clone(),
                })
                .collect(),
        }
    }

    /// Canonical content of what shipping keeps; equal for the same order however the event spelled it.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordersystem_contract::EventView;

    const SAMPLE: &str = r#"{"id":1,"customer":{"customerId":1,"name":"Wolff","firstname":"Eberhard","email":"eberhard.wolff@gmail.com"},"updated":1685091732000,"shippingAddress":{"street":"Ohlauer Str. 43","zip":"10999","city":"Berlin"},"billingAddress":{"street":"Krischerstr. 100","zip":"40789","city":"Monheim am Rhein"},"orderLine":[{"count":42,"item":{"itemId":1,"name":"iPod","price":42.0}}],"numberOfLines":1}"#;

    #[test]
    fn the_reference_event_makes_a_shipment_to_the_shipping_address() {
        let shipment = Shipment::from_event(&ShipmentView::decode(SAMPLE.as_bytes()).unwrap());
        assert_eq!(shipment.shipping_address.street, "Ohlauer Str. 43");
        assert_eq!(shipment.lines.len(), 1);
        assert_eq!(shipment.lines[0].count, 42);
    }

    #[test]
    fn a_different_shipping_address_changes_the_fingerprint() {
        let a = Shipment::from_event(&ShipmentView::decode(SAMPLE.as_bytes()).unwrap());
        let changed = SAMPLE.replace("Ohlauer Str. 43", "Ohlauer Str. 44");
        let b = Shipment::from_event(&ShipmentView::decode(changed.as_bytes()).unwrap());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn fields_shipping_ignores_do_not_change_the_fingerprint() {
        let a = Shipment::from_event(&ShipmentView::decode(SAMPLE.as_bytes()).unwrap());
        let other = SAMPLE
            .replace("eberhard.wolff@gmail.com", "someone@else.example")
            .replace("\"price\":42.0", "\"price\":1.0")
            .replace("Krischerstr. 100", "Elsewhere 1")
            .replace("1685091732000", "\"2023-05-26T09:02:12Z\"");
        assert_ne!(other, SAMPLE);
        let b = Shipment::from_event(&ShipmentView::decode(other.as_bytes()).unwrap());
        assert_eq!(a.fingerprint(), b.fingerprint());
    }
}
