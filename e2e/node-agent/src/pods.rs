//! The pods bound to this node: one watch, one worker per pod.
//!
//! The watch uses the field selector `spec.nodeName=<node>`, so the agent never sees, let alone runs,
//! pods that the scheduler placed elsewhere or has not placed yet. Each pod uid gets a worker task
//! (`pod::run`); the dispatcher forwards every change of the object and tells the worker when the object
//! is gone. After a re-list, workers whose pod is missing from the list are told it was removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::Agent;
use crate::pod::{self, PodEvent};

/// Watches this node's pods until `shutdown` resolves, then stops every pod's processes and waits.
pub async fn run(agent: Arc<Agent>, shutdown: impl std::future::Future<Output = ()>) {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let mut stream = std::pin::pin!(watcher(pods, config).default_backoff());
    let mut workers: HashMap<String, mpsc::UnboundedSender<PodEvent>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    listed.insert(uid(&pod));
                    dispatch(&agent, &mut workers, &mut tasks, pod);
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(tx) = workers.remove(&uid(&pod)) {
                        let _ = tx.send(PodEvent::Removed);
                    }
                }
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitDone)) => {
                    // Pods deleted while the watch was down never produce a Delete event.
                    workers.retain(|uid, tx| {
                        let still_there = listed.contains(uid);
                        if !still_there {
                            let _ = tx.send(PodEvent::Removed);
                        }
                        still_there
                    });
                }
                Some(Err(error)) => warn!(error = %crate::error_chain(&error), "pod watch failed, retrying"),
                None => break,
            },
        }
    }
    info!(pods = workers.len(), "shutting down: stopping pods");
    for tx in workers.values() {
        let _ = tx.send(PodEvent::Shutdown);
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends `pod` to its worker, starting one for a new uid.
fn dispatch(
    agent: &Arc<Agent>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<PodEvent>>,
    tasks: &mut JoinSet<()>,
    pod: Pod,
) {
    let pod = Arc::new(pod);
    let uid = uid(&pod);
    if let Some(tx) = workers.get(&uid) {
        // A worker that already finished (its pod is being removed) has nothing left to do.
        let _ = tx.send(PodEvent::Updated(pod));
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    workers.insert(uid, tx);
    tasks.spawn(pod::run(agent.clone(), pod, rx));
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}
