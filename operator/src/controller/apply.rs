//! apply: writes the built objects to Kubernetes with server-side apply under the one field manager,
//! removes the ones no longer wanted (PDBs, Ingresses, HTTPRoutes, NetworkPolicies), and says what the
//! Deployments report (`states`). Touches only objects named by `build` in the resource's namespace.
//! A Deployment, Service, ServiceAccount or PodDisruptionBudget that is as this replica last applied it,
//! and untouched since, is not applied again (`applied`): a look at rest sends no apply.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service as KubeService, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::applied::{self, Child};
use super::build::{Desired, Removable};
use super::context::Context;
use super::validate::ValidSpec;
use crate::metrics::KindLabels;
use crate::names::{self, Service};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply {kind} {name}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the cluster does not serve {kind} ({api_version}): install the Gateway API CRDs, or remove spec.expose.httpRoute"
    )]
    NotServed {
        kind: &'static str,
        api_version: &'static str,
    },
    #[error("failed to list Deployments")]
    ListDeployments {
        #[source]
        source: kube::Error,
    },
}

/// One Deployment as the cluster reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentState {
    pub service: Service,
    pub desired: i32,
    pub ready: i32,
    pub available: bool,
    pub image: String,
    /// The Deployment controller has caught up with the latest template.
    pub rolled_out: bool,
}

/// The unwanted children this replica deleted (or found absent) and has not applied since, by namespace,
/// kind and name. Their DELETE is not sent again on every reconcile: without this, each resource at rest
/// asked for every optional child it does not use, a 404 each time, which grows with the resources. The
/// set lives in the controller's context, as long as one term of leadership (a replica that loses the
/// lease exits), so a new leader or a restarted replica deletes each once more; one applied again is
/// forgotten, so a later removal deletes it.
#[derive(Debug, Default)]
pub struct Deleted(std::sync::Mutex<std::collections::HashSet<(String, Removable, String)>>);

impl Deleted {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, Removable, String)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, namespace: &str, kind: Removable, name: &str) -> bool {
        self.set()
            .contains(&(namespace.to_string(), kind, name.to_string()))
    }

    fn insert(&self, namespace: &str, kind: Removable, name: &str) {
        self.set().insert((namespace.to_string(), kind, name.to_string()));
    }

    fn forget(&self, namespace: &str, kind: Removable, name: &str) {
        self.set()
            .remove(&(namespace.to_string(), kind, name.to_string()));
    }
}

