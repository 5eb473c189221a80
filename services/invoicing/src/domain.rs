//! An invoice: what invoicing keeps of an order (customer with email, billing address, lines with prices),
//! copied from the event's `InvoiceView` so later price changes do not alter it. Its fingerprint, computed
//! from exactly what is stored, decides whether a second event with the same order id is a duplicate or a
//! conflict.

use chrono::{DateTime, Utc};
use ordersystem_contract::{Address, InvoiceView};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub order_id: i64,
    pub customer_id: i64,
    pub firstname: String,
    pub name: String,
    pub email: String,
    pub billing_address: Address,
    pub updated: DateTime<Utc>,
    pub lines: Vec<InvoiceLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    pub count: i32,
    pub item_id: i64,
    pub item_name: String,
    pub price: Decimal,
}

impl InvoiceLine {
    pub fn total(&self) -> Decimal {
        self.price * Decimal::from(self.count)
    }
}

impl Invoice {
    pub fn from_event(event: &InvoiceView) -> Self {
        Self {
            order_id: event.id,
            customer_id: event.customer.customer_id,
            firstname: event.customer.firstname.clone(),
            name: event.customer.name.clone(),
            email: event.customer.email.clone(),
            billing_address: event.billing_address.clone(),
            updated: event.updated,
            lines: event
                .order_line
                .iter()
                .map(|line| InvoiceLine {
                    count: line.count,
                    item_id: line.item.item_id,
                    item_name: line.item.name.clone(),
                    price: line.item.price.0,
                })
                .collect(),
        }
    }

    pub fn total(&self) -> Decimal {
        self.lines.iter().map(InvoiceLine::total).sum()
    }

    /// Canonical content: equal for the same order however the event spelled it (epoch ms or ISO-8601
    /// `updated`, `42.0` or `42.00`), different when anything invoicing keeps differs.
    pub fn fingerprint(&self) -> String {
        let mut canonical = self.clone();
        for line in &mut canonical.lines {
            line.price = line.price.normalize();
        }
        serde_json::to_string(&canonical).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordersystem_contract::EventView;

    const SAMPLE: &str = r#"{"id":1,"customer":{"customerId":1,"name":"Wolff","firstname":"Eberhard","email":"eberhard.wolff@gmail.com"},"updated":1685091732000,"shippingAddress":{"street":"Ohlauer Str. 43","zip":"10999","city":"Berlin"},"billingAddress":{"street":"Krischerstr. 100","zip":"40789","city":"Monheim am Rhein"},"orderLine":[{"count":42,"item":{"itemId":1,"name":"iPod","price":42.0}}],"numberOfLines":1}"#;

    #[test]
    fn the_reference_event_makes_an_invoice_with_exact_totals() {
        let invoice = Invoice::from_event(&InvoiceView::decode(SAMPLE.as_bytes()).unwrap());
        assert_eq!(invoice.total(), Decimal::from(1764));
        assert_eq!(invoice.billing_address.city, "Monheim am Rhein");
        assert_eq!(invoice.email, "eberhard.wolff@gmail.com");
    }

    #[test]
    fn fingerprint_ignores_spelling_and_sees_content() {
        let a = Invoice::from_event(&InvoiceView::decode(SAMPLE.as_bytes()).unwrap());
        let respelled = SAMPLE
            .replace("42.0}", "42.00}")
            .replace("1685091732000", "\"2023-05-26T09:02:12Z\"");
        let b = Invoice::from_event(&InvoiceView::decode(respelled.as_bytes()).unwrap());
        assert_eq!(a.fingerprint(), b.fingerprint());
        let changed = SAMPLE.replace("\"count\":42", "\"count\":41");
        let c = Invoice::from_event(&InvoiceView::decode(changed.as_bytes()).unwrap());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
