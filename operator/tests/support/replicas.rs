//! Watching a Deployment's replicas from a test: every `spec.replicas` its watch delivers, and who owns
//! the field. Included (`#[path]`) by the tests that check that scaling never overshoots or dips.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher;
use ordersystem_e2e::wait;

/// Every `spec.replicas` of the Deployment `name`, in order, as its watch delivers them, until dropped.
pub struct ReplicaLog {
    seen: Arc<Mutex<Vec<Option<i32>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplicaLog {
    pub async fn start(client: &kube::Client, namespace: &str, name: &str) -> Self {
        let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(api, config));
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event {
                    into.lock().expect("lock").push(d.spec.and_then(|s| s.replicas));
                }
            }
        });
        let log = Self { seen, task };
        wait::until(
            "the watch delivered the Deployment",
            Duration::from_secs(30),
            || async { !log.values().is_empty() },
        )
        .await;
        log
    }

    pub fn values(&self) -> Vec<Option<i32>> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for ReplicaLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which field managers own `spec.replicas` of `d`.
#[allow(
    dead_code,
    reason = "each test binary including this module uses its own subset"
)]
pub fn replica_owners(d: &Deployment) -> Vec<String> {
    d.managed_fields()
        .iter()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.pointer("/f:spec/f:replicas").is_some())
        })
        .filter_map(|entry| entry.manager.clone())
        .collect()
}
