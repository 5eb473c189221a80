//! `spec.expose` and `spec.networkPolicy` on the real node: the API server stores an Ingress and a Gateway
//! API HTTPRoute per published service (its CRDs from the Gateway API's own module), each leading to the
//! Service whose endpoints are that service's ready pods; a service published under a path serves its
//! pages there, with links to the others by their public URLs; the NetworkPolicies select exactly the pods
//! of their service; and dropping both from the spec removes every one of those objects. The operator is
//! installed with the chart's `serviceImages.registry` naming a mirror, and the pods run the images it names.
//!
//! No Ingress or Gateway controller runs here, so the test sends its requests to the Services' cluster IPs
//! with the paths a controller would pass through. The node's bridge CNI does not enforce NetworkPolicies:
//! the test proves the API server accepts them and that they select the right pods, not that packets are
//! dropped.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use ordersystem_api::names::{self, Service as ShopService};
use ordersystem_e2e::cluster::{self, ready_pods};
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::real_node;
use ordersystem_e2e::shop::{Service, all_stored_once, place_orders};
use ordersystem_e2e::wait;
use serde_json::json;

const SYSTEM: &str = "shop";
/// The registry the chart points the operator at; the node's containerd knows the project's images under
/// it too (`real_node::tag_image`), as a pull-through mirror would serve them.
const MIRROR: &str = "mirror.ordersystem.test/ordersystem";
/// How long the operator may take to act on a spec change.
const WITHIN: Duration = Duration::from_secs(90);

fn http_routes(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// `http://<cluster IP>:8080` of the shop's Service for `service`.
async fn cluster_url(client: &kube::Client, ns: &str, service: ShopService) -> String {
    let services: Api<KubeService> = Api::namespaced(client.clone(), ns);
    let found = services
        .get(&names::child_name(SYSTEM, service))
        .await
        .expect("the Service");
    let ip = found.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
    format!("http://{ip}:{}", ordersystem_contract::wiring::HTTP_PORT)
}

/// The pod IPs behind the Service `name`, as its EndpointSlices list them.
async fn endpoint_ips(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let listed = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .expect("EndpointSlices");
    let mut ips: Vec<String> = listed
        .items
        .into_iter()
        .flat_map(|slice| slice.endpoints.unwrap_or_default())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses)
        .collect();
    ips.sort();
    ips
}

fn pod_ips(pods: &[Pod]) -> Vec<String> {
    let mut ips: Vec<String> = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips
}

/// A GET without following redirects: status, `Location`, body; or why there was no answer.
async fn try_get(url: &str) -> Result<(u16, Option<String>, String), String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().expect("ASCII").to_string());
    let body = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok((status, location, body))
}

/// [`try_get`] of a service that must answer; a Service's cluster IP may take kube-proxy a moment after
/// its endpoints are ready, so a refused connection is tried again for a while.
async fn get(url: &str) -> (u16, Option<String>, String) {
    wait::until_ok(&format!("an answer to GET {url}"), WITHIN, || try_get(url)).await
}

