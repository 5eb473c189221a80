//! Wires the reconciler into a kube-runtime `Controller`: which objects are watched (OrderSystems by
//! generation, annotations, finalizers and deletion; every kind of object it owns by label, metadata
//! only), how often everything is looked at again, and the readiness signal once the cache has synced.
//!
//! The owned kinds are the Deployments, Services, ServiceAccounts, PodDisruptionBudgets and the services'
//! Secrets (database and Kafka identity). Each is created with the managed-by label and an owner
//! reference to its `OrderSystem`, so an edit or a deletion of any of them maps back to that resource and
//! reconciles it at once, instead of waiting for the periodic requeue. The watches ask for metadata only
//! (`PartialObjectMeta`): a Secret's data never reaches this process's cache, and the labelled Secrets are
//! the only ones listed at all (the admin, CA and credential Secrets a spec names are read by name). The
//! Services', ServiceAccounts' and PDBs' metadata is kept in stores too (without managed fields): their
//! resourceVersions tell a look that a child is untouched since its last apply (`controller::applied`).
//!
//! Every watch backs off on its own. The `Controller` would also put one joint backoff over all of
//! them, and while it sleeps no watch is polled: after an API-server restart the watches' refused
//! connections and `410 Expired` answers pushed that joint sleep past 30 s and left the OrderSystem
//! relist unread behind it, so a spec change went unseen for minutes. The joint backoff is therefore
//! switched off ([`NoJointBackoff`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service as KubeService, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::utils::{Backoff, Predicate, WatchStreamExt, predicates};
use kube::runtime::{Controller, controller, watcher};
use tracing::{debug, info, warn};

use crate::controller::applied::Watched;
use crate::controller::{Context, error_policy, reconcile};
use crate::crd::OrderSystem;
use crate::leader::{self, Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::names;

/// What `run_elected` runs.
pub struct Elected {
    /// Watch only this namespace; all when `None`.
    pub namespace: Option<String>,
    /// `--image-registry` and `--default-image-tag`.
    pub images: names::ServiceImages,
    /// Leader election; `None`: this replica reconciles alone.
    pub lease: Option<LeaseConfig>,
}

/// Why `run_elected` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown (SIGTERM or ctrl-c).
    Shutdown,
    /// The lease was lost: the caller must stop, as another replica may reconcile from now on.
    LostLease,
}

