//! A test's own Kafka cluster: a dedicated KRaft controller and brokers, each an instance of `kafka.sh` of its
//! own (`KAFKA_ROLE=controller|broker`), so a test stops, kills and restarts brokers one by one while the
//! controller keeps the quorum. Every broker's bridge listener advertises the bridge address itself, which the
//! real node's pods and the processes of this machine (an operator run from the workspace) both reach. Wiped
//! when the guard drops, also when the test fails.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::env;
use crate::own_instance::OwnInstance;

/// The controller's node id, apart from the brokers' 1, 2, 3, …
const CONTROLLER_ID: i32 = 100;

/// One broker of the cluster.
#[derive(Debug)]
pub struct Broker {
    pub id: i32,
    /// Its client port on loopback.
    pub port: u16,
    /// Its bridge listener's port, on the bridge address.
    pub bridge_port: u16,
    instance: String,
    own: OwnInstance,
}

/// Where each partition of a topic is: its leader (`None`: none) and its in-sync replicas.
pub type Partitions = BTreeMap<i32, (Option<i32>, Vec<i32>)>;

#[derive(Debug)]
pub struct KafkaCluster {
    // Dropped first: the brokers go before their controller.
    brokers: Vec<Broker>,
    _controller: OwnInstance,
    bridge_ip: String,
}

impl KafkaCluster {
    /// Starts (from nothing) the controller `<name>-controller` on `base_port + 3` and `brokers` brokers
    /// `<name>-<id>`, broker `id` (from 1) on `base_port + 4·id` with its bridge listener 2 ports above.
    ///
    /// # Panics
    /// When an instance does not come up; `kafka.sh` prints its log tail.
    pub async fn start(name: &str, brokers: u16, base_port: u16) -> Self {
        let bridge_ip = env::require("ORDERSYSTEM_NODE_BRIDGE_IP");
        let controller_instance = format!("{name}-controller");
        let controller = OwnInstance::kafka(&controller_instance, base_port, base_port + 3)
            .with_env("KAFKA_ROLE", "controller")
            .with_env("KAFKA_NODE_ID", CONTROLLER_ID.to_string())
            .start_fresh()
            .await;
        let brokers: Vec<Broker> = (1..=brokers)
            .map(|id| {
                let port = base_port + 4 * id;
                let instance = format!("{name}-{id}");
                let own = OwnInstance::kafka(&instance, port, base_port + 3)
                    .with_env("KAFKA_ROLE", "broker")
                    .with_env("KAFKA_QUORUM", controller_instance.clone())
                    .with_env("KAFKA_NODE_ID", id.to_string())
                    .with_env("KAFKA_BRIDGE_PORT", (port + 2).to_string())
                    .with_env("KAFKA_BRIDGE_ADVERTISED_HOST", bridge_ip.clone());
                Broker {
                    id: i32::from(id),
                    port,
                    bridge_port: port + 2,
                    instance,
                    own,
                }
            })
            .collect();
        together(brokers.iter().map(|b| b.own.run("reset"))).await;
        let cluster = Self {
            brokers,
            _controller: controller,
            bridge_ip,
        };
        let all: Vec<i32> = cluster.brokers.iter().map(|b| b.id).collect();
        cluster.start_brokers(&all).await;
        cluster
    }

    fn broker(&self, id: i32) -> &Broker {
        self.brokers
            .iter()
            .find(|b| b.id == id)
            .unwrap_or_else(|| panic!("no broker {id} in the cluster"))
    }

    /// The brokers' ids.
    pub fn ids(&self) -> Vec<i32> {
        self.brokers.iter().map(|b| b.id).collect()
    }

    /// Every broker's client listener on loopback, for the test's own clients.
    pub fn bootstrap(&self) -> String {
        let all: Vec<String> = self
            .brokers
            .iter()
            .map(|b| format!("127.0.0.1:{}", b.port))
            .collect();
        all.join(",")
    }

    /// Every broker's bridge listener by the bridge address: the bootstrap servers of an `OrderSystem` whose
    /// services run on the real node and whose operator runs on this machine.
    pub fn bridge_bootstrap(&self) -> String {
        let all: Vec<String> = self
            .brokers
            .iter()
            .map(|b| format!("{}:{}", self.bridge_ip, b.bridge_port))
            .collect();
        all.join(",")
    }

    /// Starts the brokers `ids` together (again, after a stop or a kill: their data stays).
    pub async fn start_brokers(&self, ids: &[i32]) {
        together(ids.iter().map(|id| self.broker(*id).own.run("start"))).await;
    }

    /// Stops the brokers `ids` together (SIGTERM: a controlled shutdown).
    pub async fn stop_brokers(&self, ids: &[i32]) {
        together(ids.iter().map(|id| self.broker(*id).own.run("stop"))).await;
    }

    /// Kills broker `id` with SIGKILL: no shutdown of any kind.
    pub async fn kill_broker(&self, id: i32) {
        self.broker(id).own.run("kill").await;
    }

    /// Broker `id`'s log so far.
    pub fn log(&self, id: i32) -> String {
        let path = env::state().join(&self.broker(id).instance).join("kafka.log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Each partition of `topic` with its leader and in-sync replicas, as the cluster metadata shows them
    /// now (asked of a broker that answers).
    pub async fn partitions(&self, topic: &str) -> Result<Partitions, String> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .map_err(|e| e.to_string())?;
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or_else(|| format!("no topic {topic} in the metadata"))?;
            Ok(found
                .partitions()
                .iter()
                .map(|p| {
                    let leader = (p.leader() >= 0).then_some(p.leader());
                    (p.id(), (leader, p.isr().to_vec()))
                })
                .collect())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Runs the script calls together, each on its blocking thread.
async fn together<F: std::future::Future<Output = String>>(calls: impl Iterator<Item = F>) {
    futures::future::join_all(calls).await;
}