#[tokio::test]
async fn published_services_get_routes_paths_links_policies_and_mirrored_images_and_lose_the_routes_with_the_spec()
 {
    let shop = NodeShop::namespaces("expose").await;
    let project = names::ServiceImages::default();
    let mirror = names::ServiceImages {
        registry: MIRROR.into(),
        ..names::ServiceImages::default()
    };
    for service in ShopService::ALL {
        real_node::tag_image(&project.default_image(service), &mirror.default_image(service));
    }
    shop.install_operator(&[&format!("serviceImages.registry={MIRROR}")]);
    let (client, ns) = (shop.client.clone(), shop.shop_ns.clone());
    shop.create_system(
        SYSTEM,
        2,
        json!({
            "expose": {
                "ingress": {"className": "nginx", "annotations": {"example.com/team": "shop"}},
                "httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateways"}]},
                "order": {"host": "shop.test"},
                "invoicing": {"host": "shop.test", "path": "/invoicing"},
                "shipping": {"host": "shipping.test"}
            },
            "networkPolicy": {
                "httpFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]
            }
        }),
    )
    .await;
    shop.ready(SYSTEM).await;

    // An Ingress and an HTTPRoute per service, at its host and path, leading to the Service whose ready
    // endpoints are exactly the service's ready pods.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let routes = http_routes(&client, &ns);
    for (service, host, path) in [
        (ShopService::Order, "shop.test", "/"),
        (ShopService::Invoicing, "shop.test", "/invoicing"),
        (ShopService::Shipping, "shipping.test", "/"),
    ] {
        let name = names::child_name(SYSTEM, service);
        let ingress = ingresses.get(&name).await.expect("the Ingress");
        let owner = ingress.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owner.first().map(|o| o.kind.as_str()), Some("OrderSystem"));
        assert_eq!(
            ingress
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .get("example.com/team"),
            Some(&"shop".to_string())
        );
        let spec = ingress.spec.expect("an Ingress spec");
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let rule = &spec.rules.expect("rules")[0];
        assert_eq!(rule.host.as_deref(), Some(host));
        let http_path = &rule.http.as_ref().expect("http").paths[0];
        assert_eq!(
            (http_path.path.as_deref(), http_path.path_type.as_str()),
            (Some(path), "Prefix")
        );
        let backend = http_path.backend.service.as_ref().expect("a Service backend");
        assert_eq!(backend.name, name);
        let pods = ready_pods(&client, &ns, SYSTEM, service.as_str(), 1).await;
        assert_eq!(
            endpoint_ips(&client, &ns, &backend.name).await,
            pod_ips(&pods),
            "{name}"
        );

        let route = routes.get(&name).await.expect("the HTTPRoute");
        assert_eq!(route.data["spec"]["hostnames"], json!([host]));
        assert_eq!(
            route.data["spec"]["rules"][0]["matches"][0]["path"]["value"],
            json!(path)
        );
        assert_eq!(
            route.data["spec"]["rules"][0]["backendRefs"][0]["name"],
            json!(name)
        );
        assert_eq!(route.data["spec"]["parentRefs"][0]["name"], json!("public"));
    }

    // Each NetworkPolicy selects exactly its service's pods.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for service in ShopService::ALL {
        let name = names::child_name(SYSTEM, service);
        let policy = policies.get(&name).await.expect("the NetworkPolicy");
        let selector = policy
            .spec
            .and_then(|s| s.pod_selector)
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let selected = pods
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .expect("pods")
            .items;
        let running = ready_pods(&client, &ns, SYSTEM, service.as_str(), 1).await;
        let mut selected_names: Vec<_> = selected.iter().filter_map(|p| p.metadata.name.clone()).collect();
        let mut running_names: Vec<_> = running.iter().filter_map(|p| p.metadata.name.clone()).collect();
        selected_names.sort();
        running_names.sort();
        assert_eq!(
            selected_names, running_names,
            "{name} selects its service's pods and no other"
        );
    }

    // Invoicing serves its pages under its path, probes at the root; every page links to the others by
    // their public URLs.
    let invoicing = cluster_url(&client, &ns, ShopService::Invoicing).await;
    let (status, location, _) = get(&format!("{invoicing}/invoicing")).await;
    assert_eq!((status, location.as_deref()), (308, Some("/invoicing/")));
    let (status, _, page) = get(&format!("{invoicing}/invoicing/")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"href="http://shop.test/""#),
        "a link to order:\n{page}"
    );
    assert!(
        page.contains(r#"href="http://shipping.test/""#),
        "a link to shipping:\n{page}"
    );
    assert!(
        page.contains(r#"href="/invoicing/""#),
        "home under its path:\n{page}"
    );
    assert_eq!(get(&format!("{invoicing}/healthz")).await.0, 200);
    // The access log: one JSON line per request, with the path as it was requested and the route it took.
    let invoicing_pod = ready_pods(&client, &ns, SYSTEM, ShopService::Invoicing.as_str(), 1)
        .await
        .remove(0);
    let pod_name = invoicing_pod.metadata.name.clone().expect("a name");
    wait::until_ok("the access log line of GET /invoicing/", WITHIN, || async {
        let log = cluster::pod_log(&ns, &pod_name);
        let logged = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["message"] == "request" && line["path"] == "/invoicing/");
        match logged {
            Some(line)
                if line["route"] == "/"
                    && line["status"] == 200
                    && line["method"] == "GET"
                    && line["duration_ms"].is_f64() =>
            {
                Ok(())
            }
            Some(line) => Err(format!("logged as {line}")),
            None => Err(format!(
                "not logged; last lines:\n{}",
                log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
            )),
        }
    })
    .await;
    let order = cluster_url(&client, &ns, ShopService::Order).await;
    let (_, _, page) = get(&format!("{order}/")).await;
    assert!(
        page.contains(r#"href="http://shop.test/invoicing/""#),
        "order links to invoicing:\n{page}"
    );
    let placed = place_orders(&Service::new(order.clone()), 0..10).await;
    all_stored_once(
        &Service::new(format!("{invoicing}/invoicing")),
        "/api/invoices",
        &placed,
    )
    .await;

    // Without expose and networkPolicy, every one of those objects goes and the pages return to the root.
    shop.systems()
        .patch(
            SYSTEM,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expose": null, "networkPolicy": null}})),
        )
        .await
        .expect("drop expose and networkPolicy");
    let selector = format!("app.kubernetes.io/instance={SYSTEM}");
    wait::until_ok(
        "the Ingresses, HTTPRoutes and NetworkPolicies removed",
        WITHIN,
        || async {
            let lp = ListParams::default().labels(&selector);
            let left = (
                ingresses.list(&lp).await.map_err(|e| e.to_string())?.items.len(),
                routes.list(&lp).await.map_err(|e| e.to_string())?.items.len(),
                policies.list(&lp).await.map_err(|e| e.to_string())?.items.len(),
            );
            if left == (0, 0, 0) {
                Ok(())
            } else {
                Err(format!("left: {left:?}"))
            }
        },
    )
    .await;
    wait::until_ok("invoicing's pages back at the root", WITHIN, || async {
        // The Service may have no ready endpoint for a moment while the pods roll.
        match try_get(&format!("{invoicing}/")).await? {
            (200, _, page) if !page.contains("http://shop.test/") => Ok(()),
            (status, _, page) => Err(format!(
                "{status}: {}",
                page.lines().take(15).collect::<Vec<_>>().join("\n")
            )),
        }
    })
    .await;
    shop.delete_and_uninstall(SYSTEM).await;
    for service in ShopService::ALL {
        real_node::untag_image(&mirror.default_image(service));
    }
}
