//! Configuration pieces every service flattens into its own `clap::Parser`: listening, database, Kafka,
//! logging; and the whole configuration of a consumer service (`ConsumerConfig`). Flags have environment
//! fallbacks named in `ordersystem_contract::wiring::env`, so the operator and the services agree on
//! them. Parsing happens once in `main`; nothing else reads the environment.

use clap::{CommandFactory, FromArgMatches};
use ordersystem_contract::wiring::{DEFAULT_TOPIC, env};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration of a consumer service (invoicing, shipping): they differ only in their name and
/// description, which `parse_as` gives the command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(version)]
pub struct ConsumerConfig {
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

impl ConsumerConfig {
    /// Parses the process's arguments as the binary `name`, which `--help` and `--version` describe with
    /// `about`; exits with clap's message on a bad command line, as `clap::Parser::parse` does.
    pub fn parse_as(name: &'static str, about: &'static str) -> Self {
        let mut command = Self::command().name(name).about(about).long_about(None);
        let matches = command.get_matches_mut();
        Self::from_arg_matches(&matches)
            .map_err(|error| error.format(&mut command))
            .unwrap_or_else(|error| error.exit())
    }
}

/// Where the HTTP server listens.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Socket address for the UI, API, probes and metrics.
    #[arg(long = "listen-addr", env = env::LISTEN_ADDR, default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub public: crate::public::PublicUrls,
}

/// The service's Postgres login and its own schema.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Postgres host.
    #[arg(long = "database-host", env = env::DATABASE_HOST, default_value = "127.0.0.1")]
    pub host: String,
    /// Postgres port.
    #[arg(long = "database-port", env = env::DATABASE_PORT, default_value_t = 5432)]
    pub port: u16,
    /// Database name.
    #[arg(long = "database-name", env = env::DATABASE_NAME, default_value = "ordersystem")]
    pub name: String,
    /// Login role; it needs to own only the service's schema.
    #[arg(long = "database-user", env = env::DATABASE_USER)]
    pub user: String,
    /// Password of the login role (never logged).
    #[arg(long = "database-password", env = env::DATABASE_PASSWORD, hide_env_values = true)]
    pub password: SecretString,
    /// The schema the service migrates and uses; every connection's search_path is set to it.
    #[arg(long = "database-schema", env = env::DATABASE_SCHEMA)]
    pub schema: String,
    /// libpq sslmode: disable | prefer | require | verify-ca | verify-full.
    #[arg(long = "database-sslmode", env = env::DATABASE_SSLMODE, default_value = "prefer")]
    pub sslmode: String,
    /// CA certificate (PEM file) the server's certificate must chain to, for verify-ca and verify-full.
    #[arg(long = "database-sslrootcert", env = env::DATABASE_SSLROOTCERT)]
    pub sslrootcert: Option<PathBuf>,
    /// Connections in the pool.
    #[arg(long = "database-max-connections", env = env::DATABASE_MAX_CONNECTIONS, default_value_t = 10)]
    pub max_connections: u32,
}

/// `group.protocol` of the consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupProtocol {
    /// KIP-848: broker-side, incremental assignment.
    Consumer,
    /// The classic protocol with the cooperative-sticky assignor.
    Classic,
}

impl GroupProtocol {
    /// librdkafka's `group.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Classic => "classic",
        }
    }
}

/// Kafka connection and topic.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long = "kafka-bootstrap-servers", env = env::KAFKA_BOOTSTRAP_SERVERS, default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,
    /// The order topic.
    #[arg(long = "kafka-topic", env = env::KAFKA_TOPIC, default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Topic metadata refresh in milliseconds; bounds how long added partitions go unnoticed.
    #[arg(long = "kafka-metadata-refresh-ms", env = env::KAFKA_METADATA_REFRESH_MS, default_value_t = 30_000)]
    pub metadata_refresh_ms: u32,
    /// TLS and SASL.
    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

/// How the service reaches a secured Kafka: certificates as files (mounted from Secrets), its own SASL
/// identity. The password is a `SecretString`: `Debug` and `--help` never show it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSecurityArgs {
    /// Security protocol: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long = "kafka-security-protocol", env = env::KAFKA_SECURITY_PROTOCOL, value_enum, default_value = "plaintext")]
    pub protocol: SecurityProtocol,
    /// CA certificate of the brokers (PEM file); without it the system's trust store.
    #[arg(long = "kafka-ssl-ca-location", env = env::KAFKA_SSL_CA_LOCATION)]
    pub ca_location: Option<PathBuf>,
    /// Client certificate (PEM file), for brokers that require mutual TLS.
    #[arg(long = "kafka-ssl-certificate-location", env = env::KAFKA_SSL_CERTIFICATE_LOCATION, requires = "key_location")]
    pub certificate_location: Option<PathBuf>,
    /// Private key of the client certificate (PEM file).
    #[arg(long = "kafka-ssl-key-location", env = env::KAFKA_SSL_KEY_LOCATION, requires = "certificate_location")]
    pub key_location: Option<PathBuf>,
    /// SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = env::KAFKA_SASL_MECHANISM,
        value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
    )]
    pub sasl_mechanism: Option<String>,
    /// The service's Kafka user.
    #[arg(long = "kafka-sasl-username", env = env::KAFKA_SASL_USERNAME)]
    pub sasl_username: Option<String>,
    /// Its password (never logged).
    #[arg(long = "kafka-sasl-password", env = env::KAFKA_SASL_PASSWORD, hide_env_values = true)]
    pub sasl_password: Option<SecretString>,
}

