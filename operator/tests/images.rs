//! The Dockerfile's four runtime images, built here by `e2e/images/build-images.sh` (buildah, nothing pulled)
//! and imported into the real node's containerd, and what the runtime makes of them:
//! - each image's config is what its Dockerfile stage says;
//! - each service's pod as the operator builds it, and the operator's pod as the chart renders it, run on the
//!   real node as uid and gid 65532 with no capabilities, no new privileges, a seccomp filter and a read-only
//!   root, read from the host; the namespace enforces the restricted Pod Security Standard, so the API server
//!   itself refuses anything less;
//! - the process the node runs is today's release binary: pods name their image by digest, so a rebuilt
//!   binary (a new digest under the same tag) is what runs, never yesterday's image.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ordersystem_contract::wiring::secret_keys;
use ordersystem_e2e::cluster::{
    OnFailure, create_namespace, delete_namespace_and_wait, install_operator, uninstall_operator,
};
use ordersystem_e2e::names;
use ordersystem_e2e::real_node::{RealNode, host_process, inspect_image, kubectl, pinned_image};
use ordersystem_e2e::wait;
use ordersystem_operator::controller::build::{Observed, build};
use ordersystem_operator::controller::validate::validate;
use ordersystem_operator::names::Service;
use serde_json::{Value, json};

const IMAGES: [&str; 4] = ["operator", "order", "invoicing", "shipping"];
const VERSION: &str = env!("CARGO_PKG_VERSION");
const DOCKERFILE: &str = include_str!("../../Dockerfile");
const MANAGER: &str = "ordersystem-images-test";

/// What one Dockerfile stage sets, and the stage it starts from.
#[derive(Debug, Default, Clone)]
struct Stage {
    from: String,
    user: Option<String>,
    entrypoint: Option<Value>,
    exposed: BTreeSet<String>,
}

fn dockerfile_stages() -> BTreeMap<String, Stage> {
    let mut stages = BTreeMap::new();
    let mut current: Option<(String, Stage)> = None;
    for line in DOCKERFILE.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "FROM" => {
                if let Some((name, stage)) = current.take() {
                    stages.insert(name, stage);
                }
                let words: Vec<&str> = rest.split_whitespace().collect();
                let name = words.last().expect("FROM … AS name").to_string();
                current = Some((
                    name,
                    Stage {
                        from: words[0].to_string(),
                        ..Stage::default()
                    },
                ));
            }
            "USER" => current.as_mut().expect("inside a stage").1.user = Some(rest.to_string()),
            "ENTRYPOINT" => {
                current.as_mut().expect("inside a stage").1.entrypoint =
                    Some(serde_json::from_str(rest).expect("ENTRYPOINT in exec form"));
            }
            "EXPOSE" => {
                current
                    .as_mut()
                    .expect("inside a stage")
                    .1
                    .exposed
                    .insert(format!("{rest}/tcp"));
            }
            _ => {}
        }
    }
    if let Some((name, stage)) = current {
        stages.insert(name, stage);
    }
    stages
}

/// A stage with what it inherits from the stages it is built on.
fn effective(stages: &BTreeMap<String, Stage>, name: &str) -> Stage {
    let stage = stages[name].clone();
    match stages.get(&stage.from) {
        Some(_) => {
            let base = effective(stages, &stage.from);
            Stage {
                from: base.from,
                user: stage.user.or(base.user),
                entrypoint: stage.entrypoint.or(base.entrypoint),
                exposed: base.exposed.union(&stage.exposed).cloned().collect(),
            }
        }
        None => stage,
    }
}

fn image(name: &str) -> String {
    format!("ghcr.io/ordersystem/{name}:{VERSION}")
}

/// `repo@sha256:…` of the image the node holds under `image(name)`.
fn pinned(name: &str) -> String {
    pinned_image(&image(name))
}

