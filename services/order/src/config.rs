//! The order service's configuration: flags with environment fallbacks (`--help` lists them all).

use ordersystem_service_kit::config::{DatabaseArgs, HttpArgs, KafkaArgs, LogArgs};

/// Takes orders (web form and JSON API) and publishes each as an OrderPlaced event through its outbox.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ordersystem-order", version)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// How long the relay waits for Kafka to acknowledge an event before retrying it in a later round (ms).
    #[arg(
        long = "outbox-message-timeout-ms",
        env = "OUTBOX_MESSAGE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub outbox_message_timeout_ms: u64,
    /// How often the relay looks for unsent outbox rows when nothing woke it (ms).
    #[arg(long = "outbox-poll-ms", env = "OUTBOX_POLL_MS", default_value_t = 500)]
    pub outbox_poll_ms: u64,
}
