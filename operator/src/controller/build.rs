//! build (pure, no client): the Kubernetes objects one `OrderSystem` should own, from the valid spec and
//! what the backends observed. Nothing here reads the cluster, the clock or the environment.
//!
//! First-rollout gating lives here too: a consumer's Deployment is first created once the topic and its
//! schema are ready, order's once both consumers exist. A Deployment that exists is always kept, so a
//! crash-looping consumer never takes order down later.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service as KubeService, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use ordersystem_contract::wiring::{self, env, secret_keys};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::autoscale::Scaling;
use super::validate::{ServicePlan, ValidSpec};
use crate::conditions::Reason;
use crate::names::{self, Service};

mod expose;
mod security;
mod template;
mod tracing;

/// What the backends and the cluster told us, as far as building needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Hash of each service's database Secret data.
    pub secret_hashes: BTreeMap<Service, String>,
    /// Hash of each service's Kafka identity Secret data (with SASL, once the Secret exists).
    pub kafka_secret_hashes: BTreeMap<Service, String>,
    pub topic_ready: bool,
    /// Services whose schema and role are ready.
    pub schemas_ready: BTreeSet<Service>,
    /// Services whose Deployment already exists.
    pub deployed: BTreeSet<Service>,
    /// PostgreSQL's port, from the admin Secret (for the NetworkPolicies); `None` while it cannot be read.
    pub postgres_port: Option<u16>,
}

/// A kind of child object that a change of the spec can make unwanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Removable {
    PodDisruptionBudget,
    Ingress,
    HttpRoute,
    NetworkPolicy,
}

impl Removable {
    /// The kind as Kubernetes names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PodDisruptionBudget => "PodDisruptionBudget",
            Self::Ingress => "Ingress",
            Self::HttpRoute => "HTTPRoute",
            Self::NetworkPolicy => "NetworkPolicy",
        }
    }
}

/// Everything to apply, plus what to remove and what waits.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub service_accounts: Vec<ServiceAccount>,
    pub services: Vec<KubeService>,
    pub deployments: Vec<Deployment>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub ingresses: Vec<Ingress>,
    /// Gateway API HTTPRoutes (no Rust type: the Gateway API is not part of Kubernetes itself).
    pub http_routes: Vec<DynamicObject>,
    pub network_policies: Vec<NetworkPolicy>,
    /// Objects the spec no longer asks for, by kind and name: the PDB of a service below two replicas, the
    /// Ingress or HTTPRoute of a service no longer published, NetworkPolicies no longer wanted.
    pub to_delete: Vec<(Removable, String)>,
    /// Services not rolled out yet, with the reason.
    pub waiting: Vec<(Service, Reason)>,
}

pub fn build(spec: &ValidSpec, observed: &Observed) -> Desired {
    let mut desired = Desired::default();
    for plan in &spec.services {
        let service = plan.service;
        desired
            .service_accounts
            .push(typed(build_service_account(spec, plan)));
        desired.services.push(typed(build_service(spec, plan)));
        let name = || plan.child_name.clone();
        if plan.replicas >= 2 {
            desired.pdbs.push(typed(build_pdb(spec, plan)));
        } else {
            desired.to_delete.push((Removable::PodDisruptionBudget, name()));
        }
        match expose::ingress(spec, plan) {
            Some(ingress) => desired.ingresses.push(typed(ingress)),
            None => desired.to_delete.push((Removable::Ingress, name())),
        }
        match expose::http_route(spec, plan) {
            Some(route) => desired.http_routes.push(typed(route)),
            None => desired.to_delete.push((Removable::HttpRoute, name())),
        }
        // Without PostgreSQL's port a policy would cut the service off its database: the one in place stays.
        match observed
            .postgres_port
            .and_then(|port| expose::network_policy(spec, plan, port))
        {
            Some(policy) => desired.network_policies.push(typed(policy)),
            None if spec.network_policy.is_none() => {
                desired.to_delete.push((Removable::NetworkPolicy, name()));
            }
            None => {}
        }
        match gate(service, observed) {
            None => {
                // Unknown only for a deployed service whose database Secret could not be read this time:
                // its Deployment is left as it is, since a template without the hash would roll its pods.
                let Some(hash) = observed.secret_hashes.get(&service) else {
                    continue;
                };
                let kafka_hash = observed.kafka_secret_hashes.get(&service).map(String::as_str);
                // Likewise for its Kafka identity Secret, with SASL.
                if spec.kafka_security.sasl.is_some() && kafka_hash.is_none() {
                    continue;
                }
                desired
                    .deployments
                    .push(typed(build_deployment(spec, plan, hash, kafka_hash)));
            }
            Some(reason) => desired.waiting.push((service, reason)),
        }
    }
    desired
}

