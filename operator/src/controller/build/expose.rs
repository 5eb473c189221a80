//! The ways in and out of a service's pods: its Ingress and HTTPRoute from `spec.expose`, the public URLs
//! its pages link by, and its NetworkPolicy from `spec.networkPolicy`.

use ordersystem_contract::wiring::{self, env};
use serde_json::{Value, json};

use super::super::validate::{ServicePlan, ValidSpec};
use super::metadata;
use crate::names::{self, Service};

/// The Ingress of a published service, when `spec.expose.ingress` is set.
pub fn ingress(spec: &ValidSpec, plan: &ServicePlan) -> Option<Value> {
    let ingress = spec.expose.as_ref()?.ingress.as_ref()?;
    let endpoint = spec.endpoint(plan.service)?;
    let mut object = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": metadata(spec, plan),
        "spec": {
            "rules": [{
                "host": endpoint.host,
                "http": {"paths": [{
                    // Prefix matches the path and everything under it, segment by segment: `/invoicing`
                    // and `/invoicing/42`, not `/invoicingx`.
                    "path": endpoint.path(),
                    "pathType": "Prefix",
                    "backend": {"service": {"name": plan.child_name, "port": {"name": "http"}}},
                }]},
            }],
        },
    });
    if let Some(class) = &ingress.class_name {
        object["spec"]["ingressClassName"] = json!(class);
    }
    if let Some(secret) = &ingress.tls_secret_name {
        object["spec"]["tls"] = json!([{"hosts": [endpoint.host], "secretName": secret}]);
    }
    if let Some(annotations) = &ingress.annotations {
        object["metadata"]["annotations"] = json!(annotations);
    }
    Some(object)
}

/// The Gateway API HTTPRoute of a published service, when `spec.expose.httpRoute` is set.
pub fn http_route(spec: &ValidSpec, plan: &ServicePlan) -> Option<Value> {
    let route = spec.expose.as_ref()?.http_route.as_ref()?;
    let endpoint = spec.endpoint(plan.service)?;
    Some(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": metadata(spec, plan),
        "spec": {
            "parentRefs": route.parent_refs,
            "hostnames": [endpoint.host],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": endpoint.path()}}],
                "backendRefs": [{"name": plan.child_name, "port": wiring::HTTP_PORT}],
            }],
        },
    }))
}

/// The variables that tell a service every published service's URL: its own is the path it serves
/// under, the others' are where its pages link to.
pub fn public_url_env(spec: &ValidSpec) -> Vec<Value> {
    Service::ALL
        .into_iter()
        .filter_map(|service| {
            let url = spec.public_url(service)?;
            Some(json!({"name": public_url_var(service), "value": url}))
        })
        .collect()
}

/// The variable carrying `service`'s public URL.
fn public_url_var(service: Service) -> &'static str {
    match service {
        Service::Order => env::ORDER_PUBLIC_URL,
        Service::Invoicing => env::INVOICING_PUBLIC_URL,
        Service::Shipping => env::SHIPPING_PUBLIC_URL,
    }
}

/// The NetworkPolicy of a service's pods, when `spec.networkPolicy` is set: HTTP in, DNS, Kafka and
/// PostgreSQL out. `postgres_port` comes from the admin Secret.
pub fn network_policy(spec: &ValidSpec, plan: &ServicePlan, postgres_port: u16) -> Option<Value> {
    let policy = spec.network_policy.as_ref()?;
    let http = json!([{"protocol": "TCP", "port": "http"}]);
    // In a NetworkPolicy a rule without `from` admits every source, so "nobody" is no rule at all.
    let ingress = match &policy.http_from {
        None => json!([{"ports": http}]),
        Some(peers) if peers.is_empty() => json!([]),
        Some(peers) => json!([{"ports": http, "from": peers}]),
    };
    let tcp = |ports: &[u16]| -> Value {
        ports
            .iter()
            .map(|port| json!({"protocol": "TCP", "port": port}))
            .collect()
    };
    let egress_rule = |ports: Value, peers: &Option<Vec<_>>| match peers.as_deref() {
        None | Some([]) => json!({"ports": ports}),
        Some(peers) => json!({"ports": ports, "to": peers}),
    };
    Some(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(spec, plan),
        "spec": {
            "podSelector": {"matchLabels": names::selector_labels(&spec.name, plan.service)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                egress_rule(tcp(&spec.kafka_ports()), &policy.kafka_peers),
                egress_rule(tcp(&[postgres_port]), &policy.postgres_peers),
            ],
        },
    }))
}

#[cfg(test)]
#[path = "expose_tests.rs"]
mod tests;
