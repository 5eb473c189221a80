//! The chart's uninstall path, with helm for real on the test bed's real node: while an `OrderSystem` exists
//! in the watched namespace, the chart's pre-delete hook (`templates/uninstall-check.yaml`, running
//! `ordersystem-operator check-uninstall` from the operator's image) makes `helm uninstall` fail with a
//! message naming it, and the operator keeps running; once the resource is deleted (its finalizer released
//! by that operator), `helm uninstall` succeeds, and neither time is anything of the hook left behind.
//!
//! The namespaces are restricted (`cluster::create_namespace`), so the API server admits the hook's pod only
//! because it is restricted like the operator's. The `OrderSystem` never becomes Ready (its Kafka and admin
//! Secret are not there): it only needs the operator's finalizer. The rendering test checks, without a
//! cluster, that the hook's pod has exactly the operator's security contexts and that its RBAC is `list` on
//! ordersystems and nothing else.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_api::names::FINALIZER;
use ordersystem_e2e::cluster::{
    self, OnFailure, READY_WITHIN, create_namespace, delete_namespace_and_wait, install_operator,
};
use ordersystem_e2e::order_system::{delete_and_wait, minimal_json, to_os};
use ordersystem_e2e::real_node::RealNode;
use ordersystem_e2e::{names, wait};
use serde::Deserialize;
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ordersystem-operator");
/// The hook objects' `app.kubernetes.io/component`.
const COMPONENT: &str = "uninstall-check";

/// `helm template` of the chart for release `r` in namespace `ops` with `sets`: every object, hooks
/// included.
fn render(sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "r", CHART, "--namespace", "ops"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = cluster::run("helm", &args);
    serde_yaml::Deserializer::from_str(&out)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).expect("YAML")).expect("JSON"))
        .filter(|v| !v.is_null())
        .collect()
}

fn hook_objects(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENT)
        .collect()
}

fn one<'a>(objects: &'a [Value], kind: &str, name_part: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains(name_part))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named *{name_part}*: {found:?}");
    found[0]
}

#[test]
fn the_hook_pod_is_restricted_as_the_operator_and_may_only_list_ordersystems() {
    let objects = render(&["watchNamespace=shop"]);
    let deployment = one(&objects, "Deployment", "ordersystem-operator");
    let job = one(&objects, "Job", COMPONENT);
    let (operator_pod, hook_pod) = (&deployment["spec"]["template"], &job["spec"]["template"]);
    assert_eq!(
        hook_pod["spec"]["securityContext"], operator_pod["spec"]["securityContext"],
        "the hook's pod security context is the operator's"
    );
    assert_eq!(
        hook_pod["spec"]["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let (operator, hook) = (
        &operator_pod["spec"]["containers"][0],
        &hook_pod["spec"]["containers"][0],
    );
    assert_eq!(hook["securityContext"], operator["securityContext"]);
    assert_eq!(
        hook["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(hook["image"], operator["image"], "the operator's own image");
    assert_eq!(
        hook["args"],
        json!([
            "check-uninstall",
            "--release=r",
            "--release-namespace=ops",
            "--release-revision=1"
        ])
    );
    assert_eq!(hook["env"], json!([{"name": "WATCH_NAMESPACE", "value": "shop"}]));
    // The Deployment (and its Service and NetworkPolicy) never select the hook's pod.
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(
        selector
            .iter()
            .any(|(k, v)| hook_pod["metadata"]["labels"][k] != *v),
        "the operator's selector {selector:?} does not match the hook's pod {:?}",
        hook_pod["metadata"]["labels"]
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(hook_pod["spec"]["restartPolicy"], "Never");

    // Watching one namespace: a Role and RoleBinding there, `list` on ordersystems only; hooks before the
    // Job, every one of them deleted whatever the outcome.
    let hooks = hook_objects(&objects);
    let kinds: Vec<&str> = hooks.iter().map(|o| o["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "Job"]);
    for hook in &hooks {
        let annotations = &hook["metadata"]["annotations"];
        assert_eq!(annotations["helm.sh/hook"], "pre-delete", "{hook}");
        let (weight, policy) = if hook["kind"] == "Job" {
            ("0", "before-hook-creation,hook-succeeded,hook-failed")
        } else {
            ("-10", "before-hook-creation,hook-succeeded")
        };
        assert_eq!(annotations["helm.sh/hook-weight"], weight, "{hook}");
        assert_eq!(annotations["helm.sh/hook-delete-policy"], policy, "{hook}");
    }
    let role = one(&objects, "Role", COMPONENT);
    assert_eq!(role["metadata"]["namespace"], "shop");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["ordersystem.io"], "resources": ["ordersystems"], "verbs": ["list"]}])
    );
    let binding = one(&objects, "RoleBinding", COMPONENT);
    assert_eq!(binding["metadata"]["namespace"], "shop");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": job["spec"]["template"]["spec"]["serviceAccountName"],
                "namespace": "ops"}])
    );

    // Watching every namespace: the same rule cluster-wide.
    let objects = render(&[]);
    let kinds: Vec<String> = hook_objects(&objects)
        .iter()
        .map(|o| o["kind"].as_str().expect("kind").to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job"]
    );
    assert_eq!(
        one(&objects, "ClusterRole", COMPONENT)["rules"],
        json!([{"apiGroups": ["ordersystem.io"], "resources": ["ordersystems"], "verbs": ["list"]}])
    );
    assert_eq!(
        one(&objects, "Job", COMPONENT)["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "WATCH_NAMESPACE", "value": ""}])
    );

    // The escape hatch leaves the hook out.
    assert!(hook_objects(&render(&["uninstallCheck.enabled=false"])).is_empty());
}