/// Why a service's first rollout must wait, or `None` to apply it.
fn gate(service: Service, observed: &Observed) -> Option<Reason> {
    if observed.deployed.contains(&service) {
        return None;
    }
    if !observed.topic_ready {
        return Some(Reason::WaitingForTopic);
    }
    if !observed.schemas_ready.contains(&service) || !observed.secret_hashes.contains_key(&service) {
        return Some(Reason::WaitingForDatabase);
    }
    let consumers_deployed = Service::ALL
        .iter()
        .filter(|s| s.is_consumer())
        .all(|s| observed.deployed.contains(s));
    if service == Service::Order && !consumers_deployed {
        return Some(Reason::WaitingForConsumers);
    }
    None
}

fn metadata(spec: &ValidSpec, plan: &ServicePlan) -> Value {
    json!({
        "name": plan.child_name,
        "namespace": spec.namespace,
        "labels": names::labels(&spec.name, plan.service),
        "ownerReferences": [spec.owner],
    })
}

fn build_service_account(spec: &ValidSpec, plan: &ServicePlan) -> Value {
    // The services never call the Kubernetes API, so no token is mounted.
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": metadata(spec, plan),
        "automountServiceAccountToken": false,
    })
}

fn build_service(spec: &ValidSpec, plan: &ServicePlan) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(spec, plan),
        "spec": {
            "selector": names::selector_labels(&spec.name, plan.service),
            "ports": [{"name": "http", "port": wiring::HTTP_PORT, "targetPort": "http"}],
        },
    })
}

fn build_pdb(spec: &ValidSpec, plan: &ServicePlan) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": metadata(spec, plan),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names::selector_labels(&spec.name, plan.service)},
        },
    })
}

