//! The `OrderSystem` custom resource (`ordersystem.io/v1alpha1`): its spec, its status, and the OpenAPI
//! schema with the CEL rules the API server enforces before the operator ever sees an object.
//!
//! Everything the API server can reject is declared here (ranges, enums, patterns, immutability); the
//! `validate` step only checks what a schema cannot express. Generated YAML lives in `crds/` and is
//! produced by `ordersystem-operator crd`; never edit it by hand.

mod security;
mod status;

pub use security::{CA_CERT_KEY, KafkaSasl, KafkaTls, SaslMechanism, TLS_CERT_KEY, TLS_KEY_KEY};
pub use status::{
    ConsumerLagStatus, GroupLagStatus, OrderSystemStatus, SchemaStatus, ServiceStatus, ServicesStatus,
    TopicStatus,
};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest `metadata.name`: child objects are named `<name>-<service>` and must be DNS labels (63 bytes);
/// the longest service name is `invoicing` (9) plus the dash.
pub const MAX_NAME_LEN: usize = 53;

/// Desired state of one order system: where its Kafka topic and Postgres schemas live, and how many
/// replicas of each service run.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ordersystem.io",
    version = "v1alpha1",
    kind = "OrderSystem",
    plural = "ordersystems",
    // Not `os`: OpenSearch's operator uses it.
    shortname = "osys",
    category = "ordersys",
    namespaced,
    status = "OrderSystemStatus",
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the topic, the schemas and every service are ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","description":"Partitions of the order topic, as the broker reports them","jsonPath":".status.topic.partitions"}"#,
    printcolumn = r#"{"name":"Order","type":"string","description":"Ready/desired replicas of the order service","jsonPath":".status.services.order.replicas"}"#,
    printcolumn = r#"{"name":"Invoicing","type":"string","description":"Ready/desired replicas of the invoicing service","jsonPath":".status.services.invoicing.replicas"}"#,
    printcolumn = r#"{"name":"Shipping","type":"string","description":"Ready/desired replicas of the shipping service","jsonPath":".status.services.shipping.replicas"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","description":"Events the consumer groups have not read yet, at the last observation","jsonPath":".status.consumerLag.total"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"description":"Why the resource is or is not ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"description":"What the Ready condition says, as a sentence","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"Time since the resource was created","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OrderSystemSpec {
    /// The Kafka cluster and the one topic the services talk through.
    pub kafka: KafkaSpec,
    /// The Postgres database in which every service gets its own schema and login role.
    pub postgres: PostgresSpec,
    /// The order service: web shop and API, producer of the order events.
    #[serde(default)]
    pub order: ServiceSpec,
    /// The invoicing service: consumes the order events, keeps invoices.
    #[serde(default)]
    pub invoicing: ServiceSpec,
    /// The shipping service: consumes the order events, keeps shipments.
    #[serde(default)]
    pub shipping: ServiceSpec,
    /// Tag of the project's images (`ghcr.io/ordersystem/<service>:<imageTag>`) for every service without
    /// its own `image`: the one place that moves them to another release. When absent, each such service
    /// keeps the image it was deployed with (`status.services.<service>.image`), so upgrading the operator
    /// rolls nothing; a service deployed for the first time gets the operator's default tag (its version,
    /// or its `--default-image-tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = crate::names::IMAGE_TAG_PATTERN))]
    pub image_tag: Option<String>,
    /// What happens to the topic, the schemas and the services' SCRAM users and ACLs when this resource is
    /// deleted: `Retain` (default) keeps them, `Delete` drops the schemas and roles, deletes the topic, the
    /// users and exactly the ACLs granted to them. Workloads are always removed.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// When true the operator changes nothing (no topic, database or workload changes); it still updates
    /// status and still honours deletion.
    #[serde(default)]
    pub paused: bool,
    /// How the lag of the invoicing and shipping consumer groups is watched.
    #[serde(default)]
    pub consumer_lag: ConsumerLagSpec,
}

