//! What every step of a reconcile shares: the clients and caches. Steps import it from here, never from
//! the pipeline above them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use super::{applied, kafka};
use crate::crd::OrderSystem;
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// Shared state of all reconciles.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub kafka: kafka::KafkaClients,
    /// Where the topic claims are recorded (`kafka::claim`).
    pub claims_namespace: String,
    /// Where service images come from, and the tag of a service deployed for the first time without an
    /// image of its own (`validate`).
    pub images: crate::names::ServiceImages,
    /// With leader election, whether this replica holds the lease: nothing is written without it.
    leadership: Option<Leadership>,
    /// Consecutive failures per object (uid), reset on success.
    failures: Mutex<HashMap<String, u32>>,
    /// The unwanted children this replica deleted and has not applied since (`apply`).
    pub deleted: super::apply::Deleted,
    /// What this replica last applied of each child, so an unchanged one is not applied again (`applied`).
    pub applied: super::applied::Applied,
    /// The owned children's metadata as the watches see them; `None`: every child is applied each look.
    pub watched: Option<super::applied::Watched>,
    /// The PostgreSQL admin connections kept between looks (`postgres::reuse`).
    pub postgres: super::postgres::reuse::Reuse,
}

impl Context {
    pub fn new(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        claims_namespace: String,
        images: crate::names::ServiceImages,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            kafka: kafka::KafkaClients::default(),
            claims_namespace,
            images,
            leadership: None,
            failures: Mutex::default(),
            deleted: Default::default(),
            applied: Default::default(),
            watched: None,
            postgres: Default::default(),
        }
    }

    /// Finds the owned children's resourceVersions in `watched`, so unchanged ones are not applied again.
    pub fn with_watched(self, watched: applied::Watched) -> Self {
        Self {
            watched: Some(watched),
            ..self
        }
    }

    /// Writes only while `leadership` says this replica leads.
    pub fn with_leadership(self, leadership: Option<Leadership>) -> Self {
        Self { leadership, ..self }
    }

    /// Whether this replica may write: it runs without election, or it holds the lease now (by the
    /// monotonic clock, so a replica stopped past its lease knows it the moment it runs again).
    pub fn may_write(&self) -> bool {
        self.leadership.as_ref().is_none_or(Leadership::is_leading)
    }

    /// The leadership this replica writes under; `None` without election.
    pub fn leadership(&self) -> Option<Leadership> {
        self.leadership.clone()
    }

    /// The topic claims' records.
    pub fn claims(&self) -> kafka::claim::Claims {
        kafka::claim::Claims::new(&self.client, &self.claims_namespace)
    }

    /// Counts one more consecutive failure of the object `key` and returns the count.
    pub fn count_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures();
        let count = failures.entry(key.to_string()).or_insert(0);
        *count += 1;
        *count
    }

    /// Forgets the failures of the object `key` after a success.
    pub fn forget_failures(&self, key: &str) {
        self.failures().remove(key);
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes a Kubernetes Event on the resource; failing to publish is logged, never fatal.
    pub async fn event(&self, os: &OrderSystem, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &os.object_ref(&())).await {
            warn!(%error, reason, "failed to publish event");
        }
    }
}
