//! cleanup: what the finalizer does when an `OrderSystem` is deleted. Workloads go with their owner
//! references. With `Retain` nothing outside Kubernetes is touched, so the finalizer is released even
//! when Kafka or Postgres is unreachable. With `Delete` the topic and the schemas and roles carrying this
//! resource's uid are removed; a resource in conflict never deletes the winner's topic.

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{Context, Error, backends, kafka, postgres, validate};
use crate::crd::{DeletionPolicy, OrderSystem};

pub async fn cleanup(os: &OrderSystem, ctx: &Context) -> Result<Action, Error> {
    // An invalid spec never created anything outside Kubernetes.
    let Ok(spec) = validate::validate(os) else {
        return Ok(Action::await_change());
    };
    if spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            os,
            EventType::Normal,
            "Retained",
            "Delete",
            format!(
                "topic {} and the schemas are kept (deletionPolicy Retain)",
                spec.topic.name
            ),
        )
        .await;
        return Ok(Action::await_change());
    }
    if backends::topic_conflict(ctx, os, &spec).is_none() {
        let admin = ctx.kafka.admin(&spec.bootstrap_servers)?;
        kafka::delete_topic(&admin, &spec.topic.name).await?;
    }
    let admin = postgres::read_admin(&ctx.client, &spec.namespace, &spec.admin_secret).await?;
    postgres::drop_all(&admin, &spec).await?;
    ctx.event(
        os,
        EventType::Normal,
        "Deleted",
        "Delete",
        format!(
            "topic {} and the schemas were deleted (deletionPolicy Delete)",
            spec.topic.name
        ),
    )
    .await;
    Ok(Action::await_change())
}
