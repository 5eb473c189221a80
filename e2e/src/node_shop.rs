//! A shop of one test's own on the real node: the operator's namespace and the shop's, the operator installed
//! there by the chart (one replica, or several behind a Lease), and one `OrderSystem` on the test bed's
//! Kafka and PostgreSQL. On a failure the pods' logs are shown and both namespaces removed ([`OnFailure`]).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use ordersystem_api::crd::{OrderSystem, OrderSystemStatus};
use serde_json::{Value, json};

use crate::cluster::{self, OnFailure, READY_WITHIN, create_namespace};
use crate::mode::Mode;
use crate::{names, wait};

/// The name of the Secret with PostgreSQL's admin login in the shop's namespace.
pub const ADMIN_SECRET: &str = "pg-admin";

/// The chart's leader election for an operator of several replicas: `replicas` pods behind the release's
/// Lease, a standby taking over `lease_duration_seconds` after the holder's last renewal.
#[derive(Debug, Clone, Copy)]
pub struct LeaderElection {
    pub replicas: i32,
    pub lease_duration_seconds: u64,
    pub renew_deadline_seconds: u64,
    pub retry_period_seconds: u64,
}

impl LeaderElection {
    /// The chart values (`key=value`) that ask for it.
    fn chart_values(&self) -> Vec<String> {
        vec![
            format!("replicaCount={}", self.replicas),
            "leaderElection.enabled=true".to_string(),
            format!(
                "leaderElection.leaseDurationSeconds={}",
                self.lease_duration_seconds
            ),
            format!(
                "leaderElection.renewDeadlineSeconds={}",
                self.renew_deadline_seconds
            ),
            format!("leaderElection.retryPeriodSeconds={}", self.retry_period_seconds),
        ]
    }
}

pub struct NodeShop {
    pub client: kube::Client,
    pub mode: Mode,
    /// The operator's namespace, which is also its Helm release's name.
    pub operator_ns: String,
    pub shop_ns: String,
    _on_failure: OnFailure,
}

impl NodeShop {
    /// Two new namespaces, `<prefix>-system-…` and `<prefix>-shop-…`, on the real node.
    pub async fn namespaces(prefix: &str) -> NodeShop {
        let client = crate::kube::client().await;
        let mode = Mode::real(&client).await;
        let operator_ns = names::unique(&format!("{prefix}-system"));
        let shop_ns = names::unique(&format!("{prefix}-shop"));
        let on_failure = OnFailure {
            shop_ns: shop_ns.clone(),
            operator_ns: operator_ns.clone(),
        };
        create_namespace(&client, &shop_ns, mode.namespace_annotations()).await;
        create_namespace(&client, &operator_ns, mode.namespace_annotations()).await;
        NodeShop {
            client,
            mode,
            operator_ns,
            shop_ns,
            _on_failure: on_failure,
        }
    }

    /// The chart, installed as release `operator_ns` watching the shop's namespace, with `sets`.
    pub fn install_operator(&self, sets: &[&str]) {
        cluster::install_operator(&self.operator_ns, &self.shop_ns, sets);
    }

    /// The chart as [`NodeShop::install_operator`] installs it, with `election`'s replicas behind a Lease;
    /// waits until every replica is Ready, so that a standby is there from the first reconcile on.
    pub async fn install_operator_electing(&self, election: LeaderElection) {
        let values = election.chart_values();
        self.install_operator(&values.iter().map(String::as_str).collect::<Vec<_>>());
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.operator_ns);
        let name = self.operator_name();
        let wanted = election.replicas;
        wait::until_ok(
            &format!("{wanted} operator replicas Ready"),
            READY_WITHIN,
            || async {
                let deployment = deployments.get(&name).await.map_err(|e| e.to_string())?;
                let ready = deployment.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                (ready == wanted).then_some(()).ok_or(format!("{ready} ready"))
            },
        )
        .await;
    }

    /// The chart's full name of the release: the name of the operator's Deployment and of its Lease.
    pub fn operator_name(&self) -> String {
        format!("{}-ordersystem-operator", self.operator_ns)
    }

    /// The `OrderSystem`s of the shop's namespace.
    pub fn systems(&self) -> Api<OrderSystem> {
        Api::namespaced(self.client.clone(), &self.shop_ns)
    }

    /// The admin Secret and the `OrderSystem` `name` on a new topic of `partitions` (replication factor 1,
    /// `deletionPolicy: Delete`, PostgreSQL without TLS), with `spec` merged over that; its topic's name.
    pub async fn create_system(&self, name: &str, partitions: i32, spec: Value) -> String {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.shop_ns);
        secrets
            .create(
                &PostParams::default(),
                &self.mode.admin_secret(&self.client, ADMIN_SECRET).await,
            )
            .await
            .expect("admin secret");
        let topic = names::unique(&format!("{name}-orders"));
        let mut resource = json!({
            "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
            "metadata": {"name": name},
            "spec": {
                "kafka": {"bootstrapServers": self.mode.kafka_bootstrap(),
                          "topic": {"name": topic, "partitions": partitions, "replicationFactor": 1}},
                "postgres": {"adminSecretRef": {"name": ADMIN_SECRET}, "sslMode": "disable"},
                "deletionPolicy": "Delete"
            }
        });
        merge(&mut resource["spec"], spec);
        let resource: OrderSystem = serde_json::from_value(resource).expect("an OrderSystem");
        self.systems()
            .create(&PostParams::default(), &resource)
            .await
            .expect("create the OrderSystem");
        topic
    }

    /// Waits until `name` is `Ready=True`; its status then.
    pub async fn ready(&self, name: &str) -> OrderSystemStatus {
        let systems = self.systems();
        wait::until_ok(&format!("{name} Ready"), READY_WITHIN, || async {
            let os = systems.get(name).await.map_err(|e| e.to_string())?;
            let status = os.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                Ok(status)
            } else {
                Err(format!("conditions: {:?}", status.conditions))
            }
        })
        .await
    }

    /// Deletes `name` and waits until it is gone (its finalizer released by the operator, which has then
    /// removed what `deletionPolicy` says), the operator still running.
    pub async fn delete(&self, name: &str) {
        let systems = self.systems();
        systems
            .delete(name, &Default::default())
            .await
            .expect("delete the OrderSystem");
        wait::until_ok(&format!("{name} deleted"), READY_WITHIN, || async {
            match systems.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still there".to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    /// Uninstalls the operator and deletes both namespaces.
    pub async fn uninstall(&self) {
        cluster::uninstall_operator(&self.operator_ns);
        for ns in [&self.shop_ns, &self.operator_ns] {
            cluster::delete_namespace_and_wait(&self.client, ns).await;
        }
    }

    /// [`NodeShop::delete`], then [`NodeShop::uninstall`].
    pub async fn delete_and_uninstall(&self, name: &str) {
        self.delete(name).await;
        self.uninstall().await;
    }
}

/// `patch` merged into `target` as a JSON merge patch does it (objects key by key, anything else replaced).
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_merged_key_by_key() {
        let mut spec =
            json!({"kafka": {"topic": {"name": "t", "partitions": 2}}, "deletionPolicy": "Delete"});
        merge(
            &mut spec,
            json!({"kafka": {"topic": {"partitions": 4}}, "invoicing": {"replicas": 0}}),
        );
        assert_eq!(
            spec,
            json!({"kafka": {"topic": {"name": "t", "partitions": 4}}, "deletionPolicy": "Delete",
                   "invoicing": {"replicas": 0}})
        );
    }
}
