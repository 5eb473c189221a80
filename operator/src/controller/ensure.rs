//! ensure: the writers, in the order a first rollout needs them. Kafka (the services' identities, the
//! topic, their users and ACLs), PostgreSQL (schemas, roles and the services' Secrets), a credential
//! rotation's next step, then the Kubernetes objects `build` makes from all of it. Each writer's result
//! is kept as it came, success or typed error; a failed writer does not stop the others, and `status`
//! reports them all.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::info;

use super::build::{self, Desired, Observed};
use super::context::Context;
use super::decide::Plan;
use super::drain::Gate;
use super::error::Error;
use super::kafka::claim::{Origin, Standing, TopicClaim};
use super::kafka::{self, TopicObserved, TopicState};
use super::observe::{self, KafkaFailure, KafkaSeen, World};
use super::rotation::{self, RotationReport};
use super::steps::{Times, timed};
use super::validate::ValidSpec;
use super::{apply, postgres, secrets};
use crate::crd::OrderSystem;
use crate::names::{self, Service};

/// What the writers did.
pub struct Outcome {
    /// The topic step; `None` when the brokers or the identity Secrets could not be reached (`World::kafka`
    /// and `World::kafka_secrets` say why).
    pub topic: Option<Result<TopicObserved, TopicFailure>>,
    /// The database step; `None` when the admin Secret or the services' Secrets could not be read
    /// (`World::postgres_admin`, `World::database_secrets`).
    pub postgres: Option<Result<postgres::PostgresObserved, postgres::Error>>,
    /// A rotation's step; `None` while paused.
    pub rotation: Option<Result<RotationReport, rotation::Error>>,
    /// What `build` made, with the services that wait for their first rollout.
    pub desired: Desired,
    /// The applied Deployments as the API server answered; `None` while paused.
    pub applied: Option<Result<Vec<Deployment>, apply::Error>>,
}

/// Why the topic step did not succeed.
#[derive(Debug)]
pub enum TopicFailure {
    /// Whether partitions may be added could not be decided: the topic was left alone.
    Undecided(String),
    /// The topic is missing and whether this resource created it could not be read: it was not created.
    Unconfirmed(String),
    Kafka(KafkaFailure),
}

impl Outcome {
    /// The first failed write, to be returned after the status is written.
    pub fn into_first_error(self) -> Option<Error> {
        let topic = match self.topic {
            Some(Err(TopicFailure::Undecided(message))) => Some(Error::Drain(message)),
            Some(Err(TopicFailure::Unconfirmed(message))) => Some(Error::TopicUnconfirmed(message)),
            Some(Err(TopicFailure::Kafka(failure))) => Some(Error::Kafka(failure.error)),
            _ => None,
        };
        topic
            .or_else(|| Some(Error::Postgres(self.postgres?.err()?)))
            .or_else(|| Some(Error::Rotation(self.rotation?.err()?)))
            .or_else(|| Some(Error::Apply(self.applied?.err()?)))
    }
}

/// Runs the writers for `plan`; `None` in conflict, when nothing is written.
/// Each writer's duration goes into `times`.
#[tracing::instrument(skip_all)]
pub async fn ensure(
    ctx: &Context,
    os: &OrderSystem,
    plan: &Plan,
    world: &World,
    times: &mut Times,
) -> Option<Outcome> {
    if !world.owns_topic() {
        return None;
    }
    let spec = &plan.spec;
    let (topic, kafka_secret_hashes) = timed(&mut times.kafka, kafka(ctx, os, plan, world)).await;
    let admin = world
        .postgres_admin
        .as_ref()
        .and_then(|admin| admin.as_ref().ok());
    // As observe read them; the database step adds those it creates.
    let mut database_secrets = match &world.database_secrets {
        Some(Ok(found)) => Some(found.clone()),
        _ => None,
    };
    let postgres = match (admin, database_secrets.as_mut()) {
        (Some(admin), Some(secrets)) => Some(
            timed(
                &mut times.postgres,
                postgres::ensure(&ctx.postgres, &ctx.client, admin, spec, secrets),
            )
            .await,
        ),
        _ => None,
    };
    // One Event for all services: the recorder folds Events of one reason into a series with one note.
    if let Some(Ok(pg)) = &postgres
        && !pg.taken_over.is_empty()
    {
        let note = pg.taken_over.join("; ");
        ctx.event(os, EventType::Normal, "SchemasTakenOver", "Reconcile", note)
            .await;
    }
    let mut observed = Observed {
        secret_hashes: match &postgres {
            Some(Ok(pg)) => pg.secret_hashes.clone(),
            _ => world.database_secret_hashes(),
        },
        kafka_secret_hashes,
        topic_ready: matches!(
            &topic,
            Some(Ok(TopicObserved {
                state: TopicState::Ready | TopicState::MorePartitionsThanSpec { .. },
                ..
            }))
        ),
        schemas_ready: match &postgres {
            Some(Ok(pg)) => pg.ready.clone(),
            _ => BTreeSet::new(),
        },
        deployed: world.deployment_states.iter().map(|d| d.service).collect(),
        postgres_port: admin.map(|admin| admin.port),
    };
    // A requested rotation switches a Secret here, so this reconcile already rolls it.
    let rotation = match (admin, &database_secrets) {
        (Some(admin), Some(secrets)) if !spec.paused => {
            let deployments = world.deployments.as_deref().unwrap_or_default();
            let step = rotation::step(ctx, os, spec, admin, secrets, deployments, &mut observed);
            Some(timed(&mut times.rotation, step).await)
        }
        _ => None,
    };
    let desired = build::build(spec, &observed);
    let applied = match spec.paused {
        true => None,
        false => {
            // The Deployments as observe listed them: their versions, and the status of those unchanged.
            let live = world.deployments.as_deref().unwrap_or_default();
            Some(timed(&mut times.apply, apply::apply(ctx, spec, &desired, live)).await)
        }
    };
    Some(Outcome {
        topic,
        postgres,
        rotation,
        desired,
        applied,
    })
}