/// Applies everything in `desired` and returns the Deployments as the API server answered (status
/// included); deletes what the spec no longer wants, unless this replica deleted it before
/// (`ctx.deleted`). A child as this replica last applied it and untouched since is not applied again
/// (`applied`); for such a Deployment its copy in `live` (as `observe` listed it, just before) is
/// returned. Destructured without `..`, so a new kind of object in `Desired` fails to compile here
/// instead of silently never being applied.
#[tracing::instrument(skip_all)]
pub async fn apply(
    ctx: &Context,
    spec: &ValidSpec,
    desired: &Desired,
    live: &[Deployment],
) -> Result<Vec<Deployment>, Error> {
    let (client, deleted, metrics) = (&ctx.client, &ctx.deleted, &ctx.metrics);
    let ns = spec.namespace.as_str();
    let Desired {
        service_accounts,
        services,
        deployments,
        pdbs,
        ingresses,
        http_routes,
        network_policies,
        to_delete,
        waiting: _,
    } = desired;
    let watched = ctx.watched.as_ref();
    for object in service_accounts {
        let live = watched.and_then(|w| applied::version_in(&w.service_accounts, ns, &object.name_any()));
        apply_unless_unchanged::<ServiceAccount>(ctx, spec, object, "ServiceAccount", live).await?;
    }
    for object in services {
        let live = watched.and_then(|w| applied::version_in(&w.services, ns, &object.name_any()));
        apply_unless_unchanged::<KubeService>(ctx, spec, object, "Service", live).await?;
    }
    for object in pdbs {
        deleted.forget(ns, Removable::PodDisruptionBudget, &object.name_any());
        let live = watched.and_then(|w| applied::version_in(&w.pdbs, ns, &object.name_any()));
        apply_unless_unchanged::<PodDisruptionBudget>(ctx, spec, object, "PodDisruptionBudget", live).await?;
    }
    for object in network_policies {
        deleted.forget(ns, Removable::NetworkPolicy, &object.name_any());
        apply_one::<NetworkPolicy>(client, &spec.namespace, object, "NetworkPolicy").await?;
    }
    // Workloads before the ways in: a route the cluster cannot store must not hold back a roll.
    let mut applied = Vec::with_capacity(deployments.len());
    for object in deployments {
        let name = object.name_any();
        let hash = applied::hash(object);
        let current = live.iter().find(|d| d.metadata.name.as_ref() == Some(&name));
        if let Some(current) = current
            && skip(
                ctx,
                spec,
                "Deployment",
                &name,
                hash,
                current.metadata.resource_version.as_deref(),
            )
        {
            applied.push(current.clone());
            continue;
        }
        // No replicas: an external autoscaler's (`build` left the field out in external mode).
        if object.spec.as_ref().is_some_and(|s| s.replicas.is_none()) {
            hand_over_replicas(client, &spec.namespace, &name).await?;
        }
        applied.push(apply_and_record(ctx, spec, object, "Deployment", hash).await?);
    }
    for (kind, name) in to_delete {
        if deleted.contains(ns, *kind, name) {
            continue;
        }
        metrics
            .child_deletions
            .get_or_create(&KindLabels {
                kind: kind.as_str().to_string(),
            })
            .inc();
        delete(client, &spec.namespace, *kind, name).await?;
        deleted.insert(ns, *kind, name);
    }
    for object in ingresses {
        deleted.forget(ns, Removable::Ingress, &object.name_any());
        apply_one::<Ingress>(client, &spec.namespace, object, "Ingress").await?;
    }
    let routes = http_routes_api(client, &spec.namespace);
    for object in http_routes {
        let name = object.name_any();
        deleted.forget(ns, Removable::HttpRoute, &name);
        let params = PatchParams::apply(names::FIELD_MANAGER).force();
        match routes.patch(&name, &params, &Patch::Apply(object)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(Error::NotServed {
                    kind: "HTTPRoute",
                    api_version: HTTP_ROUTE_API_VERSION,
                });
            }
            Err(source) => {
                return Err(Error::Apply {
                    kind: "HTTPRoute",
                    name,
                    source,
                });
            }
        }
    }
    Ok(applied)
}

/// The memo's key of the child `name` of kind `kind` of the resource of `spec`.
fn child<'a>(spec: &'a ValidSpec, kind: &'static str, name: &'a str) -> Child<'a> {
    Child {
        namespace: &spec.namespace,
        owner: &spec.name,
        kind,
        name,
    }
}

/// Counts an apply sent (`sent`) or skipped as unchanged.
fn count(metrics: &crate::metrics::Metrics, kind: &str, sent: bool) {
    let family = if sent {
        &metrics.child_applies
    } else {
        &metrics.child_applies_skipped
    };
    family
        .get_or_create(&KindLabels {
            kind: kind.to_string(),
        })
        .inc();
}

/// What `apply_one` writes: a namespaced built-in kind.
trait Applicable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
}

impl<K> Applicable for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
{
}

/// Applies `object` unless it is as this replica last applied it and the child is still at the version
/// that apply returned (`live`: its resourceVersion as the watches saw it, `None` when unknown).
async fn apply_unless_unchanged<K: Applicable>(
    ctx: &Context,
    spec: &ValidSpec,
    object: &K,
    kind: &'static str,
    live: Option<String>,
) -> Result<(), Error> {
    let hash = applied::hash(object);
    if !skip(ctx, spec, kind, &object.name_any(), hash, live.as_deref()) {
        apply_and_record(ctx, spec, object, kind, hash).await?;
    }
    Ok(())
}

/// Whether the child `name` is as this replica last applied it (`hash`, the hash of the object to apply
/// now) and still at the version that apply returned (`live`); a skip is counted.
fn skip(
    ctx: &Context,
    spec: &ValidSpec,
    kind: &'static str,
    name: &str,
    hash: Option<u64>,
    live: Option<&str>,
) -> bool {
    let unchanged = hash.is_some_and(|hash| ctx.applied.is_unchanged(&child(spec, kind, name), hash, live));
    if unchanged {
        count(&ctx.metrics, kind, false);
    }
    unchanged
}

