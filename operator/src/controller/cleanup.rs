//! cleanup: what the finalizer does when an `OrderSystem` is deleted. Workloads go with their owner
//! references. With `Retain` nothing outside Kubernetes is touched, so the finalizer is released even
//! when Kafka or Postgres is unreachable. With `Delete` the services' SCRAM users and exactly the ACLs
//! granted to them, the topic when this resource's claim says it created it (`kafka::claim`), and the
//! schemas and roles recorded for it are removed; until that succeeded the finalizer stays and the
//! cleanup is retried with backoff. A resource in conflict never deletes the winner's topic (its users
//! and ACLs name only itself, so they go either way). When a
//! Secret needed to reach Kafka or Postgres is gone (a namespace being deleted removes them too), that
//! part is kept with a `CleanupSkipped` Warning rather than blocking the deletion forever; so is all of it
//! when the spec was edited into an invalid one, with the topic and schemas its status recorded named.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::Error;
use super::kafka::claim::{Standing, TopicClaim};
use super::validate::{self, ValidSpec};
use super::{kafka, observe, postgres, rotation};
use crate::crd::{DeletionPolicy, OrderSystem};
use crate::names;

pub async fn cleanup(os: &OrderSystem, ctx: &Context) -> Result<Action, Error> {
    ctx.metrics
        .forget(&os.namespace().unwrap_or_default(), &os.name_any());
    ctx.applied
        .forget_owner(&os.namespace().unwrap_or_default(), &os.name_any());
    let spec = match validate::validate_with(os, &ctx.images) {
        Ok(spec) => spec,
        Err(invalid) => {
            // Whatever is wrong may be where Kafka and PostgreSQL are: deleting on a guess could reach
            // the wrong cluster. What the resource created is in its status; say what is kept.
            if os.spec.deletion_policy == DeletionPolicy::Delete {
                let note = invalid_spec_note(os, &invalid);
                ctx.event(os, EventType::Warning, "CleanupSkipped", "Delete", note)
                    .await;
            }
            return Ok(Action::await_change());
        }
    };
    if !ctx.may_write() {
        return Err(Error::NotLeader);
    }
    let (reason, note) = match spec.deletion_policy {
        DeletionPolicy::Retain => ("Retained", "are kept (deletionPolicy Retain)"),
        DeletionPolicy::Delete => {
            delete_from_kafka(os, ctx, &spec).await?;
            delete_from_postgres(os, ctx, &spec).await?;
            ("Deleted", "were deleted (deletionPolicy Delete)")
        }
    };
    let note = format!("{} {note}", external(&spec));
    ctx.event(os, EventType::Normal, reason, "Delete", note).await;
    Ok(Action::await_change())
}

