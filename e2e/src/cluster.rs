//! Cluster helpers of the end-to-end tests: namespaces, the operator installed with helm, and the pods of one
//! service of a system.

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::wait;

/// How long pods and resources may take to become Ready.
pub const READY_WITHIN: Duration = Duration::from_secs(180);

/// The label of every test namespace: the API server itself refuses any pod in it that the restricted Pod
/// Security Standard does not allow, so a test pod, a service's or the operator's that is not restricted
/// fails the test.
pub const RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

/// Creates a namespace labelled [`RESTRICTED`] and waits for its `default` ServiceAccount.
pub async fn create_namespace(client: &kube::Client, name: &str, annotations: serde_json::Value) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (key, value) = RESTRICTED;
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": annotations, "labels": {key: value}}
            }))
            .expect("namespace"),
        )
        .await
        .expect("create namespace");
    // ServiceAccount admission refuses pods until kube-controller-manager created `default`.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait::until_ok("the default ServiceAccount", Duration::from_secs(30), || async {
        accounts
            .get_opt("default")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("absent".to_string())
    })
    .await;
}

/// Deletes a namespace and waits until it is gone, so nothing of it is left for what runs next (the real
/// node runs a leftover namespace's pods again at every start).
pub async fn delete_namespace_and_wait(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait::until_ok(
        &format!("namespace {name} gone"),
        Duration::from_secs(90),
        || async {
            match namespaces.get_opt(name).await {
                Ok(None) => Ok(()),
                other => Err(format!("{:?}", other.map(|n| n.and_then(|n| n.status)))),
            }
        },
    )
    .await;
}

/// Runs `program` (from PATH: `. /tmp/ordersystem/env` puts the test bed's tools there) to its end: what
/// it printed and how it ended, whatever that was.
///
/// # Panics
/// When it cannot start.
pub fn output(program: &str, args: &[&str]) -> Output {
    try_output(program, args)
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (is the test bed's PATH set?)"))
}

/// As [`output`], for cleanup that must not panic: `Err` when `program` cannot start.
fn try_output(program: &str, args: &[&str]) -> std::io::Result<Output> {
    std::process::Command::new(program).args(args).output()
}

/// Runs `program` as [`output`] does and returns its stdout.
///
/// # Panics
/// When it cannot start or fails, with its stderr.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = output(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The operator as users install it: this tree's CRDs applied server-side (helm never upgrades a CRD that
/// exists; the documented upgrade path applies them), then the chart as release `release` in the namespace
/// of that name, watching `watch`, with `sets` (`key=value`) on top of the chart's values.
///
/// # Panics
/// When kubectl or helm fails, with its stderr.
pub fn install_operator(release: &str, watch: &str, sets: &[&str]) {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/");
    run(
        "kubectl",
        &["apply", "--server-side", "--force-conflicts", "-f", crds],
    );
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ordersystem-operator");
    let watch = format!("watchNamespace={watch}");
    let mut args = vec!["install", release, chart, "--namespace", release, "--set", &watch];
    for set in sets {
        args.extend(["--set", set]);
    }
    run("helm", &args);
}

/// Uninstalls what [`install_operator`] installed as `release`.
pub fn uninstall_operator(release: &str) {
    run("helm", &["uninstall", release, "--namespace", release]);
}

/// Every pod of one service of a system.
pub async fn pods(client: &kube::Client, ns: &str, system: &str, service: &str) -> Vec<Pod> {
    let selector = format!("app.kubernetes.io/instance={system},app.kubernetes.io/component={service}");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
}

/// Ready and not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// Why a pod cannot start and will not by waiting: a container waiting for an image the node cannot get
/// (`ErrImageNeverPull`, `ImagePullBackOff`, `ErrImagePull`, `InvalidImageName`), as `pod: container waits:
/// reason: message`.
pub fn cannot_start(pod: &Pod) -> Option<String> {
    const HOPELESS: [&str; 4] = [
        "ErrImageNeverPull",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
    ];
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.iter().flatten();
    let init = status.init_container_statuses.iter().flatten();
    init.chain(containers).find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        HOPELESS.contains(&reason).then(|| {
            format!(
                "pod {}: container {} waits: {reason}: {}",
                pod.metadata.name.as_deref().unwrap_or("?"),
                c.name,
                waiting.message.as_deref().unwrap_or("")
            )
        })
    })
}

