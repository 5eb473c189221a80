//! `spec.expose` and `spec.networkPolicy`: how people reach the services' pages from outside the cluster
//! (an Ingress, a Gateway API HTTPRoute, or both, each service at the host and path given), and which
//! traffic the services' pods may send and receive.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where each service's pages and JSON API are published, and through what. A service with a `host`
/// gets an Ingress and/or an HTTPRoute named like its Deployment; its pages then link to the other
/// services by their public URLs (`https://` with `ingress.tlsSecretName` or `https: true`, `http://`
/// otherwise) and it serves under its `path`, so one host can carry all three.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.ingress) || has(self.httpRoute)",
        "message": "expose needs ingress, httpRoute or both: the objects that route the public hosts to the services"
    }
]))]
pub struct ExposeSpec {
    /// An Ingress per exposed service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressExpose>,
    /// A Gateway API HTTPRoute (`gateway.networking.k8s.io/v1`) per exposed service, attached to the
    /// Gateways given. The cluster must serve the Gateway API CRDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteExpose>,
    /// True when the Gateway terminates TLS for these hosts, so the public URLs are `https://`; implied by
    /// `ingress.tlsSecretName`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub https: bool,
    /// The order service's web shop and API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<PublicEndpoint>,
    /// The invoicing service's pages and API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoicing: Option<PublicEndpoint>,
    /// The shipping service's pages and API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<PublicEndpoint>,
}

/// Settings of the Ingresses.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressExpose {
    /// The IngressClass; the cluster's default class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// Annotations of the Ingresses, for the controller (e.g. cert-manager's `cert-manager.io/issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Secret (`kubernetes.io/tls`, in this namespace) with the certificate for the hosts: the Ingresses
    /// terminate TLS with it and the public URLs are `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub tls_secret_name: Option<String>,
}

/// Settings of the HTTPRoutes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteExpose {
    /// The Gateways (or their listeners) the routes attach to.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<GatewayRef>,
}

/// A Gateway, as an HTTPRoute's `parentRefs` names it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; this resource's when absent. The Gateway's listener must allow routes from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// One listener of the Gateway; all that accept the route when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// Where one service is published: a host, and a path under it (`/` when absent). With a path the service
/// serves its pages under it (`/invoicing/`, `/invoicing/42`), so no rewrite is needed in the Ingress
/// controller or the Gateway.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicEndpoint {
    /// Fully qualified host name, e.g. `shop.example.com` (no wildcard, no port).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: String,
    /// Path prefix, e.g. `/invoicing`: starts with `/`, segments of `a-z A-Z 0-9 - . _ ~`, no trailing `/`
    /// (except `/` itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/$|^(/[A-Za-z0-9._~-]+)+$"))]
    pub path: Option<String>,
}

impl PublicEndpoint {
    /// The path prefix: `/` when absent.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    /// The URL people use, with `scheme` (`http` or `https`), without a trailing `/` after a path.
    pub fn url(&self, scheme: &str) -> String {
        match self.path() {
            "/" => format!("{scheme}://{}/", self.host),
            path => format!("{scheme}://{}{path}", self.host),
        }
    }
}

/// NetworkPolicies for the services' pods: each pod accepts connections only on its HTTP port (pages, JSON
/// API, `/metrics`) from the peers in `httpFrom`, and connects only to DNS, to the Kafka brokers' ports
/// (those in `kafka.bootstrapServers`) and to PostgreSQL's port (from the admin Secret). Enforced only
/// where the cluster's network plugin implements NetworkPolicies. Probes from the node's kubelet are
/// allowed by those plugins whatever a policy says.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Who may reach the services' HTTP port: e.g. the ingress controller's namespace and Prometheus.
    /// Any pod or address when absent; nobody (but the node) when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_from: Option<Vec<NetworkPolicyPeer>>,
    /// Where the Kafka brokers are, to narrow the egress on their ports; any address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_peers: Option<Vec<NetworkPolicyPeer>>,
    /// Where PostgreSQL is, to narrow the egress on its port; any address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_peers: Option<Vec<NetworkPolicyPeer>>,
}
