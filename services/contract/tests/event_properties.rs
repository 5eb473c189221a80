//! Property tests of the event parser: any event order writes is read back unchanged by every view, any
//! bytes at all are decoded or refused without a panic, an event with a field replaced by any JSON value
//! is refused or still obeys the rules, and a price survives the wire exactly.

use chrono::{TimeZone, Utc};
use ordersystem_contract::event::MAX_LINE_COUNT;
use ordersystem_contract::{
    Address, Customer, EventView, InvoiceView, Item, OrderLine, OrderPlaced, Price, ShipmentView,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, quotes, backslashes and control characters included.
    any::<String>()
}

fn price() -> impl Strategy<Value = Price> {
    (0i64..=1_000_000_000_000, 0u32..=4).prop_map(|(mantissa, scale)| Price(Decimal::new(mantissa, scale)))
}

fn address() -> impl Strategy<Value = Address> {
    (text(), text(), text()).prop_map(|(street, zip, city)| Address { street, zip, city })
}

fn line() -> impl Strategy<Value = OrderLine> {
    (1..=MAX_LINE_COUNT, any::<i64>(), text(), price()).prop_map(|(count, item_id, name, price)| OrderLine {
        count,
        item: Item { item_id, name, price },
    })
}

fn event() -> impl Strategy<Value = OrderPlaced> {
    (
        any::<i64>(),
        (any::<i64>(), text(), text(), text()),
        // Epoch milliseconds from 1970 to 2200: what the wire carries.
        0i64..7_258_118_400_000,
        address(),
        address(),
        prop::collection::vec(line(), 1..8),
    )
        .prop_map(
            |(id, (customer_id, name, firstname, email), millis, shipping, billing, lines)| OrderPlaced {
                id,
                customer: Customer {
                    customer_id,
                    name,
                    firstname,
                    email,
                },
                updated: Utc.timestamp_millis_opt(millis).single().expect("in range"),
                shipping_address: shipping,
                billing_address: billing,
                number_of_lines: lines.len(),
                order_line: lines,
            },
        )
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Every field path of an encoded event, so one can be replaced.
fn paths(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{prefix}/{key}");
                out.push(path.clone());
                paths(child, path, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let path = format!("{prefix}/{index}");
                out.push(path.clone());
                paths(child, path, out);
            }
        }
        _ => {}
    }
}

fn obeys_the_rules(event: &OrderPlaced) -> bool {
    !event.order_line.is_empty()
        && event
            .order_line
            .iter()
            .all(|l| (1..=MAX_LINE_COUNT).contains(&l.count) && !l.item.price.0.is_sign_negative())
}

proptest! {

    #[test]
    fn every_event_order_writes_is_read_back_unchanged_by_every_view(event in event()) {
        let bytes = event.encode().expect("encodes");
        prop_assert_eq!(&OrderPlaced::decode(&bytes).expect("full view"), &event);
        let invoice = InvoiceView::decode(&bytes).expect("invoice view");
        prop_assert_eq!(invoice.id, event.id);
        prop_assert_eq!(&invoice.billing_address, &event.billing_address);
        prop_assert_eq!(&invoice.order_line, &event.order_line);
        prop_assert_eq!(invoice.updated, event.updated);
        let shipment = ShipmentView::decode(&bytes).expect("shipment view");
        prop_assert_eq!(&shipment.shipping_address, &event.shipping_address);
        prop_assert_eq!(shipment.order_line.len(), event.order_line.len());
        prop_assert_eq!(&shipment.customer.name, &event.customer.name);
    }

    #[test]
    fn any_bytes_are_decoded_or_refused_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = OrderPlaced::decode(&bytes);
        let _ = InvoiceView::decode(&bytes);
        let _ = ShipmentView::decode(&bytes);
    }

    #[test]
    fn an_event_with_any_field_replaced_is_refused_or_still_obeys_the_rules(
        event in event(),
        pick in any::<prop::sample::Index>(),
        replacement in json_value(),
    ) {
        let mut value: Value = serde_json::from_slice(&event.encode().expect("encodes")).expect("json");
        let mut all = Vec::new();
        paths(&value, String::new(), &mut all);
        let path = pick.get(&all).clone();
        *value.pointer_mut(&path).expect("path exists") = replacement;
        let bytes = serde_json::to_vec(&value).expect("json");
        if let Ok(decoded) = OrderPlaced::decode(&bytes) {
            prop_assert!(obeys_the_rules(&decoded), "{path}: {decoded:?}");
        }
        if let Ok(shipment) = ShipmentView::decode(&bytes) {
            prop_assert!(!shipment.order_line.is_empty());
            prop_assert!(shipment.order_line.iter().all(|l| (1..=MAX_LINE_COUNT).contains(&l.count)));
        }
        let _ = InvoiceView::decode(&bytes);
    }

    #[test]
    fn a_price_survives_the_wire_exactly(mantissa in any::<i64>(), scale in 0u32..=28) {
        let price = Price(Decimal::new(mantissa, scale));
        let text = serde_json::to_string(&price).expect("encodes");
        let back: Price = serde_json::from_str(&text).expect("decodes");
        prop_assert_eq!(back.0, price.0);
        prop_assert_eq!(back.0.to_string(), price.0.to_string(), "scale kept");
    }
}
