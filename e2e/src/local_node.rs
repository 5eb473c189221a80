//! Local mode's node: the test node agent (`ordersystem-node-agent`) as a child process, registered as its
//! own tainted Node. Namespaces created through [`LocalNode::pin_annotations`] send all their pods to this
//! node (PodNodeSelector and PodTolerationRestriction admission), so tests running side by side never run
//! each other's pods.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::wait;

/// Label and taint key that tie a test's pods to its node.
pub const NODE_KEY: &str = "ordersystem.dev/e2e-node";

/// Directory of the locally built binaries the agent runs for images (`ORDERSYSTEM_BIN_DIR`, else
/// `$CARGO_TARGET_DIR/debug`, else `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORDERSYSTEM_BIN_DIR") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("debug")
}

/// A running node agent; stopped (and its Node deleted) on drop.
#[derive(Debug)]
pub struct LocalNode {
    pub name: String,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    child: Child,
}

impl LocalNode {
    /// Starts an agent on a new Node named `name`, whose pod IPs are `127.<octet>.0.x`, and waits until the
    /// Node is Ready.
    ///
    /// # Panics
    /// When a binary is missing (the message says how to build it) or the Node never becomes Ready.
    pub async fn start(client: &kube::Client, name: &str, octet: u8) -> LocalNode {
        LocalNode::start_with_bins(client, name, octet, bin_dir()).await
    }

    /// Like [`LocalNode::start`], running the binaries in `bins` (e.g. a release build).
    ///
    /// # Panics
    /// As [`LocalNode::start`].
    pub async fn start_with_bins(client: &kube::Client, name: &str, octet: u8, bins: PathBuf) -> LocalNode {
        for binary in [
            "ordersystem-node-agent",
            "ordersystem-operator",
            "ordersystem-order",
            "ordersystem-invoicing",
            "ordersystem-shipping",
        ] {
            assert!(
                bins.join(binary).is_file(),
                "{} is missing: build the binaries first (cargo build --workspace --bins), or set \
                 ORDERSYSTEM_BIN_DIR",
                bins.join(binary).display()
            );
        }
        let state_dir = PathBuf::from("/tmp/ordersystem/e2e");
        std::fs::create_dir_all(&state_dir).expect("e2e state dir");
        let log = state_dir.join(format!("{name}.agent.log"));
        let out = std::fs::File::create(&log).expect("agent log file");
        let child = Command::new(bins.join("ordersystem-node-agent"))
            .args(["--node-name", name, "--delete-node-on-exit"])
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--pod-ip-prefix", &format!("127.{octet}.0")])
            .args(["--taint", &format!("{NODE_KEY}={name}:NoSchedule")])
            .args(["--label", &format!("{NODE_KEY}={name}")])
            .args(["--crash-backoff-seconds", "2"])
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the node agent");
        let node = LocalNode {
            name: name.to_string(),
            log,
            state_dir,
            child,
        };
        let nodes: Api<Node> = Api::all(client.clone());
        wait::until(&format!("Node {name} Ready"), Duration::from_secs(60), || async {
            let node = nodes.get_opt(name).await.map_err(|e| e.to_string())?;
            let ready = node
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready { Ok(()) } else { Err("not Ready".into()) }
        })
        .await;
        node
    }

    /// Namespace annotations that pin every pod of the namespace to this node.
    pub fn pin_annotations(&self) -> serde_json::Value {
        let toleration = serde_json::json!([{
            "key": NODE_KEY, "operator": "Equal", "value": self.name, "effect": "NoSchedule"
        }]);
        serde_json::json!({
            "scheduler.alpha.kubernetes.io/node-selector": format!("{NODE_KEY}={}", self.name),
            "scheduler.alpha.kubernetes.io/defaultTolerations": toleration.to_string(),
        })
    }

    /// The agent's own log and every container log it wrote, for a failing test's output.
    pub fn logs(&self) -> String {
        let mut out = format!("===== node agent {}\n", self.log.display());
        out += &std::fs::read_to_string(&self.log).unwrap_or_default();
        let dir = self.state_dir.join(&self.name).join("logs");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                out += &format!("===== {}\n", entry.path().display());
                for line in tail.into_iter().rev() {
                    out += line;
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        // SIGTERM lets the agent stop its pods and delete its Node; the pid is our own child's.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// On failure: prints the agent's and the pods' logs, and removes what the test left in the cluster (the
/// resource's finalizer, which no operator will release once the node is gone, the helm release and the
/// namespaces).
pub struct OnFailure<'a> {
    pub node: &'a LocalNode,
    pub shop_ns: String,
    pub operator_ns: String,
}

impl Drop for OnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("{}", self.node.logs());
        let (shop_ns, operator_ns) = (self.shop_ns.clone(), self.operator_ns.clone());
        let kubectl = |args: &[&str]| {
            std::process::Command::new("kubectl")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let _ = std::process::Command::new("helm")
            .args(["uninstall", &operator_ns, "--namespace", &operator_ns])
            .output();
        kubectl(&["delete", "namespace", &shop_ns, &operator_ns, "--wait=false"]);
        // The operator may still run for a moment and put its finalizer back: release it until the
        // resource is gone.
        for _ in 0..30 {
            kubectl(&[
                "-n",
                &shop_ns,
                "patch",
                "ordersystems.ordersystem.io",
                "shop",
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
            if !kubectl(&["-n", &shop_ns, "get", "ordersystems.ordersystem.io", "shop"]) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
