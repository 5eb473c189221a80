//! cleanup: what the finalizer does when an `OrderSystem` is deleted. Workloads go with their owner
//! references. With `Retain` nothing outside Kubernetes is touched, so the finalizer is released even
//! when Kafka or Postgres is unreachable. With `Delete` the topic and the schemas and roles carrying this
//! resource's uid are removed; a resource in conflict never deletes the winner's topic.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{Context, Error, backends, kafka, postgres, rotation, validate};
use crate::crd::{DeletionPolicy, OrderSystem};

pub async fn cleanup(os: &OrderSystem, ctx: &Context) -> Result<Action, Error> {
    ctx.metrics
        .remove_lag(&os.namespace().unwrap_or_default(), &os.name_any());
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
        let (admin, _) = backends::kafka_admin(ctx, &spec).await?;
        kafka::delete_topic(&admin, &spec.topic.name).await?;
    }
    match postgres::read_connection(&ctx.client, &spec).await {
        Ok(admin) => {
            postgres::drop_all(&admin, &spec).await?;
            rotation::drop_alternates(&admin, &spec).await?;
        }
        // Without credentials the schemas cannot be dropped, and waiting would block the deletion of
        // the namespace (which is what usually removed the Secret first): keep them and say so.
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
