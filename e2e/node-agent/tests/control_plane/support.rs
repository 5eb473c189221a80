//! Control-plane test support: a node agent child process on its own tainted Node, a namespace per
//! test, waits with deadlines, and the agent's and pods' logs printed when a test fails.
//!
//! Every test's Node carries the taint `ordersystem.dev/node-agent=<node>:NoSchedule` and a matching
//! label, and its pods tolerate the one and select the other: other people's pods never land on a test
//! node, and a test's pods land only on its own node.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordersystem_testkit::{env, names};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Label and taint key that tie test pods to their test node.
pub const NODE_KEY: &str = "ordersystem.dev/node-agent";
/// Image of the agent's test binary.
pub const TESTAPP_IMAGE: &str = "ghcr.io/ordersystem/testapp:dev";
/// Where test agents keep logs and pod volumes.
const STATE_ROOT: &str = "/tmp/ordersystem/agent-tests";

/// A kube client from `KUBECONFIG` (the admin of the local control plane).
pub async fn client() -> kube::Client {
    let path = env::require("KUBECONFIG");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("valid kubeconfig");
    kube::Client::try_from(config).expect("kube client")
}

/// The agent binary running as a child process, registered as its own Node.
pub struct Agent {
    pub node: String,
    child: Child,
    state_dir: PathBuf,
    /// Set once the child has been reaped, so its PID is never signalled again.
    exited: bool,
}

impl Agent {
    /// Starts an agent on a fresh Node and waits until the Node is Ready.
    pub async fn start(client: &kube::Client) -> Agent {
        Agent::start_named(client, &names::unique("agent")).await
    }

    /// Starts an agent for `node` (an existing Node is taken over) and waits until the Node is Ready.
    pub async fn start_named(client: &kube::Client, node: &str) -> Agent {
        let node = node.to_string();
        let state_root = PathBuf::from(STATE_ROOT);
        std::fs::create_dir_all(&state_root).expect("state dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_root.join(format!("{node}.agent.log")))
            .expect("agent log");
        let testapp = PathBuf::from(env!("CARGO_BIN_EXE_ordersystem-testapp"));
        let child = Command::new(env!("CARGO_BIN_EXE_ordersystem-node-agent"))
            .args([
                "--node-name",
                &node,
                "--state-dir",
                STATE_ROOT,
                "--delete-node-on-exit",
            ])
            .arg("--bin-dir")
            .arg(testapp.parent().expect("bin dir"))
            .args(["--pod-ip-prefix", &ip_prefix(&node)])
            .args(["--taint", &format!("{NODE_KEY}={node}:NoSchedule")])
            .args(["--label", &format!("{NODE_KEY}={node}")])
            .args(["--crash-backoff-seconds", "2", "--volume-refresh-seconds", "2"])
            .env("KUBECONFIG", env::require("KUBECONFIG"))
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("agent log"))
            .stderr(log)
            .spawn()
            .expect("the node agent binary starts");
        let agent = Agent {
            node,
            child,
            state_dir: state_root,
            exited: false,
        };
        let nodes: Api<Node> = Api::all(client.clone());
        let ready = deadline_loop(Duration::from_secs(30), || async {
            let node = nodes.get_opt(&agent.node).await.ok()??;
            node_ready(&node).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "Node {} not Ready after 30 s; agent log:\n{}",
            agent.node,
            agent.log()
        );
        agent
    }

    /// The agent's log file and its node directory (container logs, pod volumes).
    fn files(&self) -> [PathBuf; 2] {
        [
            self.state_dir.join(format!("{}.agent.log", self.node)),
            self.state_dir.join(&self.node),
        ]
    }

    /// The agent's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join(format!("{}.agent.log", self.node))).unwrap_or_default()
    }

    /// Path of a container's log file.
    pub fn container_log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.state_dir
            .join(&self.node)
            .join("logs")
            .join(format!("{namespace}_{pod}_{container}.log"))
    }

    /// Every container log of this node, with headers.
    pub fn pod_logs(&self) -> String {
        let dir = self.state_dir.join(&self.node).join("logs");
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
            text.push_str(&format!("--- {} ---\n{content}\n", entry.path().display()));
        }
        text
    }

    /// Pod spec fields that put a pod on this node: selector and toleration.
    pub fn placement(&self) -> Value {
        json!({
            "nodeSelector": {NODE_KEY: self.node},
            "tolerations": [{"key": NODE_KEY, "operator": "Equal", "value": self.node, "effect": "NoSchedule"}],
        })
    }
}

impl Agent {
    /// SIGTERM (the agent stops its pods and deletes its Node), SIGKILL if it takes over 20 s.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.exited = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }

    /// SIGKILL, as a crash: the agent gets no chance to stop its pods.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
        self.exited = true;
    }

    fn signal(&self, signal: Signal) {
        if !self.exited
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.exited {
            self.stop();
        }
    }
}

