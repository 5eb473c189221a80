use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::super::{Observed, Removable, build};
use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
use crate::controller::validate::{ValidSpec, validate};
use crate::names::Service;

/// MINIMAL with `extra` appended under `spec:` (indented two spaces).
fn with(extra: &str) -> ValidSpec {
    validate(&os_from_yaml(&format!("{MINIMAL}{extra}"))).expect("valid")
}

const EXPOSED: &str = r#"  expose:
    ingress: {className: nginx, tlsSecretName: shop-tls, annotations: {cert-manager.io/issuer: letsencrypt}}
    httpRoute: {parentRefs: [{name: public, namespace: gateways, sectionName: https}]}
    order: {host: shop.example.com}
    invoicing: {host: shop.example.com, path: /invoicing}
"#;

fn ready(_: &ValidSpec) -> Observed {
    Observed {
        secret_hashes: Service::ALL.into_iter().map(|s| (s, "h".to_string())).collect(),
        topic_ready: true,
        schemas_ready: Service::ALL.into_iter().collect(),
        deployed: Service::ALL.into_iter().collect(),
        postgres_port: Some(6432),
        kafka_secret_hashes: BTreeMap::new(),
    }
}

fn env(deployment: &Deployment) -> BTreeMap<String, Option<String>> {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

fn removed(desired: &super::super::Desired, kind: Removable) -> Vec<&str> {
    desired
        .to_delete
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, name)| name.as_str())
        .collect()
}

#[test]
fn a_published_service_gets_an_ingress_and_an_http_route_at_its_host_and_path() {
    let spec = with(EXPOSED);
    let desired = build(&spec, &ready(&spec));
    let ingresses: Vec<_> = desired
        .ingresses
        .iter()
        .map(|i| serde_json::to_value(i).unwrap())
        .collect();
    assert_eq!(
        ingresses.len(),
        2,
        "order and invoicing are published, shipping is not"
    );
    let invoicing = ingresses
        .iter()
        .find(|i| i["metadata"]["name"] == "shop-invoicing")
        .expect("invoicing's Ingress");
    assert_eq!(
        invoicing["spec"],
        json!({
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [{
                "path": "/invoicing", "pathType": "Prefix",
                "backend": {"service": {"name": "shop-invoicing", "port": {"name": "http"}}},
            }]}}],
        })
    );
    assert_eq!(
        invoicing["metadata"]["annotations"]["cert-manager.io/issuer"],
        "letsencrypt"
    );
    assert_eq!(invoicing["metadata"]["ownerReferences"][0]["kind"], "OrderSystem");
    let route = desired
        .http_routes
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("shop-order"))
        .expect("order's HTTPRoute");
    assert_eq!(
        route.types.as_ref().map(|t| t.api_version.as_str()),
        Some("gateway.networking.k8s.io/v1")
    );
    assert_eq!(
        route.data["spec"],
        json!({
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["shop.example.com"],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": "shop-order", "port": 8080}],
            }],
        })
    );
    assert_eq!(removed(&desired, Removable::Ingress), vec!["shop-shipping"]);
    assert_eq!(removed(&desired, Removable::HttpRoute), vec!["shop-shipping"]);
}

#[test]
fn every_service_is_told_the_public_urls_and_https_follows_tls() {
    let spec = with(EXPOSED);
    let desired = build(&spec, &ready(&spec));
    for deployment in &desired.deployments {
        let env = env(deployment);
        assert_eq!(
            env["ORDER_PUBLIC_URL"].as_deref(),
            Some("https://shop.example.com/")
        );
        assert_eq!(
            env["INVOICING_PUBLIC_URL"].as_deref(),
            Some("https://shop.example.com/invoicing")
        );
        assert!(
            !env.contains_key("SHIPPING_PUBLIC_URL"),
            "shipping is not published"
        );
    }
    let plain = with(
        "  expose:\n    httpRoute: {parentRefs: [{name: gw}]}\n    shipping: {host: ship.example.com}\n",
    );
    let desired = build(&plain, &ready(&plain));
    assert_eq!(
        env(&desired.deployments[0])["SHIPPING_PUBLIC_URL"].as_deref(),
        Some("http://ship.example.com/")
    );
    assert!(desired.ingresses.is_empty());
    assert_eq!(removed(&desired, Removable::Ingress).len(), 3);
}