/// Consumer group settings of invoicing and shipping.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Consumer group id; the operator sets `<namespace>.<name>.<service>`. Default: the service's name
    /// (`invoicing`, `shipping`), the reference implementation's groups.
    #[arg(long = "kafka-group-id", env = env::KAFKA_GROUP_ID)]
    pub group_id: Option<String>,
    /// Group protocol: `consumer` (KIP-848) or `classic` (cooperative-sticky). Default: `classic` with a
    /// group instance id (static membership: a container restarted after a crash gets its partitions back
    /// at once), `consumer` without one. See `Membership`.
    #[arg(long = "kafka-group-protocol", env = env::KAFKA_GROUP_PROTOCOL, value_enum)]
    pub group_protocol: Option<GroupProtocol>,
    /// Classic protocol only (librdkafka rejects it under KIP-848): session timeout in milliseconds.
    #[arg(long = "kafka-session-timeout-ms", env = env::KAFKA_SESSION_TIMEOUT_MS, default_value_t = 45_000)]
    pub session_timeout_ms: u32,
    /// This consumer's stable name in its group (`group.instance.id`, static membership); the operator sets
    /// the pod's name. Used under the classic protocol only: see `Membership`.
    #[arg(long = "kafka-group-instance-id", env = env::KAFKA_GROUP_INSTANCE_ID, value_parser = group_instance_id)]
    pub group_instance_id: Option<String>,
    /// Longest time between polls before the member is thrown out; the loop keeps polling while paused.
    #[arg(
        long = "kafka-max-poll-interval-ms",
        env = env::KAFKA_MAX_POLL_INTERVAL_MS,
        default_value_t = 300_000
    )]
    pub max_poll_interval_ms: u32,
    /// First backoff after a transient (database) failure, in milliseconds; doubles up to the maximum.
    #[arg(long = "retry-backoff-ms", env = env::RETRY_BACKOFF_MS, default_value_t = 500)]
    pub retry_backoff_ms: u64,
    /// Longest backoff after repeated transient failures, in milliseconds.
    #[arg(long = "retry-backoff-max-ms", env = env::RETRY_BACKOFF_MAX_MS, default_value_t = 10_000)]
    pub retry_backoff_max_ms: u64,
}

/// How a consumer is known to its group, which decides how fast a restarted container gets its partitions
/// back after its process was killed (SIGKILL, OOM kill), when it could not leave the group.
///
/// - `Dynamic`: every start is a new member. The killed member keeps its partitions until the broker lets
///   its session expire (the consumer protocol: the broker's `group.consumer.session.timeout.ms`, 45 s by
///   default; classic: `--kafka-session-timeout-ms`); they stall that long.
/// - `Static` (classic protocol and an instance id): the restarted container joins with the same
///   `group.instance.id`, and the coordinator hands it the killed member's assignment at once, without a
///   rebalance (KIP-345). A static member that shuts down cleanly does not leave the group by itself
///   (librdkafka follows KIP-345 there), which would stall a scaled-down or replaced pod's partitions
///   until its session expires; the consumer loop therefore leaves explicitly on shutdown, as a dynamic
///   member does, so scale-down and rolling updates (new pod names) rebalance at once as before.
/// - `NotUnderConsumerProtocol`: an instance id is given but the group protocol asked for is `consumer`
///   (KIP-848; without `--kafka-group-protocol` an instance id makes the protocol `classic`).
///   There the coordinator refuses a member joining with an instance id that a member which did not leave
///   still holds (`UNRELEASED_INSTANCE_ID`, Kafka's `throwIfInstanceIdIsUnreleased`) until that member's
///   session expires, and librdkafka treats the refusal as fatal: the restarted container could not
///   consume at all. A static member that leaves keeps its partitions for the session timeout (member
///   epoch -2), which would stall scale-down. So the id is not used, and recovery after a kill is bounded
///   by the broker's session timeout as for `Dynamic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Dynamic,
    Static { instance_id: String },
    NotUnderConsumerProtocol { instance_id: String },
}

impl ConsumerArgs {
    /// The configured group id, or `default` (the service's name).
    pub fn group(&self, default: &str) -> String {
        self.group_id.clone().unwrap_or_else(|| default.to_string())
    }

