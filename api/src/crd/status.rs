//! What the operator reports of an `OrderSystem`: its conditions and the facts it observed (topic,
//! schemas, services, consumer lag). Written only by the operator, through the status subresource.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::Service;

/// Observed state, written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSystemStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, TopicReady, DatabaseReady, ServicesAvailable, Progressing, Degraded and Paused, each with a
    /// reason, a message and the generation it was computed for.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The topic as Kafka reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicStatus>,
    /// One entry per service schema, as Postgres reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<SchemaStatus>,
    /// Replicas of each service's Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesStatus>,
    /// Lag of the invoicing and shipping consumer groups at the last observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<ConsumerLagStatus>,
}

/// Lag of the two consumer groups.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLagStatus {
    /// Events not yet read by invoicing plus those not yet read by shipping.
    pub total: i64,
    /// The invoicing group.
    pub invoicing: GroupLagStatus,
    /// The shipping group.
    pub shipping: GroupLagStatus,
}

/// One consumer group's lag: end offsets minus committed offsets, summed over partitions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupLagStatus {
    /// Consumer group id.
    pub group: String,
    /// Events the group has not read yet.
    pub lag: i64,
    /// Consecutive observations with the lag above the threshold and not shrinking.
    pub growing_observations: i32,
}

/// The topic as observed in Kafka.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,
    /// Kafka's topic id (base64); a different id means the topic was deleted and recreated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Id of the Kafka cluster the topic is in, as its brokers report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Partitions the topic has.
    pub partitions: i32,
    /// Replication factor of its partitions.
    pub replication_factor: i32,
    /// Configs this resource manages, with the values Kafka reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub managed_configs: BTreeMap<String, String>,
    /// Configs set on the topic by someone else; reported, never changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmanaged_configs: BTreeMap<String, String>,
}

/// One service's schema and login role.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaStatus {
    /// `order`, `invoicing` or `shipping`.
    pub service: String,
    /// Schema name in Postgres.
    pub schema: String,
    /// Login role owning the schema.
    pub role: String,
    /// Secret holding the role's credentials.
    pub secret: String,
    /// True when Postgres confirmed the role can use its own schema and none of the other services'.
    pub privileges_verified: bool,
    /// The login the service's Secret names: the owner role, or its alternate `<role>_b` after an odd
    /// number of credential rotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

/// Replicas of the three services.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ServicesStatus {
    /// The order service.
    pub order: ServiceStatus,
    /// The invoicing service.
    pub invoicing: ServiceStatus,
    /// The shipping service.
    pub shipping: ServiceStatus,
}

impl ServicesStatus {
    /// The entry of `service`.
    pub fn of(&self, service: Service) -> &ServiceStatus {
        match service {
            Service::Order => &self.order,
            Service::Invoicing => &self.invoicing,
            Service::Shipping => &self.shipping,
        }
    }
}

/// One Deployment as observed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Replicas asked for.
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Image of the pod template, as the operator last applied it (kept while it applies nothing: paused,
    /// in conflict, or with an invalid spec). A service without `image` in the spec keeps this image
    /// until `spec.imageTag` names another.
    pub image: String,
    /// `ready/desired`, for `kubectl get`.
    pub replicas: String,
    /// How the replicas of an autoscaled consumer were decided; absent with a fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// Who decides an autoscaled consumer's replicas.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScalingMode {
    /// The operator, from the consumer group's lag.
    Lag,
    /// An autoscaler of the user's (an HPA, KEDA): the operator only reports.
    External,
}

/// The last scaling decision of one consumer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// `Lag` (the operator scales) or `External` (an autoscaler of the user's does).
    pub mode: ScalingMode,
    /// Replicas the Deployment had when the operator last looked.
    pub current_replicas: i32,
    /// Replicas the operator decided (`Lag`), or the Deployment's own (`External`).
    pub desired_replicas: i32,
    /// When the operator last changed the replicas; a scale-down waits for the cooldown after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The last look at which the lag asked for at least the replicas running; a scale-down waits for the
    /// cooldown after it too, so one quiet look in a busy period takes no pods away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_busy_time: Option<Time>,
    /// Why the replicas are what they are, in one word: `ScaledUp`, `ScaledDown`, `Steady`,
    /// `CooldownHoldsScaleDown`, `CappedByPartitions`, `LagUnknown` or `External`.
    pub reason: String,
    /// The same as a sentence, with the lag and the bounds it was decided from.
    pub message: String,
}
