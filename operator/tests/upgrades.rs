//! Upgrading the operator rolls nothing, against the real API server, Kafka and PostgreSQL with the
//! controller in-process as the chart's ServiceAccount. Two releases are stood in for by two default
//! image tags (`--default-image-tag`): a resource deployed by release A keeps A's images under release B,
//! however often B reconciles it and whatever else B applies, until `spec.imageTag` names B; a service
//! with its own `image` is touched by neither. No nodes run these pods, so the Deployments' templates and
//! the status are what is checked.

#[path = "support/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{delete_and_wait, generation, patch_spec, poke, shop_json};
use ordersystem_e2e::{metrics, wait};
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::metrics::Metrics;
use serde_json::json;

/// The default tag of the release that first deploys the resource.
const RELEASE_A: &str = "1.0.0-release-a";
/// The default tag of the release it is upgraded to.
const RELEASE_B: &str = "2.0.0-release-b";
/// Shipping's own image, which no release and no tag may change.
const PINNED: &str = "registry.example/ordersystem/shipping:pinned";
/// The Deployments by service.
const DEPLOYMENTS: [(&str, &str); 3] = [
    ("order", "shop-order"),
    ("invoicing", "shop-invoicing"),
    ("shipping", "shop-shipping"),
];

fn image_of(release: &str, service: &str) -> String {
    format!("ghcr.io/ordersystem/{service}:{release}")
}

/// A Deployment's container image.
fn template_image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// A Deployment's pod template, as JSON: equal before and after means nothing rolled.
fn template(d: &Deployment) -> serde_json::Value {
    serde_json::to_value(d.spec.as_ref().map(|s| &s.template)).expect("a pod template serializes")
}

/// What the test watches: its namespace and the resource `shop` in it.
struct World {
    ns: TestNamespace,
    api: Api<OrderSystem>,
}

impl World {
    /// Each service's Deployment, once all three exist (order is rolled out last).
    async fn deployments(&self) -> BTreeMap<&'static str, Deployment> {
        wait::until_some("all three Deployments", Duration::from_secs(90), || async {
            let mut found = BTreeMap::new();
            for (service, name) in DEPLOYMENTS {
                found.insert(service, self.ns.deployment(name).await?);
            }
            Some(found)
        })
        .await
    }

    /// Waits until every Deployment's image is `wanted(service)`; the Deployments then.
    async fn deployments_with(
        &self,
        what: &str,
        wanted: impl Fn(&str) -> String,
    ) -> BTreeMap<&'static str, Deployment> {
        wait::until_ok(what, Duration::from_secs(90), || async {
            let deployments = self.deployments().await;
            let images: BTreeMap<_, _> = deployments.iter().map(|(s, d)| (*s, template_image(d))).collect();
            if images.iter().all(|(service, image)| *image == wanted(service)) {
                Ok(deployments)
            } else {
                Err(format!("images: {images:?}"))
            }
        })
        .await
    }

    /// Waits until `status.services` shows `wanted(service)` for every service.
    async fn status_shows(&self, what: &str, wanted: impl Fn(&str) -> String) {
        wait::until_ok(what, Duration::from_secs(60), || async {
            let os = self.api.get("shop").await.map_err(|e| e.to_string())?;
            let services = os
                .status
                .and_then(|s| s.services)
                .ok_or("no services in status")?;
            let shown = BTreeMap::from([
                ("order", services.order.image),
                ("invoicing", services.invoicing.image),
                ("shipping", services.shipping.image),
            ]);
            if shown.iter().all(|(service, image)| *image == wanted(service)) {
                Ok(())
            } else {
                Err(format!("status shows: {shown:?}"))
            }
        })
        .await;
    }
}

/// Reconciles started and finished by the operator counting into `metrics`.
fn reconciles(metrics: &Metrics) -> (f64, f64) {
    let text = metrics.encode();
    (
        metrics::sum(&text, "ordersystem_operator_reconciles"),
        metrics::sum(&text, "ordersystem_operator_reconcile_duration_seconds_count"),
    )
}

