//! Events as another writer on the topic would send them.

use serde_json::json;

/// An OrderPlaced event in the design's format for order `id`: `count` × iPod (42.0).
pub fn order_placed(id: i64, count: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "customer": {"customerId": 1, "name": "Wolff", "firstname": "Eberhard", "email": "eberhard.wolff@gmail.com"},
        "updated": 1_685_091_732_000_i64,
        "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": count, "item": {"itemId": 1, "name": "iPod", "price": 42.0}}],
        "numberOfLines": 1
    }))
    .expect("json")
}
