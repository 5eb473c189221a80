//! Golden JSON samples: the wire format cannot drift without one of these failing.

use chrono::{TimeZone, Utc};
use ordersystem_contract::{
    Address, Customer, EventView, InvoiceView, Item, OrderLine, OrderPlaced, Price, ShipmentView,
};
use rust_decimal::Decimal;
use std::str::FromStr;

const REFERENCE: &str = include_str!("samples/reference.json");
const ISO_AND_EXTRA: &str = include_str!("samples/iso_updated_extra_fields.json");

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal literal")
}

fn reference_event() -> OrderPlaced {
    OrderPlaced {
        id: 1,
        customer: Customer {
            customer_id: 1,
            name: "Wolff".into(),
            firstname: "Eberhard".into(),
            email: "eberhard.wolff@gmail.com".into(),
        },
        updated: Utc
            .timestamp_millis_opt(1_685_091_732_000)
            .single()
            .expect("in range"),
        shipping_address: Address {
            street: "Ohlauer Str. 43".into(),
            zip: "10999".into(),
            city: "Berlin".into(),
        },
        billing_address: Address {
            street: "Krischerstr. 100".into(),
            zip: "40789".into(),
            city: "Monheim am Rhein".into(),
        },
        order_line: vec![OrderLine {
            count: 42,
            item: Item {
                item_id: 1,
                name: "iPod".into(),
                price: Price(dec("42.0")),
            },
        }],
        number_of_lines: 1,
    }
}

#[test]
fn reference_implementation_sample_decodes_to_the_expected_event() {
    let event = OrderPlaced::decode(REFERENCE.as_bytes()).unwrap();
    assert_eq!(event, reference_event());
    assert_eq!(event.total(), dec("1764"));
}

#[test]
fn encoding_writes_the_reference_shape() {
    let written: serde_json::Value = serde_json::from_slice(&reference_event().encode().unwrap()).unwrap();
    let reference: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    assert_eq!(written, reference);
    // The exact text, so a renamed field or a price written as a string fails here.
    assert_eq!(
        String::from_utf8(reference_event().encode().unwrap()).unwrap(),
        r#"{"id":1,"customer":{"customerId":1,"name":"Wolff","firstname":"Eberhard","email":"eberhard.wolff@gmail.com"},"updated":1685091732000,"shippingAddress":{"street":"Ohlauer Str. 43","zip":"10999","city":"Berlin"},"billingAddress":{"street":"Krischerstr. 100","zip":"40789","city":"Monheim am Rhein"},"orderLine":[{"count":42,"item":{"itemId":1,"name":"iPod","price":42.0}}],"numberOfLines":1}"#
    );
}

#[test]
fn iso_8601_updated_and_unknown_fields_are_accepted() {
    let event = OrderPlaced::decode(ISO_AND_EXTRA.as_bytes()).unwrap();
    assert_eq!(
        event.updated,
        Utc.with_ymd_and_hms(2017, 4, 20, 15, 39, 30).unwrap()
    );
    assert_eq!(event.order_line.len(), 2);
    assert_eq!(event.customer.firstname, "Rod");
}

#[test]
fn prices_are_exact_without_float_rounding() {
    // 0.1 has no exact binary float; 3 × 21.0 + 1 × 0.1 must be exactly 63.1.
    let event = OrderPlaced::decode(ISO_AND_EXTRA.as_bytes()).unwrap();
    assert_eq!(event.order_line[1].item.price, Price(dec("0.1")));
    assert_eq!(event.total(), dec("63.1"));
    // More digits than an f64 holds survive a round trip.
    let text = REFERENCE.replace("\"price\": 42.0", "\"price\": 12345678901234567.89");
    let event = OrderPlaced::decode(text.as_bytes()).unwrap();
    assert_eq!(event.order_line[0].item.price, Price(dec("12345678901234567.89")));
    let again = OrderPlaced::decode(&event.encode().unwrap()).unwrap();
    assert_eq!(again, event);
}