/// Records this resource's claim on the topic before anything is written to it, or takes over a claim it
/// may take (`kafka::claim`); the claim in force, `None` while paused. A claim another resource made
/// since `observe` looked is an error: the next reconcile reports the conflict.
async fn claim_topic(
    ctx: &Context,
    os: &OrderSystem,
    spec: &ValidSpec,
    seen: &KafkaSeen,
) -> Result<Option<TopicClaim>, KafkaFailure> {
    if spec.paused {
        return Ok(None);
    }
    let topic = &spec.topic.name;
    let error = |source| kafka::Error::Claim {
        topic: topic.clone(),
        source,
    };
    let claims = ctx.claims();
    let claim = match (TopicClaim::standing(seen.claim.as_ref(), spec), &seen.claim) {
        (Standing::Take, Some(earlier)) => {
            let taken = TopicClaim::new(spec, &seen.cluster_id, earlier.origin);
            claims.replace(&taken).await.map_err(error)?;
            let note = format!(
                "Took over the claim on topic {topic} of Kafka cluster {} from OrderSystem {} (uid {})",
                seen.cluster_id, earlier.owner, earlier.uid
            );
            ctx.event(os, EventType::Normal, "TopicClaimTakenOver", "Reconcile", note)
                .await;
            taken
        }
        (Standing::Unclaimed, _) => {
            let origin = match &seen.topic {
                // Created here, or managed by this resource before claims were recorded: deleted with it.
                None => Origin::Created,
                Some(topic) if observe::recorded_topic_id(os).as_ref() == Some(&topic.topic_id) => {
                    Origin::Created
                }
                Some(_) => Origin::Found,
            };
            let claim = TopicClaim::new(spec, &seen.cluster_id, origin);
            let in_force = claims.create(&claim).await.map_err(error)?;
            if in_force.uid != claim.uid {
                return Err(KafkaFailure::from(kafka::Error::ClaimedMeanwhile {
                    topic: topic.clone(),
                    owner: in_force.owner,
                }));
            }
            if origin == Origin::Found {
                let note = format!(
                    "Claimed topic {topic}, which existed before: deletionPolicy Delete keeps it unless this \
                     resource is annotated with {}=true",
                    names::DELETE_FOUND_TOPIC_ANNOTATION
                );
                ctx.event(os, EventType::Normal, "FoundTopic", "Reconcile", note)
                    .await;
            }
            claim
        }
        // Ours; a foreign claim never gets here (`observe` reports the conflict).
        _ => seen
            .claim
            .clone()
            .unwrap_or_else(|| TopicClaim::new(spec, &seen.cluster_id, Origin::Created)),
    };
    Ok(Some(claim))
}