#[test]
fn each_image_is_what_its_dockerfile_stage_says() {
    let stages = dockerfile_stages();
    for name in IMAGES {
        let want = effective(&stages, name);
        assert_eq!(
            want.from, "${RUNTIME_BASE}",
            "{name} is built on the runtime base"
        );
        let info = inspect_image(&image(name));
        let config = &info["info"]["imageSpec"]["config"];
        assert_eq!(config["User"].as_str(), want.user.as_deref(), "{name}: USER");
        assert_eq!(
            Some(&config["Entrypoint"]),
            want.entrypoint.as_ref(),
            "{name}: ENTRYPOINT"
        );
        let exposed: BTreeSet<String> = config["ExposedPorts"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(exposed, want.exposed, "{name}: EXPOSE");
        assert_eq!(config["User"], "65532:65532", "{name} runs as nonroot");
        let entrypoint = config["Entrypoint"][0].as_str().unwrap_or_default();
        assert_eq!(
            entrypoint,
            format!("/usr/local/bin/ordersystem-{name}"),
            "{name} starts its binary, no shell"
        );
    }
}

/// Release binary of `name`, as `e2e/images/cargo-release.sh` built it.
fn release_binary(name: &str) -> Vec<u8> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string());
    let path = format!("{target}/release/ordersystem-{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (e2e/images/cargo-release.sh builds it)"))
}

/// The services' Deployments as the operator builds them for a system in `ns`, every image pinned by
/// digest, without their owner (no OrderSystem exists here, and the garbage collector would take them).
fn service_deployments(ns: &str, node: &RealNode) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let unreachable = format!("{}:1", node.bridge_ip);
    let os = json!({
        "apiVersion": "ordersystem.io/v1alpha1", "kind": "OrderSystem",
        "metadata": {"name": "shop", "namespace": ns, "uid": "00000000-0000-0000-0000-000000000001"},
        "spec": {
            // Nothing listens there: the services serve and keep retrying, which is all this test needs.
            "kafka": {"bootstrapServers": unreachable, "topic": {"name": "images-test", "partitions": 1}},
            "postgres": {"adminSecretRef": {"name": "pg-admin"}},
            "order": {"image": pinned("order")},
            "invoicing": {"image": pinned("invoicing")},
            "shipping": {"image": pinned("shipping")},
        },
    });
    let spec = validate(&serde_json::from_value(os).expect("OrderSystem")).expect("valid spec");
    let observed = Observed {
        topic_ready: true,
        schemas_ready: Service::ALL.into_iter().collect(),
        deployed: Service::ALL.into_iter().collect(),
        secret_hashes: Service::ALL
            .into_iter()
            .map(|s| (s, "test".to_string()))
            .collect(),
        ..Observed::default()
    };
    let desired = build(&spec, &observed);
    let strip = |mut v: Value| {
        v["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("ownerReferences");
        v
    };
    let deployments = desired
        .deployments
        .iter()
        .map(|d| strip(serde_json::to_value(d).expect("json")))
        .collect();
    let accounts = desired
        .service_accounts
        .iter()
        .map(|a| strip(serde_json::to_value(a).expect("json")))
        .collect();
    let secrets = spec
        .services
        .iter()
        .map(|plan| {
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": plan.secret_name},
                "stringData": {
                    (secret_keys::HOST): node.bridge_ip, (secret_keys::PORT): "1", (secret_keys::DBNAME): "test",
                    (secret_keys::USERNAME): "test", (secret_keys::PASSWORD): "test", (secret_keys::SCHEMA): "test",
                },
            })
        })
        .collect();
    (deployments, accounts, secrets)
}

async fn apply<K>(api: &Api<K>, object: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object["metadata"]["name"].as_str().expect("name").to_string();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// The running container of the one pod labelled `selector`, once it runs.
async fn running_container(pods: &Api<Pod>, selector: &str) -> (String, String) {
    wait::until_ok(
        &format!("a running container of {selector}"),
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
            let pod = list.items.first().ok_or("no pod yet")?;
            let status = pod.status.clone().unwrap_or_default();
            let container = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .next()
                .ok_or("no container")?;
            match (container.state.and_then(|s| s.running), container.container_id) {
                (Some(_), Some(id)) => Ok((pod.metadata.name.clone().unwrap_or_default(), id)),
                _ => Err(format!("{:?}", status.phase)),
            }
        },
    )
    .await
}