/// Makes the operator counting into `metrics` reconcile `shop` and waits until that reconcile finished.
async fn reconcile_now(api: &Api<OrderSystem>, metrics: &Metrics) {
    let (before, _) = reconciles(metrics);
    poke(api).await;
    wait::until_ok(
        "a reconcile after the poke, finished",
        Duration::from_secs(60),
        || async {
            let (started, finished) = reconciles(metrics);
            if started > before && finished >= started {
                Ok(())
            } else {
                Err(format!("started {started}, finished {finished}, before {before}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn an_operator_upgrade_rolls_nothing_until_the_spec_names_the_new_images() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "upgrade").await;
    let world = World {
        api: ns.systems(),
        ns,
    };
    let topic = ordersystem_e2e::names::unique("upgrade");
    let mut os = shop_json(&topic, &ordersystem_e2e::env::kafka_bootstrap(), "Delete");
    os["spec"]["shipping"] = json!({"image": PINNED});
    let own_or = |release: &'static str| {
        move |service: &str| {
            if service == "shipping" {
                PINNED.to_string()
            } else {
                image_of(release, service)
            }
        }
    };

    // Release A deploys the resource: its default tag for the services without an image.
    let metrics_a = Arc::new(Metrics::default());
    let release_a =
        operator::start_with_default_image_tag(&client, &world.ns.name, metrics_a.clone(), RELEASE_A).await;
    world.ns.create_system(os).await;
    world
        .deployments_with("release A's images", own_or(RELEASE_A))
        .await;
    world
        .status_shows("release A's images in status", own_or(RELEASE_A))
        .await;
    // At rest under A: what B finds.
    reconcile_now(&world.api, &metrics_a).await;
    let deployed = world.deployments().await;
    drop(release_a);

    // Release B takes over: however often it reconciles, nothing rolls.
    let metrics = Arc::new(Metrics::default());
    let _release_b =
        operator::start_with_default_image_tag(&client, &world.ns.name, metrics.clone(), RELEASE_B).await;
    for _ in 0..3 {
        reconcile_now(&world.api, &metrics).await;
    }
    let after = world.deployments().await;
    for (service, before) in &deployed {
        let now = &after[service];
        assert_eq!(
            template_image(now),
            own_or(RELEASE_A)(service),
            "{service} under release B"
        );
        assert_eq!(
            generation(now),
            generation(before),
            "{service}'s Deployment was changed by release B"
        );
    }
    world
        .status_shows("release A's images in status under release B", own_or(RELEASE_A))
        .await;

    // B applies what the spec changes, and still keeps A's image: a scale is no roll.
    patch_spec(&world.api, json!({"invoicing": {"replicas": 3}})).await;
    let invoicing = wait::until_some(
        "invoicing scaled to 3 by release B",
        Duration::from_secs(60),
        || async {
            let d = world.ns.deployment("shop-invoicing").await?;
            (d.spec.as_ref()?.replicas == Some(3)).then_some(d)
        },
    )
    .await;
    assert_eq!(
        template(&invoicing),
        template(&deployed["invoicing"]),
        "invoicing's pod template changed"
    );

    // The spec names release B: every service without its own image moves, the pinned one does not.
    let patched = patch_spec(&world.api, json!({"imageTag": RELEASE_B})).await;
    assert_eq!(
        patched.spec.image_tag.as_deref(),
        Some(RELEASE_B),
        "the API server kept spec.imageTag (a CRD without the field would have pruned it)"
    );
    world
        .deployments_with("release B's images", own_or(RELEASE_B))
        .await;
    world
        .status_shows("release B's images in status", own_or(RELEASE_B))
        .await;
    reconcile_now(&world.api, &metrics).await;
    let moved = world.deployments().await;
    assert_eq!(
        generation(&moved["shipping"]),
        generation(&deployed["shipping"]),
        "the pinned shipping Deployment was changed"
    );

    // Without the tag again the services keep what they run: removing it is no roll back to A.
    patch_spec(&world.api, json!({"imageTag": null})).await;
    reconcile_now(&world.api, &metrics).await;
    reconcile_now(&world.api, &metrics).await;
    let kept = world.deployments().await;
    for (service, before) in &moved {
        assert_eq!(
            template_image(&kept[service]),
            own_or(RELEASE_B)(service),
            "{service} without imageTag"
        );
        assert_eq!(
            generation(&kept[service]),
            generation(before),
            "{service} rolled without imageTag"
        );
    }
    world
        .status_shows("release B's images in status without imageTag", own_or(RELEASE_B))
        .await;

    delete_and_wait(&world.api, 90, "the resource deleted with its topic and schemas").await;
}
