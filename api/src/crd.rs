//! The `OrderSystem` custom resource (`ordersystem.io/v1alpha1`): its spec, its status, and the OpenAPI
//! schema with the CEL rules the API server enforces before the operator ever sees an object.
//!
//! Everything the API server can reject is declared here (ranges, enums, patterns, immutability); the
//! `validate` step only checks what a schema cannot express. Generated YAML lives in `crds/` and is
//! produced by `ordersystem-operator crd`; never edit it by hand.

mod expose;
mod security;
mod status;
mod template;
mod tracing;

pub use expose::{ExposeSpec, GatewayRef, HttpRouteExpose, IngressExpose, NetworkPolicySpec, PublicEndpoint};
pub use security::{
    CA_CERT_KEY, KafkaSasl, KafkaTls, SaslMechanism, ServiceCredentials, TLS_CERT_KEY, TLS_KEY_KEY,
};
pub use status::{
    AutoscalingStatus, ConsumerLagStatus, GroupLagStatus, OrderSystemStatus, ScalingMode, SchemaStatus,
    ServiceStatus, ServicesStatus, TopicStatus,
};
pub use template::{ContainerTemplate, ImagePullPolicy, PodTemplate, TemplateSpec};
pub use tracing::TracingSpec;

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
    /// The order service: web shop and API, producer of the order events. It has a fixed number of
    /// replicas and no `autoscaling`: it does not consume, so consumer lag says nothing about its load,
    /// and a `partitionIncrease: Drain` scales it to 0 and back on its own.
    #[serde(default)]
    pub order: ServiceSpec,
    /// The invoicing service: consumes the order events, keeps invoices.
    #[serde(default)]
    pub invoicing: ConsumerServiceSpec,
    /// The shipping service: consumes the order events, keeps shipments.
    #[serde(default)]
    pub shipping: ConsumerServiceSpec,
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
    /// Publishes the services' pages and JSON APIs through an Ingress or a Gateway API HTTPRoute, at the
    /// hosts and paths given; the pages then link to each other by those public URLs. Nothing is
    /// published when absent (reach the services with `kubectl port-forward`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<ExposeSpec>,
    /// NetworkPolicies that let the services' pods accept only HTTP on their port and connect only to
    /// DNS, Kafka and PostgreSQL. None when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    /// Sends the services' spans to an OpenTelemetry collector (OTLP/HTTP). None when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
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

/// The order service's workload.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Number of pods; 1 when absent. A `partitionIncrease: Drain` holds it at 0 until the partitions
    /// are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// Container image of this service; it takes precedence over `imageTag`. When absent the service runs
    /// `ghcr.io/ordersystem/<service>:<imageTag>`, or without `imageTag` the image it was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the service container. When absent: requests of 25m CPU and
    /// 32Mi memory and a 256Mi memory limit (no CPU limit: a throttled consumer only falls behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Placement, pull secrets, labels, annotations, environment and security contexts of the service's
    /// pods (see `kubectl explain ordersystem.spec.order.template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateSpec>,
}

/// A consumer's workload (invoicing, shipping): a fixed number of replicas, or `autoscaling`.
///
/// `replicas` has no schema default (it had `1` before autoscaling existed): a default would be stored
/// in every object and `autoscaling` could never be set beside it. A resource created back then keeps
/// its stored `replicas: 1` and stays valid; to autoscale it, remove `replicas` in the same change that
/// adds `autoscaling` (e.g. a JSON patch `remove /spec/invoicing/replicas`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.replicas) || !has(self.autoscaling)",
        "fieldPath": ".replicas",
        "reason": "FieldValueForbidden",
        "message": "replicas and autoscaling are mutually exclusive: remove replicas to let autoscaling decide the number of pods, or remove autoscaling to fix it"
    }
]))]
pub struct ConsumerServiceSpec {
    /// Number of pods; 1 when absent (and without `autoscaling`). More replicas than the topic has
    /// partitions leaves consumers idle. Mutually exclusive with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// The number of pods decided from this service's consumer-group lag by the operator, or left to an
    /// external autoscaler (`external: true`). Mutually exclusive with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Container image of this service; it takes precedence over `imageTag`. When absent the service runs
    /// `ghcr.io/ordersystem/<service>:<imageTag>`, or without `imageTag` the image it was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the service container. When absent: requests of 25m CPU and
    /// 32Mi memory and a 256Mi memory limit (no CPU limit: a throttled consumer only falls behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Placement, pull secrets, labels, annotations, environment and security contexts of the service's
    /// pods (see `kubectl explain ordersystem.spec.order.template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateSpec>,
}

/// How a consumer's replicas follow its load. Either the operator scales on lag (`maxReplicas` and the
/// other bounds), or `external: true` hands `replicas` to an autoscaler of your own.
///
/// Lag scaling: desired = ceil(lag / `targetLagPerReplica`), clamped to `minReplicas`..`maxReplicas`
/// and never above the topic's partitions (a consumer beyond them has nothing to read). The cap
/// follows the topic as Kafka reports it: it rises once added partitions exist. While a
/// `partitionIncrease: Drain` runs the topic keeps its old partitions, so the cap stays there until
/// the drain adds them. A scale-up happens at the observation that asks for it (every
/// `consumerLag.intervalSeconds`); a scale-down waits until `scaleDownCooldownSeconds` have passed since
/// the last scaling and since the last observation whose lag still needed every pod running, so neither
/// a backlog just drained nor one quiet observation in a busy period takes pods away.
///
/// External: the operator stops writing the Deployment's `replicas` (it hands the field over as the
/// Kubernetes server-side apply documentation describes, so it keeps its value until the HPA or KEDA
/// sets it) and reports what the Deployment has.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.external) && self.external) || (!has(self.minReplicas) && !has(self.maxReplicas) && !has(self.targetLagPerReplica) && !has(self.scaleDownCooldownSeconds))",
        "message": "with external true the operator does not scale this service: leave out minReplicas, maxReplicas, targetLagPerReplica and scaleDownCooldownSeconds"
    },
    {
        "rule": "(has(self.external) && self.external) || has(self.maxReplicas)",
        "fieldPath": ".maxReplicas",
        "reason": "FieldValueRequired",
        "message": "maxReplicas is required to scale on lag (or set external: true to use an autoscaler of your own)"
    },
    {
        "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
        "fieldPath": ".minReplicas",
        "message": "minReplicas must not be greater than maxReplicas"
    }
]))]
pub struct AutoscalingSpec {
    /// True: an external autoscaler (an HPA, KEDA) owns the Deployment's `replicas`; the operator
    /// neither sets nor resets it. A Deployment first created in this mode starts with 1 replica. Leaving
    /// this mode makes the operator set `replicas` again (it takes the field back): remove the external
    /// autoscaler first, or the two keep overwriting each other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Fewest pods while lag is low; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: Option<i32>,
    /// Most pods, however high the lag; the topic's partitions cap it further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: Option<i32>,
    /// Lag (events not yet read by the group) one pod is expected to work off; the operator runs
    /// ceil(lag / targetLagPerReplica) pods. 1000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: Option<i64>,
    /// Seconds after the last scaling, and after the last observation whose lag needed every pod running,
    /// before the operator scales down; 300 when absent. Scaling up never waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_cooldown_seconds: Option<i32>,
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