/// Long on purpose: one Deployment declared in one piece, as its YAML would read.
fn build_deployment(
    spec: &ValidSpec,
    plan: &ServicePlan,
    secret_hash: &str,
    kafka_secret_hash: Option<&str>,
) -> Value {
    let mut container = json!({
        "name": plan.service.as_str(),
        "image": plan.image,
        "ports": [{"name": "http", "containerPort": wiring::HTTP_PORT, "protocol": "TCP"}],
        "env": build_env(spec, plan),
        "livenessProbe": probe(wiring::HEALTHZ_PATH, 10),
        "readinessProbe": probe(wiring::READYZ_PATH, 5),
        // A stopping pod leaves the Service's endpoints at once, but kube-proxies and load balancers learn it
        // a moment later: it keeps serving for that moment, then gets SIGTERM and finishes what it holds
        // (well within the default 30 s grace period), so a roll fails no request.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    container["resources"] = match &plan.resources {
        Some(resources) => json!(resources),
        None => default_resources(),
    };
    let (volumes, mounts) = security::volumes(spec);
    if !mounts.is_empty() {
        container["volumeMounts"] = Value::Array(mounts);
    }
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(spec, plan),
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": names::selector_labels(&spec.name, plan.service)},
            "template": {
                "metadata": {
                    "labels": names::labels(&spec.name, plan.service),
                    "annotations": {(names::SECRET_HASH_ANNOTATION): secret_hash},
                },
                "spec": {
                    "serviceAccountName": plan.child_name,
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    });
    // External mode: the field belongs to the user's autoscaler. Leaving it out is safe only because
    // `apply` first hands it over to a manager of its own (see `apply::hand_over_replicas`); without that,
    // server-side apply would reset it to 1.
    if plan.scaling == Scaling::External
        && let Some(spec) = deployment["spec"].as_object_mut()
    {
        spec.remove("replicas");
    }
    // Only with SASL: a system without Kafka identities keeps its template unchanged.
    if let Some(hash) = kafka_secret_hash {
        deployment["spec"]["template"]["metadata"]["annotations"][names::KAFKA_SECRET_HASH_ANNOTATION] =
            json!(hash);
    }
    template::apply(&mut deployment["spec"]["template"], spec, plan);
    if !volumes.is_empty() {
        let pod = &mut deployment["spec"]["template"]["spec"];
        // The Secret files belong to root; fsGroup lets the container's group read them (mode 0440). A
        // security context of the user's that names its own group keeps it.
        if pod["securityContext"]["fsGroup"].is_null() {
            pod["securityContext"]["fsGroup"] = json!(65532);
        }
        pod["volumes"] = Value::Array(volumes);
    }
    deployment
}

/// A service container's resources when its spec gives none: a request small enough that two shops (six
/// pods) take 150 millicores of a 2-CPU node, and a memory limit far above what a service uses (tens of
/// MiB under load, BENCHMARKS.md), so a leak is stopped before it starves the node. No CPU limit: a
/// throttled consumer only falls behind.
fn default_resources() -> Value {
    json!({"requests": {"cpu": "25m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}})
}

/// How long a stopping pod keeps serving before its SIGTERM (the `preStop` sleep).
pub const PRE_STOP_SECONDS: i64 = 5;

fn probe(path: &str, period_seconds: i32) -> Value {
    json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": period_seconds, "failureThreshold": 3})
}

fn build_env(spec: &ValidSpec, plan: &ServicePlan) -> Value {
    let from_secret = |name: &str, key: &str| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": plan.secret_name, "key": key}}});
    let mut env = vec![
        // All interfaces: probes and Services reach the pod IP, `kubectl port-forward` reaches localhost.
        json!({"name": env::LISTEN_ADDR, "value": format!("0.0.0.0:{}", wiring::HTTP_PORT)}),
        json!({"name": env::LOG_FORMAT, "value": "json"}),
        from_secret(env::DATABASE_HOST, secret_keys::HOST),
        from_secret(env::DATABASE_PORT, secret_keys::PORT),
        from_secret(env::DATABASE_NAME, secret_keys::DBNAME),
        from_secret(env::DATABASE_USER, secret_keys::USERNAME),
        from_secret(env::DATABASE_PASSWORD, secret_keys::PASSWORD),
        from_secret(env::DATABASE_SCHEMA, secret_keys::SCHEMA),
        json!({"name": env::DATABASE_SSLMODE, "value": spec.ssl_mode.as_libpq()}),
        json!({"name": env::KAFKA_BOOTSTRAP_SERVERS, "value": spec.bootstrap_servers}),
        json!({"name": env::KAFKA_TOPIC, "value": spec.topic.name}),
    ];
    if let Some(group) = &plan.group_id {
        env.push(json!({"name": env::KAFKA_GROUP_ID, "value": group}));
        // The pod's name: a container restarted in its pod comes back as the same group member.
        env.push(json!({"name": env::KAFKA_GROUP_INSTANCE_ID, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
    }
    env.extend(expose::public_url_env(spec));
    env.extend(security::env(spec, plan));
    env.extend(tracing::env(spec, plan));
    Value::Array(env)
}

/// The JSON above is written to match the k8s-openapi types; a mismatch is a bug caught by every test.
fn typed<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("built objects match the Kubernetes types")
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
