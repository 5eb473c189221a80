//! observe: every read of the world one reconcile needs, each done once and before anything is written.
//! The Kafka brokers (through the Secrets that secure the operator's client), their cluster id and the
//! claim on the topic, the topic, the consumer lag, the order pods while a drain needs them, the Deployments, the PostgreSQL admin Secret and the
//! services' own Secrets. A failed read is kept where it happened: `decide` and `status` see it, and it
//! is returned at the end so the reconcile is retried.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use ordersystem_kafka_admin::TopicDescription;

use super::context::Context;
use super::error::{Error, describe_error};
use super::kafka::claim::{Standing, TopicClaim};
use super::kafka::security::{self as kafka_security, ConnectionFailure};
use super::kafka::{self, Admin, ClientSecurity};
use super::validate::ValidSpec;
use super::{apply, lag, postgres, secrets};
use crate::crd::{OrderSystem, PartitionIncrease};
use crate::names::{self, Service};

/// What one reconcile found before it changed anything.
pub struct World {
    /// Another `OrderSystem` claims the topic (`kafka::claim`). PostgreSQL is then not looked at and
    /// nothing is written.
    pub conflict: Option<String>,
    /// The brokers, the topic and the lag; `None` in conflict.
    pub kafka: Option<Result<KafkaSeen, KafkaFailure>>,
    /// The id of the topic this resource created, as its status on the API server records it: read only
    /// when the topic is missing and the object in hand records none. An object from the cache can
    /// predate the status write that recorded the id, and a topic deleted meanwhile must not be created
    /// anew under the consumers. `Err` (why) when the object could not be read: whether the missing topic
    /// is this resource's own is then unknown, and nothing is created.
    pub recorded_topic_id: Result<Option<String>, String>,
    /// How many order pods exist, running or terminating; read only while a drain waits for them.
    pub order_pods: Option<Result<usize, kube::Error>>,
    /// This resource's Deployments.
    pub deployments: Result<Vec<Deployment>, apply::Error>,
    /// Their states, as far as they could be read.
    pub deployment_states: Vec<apply::DeploymentState>,
    /// The PostgreSQL admin connection from its Secret; `None` in conflict.
    pub postgres_admin: Option<Result<postgres::AdminConnection, postgres::Error>>,
    /// The services' database Secrets that exist; `None` in conflict.
    pub database_secrets: Option<Result<secrets::ByService, postgres::Error>>,
    /// With SASL, the services' Kafka identity Secrets that exist; `None` in conflict.
    pub kafka_secrets: Option<Result<secrets::ByService, kafka::Error>>,
}

/// The brokers as the operator's admin client sees them.
pub struct KafkaSeen {
    pub admin: Arc<Admin>,
    pub security: ClientSecurity,
    /// The cluster id the brokers report.
    pub cluster_id: String,
    /// The claim on the topic of this cluster, if any resource made one.
    pub claim: Option<TopicClaim>,
    /// The topic; `None` when it does not exist.
    pub topic: Option<TopicDescription>,
    /// Each consumer group's lag on the topic as it is; `None` when there is no topic yet.
    pub lag: Option<Result<BTreeMap<Service, i64>, lag::Error>>,
}

/// A Kafka step that failed, with librdkafka's own account of a refused handshake or login (or a refused
/// connection) when it gave one: that says more than the timeout.
#[derive(Debug)]
pub struct KafkaFailure {
    pub error: kafka::Error,
    pub connection: Option<ConnectionFailure>,
}

impl KafkaFailure {
    /// The error with its sources, after librdkafka's account of the refused connection when there is
    /// one.
    pub fn describe(&self) -> String {
        let message = describe_error(&self.error);
        match &self.connection {
            Some(connection) => format!("{} (then: {message})", connection.message),
            None => message,
        }
    }
}

impl From<kafka::Error> for KafkaFailure {
    fn from(error: kafka::Error) -> Self {
        Self {
            error,
            connection: None,
        }
    }
}

impl World {
    /// Whether the backends may be written: nobody else claims the topic.
    pub fn owns_topic(&self) -> bool {
        self.conflict.is_none()
    }

    /// The hash of each service's database Secret that exists: while PostgreSQL is unreachable the
    /// Deployments keep the hash of the Secret their pods use instead of rolling for nothing.
    pub fn database_secret_hashes(&self) -> BTreeMap<Service, String> {
        let Some(Ok(found)) = &self.database_secrets else {
            return BTreeMap::new();
        };
        found
            .iter()
            .map(|(service, secret)| (*service, secrets::hash(secret)))
            .collect()
    }

    /// The consumer groups' lag, when it was read.
    pub fn lag(&self) -> Option<&Result<BTreeMap<Service, i64>, lag::Error>> {
        self.kafka.as_ref()?.as_ref().ok()?.lag.as_ref()
    }

    /// The first failed read, to be returned after the status is written.
    pub fn into_first_error(self) -> Option<Error> {
        let kafka = match self.kafka {
            Some(Err(failure)) => Some(Error::Kafka(failure.error)),
            Some(Ok(KafkaSeen {
                lag: Some(Err(error)),
                ..
            })) => Some(Error::Lag(error)),
            _ => None,
        };
        kafka
            .or_else(|| Some(Error::Kafka(self.kafka_secrets?.err()?)))
            .or_else(|| Some(Error::Postgres(self.postgres_admin?.err()?)))
            .or_else(|| Some(Error::Postgres(self.database_secrets?.err()?)))
            .or_else(|| Some(Error::Apply(self.deployments.err()?)))
    }
}