/// Connection to Kafka and the topic the services share.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of Kafka brokers, used by the operator and by the services.
    #[schemars(length(min = 1, max = 1024))]
    pub bootstrap_servers: String,
    /// The topic carrying the order events.
    pub topic: TopicSpec,
    /// TLS to the brokers (`SSL`, or `SASL_SSL` with `sasl`). Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// SASL authentication (`SASL_SSL` with `tls`, `SASL_PLAINTEXT` without). With a SCRAM mechanism each
    /// service gets its own SCRAM user and ACLs: order may only write the topic, invoicing and shipping
    /// may only read it in their own group. With PLAIN the operator cannot create users: create each
    /// service's Secret `<name>-<service>-kafka` (`username`, `password`) and its ACLs; the services'
    /// Deployments wait for those Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
}

/// The order topic. Its name and replication factor are immutable; partitions may only grow.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.replicationFactor) == has(oldSelf.replicationFactor) && (!has(self.replicationFactor) || self.replicationFactor == oldSelf.replicationFactor)",
        "message": "replicationFactor is immutable (it can be neither changed, added nor removed)"
    }
]))]
pub struct TopicSpec {
    /// Topic name (immutable): 1-249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`, not starting with `__`
    /// (reserved for Kafka's internal topics).
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "topic name is immutable"},
        {"rule": "!self.startsWith('__') && self != '.' && self != '..'", "message": "topic name must not start with '__' and must not be '.' or '..'"}
    ]))]
    pub name: String,
    /// Number of partitions. May grow (adds partitions, which re-maps keys to partitions), never shrink.
    #[schemars(range(min = 1, max = 10000))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self >= oldSelf", "message": "partitions may not be decreased"}
    ]))]
    pub partitions: i32,
    /// Replication factor (immutable). When absent the broker's `default.replication.factor` applies.
    /// Must not exceed the number of brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: Option<i32>,
    /// Kafka `cleanup.policy` of the topic.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// How a partition increase is carried out: `Immediate` adds partitions at once (keys produced
    /// afterwards may land on another partition than their earlier, possibly unread, events); `Drain`
    /// stops intake, waits until both consumer groups have read everything, then adds them; `Reject`
    /// refuses and says so in status.
    #[serde(default)]
    pub partition_increase: PartitionIncrease,
    /// Further topic configs (e.g. `retention.ms`), set with incremental config changes. Keys removed
    /// from here are reset to the broker default; keys set by others are reported, never changed.
    /// `cleanup.policy` is not allowed here (use `cleanupPolicy`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "topic_config_schema")]
    pub config: BTreeMap<String, String>,
}

/// Kafka `cleanup.policy` values.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CleanupPolicy {
    /// Delete old segments after retention.
    #[default]
    #[serde(rename = "delete")]
    Delete,
    /// Keep the last record per key.
    #[serde(rename = "compact")]
    Compact,
    /// Compact, and delete segments after retention.
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    /// The value Kafka expects for `cleanup.policy`.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        }
    }
}

/// How partitions are added.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PartitionIncrease {
    /// Add partitions as soon as the spec asks for more.
    #[default]
    Immediate,
    /// Scale the order service to zero, wait until invoicing and shipping have lag 0, add partitions,
    /// scale order back: no key has unread events on its old partition when the mapping changes.
    Drain,
    /// Never add partitions: a larger `partitions` is reported (`TopicReady=False`) and not applied.
    Reject,
}

/// Watching the consumer groups' lag.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLagSpec {
    /// Lag (events) of one group above which it counts as behind.
    #[serde(default = "default_lag_threshold")]
    #[schemars(range(min = 0))]
    pub threshold: i64,
    /// Consecutive observations above the threshold without shrinking before `Degraded=True
    /// reason=ConsumerLagGrowing`.
    #[serde(default = "default_lag_observations")]
    #[schemars(range(min = 1, max = 100))]
    pub observations: i32,
    /// Seconds between two observations.
    #[serde(default = "default_lag_interval")]
    #[schemars(range(min = 5, max = 3600))]
    pub interval_seconds: i32,
}