#[tokio::test]
async fn the_node_runs_each_service_and_the_operator_as_nonroot_without_capabilities_on_a_read_only_root() {
    let client = ordersystem_e2e::kube::client().await;
    let node = RealNode::from_env();
    node.wait_ready(&client).await;
    let ns = names::unique("images");
    create_namespace(&client, &ns, node.namespace_annotations()).await;
    // A failed check leaves nothing behind: pods pinned to this build's digests would wait on the node
    // for images a later build replaced.
    let _on_failure = OnFailure {
        shop_ns: ns.clone(),
        operator_ns: ns.clone(),
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": &ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
            })),
        )
        .await
        .expect("label the namespace restricted");

    // The API server itself refuses a pod the restricted profile does not allow.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let careless: Pod = serde_json::from_value(json!({
        "metadata": {"name": "careless"},
        "spec": {"containers": [{"name": "main", "image": image("order")}]},
    }))
    .expect("pod");
    match pods.create(&PostParams::default(), &careless).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("violates PodSecurity"),
                "{}",
                status.message
            );
        }
        other => panic!("a pod without a restricted security context must be refused: {other:?}"),
    }

    let (deployments, accounts, secrets) = service_deployments(&ns, &node);
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for secret in secrets {
        apply(&secret_api, secret).await;
    }
    let account_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for account in accounts {
        apply(&account_api, account).await;
    }
    let deployment_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for deployment in deployments {
        apply(&deployment_api, deployment).await;
    }
    let operator_digest = pinned("operator");
    let digest = operator_digest.split_once('@').expect("repo@digest").1;
    install_operator(&ns, &ns, &[&format!("image.tag={VERSION}@{digest}")]);

    let mut checked = Vec::new();
    for name in IMAGES {
        let selector = if name == "operator" {
            format!("app.kubernetes.io/instance={ns},app.kubernetes.io/name=ordersystem-operator")
        } else {
            format!("app.kubernetes.io/instance=shop,app.kubernetes.io/component={name}")
        };
        let (pod, container) = running_container(&pods, &selector).await;
        let process = host_process(&container);
        let what = format!("{name} (pod {pod}, host pid {})", process.pid);
        assert_eq!(process.field("Uid"), "65532 65532 65532 65532", "{what}: uids");
        assert_eq!(process.field("Gid"), "65532 65532 65532 65532", "{what}: gids");
        assert_eq!(
            process.field("CapEff"),
            "0000000000000000",
            "{what}: effective capabilities"
        );
        assert_eq!(
            process.field("CapBnd"),
            "0000000000000000",
            "{what}: bounding capabilities"
        );
        assert_eq!(process.field("NoNewPrivs"), "1", "{what}: no new privileges");
        assert_eq!(process.field("Seccomp"), "2", "{what}: a seccomp filter");
        assert!(
            process.root_mount_options.split(',').any(|o| o == "ro"),
            "{what}: / is mounted read-only ({})",
            process.root_mount_options
        );
        let exe = std::fs::read(format!("/proc/{}/exe", process.pid)).expect("the process's executable");
        assert!(
            exe == release_binary(name),
            "{what} runs today's release binary of ordersystem-{name}"
        );
        let shell = kubectl(&["exec", "-n", &ns, &pod, "--", "sh", "-c", "true"]);
        assert!(!shell.status.success(), "{what}: the image has no shell");
        eprintln!(
            "{what}: Uid {}, CapEff {}, NoNewPrivs {}, Seccomp {}, / {}",
            process.field("Uid"),
            process.field("CapEff"),
            process.field("NoNewPrivs"),
            process.field("Seccomp"),
            process.root_mount_options
        );
        checked.push(name);
    }
    assert_eq!(checked, IMAGES);

    uninstall_operator(&ns);
    delete_namespace_and_wait(&client, &ns).await;
}
