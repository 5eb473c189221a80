//! The order service's configuration: flags with environment fallbacks (`--help` lists them all). Its own
//! flags are named after their fields (`--outbox-poll-ms`).

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
    #[arg(long, env = env::OUTBOX_MESSAGE_TIMEOUT_MS, default_value_t = 60_000)]
    pub outbox_message_timeout_ms: u64,
    /// How often the relay looks for unsent outbox rows when nothing woke it (ms).
    #[arg(long, env = env::OUTBOX_POLL_MS, default_value_t = 500)]
    pub outbox_poll_ms: u64,
    /// How long a published outbox row is kept before the relay deletes it (s); the orders themselves stay.
    #[arg(long, env = env::OUTBOX_KEEP_SENT_S, default_value_t = 3_600)]
    pub outbox_keep_sent_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_is_documented_and_the_outbox_flags_have_their_defaults() {
        // The flags of the kit's pieces are tested with them (`ordersystem_service_kit::config`).
        Config::command().debug_assert();
        let command = Config::command();
        for (id, name, default) in [
            (
                "outbox_message_timeout_ms",
                env::OUTBOX_MESSAGE_TIMEOUT_MS,
                "60000",
            ),
            ("outbox_poll_ms", env::OUTBOX_POLL_MS, "500"),
            ("outbox_keep_sent_s", env::OUTBOX_KEEP_SENT_S, "3600"),
        ] {
            let arg = command.get_arguments().find(|arg| arg.get_id() == id).unwrap();
            assert!(arg.get_help().is_some(), "{id} has no help");
            assert_eq!(arg.get_env().and_then(|env| env.to_str()), Some(name));
            assert_eq!(arg.get_default_values(), [default], "{id}");
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()));
        }
    }
}
