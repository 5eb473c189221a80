//! Wires the reconciler into a kube-runtime `Controller`: which objects are watched (OrderSystems by
//! generation, annotations, finalizers and deletion; owned Deployments and Services by label), how
//! often everything is looked at again, and the readiness signal once the cache has synced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service as KubeService;
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::utils::{Predicate, WatchStreamExt, predicates};
use kube::runtime::{Controller, watcher};
use tracing::{info, warn};

use super::{Context, error_policy, reconcile};
use crate::crd::OrderSystem;
use crate::metrics::Metrics;
use crate::names;

/// How often readiness asks whether the OrderSystem cache has synced.
const READINESS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the controller until shutdown (SIGTERM or ctrl-c). `namespace` limits it to one namespace.
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
    let owned_api = |c: &kube::Client| -> (Api<Deployment>, Api<KubeService>) {
        match &namespace {
            Some(ns) => (Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns)),
            None => (Api::all(c.clone()), Api::all(c.clone())),
        }
    };
    let (deployments, services) = owned_api(&client);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::FIELD_MANAGER.into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Context::new(client.clone(), recorder, metrics, reader.clone()));
    let readiness = reader.clone();
    tokio::spawn(async move {
        // The store's readiness signal wakes only the waiter that polled it last, and the Controller below
        // waits on it too: so ask again every second instead of waiting once (a single wait here never
        // woke, and /readyz stayed false forever).
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
    });
    Controller::for_stream(stream, reader)
        .owns(deployments, owned.clone())
        .owns(services, owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "controller stream error");
            }
        })
        .await;
}