/// The Ready pods of one service, once exactly `count` are Ready.
///
/// # Panics
/// At once when a pod cannot start for want of its image (see [`cannot_start`]); after [`READY_WITHIN`]
/// otherwise.
pub async fn ready_pods(
    client: &kube::Client,
    ns: &str,
    system: &str,
    service: &str,
    count: usize,
) -> Vec<Pod> {
    wait::until_ok(&format!("{count} Ready {service} pods"), READY_WITHIN, || async {
        let all = pods(client, ns, system, service).await;
        if let Some(reason) = all.iter().find_map(cannot_start) {
            panic!("{service} in {ns} cannot become Ready: {reason}");
        }
        let ready: Vec<Pod> = all.iter().filter(|p| is_ready(p)).cloned().collect();
        if ready.len() == count && all.len() == count {
            Ok(ready)
        } else {
            Err(format!("{} of {} Ready", ready.len(), all.len()))
        }
    })
    .await
}

/// Logs of every pod of `ns` (the last lines of each container) and where the pods are, for a failing test.
pub fn pod_logs(ns: &str) -> String {
    let run = |args: &[&str]| {
        try_output("kubectl", args)
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|e| format!("kubectl: {e}"))
    };
    let mut out = format!("===== pods of {ns}\n");
    out += &run(&["get", "pods", "-n", ns, "-o", "wide"]);
    out += &format!("===== logs of {ns}\n");
    out += &run(&[
        "logs",
        "-n",
        ns,
        "--selector=app.kubernetes.io/instance",
        "--all-containers",
        "--prefix",
        "--tail=60",
        "--max-log-requests=20",
    ]);
    out
}

/// The log of `pod`'s containers so far.
pub fn pod_log(ns: &str, pod: &str) -> String {
    run("kubectl", &["logs", "-n", ns, pod, "--all-containers"])
}

/// `kubectl logs --follow` of one pod into a file, from its first line on: its log outlives the pod.
#[derive(Debug)]
pub struct LogFollower {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl LogFollower {
    /// Follows `pod`'s containers.
    pub fn start(ns: &str, pod: &str) -> LogFollower {
        let file = crate::env::state().join(format!("e2e-log-{ns}-{pod}.log"));
        let out = std::fs::File::create(&file).expect("a log file under the state directory");
        let child = std::process::Command::new("kubectl")
            .args(["logs", "--follow", "-n", ns, pod, "--all-containers"])
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl on PATH");
        LogFollower { child, file }
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for LogFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Guard of a test's shop: when the test fails, prints the pods' logs of its namespaces and removes what it
/// left (the helm release, the resource's finalizer, which no operator releases once it is gone, and the
/// namespaces), so nothing of it runs on the node afterwards.
#[derive(Debug)]
pub struct OnFailure {
    pub shop_ns: String,
    pub operator_ns: String,
}

impl Drop for OnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (shop_ns, operator_ns) = (self.shop_ns.as_str(), self.operator_ns.as_str());
        eprintln!("{}\n{}", pod_logs(operator_ns), pod_logs(shop_ns));
        let run = |program: &str, args: &[&str]| try_output(program, args).is_ok_and(|o| o.status.success());
        // Without the chart's uninstall check: the OrderSystem may be left, and this guard removes its
        // finalizer itself below.
        run(
            "helm",
            &["uninstall", operator_ns, "--namespace", operator_ns, "--no-hooks"],
        );
        run(
            "kubectl",
            &["delete", "namespace", shop_ns, operator_ns, "--wait=false"],
        );
        // The operator may still run for a moment and put its finalizer back: release it until the
        // resource is gone.
        for _ in 0..30 {
            run(
                "kubectl",
                &[
                    "-n",
                    shop_ns,
                    "patch",
                    "ordersystems.ordersystem.io",
                    "shop",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
            );
            if !run(
                "kubectl",
                &["-n", shop_ns, "get", "ordersystems.ordersystem.io", "shop"],
            ) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(container_state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "shop-order-1"},
            "status": {"containerStatuses": [{
                "name": "order", "image": "ghcr.io/ordersystem/order:9", "imageID": "", "ready": false,
                "restartCount": 0, "state": container_state,
            }]},
        }))
        .expect("pod")
    }

    #[test]
    fn a_pod_without_its_image_cannot_start_and_says_why() {
        let missing = pod(json!({"waiting": {"reason": "ErrImageNeverPull",
            "message": "Container image \"ghcr.io/ordersystem/order:9\" is not present with pull policy of Never"}}));
        let why = cannot_start(&missing).expect("a reason");
        assert!(why.contains("shop-order-1"), "{why}");
        assert!(why.contains("ErrImageNeverPull"), "{why}");
        assert!(why.contains("is not present"), "{why}");
        assert_eq!(
            cannot_start(&pod(json!({"waiting": {"reason": "ContainerCreating"}}))),
            None
        );
        assert_eq!(
            cannot_start(&pod(json!({"running": {"startedAt": "2026-12-06T00:00:00Z"}}))),
            None
        );
    }
}
