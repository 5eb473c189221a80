//! What a valid new order is, decided without a database: at least one line, counts in range, every
//! address field present, of sane length and free of control characters. Whether the customer and items exist is the store's answer.

use ordersystem_contract::Address;
use ordersystem_contract::event::MAX_LINE_COUNT;
use ordersystem_service_kit::problem::FieldError;
use serde::Deserialize;

/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Longest address field, in characters.
pub const MAX_FIELD_LEN: usize = 200;

/// An order as submitted (JSON API or form), not yet checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInput {
    pub customer_id: i64,
    pub shipping_address: AddressInput,
    pub billing_address: AddressInput,
    #[serde(default)]
    pub order_line: Vec<LineInput>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AddressInput {
    #[serde(default)]
    pub street: String,
    #[serde(default)]
    pub zip: String,
    #[serde(default)]
    pub city: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineInput {
    pub count: i64,
    pub item_id: i64,
}

/// A checked order, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: i64,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub lines: Vec<NewLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLine {
    pub count: i32,
    pub item_id: i64,
}

/// Why an order was refused: every refused field with its own message, in the form's order, each named as
/// the JSON API spells it (`orderLine`, `orderLine[1].count`, `shippingAddress.zip`). The messages are
/// shown to the person or API client as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let messages: Vec<&str> = self.0.iter().map(|e| e.message.as_str()).collect();
        f.write_str(&messages.join("; "))
    }
}

impl std::error::Error for Invalid {}

impl NewOrder {
    pub fn parse(input: OrderInput) -> Result<Self, Invalid> {
        let mut refused = Vec::new();
        let mut refuse = |field: String, message: String| refused.push(FieldError { field, message });
        if input.order_line.is_empty() {
            refuse("orderLine".into(), "an order needs at least one line".into());
        }
        if input.order_line.len() > MAX_LINES {
            refuse(
                "orderLine".into(),
                format!("an order has at most {MAX_LINES} lines"),
            );
        }
        let mut lines = Vec::with_capacity(input.order_line.len());
        for (index, line) in input.order_line.iter().enumerate() {
            match i32::try_from(line.count)
                .ok()
                .filter(|c| (1..=MAX_LINE_COUNT).contains(c))
            {
                Some(count) => lines.push(NewLine {
                    count,
                    item_id: line.item_id,
                }),
                None => refuse(
                    format!("orderLine[{index}].count"),
                    format!("line {}: count must be between 1 and {MAX_LINE_COUNT}", index + 1),
                ),
            }
        }
        let shipping_address = parse_address(
            ("shippingAddress", "shipping address"),
            input.shipping_address,
            &mut refuse,
        );
        let billing_address = parse_address(
            ("billingAddress", "billing address"),
            input.billing_address,
            &mut refuse,
        );
        if !refused.is_empty() {
            return Err(Invalid(refused));
        }
        Ok(Self {
            customer_id: input.customer_id,
            shipping_address,
            billing_address,
            lines,
        })
    }
}

