//! The real node of the test bed (`e2e/infra/node.sh`): a kubelet with containerd, runc, the CNI bridge,
//! kube-proxy and CoreDNS, joined to the local control plane. Its names come from `$STATE/env` (`up.sh`
//! writes what `node.sh env` prints), so the scripts define them once. Pods land on it only when they
//! tolerate its taint and select its label: [`RealNode::pin`] does both.

use std::process::{Child, Command, Output, Stdio};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::{Value, json};

use crate::wait;
use crate::{cluster, env};

/// The node as `node.sh env` describes it.
#[derive(Debug, Clone)]
pub struct RealNode {
    /// The Node's name.
    pub name: String,
    /// Key of its label and its `NoSchedule` taint (both valued with the node's name).
    pub key: String,
    /// The bridge address: the host as the node's pods see it.
    pub bridge_ip: String,
    /// A busybox image imported into the node's containerd, for looking around from inside a pod.
    pub debug_image: String,
}

impl RealNode {
    /// The node of `$STATE/env`.
    ///
    /// # Panics
    /// When the environment does not name one (run `e2e/infra/up.sh`, then `. /tmp/ordersystem/env`).
    pub fn from_env() -> RealNode {
        RealNode {
            name: env::require("ORDERSYSTEM_NODE"),
            key: env::require("ORDERSYSTEM_NODE_KEY"),
            bridge_ip: env::require("ORDERSYSTEM_NODE_BRIDGE_IP"),
            debug_image: env::require("ORDERSYSTEM_NODE_DEBUG_IMAGE"),
        }
    }

    /// Waits until the Node reports `Ready=True`.
    ///
    /// # Panics
    /// When it does not within two minutes.
    pub async fn wait_ready(&self, client: &kube::Client) -> Node {
        let nodes: Api<Node> = Api::all(client.clone());
        wait::until_ok(
            &format!("node {} Ready", self.name),
            std::time::Duration::from_secs(120),
            || async {
                let node = nodes.get(&self.name).await.map_err(|e| e.to_string())?;
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .map(|c| c.status.clone());
                match ready.as_deref() {
                    Some("True") => Ok(node),
                    other => Err(format!("Ready={other:?}")),
                }
            },
        )
        .await
    }

    /// `spec` with this node's nodeSelector and toleration added.
    pub fn pin(&self, mut spec: Value) -> Value {
        spec["nodeSelector"] = json!({ &self.key: &self.name });
        spec["tolerations"] =
            json!([{"key": &self.key, "operator": "Equal", "value": &self.name, "effect": "NoSchedule"}]);
        spec
    }

    /// A pod of the debug image on this node running `command`, restricted as the restricted Pod Security
    /// Standard requires.
    pub fn debug_pod(&self, name: &str, labels: Value, command: &[&str], extra_spec: Value) -> Value {
        let mut spec = json!({
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": &self.debug_image, "imagePullPolicy": "Never", "command": command,
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": self.pin(spec),
        })
    }
}

impl RealNode {
    /// Runs `command` in a pod `name` of the debug image in `ns` on this node until it ends; its output.
    ///
    /// # Panics
    /// When the pod fails (with its output) or does not end within two minutes.
    pub async fn run_to_completion(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
        command: &[&str],
    ) -> String {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::PostParams;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let spec = self.debug_pod(name, json!({}), command, json!({"restartPolicy": "Never"}));
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(spec).expect("pod"),
        )
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
        let phase = wait::until_ok(
            &format!("pod {name} ended"),
            std::time::Duration::from_secs(120),
            || async {
                let pod = pods.get(name).await.map_err(|e| e.to_string())?;
                let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                match phase.as_str() {
                    "Succeeded" | "Failed" => Ok(phase),
                    _ => Err(phase),
                }
            },
        )
        .await;
        let logs = kubectl(&["logs", "-n", ns, name]);
        let text = String::from_utf8_lossy(&logs.stdout).into_owned();
        assert_eq!(phase, "Succeeded", "pod {name} ({command:?}) failed: {text}");
        text
    }
}

/// Names the node's image `source` also `target`, as if a registry mirror had served it under that name: a
/// pod naming `target` then runs without a pull. [`untag_image`] removes the name again.
///
/// # Panics
/// When containerd refuses (the node's socket is `ORDERSYSTEM_NODE_CRI` of `$STATE/env`).
pub fn tag_image(source: &str, target: &str) {
    ctr(&["images", "tag", "--force", source, target]);
}

/// Removes the name `target` that [`tag_image`] gave; the image stays under its other names.
pub fn untag_image(target: &str) {
    ctr(&["images", "rm", target]);
}

/// `ctr` against the node's containerd, in the namespace the kubelet uses.
fn ctr(args: &[&str]) -> String {
    let cri = env::require("ORDERSYSTEM_NODE_CRI");
    let socket = cri.strip_prefix("unix://").unwrap_or(&cri);
    let mut all = vec!["--address", socket, "--namespace", "k8s.io"];
    all.extend(args);
    cluster::run("ctr", &all)
}

/// Runs `kubectl` (from `PATH`, against `KUBECONFIG`) and returns its output, whatever its exit status.
pub fn kubectl(args: &[&str]) -> Output {
    cluster::output("kubectl", args)
}

