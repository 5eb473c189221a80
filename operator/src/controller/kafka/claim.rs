//! Which resource owns a topic, keyed by what Kafka says about itself: the cluster id the brokers report
//! and the topic name, never the address a resource reaches them by. The record is a ConfigMap in the
//! operator's own namespace (the watched one in single-namespace mode), named after both: Kafka topics
//! cannot carry configs of our own, and a record in Kubernetes is found again by a restarted operator,
//! survives the resource (so a resource created again after `Retain` takes its topic back) and is written
//! atomically (the first create wins; the API server refuses the second).
//!
//! The record also says whether the resource created the topic or found it: `deletionPolicy: Delete`
//! deletes only a topic it created, unless the `ordersystem.io/delete-found-topic` annotation asks for
//! more.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use super::super::validate::ValidSpec;
use crate::names;

/// The ConfigMap keys of a claim.
mod keys {
    pub const CLUSTER_ID: &str = "clusterId";
    pub const TOPIC: &str = "topic";
    pub const OWNER: &str = "owner";
    pub const UID: &str = "uid";
    pub const ORIGIN: &str = "origin";
}

/// How the claiming resource came by the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// It created the topic (or managed it before claims were recorded).
    Created,
    /// The topic existed before any resource claimed it.
    Found,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Found => "found",
        }
    }
}

/// A resource's claim on a topic of one Kafka cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicClaim {
    pub cluster_id: String,
    pub topic: String,
    /// `<namespace>/<name>` of the claiming resource.
    pub owner: String,
    pub uid: String,
    pub origin: Origin,
}

/// What a resource may do with the topic, given the claim on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Nobody claimed it yet: this resource claims it before writing to it.
    Unclaimed,
    /// Claimed by this resource.
    Ours,
    /// Claimed by an earlier resource of the same namespace and name (kept with `Retain`), or by the
    /// one the `ordersystem.io/adopt-from` annotation names: this resource takes the claim over.
    Take,
    /// Claimed by another resource: a conflict, with a sentence saying by whom and what to do.
    Foreign(String),
}

impl TopicClaim {
    /// A new claim of `spec`'s resource on its topic of cluster `cluster_id`.
    pub fn new(spec: &ValidSpec, cluster_id: &str, origin: Origin) -> Self {
        Self {
            cluster_id: cluster_id.to_string(),
            topic: spec.topic.name.clone(),
            owner: spec.qualified_name(),
            uid: spec.uid.clone(),
            origin,
        }
    }

    /// Where `spec`'s resource stands with this claim (`None`: there is none).
    pub fn standing(claim: Option<&Self>, spec: &ValidSpec) -> Standing {
        let Some(claim) = claim else {
            return Standing::Unclaimed;
        };
        let this = spec.qualified_name();
        match () {
            () if claim.owner == this && claim.uid == spec.uid => Standing::Ours,
            () if claim.owner == this || spec.adopt_from.as_deref() == Some(claim.owner.as_str()) => {
                Standing::Take
            }
            () => Standing::Foreign(format!(
                "Topic {} of Kafka cluster {} is already claimed by OrderSystem {}; to take it over, annotate \
                 this resource with {}={}",
                claim.topic,
                claim.cluster_id,
                claim.owner,
                names::ADOPT_FROM_ANNOTATION,
                claim.owner
            )),
        }
    }

    /// Whether `deletionPolicy: Delete` of `spec`'s resource deletes the topic.
    pub fn deletes_topic(&self, spec: &ValidSpec, delete_found: bool) -> bool {
        self.owner == spec.qualified_name() && (self.origin == Origin::Created || delete_found)
    }

    fn name(&self) -> String {
        names::topic_claim_name(&self.cluster_id, &self.topic)
    }

    fn to_config_map(&self) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name()),
                labels: Some(BTreeMap::from([
                    (
                        names::MANAGED_BY_LABEL.to_string(),
                        names::FIELD_MANAGER.to_string(),
                    ),
                    (names::TOPIC_CLAIM_LABEL.to_string(), "true".to_string()),
                ])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (keys::CLUSTER_ID.to_string(), self.cluster_id.clone()),
                (keys::TOPIC.to_string(), self.topic.clone()),
                (keys::OWNER.to_string(), self.owner.clone()),
                (keys::UID.to_string(), self.uid.clone()),
                (keys::ORIGIN.to_string(), self.origin.as_str().to_string()),
            ])),
            ..ConfigMap::default()
        }
    }

    /// The claim a ConfigMap records; `None` when it is not one (a hand-made object of that name).
    fn from_config_map(config_map: &ConfigMap) -> Option<Self> {
        let data = config_map.data.as_ref()?;
        let get = |key: &str| data.get(key).cloned();
        let origin = match get(keys::ORIGIN)?.as_str() {
            "created" => Origin::Created,
            "found" => Origin::Found,
            _ => return None,
        };
        Some(Self {
            cluster_id: get(keys::CLUSTER_ID)?,
            topic: get(keys::TOPIC)?,
            owner: get(keys::OWNER)?,
            uid: get(keys::UID)?,
            origin,
        })
    }
}

