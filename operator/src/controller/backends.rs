//! backends: runs the Kafka and Postgres steps for one valid spec, after checking that no other
//! `OrderSystem` claims the same topic. A failing backend is recorded (for status and for the retry) and
//! does not stop the other one.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;

use super::build::Observed;
use super::drain::Gate;
use super::kafka::ClientSecurity;
use super::kafka::TopicState;
use super::kafka::security::{self as kafka_security, ConnectionFailure};
use super::status::Report;
use super::validate::{ValidSpec, ValidTopic};
use super::{Context, Error, apply, kafka, lag, postgres};
use crate::crd::OrderSystem;
use crate::names;

/// What the backends did, in the shapes `build` and `status` need.
pub struct Backends {
    pub observed: Observed,
    pub report: Report,
    /// The first failure, returned after status is written so the reconcile is retried.
    pub first_error: Option<Error>,
}

pub async fn ensure(ctx: &Context, os: &OrderSystem, spec: &ValidSpec, gate: &Gate) -> Backends {
    let mut report = Report {
        paused: spec.paused,
        desired: spec
            .services
            .iter()
            .map(|p| (p.service, p.replicas, p.image.clone()))
            .collect(),
        ..Default::default()
    };
    let mut observed = Observed::default();
    let mut first_error = None;
    report.conflict = topic_conflict(ctx, os, spec);
    if report.conflict.is_some() {
        return Backends {
            observed,
            report,
            first_error,
        };
    }
    report.partitions_rejected = gate.rejected_message();
    report.draining = gate.progress_message();
    // The services' identity Secrets come from Kubernetes alone, so their hashes reach the pod
    // templates whatever the broker does.
    let identities = kafka::identities::secrets(&ctx.client, spec).await;
    if let Ok(identities) = &identities {
        observed.kafka_secret_hashes = identities
            .iter()
            .map(|i| (i.service, i.secret_hash.clone()))
            .collect();
    }
    let (mut failure, mut security) = (None, ClientSecurity::plaintext());
    let topic = match (gate, identities) {
        (Gate::Unknown(message), _) => Err(Error::Drain(message.clone())),
        (_, Err(error)) => Err(Error::from(error)),
        (_, Ok(identities)) => {
            match kafka_security::read(&ctx.client, &spec.namespace, &spec.kafka_security).await {
                Err(error) => Err(Error::from(error)),
                Ok(read) => {
                    security = read;
                    let topic = gate.topic(&spec.topic);
                    ensure_topic(ctx, os, spec, &security, &topic, &identities)
                        .await
                        .map_err(|(error, connection)| {
                            failure = connection;
                            Error::from(error)
                        })
                }
            }
        }
    };
    match topic {
        Ok(topic) => {
            observed.topic_ready = matches!(
                topic.state,
                TopicState::Ready | TopicState::MorePartitionsThanSpec { .. }
            );
            // A topic created or grown just now may not have leaders known to every client yet: its
            // lag is looked at from the next reconcile on.
            let settled = !topic.created && !topic.partitions_added;
            if let Some(partitions) = topic.status.as_ref().map(|t| t.partitions).filter(|_| settled) {
                match lag::observe_system(&ctx.kafka, os, spec, partitions, &security).await {
                    Ok(lag) => {
                        report.lag_growing = lag::growing_message(&lag, &os.spec.consumer_lag);
                        report.lag = Some(lag);
                    }
                    // The topic itself is fine: the last observed lag stays in status, the reconcile
                    // is retried with backoff.
                    Err(error) => {
                        report.lag_error = Some(super::describe_error(&error));
                        first_error = Some(Error::from(error));
                    }
                }
            }
            report.topic = Some(topic);
        }
        Err(error) => {
            let mut message = super::describe_error(&error);
            if let Error::Kafka(kafka_error) = &error {
                report.topic_error_reason = kafka_error.reason();
            }
            // librdkafka's own account of a refused handshake or login (or a refused connection) says
            // more than the timeout.
            if let Some(failure) = failure {
                report.topic_error_reason = Some(failure.kind.reason());
                message = format!("{} (then: {message})", failure.message);
            }
            report.topic_error = Some(message);
            first_error = Some(error);
        }
    }
    match ensure_postgres(ctx, spec).await {
        Ok(pg) => {
            observed.schemas_ready = pg.ready.clone();
            observed.secret_hashes = pg.secret_hashes.clone();
            report.postgres = Some(pg);
        }
        Err(error) => {
            if error.is_tls() {
                report.postgres_error_reason = Some("PostgresTlsFailed");
            }
            report.postgres_error = Some(super::describe_error(&error));
            first_error.get_or_insert(Error::from(error));
            observed.secret_hashes = postgres::existing_secret_hashes(&ctx.client, spec).await;
        }
    }
    match apply::observe_deployments(&ctx.client, spec).await {
        Ok(states) => observed.deployed = apply::deployed(&states),
        Err(error) => {
            first_error.get_or_insert(Error::from(error));
        }
    }
    Backends {
        observed,
        report,
        first_error,
    }
}

