//! How the operator and the services reach a secured Kafka and Postgres: TLS trust, client certificates and
//! SASL credentials, all by reference to Secrets in the resource's namespace (never inline).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretRef;

/// Key of the CA certificate (PEM) in a CA Secret: the name Strimzi, cert-manager and CloudNativePG use.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Keys of a `kubernetes.io/tls` Secret: the client certificate (PEM, chain allowed) and its private key.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// TLS to the brokers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// Secret with the CA certificate that signed the brokers' certificates, under `ca.crt` (PEM). When
    /// absent, the system's trust store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) with a client certificate, for brokers that
    /// require mutual TLS. The operator and all three services present it; without `sasl` they share its
    /// principal (the certificate's subject), so that principal needs the rights of all four.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_secret_ref: Option<SecretRef>,
}

/// SASL authentication to the brokers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// SASL mechanism.
    pub mechanism: SaslMechanism,
    /// Secret with `username` and `password` of the operator's own Kafka identity. It needs, on the topic,
    /// CREATE, DESCRIBE, ALTER (partitions), DESCRIBE_CONFIGS, ALTER_CONFIGS and, with `deletionPolicy:
    /// Delete`, DELETE; DESCRIBE on the two consumer groups (their lag); and when it makes the services'
    /// SCRAM users (`serviceCredentials: Operator`), ALTER and DESCRIBE on the cluster (their users and
    /// ACLs). `examples/shop-strimzi.yaml` grants exactly what `serviceCredentials: Provided` needs.
    pub credentials_secret_ref: SecretRef,
    /// Who makes the services' Kafka users. `Operator` (the default with a SCRAM mechanism): a SCRAM user
    /// per service with its ACLs, created by the operator. `Provided`: you create each service's Secret
    /// `<name>-<service>-kafka` (`username`, `password`) and its user and ACLs, e.g. as Strimzi KafkaUsers
    /// whose password comes from that Secret; the operator then never writes users or ACLs (its own
    /// identity needs no cluster rights) and the Deployments wait for those Secrets. Use it where another
    /// controller owns the brokers' users (Strimzi's User Operator removes the credentials and ACLs of
    /// every user without a KafkaUser). With PLAIN the credentials are always provided.
    #[serde(default)]
    pub service_credentials: ServiceCredentials,
}

/// Who creates the services' Kafka users and ACLs.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceCredentials {
    /// The operator (SCRAM only): one user per service, its password in `<name>-<service>-kafka`, its ACLs.
    #[default]
    Operator,
    /// You: the Secrets `<name>-<service>-kafka` with `username` and `password`, the users and the ACLs.
    Provided,
}

/// SASL mechanisms librdkafka speaks without Cyrus SASL.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    /// Salted challenge-response with SHA-256 (RFC 7677).
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// The password in the clear; only allowed together with TLS.
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    /// The name Kafka and librdkafka use.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::Plain => "PLAIN",
        }
    }

    pub fn is_scram(self) -> bool {
        !matches!(self, Self::Plain)
    }
}