/// `kubectl exec` of `command` in `pod`'s container; its stdout.
///
/// # Panics
/// When the command fails (with its stderr).
pub fn exec(namespace: &str, pod: &str, command: &str) -> String {
    let out = kubectl(&["exec", "-n", namespace, pod, "--", "sh", "-c", command]);
    assert!(
        out.status.success(),
        "kubectl exec {pod} -- {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `kubectl port-forward` to one port of a pod, on a loopback port kubectl picked; ended on drop.
#[derive(Debug)]
pub struct PortForward {
    child: Child,
    /// The local port, on 127.0.0.1 only.
    pub local_port: u16,
}

impl PortForward {
    /// Forwards a free port of 127.0.0.1 to `pod`'s `port`, and returns once kubectl listens on it.
    ///
    /// # Panics
    /// When kubectl ends or says nothing of listening within 30 s, with what it printed.
    pub fn start(namespace: &str, pod: &str, port: u16) -> PortForward {
        use std::io::{BufRead, BufReader};
        // `:PORT` lets kubectl bind a free local port and name it; `--address` keeps it off every other
        // interface.
        let mut child = Command::new("kubectl")
            .args(["port-forward", "--address", "127.0.0.1", "-n", namespace])
            .args([format!("pod/{pod}"), format!(":{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl on PATH");
        let stdout = child.stdout.take().expect("stdout");
        // "Forwarding from 127.0.0.1:41234 -> 8080", printed once the listener is bound; read on a thread
        // so that the wait has a deadline.
        let (lines, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut forward = PortForward { child, local_port: 0 };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut printed = Vec::new();
        while forward.local_port == 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = seen.recv_timeout(left).unwrap_or_else(|e| {
                panic!("kubectl port-forward to {namespace}/{pod}:{port} is not listening ({e}); it printed {printed:?}")
            });
            forward.local_port = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            printed.push(line);
        }
        forward
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealNode {
    /// Namespace annotations that send every pod of the namespace to this node (the PodNodeSelector and
    /// PodTolerationRestriction admission plugins add the selector and the toleration): for pods whose spec
    /// the test does not write, such as the operator's and the chart's.
    pub fn namespace_annotations(&self) -> Value {
        let toleration =
            json!([{"key": &self.key, "operator": "Equal", "value": &self.name, "effect": "NoSchedule"}]);
        json!({
            "scheduler.alpha.kubernetes.io/node-selector": format!("{}={}", self.key, self.name),
            "scheduler.alpha.kubernetes.io/defaultTolerations": toleration.to_string(),
        })
    }
}

/// A container's main process as the host sees it, through the node's container runtime.
#[derive(Debug)]
pub struct HostProcess {
    pub pid: u32,
    /// `/proc/<pid>/status`.
    pub status: String,
    /// Mount options of the container's `/`, from `/proc/<pid>/mountinfo`.
    pub root_mount_options: String,
}

impl HostProcess {
    /// The value of a `/proc/<pid>/status` field (`Uid`, `CapEff`, …), whitespace-normalised.
    pub fn field(&self, name: &str) -> String {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {name} in /proc/{}/status", self.pid))
    }
}

/// The main process of the container `container_id` (a pod status's `containerd://<id>`), read from the host.
///
/// # Panics
/// When crictl does not know the container or the process is gone.
pub fn host_process(container_id: &str) -> HostProcess {
    let id = container_id.trim_start_matches("containerd://");
    let info = crictl_json(
        "inspect",
        id,
        "the node's containerd does not know this container",
    );
    let pid = info["info"]["pid"].as_u64().expect("the container's pid") as u32;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("/proc/<pid>/mountinfo");
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ...; the container's root is the last `/` mount.
    let root_mount_options = mountinfo
        .lines()
        .rev()
        .find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(4) == Some(&"/")).then(|| fields[5].to_string())
        })
        .expect("a mount at / in the container");
    HostProcess {
        pid,
        status,
        root_mount_options,
    }
}

/// `crictl inspecti` of `image` in the node's containerd: the OCI image config and the repo digests.
pub fn inspect_image(image: &str) -> Value {
    crictl_json(
        "inspecti",
        image,
        "the image is not in the node's containerd (e2e/images/build-images.sh imports it)",
    )
}

/// `repository@sha256:…` of the image the node holds under `image` (a tag): the same image, named so that no
/// later import under the tag can change what a pod runs.
///
/// # Panics
/// When the node does not hold `image` or knows no repo digest of it.
pub fn pinned_image(image: &str) -> String {
    let info = inspect_image(image);
    info["status"]["repoDigests"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{image} has no repo digest in the node's containerd: {info}"))
        .to_string()
}

/// `crictl <command> -o json <target>` against the node's containerd (`CRI_CONFIG_FILE` of `$STATE/env`),
/// parsed.
///
/// # Panics
/// When crictl fails, with `failure` and its stderr.
fn crictl_json(command: &str, target: &str, failure: &str) -> Value {
    let out = cluster::output("crictl", &[command, "-o", "json", target]);
    assert!(
        out.status.success(),
        "crictl {command} {target}: {failure}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("crictl JSON")
}