#[test]
fn without_expose_nothing_is_published_and_leftovers_are_removed() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &ready(&spec));
    assert!(desired.ingresses.is_empty() && desired.http_routes.is_empty());
    for deployment in &desired.deployments {
        assert!(env(deployment).keys().all(|k| !k.ends_with("_PUBLIC_URL")));
    }
    for kind in [Removable::Ingress, Removable::HttpRoute, Removable::NetworkPolicy] {
        assert_eq!(
            removed(&desired, kind),
            vec!["shop-invoicing", "shop-shipping", "shop-order"]
        );
    }
}

#[test]
fn two_services_at_one_host_and_path_are_refused() {
    let yaml = format!(
        "{MINIMAL}  expose:\n    ingress: {{}}\n    order: {{host: shop.example.com}}\n    shipping: {{host: shop.example.com, path: /}}\n"
    );
    let invalid = validate(&os_from_yaml(&yaml)).expect_err("refused");
    assert_eq!(
        invalid.to_string(),
        "spec.expose publishes shipping and order both at shop.example.com/: give each its own host or path"
    );
}

#[test]
fn a_network_policy_admits_http_only_and_lets_out_dns_kafka_and_postgres() {
    let spec = with(
        "  networkPolicy:\n    httpFrom: [{namespaceSelector: {matchLabels: {name: ingress}}}]\n    postgresPeers: [{ipBlock: {cidr: 10.0.0.5/32}}]\n",
    );
    let desired = build(&spec, &ready(&spec));
    assert_eq!(desired.network_policies.len(), 3);
    let shipping = desired
        .network_policies
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .find(|p| p["metadata"]["name"] == "shop-shipping")
        .expect("shipping's policy");
    assert_eq!(
        shipping["spec"],
        json!({
            "podSelector": {"matchLabels": crate::names::selector_labels("shop", Service::Shipping)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "ports": [{"protocol": "TCP", "port": "http"}],
                "from": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}],
            }],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"ports": [{"protocol": "TCP", "port": 9092}]},
                {"ports": [{"protocol": "TCP", "port": 6432}], "to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}]},
            ],
        })
    );
    assert!(removed(&desired, Removable::NetworkPolicy).is_empty());
}

#[test]
fn an_empty_http_from_admits_nobody_and_an_unknown_postgres_port_keeps_the_policy_in_place() {
    let spec = with("  networkPolicy: {httpFrom: []}\n");
    let desired = build(&spec, &ready(&spec));
    let policy = serde_json::to_value(&desired.network_policies[0]).unwrap();
    assert_eq!(
        policy["spec"]["ingress"],
        json!([]),
        "a rule without from would admit everyone"
    );
    let unknown = Observed {
        postgres_port: None,
        ..ready(&spec)
    };
    let desired = build(&spec, &unknown);
    assert!(desired.network_policies.is_empty());
    assert!(
        removed(&desired, Removable::NetworkPolicy).is_empty(),
        "the policy in place is neither rebuilt nor removed"
    );
}

#[test]
fn consumers_name_themselves_in_their_group_by_their_pod() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &ready(&spec));
    for deployment in &desired.deployments {
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        let instance = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "KAFKA_GROUP_INSTANCE_ID");
        let consumer = deployment.metadata.name.as_deref() != Some("shop-order");
        assert_eq!(instance.is_some(), consumer, "{:?}", deployment.metadata.name);
        if let Some(var) = instance {
            let field = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
            assert_eq!(field.map(|f| f.field_path.as_str()), Some("metadata.name"));
        }
    }
}
