//! Kafka client settings shared by the producer and the consumers, and the client context that turns
//! librdkafka's callbacks into logs and metrics: every rebalance is logged with its partitions (so
//! scaling can be seen), and "all brokers down" flips the `kafka_connected` gauge.

use crate::config::{
    ConsumerArgs, GroupProtocol, KafkaArgs, KafkaSecurityArgs, Membership, SecurityProtocol,
};
use crate::metrics::Metrics;
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use secrecy::ExposeSecret;
use std::sync::{Arc, Mutex};

/// Callbacks of one client. `revoked` collects partitions lost in a rebalance so the consumer loop can
/// forget their pause state.
#[derive(Clone)]
pub struct KafkaContext {
    metrics: Metrics,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
}

impl KafkaContext {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            revoked: Arc::default(),
        }
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        // A poisoned lock only means a callback panicked mid-push; the list is still usable.
        std::mem::take(
            &mut *self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    let mut names: Vec<String> = partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    names.sort();
    names.join(",")
}

impl ClientContext for KafkaContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            self.metrics.kafka_connected.set(0);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.metrics.rebalances.inc();
            tracing::info!(partitions = %describe(partitions), "partitions revoked");
            let mut revoked = self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            revoked.extend(
                partitions
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assignment = rdkafka::consumer::Consumer::assignment(consumer).ok();
        if let Some(assignment) = &assignment {
            self.metrics
                .assigned_partitions
                .set(i64::try_from(assignment.count()).unwrap_or(i64::MAX));
        }
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.metrics.rebalances.inc();
                self.metrics.kafka_connected.set(1);
                let now = assignment.map(|a| describe(&a)).unwrap_or_default();
                tracing::info!(added = %describe(partitions), assignment = %now, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// Settings common to every client.
pub fn base_config(kafka: &KafkaArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set(
            "topic.metadata.refresh.interval.ms",
            kafka.metadata_refresh_ms.to_string(),
        )
        .set("client.dns.lookup", "use_all_dns_ips");
    apply_security(&kafka.security, &mut config);
    config
}

/// TLS and SASL settings; certificates are read by librdkafka from their files.
fn apply_security(security: &KafkaSecurityArgs, config: &mut ClientConfig) {
    let protocol = match security.protocol {
        SecurityProtocol::Plaintext => "plaintext",
        SecurityProtocol::Ssl => "ssl",
        SecurityProtocol::SaslPlaintext => "sasl_plaintext",
        SecurityProtocol::SaslSsl => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    let path = |p: &std::path::PathBuf| p.to_string_lossy().into_owned();
    if let Some(ca) = &security.ca_location {
        config.set("ssl.ca.location", path(ca));
    } else if matches!(
        security.protocol,
        SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
    ) {
        config.set("ssl.ca.location", "probe");
    }
    if let (Some(cert), Some(key)) = (&security.certificate_location, &security.key_location) {
        config
            .set("ssl.certificate.location", path(cert))
            .set("ssl.key.location", path(key));
    }
    if let Some(mechanism) = &security.sasl_mechanism {
        config.set("sasl.mechanism", mechanism);
    }
    if let Some(username) = &security.sasl_username {
        config.set("sasl.username", username);
    }
    if let Some(password) = &security.sasl_password {
        config.set("sasl.password", password.expose_secret());
    }
}

/// The idempotent producer of the relay: acks from all in-sync replicas, no reordering on retry, and the
/// Java client's partitioner so a key lands where any Java producer would put it. The relay hands over a
/// whole round at once, so the batch is already formed: a 1 ms linger (librdkafka's default is 5) only
/// lets the round's last rows join it, and every order waits that much less for its acknowledgement.
pub fn producer_config(kafka: &KafkaArgs, message_timeout_ms: u32) -> ClientConfig {
    let mut config = base_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", message_timeout_ms.to_string())
        .set("linger.ms", "1");
    config
}

/// The consumer of invoicing and shipping: offsets stored by the loop only after the database commit and
/// committed by the background auto-commit; a new group starts at the earliest offset. A static member
/// (`Membership::Static`, classic only) gets its `group.instance.id`.
pub fn consumer_config(kafka: &KafkaArgs, consumer: &ConsumerArgs, group: &str) -> ClientConfig {
    let mut config = base_config(kafka);
    config
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        // librdkafka prefetches up to 64 MiB per consumer by default; with a backlog that is most of the
        // process's memory. 8 MiB still holds thousands of events, far more than one batch.
        .set("queued.max.messages.kbytes", "8192")
        .set("max.poll.interval.ms", consumer.max_poll_interval_ms.to_string());
    match consumer.protocol() {
        // librdkafka rejects session.timeout.ms and partition.assignment.strategy under KIP-848: the broker
        // owns both.
        protocol @ GroupProtocol::Consumer => {
            config.set("group.protocol", protocol.as_str());
        }
        protocol @ GroupProtocol::Classic => {
            config
                .set("group.protocol", protocol.as_str())
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("session.timeout.ms", consumer.session_timeout_ms.to_string());
        }
    }
    if let Membership::Static { instance_id } = consumer.membership() {
        config.set("group.instance.id", instance_id);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn the_operators_security_env_becomes_librdkafka_settings_and_the_password_stays_hidden() {
        let args = Args::parse_from([
            "svc",
            "--kafka-security-protocol=sasl_ssl",
            "--kafka-ssl-ca-location=/etc/ordersystem/kafka-ca/ca.crt",
            "--kafka-sasl-mechanism=SCRAM-SHA-512",
            "--kafka-sasl-username=shop.shop.order",
            "--kafka-sasl-password=hunter2",
        ]);
        let config = base_config(&args.kafka);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(
            config.get("ssl.ca.location"),
            Some("/etc/ordersystem/kafka-ca/ca.crt")
        );
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("shop.shop.order"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert!(!format!("{:?}", args.kafka).contains("hunter2"));
    }

    #[derive(clap::Parser)]
    struct ConsumerFlags {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
    }

    #[test]
    fn the_instance_id_reaches_librdkafka_under_the_classic_protocol_which_it_makes_the_default() {
        let pod = "--kafka-group-instance-id=shop-invoicing-7d9f8c6b5-x2x4q";
        let classic = ConsumerFlags::parse_from(["svc", pod, "--kafka-group-protocol=classic"]);
        let config = consumer_config(&classic.kafka, &classic.consumer, "g");
        assert_eq!(
            config.get("group.instance.id"),
            Some("shop-invoicing-7d9f8c6b5-x2x4q")
        );
        assert_eq!(config.get("group.protocol"), Some("classic"));
        let by_default = ConsumerFlags::parse_from(["svc", pod]);
        let config = consumer_config(&by_default.kafka, &by_default.consumer, "g");
        assert_eq!(config.get("group.protocol"), Some("classic"));
        assert_eq!(
            config.get("group.instance.id"),
            Some("shop-invoicing-7d9f8c6b5-x2x4q")
        );
        let consumer = ConsumerFlags::parse_from(["svc", pod, "--kafka-group-protocol=consumer"]);
        let config = consumer_config(&consumer.kafka, &consumer.consumer, "g");
        assert_eq!(config.get("group.instance.id"), None);
        assert_eq!(config.get("group.protocol"), Some("consumer"));
    }

    #[test]
    fn plaintext_is_the_default_and_sets_no_tls_or_sasl_keys() {
        let args = Args::parse_from(["svc"]);
        let config = base_config(&args.kafka);
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("ssl.ca.location"), None);
        assert_eq!(config.get("sasl.mechanism"), None);
    }
}