/// The address trimmed; each refused field goes to `refuse` as `{object}.{name}`, its message starting
/// with `what` ("billing address: zip is required").
fn parse_address(
    (object, what): (&str, &str),
    input: AddressInput,
    refuse: &mut impl FnMut(String, String),
) -> Address {
    let mut field = |name: &str, value: String| {
        let value = value.trim().to_string();
        let problem = if value.is_empty() {
            Some("is required".to_string())
        } else if value.chars().any(char::is_control) {
            // Postgres text cannot hold NUL, and no address needs a tab or a bell.
            Some("contains a control character".to_string())
        } else if value.chars().count() > MAX_FIELD_LEN {
            Some(format!("is longer than {MAX_FIELD_LEN} characters"))
        } else {
            None
        };
        if let Some(problem) = problem {
            refuse(format!("{object}.{name}"), format!("{what}: {name} {problem}"));
        }
        value
    };
    Address {
        street: field("street", input.street),
        zip: field("zip", input.zip),
        city: field("city", input.city),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> AddressInput {
        AddressInput {
            street: "Ohlauer Str. 43".into(),
            zip: "10999".into(),
            city: "Berlin".into(),
        }
    }

    fn input(lines: Vec<LineInput>) -> OrderInput {
        OrderInput {
            customer_id: 1,
            shipping_address: address(),
            billing_address: address(),
            order_line: lines,
        }
    }

    #[test]
    fn a_complete_order_parses() {
        let order = NewOrder::parse(input(vec![LineInput { count: 2, item_id: 1 }])).unwrap();
        assert_eq!(order.lines, vec![NewLine { count: 2, item_id: 1 }]);
        assert_eq!(order.shipping_address.city, "Berlin");
    }

    #[test]
    fn an_order_without_lines_is_refused() {
        assert!(
            NewOrder::parse(input(vec![]))
                .unwrap_err()
                .to_string()
                .contains("at least one line")
        );
    }

    #[test]
    fn zero_negative_and_absurd_counts_are_refused() {
        for count in [0, -1, i64::from(MAX_LINE_COUNT) + 1, i64::MAX] {
            let error = NewOrder::parse(input(vec![LineInput { count, item_id: 1 }])).unwrap_err();
            assert_eq!(error.0[0].field, "orderLine[0].count", "{count}: {error}");
        }
    }

    #[test]
    fn a_blank_address_field_is_refused_and_named() {
        let mut order = input(vec![LineInput { count: 1, item_id: 1 }]);
        order.billing_address.zip = "  ".into();
        assert_eq!(
            NewOrder::parse(order).unwrap_err().to_string(),
            "billing address: zip is required"
        );
    }

    #[test]
    fn every_refused_field_is_named_with_its_own_message() {
        let mut order = input(vec![
            LineInput { count: 1, item_id: 1 },
            LineInput { count: 0, item_id: 1 },
        ]);
        order.shipping_address.street = String::new();
        order.billing_address.city = "a\u{7}b".into();
        let refused: Vec<(String, String)> = NewOrder::parse(order)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect();
        let expected = [
            ("orderLine[1].count", "line 2: count must be between 1 and 10000"),
            ("shippingAddress.street", "shipping address: street is required"),
            (
                "billingAddress.city",
                "billing address: city contains a control character",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, m)| ((*f).to_string(), (*m).to_string()))
            .collect();
        assert_eq!(refused, expected);
    }

    /// What `parse` must decide, written independently of it.
    fn should_accept(input: &OrderInput) -> bool {
        let field_ok = |value: &str| {
            let value = value.trim();
            !value.is_empty()
                && value.chars().count() <= MAX_FIELD_LEN
                && !value.chars().any(char::is_control)
        };
        let address_ok = |a: &AddressInput| field_ok(&a.street) && field_ok(&a.zip) && field_ok(&a.city);
        (1..=MAX_LINES).contains(&input.order_line.len())
            && input
                .order_line
                .iter()
                .all(|l| (1..=i64::from(MAX_LINE_COUNT)).contains(&l.count))
            && address_ok(&input.shipping_address)
            && address_ok(&input.billing_address)
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            prop_oneof![
                "[A-Za-z0-9 .'-]{1,40}",
                any::<String>(),
                Just(String::new()),
                Just(" \t ".to_string()),
                (190usize..=210).prop_map(|n| "x".repeat(n)),
            ]
        }

        fn address_input() -> impl Strategy<Value = AddressInput> {
            (field(), field(), field()).prop_map(|(street, zip, city)| AddressInput { street, zip, city })
        }

        fn count() -> impl Strategy<Value = i64> {
            prop_oneof![1..=i64::from(MAX_LINE_COUNT), any::<i64>(), -2i64..=2]
        }

        fn order_input() -> impl Strategy<Value = OrderInput> {
            (
                any::<i64>(),
                address_input(),
                address_input(),
                prop_oneof![
                    prop::collection::vec((count(), any::<i64>()), 0..4),
                    prop::collection::vec((count(), any::<i64>()), 98..103),
                ],
            )
                .prop_map(|(customer_id, shipping, billing, lines)| OrderInput {
                    customer_id,
                    shipping_address: shipping,
                    billing_address: billing,
                    order_line: lines
                        .into_iter()
                        .map(|(count, item_id)| LineInput { count, item_id })
                        .collect(),
                })
        }

        proptest! {

            #[test]
            fn parse_accepts_exactly_the_valid_orders_and_keeps_what_was_asked(input in order_input()) {
                let expected = should_accept(&input);
                match NewOrder::parse(input.clone()) {
                    Ok(order) => {
                        prop_assert!(expected, "accepted an invalid order: {input:?}");
                        prop_assert_eq!(order.customer_id, input.customer_id);
                        prop_assert_eq!(order.lines.len(), input.order_line.len());
                        for (line, asked) in order.lines.iter().zip(&input.order_line) {
                            prop_assert_eq!(i64::from(line.count), asked.count);
                            prop_assert_eq!(line.item_id, asked.item_id);
                        }
                        prop_assert_eq!(&order.shipping_address.street, input.shipping_address.street.trim());
                        prop_assert_eq!(&order.billing_address.city, input.billing_address.city.trim());
                    }
                    Err(invalid) => {
                        prop_assert!(!expected, "refused a valid order ({invalid}): {input:?}");
                        prop_assert!(!invalid.0.is_empty());
                        prop_assert!(invalid.0.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()));
                    }
                }
            }
        }
    }
}