/// With SCRAM the services' users and ACLs, and the topic when this resource's claim says it may go.
async fn delete_from_kafka(os: &OrderSystem, ctx: &Context, spec: &ValidSpec) -> Result<(), Error> {
    match observe::kafka_admin(ctx, spec).await {
        Ok((admin, _)) => {
            // Access goes first: the services' pods still run until the garbage collector removes them.
            if spec.kafka_security.scram().is_some() {
                kafka::identities::delete(&admin, spec, &ctx.metrics).await?;
            }
            delete_claimed_topic(os, ctx, spec, &admin).await?;
        }
        // A CA or credentials Secret deleted first (as a namespace deletion does) can never come back
        // through this resource: keep what is in Kafka and say so, as for Postgres.
        Err(kafka::Error::ReadSecret {
            name,
            source: kube::Error::Api(status),
        }) if status.code == 404 => {
            let note = format!("Kafka Secret {name} is gone: {} are kept", kafka_part(spec));
            ctx.event(os, EventType::Warning, "CleanupSkipped", "Delete", note)
                .await;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Deletes the topic when this resource's claim on it says it created it (or the annotation asks for a
/// topic it found), then the claim. A topic without a claim was never written by this resource; one
/// claimed by another resource is theirs.
async fn delete_claimed_topic(
    os: &OrderSystem,
    ctx: &Context,
    spec: &ValidSpec,
    admin: &std::sync::Arc<kafka::Admin>,
) -> Result<(), Error> {
    let topic = &spec.topic.name;
    let cluster_id = kafka::cluster_id(admin).await?;
    let claims = ctx.claims();
    let claim_error = |source| kafka::Error::Claim {
        topic: topic.clone(),
        source,
    };
    let claim = claims.read(&cluster_id, topic).await.map_err(claim_error)?;
    let Some(claim) = claim else {
        return Ok(());
    };
    if matches!(TopicClaim::standing(Some(&claim), spec), Standing::Foreign(_)) {
        return Ok(());
    }
    let delete_found = os
        .annotations()
        .get(names::DELETE_FOUND_TOPIC_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    if claim.deletes_topic(spec, delete_found) {
        kafka::delete_topic(admin, topic).await?;
    } else {
        let note = format!(
            "Topic {topic} existed before this resource claimed it and is kept; to delete it with the \
             resource, annotate it with {}=true before deleting it",
            names::DELETE_FOUND_TOPIC_ANNOTATION
        );
        ctx.event(os, EventType::Normal, "TopicKept", "Delete", note)
            .await;
    }
    claims.release(&claim).await.map_err(claim_error)?;
    Ok(())
}

/// The schemas and roles carrying this resource's uid, and the alternate logins.
async fn delete_from_postgres(os: &OrderSystem, ctx: &Context, spec: &ValidSpec) -> Result<(), Error> {
    match postgres::read_connection(&ctx.client, spec).await {
        Ok(admin) => {
            postgres::drop_all(&admin, spec).await?;
            rotation::drop_alternates(&admin, spec).await?;
        }
        // Without credentials the schemas cannot be dropped, and waiting would block the deletion of the
        // namespace (which is what usually removed the Secret first): keep them and say so.
        Err(postgres::Error::ReadAdminSecret {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 404 => {
            let note = format!(
                "admin Secret {} is gone: schemas and roles are kept",
                spec.admin_secret
            );
            ctx.event(os, EventType::Warning, "CleanupSkipped", "Delete", note)
                .await;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Why a `Delete` resource with an invalid spec deletes nothing, and what it leaves, from its status.
fn invalid_spec_note(os: &OrderSystem, invalid: &validate::InvalidSpec) -> String {
    let status = os.status.clone().unwrap_or_default();
    let mut kept = Vec::new();
    if let Some(topic) = &status.topic {
        kept.push(format!("topic {}", topic.name));
    }
    if !status.schemas.is_empty() {
        let schemas: Vec<&str> = status.schemas.iter().map(|s| s.schema.as_str()).collect();
        kept.push(format!("schemas and roles {}", schemas.join(", ")));
    }
    let kept = match kept.is_empty() {
        true => "Its status records no topic or schema it created.".to_string(),
        false => format!(
            "Kept: {}; delete them by hand if they are no longer needed.",
            kept.join(" and ")
        ),
    };
    format!(
        "The spec is invalid ({invalid}), and nothing outside Kubernetes is deleted on a spec that does \
         not validate. {kept}"
    )
}

/// What the resource owns in Kafka, for the Events.
fn kafka_part(spec: &ValidSpec) -> String {
    if spec.kafka_security.scram().is_some() {
        format!("topic {} and the services' Kafka users and ACLs", spec.topic.name)
    } else {
        format!("topic {}", spec.topic.name)
    }
}

/// What the resource owns outside Kubernetes, for the Events.
fn external(spec: &ValidSpec) -> String {
    if spec.kafka_security.scram().is_some() {
        format!(
            "topic {}, the services' Kafka users and ACLs, and the schemas",
            spec.topic.name
        )
    } else {
        format!("topic {} and the schemas", spec.topic.name)
    }
}
