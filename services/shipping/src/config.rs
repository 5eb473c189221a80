//! The shipping service's configuration: flags with environment fallbacks (`--help` lists them all).

use ordersystem_service_kit::config::{ConsumerArgs, DatabaseArgs, HttpArgs, KafkaArgs, LogArgs};

/// Consumes OrderPlaced events and keeps one shipment per order.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ordersystem-shipping", version)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub log: LogArgs,
}