/// Runs the controller, with leader election when `elected.lease` is set: a standby counts as ready (a
/// rollout or `helm --wait` must not wait for it to lead), waits for the lease, and only then starts the
/// controller; the controller's writes stop at the lease's deadline and this returns `LostLease`. The
/// `leader` metric says which replica reconciles.
pub async fn run_elected(
    client: kube::Client,
    elected: Elected,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Ended {
    let Elected {
        namespace,
        images,
        lease,
    } = elected;
    let Some(lease) = lease else {
        metrics.leader.set(1);
        let client = leader::gated_client(client, None, &leader::user_agent(None));
        run(client, namespace, images, None, metrics, ready).await;
        return Ended::Shutdown;
    };
    ready.store(true, Ordering::Relaxed);
    metrics.leader.set(0);
    let user_agent = leader::user_agent(Some(&lease.identity));
    // The election writes the lease itself, so its client has no write gate.
    let (mut leadership, election) =
        leader::elect(leader::identified_client(client.clone(), &user_agent), lease);
    // The election ends with this function, as it would with the process.
    let _stop_election = AbortOnDrop(election);
    leadership.acquired().await;
    metrics.leader.set(1);
    // Every write of the controller goes through the gate, which refuses it once the lease is lost.
    let client = leader::gated_client(client, Some(leadership.clone()), &user_agent);
    let controller = run(
        client,
        namespace,
        images,
        Some(leadership.clone()),
        metrics.clone(),
        ready,
    );
    let ended = tokio::select! {
        () = controller => Ended::Shutdown,
        () = leadership.lost() => Ended::LostLease,
    };
    metrics.leader.set(0);
    ended
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often readiness asks whether the OrderSystem cache has synced.
const READINESS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the controller until shutdown (SIGTERM or ctrl-c). `namespace` limits it to one namespace;
/// `images` names the service images (`--image-registry`, and `--default-image-tag` for a service deployed
/// for the first time without an image of its own); with leader election, `leadership` says when this replica may write. Long on
/// purpose: the watches, their filters and the `Controller` wired in one
/// place.
pub async fn run(
    client: kube::Client,
    namespace: Option<String>,
    images: names::ServiceImages,
    leadership: Option<Leadership>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) {
    let api = |c: &kube::Client| -> Api<OrderSystem> {
        match &namespace {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    };
    let (reader, writer) = reflector::store::<OrderSystem>();
    // Generation alone would miss annotation-only changes and the start of deletion.
    let predicate = predicates::generation
        .combine(predicates::annotations)
        .combine(predicates::finalizers)
        .combine(|os: &OrderSystem| Some(u64::from(os.metadata.deletion_timestamp.is_some())));
    let stream = watcher(api(&client), watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicate, Default::default());
    let owned =
        watcher::Config::default().labels(&format!("{}={}", names::MANAGED_BY_LABEL, names::FIELD_MANAGER));
    // Metadata only (`PartialObjectMeta`), as `Controller::owns` would watch them; each with its own
    // backoff (see the module comment).
    let deployments = watch_owned::<Deployment>(&client, namespace.as_deref(), &owned).touched_objects();
    // The Services', ServiceAccounts' and PDBs' metadata is also kept, for their resourceVersions: an
    // unchanged one is not applied again (`controller::applied`).
    let (services_seen, services_writer) = reflector::store();
    let services = watch_owned::<KubeService>(&client, namespace.as_deref(), &owned)
        .reflect(services_writer)
        .touched_objects();
    let (service_accounts_seen, service_accounts_writer) = reflector::store();
    let service_accounts = watch_owned::<ServiceAccount>(&client, namespace.as_deref(), &owned)
        .reflect(service_accounts_writer)
        .touched_objects();
    let (pdbs_seen, pdbs_writer) = reflector::store();
    let pdbs = watch_owned::<PodDisruptionBudget>(&client, namespace.as_deref(), &owned)
        .reflect(pdbs_writer)
        .touched_objects();
    let watched = Watched {
        services: services_seen,
        service_accounts: service_accounts_seen,
        pdbs: pdbs_seen,
    };
    let secrets = watch_owned::<Secret>(&client, namespace.as_deref(), &owned).touched_objects();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::FIELD_MANAGER.into(),
            instance: None,
        },
    );
    // Topic claims live in the watched namespace, or in all-namespaces mode in the operator's own (the
    // namespace of its ServiceAccount, as the in-cluster configuration reads it).
    let claims_namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let ctx = Arc::new(
        Context::new(client.clone(), recorder, metrics, claims_namespace, images)
            .with_leadership(leadership)
            .with_watched(watched),
    );
    tokio::spawn(signal_readiness(reader.clone(), ready));
    let _close_idle = AbortOnDrop(tokio::spawn(close_idle_connections(ctx.clone())).abort_handle());
    Controller::for_stream(stream, reader)
        .owns_stream(deployments)
        .owns_stream(services)
        .owns_stream(service_accounts)
        .owns_stream(pdbs)
        .owns_stream(secrets)
        .trigger_backoff(NoJointBackoff)
        .shutdown_on_signal()
        // Inside the fence, PostgreSQL's and Kafka's writers can tell whether the lease still holds.
        .run(
            |os, ctx| leader::fence(ctx.leadership(), reconcile(os, ctx)),
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // An owned object's event for an OrderSystem already gone: its children are deleted by the
                // garbage collector after it, and each deletion is such an event.
                Err(error @ controller::Error::ObjectNotFound(_)) => {
                    debug!(%error, "event for a deleted OrderSystem");
                }
                Err(error) => warn!(%error, "controller stream error"),
            }
        })
        .await;
}

/// The metadata of the objects of kind `K` that match `config` (the managed-by label), in `namespace` or
/// in all namespaces: every event, without the objects' managed fields (nothing here reads them, and a
/// store of them would hold kilobytes per object), for a store and `owns_stream`.
fn watch_owned<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> impl futures::Stream<Item = Result<watcher::Event<PartialObjectMeta<K>>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    watcher(api, config.clone())
        .default_backoff()
        .modify(|object| object.metadata.managed_fields = None)
}

/// Closes the PostgreSQL connections kept longer than they may idle, every half of that time.
async fn close_idle_connections(ctx: Arc<Context>) {
    let mut every = tokio::time::interval(crate::controller::postgres::reuse::MAX_IDLE / 2);
    loop {
        every.tick().await;
        ctx.postgres.close_expired().await;
    }
}

/// Sets `ready` once the OrderSystem cache has synced. The store's readiness signal wakes only the waiter
/// that polled it last, and the Controller waits on it too: so ask again every second instead of waiting
/// once (a single wait here never woke, and /readyz stayed false forever).
async fn signal_readiness(readiness: reflector::Store<OrderSystem>, ready: Arc<AtomicBool>) {
    loop {
        match tokio::time::timeout(READINESS_POLL, readiness.wait_until_ready()).await {
            Ok(Ok(())) => {
                ready.store(true, Ordering::Relaxed);
                info!("OrderSystem cache synced");
                return;
            }
            Ok(Err(_)) => return,
            Err(_) => continue,
        }
    }
}

/// The `Controller`'s joint backoff over all watches, switched off: each watch has its own
/// (`default_backoff`), and a joint sleep would stall the healthy watches with the failing one.
struct NoJointBackoff;

impl Iterator for NoJointBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        Some(std::time::Duration::ZERO)
    }
}

impl Backoff for NoJointBackoff {
    fn reset(&mut self) {}
}