fn default_lag_threshold() -> i64 {
    1000
}

fn default_lag_observations() -> i32 {
    3
}

fn default_lag_interval() -> i32 {
    30
}

impl Default for ConsumerLagSpec {
    fn default() -> Self {
        Self {
            threshold: default_lag_threshold(),
            observations: default_lag_observations(),
            interval_seconds: default_lag_interval(),
        }
    }
}

/// The Postgres database.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret in this namespace with the admin connection: `host`, `port`, `dbname` (or `database`),
    /// `username` (or `user`), `password` (CloudNativePG's key names are accepted). The admin needs
    /// CREATEROLE and CREATE on the database; it need not be a superuser.
    pub admin_secret_ref: SecretRef,
    /// libpq `sslmode` used by the operator and passed to the services.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// Secret with the CA certificate (`ca.crt`, PEM) that signed the server's certificate, for
    /// `verify-ca` and `verify-full`. When absent, well-known public CAs are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
}

/// A reference to a Secret in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// libpq `sslmode`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it.
    #[default]
    Prefer,
    /// TLS, without certificate verification.
    Require,
    /// TLS, the server certificate must be signed by a trusted CA.
    VerifyCa,
    /// TLS, certificate verified and host name checked.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_libpq(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// One service's workload.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Number of pods. For invoicing and shipping, more replicas than partitions leaves consumers idle.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Container image of this service; it takes precedence over `imageTag`. When absent the service runs
    /// `ghcr.io/ordersystem/<service>:<imageTag>`, or without `imageTag` the image it was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the service container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_replicas() -> i32 {
    1
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            image: None,
            resources: None,
        }
    }
}

/// Fate of the topic and the schemas on deletion.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep topic, schemas, roles, SCRAM users and ACLs in the backends.
    #[default]
    Retain,
    /// Drop schemas and roles, delete the topic, the services' SCRAM users and their ACLs.
    Delete,
}

fn topic_config_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Further topic configs (e.g. `retention.ms`), set with incremental config changes. Keys removed from here are reset to the broker default; keys set by others are reported, never changed. `cleanup.policy` is not allowed here (use `cleanupPolicy`).",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 1024},
        "x-kubernetes-validations": [
            {"rule": "!('cleanup.policy' in self)", "message": "cleanup.policy is not allowed in config; use cleanupPolicy"},
            {"rule": "self.all(k, k.size() <= 249)", "message": "config keys are at most 249 characters"}
        ]
    })
}

/// What `kubectl explain ordersystem` says first (the derive would write "Auto-generated derived type …").
pub const DESCRIPTION: &str = "An order system: the three services of an event-driven shop (order, \
invoicing, shipping) that talk only through one Kafka topic and each own a schema in one PostgreSQL \
database. The operator creates the topic, a schema and least-privilege login role per service, their \
Secrets, and the services' Deployments, Services and PodDisruptionBudgets, and keeps them as the spec says. \
Status reports what is and is not ready, and why.";

/// The CRD as installed: the derived schema plus its description and the rules on `metadata` that a field
/// attribute cannot express.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = OrderSystem::crd();
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let rule = serde_json::json!({
            "rule": format!("self.metadata.name.size() <= {MAX_NAME_LEN}"),
            "message": format!("metadata.name must be at most {MAX_NAME_LEN} characters (child objects are named <name>-<service>)"),
        });
        schema.description = Some(DESCRIPTION.to_string());
        schema.x_kubernetes_validations = Some(vec![
            serde_json::from_value(rule).expect("a literal ValidationRule is valid"),
        ]);
    }
    crd
}

/// The CRD as YAML, with the generated-file header.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&crd()).expect("a CRD always serializes");
    format!("# Generated by `ordersystem-operator crd` from api/src/crd.rs; do not edit.\n{body}")
}
