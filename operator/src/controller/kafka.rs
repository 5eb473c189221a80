//! The Kafka backend: the operator's clients (admin clients and lag readers, cached per brokers and
//! security settings), their errors, and the steps that use them: the topic (`topic`), the services'
//! identities (`identities`, `plain`), the operator's own TLS and SASL (`security`), and who owns a topic
//! (`claim`).

pub mod claim;
pub mod identities;
pub mod plain;
pub mod security;
pub mod topic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

pub use ordersystem_kafka_admin::{
    Admin, ConfigOp, FfiError, GroupClient, TopicDescription, list_group_offsets,
};
pub use security::ClientSecurity;
pub use topic::{
    TopicObserved, TopicState, alter_configs, config_changes, delete_topic, describe, ensure_described_topic,
    ensure_topic,
};

/// How long one Admin API request may take before the reconcile fails (and is retried with backoff).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this replica no longer holds the leader lease, so it sends no change to Kafka")]
    NotLeader,
    #[error("failed to create a Kafka admin client for {bootstrap}")]
    CreateClient {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to describe topic {topic}")]
    DescribeTopic {
        topic: String,
        #[source]
        source: FfiError,
    },
    #[error("failed to read the cluster metadata")]
    Metadata {
        #[source]
        source: KafkaError,
    },
    #[error("failed to create topic {topic}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to add partitions to topic {topic}")]
    CreatePartitions {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to describe the configs of topic {topic}")]
    DescribeConfigs {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed to change the configs of topic {topic}")]
    AlterConfigs {
        topic: String,
        #[source]
        source: FfiError,
    },
    #[error("failed to delete topic {topic}")]
    DeleteTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("failed on the SCRAM user {user}")]
    ScramUser {
        user: String,
        #[source]
        source: FfiError,
    },
    #[error("failed on the ACLs of {principal}")]
    Acls {
        principal: String,
        #[source]
        source: FfiError,
    },
    #[error("failed to create or read Secret {name}")]
    ServiceSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read Secret {name}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {name} has no usable {key}")]
    SecretKey { name: String, key: &'static str },
    #[error(
        "the services' Kafka credentials are provided (SASL PLAIN, or serviceCredentials: Provided): create \
         Secret {secrets} with `username` and `password` of each service's Kafka user (and grant its ACLs)"
    )]
    ServiceCredentialsMissing { secrets: String },
    #[error("the brokers did not report their cluster id")]
    ClusterId,
    #[error("failed to read or write the claim on topic {topic}")]
    Claim {
        topic: String,
        #[source]
        source: kube::Error,
    },
    #[error("topic {topic} was claimed by OrderSystem {owner} a moment ago")]
    ClaimedMeanwhile { topic: String, owner: String },
    #[error("a blocking Kafka call panicked or was cancelled")]
    Blocking {
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The id of the Kafka cluster `admin` is connected to, as its brokers report it: the same through every
/// address of the cluster.
pub async fn cluster_id(admin: &Arc<Admin>) -> Result<String, Error> {
    let admin = admin.clone();
    tokio::task::spawn_blocking(move || admin.inner().fetch_cluster_id(REQUEST_TIMEOUT))
        .await
        .map_err(|source| Error::Blocking { source })?
        .ok_or(Error::ClusterId)
}

/// The client of `bootstrap` with `security` in `cache`, made by `make` on first use.
fn cached<T, E>(
    cache: &Mutex<HashMap<(String, String), Arc<T>>>,
    bootstrap: &str,
    security: &ClientSecurity,
    make: impl FnOnce() -> Result<T, E>,
) -> Result<Arc<T>, E> {
    let key = (bootstrap.to_string(), security.fingerprint());
    let mut clients = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    let client = Arc::new(make()?);
    clients.insert(key, client.clone());
    Ok(client)
}

/// The settings every client of the operator starts from: the brokers, a bounded socket timeout, and TLS
/// and SASL as `security` says.
pub fn client_config(bootstrap: &str, security: &ClientSecurity) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000");
    security.apply(&mut config);
    config
}

/// Admin clients and lag readers (see `lag`), each one per bootstrap list and security settings, kept
/// across reconciles: each owns librdkafka threads and connections, and one serves every OrderSystem
/// on those brokers.
#[derive(Default)]
pub struct KafkaClients {
    admins: Mutex<HashMap<(String, String), Arc<Admin>>>,
    lag_readers: Mutex<HashMap<(String, String), Arc<GroupClient>>>,
    /// The last connection failure of each client, kept until an operation succeeds: librdkafka reports
    /// a refused handshake or login once and suppresses identical repeats.
    failures: Mutex<HashMap<(String, String), security::ConnectionFailure>>,
}

impl KafkaClients {
    /// A plaintext admin client.
    pub fn admin(&self, bootstrap: &str) -> Result<Arc<Admin>, Error> {
        self.admin_with(bootstrap, &ClientSecurity::plaintext())
    }

    /// An admin client with TLS and SASL as `security` says.
    pub fn admin_with(&self, bootstrap: &str, security: &ClientSecurity) -> Result<Arc<Admin>, Error> {
        cached(&self.admins, bootstrap, security, || {
            client_config(bootstrap, security)
                .create()
                .map_err(|source| Error::CreateClient {
                    bootstrap: bootstrap.to_string(),
                    source,
                })
        })
    }

    /// The lag reader of `bootstrap` with `security`, created on first use with `group` as its own
    /// group: one the operator reads anyway, so its identity needs no further right.
    pub fn lag_reader(
        &self,
        bootstrap: &str,
        security: &ClientSecurity,
        group: &str,
    ) -> Result<Arc<GroupClient>, KafkaError> {
        cached(&self.lag_readers, bootstrap, security, || {
            GroupClient::new(&client_config(bootstrap, security), group)
        })
    }

    /// Forgets the lag reader of `bootstrap` with `security` after a failed look, so the next look starts
    /// with a fresh client; returns it, for the caller to drop where blocking is allowed (destroying a
    /// consumer waits for its librdkafka threads).
    pub fn forget_lag_reader(&self, bootstrap: &str, security: &ClientSecurity) -> Option<Arc<GroupClient>> {
        self.lag_readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(bootstrap.to_string(), security.fingerprint()))
    }

    /// Why the client of `bootstrap` and `security` cannot talk to the brokers, after an operation that
    /// `succeeded` or not: its newest error, else the one remembered from before; forgotten on success.
    /// After a failure the client itself is dropped from the cache.
    pub fn connection_failure(
        &self,
        bootstrap: &str,
        security: &ClientSecurity,
        admin: &Admin,
        succeeded: bool,
    ) -> Option<security::ConnectionFailure> {
        let key = (bootstrap.to_string(), security.fingerprint());
        let newest = security::take_failure(admin);
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if succeeded {
            failures.remove(&key);
            return None;
        }
        if let Some(failure) = newest {
            failures.insert(key.clone(), failure);
        }
        // The next reconcile gets a fresh client: one that never reached a broker can sit in its
        // reconnect backoff and report nothing new, while a new one connects and reports at once.
        self.admins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        failures.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lag_reader_serves_all_groups_on_the_same_brokers_until_forgotten() {
        let clients = KafkaClients::default();
        let plain = ClientSecurity::plaintext();
        let first = clients
            .lag_reader("127.0.0.1:1", &plain, "ns.shop.invoicing")
            .expect("reader");
        let again = clients
            .lag_reader("127.0.0.1:1", &plain, "ns.other.shipping")
            .expect("reader");
        assert!(Arc::ptr_eq(&first, &again), "one client for every group");
        let other_brokers = clients
            .lag_reader("127.0.0.1:2", &plain, "ns.shop.invoicing")
            .expect("reader");
        assert!(!Arc::ptr_eq(&first, &other_brokers));
        let sasl = Some((crate::crd::SaslMechanism::ScramSha512, "u".into(), "p".into()));
        let other = ClientSecurity::new("sasl_plaintext", None, None, sasl);
        let secured = clients
            .lag_reader("127.0.0.1:1", &other, "ns.shop.invoicing")
            .expect("reader");
        assert!(!Arc::ptr_eq(&first, &secured), "other settings, other client");
        clients.forget_lag_reader("127.0.0.1:1", &plain);
        let fresh = clients
            .lag_reader("127.0.0.1:1", &plain, "ns.shop.invoicing")
            .expect("reader");
        assert!(!Arc::ptr_eq(&first, &fresh), "forgotten, then created anew");
        let still = clients
            .lag_reader("127.0.0.1:1", &other, "ns.shop.invoicing")
            .expect("reader");
        assert!(Arc::ptr_eq(&secured, &still), "the others stay");
    }
}