/// Applies `object` and records its `hash` with the version the API server answered.
async fn apply_and_record<K: Applicable>(
    ctx: &Context,
    spec: &ValidSpec,
    object: &K,
    kind: &'static str,
    hash: Option<u64>,
) -> Result<K, Error> {
    count(&ctx.metrics, kind, true);
    let answer = apply_one::<K>(&ctx.client, &spec.namespace, object, kind).await?;
    if let Some(hash) = hash {
        let name = object.name_any();
        ctx.applied.record(
            &child(spec, kind, &name),
            hash,
            answer.meta().resource_version.clone(),
        );
    }
    Ok(answer)
}

async fn apply_one<K: Applicable>(
    client: &kube::Client,
    namespace: &str,
    object: &K,
    kind: &'static str,
) -> Result<K, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    // force: the operator is the only writer of these fields; a manual edit is drift to correct.
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply { kind, name, source })
}

/// The Gateway API version of the HTTPRoutes.
const HTTP_ROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1";

fn http_routes_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
}

/// Deletes the `kind` named `name`, if it is there. An HTTPRoute in a cluster without the Gateway API
/// is not there either.
async fn delete(client: &kube::Client, namespace: &str, kind: Removable, name: &str) -> Result<(), Error> {
    let result = match kind {
        Removable::PodDisruptionBudget => {
            delete_in(
                Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace),
                name,
            )
            .await
        }
        Removable::Ingress => delete_in(Api::<Ingress>::namespaced(client.clone(), namespace), name).await,
        Removable::NetworkPolicy => {
            delete_in(Api::<NetworkPolicy>::namespaced(client.clone(), namespace), name).await
        }
        Removable::HttpRoute => delete_in(http_routes_api(client, namespace), name).await,
    };
    result.map_err(|source| Error::Delete {
        kind: kind.as_str(),
        name: name.to_string(),
        source,
    })
}

/// Deletes `name` through `api`; one that is not there is no error.
async fn delete_in<K>(api: Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

/// The field manager that holds a Deployment's `replicas` between the operator and an external autoscaler.
pub const REPLICAS_HANDOVER_MANAGER: &str = "ordersystem-operator-replicas-handover";

/// Hands `replicas` of the Deployment `name` over to an external autoscaler without ever changing it, as
/// the Kubernetes server-side apply documentation describes ("Transferring ownership"). An apply that
/// leaves out a field its manager owned removes it, and `replicas` then falls back to its default of 1
/// (the service would lose its pods until the autoscaler scales it up again). So while the operator still
/// owns the field, a second manager first applies `replicas` alone with the value it has: the field is
/// then co-owned, and the operator's next apply without it only gives up its share. The second manager
/// never applies again; the autoscaler's first write (an update of the scale subresource) takes the field
/// from it. Nothing happens for a new Deployment (it starts with 1) or once the operator has let go.
async fn hand_over_replicas(client: &kube::Client, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let error = |source| Error::Apply {
        kind: "Deployment",
        name: name.to_string(),
        source,
    };
    let Some(live) = api.get_opt(name).await.map_err(error)? else {
        return Ok(());
    };
    if !applies_replicas(&live, names::FIELD_MANAGER) {
        return Ok(());
    }
    let replicas = live.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let body = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    });
    // Not forced: the value is the live one, so the only conflict is an autoscaler that changed it since
    // the read, and its write already took the field from the operator.
    match api
        .patch(
            name,
            &PatchParams::apply(REPLICAS_HANDOVER_MANAGER),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(error(source)),
    }
}

/// Whether `manager`'s server-side apply owns `spec.replicas` of `deployment`.
pub fn applies_replicas(deployment: &Deployment, manager: &str) -> bool {
    deployment.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.pointer("/f:spec/f:replicas").is_some())
    })
}

/// The states of `deployments` that belong to one of the spec's services.
pub fn states(spec: &ValidSpec, deployments: &[Deployment]) -> Vec<DeploymentState> {
    deployments
        .iter()
        .filter_map(|deployment| {
            let plan = spec
                .services
                .iter()
                .find(|p| Some(&p.child_name) == deployment.metadata.name.as_ref())?;
            Some(state(plan.service, deployment))
        })
        .collect()
}

/// What one Deployment reports.
fn state(service: Service, deployment: &Deployment) -> DeploymentState {
    let dspec = deployment.spec.as_ref();
    let status = deployment.status.as_ref();
    let desired = dspec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let available = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Available" && c.status == "True"));
    let observed_generation = status.and_then(|s| s.observed_generation);
    let image = dspec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    DeploymentState {
        service,
        desired,
        ready,
        available: available && ready >= desired,
        image,
        rolled_out: observed_generation >= deployment.metadata.generation && updated >= desired,
    }
}
