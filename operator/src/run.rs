//! Wires the reconciler into a kube-runtime `Controller`: which objects are watched (OrderSystems by
//! generation, annotations, finalizers and deletion; owned Deployments and Services by label), how
//! often everything is looked at again, and the readiness signal once the cache has synced.
//!
//! Every watch backs off on its own. The `Controller` would also put one joint backoff over all of
//! them, and while it sleeps no watch is polled: after an API-server restart the watches' refused
//! connections and `410 Expired` answers pushed that joint sleep past 30 s and left the OrderSystem
//! relist unread behind it, so a spec change went unseen for minutes. The joint backoff is therefore
//! switched off ([`NoJointBackoff`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service as KubeService;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::utils::{Backoff, Predicate, WatchStreamExt, predicates};
use kube::runtime::{Controller, watcher};
use tracing::{info, warn};

use crate::controller::{Context, error_policy, reconcile};
use crate::crd::OrderSystem;
use crate::metrics::Metrics;
use crate::names;

/// How often readiness asks whether the OrderSystem cache has synced.
const READINESS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the controller until shutdown (SIGTERM or ctrl-c). `namespace` limits it to one namespace.
/// Long on purpose: the watches, their filters and the `Controller` wired in one place.
pub async fn run(
    client: kube::Client,
    namespace: Option<String>,
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
    // Metadata only (`PartialObjectMeta`), as `Controller::owns` would watch them.
    type Owned = (
        Api<PartialObjectMeta<Deployment>>,
        Api<PartialObjectMeta<KubeService>>,
    );
    let owned_api = |c: &kube::Client| -> Owned {
        match &namespace {
            Some(ns) => (Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns)),
            None => (Api::all(c.clone()), Api::all(c.clone())),
        }
    };
    let (deployments, services) = owned_api(&client);
    let deployments = watcher(deployments, owned.clone())
        .default_backoff()
        .touched_objects();
    let services = watcher(services, owned).default_backoff().touched_objects();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::FIELD_MANAGER.into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Context::new(client.clone(), recorder, metrics, reader.clone()));
    tokio::spawn(signal_readiness(reader.clone(), ready));
    Controller::for_stream(stream, reader)
        .owns_stream(deployments)
        .owns_stream(services)
        .trigger_backoff(NoJointBackoff)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "controller stream error");
            }
        })
        .await;
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
