//! The order service's configuration: flags with environment fallbacks (`--help` lists them all).

use ordersystem_contract::wiring::env;
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
        env = env::OUTBOX_MESSAGE_TIMEOUT_MS,
        default_value_t = 60_000
    )]
    pub outbox_message_timeout_ms: u64,
    /// How often the relay looks for unsent outbox rows when nothing woke it (ms).
    #[arg(long = "outbox-poll-ms", env = env::OUTBOX_POLL_MS, default_value_t = 500)]
    pub outbox_poll_ms: u64,
    /// How long a published outbox row is kept before the relay deletes it (s); the orders themselves stay.
    #[arg(long = "outbox-keep-sent-s", env = env::OUTBOX_KEEP_SENT_S, default_value_t = 3_600)]
    pub outbox_keep_sent_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn every_flag_is_documented_and_the_required_ones_suffice() {
        // The flags of the kit's pieces are tested with them (`ordersystem_service_kit::config`).
        Config::command().debug_assert();
        let help = Config::command().render_long_help().to_string();
        for name in [
            "OUTBOX_MESSAGE_TIMEOUT_MS",
            "OUTBOX_POLL_MS",
            "OUTBOX_KEEP_SENT_S",
        ] {
            assert!(help.contains(name), "--help does not mention {name}");
        }
        let config = Config::try_parse_from([
            "ordersystem-order",
            "--database-user=svc",
            "--database-password=secret",
            "--database-schema=svc",
        ])
        .unwrap();
        assert_eq!(config.outbox_poll_ms, 500);
        assert_eq!(config.outbox_keep_sent_s, 3_600);
    }
}
