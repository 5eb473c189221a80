//! An operator upgrade on the real node, with two builds of distinct tags and revisions, under a steady order
//! load. The first build is the test bed's (`e2e/images/build-images.sh`, tagged with the workspace version);
//! the second is built here by the same script with the tag `<version>-next` and a revision of its own. Each
//! pod says which build it runs through its `build_info` metric, which reads the revision its image carries.
//!
//! What the README ("Upgrading the operator") promises, checked in order while orders flow:
//! 1. `helm upgrade` to the new operator build, whose default service tag is the new one, replaces the
//!    operator and rolls nothing: every service Deployment keeps its generation, every pod its uid and build;
//! 2. `spec.imageTag` set to the new tag rolls the three services to the new build, and status names it;
//! 3. not one order request failed, and every order placed is invoiced and shipped exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_api::crd::OrderSystemStatus;
use ordersystem_api::names::{Service as ShopService, child_name};
use ordersystem_e2e::cluster::{self, READY_WITHIN, is_ready, pods};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::shop::{SteadyLoad, all_stored_once};
use ordersystem_e2e::upgrade::{image, operator_pod, revision, uid};
use ordersystem_e2e::{metrics, wait};
use serde_json::json;

const SYSTEM: &str = "shop";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SERVICES: [ShopService; 3] = ShopService::ALL;

/// The live (not terminating) pods of a service.
async fn live_pods(client: &kube::Client, ns: &str, service: ShopService) -> Vec<Pod> {
    pods(client, ns, SYSTEM, service.as_str())
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Checks that status records the image of `tag` for every service.
fn assert_recorded_images(status: &OrderSystemStatus, tag: &str, why: &str) {
    for service in SERVICES {
        let recorded = status
            .services
            .as_ref()
            .map(|s| s.of(service).image.clone())
            .unwrap_or_default();
        assert_eq!(
            recorded,
            format!("ghcr.io/ordersystem/{}:{tag}", service.as_str()),
            "{why}"
        );
    }
}

/// Per service: its pods' uids, each pod's revision, and its Deployment's generation.
#[derive(Debug, PartialEq)]
struct Running {
    uids: BTreeSet<String>,
    revisions: BTreeSet<String>,
    generation: i64,
}

async fn running(client: &kube::Client, mode: &Mode, ns: &str) -> BTreeMap<ShopService, Running> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut all = BTreeMap::new();
    for service in SERVICES {
        let pods = live_pods(client, ns, service).await;
        let mut revisions = BTreeSet::new();
        for pod in &pods {
            revisions.insert(revision(mode, pod).await.expect("a build_info revision"));
        }
        let deployment = deployments
            .get(&child_name(SYSTEM, service))
            .await
            .expect("the Deployment");
        all.insert(
            service,
            Running {
                uids: pods.iter().map(uid).collect(),
                revisions,
                generation: deployment.metadata.generation.unwrap_or_default(),
            },
        );
    }
    all
}