/// The operator's admin client for the spec's brokers, with the TLS and SASL settings its Secrets hold
/// (returned too, for the other clients of the same reconcile).
pub async fn kafka_admin(
    ctx: &Context,
    spec: &ValidSpec,
) -> Result<(Arc<kafka::Admin>, ClientSecurity), kafka::Error> {
    let security = kafka_security::read(&ctx.client, &spec.namespace, &spec.kafka_security).await?;
    let admin = ctx.kafka.admin_with(&spec.bootstrap_servers, &security)?;
    Ok((admin, security))
}

/// Brings the topic in line with `topic`: the spec's, with the partitions the gate allows now. On
/// failure also the TLS or authentication failure librdkafka reported meanwhile, if any.
async fn ensure_topic(
    ctx: &Context,
    os: &OrderSystem,
    spec: &ValidSpec,
    security: &ClientSecurity,
    topic: &ValidTopic,
    identities: &[kafka::identities::Identity],
) -> Result<kafka::TopicObserved, (kafka::Error, Option<ConnectionFailure>)> {
    let admin = ctx
        .kafka
        .admin_with(&spec.bootstrap_servers, security)
        .map_err(|error| (error, None))?;
    // Keys we managed before come from our own status, so a key removed from the spec is reset.
    let previously: BTreeSet<String> = os
        .status
        .as_ref()
        .and_then(|s| s.topic.as_ref())
        .map(|t| t.managed_configs.keys().cloned().collect())
        .unwrap_or_default();
    let recorded = os
        .status
        .as_ref()
        .and_then(|s| s.topic.as_ref())
        .and_then(|t| t.topic_id.clone());
    let acknowledged = os.annotations().get(names::RECREATE_TOPIC_ANNOTATION);
    let known_id = recorded.filter(|id| acknowledged != Some(id));
    let mut result = kafka::ensure_topic(&admin, topic, &previously, known_id.as_deref(), spec.paused).await;
    // The services' own users and ACLs belong to the topic step: their pods wait for both.
    if let (Ok(_), Some(mechanism), false) = (&result, spec.kafka_security.scram(), spec.paused)
        && let Err(error) =
            kafka::identities::ensure(&ctx.client, &admin, spec, mechanism, identities, &ctx.metrics).await
    {
        result = Err(error);
    }
    // Read either way: after a success an earlier failure is history, not news.
    let failure = ctx
        .kafka
        .connection_failure(&spec.bootstrap_servers, security, &admin, result.is_ok());
    // With PLAIN the user provides them, and the pods wait for their Secrets: a Kubernetes matter, after
    // the broker was reached.
    if let (Ok(_), true, false) = (&result, spec.kafka_security.plain(), spec.paused)
        && let Err(error) = kafka::plain::check_service_secrets(&ctx.client, spec).await
    {
        result = Err(error);
    }
    result.map_err(|error| (error, failure))
}

async fn ensure_postgres(
    ctx: &Context,
    spec: &ValidSpec,
) -> Result<postgres::PostgresObserved, postgres::Error> {
    let admin = postgres::read_connection(&ctx.client, spec).await?;
    postgres::ensure(&ctx.client, &admin, spec).await
}

/// Another live `OrderSystem` that claimed the same topic on the same bootstrap servers first (older, or
/// equally old with a smaller uid) wins; this one gets `Conflict`.
pub fn topic_conflict(ctx: &Context, os: &OrderSystem, spec: &ValidSpec) -> Option<String> {
    let mine = (os.creation_timestamp().map(|t| t.0), spec.uid.clone());
    ctx.store.state().iter().find_map(|other| {
        let uid = other.uid().unwrap_or_default();
        let same_topic = other.spec.kafka.topic.name == spec.topic.name
            && other.spec.kafka.bootstrap_servers == spec.bootstrap_servers;
        let theirs = (other.creation_timestamp().map(|t| t.0), uid.clone());
        (uid != spec.uid && same_topic && other.metadata.deletion_timestamp.is_none() && theirs < mine).then(
            || {
                format!(
                    "topic {} is already claimed by OrderSystem {}/{}",
                    spec.topic.name,
                    other.namespace().unwrap_or_default(),
                    other.name_any()
                )
            },
        )
    })
}