/// The Kafka writers: the services' identity Secrets, then the topic with their users and ACLs. Returns
/// the topic step (`None` when the brokers or the identity Secrets could not be read) and the identity
/// Secrets' hashes.
#[tracing::instrument(skip_all)]
async fn kafka(
    ctx: &Context,
    os: &OrderSystem,
    plan: &Plan,
    world: &World,
) -> (
    Option<Result<TopicObserved, TopicFailure>>,
    BTreeMap<Service, String>,
) {
    // The identity Secrets come from Kubernetes alone, so their hashes reach the pod templates whatever
    // the broker does. Unread, they are reported from `World`.
    let Some(Ok(existing)) = &world.kafka_secrets else {
        return (None, BTreeMap::new());
    };
    let identities = kafka::identities::identities(&ctx.client, &plan.spec, existing).await;
    let hashes = match &identities {
        Ok(identities) => identities
            .iter()
            .map(|i| (i.service, i.secret_hash.clone()))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    if let (Some(Ok(_)), Err(message)) = (&world.kafka, &world.recorded_topic_id) {
        return (Some(Err(TopicFailure::Unconfirmed(message.clone()))), hashes);
    }
    let topic = match (&world.kafka, &plan.gate, identities) {
        (Some(Ok(_)), Gate::Unknown(message), _) => Some(Err(TopicFailure::Undecided(message.clone()))),
        (Some(Ok(_)), _, Err(error)) => Some(Err(TopicFailure::Kafka(error.into()))),
        (Some(Ok(seen)), _, Ok(identities)) => Some(
            ensure_topic(ctx, os, plan, world, seen, existing, &identities)
                .await
                .map_err(TopicFailure::Kafka),
        ),
        _ => None,
    };
    (topic, hashes)
}

/// Brings the topic in line with the plan's, then the services' users and ACLs, which belong to the
/// topic step: their pods wait for both. On failure also the TLS or authentication failure librdkafka
/// reported meanwhile, if any.
async fn ensure_topic(
    ctx: &Context,
    os: &OrderSystem,
    plan: &Plan,
    world: &World,
    seen: &KafkaSeen,
    existing: &secrets::ByService,
    identities: &[kafka::identities::Identity],
) -> Result<TopicObserved, KafkaFailure> {
    let spec = &plan.spec;
    let recorded = os.status.as_ref().and_then(|s| s.topic.as_ref());
    // Keys we managed before come from our own status, so a key removed from the spec is reset.
    let previously: BTreeSet<String> = recorded
        .map(|t| t.managed_configs.keys().cloned().collect())
        .unwrap_or_default();
    let acknowledged = os.annotations().get(names::RECREATE_TOPIC_ANNOTATION);
    let known_id = observe::recorded_topic_id(os)
        .or_else(|| world.recorded_topic_id.clone().ok().flatten())
        .filter(|id| acknowledged != Some(id));
    let admin = &seen.admin;
    let claim = claim_topic(ctx, os, spec, seen).await?;
    // The Kafka writers' one look at the lease, right before their admin calls (the claim above is a
    // Kubernetes write, fenced by the client).
    if !ctx.may_write() {
        return Err(KafkaFailure::from(kafka::Error::NotLeader));
    }
    let mut result = kafka::ensure_described_topic(
        admin,
        seen.topic.clone(),
        &plan.topic,
        &previously,
        known_id.as_deref(),
        spec.paused,
    )
    .await;
    if let (Ok(_), Some(mechanism), false) = (&result, spec.kafka_security.scram(), spec.paused)
        && let Err(error) =
            kafka::identities::ensure(&ctx.client, admin, spec, mechanism, identities, &ctx.metrics).await
    {
        result = Err(error);
    }
    if let Ok(TopicObserved { created: true, .. }) = &result {
        info!(topic = %spec.topic.name, "created the topic: this resource recorded none");
        if let Some(claim) = claim.filter(|c| c.origin == Origin::Found) {
            let created = TopicClaim {
                origin: Origin::Created,
                ..claim
            };
            if let Err(source) = ctx.claims().replace(&created).await {
                result = Err(kafka::Error::Claim {
                    topic: spec.topic.name.clone(),
                    source,
                });
            }
        }
    }
    if let Ok(TopicObserved {
        status: Some(status), ..
    }) = &mut result
    {
        status.cluster_id = Some(seen.cluster_id.clone());
    }
    // Read either way: after a success an earlier failure is history, not news.
    let connection =
        ctx.kafka
            .connection_failure(&spec.bootstrap_servers, &seen.security, admin, result.is_ok());
    // With PLAIN, or SCRAM with provided credentials, the user provides them, and the pods wait for their
    // Secrets: a Kubernetes matter, after the broker was reached.
    if let (Ok(_), true, false) = (&result, spec.kafka_security.provided_credentials(), spec.paused)
        && let Err(error) = kafka::plain::check_service_secrets(spec, existing)
    {
        result = Err(error);
    }
    result.map_err(|error| KafkaFailure { error, connection })
}