/// Reads and writes the claims in one namespace.
pub struct Claims {
    api: Api<ConfigMap>,
}

impl Claims {
    pub fn new(client: &kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
        }
    }

    /// The claim on `topic` of cluster `cluster_id`, if any.
    pub async fn read(&self, cluster_id: &str, topic: &str) -> Result<Option<TopicClaim>, kube::Error> {
        let found = self
            .api
            .get_opt(&names::topic_claim_name(cluster_id, topic))
            .await?;
        Ok(found.as_ref().and_then(TopicClaim::from_config_map))
    }

    /// Records `claim` unless a claim exists already; the claim in force afterwards (the other one when
    /// another resource was first).
    pub async fn create(&self, claim: &TopicClaim) -> Result<TopicClaim, kube::Error> {
        match self
            .api
            .create(&PostParams::default(), &claim.to_config_map())
            .await
        {
            Ok(_) => Ok(claim.clone()),
            Err(kube::Error::Api(answer)) if answer.code == 409 => {
                let other = self.read(&claim.cluster_id, &claim.topic).await?;
                Ok(other.unwrap_or_else(|| claim.clone()))
            }
            Err(error) => Err(error),
        }
    }

    /// Rewrites the claim (a take-over, or a found topic created anew).
    pub async fn replace(&self, claim: &TopicClaim) -> Result<(), kube::Error> {
        self.api
            .replace(&claim.name(), &PostParams::default(), &claim.to_config_map())
            .await
            .map(|_| ())
    }

    /// Removes the claim; one already gone is not an error.
    pub async fn release(&self, claim: &TopicClaim) -> Result<(), kube::Error> {
        match self.api.delete(&claim.name(), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(answer)) if answer.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
    use crate::controller::validate::validate;

    fn spec() -> ValidSpec {
        validate(&os_from_yaml(MINIMAL)).expect("valid")
    }

    #[test]
    fn a_claim_reads_back_from_its_config_map() {
        let claim = TopicClaim::new(&spec(), "cluster-1", Origin::Found);
        let config_map = claim.to_config_map();
        assert_eq!(TopicClaim::from_config_map(&config_map), Some(claim));
        assert_eq!(TopicClaim::from_config_map(&ConfigMap::default()), None);
    }

    #[test]
    fn the_record_is_named_by_cluster_and_topic_not_by_address() {
        let a = names::topic_claim_name("cluster-1", "orders");
        assert_eq!(a, names::topic_claim_name("cluster-1", "orders"));
        assert_ne!(a, names::topic_claim_name("cluster-2", "orders"));
        assert_ne!(a, names::topic_claim_name("cluster-1", "orders2"));
    }

    #[test]
    fn the_same_namespace_and_name_takes_a_claim_back_and_others_need_the_annotation() {
        let spec = spec();
        let mut claim = TopicClaim::new(&spec, "c", Origin::Created);
        assert_eq!(TopicClaim::standing(None, &spec), Standing::Unclaimed);
        assert_eq!(TopicClaim::standing(Some(&claim), &spec), Standing::Ours);
        claim.uid = "earlier".into();
        assert_eq!(TopicClaim::standing(Some(&claim), &spec), Standing::Take);
        claim.owner = "team/other".into();
        let Standing::Foreign(message) = TopicClaim::standing(Some(&claim), &spec) else {
            panic!("another resource's claim is foreign");
        };
        assert!(message.contains("claimed by OrderSystem team/other"), "{message}");
        assert!(
            message.ends_with("ordersystem.io/adopt-from=team/other"),
            "{message}"
        );
        let mut adopting = spec.clone();
        adopting.adopt_from = Some("team/other".into());
        assert_eq!(TopicClaim::standing(Some(&claim), &adopting), Standing::Take);
    }

    #[test]
    fn delete_deletes_only_a_topic_its_resource_created_unless_asked() {
        let spec = spec();
        let created = TopicClaim::new(&spec, "c", Origin::Created);
        let found = TopicClaim::new(&spec, "c", Origin::Found);
        assert!(created.deletes_topic(&spec, false));
        assert!(!found.deletes_topic(&spec, false));
        assert!(found.deletes_topic(&spec, true));
        let mut others = created.clone();
        others.owner = "team/other".into();
        assert!(
            !others.deletes_topic(&spec, true),
            "never another resource's topic"
        );
    }
}