/// Reads everything the reconcile of `spec` needs.
#[tracing::instrument(skip_all)]
pub async fn observe(ctx: &Context, os: &OrderSystem, spec: &ValidSpec) -> World {
    let deployments = deployments(&ctx.client, spec).await;
    let deployment_states = match &deployments {
        Ok(list) => apply::states(spec, list),
        Err(_) => Vec::new(),
    };
    let kafka = kafka(ctx, spec).await;
    let conflict = match &kafka {
        Ok(seen) => match TopicClaim::standing(seen.claim.as_ref(), spec) {
            Standing::Foreign(message) => Some(message),
            _ => None,
        },
        Err(_) => None,
    };
    if conflict.is_some() {
        return World {
            conflict,
            kafka: None,
            recorded_topic_id: Ok(None),
            order_pods: None,
            deployments,
            deployment_states,
            postgres_admin: None,
            database_secrets: None,
            kafka_secrets: None,
        };
    }
    let order_pods = match &kafka {
        Ok(seen) if drain_waits_for_pods(os, spec, seen) => Some(order_pods(&ctx.client, spec).await),
        _ => None,
    };
    let recorded_topic_id = match &kafka {
        // Paused never creates the topic: nothing to confirm.
        Ok(KafkaSeen { topic: None, .. }) if recorded_topic_id(os).is_none() && !spec.paused => {
            fresh_topic_id(ctx, os).await
        }
        _ => Ok(None),
    };
    World {
        conflict,
        kafka: Some(kafka),
        recorded_topic_id,
        order_pods,
        deployments,
        deployment_states,
        postgres_admin: Some(postgres::read_connection(&ctx.client, spec).await),
        database_secrets: Some(postgres::read_secrets(&ctx.client, spec).await),
        kafka_secrets: Some(kafka::identities::read_secrets(&ctx.client, spec).await),
    }
}

/// The admin client with the settings the spec's Secrets hold, the topic, and its lag.
async fn kafka(ctx: &Context, spec: &ValidSpec) -> Result<KafkaSeen, KafkaFailure> {
    let (admin, security) = kafka_admin(ctx, spec).await?;
    let described = async {
        let cluster_id = kafka::cluster_id(&admin).await?;
        let topic = kafka::describe(&admin, &spec.topic.name).await?;
        Ok((cluster_id, topic))
    };
    let (cluster_id, topic) = match described.await {
        Ok(found) => found,
        Err(error) => {
            let connection = ctx
                .kafka
                .connection_failure(&spec.bootstrap_servers, &security, &admin, false);
            return Err(KafkaFailure { error, connection });
        }
    };
    let claim = ctx
        .claims()
        .read(&cluster_id, &spec.topic.name)
        .await
        .map_err(|source| kafka::Error::Claim {
            topic: spec.topic.name.clone(),
            source,
        })?;
    let lag = match &topic {
        Some(topic) => Some(
            lag::observe(
                &ctx.kafka,
                &spec.bootstrap_servers,
                &security,
                &spec.topic.name,
                topic.partitions,
                spec.consumer_groups(),
            )
            .await,
        ),
        None => None,
    };
    Ok(KafkaSeen {
        admin,
        security,
        cluster_id,
        claim,
        topic,
        lag,
    })
}

/// The operator's admin client for the spec's brokers, with the TLS and SASL settings its Secrets hold
/// (returned too, for the other clients of the same reconcile).
pub async fn kafka_admin(
    ctx: &Context,
    spec: &ValidSpec,
) -> Result<(Arc<Admin>, ClientSecurity), kafka::Error> {
    let security = kafka_security::read(&ctx.client, &spec.namespace, &spec.kafka_security).await?;
    let admin = ctx.kafka.admin_with(&spec.bootstrap_servers, &security)?;
    Ok((admin, security))
}

/// The topic id the object's status records.
pub fn recorded_topic_id(os: &OrderSystem) -> Option<String> {
    os.status.as_ref()?.topic.as_ref()?.topic_id.clone()
}

/// The topic id the object's status records on the API server now; `None` also when the object is gone.
async fn fresh_topic_id(ctx: &Context, os: &OrderSystem) -> Result<Option<String>, String> {
    let api: Api<OrderSystem> = Api::namespaced(ctx.client.clone(), &os.namespace().unwrap_or_default());
    match api.get_opt(&os.name_any()).await {
        Ok(fresh) => Ok(fresh.as_ref().and_then(recorded_topic_id)),
        Err(error) => Err(format!(
            "reading OrderSystem {} for the topic id it recorded failed: {}",
            os.name_any(),
            describe_error(&error)
        )),
    }
}

/// A drain stops intake first: until no order pod is left, their count decides the next step.
fn drain_waits_for_pods(os: &OrderSystem, spec: &ValidSpec, seen: &KafkaSeen) -> bool {
    os.spec.kafka.topic.partition_increase == PartitionIncrease::Drain
        && !spec.paused
        && seen
            .topic
            .as_ref()
            .is_some_and(|topic| topic.partitions < spec.topic.partitions)
}

/// Order pods of this system, running or terminating: a terminating pod's relay may still publish.
async fn order_pods(client: &kube::Client, spec: &ValidSpec) -> Result<usize, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let selector = names::selector_labels(&spec.name, Service::Order)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .len())
}

/// The Deployments of this resource: found by label, and owned by it.
async fn deployments(client: &kube::Client, spec: &ValidSpec) -> Result<Vec<Deployment>, apply::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &spec.namespace);
    let selector = format!("{}={}", names::INSTANCE_LABEL, spec.name);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| apply::Error::ListDeployments { source })?;
    Ok(list
        .items
        .into_iter()
        .filter(|d| d.owner_references().iter().any(|o| o.uid == spec.uid))
        .collect())
}
