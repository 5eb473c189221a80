//! Money as the services' own JSON APIs and pages show it: a decimal string with at least two places
//! (`"42.00"`, `"0.125"`), never a binary float. The Kafka event keeps prices as JSON numbers for the
//! reference system (`ordersystem_contract::Price`); only what we present is spelled this way.

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use std::fmt;

/// An exact amount, shown with at least two decimal places and without trailing zeros beyond them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub Decimal);

impl Money {
    /// The amount `amount` as money; for templates, which hold a field by reference.
    pub fn of(amount: impl std::borrow::Borrow<Decimal>) -> Self {
        Self(*amount.borrow())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut amount = self.0.normalize();
        if amount.scale() < 2 {
            amount.rescale(2);
        }
        write!(f, "{amount}")
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// For `#[serde(serialize_with)]` on a `Decimal` field that is money.
pub fn serialize<S: Serializer>(amount: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    Money(*amount).serialize(serializer)
}

/// `amount` as [`Money`] shows it, for a JSON value built by hand.
pub fn text(amount: Decimal) -> serde_json::Value {
    serde_json::Value::String(Money(amount).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts_have_two_places_at_least_and_keep_exact_fractions() {
        let shown = |text: &str| Money(Decimal::from_str(text).expect("decimal")).to_string();
        assert_eq!(shown("42"), "42.00");
        assert_eq!(shown("42.0"), "42.00");
        assert_eq!(shown("42.500"), "42.50");
        assert_eq!(shown("0.125"), "0.125");
        assert_eq!(shown("-1.5"), "-1.50");
        assert_eq!(shown("1765.00"), "1765.00");
        assert_eq!(
            serde_json::to_string(&Money(Decimal::from(263))).expect("json"),
            "\"263.00\""
        );
    }
}