/// A /24 in 127.0.0.0/8 derived from the node name, so agents of parallel tests do not share pod IPs.
fn ip_prefix(node: &str) -> String {
    let mut hasher = DefaultHasher::new();
    node.hash(&mut hasher);
    let h = hasher.finish();
    // Second octet 100..=227 keeps clear of 127.0.0.x, which the default agent and the services use.
    format!("127.{}.{}", 100 + (h % 128), (h >> 8) % 256)
}

pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// One test's world: an agent on its own Node and a fresh namespace with its `default` ServiceAccount.
pub struct TestEnv {
    pub client: kube::Client,
    pub agent: Agent,
    pub namespace: String,
}

/// Runs `body` in a fresh [`TestEnv`]; on failure prints the agent's and the pods' logs; always deletes
/// the namespace, waits for its pods to be finalized by the agent, then stops the agent.
pub async fn with_env<F>(prefix: &str, body: F)
where
    F: AsyncFnOnce(&mut TestEnv),
{
    let client = client().await;
    let agent = Agent::start(&client).await;
    let namespace = names::unique(prefix);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    // ServiceAccount admission rejects pods until KCM has created the namespace's `default` account.
    wait_for(Duration::from_secs(30), "the default ServiceAccount", || async {
        accounts.get_opt("default").await.ok()?.map(|_| ())
    })
    .await;
    let mut env = TestEnv {
        client,
        agent,
        namespace,
    };
    let outcome = std::panic::AssertUnwindSafe(body(&mut env)).catch_unwind().await;
    if outcome.is_err() {
        eprintln!(
            "===== node agent log ({}) =====\n{}",
            env.agent.node,
            env.agent.log()
        );
        eprintln!("===== pod logs =====\n{}", env.agent.pod_logs());
        eprintln!("===== pods =====\n{}", env.pods_summary().await);
    }
    let _ = namespaces.delete(&env.namespace, &DeleteParams::default()).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let gone = deadline_loop(Duration::from_secs(60), || async {
        pods.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(|_| ())
    })
    .await;
    if gone.is_none() {
        eprintln!("pods of {} still present after 60 s", env.namespace);
    }
    let TestEnv { agent, .. } = env;
    let files = agent.files();
    drop(agent);
    match outcome {
        // A passing test's logs are noise; a failing one's stay for a second look.
        Ok(()) => files.iter().for_each(|path| {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

impl TestEnv {
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Name, phase, IP, readiness and container states of every pod in the namespace.
    pub async fn pods_summary(&self) -> String {
        let Ok(list) = self.pods().list(&ListParams::default()).await else {
            return "cannot list pods".into();
        };
        list.items
            .iter()
            .map(|p| {
                format!(
                    "{} node={:?} status={}",
                    p.metadata.name.as_deref().unwrap_or(""),
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    serde_json::to_string(&p.status).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A pod spec running the test binary on this env's node: `LISTEN_ADDR=$(POD_IP):8080`, readiness
    /// on `/readyz` every second, `extra` merged into the container.
    pub fn testapp_pod_spec(&self, extra_env: Value, extra_container: Value) -> Value {
        let mut env = vec![
            json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
            json!({"name": "LISTEN_ADDR", "value": "$(POD_IP):8080"}),
        ];
        env.extend(extra_env.as_array().cloned().unwrap_or_default());
        let mut container = json!({
            "name": "app",
            "image": TESTAPP_IMAGE,
            "env": env,
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
        });
        if let (Some(c), Some(extra)) = (container.as_object_mut(), extra_container.as_object()) {
            c.extend(extra.clone());
        }
        let mut spec = self.agent.placement();
        spec["containers"] = json!([container]);
        spec["terminationGracePeriodSeconds"] = json!(10);
        spec
    }

    /// Creates a bare pod with `spec`.
    pub async fn create_pod(&self, name: &str, spec: Value) -> Pod {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Waits until the pod is Ready and returns it.
    pub async fn wait_ready(&self, name: &str) -> Pod {
        let pods = self.pods();
        wait_for(
            Duration::from_secs(60),
            &format!("pod {name} to be Ready"),
            || async {
                let pod = pods.get_opt(name).await.ok()??;
                pod_ready(&pod).then_some(pod)
            },
        )
        .await
    }
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// `status.podIP:8080`.
pub fn pod_addr(pod: &Pod) -> SocketAddr {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod has an IP");
    format!("{ip}:8080").parse().expect("socket address")
}

/// The PID of the pod's first container, from `containerID: process://<pid>`.
pub fn container_pid(pod: &Pod) -> i32 {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let id = statuses
        .first()
        .and_then(|c| c.container_id.clone())
        .expect("container id");
    id.strip_prefix("process://")
        .and_then(|p| p.parse().ok())
        .expect("process:// container id")
}

pub fn restart_count(pod: &Pod) -> i32 {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    statuses.first().map_or(0, |c| c.restart_count)
}

/// One plain HTTP GET; returns status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Polls `check` every 250 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match deadline_loop(timeout, check).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

async fn deadline_loop<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether a process with `pid` exists and has not ended (a zombie has ended).
pub fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the parenthesised command name.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    state != Some("Z")
}
