//! applied: what this replica last applied of each child, so that a look at rest sends no server-side
//! apply for an object that is already as built. At rest every resource is looked at again each
//! `consumerLag.intervalSeconds` (30 s by default), and before this each look re-applied its unchanged
//! Deployments, Services and ServiceAccounts: 9 of its 15 API requests, 60 % of the operator's requests
//! at rest (BENCHMARKS.md, "the operator at scale").
//!
//! Per child (namespace, owning resource, kind, name) the memo keeps a hash of the object last applied
//! and the resourceVersion the API server answered with. An apply is skipped only while both still hold:
//! the object built now hashes the same, and the child's resourceVersion as seen now (the Deployments
//! listed by `observe`, the other kinds from the metadata watches `run` keeps in stores) is that one.
//! Any write to the child by someone else (a hand edit, another field manager, a deletion and
//! re-creation) changes its resourceVersion, so the next look applies it again and drift is still put
//! back. A child whose version is not known (no store, not yet in it, or a failed list) is applied. The
//! memo lives in the controller's context, as long as one term of leadership: a new leader or a
//! restarted replica starts with none and applies everything once.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Service as KubeService, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Serialize;

/// One child's key: namespace, owning `OrderSystem`, kind and name.
type Key = (String, String, &'static str, String);

/// What was applied last and what the API server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memo {
    /// The hash of the object as built and applied ([`hash`]).
    pub hash: u64,
    /// The resourceVersion the apply returned.
    pub version: String,
}

/// Whether the apply of an object that hashes to `hash` may be skipped: it was applied before with the
/// same hash (`memo`), and the child is still at the version that apply returned (`live`, as seen now;
/// `None` when it is not known or the child does not exist).
pub fn unchanged(memo: Option<&Memo>, hash: u64, live: Option<&str>) -> bool {
    match (memo, live) {
        (Some(memo), Some(live)) => memo.hash == hash && memo.version == live,
        _ => false,
    }
}

/// The hash of `object` as it would be sent: its JSON. Stable within one process, which is all the memo
/// needs (it never leaves it). An object that cannot be serialized hashes to `None` and is always applied.
pub fn hash<K: Serialize>(object: &K) -> Option<u64> {
    let json = serde_json::to_vec(object).ok()?;
    let mut hasher = DefaultHasher::new();
    json.hash(&mut hasher);
    Some(hasher.finish())
}

/// The memo of every child applied in this term of leadership.
#[derive(Debug, Default)]
pub struct Applied(Mutex<HashMap<Key, Memo>>);

impl Applied {
    fn map(&self) -> MutexGuard<'_, HashMap<Key, Memo>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the child's apply may be skipped ([`unchanged`]).
    pub fn is_unchanged(&self, child: &Child<'_>, hash: u64, live: Option<&str>) -> bool {
        unchanged(self.map().get(&child.key()), hash, live)
    }

    /// Records an apply of the child and the version it returned; without a version it is forgotten.
    pub fn record(&self, child: &Child<'_>, hash: u64, version: Option<String>) {
        match version {
            Some(version) => {
                self.map().insert(child.key(), Memo { hash, version });
            }
            None => {
                self.map().remove(&child.key());
            }
        }
    }

    /// Forgets every child of the resource `owner` in `namespace` (it is being deleted).
    pub fn forget_owner(&self, namespace: &str, owner: &str) {
        self.map()
            .retain(|(ns, of, _, _), _| !(ns == namespace && of == owner));
    }

    /// How many children are remembered.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no child is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One child, by namespace, owning resource, kind and name.
pub struct Child<'a> {
    pub namespace: &'a str,
    pub owner: &'a str,
    pub kind: &'static str,
    pub name: &'a str,
}

impl Child<'_> {
    fn key(&self) -> Key {
        (
            self.namespace.to_string(),
            self.owner.to_string(),
            self.kind,
            self.name.to_string(),
        )
    }
}

/// The metadata of the owned Services, ServiceAccounts and PodDisruptionBudgets as the watches of `run`
/// last saw them (their managed fields left out): where a look finds their resourceVersions without a
/// request. The Deployments need no store: `observe` lists them anyway, whole, for the status.
#[derive(Clone)]
pub struct Watched {
    pub services: Store<PartialObjectMeta<KubeService>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    pub pdbs: Store<PartialObjectMeta<PodDisruptionBudget>>,
}

/// The resourceVersion of `name` in `namespace` as `store` holds it.
pub fn version_in<K>(store: &Store<PartialObjectMeta<K>>, namespace: &str, name: &str) -> Option<String>
where
    K: kube::Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone,
{
    let reference = ObjectRef::<PartialObjectMeta<K>>::new(name).within(namespace);
    store.get(&reference)?.metadata.resource_version.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn memo(hash: u64, version: &str) -> Memo {
        Memo {
            hash,
            version: version.to_string(),
        }
    }

    #[test]
    fn an_apply_is_skipped_only_for_the_same_object_at_the_version_it_returned() {
        // (memo, hash now, live version, skipped, why)
        let cases = [
            (None, 1, Some("10"), false, "never applied in this term"),
            (
                Some(memo(1, "10")),
                1,
                Some("10"),
                true,
                "unchanged on both sides",
            ),
            (Some(memo(1, "10")), 2, Some("10"), false, "the spec changed"),
            (
                Some(memo(1, "10")),
                1,
                Some("11"),
                false,
                "someone else wrote the child",
            ),
            (
                Some(memo(1, "10")),
                1,
                None,
                false,
                "the child is gone or its version unknown",
            ),
        ];
        for (memo, hash, live, skipped, why) in cases {
            assert_eq!(unchanged(memo.as_ref(), hash, live), skipped, "{why}");
        }
    }

    #[test]
    fn the_memo_records_forgets_and_drops_a_deleted_resources_children() {
        let applied = Applied::default();
        let child = |owner, name| Child {
            namespace: "ns",
            owner,
            kind: "Service",
            name,
        };
        applied.record(&child("shop", "shop-order"), 7, Some("5".into()));
        applied.record(&child("shop-x", "shop-x-order"), 7, Some("6".into()));
        assert!(applied.is_unchanged(&child("shop", "shop-order"), 7, Some("5")));
        assert!(!applied.is_unchanged(&child("shop", "shop-order"), 7, Some("9")));
        // An apply whose answer carried no version is not trusted.
        applied.record(&child("shop", "shop-order"), 7, None);
        assert!(!applied.is_unchanged(&child("shop", "shop-order"), 7, Some("5")));
        applied.record(&child("shop", "shop-order"), 7, Some("5".into()));
        // Only the deleted resource's own children go, not those of a resource whose name it prefixes.
        applied.forget_owner("ns", "shop");
        assert!(!applied.is_unchanged(&child("shop", "shop-order"), 7, Some("5")));
        assert!(applied.is_unchanged(&child("shop-x", "shop-x-order"), 7, Some("6")));
        assert_eq!(applied.len(), 1);
    }

    #[test]
    fn the_hash_follows_every_field_of_the_object() {
        let a = json!({"spec": {"replicas": 1, "template": {"image": "a"}}});
        let b = json!({"spec": {"replicas": 2, "template": {"image": "a"}}});
        let c = json!({"spec": {"replicas": 1, "template": {"image": "b"}}});
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
    }
}
