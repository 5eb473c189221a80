//! The invoicing service's configuration: the kit's `ConsumerConfig` (flags with environment fallbacks,
//! `--help` lists them all) under this binary's name.

pub use ordersystem_service_kit::config::ConsumerConfig as Config;

/// Parses the command line as `ordersystem-invoicing`.
pub fn parse() -> Config {
    Config::parse_as(
        "ordersystem-invoicing",
        "Consumes OrderPlaced events and keeps one invoice per order",
    )
}