#[tokio::test]
async fn an_operator_upgrade_rolls_nothing_until_the_spec_names_the_new_build_and_no_order_is_lost() {
    let shop = NodeShop::namespaces("upgrade").await;
    let (client, mode) = (&shop.client, &shop.mode);
    let (operator_ns, shop_ns) = (&shop.operator_ns, &shop.shop_ns);

    // The first build: the operator of the test bed's images, which deploys services of its own version.
    shop.install_operator(&[]);
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), operator_ns);
    let first_operator = wait::until_ok("the operator Ready", READY_WITHIN, || {
        operator_pod(&operator_pods, VERSION)
    })
    .await;
    let first = revision(mode, &first_operator)
        .await
        .expect("the operator's revision");
    eprintln!("first build: revision {first}");
    assert_ne!(
        first,
        ordersystem_contract::build::UNKNOWN_REVISION,
        "build-images.sh stamps the checkout's commit on the images"
    );

    // The second build of the same binaries: another tag, another revision, other digests.
    let next_tag = format!("{VERSION}-next");
    let next = format!("{first}.next");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/images/build-images.sh");
    let built = tokio::task::spawn_blocking({
        let (next_tag, next) = (next_tag.clone(), next.clone());
        move || cluster::run("bash", &[script, "--tag", &next_tag, "--revision", &next])
    });

    shop.create_system(SYSTEM, 2, json!({})).await;
    let systems = shop.systems();
    let status = shop.ready(SYSTEM).await;
    let topic_id = status.topic.clone().and_then(|t| t.topic_id).expect("a topic id");
    assert_recorded_images(
        &status,
        VERSION,
        "a new resource starts with the operator's default tag",
    );
    let before = running(client, mode, shop_ns).await;
    for (service, now) in &before {
        assert_eq!(
            now.revisions,
            BTreeSet::from([first.clone()]),
            "{} runs the first build",
            service.as_str()
        );
    }
    built.await.expect("the second build");

    // A steady load on the order Service (a new connection per request) through everything below.
    let front = mode
        .service_of(client, shop_ns, &child_name(SYSTEM, ShopService::Order))
        .await
        .without_keep_alive();
    let load = SteadyLoad::start(front, 0);

    // 1. The operator upgraded to the second build, with the second build's default service tag.
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ordersystem-operator");
    let image_tag = format!("image.tag={next_tag}");
    let default_tag = format!("serviceImages.defaultTag={next_tag}");
    cluster::run(
        "helm",
        &[
            "upgrade",
            operator_ns,
            chart,
            "--namespace",
            operator_ns,
            "--reuse-values",
            "--set",
            &image_tag,
            "--set",
            &default_tag,
        ],
    );
    let new_operator = wait::until_ok("the upgraded operator Ready", READY_WITHIN, || {
        operator_pod(&operator_pods, &next_tag)
    })
    .await;
    assert_eq!(
        revision(mode, &new_operator).await.as_deref(),
        Ok(next.as_str()),
        "the new operator runs the second build"
    );
    // It has reconciled the shop (and found nothing to change) before the check below.
    let new_operator_metrics = mode.service(&new_operator);
    wait::until_ok("the new operator reconciled", READY_WITHIN, || async {
        let text = new_operator_metrics.metrics().await?;
        let reconciles = metrics::sum(&text, "ordersystem_operator_reconciles");
        (reconciles >= 1.0)
            .then_some(())
            .ok_or(format!("{reconciles} reconciles"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        running(client, mode, shop_ns).await,
        before,
        "the operator upgrade rolled nothing: same generations, pods and builds"
    );
    let status = shop.ready(SYSTEM).await;
    assert_recorded_images(&status, VERSION, "status still names the first build");

    // 2. The spec names the new tag: the three services roll to the second build.
    systems
        .patch(
            SYSTEM,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imageTag": next_tag}})),
        )
        .await
        .expect("set imageTag");
    for service in SERVICES {
        let old = &before[&service].uids;
        let wanted = format!("ghcr.io/ordersystem/{}:{next_tag}", service.as_str());
        wait::until_ok(
            &format!("{} rolled to the second build", service.as_str()),
            READY_WITHIN,
            || async {
                let now = live_pods(client, shop_ns, service).await;
                let rolled = !now.is_empty()
                    && now
                        .iter()
                        .all(|p| is_ready(p) && !old.contains(&uid(p)) && image(p) == wanted);
                if !rolled {
                    return Err(format!("pods: {:?}", now.iter().map(image).collect::<Vec<_>>()));
                }
                for pod in &now {
                    let found = revision(mode, pod).await?;
                    if found != next {
                        return Err(format!("a pod reports revision {found}"));
                    }
                }
                Ok(())
            },
        )
        .await;
    }
    let status = shop.ready(SYSTEM).await;
    assert_recorded_images(&status, &next_tag, "status names the second build");
    assert_eq!(
        status.topic.and_then(|t| t.topic_id).as_deref(),
        Some(topic_id.as_str()),
        "the topic was never re-created"
    );

    // 3. Nothing failed, nothing lost, nothing twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let placed = load.stop("the upgrade", 100).await;
    let invoicing = mode.service(&live_pods(client, shop_ns, ShopService::Invoicing).await[0]);
    let shipping = mode.service(&live_pods(client, shop_ns, ShopService::Shipping).await[0]);
    all_stored_once(&invoicing, "/api/invoices", &placed).await;
    all_stored_once(&shipping, "/api/shipments", &placed).await;

    shop.delete_and_uninstall(SYSTEM).await;
}