/// Nothing of the hook is left: its Job, pods, ServiceAccount, Role and RoleBinding.
async fn assert_no_hook_left(client: &kube::Client, operator_ns: &str, shop_ns: &str, when: &str) {
    let selector = format!("app.kubernetes.io/component={COMPONENT}");
    let by_label = ListParams::default().labels(&selector);
    wait::until_ok(
        &format!("no hook object left {when}"),
        Duration::from_secs(60),
        || async {
            let count = |n: usize, what: &str| (n > 0).then(|| format!("{n} {what}"));
            let jobs: Api<Job> = Api::namespaced(client.clone(), operator_ns);
            let pods: Api<Pod> = Api::namespaced(client.clone(), operator_ns);
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), operator_ns);
            let roles: Api<Role> = Api::namespaced(client.clone(), shop_ns);
            let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), shop_ns);
            let e = |e: kube::Error| e.to_string();
            let left: Vec<String> = [
                count(jobs.list(&by_label).await.map_err(e)?.items.len(), "Jobs"),
                count(pods.list(&by_label).await.map_err(e)?.items.len(), "pods"),
                count(
                    accounts.list(&by_label).await.map_err(e)?.items.len(),
                    "ServiceAccounts",
                ),
                count(roles.list(&by_label).await.map_err(e)?.items.len(), "Roles"),
                count(
                    bindings.list(&by_label).await.map_err(e)?.items.len(),
                    "RoleBindings",
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            left.is_empty().then_some(()).ok_or(left.join(", "))
        },
    )
    .await;
    // Watching one namespace, the hook has nothing cluster-wide; the chart's own ClusterRole is not it.
    let instance = format!("app.kubernetes.io/instance={operator_ns},{selector}");
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let by_instance = ListParams::default().labels(&instance);
    assert!(
        cluster_roles
            .list(&by_instance)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        cluster_bindings
            .list(&by_instance)
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

async fn operator_available(deployments: &Api<Deployment>, name: &str) -> Deployment {
    wait::until_ok("the operator available", READY_WITHIN, || async {
        let deployment = deployments.get(name).await.map_err(|e| e.to_string())?;
        let available = deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        (available == 1)
            .then_some(deployment.clone())
            .ok_or(format!("{available} available: {:?}", deployment.status))
    })
    .await
}

/// `helm status` of the release: its stored status (`deployed`, `uninstalling`, …).
fn release_status(release: &str) -> String {
    let out = cluster::run("helm", &["status", release, "-n", release, "-o", "json"]);
    let status: Value = serde_json::from_str(&out).expect("helm status -o json");
    status["info"]["status"].as_str().expect("info.status").to_owned()
}

#[tokio::test]
async fn helm_uninstall_refuses_while_an_ordersystem_exists_and_succeeds_once_it_is_gone() {
    let client = ordersystem_e2e::kube::client().await;
    let node = RealNode::from_env();
    node.wait_ready(&client).await;
    let operator_ns = names::unique("uninstall-op");
    let shop_ns = names::unique("uninstall-shop");
    create_namespace(&client, &operator_ns, node.namespace_annotations()).await;
    create_namespace(&client, &shop_ns, node.namespace_annotations()).await;
    let _guard = OnFailure {
        shop_ns: shop_ns.clone(),
        operator_ns: operator_ns.clone(),
    };

    // The release is named after its namespace; it watches the shop's namespace.
    install_operator(&operator_ns, &shop_ns, &[]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &operator_ns);
    let operator = format!("{operator_ns}-ordersystem-operator");
    let installed = operator_available(&deployments, &operator).await;

    let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &shop_ns);
    systems
        .create(&PostParams::default(), &to_os(minimal_json("shop", "orders")))
        .await
        .expect("create the OrderSystem");
    wait::until_ok(
        "the operator's finalizer on the OrderSystem",
        READY_WITHIN,
        || async {
            let os = systems.get("shop").await.map_err(|e| e.to_string())?;
            let finalizers = os.metadata.finalizers.unwrap_or_default();
            finalizers
                .iter()
                .any(|f| f == FINALIZER)
                .then_some(())
                .ok_or(format!("finalizers {finalizers:?}"))
        },
    )
    .await;

    // helm uninstall fails, printing the hook's message; the operator stays.
    let started = Instant::now();
    let refused = cluster::output("helm", &["uninstall", &operator_ns, "-n", &operator_ns]);
    let refused_after = started.elapsed();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    eprintln!(
        "helm uninstall with an OrderSystem left, after {refused_after:.1?} ({}):\n{}{stderr}",
        refused.status,
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(!refused.status.success(), "helm uninstall fails");
    assert!(
        stderr.contains(&format!(
            "refusing to uninstall the operator: 1 OrderSystem still exists in namespace {shop_ns}: \
             {shop_ns}/shop."
        )),
        "the message names the OrderSystem: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "kubectl delete ordersystems.ordersystem.io --all -n {shop_ns}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "helm uninstall {operator_ns} -n {operator_ns} --no-hooks"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "job {operator_ns}-ordersystem-operator-uninstall-check failed: BackoffLimitExceeded"
        )),
        "helm says which hook failed: {stderr}"
    );
    let kept = operator_available(&deployments, &operator).await;
    assert_eq!(
        kept.metadata.uid, installed.metadata.uid,
        "the operator's Deployment is the one installed"
    );
    let status = release_status(&operator_ns);
    eprintln!("helm status after the refusal: {status}");
    assert_eq!(
        status, "uninstalling",
        "helm records the attempt; the release's objects are untouched"
    );
    assert_no_hook_left(&client, &operator_ns, &shop_ns, "after the refusal").await;
    // Helm marked the release uninstalling, so an upgrade finds no deployed release; the rollback the
    // message names marks it deployed again, and upgrades work again.
    let upgrade = [
        "upgrade",
        &operator_ns,
        CHART,
        "-n",
        &operator_ns,
        "--reuse-values",
    ];
    let refused_upgrade = cluster::output("helm", &upgrade);
    assert!(
        !refused_upgrade.status.success()
            && String::from_utf8_lossy(&refused_upgrade.stderr).contains("has no deployed releases"),
        "helm upgrade after the refusal: {}",
        String::from_utf8_lossy(&refused_upgrade.stderr)
    );
    let rollback = format!("helm rollback {operator_ns} 1 -n {operator_ns}");
    assert!(
        stderr.contains(&rollback),
        "the message names the rollback: {stderr}"
    );
    cluster::run("helm", &rollback.split(' ').skip(1).collect::<Vec<_>>());
    assert_eq!(release_status(&operator_ns), "deployed");
    cluster::run("helm", &upgrade);
    assert_eq!(release_status(&operator_ns), "deployed");
    operator_available(&deployments, &operator).await;

    // The still-running operator releases the finalizer, then the uninstall goes through.
    let started = Instant::now();
    delete_and_wait(&systems, 60, "the OrderSystem released by the operator").await;
    eprintln!("OrderSystem gone after {:.1?}", started.elapsed());
    let started = Instant::now();
    let uninstalled = cluster::output("helm", &["uninstall", &operator_ns, "-n", &operator_ns]);
    let uninstalled_after = started.elapsed();
    eprintln!(
        "helm uninstall with no OrderSystem left, after {uninstalled_after:.1?}:\n{}{}",
        String::from_utf8_lossy(&uninstalled.stdout),
        String::from_utf8_lossy(&uninstalled.stderr)
    );
    assert!(
        uninstalled.status.success(),
        "helm uninstall succeeds once no OrderSystem is left: {}",
        String::from_utf8_lossy(&uninstalled.stderr)
    );
    assert_no_hook_left(&client, &operator_ns, &shop_ns, "after the uninstall").await;
    wait::until_ok(
        "the operator's Deployment gone",
        Duration::from_secs(60),
        || async {
            match deployments.get_opt(&operator).await {
                Ok(None) => Ok(()),
                other => Err(format!("{:?}", other.map(|d| d.map(|d| d.status)))),
            }
        },
    )
    .await;
    let gone = cluster::output("helm", &["status", &operator_ns, "-n", &operator_ns]);
    assert!(!gone.status.success(), "the release is gone");

    delete_namespace_and_wait(&client, &shop_ns).await;
    delete_namespace_and_wait(&client, &operator_ns).await;
}