    /// The group protocol asked for, or by default the one that recovers fastest for how this consumer is
    /// known: `classic` for a consumer with an instance id (it becomes a static member), `consumer`
    /// (KIP-848) for one without (there both wait for the session timeout after a crash, and KIP-848's
    /// broker-side assignment moves partitions without stopping the other members).
    pub fn protocol(&self) -> GroupProtocol {
        self.group_protocol.unwrap_or(match self.group_instance_id {
            Some(_) => GroupProtocol::Classic,
            None => GroupProtocol::Consumer,
        })
    }

    /// Static membership where the protocol makes it help; see `Membership`.
    pub fn membership(&self) -> Membership {
        match (&self.group_instance_id, self.protocol()) {
            (None, _) => Membership::Dynamic,
            (Some(id), GroupProtocol::Classic) => Membership::Static {
                instance_id: id.clone(),
            },
            (Some(id), GroupProtocol::Consumer) => Membership::NotUnderConsumerProtocol {
                instance_id: id.clone(),
            },
        }
    }

    pub fn backoff(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.retry_backoff_ms),
            Duration::from_millis(self.retry_backoff_max_ms),
        )
    }
}

/// Kafka's rule for a `group.instance.id` (as for topic names): 1 to 249 characters of `a-z`, `A-Z`,
/// `0-9`, `.`, `_` and `-`. Checked here so that a bad value stops the service at start with a sentence,
/// not as a broker error at every join. A pod's name always passes.
fn group_instance_id(value: &str) -> Result<String, String> {
    const MAX: usize = 249;
    if value.is_empty() {
        return Err("a group instance id must not be empty; leave the variable unset for none".into());
    }
    if value.len() > MAX {
        return Err(format!(
            "a group instance id has at most {MAX} characters; this one has {}",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "a group instance id may hold only letters a-z and A-Z, digits, '.', '_' and '-'; {bad:?} is none of them"
        ));
    }
    Ok(value.to_string())
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (in a cluster).
    Json,
    /// Human-readable lines (on a laptop).
    Text,
}

/// Logging.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long = "log-format", env = env::LOG_FORMAT, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_flag_is_documented_and_the_required_ones_suffice() {
        ConsumerConfig::command().debug_assert();
        let help = ConsumerConfig::command().render_long_help().to_string();
        for name in [
            "DATABASE_PASSWORD",
            "DATABASE_SCHEMA",
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_TOPIC",
            "LISTEN_ADDR",
        ] {
            assert!(help.contains(name), "--help does not mention {name}");
        }
        let config = ConsumerConfig::try_parse_from([
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
        assert_eq!(config.consumer.protocol(), GroupProtocol::Consumer);
        assert_eq!(config.consumer.membership(), Membership::Dynamic);
    }

    fn consumer_args(flags: &[&str]) -> Result<ConsumerArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            consumer: ConsumerArgs,
        }
        Args::try_parse_from(std::iter::once("svc").chain(flags.iter().copied())).map(|a| a.consumer)
    }

    #[test]
    fn an_instance_id_makes_a_static_classic_member_by_default_and_is_unused_under_kip_848() {
        let pod = "--kafka-group-instance-id=shop-invoicing-7d9f8c6b5-x2x4q";
        let static_member = Membership::Static {
            instance_id: "shop-invoicing-7d9f8c6b5-x2x4q".into(),
        };
        let classic = consumer_args(&[pod, "--kafka-group-protocol=classic"]).unwrap();
        assert_eq!(classic.membership(), static_member);
        let by_default = consumer_args(&[pod]).unwrap();
        assert_eq!(
            (by_default.protocol(), by_default.membership()),
            (GroupProtocol::Classic, static_member),
            "with an instance id (the operator sets the pod's name) the default is a static classic member"
        );
        let consumer = consumer_args(&[pod, "--kafka-group-protocol=consumer"]).unwrap();
        assert_eq!(
            consumer.membership(),
            Membership::NotUnderConsumerProtocol {
                instance_id: "shop-invoicing-7d9f8c6b5-x2x4q".into()
            }
        );
        let none = consumer_args(&["--kafka-group-protocol=classic"]).unwrap();
        assert_eq!(none.membership(), Membership::Dynamic);
    }

    #[test]
    fn an_invalid_instance_id_is_refused_with_the_rule() {
        for (value, says) in [
            ("", "must not be empty"),
            ("pod/one", "'/' is none of them"),
            (&"a".repeat(250), "at most 249 characters; this one has 250"),
        ] {
            let error = consumer_args(&[&format!("--kafka-group-instance-id={value}")])
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{value:?}: {error}");
        }
        assert!(consumer_args(&[&format!("--kafka-group-instance-id={}", "a".repeat(249))]).is_ok());
    }
}
