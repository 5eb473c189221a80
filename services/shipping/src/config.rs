//! The shipping service's configuration: the kit's `ConsumerConfig` (flags with environment fallbacks,
//! `--help` lists them all) under this binary's name.

pub use ordersystem_service_kit::config::ConsumerConfig as Config;

/// Parses the command line as `ordersystem-shipping`.
pub fn parse() -> Config {
    Config::parse_as(
        "ordersystem-shipping",
        "Consumes OrderPlaced events and keeps one shipment per order",
    )
}