#[test]
fn iso_8601_variants_are_read_as_the_same_instant() {
    for updated in [
        "\"2023-05-26T09:02:12Z\"",
        "\"2023-05-26T11:02:12+02:00\"",
        "\"2023-05-26T09:02:12.000+0000\"",
        "1685091732000",
    ] {
        let text = REFERENCE.replace("1685091732000", updated);
        let event = OrderPlaced::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{updated}: {e}"));
        assert_eq!(event.updated.timestamp_millis(), 1_685_091_732_000, "{updated}");
    }
}

#[test]
fn poison_messages_are_rejected_with_a_reason() {
    let cases = [
        ("not json", "not JSON".to_string()),
        (
            "missing customer",
            REFERENCE.replace("\"customer\"", "\"client\""),
        ),
        ("zero count", REFERENCE.replace("\"count\": 42", "\"count\": 0")),
        (
            "negative count",
            REFERENCE.replace("\"count\": 42", "\"count\": -1"),
        ),
        (
            "no lines",
            REFERENCE.replace(
                r#"[{"count": 42, "item": {"itemId": 1, "name": "iPod", "price": 42.0}}]"#,
                "[]",
            ),
        ),
        ("price text", REFERENCE.replace("42.0}", "\"forty\"}")),
        ("bad date", REFERENCE.replace("1685091732000", "\"yesterday\"")),
    ];
    for (name, text) in cases {
        assert_ne!(text, REFERENCE, "{name}: the sample was not modified");
        assert!(
            OrderPlaced::decode(text.as_bytes()).is_err(),
            "{name} must be rejected"
        );
    }
}

#[test]
fn the_shipment_view_reads_an_event_without_email_and_prices() {
    let text = REFERENCE
        .replace(r#", "email": "eberhard.wolff@gmail.com""#, "")
        .replace(r#", "price": 42.0"#, "")
        .replace(
            r#""numberOfLines": 1"#,
            r#""numberOfLines": 1, "giftWrap": {"paper": "red"}"#,
        );
    assert!(
        !text.contains("email") && !text.contains("price"),
        "the sample was not modified"
    );
    let view = ShipmentView::decode(text.as_bytes()).unwrap();
    assert_eq!(view.customer.firstname, "Eberhard");
    assert_eq!(view.shipping_address.street, "Ohlauer Str. 43");
    assert_eq!(
        (view.order_line[0].count, view.order_line[0].item.name.as_str()),
        (42, "iPod")
    );
    let missing = OrderPlaced::decode(text.as_bytes()).unwrap_err().to_string();
    assert!(missing.contains("missing field `email`"), "{missing}");
}

#[test]
fn the_shipment_view_keeps_the_line_rules() {
    let zero = REFERENCE.replace("\"count\": 42", "\"count\": 0");
    assert!(ShipmentView::decode(zero.as_bytes()).is_err());
    let no_address = REFERENCE.replace("\"shippingAddress\"", "\"address\"");
    assert!(ShipmentView::decode(no_address.as_bytes()).is_err());
}

#[test]
fn the_invoice_view_reads_an_event_without_shipping_address_and_keeps_the_price_rules() {
    let text = REFERENCE.replace(
        r#" "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},"#,
        "",
    );
    assert!(!text.contains("shippingAddress"), "the sample was not modified");
    let view = InvoiceView::decode(text.as_bytes()).unwrap();
    assert_eq!(view.customer.email, "eberhard.wolff@gmail.com");
    assert_eq!(view.billing_address.city, "Monheim am Rhein");
    assert_eq!(view.order_line[0].item.price, Price(dec("42.0")));
    assert!(ShipmentView::decode(text.as_bytes()).is_err());
    let negative = REFERENCE.replace("42.0}", "-1}");
    assert!(InvoiceView::decode(negative.as_bytes()).is_err());
    let no_email = REFERENCE.replace(r#", "email": "eberhard.wolff@gmail.com""#, "");
    let missing = InvoiceView::decode(no_email.as_bytes()).unwrap_err().to_string();
    assert!(missing.contains("missing field `email`"), "{missing}");
}
