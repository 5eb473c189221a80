//! The invoicing service's configuration: flags with environment fallbacks (`--help` lists them all).

use ordersystem_service_kit::config::{ConsumerArgs, DatabaseArgs, HttpArgs, KafkaArgs, LogArgs};

/// Consumes OrderPlaced events and keeps one invoice per order.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ordersystem-invoicing", version)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn every_flag_is_documented_and_the_required_ones_suffice() {
        Config::command().debug_assert();
        let help = Config::command().render_long_help().to_string();
        for name in [
            "DATABASE_PASSWORD",
            "DATABASE_SCHEMA",
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_TOPIC",
            "LISTEN_ADDR",
        ] {
            assert!(help.contains(name), "--help does not mention {name}");
        }
        let config = Config::try_parse_from([
            "ordersystem-invoicing",
            "--database-user=svc",
            "--database-password=secret",
            "--database-schema=svc",
        ])
        .unwrap();
        assert_eq!(config.kafka.topic, "order");
        assert_eq!(config.kafka.metadata_refresh_ms, 30_000);
        assert!(
            !format!("{config:?}").contains("secret"),
            "the password must not reach Debug output"
        );
        assert_eq!(
            config.consumer.group("invoicing"),
            "invoicing",
            "the reference's group when run alone"
        );
        assert_eq!(
            config.consumer.group_protocol,
            ordersystem_service_kit::config::GroupProtocol::Consumer
        );
    }
}
